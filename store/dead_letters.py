"""Dead letters: occurrences whose every allowed attempt failed, kept so that an operator can see
them and deliver them again (redrive) with their own trigger id, even after their job ended.

Kept per app in the replicated state, oldest first, bounded (the bound travels in the Ack command
that records them, so every replica drops the same oldest ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class DeadLetter(NamedTuple):
    # The occurrence's trigger id, `{scheduled ms}:{job uid}`: its key and its idempotency key.
    id: str
    namespace: str
    app: str
    name: str
    uid: str
    scheduled_ms: int
    attempts: int
    last_outcome: str
    failed_ms: int
    # What a redrive delivers: the job's data as it was when the occurrence failed.
    data: bytes
    data_type: str
    # When a redrive was asked for and has not been attempted yet; None otherwise.
    redrive_ms: int | None = None


AppKey = tuple[str, str]


class DeadLetterBook:
    """Every app's dead letters, oldest first and bounded per app, with an index by id (an id,
    a trigger id, names one occurrence of one job uid: it is unique across apps)."""

    def __init__(self, letters: Iterable[DeadLetter] = ()) -> None:
        self._by_app: dict[AppKey, dict[str, DeadLetter]] = {}
        self._app_of: dict[str, AppKey] = {}
        for letter in letters:
            key = (letter.namespace, letter.app)
            if letter.id in self._app_of:
                raise ValueError(f"dead letter {letter.id!r} twice")
            self._by_app.setdefault(key, {})[letter.id] = letter
            self._app_of[letter.id] = key

    def add(self, letter: DeadLetter, per_app_max: int) -> int:
        """Keep `letter` (replacing one with its id), then drop the app's oldest beyond
        `per_app_max`; how many were dropped."""
        assert per_app_max > 0
        key = (letter.namespace, letter.app)
        self.remove(letter.namespace, letter.app, letter.id)
        letters = self._by_app.setdefault(key, {})
        letters[letter.id] = letter
        self._app_of[letter.id] = key
        dropped = 0
        while len(letters) > per_app_max:
            oldest = next(iter(letters))
            del letters[oldest], self._app_of[oldest]
            dropped += 1
        return dropped

    def get(self, namespace: str, app: str, letter_id: str) -> DeadLetter | None:
        return self._by_app.get((namespace, app), {}).get(letter_id)

    def find(self, letter_id: str) -> DeadLetter | None:
        key = self._app_of.get(letter_id)
        return None if key is None else self._by_app[key][letter_id]

    def replace(self, letter: DeadLetter) -> None:
        """Put a new version of a kept letter in its place (its age is unchanged)."""
        letters = self._by_app[(letter.namespace, letter.app)]
        assert letter.id in letters
        letters[letter.id] = letter

    def remove(self, namespace: str, app: str, letter_id: str) -> bool:
        letters = self._by_app.get((namespace, app))
        if letters is None or letters.pop(letter_id, None) is None:
            return False
        del self._app_of[letter_id]
        if not letters:
            del self._by_app[(namespace, app)]
        return True

    def page(
        self, namespace: str, app: str, prefix: str, after: str | None, limit: int
    ) -> tuple[list[DeadLetter], str | None]:
        """The app's letters whose job name starts with `prefix`, oldest first, after the one
        with id `after`; and the cursor of the next page (None on the last)."""
        assert limit > 0
        letters = list(self._by_app.get((namespace, app), {}).values())
        start = 0
        if after is not None:
            ids = [letter.id for letter in letters]
            start = ids.index(after) + 1 if after in ids else len(ids)
        chosen = [letter for letter in letters[start:] if letter.name.startswith(prefix)]
        page = chosen[:limit]
        return page, (page[-1].id if len(chosen) > limit else None)

    def redrives(self) -> list[DeadLetter]:
        """Every letter whose redrive was asked for and not yet attempted."""
        return [
            letter
            for letters in self._by_app.values()
            for letter in letters.values()
            if letter.redrive_ms is not None
        ]

    def rows(self) -> tuple[DeadLetter, ...]:
        """Every letter, apps in sorted order, each app's oldest first: the snapshot's order."""
        return tuple(
            letter for key in sorted(self._by_app) for letter in self._by_app[key].values()
        )

    def count(self) -> int:
        return len(self._app_of)

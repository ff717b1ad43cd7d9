"""The names of one app's jobs, kept sorted with a value each (the job's uid): lookups by name and
pages of a list by prefix and cursor, which cost their page only.

A plain sorted list costs O(n) per insert (a memmove of the whole tail): a million random names
would take minutes to build one by one. Chunks of a few hundred names, found by bisecting the
list of chunk maxima, keep insert and remove at O(log n + chunk) while staying as compact as a
list of pointers. Each chunk of names has a chunk of values beside it, so the index is also the
app's map from name to value: a lookup bisects twice (about a microsecond at a million names)
where a dict beside the index would cost every job another 40 bytes.
"""

from __future__ import annotations

import itertools
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

CHUNK_NAMES_MAX = 1024

V = TypeVar("V")


class NameIndex(Generic[V]):
    def __init__(self, sorted_names: Iterable[str] = (), values: Iterable[V] = ()) -> None:
        """Build from names already in ascending order (as a snapshot stores them) and their
        values, in the same order."""
        names, held = list(sorted_names), list(values)
        assert len(names) == len(held), "a value per name"
        assert all(map(operator.lt, names, itertools.islice(names, 1, None))), "names unsorted"
        half = CHUNK_NAMES_MAX // 2
        self._chunks = [names[i : i + half] for i in range(0, len(names), half)]
        self._values = [held[i : i + half] for i in range(0, len(held), half)]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._len = len(names)

    def __len__(self) -> int:
        return self._len

    def get(self, name: str) -> V | None:
        """The value of `name`, None if it is not in the index."""
        found = self._lookup(name)
        return None if found is None else self._values[found[0]][found[1]]

    def add(self, name: str, value: V) -> None:
        """Insert a name that is not in the index, with its value."""
        if not self._chunks:
            self._chunks.append([name])
            self._values.append([value])
            self._maxes.append(name)
            self._len = 1
            return
        index = min(bisect_left(self._maxes, name), len(self._maxes) - 1)
        chunk, values = self._chunks[index], self._values[index]
        position = bisect_left(chunk, name)
        assert position == len(chunk) or chunk[position] != name, "adding a name twice"
        chunk.insert(position, name)
        values.insert(position, value)
        self._maxes[index] = chunk[-1]
        self._len += 1
        if len(chunk) > CHUNK_NAMES_MAX:
            half = len(chunk) // 2
            self._chunks[index : index + 1] = [chunk[:half], chunk[half:]]
            self._values[index : index + 1] = [values[:half], values[half:]]
            self._maxes[index : index + 1] = [chunk[half - 1], chunk[-1]]

    def remove(self, name: str) -> V:
        """Remove a name that is in the index, and return its value."""
        index, position = self._find(name)
        chunk, values = self._chunks[index], self._values[index]
        value = values[position]
        del chunk[position]
        del values[position]
        self._len -= 1
        if chunk:
            self._maxes[index] = chunk[-1]
        else:
            del self._chunks[index]
            del self._values[index]
            del self._maxes[index]
        return value

    def page(self, prefix: str, after: str | None, limit: int | None) -> list[V]:
        """The values of the names starting with `prefix`, in name order, strictly after
        `after` when given."""
        assert limit is None or limit >= 0
        if after is None or after < prefix:
            index, position = self._locate(prefix, inclusive=True)
        else:
            index, position = self._locate(after, inclusive=False)
        found: list[V] = []
        while index < len(self._chunks):
            values = self._values[index]
            for offset, name in enumerate(self._chunks[index][position:], position):
                if not name.startswith(prefix) or len(found) == limit:
                    return found
                found.append(values[offset])
            index, position = index + 1, 0
        return found

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk

    def values(self) -> Iterator[V]:
        """Every value, in name order."""
        for values in self._values:
            yield from values

    def _lookup(self, name: str) -> tuple[int, int] | None:
        """The chunk and position of `name`, None if it is not in the index."""
        index = bisect_left(self._maxes, name)
        if index == len(self._maxes):
            return None
        position = bisect_left(self._chunks[index], name)
        return (index, position) if self._chunks[index][position] == name else None

    def _find(self, name: str) -> tuple[int, int]:
        found = self._lookup(name)
        assert found is not None, "a name that is not indexed"
        return found

    def _locate(self, start: str, inclusive: bool) -> tuple[int, int]:
        """The chunk and position of the first name >= start (inclusive) or > start."""
        bisect = bisect_left if inclusive else bisect_right
        index = bisect(self._maxes, start)
        if index == len(self._chunks):
            return index, 0
        return index, bisect(self._chunks[index], start)

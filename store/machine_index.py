"""The names of one app's jobs, kept sorted so a list by prefix and cursor costs its page only.

A plain sorted list costs O(n) per insert (a memmove of the whole tail): a million random names
would take minutes to build one by one. Chunks of a few hundred names, found by bisecting the
list of chunk maxima, keep insert and remove at O(log n + chunk) while staying as compact as a
list of pointers.
"""

from __future__ import annotations

import itertools
import operator
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator

CHUNK_NAMES_MAX = 1024


class NameIndex:
    def __init__(self, sorted_names: Iterable[str] = ()) -> None:
        """Build from names already in ascending order (as a snapshot stores them)."""
        names = list(sorted_names)
        assert all(map(operator.lt, names, itertools.islice(names, 1, None))), "names unsorted"
        half = CHUNK_NAMES_MAX // 2
        self._chunks = [names[i : i + half] for i in range(0, len(names), half)]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._len = len(names)

    def __len__(self) -> int:
        return self._len

    def add(self, name: str) -> None:
        """Insert a name that is not in the index."""
        if not self._chunks:
            self._chunks.append([name])
            self._maxes.append(name)
            self._len = 1
            return
        index = min(bisect_left(self._maxes, name), len(self._maxes) - 1)
        chunk = self._chunks[index]
        insort(chunk, name)
        self._maxes[index] = chunk[-1]
        self._len += 1
        if len(chunk) > CHUNK_NAMES_MAX:
            half = len(chunk) // 2
            self._chunks[index : index + 1] = [chunk[:half], chunk[half:]]
            self._maxes[index : index + 1] = [chunk[half - 1], chunk[-1]]

    def remove(self, name: str) -> None:
        """Remove a name that is in the index."""
        index = bisect_left(self._maxes, name)
        chunk = self._chunks[index]
        position = bisect_left(chunk, name)
        assert chunk[position] == name, "removing a name that is not indexed"
        del chunk[position]
        self._len -= 1
        if chunk:
            self._maxes[index] = chunk[-1]
        else:
            del self._chunks[index]
            del self._maxes[index]

    def page(self, prefix: str, after: str | None, limit: int | None) -> list[str]:
        """Names starting with `prefix`, ascending, strictly after `after` when given."""
        assert limit is None or limit >= 0
        if after is None or after < prefix:
            index, position = self._locate(prefix, inclusive=True)
        else:
            index, position = self._locate(after, inclusive=False)
        names: list[str] = []
        while index < len(self._chunks):
            for name in self._chunks[index][position:]:
                if not name.startswith(prefix) or len(names) == limit:
                    return names
                names.append(name)
            index, position = index + 1, 0
        return names

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk

    def _locate(self, start: str, inclusive: bool) -> tuple[int, int]:
        """The chunk and position of the first name >= start (inclusive) or > start."""
        bisect = bisect_left if inclusive else bisect_right
        index = bisect(self._maxes, start)
        if index == len(self._chunks):
            return index, 0
        return index, bisect(self._chunks[index], start)

"""The sorted name index behaves exactly like a sorted list of names with a dict of their
values, across chunk splits and removals."""

from __future__ import annotations

from bisect import insort

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import store.machine_index as machine_index
from store.machine_index import NameIndex

names = st.text(alphabet="abc", min_size=1, max_size=6)


def model_page(model: list[str], prefix: str, after: str | None, limit: int | None) -> list[str]:
    chosen = [n for n in model if n.startswith(prefix) and (after is None or n > after)]
    return chosen if limit is None else chosen[:limit]


@settings(deadline=None, max_examples=150)
@given(
    chunk_max=st.sampled_from([2, 3, 8, machine_index.CHUNK_NAMES_MAX]),
    initial=st.sets(names, max_size=30),
    operations=st.lists(st.tuples(st.booleans(), names), max_size=200),
    prefix=st.text(alphabet="abc", max_size=2),
    after=st.one_of(st.none(), names),
    limit=st.one_of(st.none(), st.integers(0, 20)),
)
def test_index_matches_a_sorted_list(
    chunk_max: int,
    initial: set[str],
    operations: list[tuple[bool, str]],
    prefix: str,
    after: str | None,
    limit: int | None,
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        # Small chunks force many splits and removals of emptied chunks.
        patch.setattr(machine_index, "CHUNK_NAMES_MAX", chunk_max)
        model = sorted(initial)
        values = {name: name.upper() for name in model}
        index = NameIndex(model, map(str.upper, model))
        for adding, name in operations:
            if adding and name not in model:
                insort(model, name)
                values[name] = name.upper()
                index.add(name, name.upper())
            elif name in model:
                model.remove(name)
                assert index.remove(name) == values.pop(name)
            assert index.get(name) == values.get(name)
        assert list(index) == model and len(index) == len(model)
        assert list(index.values()) == [values[name] for name in model]
        assert all(index.get(name) == values[name] for name in model)
        assert index.get("d") is None and index.get("") is None
        expected = [values[name] for name in model_page(model, prefix, after, limit)]
        assert index.page(prefix, after, limit) == expected

"""Hypothesis strategies for adapters' never-raise tests: JSON-ish junk shaped by a format's own
keys and words, and real example lines with values replaced by junk at any depth."""

from __future__ import annotations

import copy
from collections.abc import Callable

from hypothesis import strategies as st


def json_values(keys: list[str], words: list[str]):
    scalars = (
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
        | st.sampled_from(words)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), inner, max_size=6),
        max_leaves=30,
    )


def json_lines(keys: list[str], values, max_size: int):
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), values, max_size=max_size)


def _slots(node, out):
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _slots(value, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((node, i))
            _slots(value, out)
    return out


def mutated(examples: Callable[[], list[dict]], values, most: int):
    """A valid line with one to `most` of its values (at any depth) replaced by junk."""

    @st.composite
    def build(draw):
        obj = copy.deepcopy(draw(st.sampled_from(examples())))
        for _ in range(draw(st.integers(1, most))):
            container, key = draw(st.sampled_from(_slots(obj, [])))
            container[key] = draw(values)
        return obj

    return build()

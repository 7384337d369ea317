"""A layer's tiles in levels (programs.levels): the grid-indexed computation gives the levels
the definition gives (every tile against every earlier access), on random tile layouts and
on a compiled network whose reductions are split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from programs.levels import ALL, Box, overlap, tile_levels
from programs.manifest import compile_model
from tests.zoo_onnx import SPLIT_CONFIG, SPLIT_SPEC, chain_model


@dataclass
class _In:
    tensor: str
    rows: tuple[int, int]
    channels: tuple[int, int]
    cols: tuple[int, int] | None = None


@dataclass
class _T:
    out_tensor: str
    out_rows: tuple[int, int]
    out_channels: tuple[int, int]
    out_cols: tuple[int, int] | None = None
    inputs: list[_In] = field(default_factory=list)


def levels_by_definition(tiles: list) -> list[list[int]]:
    """A tile is a level above every earlier tile whose output box it reads, and at or above
    every earlier tile that reads or writes its output box."""
    written = {t.out_tensor for t in tiles}
    accesses: list[tuple[str, Box, int, bool]] = []
    levels: list[list[int]] = []
    for i, t in enumerate(tiles):
        reads = [(ti.tensor, (ti.rows, ti.cols or ALL, ti.channels)) for ti in t.inputs
                 if ti.tensor in written]
        out: Box = (t.out_rows, t.out_cols or ALL, t.out_channels)
        level = 0
        for name, b, lv, w in accesses:
            if w and any(name == n and overlap(b, box) for n, box in reads):
                level = max(level, lv + 1)
            if name == t.out_tensor and overlap(b, out):
                level = max(level, lv)
        accesses += [(n, box, level, False) for n, box in reads]
        accesses.append((t.out_tensor, out, level, True))
        while len(levels) <= level:
            levels.append([])
        levels[level].append(i)
    return levels


_range = st.tuples(st.integers(0, 11), st.integers(1, 6)).map(lambda a: (a[0], a[0] + a[1]))
_cols = st.none() | _range
_input = st.builds(_In, st.sampled_from(["x", "", "p"]), _range, _range, _cols)
_tile = st.builds(_T, st.sampled_from(["", "p"]), _range, _range, _cols,
                  st.lists(_input, max_size=3))


@given(st.lists(_tile, max_size=40))
def test_levels_are_the_definitions(tiles: list[_T]) -> None:
    assert tile_levels(tiles) == levels_by_definition(tiles)


def test_a_split_reduction_takes_its_chunks_in_levels() -> None:
    x = np.random.default_rng(0).standard_normal((2, 16, 12, 12)).astype(np.float32)
    comp = compile_model(chain_model(SPLIT_SPEC), SPLIT_CONFIG, x)
    split = [ll for ll in comp.layers if ll.partial_channels]
    assert split
    for ll in comp.layers:
        assert ll.levels == levels_by_definition(ll.tiles), ll.name
    # Each chunk restores what the one before spilled: at least one level per chunk.
    assert all(len(ll.levels) > 1 for ll in split)

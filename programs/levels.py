"""A layer's tiles in levels, for a backend that runs many tiles at once (the fast emulator).

A tile is a level above every earlier tile whose output box it reads (the partial sums of a
split reduction), and at or above every earlier tile that reads or writes its output box;
within a level outputs are written in tile order.  Boxes are (rows, columns, channels)
half-open ranges.

Each tile is compared only with the earlier boxes that share a cell of a coarse grid with
it, and identical boxes are kept once (with the highest levels seen), so a layer of many
tiles takes about linear time: comparing every tile with every earlier access took 54 s for
VGG-16's first dense layer on the small configuration at 64x64 (4096 tiles), and most of the
first run of one image at 224x224 (1629 s; 33.7 s with the grid).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # lower imports this module
    from .lower import Tile

Range = tuple[int, int]
Box = tuple[Range, Range, Range]
ALL: Range = (0, 1 << 62)  # a whole dimension (a tile that takes every column)
_WIDE = 1 << 40  # a range at least this long is not hashed (one cell for the dimension)


def overlap(a: Box, b: Box) -> bool:
    return all(x0 < y1 and y0 < x1 for (x0, x1), (y0, y1) in zip(a, b))


class _Accesses:
    """The earlier accesses of one tensor: per distinct box the highest level that wrote it
    (-1: none) and the highest level that read or wrote it, found by grid cell."""

    def __init__(self, boxes: Iterable[Box]) -> None:
        dims = list(zip(*boxes))
        # A cell about a typical box's size: a box covers a few cells, a cell holds a few
        # boxes.  0: the dimension is not hashed.
        self.cell = tuple(0 if any(x1 - x0 >= _WIDE for x0, x1 in dim)
                          else max(1, int(statistics.median(x1 - x0 for x0, x1 in dim)))
                          for dim in dims)
        self.levels: dict[Box, list[int]] = {}  # box -> [highest written, highest any]
        self.cells: dict[tuple[int, ...], list[Box]] = {}

    def _cells(self, box: Box) -> Iterator[tuple[int, ...]]:
        return itertools.product(*[range(x0 // c, (x1 - 1) // c + 1) if c else (0,)
                                   for (x0, x1), c in zip(box, self.cell)])

    def add(self, box: Box, level: int, written: bool) -> None:
        known = self.levels.get(box)
        if known is None:
            known = self.levels[box] = [-1, -1]
            for key in self._cells(box):
                self.cells.setdefault(key, []).append(box)
        if written:
            known[0] = max(known[0], level)
        known[1] = max(known[1], level)

    def overlapping(self, box: Box) -> Iterator[list[int]]:
        """[highest written, highest any] of every distinct earlier box overlapping ``box``."""
        seen: set[Box] = set()
        for key in self._cells(box):
            for b in self.cells.get(key, ()):
                if b not in seen:
                    seen.add(b)
                    if overlap(b, box):
                        yield self.levels[b]


def tile_levels(tiles: Sequence[Tile]) -> list[list[int]]:
    """The tiles (indices) in levels (see the module's doc)."""
    written = {t.out_tensor for t in tiles}
    reads = [[(ti.tensor, (ti.rows, ti.cols or ALL, ti.channels)) for ti in t.inputs
              if ti.tensor in written] for t in tiles]
    outs: list[Box] = [(t.out_rows, t.out_cols or ALL, t.out_channels) for t in tiles]
    boxes: dict[str, list[Box]] = {name: [] for name in written}
    for t, rd, out in zip(tiles, reads, outs):
        boxes[t.out_tensor].append(out)
        for name, box in rd:
            boxes[name].append(box)
    seen = {name: _Accesses(bs) for name, bs in boxes.items()}
    levels: list[list[int]] = []
    for i, (tile, rd, out) in enumerate(zip(tiles, reads, outs)):
        level = 0
        for name, box in rd:
            for wrote, _ in seen[name].overlapping(box):
                if wrote >= 0:
                    level = max(level, wrote + 1)
        for _, anyone in seen[tile.out_tensor].overlapping(out):
            level = max(level, anyone)
        for name, box in rd:
            seen[name].add(box, level, False)
        seen[tile.out_tensor].add(out, level, True)
        while len(levels) <= level:
            levels.append([])
        levels[level].append(i)
    return levels

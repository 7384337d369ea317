"""What a lockstep group's tiles place in their stacked AMEM before they run, and what that
tells about their equal regions.

Each tile places pieces, in order: its image's initial activations, then the bands the host
gives apart from the image (``run_fast_many(bands=...)``: a layer's input bands, views of one
padded tensor).  A piece that several tiles place (one array at one base: a row band read by
its channel blocks, a reduction chunk's activations read by each of its 512 output blocks in
AlexNet's first dense layer) is checked and placed once for all of them.  Two tiles that
placed the same pieces over a region, in the same order, hold equal values there until
something is written: the products then compare one tile of each class instead of them all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract.config import AccelConfig
from contract.image import check_band

I64 = NDArray[np.int64]
# Activations a tile places over its image's own: (base address, array), in order.
Bands = list[tuple[int, NDArray[np.integer]]]


class Placement:
    """The pieces each tile placed in ``amem`` (tiles, depth), placed here."""

    def __init__(self, amem: NDArray[np.signedinteger[Any]], pieces: list[Bands],
                 c: AccelConfig):
        self.tiles = len(pieces)
        # (tiles, piece index, base, size) of each distinct piece.
        self.placed: list[tuple[list[int], int, int, int]] = []
        checked: set[np.dtype[Any]] = set()  # types that hold only activations
        # Per piece index, the tiles placing each distinct piece (one array at one base).
        by_piece: list[dict[tuple[int, int], list[int]]] = [
            {} for _ in range(max(map(len, pieces), default=0))]
        for i, mine in enumerate(pieces):
            for j, (base, arr) in enumerate(mine):
                if arr.size:
                    by_piece[j].setdefault((base, id(arr)), []).append(i)
        for j, same in enumerate(by_piece):
            for rows in same.values():
                base, arr = pieces[rows[0]][j]
                if j:  # an image's own activations were checked when it was made
                    if arr.dtype not in checked or not 0 <= base <= c.amem_depth - arr.size:
                        check_band(base, arr, c)
                        if arr.dtype.kind == "i" and np.iinfo(arr.dtype).bits <= c.act_bits:
                            checked.add(arr.dtype)
                if len(rows) == 1:  # one strided copy
                    amem[rows[0], base: base + arr.size].reshape(arr.shape)[...] = arr
                else:
                    amem[np.array(rows), base: base + arr.size] = arr.reshape(-1)
                self.placed.append((rows, j, base, arr.size))
        # Else every tile is apart everywhere (a layer's row bands): nothing to work out.
        self.shared = any(len(rows) > 1 for rows, _, _, _ in self.placed)
        self._table: tuple[I64, I64, I64] | None = None
        self._classes: dict[tuple[int, int], list[I64] | None] = {}

    def table(self) -> tuple[I64, I64, I64]:
        """(tiles, pieces) arrays: each piece's first and last address and which distinct
        piece it is (-1: none), made on the first question."""
        if self._table is None:
            most = 1 + max((j for _, j, _, _ in self.placed), default=0)
            first = np.zeros((self.tiles, most), np.int64)
            last = np.full((self.tiles, most), -1, np.int64)
            key = np.full((self.tiles, most), -1, np.int64)
            if self.placed:
                counts = [len(rows) for rows, _, _, _ in self.placed]
                at = (np.concatenate([rows for rows, _, _, _ in self.placed]),
                      np.repeat([j for _, j, _, _ in self.placed], counts))
                base = np.repeat([b for _, _, b, _ in self.placed], counts)
                first[at] = base
                last[at] = base + np.repeat([n for _, _, _, n in self.placed], counts) - 1
                key[at] = np.repeat(np.arange(len(self.placed)), counts)
            self._table = first, last, key
        return self._table

    def classes(self, lo: int, hi: int) -> list[I64] | None:
        """Tiles that placed the same pieces over AMEM[lo..hi] (members in order, classes by
        their lowest member), or None when every tile is apart there.  Worked out once a
        region."""
        if not self.shared:
            return None
        if (lo, hi) not in self._classes:
            first, last, key = self.table()
            pieces = np.where((first <= hi) & (last >= lo), key + 1, 0)  # 0: none there
            # Each tile's pieces there as one number (np.unique by rows took 0.13 ms).
            kinds = len(self.placed) + 1
            if kinds ** pieces.shape[1] < 1 << 62:
                code = np.zeros(len(pieces), np.int64)
                for column in pieces.T:
                    code = code * kinds + column
                uniq, which = np.unique(code, return_inverse=True)
            else:
                uniq, which = np.unique(pieces, axis=0, return_inverse=True)
            if len(uniq) == self.tiles:
                self._classes[lo, hi] = None
            else:
                which = which.reshape(-1)
                order = np.argsort(which, kind="stable")
                classes = np.split(order, np.cumsum(np.bincount(which))[:-1])
                self._classes[lo, hi] = sorted(classes, key=lambda m: int(m[0]))
        return self._classes[lo, hi]

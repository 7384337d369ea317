"""Dot-product loops and fused convolution windows as matrix products, exact.

A loop whose body is one dot-product step (MAC) is a k-term dot product per instance; a run
of such sibling loops with register steps between them (a convolution window: one loop per
kernel row) is one sum of dot products.  Both become matrix products of gathered activations
by the weights' integers, as im2col does, in the narrowest type that is provably exact.
With several tiles (machines with one text) the factors depend on the tile and the product
is a stack of matrix products, one per tile, over the same rows and columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contract import isa
from contract.semantics import wrap

from .nest import GiveUp, Group, Loop, Segment, dot_pointers
from .state import (
    EXACT_F32,
    I64,
    MAX_INSTANCES,
    BatchBase,
    Deferred,
    Lanes,
    code_ints,
    cols,
    exact_dtype,
    factorize,
    lane_products,
    wrap_inplace,
)
from .transfer import MASK, Transfer

# Columns of a region that its first fingerprint reads, at most: the classes come from exact
# comparisons, so a sample only has to tell most unequal rows apart.
FINGERPRINT_COLUMNS = 4096
# Fewest terms a float32 sum must hold for a product to be summed in runs of float32 sums
# rather than in float64 (see Products.group).
RUN_TERMS = 128
# Bytes of the weights' integers that one step of a matrix product decodes.
TILE_BLOCK_BYTES = 1 << 23
# Products with fewer windows than this (a dense layer: one) spend more on a pass over the
# weights than on a wider float type: they skip the tighter bound's pass when the loose one
# (max|x| max|w| length) fails float32.
TIGHT_BOUND_ROWS = 16


# The fingerprints' weights, drawn once (a generator made per call took 0.15 ms, more than
# the fingerprints of most groups).
_FINGERPRINT_WEIGHTS = [np.zeros(0, np.int64)]


def _fingerprints(region: I64, rows: I64, every: bool = False) -> I64:
    """One int64 for each of ``rows`` of ``region``: the dot product of a sample of its
    columns (``every``: all of them) with fixed pseudo-random weights, wrapping, as a hash.
    Only the sampled columns are gathered."""
    step = 1 if every else max(1, region.shape[1] // FINGERPRINT_COLUMNS)
    sample = region[:, ::step][rows]
    n = sample.shape[1]
    if len(_FINGERPRINT_WEIGHTS[0]) < n:
        _FINGERPRINT_WEIGHTS[0] = np.random.default_rng(0).integers(
            1, 1 << 40, max(n, FINGERPRINT_COLUMNS), dtype=np.int64)
    return np.asarray(sample, np.int64) @ _FINGERPRINT_WEIGHTS[0][:n]


def same_rows(region: I64) -> list[tuple[int, I64]]:
    """Classes of equal rows of ``region``: (the lowest member, every member in order).

    Rows are bucketed by a fingerprint of sampled columns and each bucket's first row is
    compared exactly with the others: about one pass over the region (a layer's tiles in
    lockstep: one class per row band, each holding that band's channel blocks), never a copy
    of it.  The rows a bucket holds beyond its first row's class (equal where sampled) are
    bucketed again by every column, then split by exact comparisons one class at a time."""
    t = len(region)
    if t == 1:
        return [(0, np.zeros(1, np.int64))]
    out: list[tuple[int, I64]] = []
    todo: list[tuple[I64, int]] = [(np.arange(t), 0)]  # (rows, 0 sampled / 1 every / 2 none)
    while todo:
        idx, stage = todo.pop()
        groups = [idx]
        if stage < 2:
            _, bucket, counts = np.unique(_fingerprints(region, idx, every=stage == 1),
                                          return_inverse=True, return_counts=True)
            # Stable: each bucket keeps its rows in order.
            order = idx[np.argsort(bucket.reshape(-1), kind="stable")]
            groups = np.split(order, np.cumsum(counts)[:-1])
        for rows in groups:
            rep = int(rows[0])
            eq = np.array([i == rep or np.array_equal(region[i], region[rep]) for i in rows])
            out.append((rep, rows[eq]))
            if not eq.all():
                todo.append((rows[~eq], min(stage + 1, 2)))
    return sorted(out, key=lambda c: c[0])


def merge_classes(parts: list[I64], classes: list[tuple[int, I64]]) -> list[tuple[int, I64]]:
    """Classes of rows from classes of ``parts`` (each a class of rows known equal): same_rows'
    form, members in order, classes by their lowest member."""
    out = []
    for _, which in classes:
        members = np.sort(np.concatenate([parts[j] for j in which]))
        out.append((int(members[0]), members))
    return sorted(out, key=lambda c: c[0])


class Products(BatchBase):
    """The matrix-product paths of a batch."""

    def dot_traffic(self, times: int, step: str) -> None:
        """Counters of ``times`` dot-product steps ``step``."""
        self.tally(step, times)
        self.count(isa.traffic(isa.BY_MNEMONIC[step], {}, self.c.lanes), times)

    def dot_loop(self, node: Loop, s: Lanes, k: int) -> None:
        """A body of one dot-product step: k-term dot products, as matrix products."""
        c = self.c
        pc = node.items[0]
        assert isinstance(pc, int)
        ins = self.mach.prog.instrs[pc]
        rw, iw, rx, ix = dot_pointers(ins, self.mach.prog.fields[pc])
        same = rw == rx
        dw = iw + (ix if same else 0)
        dx = ix + (iw if same else 0)
        regs = s.regs
        n = regs.shape[0]
        aw = self.affine(regs[:, rw], k, dw, c.wmem_depth)
        ax = self.affine(regs[:, rx], k, dx, c.amem_depth)
        self.reads.append((regs[:, rx], k, dx) if ax is None else (ax.reshape(-1), 1, 1))
        s.acc = wrap(s.acc + self.dots(regs[:, rx], dx, ax, regs[:, rw], dw, aw, k), c.acc_bits)
        last_w = (regs[:, rw] + (k - 1) * dw) & MASK
        last_x = (regs[:, rx] + (k - 1) * dx) & MASK
        self.defer_wp(s, last_w, last_x)
        regs = regs.copy()
        regs[:, rw] = (regs[:, rw] + k * iw) & MASK
        regs[:, rx] = (regs[:, rx] + k * ix) & MASK
        s.regs = regs
        self.dot_traffic(n * k, ins.mnemonic)

    def defer_wp(self, s: Lanes, last_w: I64, last_x: I64) -> None:
        """W and P as a product's last terms leave them: the codes at WMEM ``last_w`` and
        their products with AMEM ``last_x``, per instance, made only if read."""
        c, wmem, amem = self.c, self.wmem, self.amem0

        def w(rows: I64 | None) -> I64:
            return np.asarray(cols(wmem, last_w if rows is None else last_w[rows]), np.int64)

        def p(rows: I64 | None) -> I64:
            x = cols(amem, last_x if rows is None else last_x[rows])
            return lane_products(x[..., None], w(rows), c)

        s.w, s.p = Deferred(w), Deferred(p)

    def group(self, g: Group, s: Lanes) -> bool:
        """A run of sibling dot-product loops (and register-only instructions) as ONE matrix
        product over (distinct activation windows) x (distinct weight runs).  False, with
        nothing done, when the run does not fit that form (addresses that wrap past 2^16 or
        leave memory, windows of several registers, instances that do not factor): the
        items then run one by one, which also makes any fault step mode's."""
        c = self.c
        n = s.instances
        segs = g.segments
        total = sum(seg.count for seg in segs)
        regs = s.regs
        plan = self.rec.take("group", lambda: self.group_plan(g, regs))
        if plan is None:
            return False
        xrel, xlo, xhi, widx, widx_key, inv, order, last_x, last_w, after = plan
        nx, nw, t = xrel.shape[0], widx.shape[1], self.ntiles
        # Only AMEM[xlo..xhi] is read.
        region = self.amem0[:, xlo: xhi + 1]
        placed = self.tiles.placed_classes(xlo, xhi)
        if placed is None:
            classes = same_rows(region)
        else:  # only the placements' first tiles are compared
            classes = merge_classes(placed, same_rows(region[[int(m[0]) for m in placed]]))
        # Every row equals its class's first: the bound needs only those.
        firsts = region[[rep for rep, _ in classes]]
        xmax = max(int(firsts.max()), -int(firsts.min()))
        self.serial_blas()
        wide = nw * c.lanes
        # Each product's rows are windows, its columns weight runs x lanes.  Instances in a
        # plain order (weight runs outer: a convolution's channel blocks; or windows outer)
        # take them straight, converted to integers in the same pass; any other order
        # gathers them after (a float product's conversion and then a gather took 3.0 ms
        # where the one pass took 0.75 ms, 16 x 770 x 64 outputs).
        prod = np.empty((t, nx * nw, c.lanes), np.int64)
        gather = order == "gather"
        if order == "weights outer":
            dest = prod.reshape(t, nw, nx, c.lanes).transpose(0, 2, 1, 3)
        else:
            dest = prod.reshape(t, nx, nw, c.lanes)
        windows: dict[tuple[int, Any], Any] = {}
        max_abs = c.weight_format.max_abs(c.exp_bits)
        # The weights' integers a block of tiles at a time (four bytes each where the codes
        # take one: a dense layer's whole WMEM decoded at once was 150 MB for AlexNet), each
        # block's bound and products while its integers are in the cache.
        step = max(1, TILE_BLOCK_BYTES // max(1, 4 * total * wide))
        loose = exact_dtype(xmax * max_abs * total)
        tighten = loose is not np.float32 and nx >= TIGHT_BOUND_ROWS
        # Where float32 cannot hold a whole sum but holds sums of runs of RUN_TERMS terms or
        # more, the product is summed a run at a time in float32 and the runs' sums added in
        # float64 (exact below 2^53): float32 weights, half the bytes of float64 to read
        # (AlexNet's dense layers read 447 MB an image in float64).
        run = (EXACT_F32 - 1) // max(1, xmax * max_abs)
        runs = loose is np.float64 and run >= RUN_TERMS
        for a in range(0, t, step):
            b = min(t, a + step)
            dtype = loose
            # Tiles whose region holds the same activations (the channel blocks of one row
            # band) share the gathered windows, and are ONE product: their weight runs side
            # by side in its columns (ResNet-18's 64 tiles of 8 channels by (49 x 2304)
            # windows took 19 ms as 64 products of 8 columns).
            parts = [(i, members[(members >= a) & (members < b)])
                     for i, (_, members) in enumerate(classes)]
            parts = [(i, inside) for i, inside in parts if len(inside)]
            # (total, tiles, nw, lanes), the tiles class by class (each class's columns one
            # slice), decoded into the product's type where that is known already.
            wint, derived, slots = self.distinct_weight_ints(
                widx, a, b, np.concatenate([m for _, m in parts]) - a,
                np.float32 if runs else None if tighten else dtype, widx_key)
            if tighten:
                # sum_j |x_j w_j| <= max|x| * (the largest column sum of |w|): tighter than
                # max|x| max|w| total, and what lets 8-bit 3x3x128 windows use float32 (see
                # exact_dtype).  Column sums of |w| are exact in float32 below 2^24.
                if "abs sum" not in derived:
                    wsum = np.abs(wint).sum(axis=0, dtype=np.float32
                                            if total * max_abs < EXACT_F32 else np.float64)
                    derived["abs sum"] = int(wsum.max())
                dtype = exact_dtype(xmax * derived["abs sum"])
            in_runs = runs and dtype is np.float64
            if in_runs:
                dtype = np.float32
            first = 0
            for i, inside in parts:
                key = (i, dtype)
                if key not in windows:
                    rep = classes[i][0]
                    src: Any = region[rep: rep + 1]
                    src = src.astype(np.int64 if dtype is None else dtype)
                    windows[key] = self.gather_x(src, xrel, segs)[0]  # (nx, total)
                xmat, k = windows[key], len(inside)
                mine = slots[first: first + k]
                first += k
                # A row band's channel blocks: their distinct weights side by side (a view).
                w = (wint[:, mine[0]: mine[0] + k] if mine[-1] - mine[0] == k - 1
                     and (k < 3 or np.all(np.diff(mine) == 1)) else wint[:, mine]
                     ).reshape(total, k * wide)
                if in_runs:
                    part = np.zeros((nx, k * wide))
                    for j in range(0, total, run):
                        part += xmat[:, j: j + run] @ w[j: j + run]
                else:
                    part = xmat @ w.astype(xmat.dtype, copy=False)
                dest[inside] = part.reshape(nx, k, nw, c.lanes).transpose(1, 0, 2, 3)
        # Exact integers (every partial sum is under the bound) when a float type was used.
        acc = cols(prod, inv) if gather else prod
        # Where A's bounds are known and the sums keep it inside the accumulator's range the
        # wrap changes nothing (a window's sum on its bias, mostly).
        r = s.acc_range
        if r != (0, 0):  # else A is zero: nothing to add
            acc += s.acc
        reach = xmax * max_abs * total
        top = 1 << (c.acc_bits - 1)
        if r is not None and -top <= r[0] - reach and r[1] + reach < top:
            s.set_acc(acc, (r[0] - reach, r[1] + reach))
        else:
            s.acc = wrap_inplace(acc, c.acc_bits)
        self.defer_wp(s, last_w, last_x)
        s.regs = after
        for m in g.tallies:
            self.tally(m, n)
        self.tally(isa.LOOP.mnemonic, n * g.loops)
        self.dot_traffic(n * total, g.step)
        return True

    def distinct_weight_ints(self, idx: I64, first: int, end: int, order: I64, dtype: Any,
                             idx_key: int) -> tuple[Any, dict[str, Any], I64]:
        """The integers of the WMEM codes at ``idx`` of the tiles first..end in ``order``
        (positions from ``first``), each distinct weight array's once (the row bands of a
        layer share their channel blocks' arrays: ResNet-18's decoded weights held 16 copies
        of its first layer's): (idx.shape[0], distinct arrays in the order they first
        appear, *idx.shape[1:], lanes), figures derived from it, and each position of
        ``order`` there.  As :meth:`weight_ints` decodes them, and kept as long."""
        twin = self.tiles.weight_twin[first + order]
        if len(twin) < 2 or bool(np.all(twin[1:] > twin[:-1])):  # every tile's own weights
            value, derived = self.weight_ints(idx, first, end, dtype, order, idx_key)
            return value, derived, np.arange(len(order))
        _, at, where = np.unique(twin, return_index=True, return_inverse=True)
        rank = np.empty(len(at), np.int64)
        rank[np.argsort(at, kind="stable")] = np.arange(len(at))
        value, derived = self.weight_ints(idx, first, end, dtype, order[np.sort(at)], idx_key)
        return value, derived, rank[where.reshape(-1)]

    def group_plan(self, g: Group, regs: I64) -> tuple[Any, ...] | None:
        """What :meth:`group` works out from the registers alone (recorded for the commit
        rule): the windows' start addresses (distinct, runs) from the lowest AMEM address
        read, that address and the highest, the weight addresses (total, distinct runs) and
        their bytes' hash, each instance's product row, how the product's rows are ordered,
        the last terms' addresses and the registers after; None when the run does not fit
        one product."""
        c, n, segs = self.c, regs.shape[0], g.segments
        total = sum(seg.count for seg in segs)
        xs = self.group_side(regs, [(seg.pre, seg.rx, seg.steps[1], seg.count) for seg in segs],
                             c.amem_depth)
        ws = self.group_side(regs, [(seg.pre, seg.rw, seg.steps[0], seg.count) for seg in segs],
                             c.wmem_depth)
        if xs is None or ws is None:
            return None
        (xstart, xinv, xlo, xhi), (wstart, winv, _, _) = xs, ws
        nx, nw, t = xstart.shape[0], wstart.shape[0], self.ntiles
        # Windows are gathered once per class of tiles with equal regions (same_rows), so
        # their memory does not grow with the tiles; the weights' integers do, for every tile.
        if (nx * nw > 2 * n or nx * total > 8 * MAX_INSTANCES
                or t * nw * total * c.lanes > 8 * MAX_INSTANCES):
            return None
        widx = np.ascontiguousarray(np.concatenate(
            [wstart[:, i, None] + np.arange(seg.count) * seg.steps[0]
             for i, seg in enumerate(segs)], axis=1).T)  # (total, nw)
        # Instances in a plain order (weight runs outer: a convolution's channel blocks; or
        # windows outer) take the product's rows straight; any other order gathers them.
        ident = np.arange(n, dtype=np.int64)
        inv = xinv * nw + winv
        if np.array_equal(winv * nx + xinv, ident):
            order = "weights outer"
        else:
            order = "gather" if not np.array_equal(inv, ident) else "windows outer"
        last = segs[-1]
        last_x = xstart[xinv, -1] + (last.count - 1) * last.steps[1]
        last_w = wstart[winv, -1] + (last.count - 1) * last.steps[0]
        for i, seg in enumerate(segs):
            self.reads.append((xstart[:, i], seg.count, seg.steps[1]))
        return (xstart - xlo, xlo, xhi, widx, hash(widx.tobytes()), inv, order, last_x, last_w,
                g.transfer.apply(regs))

    @staticmethod
    def group_side(regs: I64, runs: list[tuple[Transfer, int, int, int]],
                   depth: int) -> tuple[I64, I64, int, int] | None:
        """Start addresses of every run, (distinct, runs), each instance's row and the lowest
        and highest address read, when all runs hang off one register (or are constant) and
        none wraps or leaves memory."""
        srcs = {pre.src[r] for pre, r, _, _ in runs} - {-1}
        if len(srcs) > 1:
            return None
        if srcs:
            key, inv = factorize(regs[:, srcs.pop()])
        else:
            key, inv = np.zeros(1, np.int64), np.zeros(regs.shape[0], np.int64)
        starts = np.empty((len(key), len(runs)), np.int64)
        low, high = depth, -1
        for i, (pre, r, step, count) in enumerate(runs):
            a = (key + pre.add[r]) & MASK if pre.src[r] >= 0 else np.full(len(key), pre.add[r])
            lo = int(a.min()) + min(0, (count - 1) * step)
            hi = int(a.max()) + max(0, (count - 1) * step)
            if lo < 0 or hi >= depth:
                return None
            starts[:, i] = a
            low, high = min(low, lo), max(high, hi)
        return starts, inv.reshape(-1), low, high

    @staticmethod
    def gather_x(src: I64, starts: I64, segs: tuple[Segment, ...]) -> I64:
        """(tiles, distinct windows, total) activations: run i of window u in tile t is
        src[t, starts[u, i] + j*dx]."""
        counts = {seg.count for seg in segs}
        dxs = {seg.steps[1] for seg in segs}
        if len(counts) == 1 and len(dxs) == 1 and min(dxs) > 0:
            k, dx = counts.pop(), dxs.pop()
            view = np.lib.stride_tricks.sliding_window_view(src, (k - 1) * dx + 1,
                                                            axis=-1)[..., ::dx]
            return cols(view, starts).reshape(len(src), len(starts), -1)
        idx = np.concatenate([starts[:, i, None] + np.arange(seg.count) * seg.steps[1]
                              for i, seg in enumerate(segs)], axis=1)
        return cols(src, idx)

    @staticmethod
    def affine(start: I64, k: int, step: int, depth: int) -> I64 | None:
        """Addresses start + j*step (j < k), range-checked.  None when they never wrap past
        2^16 (the common case): callers then index with slices and strides instead."""
        lo = int(start.min()) + min(0, (k - 1) * step)
        hi = int(start.max()) + max(0, (k - 1) * step)
        if lo >= 0 and hi <= MASK:
            if hi >= depth:
                raise GiveUp
            return None
        out = (start[:, None] + np.arange(k, dtype=np.int64) * step) & MASK
        if int(out.max()) >= depth:
            raise GiveUp
        return out

    def dots(self, x0: I64, dx: int, ax: I64 | None, w0: I64, dw: int, aw: I64 | None,
             k: int) -> I64:
        """out[t, i, l] = sum_j x[t, i, j] * wint[t, aw[i, j], l] with x[t, i, j] = AMEM of
        tile t at ax[i, j], exact.

        Instances are rows of (distinct activation runs) x (distinct weight runs): when
        those pairs cover the instances with little waste (a convolution: pixels x channel
        blocks) it is one matrix product, as im2col would do.  float64 is used only when the
        bound on every partial sum is below 2^53; otherwise int64, whose wrap modulo 2^64
        cannot change the low acc_bits bits the accumulator keeps."""
        n, lanes, t = len(x0), self.c.lanes, self.ntiles
        j = np.arange(k, dtype=np.int64)
        if ax is None and aw is None:
            ux, xinv = factorize(x0)
            uw, winv = factorize(w0)
            if len(ux) * len(uw) <= 2 * n:
                # ax is None: every address is inside AMEM without wrapping (see affine).
                lo = int(ux[0]) + min(0, (k - 1) * dx)
                src = self.exact_region(lo, int(ux[-1]) + max(0, (k - 1) * dx), k)
                exact = src.dtype != np.int64
                if dx == 1:
                    xs = cols(np.lib.stride_tricks.sliding_window_view(src, k, axis=-1),
                              ux - lo)
                else:
                    xs = cols(src, ux[:, None] - lo + j * dx)
                codes = cols(self.wmem, (uw[:, None] + j * dw) & MASK)  # (t, G, k, lanes)
                wall = code_ints(codes, self.c.exp_bits, self.c.weights).astype(src.dtype)
                self.serial_blas()
                prod = xs @ wall.transpose(0, 2, 1, 3).reshape(t, k, -1)
                if exact:
                    prod = np.rint(prod).astype(np.int64)
                return cols(prod.reshape(t, len(ux) * len(uw), lanes),
                            xinv.reshape(-1) * len(uw) + winv.reshape(-1))
        aw = aw if aw is not None else (w0[:, None] + j * dw) & MASK
        xs = cols(self.amem0, ax if ax is not None else x0[:, None] + j * dx).astype(np.int64)
        out = np.empty((t, n, lanes), np.int64)
        chunk = max(1, (1 << 22) // max(1, t * k * lanes))
        for i in range(0, n, chunk):
            wint = self.weight_ints(aw[i: i + chunk])[0].astype(np.int64, copy=False)
            out[:, i: i + chunk] = np.einsum("tij,tijl->til", xs[:, i: i + chunk], wint)
        return out

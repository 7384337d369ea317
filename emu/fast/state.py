"""The typed state of a batch: per-instance registers and lane registers, plus what the batch
reads (AMEM snapshot, tables derived from WMEM and BMEM) and records (counters, addresses,
deferred stores).

A batch may drive several machines at once (:class:`Tiles`): images with one text take the
same path through it (control flow, registers, addresses, counters and faults never depend on
data), so only the data carries a leading tile axis."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import isa
from contract import weights as wformats
from contract.blas import one_blas_thread
from contract.config import AccelConfig
from contract.image import Image
from contract.semantics import req_fields

from ..machine import Machine, new_counters
from . import prepacked
from .nest import GiveUp
from .placement import Bands, Placement
from .plan import Recording

I64 = NDArray[np.int64]
# Largest number of instances a nested loop may expand to; beyond it iterations run in turn.
MAX_INSTANCES = 1 << 21
# Integers whose sums stay below these bounds are exact in float32 and float64.
EXACT_F64 = 1 << 53
EXACT_F32 = 1 << 24


class Tiles:
    """Machines for images with one program text, run in lockstep: the first one's control
    state stands for all.  Their memories are stacked, (tiles, depth[, lanes]), and each
    machine's AMEM and WMEM are views of the stacks, so step mode's in-place stores and a
    batch's commit write the same arrays (BMEM, never written, is a copy of the stack's rows
    over the whole depth)."""

    def __init__(self, images: list[Image], config: AccelConfig | None = None,
                 bands: list[Bands] | None = None):
        c = config or images[0].config
        t = len(images)
        # np.zeros maps untouched pages lazily: only what the images hold is written.  AMEM
        # in the activations' own width (its every value is one: images are checked, stores
        # wrap): an eighth of int64's bytes to gather (ResNet-18's image 0.49 -> 0.39 s).
        self.amem = np.zeros((t, c.amem_depth), c.act_storage)
        self.images, self.config = images, config
        # What WMEM and BMEM are filled from (emu.fast.prepacked keeps what is derived).
        self.weight_arrays = [im.weights for im in images]
        self.param_arrays = [im.params for im in images]
        if config is not None:
            for im in images:
                im.check_config(config)  # before placing: a foreign image may not fit
        self.placement = Placement(self.amem, [[(im.acts_base, im.acts),
                                                *(bands[i] if bands else ())]
                                               for i, im in enumerate(images)], c)
        # WMEM in the images' own code type (a compiled network's are uint8): read only
        # through code tables and copies to int64, so a narrow stack loads faster.  WMEM and
        # BMEM are never written: the stacks are read-only and kept across runs.
        wtype = np.result_type(*(im.weights.dtype for im in images))
        wtype = wtype if wtype.kind == "u" and wtype.itemsize <= 4 else np.dtype(np.int64)
        self.wmem, derived = prepacked.stacked(self.weight_arrays, c.wmem_depth, c.lanes, wtype)
        # Tiles whose weights are one array's memory (a channel block's, over every row band
        # of the layer) hold equal WMEM: each tile's distinct array, the first tile of each.
        if "distinct" not in derived:
            where: dict[tuple[Any, ...], int] = {}
            slot = [where.setdefault((w.__array_interface__["data"][0], w.shape, w.strides,
                                      w.dtype.str), i) for i, w in enumerate(self.weight_arrays)]
            derived["distinct"] = np.array(slot, np.int64)
        self.weight_twin = derived["distinct"]  # the first tile with the same weights
        # BMEM only to the longest parameter image and one zero word after it (16 KB a tile
        # in full, where a tile's parameters take a few rows): every address from there on
        # reads that row (:meth:`BatchBase.bmem_row`).
        self.bmem_rows = min(c.bmem_depth, max((len(p) for p in self.param_arrays),
                                               default=0) + 1)
        self.bmem = prepacked.stacked(self.param_arrays, self.bmem_rows, c.lanes,
                                      np.dtype(np.int64))[0]
        self.mach = self._machine(0)
        # The other machines are made when step mode first touches data (followers): until
        # then the first one's control state and the stacked memories and lanes are all of
        # theirs (ResNet-18's 877 tiles spent 11 ms an image making machines).
        self._machs: list[Machine] | None = [self.mach] if t == 1 else None
        self.written: tuple[int, int] | None = None  # lowest and highest AMEM address written

    def _machine(self, i: int) -> Machine:
        c = self.config or self.images[i].config
        bmem = np.zeros((c.bmem_depth, c.lanes), np.int64)  # step mode reads the whole depth
        bmem[: self.bmem_rows] = self.bmem[i]
        mems = {"wmem": self.wmem[i], "bmem": bmem, "amem": self.amem[i]}
        return Machine(self.images[i], self.config, mems)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def followers_made(self) -> bool:
        return self._machs is not None

    @property
    def machs(self) -> list[Machine]:
        """Every tile's machine, the first one's control state not yet given to the others
        made here (the runner's sync does that)."""
        if self._machs is None:
            self._machs = [self.mach] + [self._machine(i) for i in range(1, len(self.images))]
        return self._machs

    def mark_written(self, lo: int, hi: int) -> None:
        """AMEM[lo..hi] (of every tile: they run in lockstep) may have been written."""
        w = self.written
        self.written = (lo, hi) if w is None else (min(w[0], lo), max(w[1], hi))

    def before_step(self, mach: Machine) -> None:
        """Note what the instruction at ``mach``'s pc writes to AMEM when step mode runs it
        (the addresses step mode will check, from the registers before the step)."""
        prog, pc = mach.prog, mach.pc
        if not 0 <= pc < len(prog.instrs):
            return
        ins, f = prog.instrs[pc], prog.fields[pc]
        for p in ins.pointers:
            if p.writes and p.memory == "AMEM":
                served = f[isa.LANES_FIELD] if ins.serves_lanes else self.mach.config.lanes
                a = mach.regs[f[p.register]]
                self.mark_written(a, a + (served if p.per_lane else 1) - 1)

    def placed_classes(self, lo: int, hi: int) -> list[I64] | None:
        """Tiles whose AMEM[lo..hi] are equal because they placed the same pieces there
        (:meth:`Placement.classes`) and nothing has been written there since; None where
        that tells nothing (every tile apart, or written)."""
        w = self.written
        if w is not None and w[0] <= hi and lo <= w[1]:
            return None
        return self.placement.classes(lo, hi)


class Deferred:
    """Lane register values of every instance, made only when read, and then only for the
    instances asked for: ``make(rows)`` gives (tiles, len(rows), lanes), every instance for
    None.  A fused product leaves W and P as two gathers and a product per instance, which
    the next window overwrites unread: only a loop's last instance reaches the machine."""

    def __init__(self, make: Callable[[I64 | None], I64]):
        self.make = make

    def rows(self, idx: I64) -> Deferred:
        """The instances ``idx`` of these, still deferred."""
        make = self.make
        return Deferred(lambda r: make(idx if r is None else idx[r]))


def _made(v: I64 | Deferred) -> I64:
    return v.make(None) if isinstance(v, Deferred) else v


class Lanes:
    """Instance state: one row per instance of registers (n, NUM_REGS), shared by the tiles,
    and A, W and P per tile and instance (tiles, n, lanes); W and P may be :class:`Deferred`
    until read.  ``acc_range``: bounds (lo, hi) known to hold every value of A, or None;
    any assignment to ``acc`` forgets them, :meth:`set_acc` gives them.

    Arrays are replaced, never written in place, so that instances may share them."""

    __slots__ = ("regs", "_acc", "acc_range", "_w", "_p")
    regs: I64
    _acc: I64
    acc_range: tuple[int, int] | None
    _w: I64 | Deferred
    _p: I64 | Deferred

    def __init__(self, regs: I64, acc: I64, w: I64 | Deferred, p: I64 | Deferred,
                 acc_range: tuple[int, int] | None = None):
        self.regs, self._w, self._p = regs, w, p
        self.set_acc(acc, acc_range)

    @property
    def acc(self) -> I64:
        return self._acc

    @acc.setter
    def acc(self, v: I64) -> None:
        self._acc, self.acc_range = v, None

    def set_acc(self, v: I64, known: tuple[int, int] | None) -> None:
        """A, with bounds on its values (None: none known)."""
        self._acc, self.acc_range = v, known

    def acc_within(self, lo: int, hi: int) -> bool:
        """Whether every value of A is known to lie in lo..hi."""
        r = self.acc_range
        return r is not None and lo <= r[0] and r[1] <= hi

    @property
    def w(self) -> I64:
        self._w = _made(self._w)
        return self._w

    @w.setter
    def w(self, v: I64 | Deferred) -> None:
        self._w = v

    @property
    def p(self) -> I64:
        self._p = _made(self._p)
        return self._p

    @p.setter
    def p(self, v: I64 | Deferred) -> None:
        self._p = v

    def settle(self) -> None:
        """Make deferred W and P now."""
        self._w, self._p = self.w, self.p

    def held(self, state: str) -> I64 | Deferred:
        """W or P as held, deferred or not."""
        return self._w if state == "W" else self._p

    @staticmethod
    def of(tiles: Tiles) -> Lanes:
        if not tiles.followers_made:  # no data touched yet: every machine's lanes are zero
            shape = (len(tiles), 1, tiles.mach.config.lanes)
            return Lanes(np.array([tiles.mach.regs], np.int64), np.zeros(shape, np.int64),
                         np.zeros(shape, np.int64), np.zeros(shape, np.int64))
        ms = tiles.machs
        return Lanes(np.array([tiles.mach.regs], np.int64),
                     np.stack([m.acc for m in ms])[:, None], np.stack([m.w for m in ms])[:, None],
                     np.stack([m.p for m in ms])[:, None])

    @property
    def instances(self) -> int:
        return int(self.regs.shape[0])


_INT_TABLES: dict[tuple[str, int, str], Any] = {}


def code_ints(codes: I64, exp_bits: int, weights: str = wformats.DEFAULT,
              dtype: Any = np.int64) -> Any:
    """The weight format's ``to_int`` (two-digit codes by default) by table lookup: a code's
    value depends only on its low code_bits bits, so one table of 2^code_bits entries gives
    the same integers.  ``dtype``: of the result (float32 only where it holds them exactly)."""
    key = (weights, exp_bits, np.dtype(dtype).str)
    if key not in _INT_TABLES:
        fmt = wformats.get(weights)
        every = np.arange(1 << fmt.code_bits(exp_bits), dtype=np.int64)
        ints = fmt.to_int(every, exp_bits).astype(np.int64)
        table = ints.astype(dtype)
        if not np.array_equal(table, ints):
            raise ValueError(f"{np.dtype(dtype)} cannot hold every code's integer exactly")
        _INT_TABLES[key] = table
    table = _INT_TABLES[key]
    mask = len(table) - 1
    codes = np.asarray(codes)
    if codes.dtype.kind == "u" and np.iinfo(codes.dtype).max <= mask:
        return np.take(table, codes)  # every value is an index already
    return np.take(table, codes.astype(np.int64, copy=False) & mask)


def lane_products(x: Any, w: I64, c: AccelConfig) -> I64:
    """``sa(x, W)`` of activations ``x`` and codes ``w``: x times each code's integer, exact
    (an activation's product never wraps), by one table lookup where shift_add, the
    definition, takes about ten passes."""
    return np.asarray(x, np.int64) * code_ints(w, c.exp_bits, c.weights)


def cols(stack: Any, idx: Any) -> Any:
    """``stack[:, idx]`` for a stack with a leading tile axis: by np.take where the stack is
    C-contiguous (numpy's fancy indexing behind a slice took 20-40x longer on a stack of a
    thousand tiles, measured here: 1344 x 8192 int64, 5000 columns gathered in 990 ms against
    27 ms); by fancy indexing on a strided view, which np.take would first copy whole."""
    if stack.flags.c_contiguous:
        return np.take(stack, idx, axis=1)
    return stack[:, idx]


def put_cols(stack: I64, idx: I64, vals: I64) -> None:
    """``stack[:, idx] = vals`` for a C-contiguous (tiles, depth) stack and distinct ``idx``
    (see :func:`put_plan`)."""
    put_planned(stack, put_plan(idx), vals)


PutPlan = tuple[int, int, I64 | None, I64 | None]


def put_plan(idx: I64) -> PutPlan:
    """How :func:`put_planned` writes at the distinct addresses ``idx``: (lowest, highest,
    the inverse permutation of lowest..highest or None for one ascending run, the flat
    addresses otherwise or None).  A slice when ``idx`` is one ascending run; a slice filled
    by a gather through the inverse permutation when ``idx`` covers one range in another
    order (a layer's stores: channel blocks outer, pixels inner; 2.4x faster than the put,
    1344 x 5600 stores of 16 tiles); else a put at flat indices (the fancy assignment took
    530 ms where this takes 46 ms).  Addresses only: kept with a batch's recording."""
    idx = np.asarray(idx).reshape(-1)
    if not len(idx):
        return 0, -1, None, None
    lo, hi = int(idx.min()), int(idx.max())
    if hi - lo + 1 == len(idx):  # distinct, so a permutation of lo..hi
        if int(idx[0]) == lo and bool(np.all(np.diff(idx) == 1)):
            return lo, hi, None, None
        inverse = np.empty(len(idx), np.int64)
        inverse[idx - lo] = np.arange(len(idx))
        return lo, hi, inverse, None
    return lo, hi, None, idx


def put_planned(stack: I64, plan: PutPlan, vals: I64) -> None:
    """``stack[:, idx] = vals`` by the ``plan`` of ``idx`` (:func:`put_plan`)."""
    lo, hi, inverse, flat = plan
    if hi < lo:
        return
    vals = vals.reshape(len(stack), -1)
    if flat is not None:
        assert stack.flags.c_contiguous
        rows = np.arange(len(stack), dtype=np.int64)[:, None] * stack.shape[1]
        np.put(stack, rows + flat, vals)
    elif inverse is not None:
        stack[:, lo: hi + 1] = np.take(vals, inverse, axis=1)
    else:
        stack[:, lo: hi + 1] = vals


def zeros(t: int, n: int, lanes: int) -> I64:
    """Lane registers of n instances per tile all zero, as a read-only view of one zero."""
    return np.broadcast_to(np.zeros((1, 1, 1), np.int64), (t, n, lanes))


def wrap_inplace(v: I64, bits: int) -> I64:
    """semantics.wrap, in place on a fresh int64 array."""
    half = 1 << (bits - 1)
    v += half
    v &= (1 << bits) - 1
    v -= half
    return v


def factorize(v: I64) -> tuple[I64, I64]:
    """np.unique(v, return_inverse=True), faster on the nearly sorted register columns of
    expanded instances (a stable sort finds the runs)."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    new = np.empty(len(sv), bool)
    new[:1] = True
    np.not_equal(sv[1:], sv[:-1], out=new[1:])
    inv = np.empty(len(v), np.int64)
    inv[order] = np.cumsum(new) - 1
    return sv[new], inv


def exact_dtype(bound: int) -> Any:
    """float32 or float64 when integer sums whose absolute values add up to less than
    ``bound`` are exact in it, else None (int64).  Then every product and every partial sum,
    in any order a BLAS may take, is an integer under the bound, which the type holds exactly
    (a fused multiply-add rounds to it, exactly)."""
    for limit, dtype in ((EXACT_F32, np.float32), (EXACT_F64, np.float64)):
        if bound < limit:
            return dtype
    return None


class BatchBase:
    """What a batch reads and records, below the instruction semantics and the products."""

    def __init__(self, tiles: Tiles, tables: dict[str, Any], rec: Recording | None = None):
        self.tiles = tiles
        # What the batch works out from registers alone, replayed when kept (emu.fast.plan).
        self.rec = rec if rec is not None else Recording()
        self.mach = mach = tiles.mach
        self.c: AccelConfig = mach.config
        self.ntiles = len(tiles)
        # Stores are kept aside (address, values per tile) and written at commit; reads see
        # AMEM as it was when the batch started (the commit rule guarantees that nothing the
        # batch reads is written by it), so they read the stack itself.
        self.amem0 = tiles.amem
        self.wmem, self.bmem = tiles.wmem, tiles.bmem
        self.stores: list[tuple[I64, I64]] = []
        self.cnt = new_counters()
        # Read addresses as (start, count, step): start[i] + j*step for j < count.
        self.reads: list[tuple[I64, int, int]] = []
        # Write addresses as (start, count): start[i] + j for j < count.
        self.writes: list[tuple[I64, int]] = []
        # Tables derived from WMEM and BMEM, which no instruction writes: kept for the run.
        self.tables = tables
        self.resources = ExitStack()  # closed by whoever runs the batch
        self._serial = False

    def serial_blas(self) -> None:
        """Enter single-threaded BLAS for the rest of the batch (before its first product)."""
        if not self._serial:
            self._serial = True
            self.resources.enter_context(one_blas_thread())

    def weight_ints(self, idx: I64, first: int = 0, end: int | None = None,
                    dtype: Any = None, order: I64 | None = None, idx_key: int | None = None
                    ) -> tuple[Any, dict[str, Any]]:
        """The integers of the WMEM codes at ``idx`` of the tiles first..end (every tile by
        default), (tiles, *idx.shape, lanes), or given the tiles' ``order`` (positions from
        ``first``) (idx.shape[0], tiles in that order, *idx.shape[1:], lanes), as ``dtype``
        when given and exact, else float32 when that holds every code's integer exactly (it
        does for the shipped formats), else int64; read-only, kept across runs
        (emu.fast.prepacked), with a dict for figures derived from them.  The codes are
        gathered first: they are narrow.  ``idx_key``: ``hash(idx.tobytes())``, if known."""
        c = self.c
        top = c.weight_format.max_abs(c.exp_bits)
        if dtype is None or (dtype is np.float32 and top >= EXACT_F32) or (
                dtype is np.float64 and top >= EXACT_F64):
            dtype = np.float32 if top < EXACT_F32 else np.int64
        wmem = self.wmem[first:end]
        setting = (c.wmem_depth, c.lanes, c.exp_bits, c.weights, np.dtype(dtype).str,
                   None if order is None else order.tobytes())

        def make() -> Any:
            if order is None:
                return code_ints(cols(wmem, idx), c.exp_bits, c.weights, dtype)
            # Only those tiles' codes, gathered while narrow (a byte a code, not four).
            codes = np.moveaxis(wmem[order[:, None, None], idx[None]], 0, 1)
            return code_ints(np.ascontiguousarray(codes), c.exp_bits, c.weights, dtype)

        return prepacked.decoded(self.tiles.weight_arrays[first:end], idx, setting, make,
                                 idx_key=idx_key)

    def requant_tables(self) -> tuple[I64, I64, I64, Any]:
        """Per BMEM row that a REQ may read, as its parameter: the code's integer ``m``, the
        shift ``s``, the rounding half (2^(s-1), or 0 for s = 0), and ``m 2^-s`` in float64
        (None where some ``|acc m|`` may reach 2^52), so that ``floor(acc * scale + 1/2)``
        is ``(acc m + 2^(s-1)) >> s`` exactly (for s = 0 too: acc m is an integer): every
        step is an integer times a power of two below 2^53.  Rows past the longest parameter
        image all hold the zero word: the tables end with one of them, the row of every
        address from there on (a REQ reads row ``min(address, rows - 1)``).  Kept across runs
        (emu.fast.prepacked)."""
        if "req" in self.tables:  # a REQ in every window: looked up once a run
            return self.tables["req"]  # type: ignore[no-any-return]
        c = self.c
        rows = self.tiles.bmem_rows

        def make() -> I64:
            code, shift = req_fields(self.bmem, c.code_bits)  # rows: bmem_rows
            half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
            return np.stack([code_ints(code, c.exp_bits), shift, half])

        tables, derived = prepacked.decoded(self.tiles.param_arrays, prepacked.NO_INDEX,
                                            ("req", rows, c.lanes, c.code_bits, c.exp_bits),
                                            make)
        mult, shift, half = tables
        if "scale" not in derived:
            top = int(np.abs(mult).max()) if mult.size else 0
            derived["scale"] = (mult * np.exp2(-shift.astype(np.float64))
                                if (1 << (c.acc_bits - 1)) * top < 1 << 52 else None)
        self.tables["req"] = mult, shift, half, derived["scale"]
        return self.tables["req"]  # type: ignore[no-any-return]

    def bmem_row(self, q: I64) -> I64:
        """The row of the BMEM stack each address of ``q`` reads: the stack ends with a zero
        word (or BMEM), and every address past the parameters reads it."""
        return np.minimum(q, self.tiles.bmem_rows - 1)

    def bmem_range(self) -> tuple[int, int]:
        """The lowest and highest BMEM word of every tile (kept for the run)."""
        if "bmem range" not in self.tables:
            b = self.bmem
            self.tables["bmem range"] = (int(b.min()), int(b.max())) if b.size else (0, 0)
        return self.tables["bmem range"]  # type: ignore[no-any-return]

    def exact_region(self, lo: int, hi: int, k: int) -> I64:
        """AMEM[lo..hi] of every tile, (tiles, hi - lo + 1), in the narrowest type whose
        k-term dot products with any weights are exact (see exact_dtype)."""
        region = self.amem0[:, lo: hi + 1]
        xmax = max(int(region.max()), -int(region.min()))
        dtype = exact_dtype(xmax * self.c.weight_format.max_abs(self.c.exp_bits) * k)
        return region.astype(np.int64 if dtype is None else dtype)

    def tally(self, mnemonic: str, times: int, cycles: int = 1) -> None:
        if self.rec.replaying:  # the recorded counters stand
            return
        self.cnt["cycles"] += times * cycles
        self.cnt["instructions"] += times
        self.cnt["ops"][mnemonic] += times

    def count(self, traffic: dict[str, int], times: int) -> None:
        """Add ``times`` executions' memory traffic and shift-adds (see isa.traffic)."""
        if self.rec.replaying:
            return
        for key, v in traffic.items():
            self.cnt[key] += times * v

    def addr(self, regs: I64, r: int, depth: int, span: int = 1) -> I64:
        a = regs[:, r]
        if a.size and int(a.max()) + span > depth:
            raise GiveUp
        return a

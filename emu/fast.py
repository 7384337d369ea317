"""Fast mode: whole loop nests executed as numpy array operations, bit-identical to step mode.

Why this is possible at all: control flow is static (LOOP counts are immediates, there are no
branches) and the address registers only change through SETI, ADDI and constant
post-increments.  So every loop's trip count, every register value, every address and every
counter is fixed before any data is looked at; only AMEM, the accumulators, W and P carry data.

How it works.  The step interpreter (:class:`emu.emulator.Machine`) drives the run.  When it
reaches a LOOP, the loop nest is parsed (with the same structural checks step mode makes) and
executed over a batch of *instances*: one instance per iteration, each with its own registers,
accumulators, W and P, executing the body instruction by instruction across all instances at
once.  An iteration's starting registers come from the body's register transfer function
(affine with copies) by repeated doubling.  A nested loop becomes more instances when its
iterations do not depend on each other through A, W or P (each is either killed before it is
read, only read, or, for A, only added to: modular sums can be summed in any order); otherwise its
iterations run one after another over the batch.  A loop whose body is a single MAC is a dot
product and becomes a matrix product (float32 when every partial sum is provably below 2^24,
float64 below 2^53, int64 otherwise: its wrap modulo 2^64 keeps the accumulator's low bits).

Sibling MAC loops are fused: a run of a body's items made only of MAC-only loops and
SETI/ADDI/NOP (a convolution window: one MAC loop per kernel row, a register step between
them) adds one sum of dot products to A and leaves W and P from its last MAC.  The run's
register transfer gives every loop's start addresses as (one register + a constant), so the
instances factor into (distinct windows) x (distinct weight runs), and the run is ONE matrix
product of gathered windows (a strided view of AMEM when all runs have one length and step)
by the weights, as im2col does.  Runs that do not fit (addresses that wrap past 2^16 or leave
memory, windows hanging off two registers, instances that do not factor) execute item by item.
Facts about the text (parsed nests, runs, transfer compositions) are cached per program text, so
the tiles of one layer analyse it once; tables derived from WMEM and BMEM (code integers, REQ
multipliers) are kept for the run, since no instruction writes those memories.  A batch runs
its products with BLAS limited to one thread (threadpoolctl, when installed): they are small,
and waking or spinning worker threads costs more than they give (see asd.blas).

Memory ordering is made irrelevant rather than reproduced: a batch is committed only if no
address is written twice and no address it reads is written (checked on sorted write runs, or
on a bitmap of AMEM when the runs differ in width).  Anything the batch cannot prove
(a fault, a conflict, HALT in a body, a cycle limit inside the nest) makes it give up without
side effects, and step mode executes the LOOP instruction itself, so errors are step mode's
own, with the same pc.  Loops that would cross the cycle limit are batched for as many whole
iterations as fit, then stepped.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import hwcode, isa
from contract.blas import one_blas_thread
from contract.config import AccelConfig
from contract.image import Image
from contract.semantics import leaky, req_fields, shift_add, wrap

from .emulator import (
    DEFAULT_MAX_CYCLES,
    Machine,
    RunResult,
    cycle_limit_fault,
    new_counters,
)

I64 = NDArray[np.int64]
_MASK = 0xFFFF
# Largest number of instances a nested loop may expand to; beyond it iterations run in turn.
_MAX_INSTANCES = 1 << 21
# Dynamic instructions per batch: bounds the recorded addresses (memory) of one batch.
_MAX_DYNAMIC = 1 << 24
_EXACT_F64 = 1 << 53
_EXACT_F32 = 1 << 24

_N_KIND = {"VLD", "VMAX", "VMAC", "STORE"}


_INT_TABLES: dict[int, I64] = {}
# REQ tables of a BMEM image, by its bytes: the tiles of one layer share their parameters.
_REQ_TABLES: dict[tuple[bytes, int], tuple[I64, I64, I64]] = {}


def _code_ints(codes: I64, exp_bits: int) -> I64:
    """hwcode.to_int by table lookup: a code's value depends only on its low code_bits bits
    (the fields split reads), so one table of 2^code_bits entries gives the same integers."""
    if exp_bits not in _INT_TABLES:
        every = np.arange(1 << hwcode.code_bits(exp_bits), dtype=np.int64)
        _INT_TABLES[exp_bits] = hwcode.to_int(every, exp_bits).astype(np.int64)
    table = _INT_TABLES[exp_bits]
    return table[np.asarray(codes, np.int64) & (len(table) - 1)]


def _wrap_inplace(v: I64, bits: int) -> I64:
    """semantics.wrap, in place on a fresh int64 array."""
    half = 1 << (bits - 1)
    v += half
    v &= (1 << bits) - 1
    v -= half
    return v


def _factorize(v: I64) -> tuple[I64, I64]:
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


class _GiveUp(Exception):
    """The batch cannot prove it would match step mode; step the LOOP instead."""


# Register transfer functions: out[i] = (R[src[i]] + add[i]) mod 2^16, or add[i] if src[i] < 0.
@dataclass(frozen=True)
class _Transfer:
    src: tuple[int, ...]
    add: tuple[int, ...]

    @staticmethod
    def identity() -> _Transfer:
        return _Transfer(tuple(range(isa.NUM_REGS)), (0,) * isa.NUM_REGS)

    def then(self, other: _Transfer) -> _Transfer:
        """``other`` applied after ``self`` (memoized: the same compositions recur per run)."""
        return _then(self, other)

    def _then(self, other: _Transfer) -> _Transfer:
        src, add = [], []
        for s, a in zip(other.src, other.add):
            if s < 0:
                src.append(-1)
                add.append(a)
            else:
                src.append(self.src[s])
                add.append((self.add[s] + a) & _MASK)
        return _Transfer(tuple(src), tuple(add))

    def power(self, k: int) -> _Transfer:
        out, base = _Transfer.identity(), self
        while k:
            if k & 1:
                out = out.then(base)
            base = base.then(base)
            k >>= 1
        return out

    @cached_property
    def _arrays(self) -> tuple[I64, I64, Any]:
        src = np.array(self.src)
        const = src < 0
        return np.maximum(src, 0), np.array(self.add, np.int64), const if const.any() else None

    def apply(self, regs: I64) -> I64:
        idx, add, const = self._arrays
        out = regs[..., idx]
        out += add
        if const is not None:
            out[..., const] = add[const]
        out &= _MASK
        return out


@lru_cache(maxsize=4096)
def _then(first: _Transfer, second: _Transfer) -> _Transfer:
    return first._then(second)


_POWER_TABLE_MAX = 256  # longer loops: powers by doubling (a Python table costs k steps)


@lru_cache(maxsize=256)
def _powers(t: _Transfer, k: int) -> tuple[I64, I64, Any]:
    """transfer^j for j < k as arrays (k, regs): source register, addend, constant mask."""
    src = np.empty((k, isa.NUM_REGS), np.int64)
    add = np.empty((k, isa.NUM_REGS), np.int64)
    p = _Transfer.identity()
    for j in range(k):
        src[j], add[j] = p.src, p.add
        p = p._then(t)
    const = src < 0
    np.maximum(src, 0, out=src)
    return src, add, const if const.any() else None


def _reg_effects(m: str, f: dict[str, int]) -> list[tuple[int, int, int]]:
    """The instruction's register writes, in order, as (rd, rs or -1 for a constant, addend)."""
    if m == "SETI":
        return [(f["rd"], -1, f["imm"])]
    if m == "ADDI":
        return [(f["rd"], f["rs"], f["imm"])]
    if m == "MAC":
        return [(f["rw"], f["rw"], f["iw"]), (f["rx"], f["rx"], f["ix"])]
    for r in ("rw", "rx", "rb", "rq", "rd"):
        if r in f and "inc" in f:
            return [(f[r], f[r], f["inc"])]
    return []


def _transfer_of(m: str, f: dict[str, int]) -> _Transfer:
    t = _Transfer.identity()
    for rd, rs, a in _reg_effects(m, f):
        src, add = list(t.src), list(t.add)
        if rs < 0:
            src[rd], add[rd] = -1, a & _MASK
        else:
            src[rd], add[rd] = t.src[rs], (t.add[rs] + a) & _MASK
        t = _Transfer(tuple(src), tuple(add))
    return t


@dataclass
class _Loop:
    """A parsed LOOP: its body (pcs and nested loops) and static facts about one iteration."""

    pc: int
    count: int
    end: int
    items: list[int | _Loop] = field(default_factory=list)
    transfer: _Transfer = field(default_factory=_Transfer.identity)
    cycles: int = 0  # one body iteration
    dynamic: int = 0  # instructions in one body iteration
    expand: bool = False  # iterations independent through A, W and P
    acc_add: bool = False  # ... with A only added to (sum the iterations)
    mac_only: bool = False
    # Runs of sibling MAC-only loops and register-only instructions, by first item index.
    groups: dict[int, _Group] = field(default_factory=dict)

    @property
    def total_cycles(self) -> int:
        return 1 + self.count * self.cycles

    @property
    def total_dynamic(self) -> int:
        return 1 + self.count * self.dynamic


@dataclass(frozen=True)
class _Segment:
    """One MAC-only loop of a group: ``count`` MACs, the MAC's fields, and the register
    transfer from the group's start to the loop's start."""

    count: int
    rw: int
    iw: int
    rx: int
    ix: int
    pre: _Transfer

    @property
    def steps(self) -> tuple[int, int]:
        """Per-MAC address steps (w, x): when rw == rx both increments move the register."""
        same = self.rw == self.rx
        return self.iw + (self.ix if same else 0), self.ix + (self.iw if same else 0)


@dataclass(frozen=True)
class _Group:
    """Items ``start:stop`` of a body: MAC-only loops and SETI/ADDI/NOP, in any order.  Their
    only data effect is A += (sum of all the loops' dot products), W and P from the last MAC,
    so the whole run is one matrix product (the kernel rows of a convolution window)."""

    start: int
    stop: int
    segments: tuple[_Segment, ...]
    transfer: _Transfer
    tallies: tuple[str, ...]  # mnemonics of the single instructions, one each per instance
    loops: int  # LOOP instructions executed (count 0 ones included)


_REG_ONLY = {"NOP", "SETI", "ADDI"}


def _groups(items: list[int | _Loop], prog: Any) -> dict[int, _Group]:
    """Maximal runs of MAC-only loops and register-only instructions holding a MAC."""
    out: dict[int, _Group] = {}
    i = 0
    while i < len(items):
        j, segs, tallies, loops = i, [], [], 0
        t = _Transfer.identity()
        while j < len(items):
            it = items[j]
            if isinstance(it, _Loop):
                if it.count and not it.mac_only:
                    break
                loops += 1
                if it.count:
                    f = prog.fields[it.items[0]]
                    segs.append(_Segment(it.count, f["rw"], f["iw"], f["rx"], f["ix"], t))
                    t = t.then(it.transfer.power(it.count))
            else:
                m = prog.instrs[it].mnemonic
                if m not in _REG_ONLY:
                    break
                tallies.append(m)
                t = t.then(_transfer_of(m, prog.fields[it]))
            j += 1
        if segs:
            out[i] = _Group(i, j, tuple(segs), t, tuple(tallies), loops)
        i = max(j, i + 1)
    return out


class _Lanes:
    """Per-lane dependence bookkeeping of one register (A, W or P) over one iteration."""

    def __init__(self, lanes: int):
        self.killed = np.zeros(lanes, bool)
        self.exposed = np.zeros(lanes, bool)
        self.written = np.zeros(lanes, bool)

    def read(self, n: int) -> None:
        self.exposed[:n] |= ~self.killed[:n]

    def kill(self, n: int) -> None:
        self.killed[:n] = True
        self.written[:n] = True

    def write(self, n: int) -> None:
        self.written[:n] = True

    @property
    def independent(self) -> bool:
        return not bool(np.any(self.exposed & self.written))


class _Batch:
    """One attempt to execute a loop nest over instances; commits to the machine or gives up."""

    def __init__(self, mach: Machine, tables: dict[str, Any]):
        self.mach = mach
        self.c: AccelConfig = mach.config
        self.amem = mach.amem.copy()
        # Reads see the memory as it was when the batch started (the commit rule guarantees
        # that nothing the batch reads is written by it), so they may use this snapshot.
        self.amem0 = mach.amem
        self._absmax: int | None = None
        self.cnt = new_counters()
        # Read addresses as (start, count, step): start[i] + j*step for j < count.
        self.reads: list[tuple[I64, int, int]] = []
        # Write addresses as (start, count): start[i] + j for j < count.
        self.writes: list[tuple[I64, int]] = []
        # Tables derived from WMEM and BMEM, which no instruction writes: kept for the run.
        self.tables = tables
        self._as: dict[Any, Any] = {}
        self.resources = ExitStack()  # closed by whoever runs the batch
        self._serial = False

    def serial_blas(self) -> None:
        """Enter single-threaded BLAS for the rest of the batch (before its first product)."""
        if not self._serial:
            self._serial = True
            self.resources.enter_context(one_blas_thread())

    @property
    def amem_absmax(self) -> int:
        if self._absmax is None:
            self._absmax = int(np.abs(self.amem0).max())
        return self._absmax

    @property
    def wint(self) -> I64:
        """The integer of every WMEM code."""
        if "wint" not in self.tables:
            self.tables["wint"] = _code_ints(self.mach.wmem, self.c.exp_bits)
        return self.tables["wint"]  # type: ignore[no-any-return]

    def requant_tables(self) -> tuple[I64, I64, I64]:
        """Per BMEM entry, read as a REQ parameter: the code's integer, the shift, and the
        rounding half (2^(shift-1), or 0 for shift 0)."""
        if "req" not in self.tables:
            c = self.c
            key = (self.mach.bmem.tobytes(), c.exp_bits)
            if key not in _REQ_TABLES:
                if len(_REQ_TABLES) > 16:
                    _REQ_TABLES.clear()
                code, shift = req_fields(self.mach.bmem, c.code_bits)
                half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
                _REQ_TABLES[key] = (_code_ints(code, c.exp_bits), shift, half)
            self.tables["req"] = _REQ_TABLES[key]
        return self.tables["req"]  # type: ignore[no-any-return]

    def exact_source(self, k: int) -> I64:
        """AMEM in the narrowest type whose k-term dot products with any weights are exact."""
        return self.source_for(self.amem_absmax * (1 << self.c.window) * k)

    def source_for(self, bound: int) -> I64:
        """AMEM in the narrowest type in which sums of products whose absolute values add up to
        less than ``bound`` are exact: float32 below 2^24, float64 below 2^53.  Then every
        product and every partial sum, in any order a BLAS may take, is an integer under the
        bound, which the type holds exactly (a fused multiply-add rounds to it, exactly)."""
        for limit, dtype in ((_EXACT_F32, np.float32), (_EXACT_F64, np.float64)):
            if bound < limit:
                if dtype not in self._as:
                    self._as[dtype] = self.amem0.astype(dtype)
                return self._as[dtype]
        return self.amem0

    def tally(self, m: str, times: int, cycles: int = 1) -> None:
        self.cnt["cycles"] += times * cycles
        self.cnt["instructions"] += times
        self.cnt["ops"][m] += times

    def addr(self, regs: I64, r: int, depth: int, span: int = 1) -> I64:
        a = regs[:, r]
        if a.size and int(a.max()) + span > depth:
            raise _GiveUp
        return a

    # Execution over instances -------------------------------------------------------------
    def body(self, node: _Loop, s: dict[str, I64]) -> None:
        items, i = node.items, 0
        while i < len(items):
            g = node.groups.get(i)
            if g is not None and self.group(g, s):
                i = g.stop
                continue
            it = items[i]
            if isinstance(it, _Loop):
                self.loop(it, s, it.count, True)
            else:
                self.instr(it, s)
            i += 1

    def loop(self, node: _Loop, s: dict[str, I64], k: int, tally_loop: bool) -> None:
        n = s["regs"].shape[0]
        if tally_loop:
            self.tally("LOOP", n)
        if k == 0:
            return
        if node.mac_only and n * k <= 8 * _MAX_INSTANCES:
            self.mac_loop(node, s, k)
        elif node.expand and n * k <= _MAX_INSTANCES and n * k * self.c.lanes <= 8 * _MAX_INSTANCES:
            self.expand(node, s, k)
        else:
            for _ in range(k):
                self.body(node, s)

    def expand(self, node: _Loop, s: dict[str, I64], k: int) -> None:
        n, lanes = s["regs"].shape[0], self.c.lanes
        if k <= _POWER_TABLE_MAX:
            # Iteration j starts from transfer^j of the registers: one gather from a table of
            # the powers (cached per transfer and count, as the tiles of a layer share them).
            src, add, const = _powers(node.transfer, k)
            regs = s["regs"][:, src]  # (n, k, regs)
            regs += add
            regs &= _MASK
            if const is not None:
                regs[:, const] = add[const]
        else:
            regs = np.empty((n, k, isa.NUM_REGS), np.int64)
            regs[:, 0] = s["regs"]
            done, step = 1, node.transfer
            while done < k:
                t = min(done, k - done)
                regs[:, done: done + t] = step.apply(regs[:, :t])
                step = step.then(step)
                done += t
        sub = {"regs": regs.reshape(n * k, -1)}
        for name in ("acc", "w", "p"):
            if name == "acc" and node.acc_add:
                sub[name] = np.zeros((n * k, lanes), np.int64)
            else:
                sub[name] = np.repeat(s[name], k, axis=0)
        self.body(node, sub)
        for name in ("regs", "acc", "w", "p"):
            last = sub[name].reshape(n, k, -1)
            if name == "acc" and node.acc_add:
                s[name] = wrap(s[name] + last.sum(axis=1), self.c.acc_bits)
            else:
                s[name] = last[:, -1].copy()

    def mac_loop(self, node: _Loop, s: dict[str, I64], k: int) -> None:
        """A body of one MAC: k-term dot products, as matrix products."""
        c = self.c
        pc = node.items[0]
        assert isinstance(pc, int)
        f = self.mach.prog.fields[pc]
        rw, iw, rx, ix = f["rw"], f["iw"], f["rx"], f["ix"]
        same = rw == rx
        dw = iw + (ix if same else 0)
        dx = ix + (iw if same else 0)
        regs = s["regs"]
        n = regs.shape[0]
        aw = self.affine(regs[:, rw], k, dw, c.wmem_depth)
        ax = self.affine(regs[:, rx], k, dx, c.amem_depth)
        self.reads.append((regs[:, rx], k, dx) if ax is None else (ax.reshape(-1), 1, 1))
        s["acc"] = wrap(s["acc"] + self.dots(regs[:, rx], dx, ax, regs[:, rw], dw, aw, k),
                        c.acc_bits)
        last_w = (regs[:, rw] + (k - 1) * dw) & _MASK
        last_x = (regs[:, rx] + (k - 1) * dx) & _MASK
        s["w"] = self.mach.wmem[last_w]
        s["p"] = shift_add(self.amem0[last_x][:, None], s["w"], c.exp_bits)
        regs = regs.copy()
        regs[:, rw] = (regs[:, rw] + k * iw) & _MASK
        regs[:, rx] = (regs[:, rx] + k * ix) & _MASK
        s["regs"] = regs
        self.tally("MAC", n * k)
        for key in ("wmem_reads", "amem_reads"):
            self.cnt[key] += n * k
        self.cnt["shift_adds"] += n * k * c.lanes

    def group(self, g: _Group, s: dict[str, I64]) -> bool:
        """A run of sibling MAC-only loops (and register-only instructions) as ONE matrix
        product over (distinct activation windows) x (distinct weight runs).  False, with
        nothing done, when the run does not fit that form (addresses that wrap past 2^16 or
        leave memory, windows of several registers, instances that do not factor): the
        items then run one by one, which also makes any fault step mode's."""
        c = self.c
        regs = s["regs"]
        n = regs.shape[0]
        segs = g.segments
        total = sum(seg.count for seg in segs)
        xs = self.group_side(regs, [(seg.pre, seg.rx, seg.steps[1], seg.count) for seg in segs],
                             c.amem_depth)
        ws = self.group_side(regs, [(seg.pre, seg.rw, seg.steps[0], seg.count) for seg in segs],
                             c.wmem_depth)
        if xs is None or ws is None:
            return False
        (xstart, xinv, xlo, xhi), (wstart, winv, _, _) = xs, ws
        nx, nw = xstart.shape[0], wstart.shape[0]
        if (nx * nw > 2 * n or nx * total > 8 * _MAX_INSTANCES
                or nw * total * c.lanes > 8 * _MAX_INSTANCES):
            return False
        widx = np.concatenate([wstart[:, i, None] + np.arange(seg.count) * seg.steps[0]
                               for i, seg in enumerate(segs)], axis=1)  # (nw, total)
        wint = _code_ints(self.mach.wmem[widx], c.exp_bits)  # (nw, total, lanes)
        # Only AMEM[xlo..xhi] is read.  sum_j |x_j w_j| <= max|x| * (the largest column sum
        # of |w|): tighter than max|x| max|w| total, and what lets 8-bit 3x3x64 windows use
        # float32 (see source_for).
        region = self.amem0[xlo: xhi + 1]
        xmax = max(int(region.max()), -int(region.min()))
        bound = xmax * int(np.abs(wint).sum(axis=1).max())
        dtype = np.float32 if bound < _EXACT_F32 else np.float64 if bound < _EXACT_F64 else None
        src: Any = region if dtype is None else region.astype(dtype)
        self.serial_blas()
        xmat = self.gather_x(src, xstart - xlo, segs)
        wmat = wint.transpose(1, 0, 2).reshape(total, nw * c.lanes).astype(src.dtype)
        prod = xmat @ wmat
        if prod.dtype != np.int64:
            prod = prod.astype(np.int64)  # exact integers: every partial sum is under the bound
        acc = prod.reshape(nx, nw, c.lanes)[xinv, winv]
        acc += s["acc"]
        s["acc"] = _wrap_inplace(acc, c.acc_bits)
        last = segs[-1]
        last_x = xstart[xinv, -1] + (last.count - 1) * last.steps[1]
        last_w = wstart[winv, -1] + (last.count - 1) * last.steps[0]
        s["w"] = self.mach.wmem[last_w]
        # sa(x, code) is x times the code's integer, exactly (it never wraps).
        s["p"] = self.amem0[last_x][:, None] * wint[winv, -1]
        s["regs"] = g.transfer.apply(regs)
        for i, seg in enumerate(segs):
            self.reads.append((xstart[:, i], seg.count, seg.steps[1]))
        for m in g.tallies:
            self.tally(m, n)
        self.tally("LOOP", n * g.loops)
        self.tally("MAC", n * total)
        self.cnt["wmem_reads"] += n * total
        self.cnt["amem_reads"] += n * total
        self.cnt["shift_adds"] += n * total * c.lanes
        return True

    @staticmethod
    def group_side(regs: I64, runs: list[tuple[_Transfer, int, int, int]],
                   depth: int) -> tuple[I64, I64, int, int] | None:
        """Start addresses of every run, (distinct, runs), each instance's row and the lowest
        and highest address read, when all runs hang off one register (or are constant) and
        none wraps or leaves memory."""
        srcs = {pre.src[r] for pre, r, _, _ in runs} - {-1}
        if len(srcs) > 1:
            return None
        if srcs:
            key, inv = _factorize(regs[:, srcs.pop()])
        else:
            key, inv = np.zeros(1, np.int64), np.zeros(regs.shape[0], np.int64)
        starts = np.empty((len(key), len(runs)), np.int64)
        low, high = depth, -1
        for i, (pre, r, step, count) in enumerate(runs):
            a = (key + pre.add[r]) & _MASK if pre.src[r] >= 0 else np.full(len(key), pre.add[r])
            lo = int(a.min()) + min(0, (count - 1) * step)
            hi = int(a.max()) + max(0, (count - 1) * step)
            if lo < 0 or hi >= depth:
                return None
            starts[:, i] = a
            low, high = min(low, lo), max(high, hi)
        return starts, inv.reshape(-1), low, high

    @staticmethod
    def gather_x(src: I64, starts: I64, segs: tuple[_Segment, ...]) -> I64:
        """(distinct windows, total) activations: run i of window u is src[starts[u, i] + j*dx]."""
        counts = {seg.count for seg in segs}
        dxs = {seg.steps[1] for seg in segs}
        if len(counts) == 1 and len(dxs) == 1 and min(dxs) > 0:
            k, dx = counts.pop(), dxs.pop()
            view = np.lib.stride_tricks.sliding_window_view(src, (k - 1) * dx + 1)[:, ::dx]
            return view[starts].reshape(len(starts), -1)
        idx = np.concatenate([starts[:, i, None] + np.arange(seg.count) * seg.steps[1]
                              for i, seg in enumerate(segs)], axis=1)
        return src[idx]

    @staticmethod
    def affine(start: I64, k: int, step: int, depth: int) -> I64 | None:
        """Addresses start + j*step (j < k), range-checked.  None when they never wrap past
        2^16 (the common case): callers then index with slices and strides instead."""
        lo = int(start.min()) + min(0, (k - 1) * step)
        hi = int(start.max()) + max(0, (k - 1) * step)
        if lo >= 0 and hi <= _MASK:
            if hi >= depth:
                raise _GiveUp
            return None
        out = (start[:, None] + np.arange(k, dtype=np.int64) * step) & _MASK
        if int(out.max()) >= depth:
            raise _GiveUp
        return out

    def dots(self, x0: I64, dx: int, ax: I64 | None, w0: I64, dw: int, aw: I64 | None,
             k: int) -> I64:
        """out[i, l] = sum_j x[i, j] * wint[aw[i, j], l] with x[i, j] = AMEM[ax[i, j]], exact.

        Instances are rows of (distinct activation runs) x (distinct weight runs): when
        those pairs cover the instances with little waste (a convolution: pixels x channel
        blocks) it is one matrix product, as im2col would do.  float64 is used only when the
        bound on every partial sum is below 2^53; otherwise int64, whose wrap modulo 2^64
        cannot change the low acc_bits bits the accumulator keeps."""
        n, lanes = len(x0), self.c.lanes
        j = np.arange(k, dtype=np.int64)
        if ax is None and aw is None:
            ux, xinv = _factorize(x0)
            uw, winv = _factorize(w0)
            if len(ux) * len(uw) <= 2 * n:
                src = self.exact_source(k)
                exact = src.dtype != np.int64
                if dx == 1:
                    xs = np.lib.stride_tricks.sliding_window_view(src, k)[ux]
                else:
                    xs = src[ux[:, None] + j * dx]
                codes = self.mach.wmem[(uw[:, None] + j * dw) & _MASK]  # (G, k, lanes)
                wall = hwcode.to_int(codes, self.c.exp_bits).astype(src.dtype)
                self.serial_blas()
                prod = xs @ wall.transpose(1, 0, 2).reshape(k, -1)
                if exact:
                    prod = np.rint(prod).astype(np.int64)
                return prod.reshape(len(ux), len(uw), lanes)[xinv.reshape(-1),
                                                              winv.reshape(-1)]
        aw = aw if aw is not None else (w0[:, None] + j * dw) & _MASK
        xs = self.amem0[ax if ax is not None else x0[:, None] + j * dx]
        out = np.empty((n, lanes), np.int64)
        chunk = max(1, (1 << 22) // max(1, k * lanes))
        wint = self.wint
        for i in range(0, n, chunk):
            out[i: i + chunk] = np.einsum("ij,ijl->il", xs[i: i + chunk],
                                          wint[aw[i: i + chunk]])
        return out

    def instr(self, pc: int, s: dict[str, I64]) -> None:
        c = self.c
        ins = self.mach.prog.instrs[pc]
        f = self.mach.prog.fields[pc]
        m = ins.mnemonic
        regs = s["regs"]
        n = regs.shape[0]
        lanes = c.lanes
        cycles = f["n"] if m in _N_KIND else 1
        self.tally(m, n, cycles)
        post: list[tuple[int, int]] = []
        if m == "NOP":
            pass
        elif m in ("SETI", "ADDI"):
            regs = regs.copy()
            regs[:, f["rd"]] = (f["imm"] if m == "SETI" else regs[:, f["rs"]] + f["imm"]) & _MASK
            s["regs"] = regs
        elif m == "LOADW":
            s["w"] = self.mach.wmem[self.addr(regs, f["rw"], c.wmem_depth)]
            self.cnt["wmem_reads"] += n
            post = [(f["rw"], f["inc"])]
        elif m == "SHIFTADD":
            a = self.addr(regs, f["rx"], c.amem_depth)
            self.reads.append((a, 1, 1))
            s["p"] = shift_add(self.amem0[a][:, None], s["w"], c.exp_bits)
            self.cnt["amem_reads"] += n
            self.cnt["shift_adds"] += n * lanes
            post = [(f["rx"], f["inc"])]
        elif m == "ACC":
            s["acc"] = wrap(s["acc"] + s["p"], c.acc_bits)
        elif m == "MAC":
            aw = self.addr(regs, f["rw"], c.wmem_depth)
            ax = self.addr(regs, f["rx"], c.amem_depth)
            self.reads.append((ax, 1, 1))
            s["w"] = self.mach.wmem[aw]
            s["p"] = shift_add(self.amem0[ax][:, None], s["w"], c.exp_bits)
            s["acc"] = wrap(s["acc"] + s["p"], c.acc_bits)
            self.cnt["wmem_reads"] += n
            self.cnt["amem_reads"] += n
            self.cnt["shift_adds"] += n * lanes
            post = [(f["rw"], f["iw"]), (f["rx"], f["ix"])]
        elif m == "CLR":
            s["acc"] = np.zeros((n, lanes), np.int64)
        elif m == "BIAS":
            s["acc"] = self.mach.bmem[self.addr(regs, f["rb"], c.bmem_depth)]
            self.cnt["bmem_reads"] += n
            post = [(f["rb"], f["inc"])]
        elif m in ("VLD", "VMAX", "VMAC"):
            k = f["n"]
            a = self.addr(regs, f["rx"], c.amem_depth, k)
            self.reads.append((a, k, 1))
            x = self.amem0[a[:, None] + np.arange(k)]
            acc = s["acc"].copy()
            if m == "VLD":
                acc[:, :k] = x
            elif m == "VMAX":
                acc[:, :k] = np.maximum(acc[:, :k], x)
            else:
                p = s["p"].copy()
                p[:, :k] = shift_add(x, s["w"][:, :k], c.exp_bits)
                s["p"] = p
                acc[:, :k] = wrap(acc[:, :k] + p[:, :k], c.acc_bits)
                self.cnt["shift_adds"] += n * k
            s["acc"] = acc
            self.cnt["amem_reads"] += n * k
            post = [(f["rx"], f["inc"])]
        elif m in ("REQ", "ACT"):
            a = self.addr(regs, f["rq"], c.bmem_depth)
            if m == "REQ":
                # requantize() with sa(acc, code) as acc times the code's integer (exact: it
                # never wraps), from tables of the whole BMEM.
                mult, shift, half = self.requant_tables()
                y = s["acc"] * mult[a]
                y += half[a]
                np.right_shift(y, shift[a], out=y)
                np.minimum(y, c.act_max, out=y)
                s["acc"] = np.maximum(y, 0 if f["relu"] else c.act_min, out=y)
            else:
                q = self.mach.bmem[a]
                s["acc"] = leaky(s["acc"], q, c.exp_bits, c.act_bits)
            self.cnt["bmem_reads"] += n
            self.cnt["shift_adds"] += n * lanes
            post = [(f["rq"], f["inc"])]
        elif m == "STORE":
            k = f["n"]
            a = self.addr(regs, f["rd"], c.amem_depth, k)
            self.writes.append((a, k))
            self.amem[(a[:, None] + np.arange(k)).reshape(-1)] = _wrap_inplace(
                s["acc"][:, :k].flatten(), c.act_bits)
            self.cnt["amem_writes"] += n * k
            post = [(f["rd"], f["inc"])]
        else:  # HALT and LOOP never reach here: the parser refuses or nests them
            raise _GiveUp
        if post:
            regs = regs.copy()
            for r, inc in post:
                regs[:, r] = (regs[:, r] + inc) & _MASK
            s["regs"] = regs

    def memory_is_order_free(self) -> bool:
        """No address written twice and none both read and written: any order gives the same
        memory, so instruction-major order equals step mode's iteration-major order."""
        if not self.writes:
            return True
        counts = {k for _, k in self.writes}
        if len(counts) == 1:
            return self._runs_order_free(counts.pop())
        return self._bitmap_order_free()

    def _bitmap_order_free(self) -> bool:
        """The check by a bitmap of AMEM: writes counted per address."""
        written = np.concatenate([(a[:, None] + np.arange(k)).reshape(-1)
                                  for a, k in self.writes])
        hits = np.bincount(written, minlength=self.c.amem_depth)
        if int(hits.max()) > 1:
            return False
        # Written addresses below each address: a run [a, a+k) is clean when the count
        # does not grow across it.
        below = np.concatenate([[0], np.cumsum(hits > 0)])
        for start, k, step in self.reads:
            if step == 1 or k == 1:
                if np.any(below[start + k] != below[start]):
                    return False
            elif np.any(hits[start[:, None] + np.arange(k) * step] > 0):
                return False
        return True

    def _runs_order_free(self, kw: int) -> bool:
        """The same check when every write is a run of kw addresses (one STORE width): sorted
        run starts at least kw apart are disjoint, and a read run [a, a+k) meets a write run
        exactly when the last write run starting below a+k ends above a."""
        ws = np.sort(np.concatenate([a for a, _ in self.writes]))
        if np.any(np.diff(ws) < kw):
            return False
        for start, k, step in self.reads:
            if not (step == 1 or k == 1):
                start, k = (start[:, None] + np.arange(k) * step).reshape(-1), 1
            i = np.searchsorted(ws, start + k)
            if np.any((i > 0) & (ws[np.maximum(i - 1, 0)] + kw > start)):
                return False
        return True

    def commit(self, s: dict[str, I64]) -> None:
        mach = self.mach
        mach.regs = [int(v) for v in s["regs"][0]]
        mach.acc = s["acc"][0].copy()
        mach.w = s["w"][0].copy()
        mach.p = s["p"][0].copy()
        mach.amem = self.amem
        for key, v in self.cnt.items():
            if key == "ops":
                for op, times in v.items():
                    mach.counters["ops"][op] += times
            else:
                mach.counters[key] += v


_PARSED: dict[tuple[Any, ...], _Loop | None] = {}


class FastRunner:
    """Step mode with loop nests replaced by batches wherever they provably match it."""

    def __init__(self, mach: Machine):
        self.mach = mach
        self.tables: dict[str, Any] = {}
        self.text_key = mach.image.text.tobytes()

    # Static parsing, mirroring the checks Machine.step makes when it executes a LOOP.
    def parse(self, pc: int, enclosing_end: int | None, depth: int) -> _Loop:
        prog, c = self.mach.prog, self.mach.config
        f = prog.fields[pc]
        count, length = f["count"], f["len"]
        end = pc + length
        if length < 1 or end >= len(prog.instrs):
            raise _GiveUp
        if enclosing_end is not None and end >= enclosing_end:
            raise _GiveUp
        node = _Loop(pc, count, end)
        if count == 0:
            return node
        if depth >= c.loop_depth:
            raise _GiveUp
        p = pc + 1
        transfer = _Transfer.identity()
        while p <= end:
            ins, fp = prog.instrs[p], prog.fields[p]
            if ins.mnemonic == "HALT":
                raise _GiveUp
            if ins.mnemonic == "LOOP":
                child = self.parse(p, end, depth + 1)
                node.items.append(child)
                node.cycles += child.total_cycles
                node.dynamic += child.total_dynamic
                transfer = transfer.then(child.transfer.power(child.count))
                p = child.end + 1
                continue
            if ins.mnemonic in _N_KIND and not 1 <= fp["n"] <= c.lanes:
                raise _GiveUp
            node.items.append(p)
            node.cycles += fp["n"] if ins.mnemonic in _N_KIND else 1
            node.dynamic += 1
            transfer = transfer.then(_transfer_of(ins.mnemonic, fp))
            p += 1
        node.transfer = transfer
        self.classify(node)
        return node

    def classify(self, node: _Loop) -> None:
        """Can iterations run as independent instances?  Walks one iteration in order."""
        lanes = self.mach.config.lanes
        acc, w, p = _Lanes(lanes), _Lanes(lanes), _Lanes(lanes)
        only_adds = True
        prog = self.mach.prog

        def walk(items: list[int | _Loop]) -> None:
            nonlocal only_adds
            for it in items:
                if isinstance(it, _Loop):
                    if it.count:
                        walk(it.items)
                    continue
                m, f = prog.instrs[it].mnemonic, prog.fields[it]
                n = f.get("n", lanes)
                if m in ("LOADW", "MAC"):
                    w.kill(lanes)
                if m == "SHIFTADD":
                    w.read(lanes)
                    p.kill(lanes)
                if m == "MAC":
                    p.kill(lanes)
                if m == "VMAC":
                    w.read(n)
                    p.kill(n)
                if m == "ACC":
                    p.read(lanes)
                if m in ("ACC", "MAC", "VMAC"):
                    acc.read(n)
                    acc.write(n)
                elif m in ("CLR", "BIAS", "VLD"):
                    acc.kill(n)
                    only_adds = False
                elif m in ("VMAX", "REQ", "ACT"):
                    acc.read(n)
                    acc.write(n)
                    only_adds = False
                elif m == "STORE":
                    acc.read(n)
                    only_adds = False

        walk(node.items)
        wp_ok = w.independent and p.independent
        node.acc_add = wp_ok and not acc.independent and only_adds
        node.expand = wp_ok and (acc.independent or node.acc_add)
        node.mac_only = (len(node.items) == 1 and isinstance(node.items[0], int)
                         and prog.instrs[node.items[0]].mnemonic == "MAC")
        node.groups = _groups(node.items, prog)

    def parsed(self, pc: int, enclosing: int | None, depth: int) -> _Loop | None:
        """The parsed nest at pc, cached per program text: images of one kernel over many
        tiles share their text, and the parse is pure."""
        c = self.mach.config
        key = (self.text_key, c.lanes, c.loop_depth, pc, enclosing, depth)
        if key not in _PARSED:
            if len(_PARSED) > 512:
                _PARSED.clear()
            try:
                _PARSED[key] = self.parse(pc, enclosing, depth)
            except _GiveUp:
                _PARSED[key] = None
        return _PARSED[key]

    def try_loop(self, max_cycles: int) -> bool:
        """Execute the LOOP at pc (count > 0) in batches; False if step mode must do it."""
        mach = self.mach
        enclosing = mach.loops[-1][1] if mach.loops else None
        node = self.parsed(mach.pc, enclosing, len(mach.loops))
        if node is None:
            return False
        remaining, first = node.count, True
        per_batch = max(1, _MAX_DYNAMIC // max(1, node.dynamic))
        while remaining:
            avail = max_cycles - mach.counters["cycles"] - (1 if first else 0)
            k = min(remaining, avail // node.cycles, per_batch)
            if k <= 0:
                break
            batch = _Batch(mach, self.tables)
            s = {"regs": np.array([mach.regs], np.int64), "acc": mach.acc[None].copy(),
                 "w": mach.w[None].copy(), "p": mach.p[None].copy()}
            try:
                with batch.resources:
                    batch.loop(node, s, k, first)
                if not batch.memory_is_order_free():
                    raise _GiveUp
            except _GiveUp:
                break
            batch.commit(s)
            remaining -= k
            first = False
        if first:
            return False
        if remaining:
            # As if step mode had run the LOOP and node.count - remaining iterations.
            mach.loops.append([node.pc + 1, node.end, remaining])
            mach.pc = node.pc + 1
        else:
            mach.pc = node.end + 1
        return True


def run_fast(image: Image, config: AccelConfig | None = None, *,
             max_cycles: int = DEFAULT_MAX_CYCLES) -> RunResult:
    """Run an image to HALT with loops batched; same result and errors as step mode."""
    mach = Machine(image, config)
    runner = FastRunner(mach)
    prog = mach.prog
    while not mach.halted:
        if mach.counters["cycles"] >= max_cycles:
            raise cycle_limit_fault(mach, max_cycles)
        pc = mach.pc
        if (0 <= pc < len(prog.instrs) and prog.instrs[pc].mnemonic == "LOOP"
                and prog.fields[pc]["count"] > 0 and runner.try_loop(max_cycles)):
            continue
        mach.step()
    return mach.result(None)


__all__ = ["run_fast", "FastRunner"]

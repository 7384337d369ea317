"""One attempt to execute a loop nest over a batch of instances, instruction by instruction.

Each instance is one loop iteration with its own registers, A, W and P (:class:`Lanes`), the
data per tile when the batch drives several machines with one text (:class:`Tiles`).
What an instruction touches (its lane count, address checks, recorded AMEM runs, counters,
register effects, cycles) comes from its ISA table row; what it does to the data is written
per instruction in :data:`SEMANTICS`, over all instances at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from contract import isa
from contract.semantics import leaky, wrap

from .nest import GiveUp, Loop
from .order import OrderCheck
from .plan import Recording
from .products import Products
from .state import (
    I64,
    MAX_INSTANCES,
    Deferred,
    Lanes,
    Tiles,
    cols,
    lane_products,
    put_plan,
    put_planned,
    zeros,
)
from .transfer import MASK, iteration_registers


class Batch(Products, OrderCheck):
    """A batch over instances; commits to the machine or gives up."""

    def __init__(self, tiles: Tiles, tables: dict[str, Any], rec: Recording | None = None):
        super().__init__(tiles, tables, rec)
        self.depths = tiles.mach.depths
        # The current instruction's per-lane AMEM addresses, (instances, lanes served).
        self.lane_addrs: I64 = np.zeros((0, 0), np.int64)

    def body(self, node: Loop, s: Lanes) -> None:
        items, i = node.items, 0
        while i < len(items):
            g = node.groups.get(i)
            if g is not None and self.group(g, s):
                i = g.stop
                continue
            it = items[i]
            if isinstance(it, Loop):
                self.loop(it, s, it.count, True)
            else:
                self.instr(it, s)
            i += 1

    def loop(self, node: Loop, s: Lanes, k: int, tally_loop: bool) -> None:
        n = s.instances
        if tally_loop:
            self.tally(isa.LOOP.mnemonic, n)
        if k == 0:
            return
        if node.dot and n * k * self.ntiles <= 8 * MAX_INSTANCES:
            self.dot_loop(node, s, k)
        elif (node.expand and n * k <= MAX_INSTANCES
              and n * k * self.c.lanes * self.ntiles <= 8 * MAX_INSTANCES):
            self.expand(node, s, k)
        else:
            for _ in range(k):
                self.body(node, s)

    def expand(self, node: Loop, s: Lanes, k: int) -> None:
        """k independent iterations of every instance as n*k instances of one body."""
        n, lanes, t = s.instances, self.c.lanes, self.ntiles
        start = s.regs
        regs = self.rec.take("expand", lambda: iteration_registers(start, node.transfer, k))

        # Each instance's copy of what it starts with: zeros for sums; nothing at all (a
        # read-only view of zeros: Lanes arrays are replaced, never written in place) for a
        # register every iteration sets before reading it (a window's W and P, most A).
        def spread(state: str) -> I64:
            if state in node.dead_on_entry or (state == "A" and node.acc_add):
                return zeros(t, n * k, lanes)
            return np.repeat(s.acc if state == "A" else s.w if state == "W" else s.p, k, axis=1)

        fresh = "A" in node.dead_on_entry or node.acc_add
        sub = Lanes(regs.reshape(n * k, -1), spread("A"), spread("W"), spread("P"),
                    (0, 0) if fresh else s.acc_range)
        self.body(node, sub)

        def last(v: I64) -> I64:
            return v.reshape(t, n, k, -1)[:, :, -1].copy()

        def last_held(v: I64 | Deferred) -> I64 | Deferred:
            if isinstance(v, Deferred):
                return v.rows(np.arange(n, dtype=np.int64) * k + (k - 1))
            return last(v)

        ends = sub.regs
        s.regs = self.rec.take("expanded", lambda: ends.reshape(n, k, -1)[:, -1].copy())
        s.w, s.p = last_held(sub.held("W")), last_held(sub.held("P"))
        if node.acc_add:
            s.acc = wrap(s.acc + sub.acc.reshape(t, n, k, -1).sum(axis=2), self.c.acc_bits)
        else:
            s.set_acc(last(sub.acc), sub.acc_range)

    def instr(self, pc: int, s: Lanes) -> None:
        prog = self.mach.prog
        ins, f = prog.instrs[pc], prog.fields[pc]
        semantics = SEMANTICS.get(ins.mnemonic)
        # HALT and LOOP never reach here (the parser refuses or nests them); an instruction
        # with no batch semantics yet runs in step mode.
        if ins.flow != "next" or semantics is None:
            raise GiveUp
        n = s.instances
        served = isa.lanes_served(ins, f, self.c.lanes)
        self.tally(ins.mnemonic, n, isa.cycles_of(ins, f))
        regs = s.regs
        addrs, self.lane_addrs, after = self.rec.take(
            "instr", lambda: self.addresses(pc, regs, served))
        semantics(self, s, f, addrs, served)
        self.count(self.mach.traffic[pc], n)
        if after is not None:
            s.regs = after

    def addresses(self, pc: int, regs: I64, served: int
                  ) -> tuple[dict[isa.Memory, I64], I64, I64 | None]:
        """The instruction at pc over instances with ``regs``: its checked addresses by
        memory (AMEM's recorded for the commit rule; BMEM's one for all instances when they
        are all one, see :func:`_one_row`), its per-lane AMEM addresses (instances, served),
        and the registers after it (None when it changes none)."""
        prog = self.mach.prog
        ins, f = prog.instrs[pc], prog.fields[pc]
        addrs: dict[isa.Memory, I64] = {}
        lane_addrs = np.zeros((0, 0), np.int64)
        for p in ins.pointers:
            span = served if p.per_lane else 1
            a = addrs[p.memory] = self.addr(regs, f[p.register], self.depths[p.memory], span)
            if p.memory == "AMEM":
                if p.writes:
                    self.writes.append((a, span))
                else:
                    self.reads.append((a, span, 1))
                if p.per_lane:
                    lane_addrs = a[:, None] + np.arange(span)
            elif p.memory == "BMEM":
                addrs["BMEM"] = _one_row(a)
        effects = prog.effects[pc]
        if not effects:
            return addrs, lane_addrs, None
        regs = regs.copy()
        for rd, rs, add in effects:
            regs[:, rd] = (add if rs < 0 else regs[:, rs] + add) & MASK
        return addrs, lane_addrs, regs

    def commit(self, s: Lanes) -> None:
        """Write the batch's stores (in any order: the commit rule has checked that no address
        is written twice) and the first machine's registers and counters.  The lane registers
        of every machine stay in ``s`` (stacked), and the other machines' control state is the
        first one's: the runner gives them both when step mode next needs them."""
        amem = self.tiles.amem
        s.settle()  # deferred W and P read the AMEM the batch started from
        for idx, vals in self.stores:
            plan = self.rec.take("store", partial(put_plan, idx))
            put_planned(amem, plan, vals)
            if plan[0] <= plan[1]:
                self.tiles.mark_written(plan[0], plan[1])
        mach = self.mach
        mach.regs = [int(v) for v in s.regs[0]]
        cnt = mach.counters
        done = self.rec.counters if self.rec.replaying else self.cnt
        assert done is not None
        for key, v in done.items():
            if key != "ops":
                cnt[key] += v
        for op, times in done["ops"].items():
            if times:
                cnt["ops"][op] += times


# What each instruction does to the data of every instance, given its fields, its checked
# addresses (by memory, one per instance) and the lanes it serves.  Optional per instruction:
# a loop holding one without an entry here runs in step mode.
Semantics = Callable[[Batch, Lanes, dict[str, int], dict[isa.Memory, I64], int], None]


def _nothing(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    return None


def _loadw(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    s.w = cols(b.wmem, a["WMEM"]).astype(np.int64)


def _shiftadd(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    s.p = lane_products(cols(b.amem0, a["AMEM"])[..., None], s.w, b.c)


def _acc(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    s.acc = wrap(s.acc + s.p, b.c.acc_bits)


def _mac(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    _loadw(b, s, f, a, k)
    _shiftadd(b, s, f, a, k)
    _acc(b, s, f, a, k)


def _clr(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    s.set_acc(zeros(b.ntiles, s.instances, b.c.lanes), (0, 0))


def _one_row(q: I64) -> I64:
    """BMEM addresses ``q`` of every instance, or their first alone when they are all one
    (a tile's channel block): the words are then broadcast, not gathered per instance.
    Addresses only: worked out once, with the batch's recording."""
    if len(q) > 1 and q[0] == q[-1] and int(q.min()) == int(q.max()):
        return q[:1]
    return q


def _bias(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    words = cols(b.bmem, b.bmem_row(a["BMEM"]))
    s.set_acc(np.broadcast_to(words, (b.ntiles, s.instances, words.shape[-1])), b.bmem_range())


def _lanes_x(b: Batch, a: dict[isa.Memory, I64], k: int) -> I64:
    return cols(b.amem0, b.lane_addrs).astype(np.int64)


def _vld(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    # AMEM holds only activation-range values (images are checked, stores wrap).
    c, r = b.c, s.acc_range
    if k == c.lanes:  # every lane: the gather is the new A
        s.set_acc(_lanes_x(b, a, k), (c.act_min, c.act_max))
        return
    acc = s.acc.copy()
    acc[..., :k] = _lanes_x(b, a, k)
    s.set_acc(acc, None if r is None else (min(r[0], c.act_min), max(r[1], c.act_max)))


def _vmax(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    c, r = b.c, s.acc_range
    if k == c.lanes:
        known = None if r is None else (max(r[0], c.act_min), max(r[1], c.act_max))
        s.set_acc(np.maximum(s.acc, _lanes_x(b, a, k)), known)
        return
    acc = s.acc.copy()
    acc[..., :k] = np.maximum(acc[..., :k], _lanes_x(b, a, k))
    s.set_acc(acc, None if r is None else (r[0], max(r[1], c.act_max)))


def _vmac(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    acc, p = s.acc.copy(), s.p.copy()
    p[..., :k] = lane_products(_lanes_x(b, a, k), s.w[..., :k], b.c)
    acc[..., :k] = wrap(acc[..., :k] + p[..., :k], b.c.acc_bits)
    s.acc, s.p = acc, p


def _req(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    # requantize() with sa(acc, code) as acc times the code's integer (exact: it never
    # wraps), from tables of the BMEM rows a REQ may read (see Batch.requant_tables).
    c = b.c
    lo = 0 if f["relu"] else c.act_min
    mult, shift, halves, scale = b.requant_tables()
    q = b.bmem_row(a["BMEM"])  # the tables' rows are the stack's
    if scale is not None:  # in float64, exactly: one gather where the integers take three
        t = s.acc * cols(scale, q)
        t += 0.5
        np.floor(t, out=t)
        y = np.empty(t.shape, np.int64)
        np.clip(t, lo, c.act_max, out=y, casting="unsafe")
    else:
        y = s.acc * cols(mult, q)
        y += cols(halves, q)
        np.right_shift(y, cols(shift, q), out=y)
        np.clip(y, lo, c.act_max, out=y)
    s.set_acc(y, (lo, c.act_max))


def _act(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    c = b.c
    s.acc = leaky(s.acc, cols(b.bmem, b.bmem_row(a["BMEM"])), c.exp_bits, c.act_bits)


def _store(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    vals = s.acc[..., :k]
    if not s.acc_within(b.c.act_min, b.c.act_max):  # else the wrap changes nothing
        vals = wrap(vals, b.c.act_bits)
    b.stores.append((b.lane_addrs.reshape(-1), vals.reshape(b.ntiles, -1)))


def _spill(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    _store(b, s, f, a, k)
    acc = s.acc.copy()
    acc[..., :k] >>= b.c.act_bits
    s.acc = acc


def _fill(b: Batch, s: Lanes, f: dict[str, int], a: dict[isa.Memory, I64], k: int) -> None:
    acc = s.acc.copy()
    low = _lanes_x(b, a, k) & ((1 << b.c.act_bits) - 1)
    acc[..., :k] = wrap((acc[..., :k] << b.c.act_bits) + low, b.c.acc_bits)
    s.acc = acc


SEMANTICS: dict[str, Semantics] = {
    "NOP": _nothing, "SETI": _nothing, "ADDI": _nothing, "LOADW": _loadw,
    "SHIFTADD": _shiftadd, "ACC": _acc, "MAC": _mac, "CLR": _clr, "BIAS": _bias, "VLD": _vld,
    "VMAX": _vmax, "VMAC": _vmac, "REQ": _req, "ACT": _act, "STORE": _store,
    "SPILL": _spill, "FILL": _fill,
}

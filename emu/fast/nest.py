"""Static facts about loop nests: parsed bodies, iteration independence, fusable MAC runs.

Everything here depends on the program text and the configuration only, never on data, so
it is parsed once per text and cached (the tiles of one layer share their text).  The parse
repeats the structural checks step mode makes when it executes a LOOP, giving up (step mode
then runs the LOOP and reports the fault) where one would fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract import isa

from ..machine import Decoded
from .transfer import Transfer


class GiveUp(Exception):
    """The batch cannot prove it would match step mode; step the LOOP instead."""


@dataclass
class Loop:
    """A parsed LOOP: its body (pcs and nested loops) and static facts about one iteration."""

    pc: int
    count: int
    end: int
    items: list[int | Loop] = field(default_factory=list)
    transfer: Transfer = field(default_factory=Transfer.identity)
    cycles: int = 0  # one body iteration
    dynamic: int = 0  # instructions in one body iteration
    expand: bool = False  # iterations independent through A, W and P
    acc_add: bool = False  # ... with A only added to (sum the iterations)
    dot: bool = False  # the body is one dot-product step (see isa.Instr.is_dot_step)
    # Lane registers whose value on entry no iteration reads or keeps (every lane is set
    # before any read): their instances need no copy of it.
    dead_on_entry: frozenset[str] = frozenset()
    # Runs of sibling dot-product loops and register-only instructions, by first item index.
    groups: dict[int, Group] = field(default_factory=dict)

    @property
    def total_cycles(self) -> int:
        return 1 + self.count * self.cycles

    @property
    def total_dynamic(self) -> int:
        return 1 + self.count * self.dynamic


@dataclass(frozen=True)
class Segment:
    """One dot-product loop of a group: ``count`` steps, the weight and activation pointers
    with their increments, and the register transfer from the group's start to the loop's."""

    count: int
    rw: int
    iw: int
    rx: int
    ix: int
    pre: Transfer

    @property
    def steps(self) -> tuple[int, int]:
        """Per-step address steps (w, x): when rw == rx both increments move the register."""
        same = self.rw == self.rx
        return self.iw + (self.ix if same else 0), self.ix + (self.iw if same else 0)


def dot_pointers(ins: isa.Instr, f: dict[str, int]) -> tuple[int, int, int, int]:
    """(rw, iw, rx, ix) of a dot-product step: weight and activation registers, increments."""
    w, x = ins.pointer("WMEM"), ins.pointer("AMEM")
    return f[w.register], f[w.increment], f[x.register], f[x.increment]


@dataclass(frozen=True)
class Group:
    """Items ``start:stop`` of a body: dot-product loops and register-only instructions, in
    any order.  Their only data effect is A += (sum of all the loops' dot products), W and P
    from the last step, so the whole run is one matrix product (the kernel rows of a
    convolution window)."""

    start: int
    stop: int
    segments: tuple[Segment, ...]
    transfer: Transfer
    tallies: tuple[str, ...]  # mnemonics of the single instructions, one each per instance
    loops: int  # LOOP instructions executed (count 0 ones included)
    step: str  # mnemonic of the dot-product step, for the counters


def groups(items: list[int | Loop], prog: Decoded) -> dict[int, Group]:
    """Maximal runs of dot-product loops and register-only instructions holding a step."""
    out: dict[int, Group] = {}
    i = 0
    while i < len(items):
        j, segs, tallies, loops, step = i, [], [], 0, ""
        t = Transfer.identity()
        while j < len(items):
            it = items[j]
            if isinstance(it, Loop):
                if it.count and not it.dot:
                    break
                loops += 1
                if it.count:
                    pc = it.items[0]
                    assert isinstance(pc, int)
                    step = prog.instrs[pc].mnemonic
                    segs.append(Segment(it.count, *dot_pointers(prog.instrs[pc],
                                                                prog.fields[pc]), t))
                    t = t.then(it.transfer.power(it.count))
            else:
                ins = prog.instrs[it]
                if not ins.register_only:
                    break
                tallies.append(ins.mnemonic)
                t = t.then(Transfer.of(prog.effects[it]))
            j += 1
        if segs:
            out[i] = Group(i, j, tuple(segs), t, tuple(tallies), loops, step)
        i = max(j, i + 1)
    return out


class LaneUse:
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

    def touch(self, access: isa.Access, n: int) -> None:
        """Record one instruction's access (from its table row) to lanes 0..n-1."""
        if access == "sets":
            self.kill(n)
            return
        self.read(n)
        if access != "reads":
            self.write(n)

    @property
    def independent(self) -> bool:
        return not bool(np.any(self.exposed & self.written))

    @property
    def dead_on_entry(self) -> bool:
        """Every lane set before any read: the iteration neither reads nor keeps the value
        the register had when it started."""
        return bool(self.killed.all()) and not bool(self.exposed.any())


def parse(prog: Decoded, lanes: int, loop_depth: int, pc: int, enclosing_end: int | None,
          depth: int) -> Loop:
    """The loop nest at ``pc``, mirroring the checks step mode makes when it runs a LOOP."""
    f = prog.fields[pc]
    count, length = f["count"], f["len"]
    end = pc + length
    if length < 1 or end >= len(prog.instrs):
        raise GiveUp
    if enclosing_end is not None and end >= enclosing_end:
        raise GiveUp
    node = Loop(pc, count, end)
    if count == 0:
        return node
    if depth >= loop_depth:
        raise GiveUp
    p = pc + 1
    transfer = Transfer.identity()
    while p <= end:
        ins, fp = prog.instrs[p], prog.fields[p]
        if ins.flow == "halt":
            raise GiveUp
        if ins.flow == "loop":
            child = parse(prog, lanes, loop_depth, p, end, depth + 1)
            node.items.append(child)
            node.cycles += child.total_cycles
            node.dynamic += child.total_dynamic
            transfer = transfer.then(child.transfer.power(child.count))
            p = child.end + 1
            continue
        if ins.serves_lanes and not 1 <= fp[isa.LANES_FIELD] <= lanes:
            raise GiveUp
        node.items.append(p)
        node.cycles += isa.cycles_of(ins, fp)
        node.dynamic += 1
        transfer = transfer.then(Transfer.of(prog.effects[p]))
        p += 1
    node.transfer = transfer
    classify(node, prog, lanes)
    return node


def classify(node: Loop, prog: Decoded, lanes: int) -> None:
    """Can iterations run as independent instances?  Walks one iteration in order, reading
    how each instruction touches A, W and P from its table row."""
    use = {"A": LaneUse(lanes), "W": LaneUse(lanes), "P": LaneUse(lanes)}
    only_adds = True

    def walk(items: list[int | Loop]) -> None:
        nonlocal only_adds
        for it in items:
            if isinstance(it, Loop):
                if it.count:
                    walk(it.items)
                continue
            ins = prog.instrs[it]
            n = isa.lanes_served(ins, prog.fields[it], lanes)
            for state, access in ins.lane_state:
                use[state].touch(access, n)
                only_adds = only_adds and (state != "A" or access == "adds")

    walk(node.items)
    wp_ok = use["W"].independent and use["P"].independent
    node.acc_add = wp_ok and not use["A"].independent and only_adds
    node.expand = wp_ok and (use["A"].independent or node.acc_add)
    node.dead_on_entry = frozenset(k for k, u in use.items() if u.dead_on_entry)
    node.dot = (len(node.items) == 1 and isinstance(node.items[0], int)
                and prog.instrs[node.items[0]].is_dot_step)
    node.groups = groups(node.items, prog)


_PARSED: dict[tuple[Any, ...], Loop | None] = {}


def parsed(prog: Decoded, text_key: bytes, lanes: int, loop_depth: int, pc: int,
           enclosing: int | None, depth: int) -> Loop | None:
    """The parsed nest at pc, cached per program text: images of one kernel over many tiles
    share their text, and the parse is pure.  None when a batch cannot run it."""
    key = (text_key, lanes, loop_depth, pc, enclosing, depth)
    if key in _PARSED:
        return _PARSED[key]
    try:
        loop: Loop | None = parse(prog, lanes, loop_depth, pc, enclosing, depth)
    except GiveUp:
        loop = None
    # The value is returned from here, not read back: another thread may clear the cache.
    if len(_PARSED) > 512:
        _PARSED.clear()
    _PARSED[key] = loop
    return loop

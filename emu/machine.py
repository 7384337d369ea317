"""The machine state and the step interpreter: the definition every other backend is held to.

Step mode executes one instruction at a time.  What an instruction touches comes from its
row of the ISA table (:mod:`contract.isa`): the lane count check, the address checks of its
pointers, the counters, the register effects and the cycle cost are the same code for every
instruction; only what it does to the data is written per instruction, in :data:`SEMANTICS`.

Timing model: every instruction takes one cycle, except those the table gives ``n`` cycles
(one lane served per cycle).  LOOP takes one cycle; the jump back at the end of a body takes
none.  HALT's cycle is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import faults, isa
from contract.backend import RunResult
from contract.config import AccelConfig
from contract.faults import MEMORY_FAULT, Fault, ProgramFault
from contract.image import Image
from contract.semantics import leaky, product, requantize, wrap


class EmulatorError(ProgramFault):
    """A program fault, naming the pc and the instruction (and, for the checks the RTL makes
    too, its :class:`contract.faults.Fault` kind)."""


def new_counters() -> dict[str, Any]:
    return {
        "cycles": 0,
        "instructions": 0,
        "ops": {i.mnemonic: 0 for i in isa.INSTRUCTIONS},
        "amem_reads": 0,
        "amem_writes": 0,
        "wmem_reads": 0,
        "bmem_reads": 0,
        "shift_adds": 0,
    }


@dataclass
class Decoded:
    """A pre-decoded program: per pc the table entry, its field values, its text and the
    register effects the table derives from them."""

    instrs: list[isa.Instr]
    fields: list[dict[str, int]]
    texts: list[str]
    effects: list[tuple[isa.RegEffect, ...]]
    _traffic: dict[int, list[dict[str, int]]] = field(default_factory=dict)

    def traffic(self, lanes: int) -> list[dict[str, int]]:
        """Per pc, the counter increments of one execution with ``lanes`` lanes."""
        if lanes not in self._traffic:
            self._traffic[lanes] = [isa.traffic(i, f, lanes)
                                    for i, f in zip(self.instrs, self.fields)]
        return self._traffic[lanes]


_DECODED: dict[bytes, Decoded] = {}


def predecode(image: Image) -> Decoded:
    """Decode the text once; cached by its bytes (tiles of one kernel share their text, and
    nothing mutates a Decoded)."""
    key = image.text.tobytes()
    found = _DECODED.get(key)
    if found is None:
        found = _predecode(image)
        if len(_DECODED) > 64:  # (another thread may clear it: found is kept locally)
            _DECODED.clear()
        _DECODED[key] = found
    return found


def _predecode(image: Image) -> Decoded:
    from .asm import format_instr

    instrs, fields, texts = [], [], []
    for pc, word in enumerate(image.text.tolist()):
        try:
            ins, vals = isa.decode(int(word))
        except isa.DecodeError as exc:
            raise EmulatorError(str(exc), pc, f"{int(word):#010x}") from None
        instrs.append(ins)
        fields.append(vals)
        texts.append(format_instr(int(word)))
    effects = [isa.register_effects(i, f) for i, f in zip(instrs, fields)]
    return Decoded(instrs, fields, texts, effects)


def apply_effects(regs: list[int], effects: tuple[isa.RegEffect, ...]) -> None:
    """Register writes (dest, source or -1, addend), in order, modulo 2^16."""
    for rd, rs, add in effects:
        regs[rd] = (add if rs < 0 else regs[rs] + add) & isa.REG_MASK


class Machine:
    """Architectural state plus the step-mode interpreter."""

    def __init__(self, image: Image, config: AccelConfig | None = None,
                 memories: dict[str, NDArray[np.int64]] | None = None):
        """``memories``: the image's initial memories (``image.initial_memories()``, the
        default), given when the caller placed them itself (fast mode stacks many machines')."""
        if config is not None:
            image.check_config(config)
        self.image = image
        self.config = c = config or image.config
        mems = image.initial_memories() if memories is None else memories
        self.wmem, self.bmem, self.amem = mems["wmem"], mems["bmem"], mems["amem"]
        self.depths: dict[isa.Memory, int] = {
            "WMEM": c.wmem_depth, "AMEM": c.amem_depth, "BMEM": c.bmem_depth}
        self.prog = predecode(image)
        self.traffic = self.prog.traffic(c.lanes)
        self.regs = [0] * isa.NUM_REGS
        self.acc = np.zeros(c.lanes, np.int64)
        self.w = np.zeros(c.lanes, np.int64)
        self.p = np.zeros(c.lanes, np.int64)
        self.loops: list[list[int]] = []  # [start, end, remaining]
        self.pc = 0
        self.halted = False
        self.counters = new_counters()

    # Helpers ---------------------------------------------------------------------------
    def fault(self, msg: str, kind: Fault | None = None) -> EmulatorError:
        pc = self.pc
        text = self.prog.texts[pc] if 0 <= pc < len(self.prog.texts) else None
        return EmulatorError(msg, pc, text, kind)

    def addr(self, reg: int, mem: str, depth: int, span: int = 1) -> int:
        a = self.regs[reg]
        if a + span > depth:
            raise self.fault(faults.memory(mem, a, span, reg, depth), MEMORY_FAULT[mem])
        return a

    def lanes_n(self, n: int) -> int:
        if not 1 <= n <= self.config.lanes:
            raise self.fault(faults.lanes(n, self.config.lanes), Fault.LANES)
        return n

    # One instruction -------------------------------------------------------------------
    def step(self) -> None:
        """Execute the instruction at pc."""
        c = self.config
        if not 0 <= self.pc < len(self.prog.instrs):
            raise EmulatorError(faults.past_text(self.pc, len(self.prog.instrs)), self.pc,
                                kind=Fault.PAST_TEXT)
        ins = self.prog.instrs[self.pc]
        f = self.prog.fields[self.pc]
        served = self.lanes_n(f[isa.LANES_FIELD]) if ins.serves_lanes else c.lanes
        addrs: dict[isa.Memory, int] = {}
        for p in ins.pointers:
            addrs[p.memory] = self.addr(f[p.register], p.memory, self.depths[p.memory],
                                        served if p.per_lane else 1)
        jump = SEMANTICS[ins.mnemonic](self, f, addrs, served)
        next_pc = self.pc + 1 if jump is None else jump
        if ins.flow == "halt":
            self.halted = True
        effects = self.prog.effects[self.pc]
        if effects:
            apply_effects(self.regs, effects)
        cnt = self.counters
        for key, v in self.traffic[self.pc].items():
            cnt[key] += v
        cnt["cycles"] += isa.cycles_of(ins, f)
        cnt["instructions"] += 1
        cnt["ops"][ins.mnemonic] += 1
        # Zero-overhead back-edge after the last instruction of a body.  Bodies never share
        # their last instruction and a LOOP is never one (both checked by loop), so one test does.
        if not self.halted and self.loops and self.pc == self.loops[-1][1]:
            top = self.loops[-1]
            if top[2] > 1:
                top[2] -= 1
                next_pc = top[0]
            else:
                self.loops.pop()
        self.pc = next_pc

    def result(self, trace: list[dict[str, Any]] | None = None) -> RunResult:
        return RunResult("emu", self.config, self.amem, self.acc.copy(), list(self.regs),
                         self.counters, dict(self.image.regions), weights=self.w.copy(),
                         products=self.p.copy(), trace=trace)


def cycle_limit_fault(mach: Machine, max_cycles: int) -> EmulatorError:
    """The error both modes raise when the instruction at pc would start at max_cycles."""
    return mach.fault(f"cycle limit {max_cycles} reached (a program that never halts? "
                      "raise --max-cycles)")


# What each instruction does to the data, given its fields, its checked addresses (by memory)
# and the lanes it serves; returns the next pc when it is not pc + 1.  Everything else about
# an instruction (checks, counters, register effects, cycles) comes from its table row.
Semantics = Callable[[Machine, dict[str, int], dict[isa.Memory, int], int], "int | None"]


def _nothing(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    return None


def _loop(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> int | None:
    count, length = f["count"], f["len"]
    end = m.pc + length
    outer_end = m.loops[-1][1] if m.loops else -1
    kind = Fault.NONE
    if length < 1:
        kind = Fault.LOOP_LENGTH
    elif end >= len(m.prog.instrs):
        kind = Fault.LOOP_PAST_TEXT
    elif m.loops and end > outer_end:
        kind = Fault.LOOP_OUTER
    elif m.loops and end == outer_end:
        kind = Fault.LOOP_SAME_END
    elif count != 0 and len(m.loops) >= m.config.loop_depth:
        kind = Fault.LOOP_DEPTH
    if kind != Fault.NONE:
        raise m.fault(faults.loop(kind, end, outer_end, m.config.loop_depth), kind)
    if count == 0:
        return end + 1
    m.loops.append([m.pc + 1, end, count])
    return None


def _loadw(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    m.w = np.array(m.wmem[a["WMEM"]], np.int64)  # WMEM may hold narrow unsigned codes


def _shiftadd(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    m.p = product(m.amem[a["AMEM"]], m.w, m.config.weights, m.config.exp_bits)


def _acc(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    m.acc = wrap(m.acc + m.p, m.config.acc_bits)


def _mac(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    _loadw(m, f, a, n)
    _shiftadd(m, f, a, n)
    _acc(m, f, a, n)


def _clr(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    m.acc = np.zeros(m.config.lanes, np.int64)


def _bias(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    m.acc = m.bmem[a["BMEM"]].copy()


def _lanes_x(m: Machine, a: dict[isa.Memory, int], n: int) -> NDArray[np.int64]:
    # As int64 whatever AMEM's storage (fast mode stacks it in the activations' own width).
    return np.asarray(m.amem[a["AMEM"]: a["AMEM"] + n], np.int64)


def _vld(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    acc = m.acc.copy()
    acc[:n] = _lanes_x(m, a, n)
    m.acc = acc


def _vmax(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    acc = m.acc.copy()
    acc[:n] = np.maximum(acc[:n], _lanes_x(m, a, n))
    m.acc = acc


def _vmac(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    c = m.config
    acc, p = m.acc.copy(), m.p.copy()
    p[:n] = product(_lanes_x(m, a, n), m.w[:n], c.weights, c.exp_bits)
    acc[:n] = wrap(acc[:n] + p[:n], c.acc_bits)
    m.p, m.acc = p, acc


def _req(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    c = m.config
    m.acc = requantize(m.acc, m.bmem[a["BMEM"]], c.exp_bits, c.act_bits, bool(f["relu"]))


def _act(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    c = m.config
    m.acc = leaky(m.acc, m.bmem[a["BMEM"]], c.exp_bits, c.act_bits)


def _store(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    m.amem[a["AMEM"]: a["AMEM"] + n] = wrap(m.acc[:n], m.config.act_bits)


def _spill(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    c = m.config
    m.amem[a["AMEM"]: a["AMEM"] + n] = wrap(m.acc[:n], c.act_bits)
    acc = m.acc.copy()
    acc[:n] >>= c.act_bits
    m.acc = acc


def _fill(m: Machine, f: dict[str, int], a: dict[isa.Memory, int], n: int) -> None:
    c = m.config
    acc = m.acc.copy()
    low = _lanes_x(m, a, n) & ((1 << c.act_bits) - 1)
    acc[:n] = wrap((acc[:n] << c.act_bits) + low, c.acc_bits)
    m.acc = acc


SEMANTICS: dict[str, Semantics] = {
    "NOP": _nothing, "HALT": _nothing, "SETI": _nothing, "ADDI": _nothing, "LOOP": _loop,
    "LOADW": _loadw, "SHIFTADD": _shiftadd, "ACC": _acc, "MAC": _mac, "CLR": _clr,
    "BIAS": _bias, "VLD": _vld, "VMAX": _vmax, "VMAC": _vmac, "REQ": _req, "ACT": _act,
    "STORE": _store, "SPILL": _spill, "FILL": _fill,
}
if set(SEMANTICS) != set(isa.BY_MNEMONIC):  # pragma: no cover - checked at import
    raise AssertionError(f"step semantics and the ISA table disagree: {sorted(SEMANTICS)}")

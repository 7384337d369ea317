"""The golden emulator: exact integer semantics, the documented timing model, counters, trace.

Step mode (:func:`run` with ``fast=False``) executes one instruction at a time and is the
definition every other backend is held to.  Fast mode executes innermost loops as numpy array
operations and must give the same memories, registers and counters.

Timing model: every instruction takes one cycle, except VLD, VMAX, VMAC and STORE, which take
``n`` cycles (one lane served per cycle).  LOOP takes one cycle; the jump back at the end of a
body takes none.  HALT's cycle is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contract import isa
from contract.backend import DEFAULT_MAX_CYCLES, RunResult
from contract.config import AccelConfig
from contract.errors import AsdError
from contract.image import Image, ImageError
from contract.semantics import leaky, requantize, shift_add, wrap


class EmulatorError(RuntimeError, AsdError):
    """A program fault, naming the pc and the instruction."""

    def __init__(self, msg: str, pc: int | None = None, instr: str | None = None):
        where = "" if pc is None else f"pc {pc}" + (f" ({instr})" if instr else "") + ": "
        super().__init__(where + msg)
        self.pc, self.instr, self.msg = pc, instr, msg


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
    """A pre-decoded program: per pc the table entry, its field values and its text."""

    instrs: list[isa.Instr]
    fields: list[dict[str, int]]
    texts: list[str]


_DECODED: dict[bytes, Decoded] = {}


def predecode(image: Image) -> Decoded:
    """Decode the text once; cached by its bytes (tiles of one kernel share their text, and
    nothing mutates a Decoded)."""
    key = image.text.tobytes()
    if key not in _DECODED:
        if len(_DECODED) > 64:
            _DECODED.clear()
        _DECODED[key] = _predecode(image)
    return _DECODED[key]


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
    return Decoded(instrs, fields, texts)


class Machine:
    """Architectural state plus the step-mode interpreter."""

    def __init__(self, image: Image, config: AccelConfig | None = None):
        if config is not None:
            image.check_config(config)
        self.image = image
        self.config = c = config or image.config
        mems = image.initial_memories()
        self.wmem, self.bmem, self.amem = mems["wmem"], mems["bmem"], mems["amem"]
        self.prog = predecode(image)
        self.regs = [0] * isa.NUM_REGS
        self.acc = np.zeros(c.lanes, np.int64)
        self.w = np.zeros(c.lanes, np.int64)
        self.p = np.zeros(c.lanes, np.int64)
        self.loops: list[list[int]] = []  # [start, end, remaining]
        self.pc = 0
        self.halted = False
        self.counters = new_counters()

    # Helpers ---------------------------------------------------------------------------
    def fault(self, msg: str) -> EmulatorError:
        pc = self.pc
        text = self.prog.texts[pc] if 0 <= pc < len(self.prog.texts) else None
        return EmulatorError(msg, pc, text)

    def addr(self, reg: int, mem: str, depth: int, span: int = 1) -> int:
        a = self.regs[reg]
        if a + span > depth:
            what = f"{a}" if span == 1 else f"{a}..{a + span - 1}"
            raise self.fault(f"{mem} address {what} (r{reg}) out of range 0..{depth - 1}")
        return a

    def bump(self, reg: int, inc: int) -> None:
        self.regs[reg] = (self.regs[reg] + inc) & 0xFFFF

    def lanes_n(self, n: int) -> int:
        if not 1 <= n <= self.config.lanes:
            raise self.fault(f"n = {n} lanes, must be 1..{self.config.lanes}")
        return n

    # One instruction -------------------------------------------------------------------
    def step(self) -> dict[str, Any] | None:
        """Execute the instruction at pc; returns nothing (the trace is built by run)."""
        c = self.config
        if not 0 <= self.pc < len(self.prog.instrs):
            raise EmulatorError(f"pc {self.pc} is past the program text ({len(self.prog.instrs)} "
                                "words): missing HALT?", self.pc)
        ins = self.prog.instrs[self.pc]
        f = self.prog.fields[self.pc]
        m = ins.mnemonic
        cnt = self.counters
        cycles = 1
        next_pc = self.pc + 1
        if m == "NOP":
            pass
        elif m == "HALT":
            self.halted = True
        elif m == "SETI":
            self.regs[f["rd"]] = f["imm"]
        elif m == "ADDI":
            self.regs[f["rd"]] = (self.regs[f["rs"]] + f["imm"]) & 0xFFFF
        elif m == "LOOP":
            count, length = f["count"], f["len"]
            if length < 1:
                raise self.fault("loop body length must be at least 1")
            end = self.pc + length
            if end >= len(self.prog.instrs):
                raise self.fault(f"loop body ends at {end}, past the program text")
            if self.loops:
                outer_end = self.loops[-1][1]
                if end > outer_end:
                    raise self.fault(f"loop body (to {end}) extends past the enclosing loop's "
                                     f"body (to {outer_end})")
                if end == outer_end:
                    raise self.fault(f"loop body ends on the same instruction ({end}) as the "
                                     "enclosing loop's; put another instruction between")
            if count == 0:
                next_pc = end + 1
            else:
                if len(self.loops) >= c.loop_depth:
                    raise self.fault(f"loop nesting deeper than loop_depth = {c.loop_depth}")
                self.loops.append([self.pc + 1, end, count])
        elif m == "LOADW":
            a = self.addr(f["rw"], "WMEM", c.wmem_depth)
            self.w = self.wmem[a].copy()
            cnt["wmem_reads"] += 1
            self.bump(f["rw"], f["inc"])
        elif m == "SHIFTADD":
            a = self.addr(f["rx"], "AMEM", c.amem_depth)
            self.p = shift_add(self.amem[a], self.w, c.exp_bits)
            cnt["amem_reads"] += 1
            cnt["shift_adds"] += c.lanes
            self.bump(f["rx"], f["inc"])
        elif m == "ACC":
            self.acc = wrap(self.acc + self.p, c.acc_bits)
        elif m == "MAC":
            aw = self.addr(f["rw"], "WMEM", c.wmem_depth)
            ax = self.addr(f["rx"], "AMEM", c.amem_depth)
            self.w = self.wmem[aw].copy()
            self.p = shift_add(self.amem[ax], self.w, c.exp_bits)
            self.acc = wrap(self.acc + self.p, c.acc_bits)
            cnt["wmem_reads"] += 1
            cnt["amem_reads"] += 1
            cnt["shift_adds"] += c.lanes
            self.bump(f["rw"], f["iw"])
            self.bump(f["rx"], f["ix"])
        elif m == "CLR":
            self.acc = np.zeros(c.lanes, np.int64)
        elif m == "BIAS":
            a = self.addr(f["rb"], "BMEM", c.bmem_depth)
            self.acc = self.bmem[a].copy()
            cnt["bmem_reads"] += 1
            self.bump(f["rb"], f["inc"])
        elif m in ("VLD", "VMAX", "VMAC"):
            n = self.lanes_n(f["n"])
            a = self.addr(f["rx"], "AMEM", c.amem_depth, n)
            x = self.amem[a: a + n]
            acc = self.acc.copy()
            if m == "VLD":
                acc[:n] = x
            elif m == "VMAX":
                acc[:n] = np.maximum(acc[:n], x)
            else:
                p = self.p.copy()
                p[:n] = shift_add(x, self.w[:n], c.exp_bits)
                self.p = p
                acc[:n] = wrap(acc[:n] + p[:n], c.acc_bits)
                cnt["shift_adds"] += n
            self.acc = acc
            cnt["amem_reads"] += n
            cycles = n
            self.bump(f["rx"], f["inc"])
        elif m in ("REQ", "ACT"):
            a = self.addr(f["rq"], "BMEM", c.bmem_depth)
            q = self.bmem[a]
            if m == "REQ":
                self.acc = requantize(self.acc, q, c.exp_bits, c.act_bits, bool(f["relu"]))
            else:
                self.acc = leaky(self.acc, q, c.exp_bits, c.act_bits)
            cnt["bmem_reads"] += 1
            cnt["shift_adds"] += c.lanes
            self.bump(f["rq"], f["inc"])
        elif m == "STORE":
            n = self.lanes_n(f["n"])
            a = self.addr(f["rd"], "AMEM", c.amem_depth, n)
            self.amem[a: a + n] = wrap(self.acc[:n], c.act_bits)
            cnt["amem_writes"] += n
            cycles = n
            self.bump(f["rd"], f["inc"])
        else:  # pragma: no cover - the table and this interpreter are checked together
            raise self.fault(f"no semantics for {m}")
        cnt["cycles"] += cycles
        cnt["instructions"] += 1
        cnt["ops"][m] += 1
        # Zero-overhead back-edge after the last instruction of a body.  Bodies never share
        # their last instruction and a LOOP is never one (both checked above), so one test does.
        if not self.halted and self.loops and self.pc == self.loops[-1][1]:
            top = self.loops[-1]
            if top[2] > 1:
                top[2] -= 1
                next_pc = top[0]
            else:
                self.loops.pop()
        self.pc = next_pc
        return None

    def result(self, trace: list[dict[str, Any]] | None = None) -> RunResult:
        return RunResult("emu", self.config, self.amem, self.acc.copy(), list(self.regs),
                         self.counters, dict(self.image.regions), weights=self.w.copy(),
                         products=self.p.copy(), trace=trace)


def cycle_limit_fault(mach: Machine, max_cycles: int) -> EmulatorError:
    """The error both modes raise when the instruction at pc would start at max_cycles."""
    return mach.fault(f"cycle limit {max_cycles} reached (a program that never halts? "
                      "raise --max-cycles)")


def run(image: Image, config: AccelConfig | None = None, *, fast: bool = False,
        trace: bool = False, max_cycles: int = DEFAULT_MAX_CYCLES) -> RunResult:
    """Run an image to HALT.  Raises :class:`EmulatorError` (or ImageError for a foreign image)."""
    if fast and not trace:
        from .fast import run_fast

        return run_fast(image, config, max_cycles=max_cycles)
    mach = Machine(image, config)
    log: list[dict[str, Any]] | None = [] if trace else None
    while not mach.halted:
        if mach.counters["cycles"] >= max_cycles:
            raise cycle_limit_fault(mach, max_cycles)
        if log is not None:
            before = (list(mach.regs), mach.acc.copy(), mach.counters["amem_writes"])
            pc, cyc = mach.pc, mach.counters["cycles"]
            mach.step()
            entry: dict[str, Any] = {"cycle": cyc, "pc": pc, "instr": mach.prog.texts[pc]}
            regs = {f"r{i}": v for i, (o, v) in enumerate(zip(before[0], mach.regs)) if o != v}
            if regs:
                entry["regs"] = regs
            if not np.array_equal(before[1], mach.acc):
                entry["acc"] = mach.acc.tolist()
            if mach.counters["amem_writes"] != before[2]:
                entry["stored"] = int(mach.counters["amem_writes"] - before[2])
            log.append(entry)
        else:
            mach.step()
    return mach.result(log)


__all__ = ["EmulatorError", "ImageError", "Machine", "RunResult", "run", "DEFAULT_MAX_CYCLES"]

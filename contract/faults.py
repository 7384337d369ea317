"""Program faults: the one list of what stops a program before HALT.

The emulator raises them as it checks each instruction; the RTL core flags the same checks in
the same order, halts on the faulting instruction with none of its effects, and reports the
fault's code, its pc and one argument (``FAULT_ARG`` below); every RTL backend turns that into
the same :class:`ProgramFault`, with the same message, as the emulator's.
"""

from __future__ import annotations

from enum import IntEnum

from .errors import AsdError

FAULT_BITS = 4  # width of the core's ``fault`` port (0: no fault)


class Fault(IntEnum):
    """Fault codes, in the order the checks are made for one instruction."""

    NONE = 0
    PAST_TEXT = 1  # pc at or past the program text
    LANES = 2  # n outside 1..lanes
    WMEM = 3  # an address (plus the lanes it serves) outside the memory
    BMEM = 4
    AMEM = 5
    LOOP_LENGTH = 6  # LOOP len < 1
    LOOP_PAST_TEXT = 7  # the body ends at or past the program text
    LOOP_OUTER = 8  # the body ends past the enclosing loop's body
    LOOP_SAME_END = 9  # the body ends on the enclosing loop's last instruction
    LOOP_DEPTH = 10  # a loop that runs, nested deeper than loop_depth


MEMORY_FAULT = {"WMEM": Fault.WMEM, "BMEM": Fault.BMEM, "AMEM": Fault.AMEM}

# What the core's ``fault_arg`` port holds for each fault (the rest comes from the program).
FAULT_ARG = {Fault.WMEM: "the address register's value", Fault.BMEM: "the same",
             Fault.AMEM: "the same", Fault.LOOP_OUTER: "the enclosing body's last pc",
             Fault.LOOP_SAME_END: "the same"}


class ProgramFault(RuntimeError, AsdError):
    """A program fault, naming the pc and the instruction (emulator and RTL alike)."""

    def __init__(self, msg: str, pc: int | None = None, instr: str | None = None,
                 kind: Fault | None = None):
        where = "" if pc is None else f"pc {pc}" + (f" ({instr})" if instr else "") + ": "
        super().__init__(where + msg)
        self.pc, self.instr, self.msg, self.kind = pc, instr, msg, kind


def past_text(pc: int, words: int) -> str:
    return f"pc {pc} is past the program text ({words} words): missing HALT?"


def lanes(n: int, lanes_: int) -> str:
    return f"n = {n} lanes, must be 1..{lanes_}"


def memory(mem: str, addr: int, span: int, reg: int, depth: int) -> str:
    what = f"{addr}" if span == 1 else f"{addr}..{addr + span - 1}"
    return f"{mem} address {what} (r{reg}) out of range 0..{depth - 1}"


def loop(kind: Fault, end: int, outer_end: int, loop_depth: int) -> str:
    if kind == Fault.LOOP_LENGTH:
        return "loop body length must be at least 1"
    if kind == Fault.LOOP_PAST_TEXT:
        return f"loop body ends at {end}, past the program text"
    if kind == Fault.LOOP_OUTER:
        return (f"loop body (to {end}) extends past the enclosing loop's body "
                f"(to {outer_end})")
    if kind == Fault.LOOP_SAME_END:
        return (f"loop body ends on the same instruction ({end}) as the enclosing loop's; "
                "put another instruction between")
    if kind == Fault.LOOP_DEPTH:
        return f"loop nesting deeper than loop_depth = {loop_depth}"
    raise ValueError(f"not a loop fault: {kind!r}")

"""Static timing: the cycles a program takes, computed from its text and the ISA table alone.

The timing model is the table's: an instruction costs one cycle, or ``n`` cycles when its
``cycles`` column says ``"n"`` (one per lane served); LOOP costs one cycle and the jump back
at the end of a body none; the HALT cycle is counted.  The emulator and every RTL backend count
the same, so for a program with no data-dependent control flow (every program the compiler
writes) this is the exact cycle count, known before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import isa

# Control flow is the only place the model needs to know an instruction by name: a LOOP
# repeats its body, a HALT ends the count.
_LOOP = isa.BY_MNEMONIC["LOOP"]
_HALT = isa.BY_MNEMONIC["HALT"]


def instruction_cycles(ins: isa.Instr, fields: dict[str, int]) -> int:
    """Cycles of one executed instruction with these field values."""
    return fields["n"] if ins.cycles == "n" else 1


def static_cycles(text: Iterable[int]) -> int:
    """Cycles of a program with no data-dependent control flow, from its text alone."""
    decoded = [isa.decode(int(word)) for word in text]

    def span(start: int, end: int) -> int:  # instructions [start, end]
        total, pc = 0, start
        while pc <= end:
            ins, fields = decoded[pc]
            if ins is _LOOP:
                body_end = pc + fields["len"]
                total += 1 + fields["count"] * span(pc + 1, body_end)
                pc = body_end + 1
                continue
            total += instruction_cycles(ins, fields)
            if ins is _HALT:
                break
            pc += 1
        return total

    return span(0, len(decoded) - 1)

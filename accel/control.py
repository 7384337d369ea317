"""The core's control as a table, and the decoder built from it.

:data:`CONTROL` holds each opcode's control row (the named columns of PyMTL3's ProcCtrl
table), derived from the ISA table's operand roles: the register fields on the two register
ports and their post-increments, the register write, multi-cycle and AMEM write.
:func:`port_control` turns every column into a ROM indexed by the opcode (a tuple of ints,
which MyHDL converts to a ``case`` in Verilog and VHDL) and muxes the register fields by the
ROMs' select codes, so the core's port selection, increments, register write, lane count and
AMEM write enable follow the table with no per-instruction wiring.  What each instruction
computes (its datapath: the lanes' PEs, accumulator sources, the loop and halt sequencing)
is decoded where that datapath lives, in :mod:`accel.core` and :mod:`accel.core_lane`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from myhdl import Signal, block

from contract import isa
from contract.errors import AsdError

from .hdl import mux_chain, rom, unsigned


class RTLError(RuntimeError, AsdError):
    """The RTL cannot be built for this table or configuration."""


@dataclass(frozen=True)
class ControlRow:
    """One opcode's core control, derived from its ISA row.  Read port 1 serves a WMEM or
    BMEM pointer or the source of a register write; read port 2 the AMEM pointer, offset by
    the lane served."""

    mnemonic: str
    opcode: int
    port1: str | None  # register field read on port 1
    inc1: str | None  # post-increment of port 1's register, if it is a pointer
    port2: str | None  # register field read on port 2
    inc2: str | None
    reg_write: str | None  # register field written from the addend (+ port 1)
    addend: str | None  # the field added to port 1 (or loaded) by the register write
    adds_port1: bool  # the register write adds port 1 (ADDI) rather than loading (SETI)
    multi: bool  # one cycle per lane served
    amem_write: bool  # writes AMEM through port 2 (the served lane's A, low act_bits bits)


def control_table() -> tuple[ControlRow, ...]:
    """Every opcode's control row from its ISA roles; RTLError for a row the core's two
    register ports and one AMEM port cannot serve."""
    rows = []
    for ins in isa.INSTRUCTIONS:
        if sum(p.memory == "AMEM" for p in ins.pointers) > 1 or \
                sum(p.memory != "AMEM" for p in ins.pointers) > 1:
            raise RTLError(f"{ins.mnemonic}: the core has one AMEM port and two register ports")
        p1 = next((p for p in ins.pointers if p.memory != "AMEM"), None)
        p2 = next((p for p in ins.pointers if p.memory == "AMEM"), None)
        w = ins.reg_write
        if p1 is not None and w is not None and w.source is not None:
            raise RTLError(f"{ins.mnemonic}: port 1 cannot serve a pointer and a source")
        amem_write = bool(p2 and p2.writes)
        if amem_write and ins.access("A") not in ("reads", "updates"):
            raise RTLError(f"{ins.mnemonic}: the core's AMEM write data is the lane's A, "
                           "which this instruction does not read")
        rows.append(ControlRow(
            ins.mnemonic, ins.opcode,
            p1.register if p1 else (w.source if w else None), p1.increment if p1 else None,
            p2.register if p2 else None, p2.increment if p2 else None,
            w.dest if w else None, w.addend if w else None, bool(w and w.source),
            ins.cycles == "n", amem_write))
    return tuple(rows)


CONTROL = control_table()
ROM_SIZE = 1 << isa.OPCODE_BITS  # every opcode has a ROM entry; unused ones control nothing


def flag_rom(pred: Callable[[ControlRow], bool]) -> tuple[int, ...]:
    """A one-bit ROM: 1 at the opcodes whose row satisfies ``pred``."""
    rom_ = [0] * ROM_SIZE
    for r in CONTROL:
        rom_[r.opcode] = int(pred(r))
    return tuple(rom_)


def select_rom(column: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The field names a column names (in table order) and a ROM of each opcode's index into
    them; 0 where the column is empty, since no enable then looks at the selection."""
    names: list[str] = []
    for r in CONTROL:
        v = getattr(r, column)
        if v is not None and v not in names:
            names.append(v)
    rom_ = [0] * ROM_SIZE
    for r in CONTROL:
        v = getattr(r, column)
        rom_[r.opcode] = names.index(v) if v is not None else 0
    return tuple(names), tuple(rom_)


# Column -> enable derived from it: the ports post-increment where the row names an increment.
_FLAGS: dict[str, Callable[[ControlRow], bool]] = {
    "bump1": lambda r: r.inc1 is not None, "bump2": lambda r: r.inc2 is not None,
    "writes": lambda r: r.reg_write is not None, "adds": lambda r: r.adds_port1,
    "multi": lambda r: r.multi, "amem_write": lambda r: r.amem_write,
}
# Select column -> the PortControl signal the selected field drives.
_SELECTS = {"port1": "idx1", "inc1": "inc1", "port2": "idx2", "inc2": "inc2",
            "reg_write": "wr_idx", "addend": "wr_add"}


def _field_like(names: tuple[str, ...], fields: dict[str, Any], column: str) -> Signal:
    """A signal of the one type every field the column selects has (they share a mux)."""
    kinds = {(len(fields[n]), fields[n].min, fields[n].max) for n in names}
    if len(kinds) != 1:
        raise RTLError(f"the {column} column selects fields of different widths {names}")
    return Signal(fields[names[0]].val)


class PortControl:
    """The decoded control of the register ports, register write, lane count and AMEM write
    (a MyHDL interface: one signal per attribute).  ``inc1``/``inc2`` and ``wr_add`` have
    their fields' types; the rest are register indices or enables."""

    idx1: Any
    inc1: Any
    idx2: Any
    inc2: Any
    wr_idx: Any
    wr_add: Any
    bump1: Any
    bump2: Any
    writes: Any
    adds: Any
    multi: Any
    amem_write: Any

    def __init__(self, fields: dict[str, Any]) -> None:
        for column, attr in _SELECTS.items():
            names, _ = select_rom(column)
            setattr(self, attr, _field_like(names, fields, column))
        for flag in _FLAGS:
            setattr(self, flag, Signal(bool(0)))


@block
def port_control(op: Any, fields: dict[str, Any], out: PortControl) -> Any:
    """Drive ``out`` for opcode ``op`` from :data:`CONTROL`'s ROMs and the decoded instruction
    ``fields`` (field name -> signal)."""
    insts = []
    for column, attr in _SELECTS.items():
        names, codes = select_rom(column)
        sel = unsigned(max(1, (len(names) - 1).bit_length()))
        if len(names) > 1:  # one field needs no select (mux_chain then copies it)
            insts.append(rom(op, codes, sel))
        insts.append(mux_chain(sel, tuple(range(len(names))), [fields[n] for n in names],
                               getattr(out, attr)))
    for flag, pred in _FLAGS.items():
        insts.append(rom(op, flag_rom(pred), getattr(out, flag)))
    return insts


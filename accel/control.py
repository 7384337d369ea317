"""The core's control as a table: each opcode's register ports, increments, register write,
multi-cycle and AMEM write, derived from the ISA table's operand roles (the named columns of
PyMTL3's ProcCtrl table).  The core's generators are written by hand, because MyHDL converts
their Python source; :func:`check_wiring` holds that hand wiring against this table at every
elaboration, so a table edit the wiring does not follow fails there, not in simulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract import isa
from contract.errors import AsdError


class RTLError(RuntimeError, AsdError):
    """The RTL cannot be built for this table or configuration."""


@dataclass(frozen=True)
class ControlRow:
    """One opcode's core control, derived from its ISA row (the named columns of PyMTL3's
    ProcCtrl table).  Read port 1 serves a WMEM or BMEM pointer or the source of a register
    write; read port 2 the AMEM pointer, offset by the lane served."""

    mnemonic: str
    opcode: int
    port1: str | None  # register field read on port 1
    inc1: str | None  # post-increment of port 1's register, if it is a pointer
    port2: str | None  # register field read on port 2
    inc2: str | None
    reg_write: str | None  # register field written from the immediate (+ port 1)
    adds_port1: bool  # the register write adds port 1 (ADDI) rather than loading (SETI)
    multi: bool  # one cycle per lane served
    amem_write: bool  # writes AMEM through port 2


def control_table() -> tuple[ControlRow, ...]:
    """Every opcode's control row from its ISA roles; RTLError for a row the core's two
    register ports and one AMEM port cannot serve."""
    rows = []
    for ins in isa.INSTRUCTIONS:
        if len(ins.pointers) > 2 or sum(p.memory == "AMEM" for p in ins.pointers) > 1:
            raise RTLError(f"{ins.mnemonic}: the core has one AMEM port and two register ports")
        p1 = next((p for p in ins.pointers if p.memory != "AMEM"), None)
        p2 = next((p for p in ins.pointers if p.memory == "AMEM"), None)
        w = ins.reg_write
        if p1 is not None and w is not None and w.source is not None:
            raise RTLError(f"{ins.mnemonic}: port 1 cannot serve a pointer and a source")
        rows.append(ControlRow(
            ins.mnemonic, ins.opcode,
            p1.register if p1 else (w.source if w else None), p1.increment if p1 else None,
            p2.register if p2 else None, p2.increment if p2 else None,
            w.dest if w else None, bool(w and w.source), ins.cycles == "n",
            bool(p2 and p2.writes)))
    return tuple(rows)


CONTROL = control_table()


def only_row(rows: list[ControlRow], what: str) -> ControlRow:
    if len(rows) != 1:
        raise RTLError(f"the core wires exactly one instruction that {what}; the table has "
                       f"{[r.mnemonic for r in rows]}")
    return rows[0]


# How the core's control generators (reg_ports, reg_incs, reg_write) are wired, as data, so
# that elaboration checks the wiring against CONTROL: per register port, the lane flags that
# select each field (first match wins, the last entry is the default), the flags that
# post-increment through the port, and the increment field per selecting flags.
_PORT1_FIELDS = ((("is_mac", "is_loadw"), "rw"), (("is_bias",), "rb"),
                 (("is_req", "is_act"), "rq"), ((), "rs"))
_PORT2_FIELDS = (((), "rx"),)
_PORT1_BUMPS = ("is_mac", "is_loadw", "is_bias", "is_req", "is_act")
_PORT2_BUMPS = ("is_mac", "is_shiftadd", "is_vld", "is_vmax", "is_vmac", "is_store",
                "is_spill", "is_fill")
_INC_FIELDS = ((("is_mac",), ("iw", "ix")), ((), ("inc", "inc")))
_WRITE_FIELD = "rd"  # reg_write's destination index


def check_wiring(flag_ops: dict[str, int]) -> None:
    """The hand-wired control agrees with CONTROL for every opcode (``flag_ops``: the opcode
    each lane flag decodes)."""

    def pick(op: int, table: tuple[tuple[tuple[str, ...], Any], ...]) -> Any:
        return next(v for flags, v in table if not flags or op in {flag_ops[f] for f in flags})

    for r in CONTROL:
        wired = {
            "port1": pick(r.opcode, _PORT1_FIELDS) if r.port1 else None,
            "port2": pick(r.opcode, _PORT2_FIELDS) if r.port2 else None,
            "inc1": pick(r.opcode, _INC_FIELDS)[0] if r.opcode in
            {flag_ops[f] for f in _PORT1_BUMPS} else None,
            "inc2": pick(r.opcode, _INC_FIELDS)[1] if r.opcode in
            {flag_ops[f] for f in _PORT2_BUMPS} else None,
        }
        wired["reg_write"] = _WRITE_FIELD if r.reg_write else None
        want = {"port1": r.port1, "port2": r.port2, "inc1": r.inc1, "inc2": r.inc2,
                "reg_write": r.reg_write}
        if wired != want:
            raise RTLError(f"{r.mnemonic}: the core's control wiring {wired} disagrees with "
                           f"the ISA table's roles {want}")

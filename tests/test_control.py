"""The core's control table (accel.control): its rows follow the ISA roles, and the decoder
built from it drives every opcode's register ports, increments, register write, lane count
and AMEM write from the instruction's own fields (MyHDL simulation, every opcode)."""

from __future__ import annotations

import dataclasses

import pytest
from myhdl import Signal, Simulation, StopSimulation, delay, instance, intbv

from accel import control
from accel.core import field_signal
from accel.hdl import fast_elaboration, rom
from contract import isa


def test_rtl_control_rows_follow_the_roles() -> None:
    """The core's control table is the ISA roles seen from its two register ports."""
    rows = {r.mnemonic: r for r in control.CONTROL}
    assert (rows["MAC"].port1, rows["MAC"].inc1, rows["MAC"].port2, rows["MAC"].inc2) == \
        ("rw", "iw", "rx", "ix")
    assert rows["STORE"].amem_write and rows["STORE"].multi and rows["STORE"].port2 == "rx"
    assert rows["SPILL"].amem_write and rows["SPILL"].port2 == "rx"
    assert not rows["FILL"].amem_write and rows["FILL"].port2 == "rx"
    assert rows["ADDI"].port1 == "rs" and rows["ADDI"].adds_port1
    assert rows["SETI"].reg_write == "rd" and rows["SETI"].addend == "imm"
    assert not rows["SETI"].adds_port1 and rows["SETI"].port1 is None


def test_roms_hold_the_columns() -> None:
    names, codes = control.select_rom("port1")
    assert len(codes) == 1 << isa.OPCODE_BITS
    for r in control.CONTROL:
        if r.port1 is not None:
            assert names[codes[r.opcode]] == r.port1
    multi = control.flag_rom(lambda r: r.multi)
    assert {op for op, v in enumerate(multi) if v} == \
        {i.opcode for i in isa.INSTRUCTIONS if i.cycles == "n"}


def _decode(op: int, values: dict[str, int]) -> dict[str, int]:
    """The port control the decoder drives for opcode ``op`` and these field values."""
    fields = {}
    for n in sorted({f.name for i in isa.INSTRUCTIONS for f in i.fields}):
        s = field_signal(n)
        fields[n] = Signal(intbv(values.get(n, 0), min=s.min, max=s.max))
    out = control.PortControl(fields)
    got: dict[str, int] = {}

    @instance
    def probe():  # type: ignore[no-untyped-def]
        yield delay(1)
        got.update({k: int(v.val) for k, v in vars(out).items()})
        raise StopSimulation

    with fast_elaboration():
        dut = control.port_control(Signal(intbv(op)[isa.OPCODE_BITS:]), fields, out)
    Simulation(dut, probe).run(quiet=1)
    return got


# Distinct values per field, so a wrong field on a port shows.
_VALUES = {"rd": 1, "rs": 2, "rw": 3, "rb": 4, "rq": 5, "rx": 6, "inc": -300, "iw": 17,
           "ix": -9, "imm": 4321}


@pytest.mark.parametrize("row", control.CONTROL, ids=lambda r: r.mnemonic)
def test_decoder_follows_the_row(row: control.ControlRow) -> None:
    ins = isa.BY_OPCODE[row.opcode]
    values = {f.name: _VALUES[f.name] for f in ins.fields if f.name in _VALUES}
    got = _decode(row.opcode, values)
    want = {"bump1": row.inc1 is not None, "bump2": row.inc2 is not None,
            "writes": row.reg_write is not None, "adds": row.adds_port1, "multi": row.multi,
            "amem_write": row.amem_write}
    assert {k: bool(got[k]) for k in want} == want
    for column, attr in (("port1", "idx1"), ("inc1", "inc1"), ("port2", "idx2"),
                         ("inc2", "inc2"), ("reg_write", "wr_idx"), ("addend", "wr_add")):
        name = getattr(row, column)
        if name is not None:
            assert got[attr] == values[name], (column, name)


def test_table_rows_the_core_cannot_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    bias = isa.BY_MNEMONIC["BIAS"]
    two = dataclasses.replace(bias, pointers=bias.pointers + (isa.Pointer("rb", "WMEM", "inc"),))
    monkeypatch.setattr(isa, "INSTRUCTIONS", (two,))
    with pytest.raises(control.RTLError, match="two register ports"):
        control.control_table()
    store = isa.BY_MNEMONIC["STORE"]
    blind = dataclasses.replace(store, lane_state=())
    monkeypatch.setattr(isa, "INSTRUCTIONS", (blind,))
    with pytest.raises(control.RTLError, match="AMEM write data"):
        control.control_table()


def test_rom_covers_its_address() -> None:
    with pytest.raises(ValueError, match="needs 32 entries"):
        rom(Signal(intbv(0)[5:]), (0, 1), Signal(bool(0)))

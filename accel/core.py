"""The MyHDL core: one instruction a cycle, cycle-accurate to the emulator's timing model.

Structure (all of it convertible to Verilog and VHDL):

* fetch/decode: the instruction at ``pc`` is read combinationally from IMEM; every opcode
  constant and every field position comes from :mod:`contract.isa` (``isa.OPCODES`` and
  ``isa.field_offsets``), so the table stays the only copy of the encoding.
* address registers ``R0..R7`` with two read ports and post-increments (both apply when a MAC
  names the same register twice);
* a loop stack of ``loop_depth`` levels giving a zero-overhead back-edge;
* ``lanes`` lanes, each with its weight register W, product register P, accumulator A, a PE
  (:mod:`accel.pe`) for MAC/SHIFTADD/VMAC and a second PE feeding the requantization and
  activation unit (REQ, ACT);
* memory ports with combinational reads and one synchronous AMEM write, so the memories stay
  outside the core (the testbench or the simulator model holds them, loaded from the image).

Multi-cycle instructions (the table's ``cycles == "n"``) serve lane ``k`` in their ``k``-th
cycle; ``cycles`` counts every cycle from reset release to the HALT cycle inclusive, which is
exactly the emulator's ``counters["cycles"]``.

Every name that reaches the HDL is prefixed so it cannot collide with a Verilog,
SystemVerilog or VHDL keyword (MyHDL does not escape them).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from myhdl import ResetSignal, Signal, always_comb, always_seq, block, intbv, modbv

from contract import hwcode, isa
from contract.config import AccelConfig
from contract.errors import AsdError

from . import pe as pe_mod

# The mnemonics this datapath implements.  A new instruction added to the table without RTL
# support must fail at elaboration, not silently decode as nothing.
IMPLEMENTED = frozenset(
    ["NOP", "HALT", "SETI", "ADDI", "LOOP", "LOADW", "SHIFTADD", "ACC", "MAC", "CLR", "BIAS",
     "VLD", "VMAX", "VMAC", "REQ", "ACT", "STORE"])

CYCLE_BITS = 40  # ~10^12 cycles before the counter wraps
DBG_BITS = 5  # selects one of up to 32 lanes / 8 registers after HALT
REQ_SHIFT_BITS = isa.REQ_SHIFT_BITS


class RTLError(RuntimeError, AsdError):
    """The RTL cannot be built for this table or configuration."""


def addr_bits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


def _unsigned(bits: int, val: int = 0) -> Signal:
    return Signal(intbv(val)[bits:])


def _signed(bits: int) -> Signal:
    return Signal(intbv(0, min=-(1 << (bits - 1)), max=1 << (bits - 1)))


def port_widths(config: AccelConfig) -> dict[str, int]:
    """Width of every core port (``0`` marks a one-bit ``bool``)."""
    c = config
    return {
        "clk": 0, "rst": 0,
        "imem_addr": addr_bits(c.imem_depth), "imem_data": isa.WORD_BITS,
        "wmem_addr": addr_bits(c.wmem_depth), "wmem_data": c.lanes * c.code_bits,
        "bmem_addr": addr_bits(c.bmem_depth), "bmem_data": c.lanes * c.acc_bits,
        "amem_addr": addr_bits(c.amem_depth), "amem_rdata": c.act_bits,
        "amem_we": 0, "amem_wdata": c.act_bits,
        "halted": 0, "cycles": CYCLE_BITS,
        "dbg_sel": DBG_BITS, "dbg_acc": c.acc_bits, "dbg_reg": isa.REG_BITS,
    }


PORT_INPUTS = ("clk", "rst", "imem_data", "wmem_data", "bmem_data", "amem_rdata", "dbg_sel")


def make_ports(config: AccelConfig) -> dict[str, Any]:
    """Fresh signals for every core port, keyed by port name (all unsigned or bool)."""
    return signals_for(port_widths(config))


def signals_for(widths: dict[str, int]) -> dict[str, Any]:
    """Fresh port signals by name: ``rst`` a synchronous reset, width 0 a bool, else unsigned."""
    out: dict[str, Any] = {}
    for name, w in widths.items():
        if name == "rst":
            out[name] = ResetSignal(1, active=1, isasync=False)
        elif w == 0:
            out[name] = Signal(bool(0))
        else:
            out[name] = _unsigned(w)
    return out


# ---------------------------------------------------------------------------------------------
# Small convertible building blocks


@block
def mux_chain(sel: Any, keys: tuple[int, ...], inputs: list[Any], out: Any) -> Any:
    """``out = inputs[j]`` where ``sel == keys[j]`` (the first input otherwise).

    Built as a chain of two-way muxes on plain signals: MyHDL would turn an indexed list of
    signals into an HDL memory, which clashes with driving each element from its own lane.
    """
    insts = []
    prev = inputs[0]
    for j in range(1, len(inputs)):
        nxt = out if j == len(inputs) - 1 else Signal(out.val)
        insts.append(mux2(sel, keys[j], inputs[j], prev, nxt))
        prev = nxt
    if len(inputs) == 1:
        insts.append(copy_sig(inputs[0], out))
    return insts


@block
def mux2(sel: Any, key: int, a: Any, b: Any, y: Any) -> Any:
    @always_comb
    def pick() -> None:
        if sel == key:
            y.next = a
        else:
            y.next = b

    return pick


@block
def copy_sig(a: Any, y: Any) -> Any:
    @always_comb
    def cp() -> None:
        y.next = a

    return cp


@block
def slice_bits(word: Any, lo: int, width: int, y: Any) -> Any:
    @always_comb
    def cut() -> None:
        y.next = word[lo + width:lo]

    return cut


@block
def slice_signed(word: Any, lo: int, width: int, y: Any) -> Any:
    @always_comb
    def cut() -> None:
        y.next = word[lo + width:lo].signed()

    return cut


@block
def field_decode(op: Any, instr: Any, name: str, dst: Any) -> Any:
    """Decode field ``name`` from every instruction of the table that has it.

    Under another opcode ``dst`` holds some other instruction's bits: every use is gated by
    the opcode, so a zero default would only cost muxes.

    Positions and opcodes come from ``isa.field_offsets``; a field that is a signed immediate
    in every instruction is sign-extended to ``dst``'s width.
    """
    sources = [(ins.opcode, f, lo) for ins in isa.INSTRUCTIONS
               for f, lo in isa.field_offsets(ins) if f.name == name]
    signed = all(f.kind == "simm" for _, f, _ in sources)
    insts = []
    picks: list[Any] = []
    keys: list[int] = []
    for opcode, f, lo in sources:
        s = Signal(dst.val)
        insts.append(slice_signed(instr, lo, f.width, s) if signed
                     else slice_bits(instr, lo, f.width, s))
        picks.append(s)
        keys.append(opcode)
    insts.append(mux_chain(op, tuple(keys), picks, dst))
    return insts


def field_signal(name: str) -> Signal:
    """A signal wide enough for field ``name`` in every instruction that has it."""
    fs = [f for ins in isa.INSTRUCTIONS for f in ins.fields if f.name == name]
    if all(f.kind == "simm" for f in fs):
        return _signed(isa.REG_BITS)
    return _unsigned(max(f.width for f in fs))


class _Ctl:
    """Decoded control broadcast to the lanes (a MyHDL interface: one signal per attribute)."""

    def __init__(self) -> None:
        self.run = Signal(bool(0))  # an instruction executes this cycle
        self.k = _unsigned(6)  # lane served by a multi-cycle instruction
        self.is_loadw = Signal(bool(0))
        self.is_shiftadd = Signal(bool(0))
        self.is_acc = Signal(bool(0))
        self.is_mac = Signal(bool(0))
        self.is_clr = Signal(bool(0))
        self.is_bias = Signal(bool(0))
        self.is_vld = Signal(bool(0))
        self.is_vmax = Signal(bool(0))
        self.is_vmac = Signal(bool(0))
        self.is_req = Signal(bool(0))
        self.is_act = Signal(bool(0))
        self.relu = Signal(bool(0))


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


def _only(rows: list[ControlRow], what: str) -> ControlRow:
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
_PORT2_FIELDS = ((("is_store",), "rd"), ((), "rx"))
_PORT1_BUMPS = ("is_mac", "is_loadw", "is_bias", "is_req", "is_act")
_PORT2_BUMPS = ("is_mac", "is_shiftadd", "is_vld", "is_vmax", "is_vmac", "is_store")
_INC_FIELDS = ((("is_mac",), ("iw", "ix")), ((), ("inc", "inc")))
_WRITE_FIELD = "rd"  # reg_write's destination index


def _check_wiring(flag_ops: dict[str, int]) -> None:
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


# ---------------------------------------------------------------------------------------------
# One lane


@block
def lane(clk: Any, rst: Any, index: int, config: AccelConfig, ctl: _Ctl, wcode: Any,
          bword: Any, xb: Any, nxb: Any, acc_q: Any) -> Any:
    """Weight, product and accumulator registers of lane ``index`` plus its two PEs."""
    c = config
    top = c.window - 1
    pw = c.act_bits + c.window + 1  # shift-add product of an activation
    rw = c.acc_bits + c.window + 1  # shift-add product of an accumulator (REQ/ACT)
    cb = c.code_bits
    kind = c.pe
    insts = []

    # W holds the code (shiftadd) or the decoded integer (multiplier: decoded when loaded).
    if kind == "multiplier":
        # W resets to what code 0 stands for (2^2^E: both digits 2^0), as the emulator's
        # zeroed weight codes do, so a VMAC before any LOADW agrees.
        wbits = c.window + 2
        w0 = int(hwcode.to_int(0, c.exp_bits))
        wreg = Signal(intbv(w0, min=-(1 << (wbits - 1)), max=1 << (wbits - 1)))
        wload = _signed(wbits)
        insts.append(pe_mod.decode_code(wcode, wload, c.exp_bits))
    else:
        wreg = _unsigned(cb)
        wload = wcode
    wsel = Signal(wreg.val)  # MAC uses the word it loads in the same cycle

    @always_comb
    def choose_w() -> None:
        if ctl.is_mac:
            wsel.next = wload
        else:
            wsel.next = wreg

    prod = _signed(pw)
    insts.append(pe_mod.pe(xb, wsel, prod, kind, c.act_bits, c.exp_bits, nxb))

    # Requantization / activation: sa(A, q.code), rounding shift, saturation, ReLU.
    qx_bits = max(c.acc_bits, cb + REQ_SHIFT_BITS)
    qx = _signed(qx_bits)  # sign-extended so q.shift can read bits above acc_bits
    qcode = _unsigned(cb)
    qshift = _unsigned(REQ_SHIFT_BITS)

    @always_comb
    def widen_q() -> None:
        qx.next = bword.signed()

    insts.append(slice_bits(qx, 0, cb, qcode))
    insts.append(slice_bits(qx, cb, REQ_SHIFT_BITS, qshift))
    if kind == "multiplier":
        qint = _signed(c.window + 2)
        insts.append(pe_mod.decode_code(qcode, qint, c.exp_bits))
        qsel: Any = qint
    else:
        qsel = qcode
    rprod = _signed(rw)
    insts.append(pe_mod.pe(acc_q, qsel, rprod, kind, c.acc_bits, c.exp_bits))

    shamt = _unsigned(REQ_SHIFT_BITS)
    shm1 = _unsigned(REQ_SHIFT_BITS)
    rsh = _signed(rw)
    rinc = _signed(rw + 1)
    rrnd = _signed(rw + 1)
    ysat = _signed(c.act_bits)
    amax, amin = c.act_max, c.act_min
    act_bits = c.act_bits
    acc_bits = c.acc_bits

    @always_comb
    def shift_amount() -> None:
        # ACT's slope is a pure code: the shift is fixed at 2^E - 1.
        if ctl.is_act:
            shamt.next = top
        else:
            shamt.next = qshift

    @always_comb
    def shift_minus_one() -> None:
        if shamt == 0:
            shm1.next = 0
        else:
            shm1.next = shamt - 1

    @always_comb
    def round_pre() -> None:
        # rnd(t, s) = ((t >>> (s-1)) + 1) >>> 1 for s >= 1: the same as adding 2^(s-1) first,
        # without a 64-bit adder for the half.
        rsh.next = rprod >> shm1

    @always_comb
    def round_inc() -> None:
        rinc.next = rsh + 1

    @always_comb
    def round_fin() -> None:
        if shamt == 0:
            rrnd.next = rprod
        else:
            rrnd.next = rinc >> 1

    @always_comb
    def saturate() -> None:
        if rrnd > amax:
            ysat.next = amax
        elif rrnd < amin:
            if ctl.relu:
                ysat.next = 0
            else:
                ysat.next = amin
        elif rrnd < 0 and ctl.relu:
            ysat.next = 0
        else:
            ysat.next = rrnd[act_bits:].signed()

    preg = _signed(pw)
    asum = _signed(c.acc_bits + 1)
    xacc = _signed(c.acc_bits)

    @always_comb
    def acc_add() -> None:
        # Wrap: the accumulator keeps the low acc_bits bits (slice, not a sign-keeping resize).
        if ctl.is_acc:
            asum.next = acc_q + preg
        else:
            asum.next = acc_q + prod

    @always_comb
    def widen_x() -> None:
        xacc.next = xb

    active = Signal(bool(0))

    @always_comb
    def lane_active() -> None:
        active.next = ctl.k == index

    @always_seq(clk.posedge, reset=rst)
    def regs_upd() -> None:
        if ctl.run:
            if ctl.is_loadw or ctl.is_mac:
                wreg.next = wload
            if ctl.is_shiftadd or ctl.is_mac or (ctl.is_vmac and active):
                preg.next = prod
            if ctl.is_acc or ctl.is_mac or (ctl.is_vmac and active):
                acc_q.next = asum[acc_bits:].signed()
            elif ctl.is_clr:
                acc_q.next = 0
            elif ctl.is_bias:
                acc_q.next = bword.signed()
            elif ctl.is_vld and active:
                acc_q.next = xacc
            elif ctl.is_vmax and active:
                if xacc > acc_q:
                    acc_q.next = xacc
            elif ctl.is_req:
                acc_q.next = ysat
            elif ctl.is_act:
                if acc_q < 0:
                    acc_q.next = ysat

    insts += [choose_w, widen_q, shift_amount, shift_minus_one, round_pre, round_inc,
              round_fin, saturate, acc_add, widen_x, lane_active, regs_upd]
    return insts


# ---------------------------------------------------------------------------------------------
# Address registers and loop stack


@block
def addr_reg(clk: Any, rst: Any, index: int, r_q: Any, wr_en: Any, wr_idx: Any, wr_val: Any,
          b1: Any, idx1: Any, inc1: Any, b2: Any, idx2: Any, inc2: Any) -> Any:
    hit1 = Signal(bool(0))
    hit2 = Signal(bool(0))

    @always_comb
    def hits() -> None:
        hit1.next = b1 and idx1 == index
        hit2.next = b2 and idx2 == index

    @always_seq(clk.posedge, reset=rst)
    def upd() -> None:
        if wr_en and wr_idx == index:
            r_q.next = wr_val
        elif hit1 and hit2:
            r_q.next = r_q + inc1 + inc2
        elif hit1:
            r_q.next = r_q + inc1
        elif hit2:
            r_q.next = r_q + inc2

    return hits, upd


@block
def loop_level(clk: Any, rst: Any, level: int, sp: Any, push: Any, dec: Any, pc: Any,
                f_len: Any, f_count: Any, lp_start: Any, lp_stop: Any, lp_cnt: Any) -> Any:
    @always_seq(clk.posedge, reset=rst)
    def upd() -> None:
        if push and sp == level:
            lp_start.next = pc + 1
            lp_stop.next = pc + f_len
            lp_cnt.next = f_count
        elif dec and sp == level + 1:
            lp_cnt.next = lp_cnt - 1

    return upd


# ---------------------------------------------------------------------------------------------
# The core


def _check_table() -> None:
    names = {i.mnemonic for i in isa.INSTRUCTIONS}
    if names != IMPLEMENTED:
        raise RTLError("ISA table and RTL disagree: table has "
                       f"{sorted(names - IMPLEMENTED)} not in the RTL, RTL has "
                       f"{sorted(IMPLEMENTED - names)} not in the table")


@block
def core(clk: Any, rst: Any, imem_addr: Any, imem_data: Any, wmem_addr: Any, wmem_data: Any,
         bmem_addr: Any, bmem_data: Any, amem_addr: Any, amem_rdata: Any, amem_we: Any,
         amem_wdata: Any, halted: Any, cycles: Any, dbg_sel: Any, dbg_acc: Any, dbg_reg: Any,
         config: AccelConfig) -> Any:
    """The accelerator core for ``config`` (its ``pe`` field picks the PE kind)."""
    _check_table()
    c = config
    op_bits = isa.OPCODE_BITS
    # Control opcodes come from the control table's columns; the lane flags name the datapath
    # each instruction drives (see lane).
    op_halt, op_loop = isa.HALT.opcode, isa.LOOP.opcode
    writes = [r for r in CONTROL if r.reg_write]
    op_seti = _only([r for r in writes if not r.adds_port1], "loads a register").opcode
    op_addi = _only([r for r in writes if r.adds_port1], "steps a register").opcode
    op_store = _only([r for r in CONTROL if r.amem_write], "writes AMEM").opcode
    ops = isa.OPCODES
    op_loadw, op_shiftadd, op_acc, op_mac = ops["LOADW"], ops["SHIFTADD"], ops["ACC"], ops["MAC"]
    op_clr, op_bias, op_vld, op_vmax = ops["CLR"], ops["BIAS"], ops["VLD"], ops["VMAX"]
    op_vmac, op_req, op_act = ops["VMAC"], ops["REQ"], ops["ACT"]
    _check_wiring({"is_loadw": op_loadw, "is_shiftadd": op_shiftadd, "is_mac": op_mac,
                   "is_bias": op_bias, "is_vld": op_vld, "is_vmax": op_vmax, "is_vmac": op_vmac,
                   "is_req": op_req, "is_act": op_act, "is_store": op_store})
    # Instructions that take n cycles, straight from the control table.
    multi_ops = tuple(r.opcode for r in CONTROL if r.multi)
    if len(multi_ops) > 4:
        raise RTLError("the RTL's multi-cycle decoder handles at most 4 such opcodes")
    m0, m1, m2, m3 = (multi_ops + (multi_ops[0],) * 4)[:4]
    lanes = c.lanes
    ia = addr_bits(c.imem_depth)
    insts: list[Any] = []

    # ---- decode
    op = _unsigned(op_bits)
    insts.append(slice_bits(imem_data, isa.WORD_BITS - op_bits, op_bits, op))
    field_names = sorted({f.name for ins in isa.INSTRUCTIONS for f in ins.fields})
    fsig = {name: field_signal(name) for name in field_names}
    for name in field_names:
        insts.append(field_decode(op, imem_data, name, fsig[name]))
    f_rd, f_rs, f_rw, f_rx = fsig["rd"], fsig["rs"], fsig["rw"], fsig["rx"]
    f_rb, f_rq, f_imm, f_n = fsig["rb"], fsig["rq"], fsig["imm"], fsig["n"]
    f_inc, f_iw, f_ix = fsig["inc"], fsig["iw"], fsig["ix"]
    f_count, f_len, f_relu = fsig["count"], fsig["len"], fsig["relu"]

    ctl = _Ctl()
    pc = Signal(modbv(0)[ia:])
    k = ctl.k
    k1 = _unsigned(7)
    is_multi = Signal(bool(0))
    last = Signal(bool(0))
    done = Signal(bool(0))
    running = ctl.run
    is_halt = Signal(bool(0))
    is_seti = Signal(bool(0))
    is_addi = Signal(bool(0))
    is_loop = Signal(bool(0))
    is_store = Signal(bool(0))

    @always_comb
    def decode_ops() -> None:
        is_halt.next = op == op_halt
        is_seti.next = op == op_seti
        is_addi.next = op == op_addi
        is_loop.next = op == op_loop
        is_store.next = op == op_store
        ctl.is_loadw.next = op == op_loadw
        ctl.is_shiftadd.next = op == op_shiftadd
        ctl.is_acc.next = op == op_acc
        ctl.is_mac.next = op == op_mac
        ctl.is_clr.next = op == op_clr
        ctl.is_bias.next = op == op_bias
        ctl.is_vld.next = op == op_vld
        ctl.is_vmax.next = op == op_vmax
        ctl.is_vmac.next = op == op_vmac
        ctl.is_req.next = op == op_req
        ctl.is_act.next = op == op_act
        ctl.relu.next = op == op_req and f_relu == 1
        is_multi.next = op == m0 or op == m1 or op == m2 or op == m3

    @always_comb
    def fetch() -> None:
        imem_addr.next = pc

    @always_comb
    def lane_count() -> None:
        k1.next = k + 1

    @always_comb
    def completion() -> None:
        running.next = not halted
        if is_multi:
            last.next = k1 == f_n
        else:
            last.next = True

    @always_comb
    def completion2() -> None:
        done.next = running and last

    # ---- address registers: port 1 (weights / parameters / ADDI source), port 2 (AMEM)
    regs = [Signal(modbv(0)[isa.REG_BITS:]) for _ in range(isa.NUM_REGS)]
    idx1 = _unsigned(3)
    idx2 = _unsigned(3)
    rp1 = Signal(modbv(0)[isa.REG_BITS:])
    rp2 = Signal(modbv(0)[isa.REG_BITS:])
    reg_keys = tuple(range(isa.NUM_REGS))
    insts.append(mux_chain(idx1, reg_keys, regs, rp1))
    insts.append(mux_chain(idx2, reg_keys, regs, rp2))
    inc1 = Signal(modbv(0)[isa.REG_BITS:])
    inc2 = Signal(modbv(0)[isa.REG_BITS:])
    b1 = Signal(bool(0))
    b2 = Signal(bool(0))
    wr_en = Signal(bool(0))
    wr_val = Signal(modbv(0)[isa.REG_BITS:])
    rbits = isa.REG_BITS

    @always_comb
    def reg_ports() -> None:
        if ctl.is_mac or ctl.is_loadw:
            idx1.next = f_rw
        elif ctl.is_bias:
            idx1.next = f_rb
        elif ctl.is_req or ctl.is_act:
            idx1.next = f_rq
        else:
            idx1.next = f_rs
        if is_store:
            idx2.next = f_rd
        else:
            idx2.next = f_rx

    @always_comb
    def reg_incs() -> None:
        # Increments as 16-bit two's complement: address arithmetic is modulo 2^16.
        if ctl.is_mac:
            inc1.next = f_iw[rbits:]
            inc2.next = f_ix[rbits:]
        else:
            inc1.next = f_inc[rbits:]
            inc2.next = f_inc[rbits:]
        b1.next = done and (ctl.is_mac or ctl.is_loadw or ctl.is_bias or ctl.is_req
                            or ctl.is_act)
        b2.next = done and (ctl.is_mac or ctl.is_shiftadd or ctl.is_vld or ctl.is_vmax
                            or ctl.is_vmac or is_store)

    @always_comb
    def reg_write() -> None:
        wr_en.next = done and (is_seti or is_addi)
        if is_seti:
            wr_val.next = f_imm
        else:
            wr_val.next = rp1 + f_imm

    for i in range(isa.NUM_REGS):
        insts.append(addr_reg(clk, rst, i, regs[i], wr_en, f_rd, wr_val, b1, idx1, inc1, b2, idx2,
                           inc2))

    # ---- memories
    amem_sum = Signal(modbv(0)[isa.REG_BITS:])
    wa, ba, aa = addr_bits(c.wmem_depth), addr_bits(c.bmem_depth), addr_bits(c.amem_depth)

    @always_comb
    def mem_addr() -> None:
        amem_sum.next = rp2 + k

    @always_comb
    def mem_ports() -> None:
        wmem_addr.next = rp1[wa:]
        bmem_addr.next = rp1[ba:]
        amem_addr.next = amem_sum[aa:]
        amem_we.next = running and is_store

    xb = _signed(c.act_bits)

    @always_comb
    def act_in() -> None:
        xb.next = amem_rdata.signed()

    nxb = None
    if c.pe == "shiftadd":
        nxb = _signed(c.act_bits + 1)  # -x, once for all the lanes' shift-add PEs
        xw = _signed(c.act_bits + 1)  # VHDL negates at the operand's width: widen first

        @always_comb
        def widen_act() -> None:
            xw.next = amem_rdata.signed()

        @always_comb
        def neg_act_in() -> None:
            nxb.next = -xw

        insts += [widen_act, neg_act_in]

    # ---- lanes
    accs = [_signed(c.acc_bits) for _ in range(lanes)]
    for i in range(lanes):
        wl = _unsigned(c.code_bits)
        bl = _unsigned(c.acc_bits)
        insts.append(slice_bits(wmem_data, i * c.code_bits, c.code_bits, wl))
        insts.append(slice_bits(bmem_data, i * c.acc_bits, c.acc_bits, bl))
        insts.append(lane(clk, rst, i, c, ctl, wl, bl, xb, nxb, accs[i]))
    lane_sel = _unsigned(DBG_BITS)
    acc_sel = _signed(c.acc_bits)
    insts.append(mux_chain(lane_sel, tuple(range(lanes)), accs, acc_sel))
    dbg_idx = _unsigned(3)
    insts.append(mux_chain(dbg_idx, reg_keys, regs, dbg_reg))
    act_bits = c.act_bits
    acc_bits = c.acc_bits

    @always_comb
    def lane_select() -> None:
        # After HALT the same mux reads the accumulators out through the debug port.
        if halted:
            lane_sel.next = dbg_sel
        else:
            lane_sel.next = k[DBG_BITS:]
        dbg_idx.next = dbg_sel[3:]

    @always_comb
    def store_out() -> None:
        amem_wdata.next = acc_sel[act_bits:]
        dbg_acc.next = acc_sel[acc_bits:]

    # ---- loop stack
    depth = c.loop_depth
    sp = Signal(intbv(0, min=0, max=depth + 1))
    starts = [Signal(modbv(0)[ia:]) for _ in range(depth)]
    stops = [Signal(modbv(0)[ia:]) for _ in range(depth)]
    cnts = [_unsigned(f_count.val._nrbits) for _ in range(depth)]
    top_start = Signal(modbv(0)[ia:])
    top_stop = Signal(modbv(0)[ia:])
    top_cnt = _unsigned(f_count.val._nrbits)
    level_keys = tuple(range(1, depth + 1))
    insts.append(mux_chain(sp, level_keys, starts, top_start))
    insts.append(mux_chain(sp, level_keys, stops, top_stop))
    insts.append(mux_chain(sp, level_keys, cnts, top_cnt))
    push = Signal(bool(0))
    back = Signal(bool(0))
    dec = Signal(bool(0))

    @always_comb
    def loop_ctl() -> None:
        push.next = done and is_loop and f_count != 0
        back.next = done and not is_halt and not is_loop and sp != 0 and pc == top_stop

    @always_comb
    def loop_ctl2() -> None:
        dec.next = back and top_cnt != 1

    for j in range(depth):
        insts.append(loop_level(clk, rst, j, sp, push, dec, pc, f_len, f_count, starts[j],
                                 stops[j], cnts[j]))

    @always_seq(clk.posedge, reset=rst)
    def sequencer() -> None:
        if running:
            cycles.next = cycles + 1
            if is_halt:
                halted.next = True
            elif not last:
                k.next = k1
            else:
                k.next = 0
                if is_loop:
                    if f_count == 0:
                        pc.next = pc + f_len + 1
                    else:
                        pc.next = pc + 1
                        sp.next = sp + 1
                elif back:
                    if dec:
                        pc.next = top_start
                    else:
                        pc.next = pc + 1
                        sp.next = sp - 1
                else:
                    pc.next = pc + 1

    insts += [decode_ops, fetch, lane_count, completion, completion2, reg_ports, reg_incs,
              reg_write, mem_addr, mem_ports, act_in, lane_select, store_out, loop_ctl,
              loop_ctl2, sequencer]
    return insts


_ELAB_LOCK = threading.Lock()


def _frames(context: int = 1) -> list[tuple[Any, str, int, str, None, None]]:
    """``inspect.stack()`` without reading source files: (frame, file, line, function) only."""
    out = []
    f: Any = sys._getframe(1)
    while f is not None:
        code = f.f_code
        out.append((f, code.co_filename, f.f_lineno, code.co_name, None, None))
        f = f.f_back
    return out


@contextlib.contextmanager
def fast_elaboration() -> Iterator[None]:
    """Elaborate MyHDL blocks without ``inspect.stack()``'s source lookups.

    MyHDL calls ``inspect.stack()`` for every block and generator, and it reads source context
    for every frame up the stack: under pytest and Hypothesis (deep stacks) elaborating the
    core took ten seconds.  MyHDL only uses the frame objects and function names from it.
    """
    with _ELAB_LOCK:
        saved = inspect.stack
        inspect.stack = _frames  # type: ignore[assignment]
        try:
            yield
        finally:
            inspect.stack = saved


def build(config: AccelConfig, ports: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Elaborate the core; returns ``(block instance, ports)``."""
    ports = ports or make_ports(config)
    with fast_elaboration():
        inst = core(**ports, config=config)
    return inst, ports

"""The MyHDL core: one instruction a cycle, cycle-accurate to the emulator's timing model.

Structure (all of it convertible to Verilog and VHDL):

* fetch/decode: the instruction at ``pc`` is read combinationally from IMEM; every opcode
  constant and every field position comes from :mod:`contract.isa` (``isa.OPCODES`` and
  ``isa.field_offsets``), so the table stays the only copy of the encoding.
* control from the table: which register field each read port serves, the increments, the
  register write, the lane count and the AMEM write enable are ROMs indexed by the opcode,
  built from the ISA roles (:mod:`accel.control`); the opcodes the core still compares select
  a datapath (what a MAC or a REQ computes in the lanes) or the sequencing (LOOP, HALT);
* address registers ``R0..R7`` with two read ports and post-increments (both apply when a MAC
  names the same register twice);
* a loop stack of ``loop_depth`` levels giving a zero-overhead back-edge;
* ``lanes`` lanes (:mod:`accel.core_lane`), each with its weight register W, product
  register P, accumulator A, a PE (:mod:`accel.pe`) for MAC/SHIFTADD/VMAC and a second PE
  feeding the requantization and activation unit (REQ, ACT);
* memory ports with combinational reads and one synchronous AMEM write, so the memories stay
  outside the core (the testbench or the simulator model holds them, loaded from the image).

Multi-cycle instructions (the table's ``cycles == "n"``) serve lane ``k`` in their ``k``-th
cycle; ``cycles`` counts every cycle from reset release to the HALT cycle inclusive, which is
exactly the emulator's ``counters["cycles"]``.

Every name that reaches the HDL is prefixed so it cannot collide with a Verilog,
SystemVerilog or VHDL keyword (MyHDL does not escape them).
"""

from __future__ import annotations

from typing import Any

from myhdl import Signal, always_comb, always_seq, block, intbv, modbv

from contract import isa
from contract.config import AccelConfig
from contract.faults import FAULT_BITS

from .control import PortControl, RTLError, port_control
from .core_fault import fault_check
from .core_lane import lane
from .core_state import addr_reg, loop_level
from .hdl import fast_elaboration, mux_chain, signals_for, slice_bits, slice_signed
from .hdl import signed as _signed
from .hdl import unsigned as _unsigned

# The mnemonics this datapath implements.  A new instruction added to the table without RTL
# support must fail at elaboration, not silently decode as nothing.
IMPLEMENTED = frozenset(
    ["NOP", "HALT", "SETI", "ADDI", "LOOP", "LOADW", "SHIFTADD", "ACC", "MAC", "CLR", "BIAS",
     "VLD", "VMAX", "VMAC", "REQ", "ACT", "STORE", "SPILL", "FILL"])

CYCLE_BITS = 40  # ~10^12 cycles before the counter wraps
DBG_BITS = 5  # selects one of up to 32 lanes / 8 registers after HALT


def addr_bits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


def port_widths(config: AccelConfig) -> dict[str, int]:
    """Width of every core port (``0`` marks a one-bit ``bool``)."""
    c = config
    return {
        "clk": 0, "rst": 0,
        "imem_addr": addr_bits(c.imem_depth), "imem_data": isa.WORD_BITS,
        "wmem_addr": addr_bits(c.wmem_depth), "wmem_data": c.lanes * c.weight_bits,
        "bmem_addr": addr_bits(c.bmem_depth), "bmem_data": c.lanes * c.acc_bits,
        "amem_addr": addr_bits(c.amem_depth), "amem_rdata": c.act_bits,
        "amem_we": 0, "amem_wdata": c.act_bits,
        "text_len": addr_bits(c.imem_depth) + 1, "halted": 0, "cycles": CYCLE_BITS,
        "fault": FAULT_BITS, "fault_arg": max(isa.REG_BITS, addr_bits(c.imem_depth)),
        "dbg_sel": DBG_BITS, "dbg_acc": c.acc_bits, "dbg_reg": isa.REG_BITS,
    }


PORT_INPUTS = ("clk", "rst", "imem_data", "wmem_data", "bmem_data", "amem_rdata", "text_len",
               "dbg_sel")


def make_ports(config: AccelConfig) -> dict[str, Any]:
    """Fresh signals for every core port, keyed by port name (all unsigned or bool)."""
    return signals_for(port_widths(config))


# ---------------------------------------------------------------------------------------------
# Instruction fields


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
        self.is_spill = Signal(bool(0))  # STORE, then the lane's A shifts right by act_bits
        self.is_fill = Signal(bool(0))  # A shifts left by act_bits, the element fills the gap
        self.relu = Signal(bool(0))


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
         amem_wdata: Any, text_len: Any, halted: Any, cycles: Any, fault: Any, fault_arg: Any,
         dbg_sel: Any, dbg_acc: Any, dbg_reg: Any, config: AccelConfig) -> Any:
    """The accelerator core for ``config`` (its ``pe`` field picks the PE kind).  ``text_len``
    is the number of instruction words loaded; a fault (:mod:`accel.core_fault`) halts the
    core on the faulting instruction with ``fault`` and ``fault_arg`` set."""
    _check_table()
    c = config
    op_bits = isa.OPCODE_BITS
    # Port selection, increments, register write, lane count and AMEM write come from the
    # control table's ROMs (accel.control); the opcodes below select datapaths.
    op_halt, op_loop = isa.HALT.opcode, isa.LOOP.opcode
    ops = isa.OPCODES
    op_spill, op_fill = ops["SPILL"], ops["FILL"]
    op_loadw, op_shiftadd, op_acc, op_mac = ops["LOADW"], ops["SHIFTADD"], ops["ACC"], ops["MAC"]
    op_clr, op_bias, op_vld, op_vmax = ops["CLR"], ops["BIAS"], ops["VLD"], ops["VMAX"]
    op_vmac, op_req, op_act = ops["VMAC"], ops["REQ"], ops["ACT"]
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
    f_n, f_count, f_len, f_relu = fsig["n"], fsig["count"], fsig["len"], fsig["relu"]
    pctl = PortControl(fsig)
    insts.append(port_control(op, fsig, pctl))

    ctl = _Ctl()
    pc = Signal(modbv(0)[ia:])
    k = ctl.k
    k1 = _unsigned(7)
    is_multi = pctl.multi
    last = Signal(bool(0))
    done = Signal(bool(0))
    running = ctl.run
    is_halt = Signal(bool(0))
    is_loop = Signal(bool(0))

    @always_comb
    def decode_ops() -> None:
        is_halt.next = op == op_halt
        is_loop.next = op == op_loop
        ctl.is_spill.next = op == op_spill
        ctl.is_fill.next = op == op_fill
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

    @always_comb
    def fetch() -> None:
        imem_addr.next = pc

    @always_comb
    def lane_count() -> None:
        k1.next = k + 1

    fault_now = _unsigned(FAULT_BITS)
    fault_val = _unsigned(len(fault_arg))

    @always_comb
    def completion() -> None:
        running.next = not halted and fault_now == 0
        if is_multi:
            last.next = k1 == f_n
        else:
            last.next = True

    @always_comb
    def completion2() -> None:
        done.next = running and last

    # ---- address registers: port 1 (weights / parameters / register-write source), port 2
    # (AMEM); the fields on each port come from the control ROMs (pctl)
    regs = [Signal(modbv(0)[isa.REG_BITS:]) for _ in range(isa.NUM_REGS)]
    idx1, idx2 = pctl.idx1, pctl.idx2
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
    def reg_incs() -> None:
        # Increments as 16-bit two's complement: address arithmetic is modulo 2^16.
        inc1.next = pctl.inc1[rbits:]
        inc2.next = pctl.inc2[rbits:]
        b1.next = done and pctl.bump1
        b2.next = done and pctl.bump2

    @always_comb
    def reg_write() -> None:
        wr_en.next = done and pctl.writes
        if pctl.adds:
            wr_val.next = rp1 + pctl.wr_add
        else:
            wr_val.next = pctl.wr_add

    for i in range(isa.NUM_REGS):
        insts.append(addr_reg(clk, rst, i, regs[i], wr_en, pctl.wr_idx, wr_val, b1, idx1, inc1,
                              b2, idx2, inc2))

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
        amem_we.next = running and pctl.amem_write

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
        wl = _unsigned(c.weight_bits)
        bl = _unsigned(c.acc_bits)
        insts.append(slice_bits(wmem_data, i * c.weight_bits, c.weight_bits, wl))
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

    insts.append(fault_check(op, pc, k, halted, text_len, f_n, f_len, f_count, rp1, rp2, sp,
                             top_stop, fault_now, fault_val, c))

    @always_seq(clk.posedge, reset=rst)
    def sequencer() -> None:
        if not halted and fault_now != 0:
            halted.next = True
            fault.next = fault_now
            fault_arg.next = fault_val
        elif running:
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

    insts += [decode_ops, fetch, lane_count, completion, completion2, reg_incs,
              reg_write, mem_addr, mem_ports, act_in, lane_select, store_out, loop_ctl,
              loop_ctl2, sequencer]
    return insts


def build(config: AccelConfig, ports: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Elaborate the core; returns ``(block instance, ports)``."""
    ports = ports or make_ports(config)
    with fast_elaboration():
        inst = core(**ports, config=config)
    return inst, ports

"""One lane of the core: its weight, product and accumulator registers, the PE for
MAC/SHIFTADD/VMAC, and the requantization and activation unit (REQ, ACT) with its own PE.

The lane reads the decoded control ``ctl`` (:class:`accel.core._Ctl`): ``run``, ``k`` and
the ``is_*`` / ``relu`` flags of the instructions it serves.
"""

from __future__ import annotations

from typing import Any

from myhdl import Signal, always_comb, always_seq, block, concat, intbv

from contract import hwcode, isa
from contract.config import AccelConfig

from . import pe as pe_mod
from .hdl import signed, slice_bits, unsigned

REQ_SHIFT_BITS = isa.REQ_SHIFT_BITS


@block
def lane(clk: Any, rst: Any, index: int, config: AccelConfig, ctl: Any, wcode: Any,
          bword: Any, xb: Any, nxb: Any, acc_q: Any) -> Any:
    """Weight, product and accumulator registers of lane ``index`` plus its two PEs."""
    c = config
    top = c.window - 1
    pw = c.weight_format.product_bits(c.act_bits, c.exp_bits)  # product of an activation
    rw = c.acc_bits + c.window + 1  # shift-add product of an accumulator (REQ/ACT)
    cb = c.code_bits
    kind = c.pe
    insts = []

    # W holds the code (shiftadd), the decoded integer (multiplier: decoded when loaded) or,
    # with int8 weights, the 8-bit integer itself (no decoder).
    if c.weights == "int8":
        wreg = signed(c.weight_bits)  # resets to 0, what the emulator's zeroed code stands for
        wload = signed(c.weight_bits)
        insts.append(pe_mod.int_weight(wcode, wload))
    elif kind == "multiplier":
        # W resets to what code 0 stands for (2^2^E: both digits 2^0), as the emulator's
        # zeroed weight codes do, so a VMAC before any LOADW agrees.
        wbits = c.window + 2
        w0 = int(hwcode.to_int(0, c.exp_bits))
        wreg = Signal(intbv(w0, min=-(1 << (wbits - 1)), max=1 << (wbits - 1)))
        wload = signed(wbits)
        insts.append(pe_mod.decode_code(wcode, wload, c.exp_bits))
    else:
        wreg = unsigned(cb)
        wload = wcode
    wsel = Signal(wreg.val)  # MAC uses the word it loads in the same cycle

    @always_comb
    def choose_w() -> None:
        if ctl.is_mac:
            wsel.next = wload
        else:
            wsel.next = wreg

    prod = signed(pw)
    insts.append(pe_mod.pe(xb, wsel, prod, kind, c.act_bits, c.exp_bits, nxb))

    # Requantization / activation: sa(A, q.code), rounding shift, saturation, ReLU.
    qx_bits = max(c.acc_bits, cb + REQ_SHIFT_BITS)
    qx = signed(qx_bits)  # sign-extended so q.shift can read bits above acc_bits
    qcode = unsigned(cb)
    qshift = unsigned(REQ_SHIFT_BITS)

    @always_comb
    def widen_q() -> None:
        qx.next = bword.signed()

    insts.append(slice_bits(qx, 0, cb, qcode))
    insts.append(slice_bits(qx, cb, REQ_SHIFT_BITS, qshift))
    if kind == "multiplier":
        qint = signed(c.window + 2)
        insts.append(pe_mod.decode_code(qcode, qint, c.exp_bits))
        qsel: Any = qint
    else:
        qsel = qcode
    rprod = signed(rw)
    insts.append(pe_mod.pe(acc_q, qsel, rprod, kind, c.acc_bits, c.exp_bits))

    shamt = unsigned(REQ_SHIFT_BITS)
    shm1 = unsigned(REQ_SHIFT_BITS)
    rsh = signed(rw)
    rinc = signed(rw + 1)
    rrnd = signed(rw + 1)
    ysat = signed(c.act_bits)
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

    preg = signed(pw)
    asum = signed(c.acc_bits + 1)
    xacc = signed(c.acc_bits)

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

    # FILL: the accumulator moves up by act_bits and the element's bits fill the low end.
    filled = unsigned(c.acc_bits)
    keep = c.acc_bits - act_bits

    @always_comb
    def fill_in() -> None:
        filled.next = concat(acc_q[keep:], xb[act_bits:])

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
            elif ctl.is_spill and active:
                acc_q.next = acc_q >> act_bits
            elif ctl.is_fill and active:
                acc_q.next = filled.signed()
            elif ctl.is_vmax and active:
                if xacc > acc_q:
                    acc_q.next = xacc
            elif ctl.is_req:
                acc_q.next = ysat
            elif ctl.is_act:
                if acc_q < 0:
                    acc_q.next = ysat

    insts += [choose_w, widen_q, shift_amount, shift_minus_one, round_pre, round_inc,
              round_fin, saturate, acc_add, widen_x, fill_in, lane_active, regs_upd]
    return insts

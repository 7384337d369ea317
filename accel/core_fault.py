"""The core's fault checks: the emulator's checks (:mod:`contract.faults`), made in the same
order on an instruction's first cycle, so the core halts on the faulting instruction with none
of its effects and reports what the emulator raises.

Which instructions serve lanes and which memories they address come from the ISA table's
columns (``serves_lanes``, ``pointers``); an address is read from the register port the
control table routes that pointer to (:mod:`accel.control`: port 1 for WMEM and BMEM, port 2
for AMEM).
"""

from __future__ import annotations

from typing import Any

from myhdl import Signal, always_comb, block, intbv

from contract import isa
from contract.config import AccelConfig
from contract.faults import Fault

from .hdl import unsigned

_SET_SIZE = 8


def _check_table() -> None:
    """The checks below assume what the table says today; a new pointer elsewhere must fail
    at elaboration, not go unchecked."""
    order = ["WMEM", "BMEM", "AMEM"]
    for ins in isa.INSTRUCTIONS:
        mems = [p.memory for p in ins.pointers]
        if mems != sorted(mems, key=order.index):
            raise ValueError(f"{ins.mnemonic}: pointers out of the core's check order {order}")
        for p in ins.pointers:
            if p.per_lane and p.memory != "AMEM":
                raise ValueError(f"{ins.mnemonic}: a per-lane {p.memory} pointer")


def _opcodes(pred: Any) -> tuple[int, ...]:
    found = tuple(i.opcode for i in isa.INSTRUCTIONS if pred(i))
    if not found or len(found) > _SET_SIZE:
        raise ValueError(f"opcode set of {len(found)} members: the core handles 1..{_SET_SIZE}")
    return (found + (found[0],) * _SET_SIZE)[:_SET_SIZE]


@block
def op_in(op: Any, opcodes: tuple[int, ...], flag: Any) -> Any:
    """``flag`` while ``op`` is one of ``opcodes`` (padded to eight by repetition)."""
    o0, o1, o2, o3, o4, o5, o6, o7 = opcodes

    @always_comb
    def member() -> None:
        flag.next = (op == o0 or op == o1 or op == o2 or op == o3 or op == o4 or op == o5
                     or op == o6 or op == o7)

    return member


@block
def fault_check(op: Any, pc: Any, k: Any, halted: Any, text_len: Any, f_n: Any, f_len: Any,
                f_count: Any, rp1: Any, rp2: Any, sp: Any, top_stop: Any, code: Any, arg: Any,
                config: AccelConfig) -> Any:
    """``code`` (a :class:`contract.faults.Fault`, 0 for none) of the instruction starting
    this cycle and ``arg``: the faulting address, or the enclosing loop body's last pc."""
    _check_table()
    c = config
    serves, uses_w, uses_b, uses_a, a_lanes, is_loop = (Signal(bool(0)) for _ in range(6))
    insts = [
        op_in(op, _opcodes(lambda i: i.serves_lanes), serves),
        op_in(op, _opcodes(lambda i: any(p.memory == "WMEM" for p in i.pointers)), uses_w),
        op_in(op, _opcodes(lambda i: any(p.memory == "BMEM" for p in i.pointers)), uses_b),
        op_in(op, _opcodes(lambda i: any(p.memory == "AMEM" for p in i.pointers)), uses_a),
        op_in(op, _opcodes(lambda i: any(p.per_lane for p in i.pointers)), a_lanes),
        op_in(op, (isa.OPCODES["LOOP"],) * _SET_SIZE, is_loop),
    ]
    a_span = Signal(intbv(0, min=0, max=1 << len(f_n)))
    a_end = Signal(intbv(0, min=0, max=(1 << isa.REG_BITS) + (1 << len(f_n))))
    l_end = unsigned(max(len(pc), len(f_len)) + 1)
    lanes, depth = c.lanes, c.loop_depth
    wdepth, bdepth, adepth = c.wmem_depth, c.bmem_depth, c.amem_depth
    past, lanes_f = int(Fault.PAST_TEXT), int(Fault.LANES)
    wf, bf, af = int(Fault.WMEM), int(Fault.BMEM), int(Fault.AMEM)
    lf_len, lf_text, lf_outer = int(Fault.LOOP_LENGTH), int(Fault.LOOP_PAST_TEXT), \
        int(Fault.LOOP_OUTER)
    lf_same, lf_depth = int(Fault.LOOP_SAME_END), int(Fault.LOOP_DEPTH)

    @always_comb
    def spans() -> None:
        if a_lanes:
            a_span.next = f_n
        else:
            a_span.next = 1
        l_end.next = pc + f_len

    @always_comb
    def amem_end() -> None:
        a_end.next = rp2 + a_span

    @always_comb
    def check() -> None:
        arg.next = 0
        code.next = 0
        if halted or k != 0:
            code.next = 0
        elif pc >= text_len:
            code.next = past
        elif serves and (f_n == 0 or f_n > lanes):
            code.next = lanes_f
        elif uses_w and rp1 >= wdepth:
            code.next = wf
            arg.next = rp1
        elif uses_b and rp1 >= bdepth:
            code.next = bf
            arg.next = rp1
        elif uses_a and a_end > adepth:
            code.next = af
            arg.next = rp2
        elif is_loop:
            if f_len == 0:
                code.next = lf_len
            elif l_end >= text_len:
                code.next = lf_text
            elif sp != 0 and l_end > top_stop:
                code.next = lf_outer
                arg.next = top_stop
            elif sp != 0 and l_end == top_stop:
                code.next = lf_same
                arg.next = top_stop
            elif f_count != 0 and sp >= depth:
                code.next = lf_depth

    return insts + [spans, amem_end, check]

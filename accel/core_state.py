"""The core's sequential state outside the lanes: one address register (written by SETI/ADDI,
post-incremented by up to two ports a cycle) and one level of the loop stack."""

from __future__ import annotations

from typing import Any

from myhdl import Signal, always_comb, always_seq, block


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

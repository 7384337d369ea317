"""Configurations, programs and the bit-exactness assertion that the RTL test modules share
(a test module never imports another)."""

from __future__ import annotations

import numpy as np

from contract.backend import RunResult
from contract.config import AccelConfig

# External simulators compile one design per configuration and PE kind (Verilator takes tens
# of seconds for that), so their random programs run on a small pool of configurations; the
# MyHDL simulator elaborates in about a second and draws any configuration.
CFG_A = AccelConfig(lanes=4, act_bits=6, acc_bits=11, exp_bits=2, imem_depth=128, wmem_depth=64,
                    bmem_depth=16, amem_depth=256, loop_depth=3)
CFG_B = AccelConfig(lanes=8, act_bits=8, acc_bits=32, exp_bits=3, imem_depth=256, wmem_depth=64,
                    bmem_depth=32, amem_depth=512, loop_depth=4)
# The widest configuration allowed: 16-bit activations, 16 digit positions, 40-bit sums.
CFG_WIDE = AccelConfig(lanes=3, act_bits=16, acc_bits=40, exp_bits=4, imem_depth=128,
                       wmem_depth=64, bmem_depth=16, amem_depth=256, loop_depth=3)
# int8 weights (multiplier only): 8-bit WMEM words beside 10-bit REQ codes (E = 4).
CFG_INT8 = AccelConfig(lanes=4, act_bits=7, acc_bits=17, exp_bits=4, imem_depth=128,
                       wmem_depth=64, bmem_depth=16, amem_depth=256, loop_depth=3,
                       pe="multiplier", weights="int8")


def assert_rtl_matches(result: RunResult, golden: RunResult) -> None:
    """A backend's run equals the golden emulator's: AMEM, cycles, accumulators, registers."""
    bad = np.flatnonzero(result.amem != golden.amem)
    assert bad.size == 0, (f"{result.backend}: AMEM differs at {bad[:8].tolist()}: "
                           f"{result.amem[bad[:8]].tolist()} != {golden.amem[bad[:8]].tolist()}")
    assert result.cycles == golden.cycles, f"{result.backend}: cycles {result.cycles} != " \
                                           f"{golden.cycles}"
    assert result.acc.tolist() == golden.acc.tolist(), f"{result.backend}: accumulators"
    assert result.regs == list(golden.regs), f"{result.backend}: registers"


# Every instruction, both branches of each data-dependent choice, and the width edges of
# CFG_A: 11-bit accumulators that wrap, a REQ parameter whose shift field lies above
# acc_bits (so it is made of sign bits: shift 63), shift 0, a count-0 loop, nested loops, a
# MAC with rw == rx, a register wrapping below zero, and STORE of values outside the
# activation range.
EDGES = """
.wint 0 3 -5 8 -12
.wint 1 1 2 -1 0
.wint 2 16 -16 12 -12
.bmem 0 10 -20 30 -40
.req 1 3 2 5 1 7 3 1 0
.bmem 2 -1 -64 5 -700
.req 3 -3 0 2 0 -1 1 -6 4
.amem 0 1 2 3 4 5 6 7 8 -9 -31 31 -32 30 -30 29 -29 17 -17 25 -25
        SETI r1, 0
        SETI r2, 0
        SETI r3, 0
        SETI r4, 100
        BIAS r3, 1
        LOOP 3, mac_end
        MAC r1, 1, r2, 1
        NOP
mac_end:
        LOOP 2, sa_end
        LOADW r1, -1
        SHIFTADD r2, 2
        ACC
sa_end:
        LOOP 0, skip
        CLR
        HALT
skip:   VMAC r2, 3, 1
        VMAX r2, 4, 0
        REQ r3, 0, 1
        STORE r4, 4, 4
        VLD r2, 2, 3
        STORE r4, 3, 4
        ACT r3, 0
        STORE r4, 4, 4
        SETI r5, 2
        LOADW r5, 0
        SETI r6, 10
        LOOP 2, outer
        LOOP 3, inner
        MAC r6, 0, r6, 1
        VMAC r2, 4, 0
inner:  NOP
        STORE r4, 4, 4
outer:  NOP
        SETI r7, 2
        REQ r7, 1, 0
        STORE r4, 4, 4
        REQ r7, 0, 1
        STORE r4, 4, 4
        SETI r0, 0
        ADDI r0, r0, -1
        ADDI r5, r4, -3
        HALT
"""

# A small network of every kind of layer, compiled for the RTL tests.
COMPILED_NET_SPEC = {"c": 1, "h": 4, "w": 4, "seed": 0, "steps": [
    ("conv", {"co": 2, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True, "bn": False,
              "groups": "dense", "act": "leaky"}),
    ("maxpool", {"k": 2, "s": 2, "pads": [0, 0, 0, 0], "ceil": False}),
    ("residual", {"act": "relu"}), ("gemm", {"co": 3})]}

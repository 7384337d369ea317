"""The RTL against the golden emulator on the backend chosen with ``--backend``: final AMEM,
cycle count, accumulators and registers must be equal, bit for bit, for both PE kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from contract.backend import BackendTimeout, Limits, RunResult, for_config, get_backend
from contract.config import PE_KINDS, AccelConfig
from contract.faults import ProgramFault
from contract.image import Image, ImageError
from emu import emulator
from emu.asm import assemble, assemble_file
from tests.profiles import scaled_examples
from tests.strategies import programs, small_configs

pytestmark = pytest.mark.rtl

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "programs" / "examples").glob("*.s"))

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
POOLS = {"icarus": [CFG_A, CFG_B, CFG_WIDE, CFG_INT8], "ghdl": [CFG_A, CFG_B, CFG_WIDE, CFG_INT8],
         "verilator": [CFG_A, CFG_WIDE, CFG_INT8]}
EXAMPLES_MAX = {"myhdl": 30, "icarus": 8, "ghdl": 8, "verilator": 8}


def assert_same(result: RunResult, golden: RunResult) -> None:
    bad = np.flatnonzero(result.amem != golden.amem)
    assert bad.size == 0, (f"{result.backend}: AMEM differs at {bad[:8].tolist()}: "
                           f"{result.amem[bad[:8]].tolist()} != {golden.amem[bad[:8]].tolist()}")
    assert result.cycles == golden.cycles, f"{result.backend}: cycles {result.cycles} != " \
                                           f"{golden.cycles}"
    assert result.acc.tolist() == golden.acc.tolist(), f"{result.backend}: accumulators"
    assert result.regs == list(golden.regs), f"{result.backend}: registers"


def check(image: Image, backend: str, pe: str) -> None:
    config = image.config.replace(pe=pe)
    golden = emulator.run(image, config)
    assert_same(get_backend(backend).run(for_config(image, config), Limits(timeout=300)), golden)


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


def edges_image() -> Image:
    return assemble(EDGES, CFG_A, "<edges>")


@pytest.mark.parametrize("pe", PE_KINDS)
def test_every_instruction_and_width_edge(backend: str, pe: str) -> None:
    image = edges_image()
    golden = emulator.run(image)
    # The program must really reach its edges, or the comparison proves little.
    assert golden.counters["ops"]["ACT"] == 1 and golden.counters["ops"]["CLR"] == 0
    assert golden.regs[0] == 0xFFFF
    check(image, backend, pe)


@pytest.mark.parametrize("pe", PE_KINDS)
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_programs(backend: str, pe: str, path: Path) -> None:
    check(assemble_file(path), backend, pe)


def test_examples_present() -> None:
    assert {p.stem for p in EXAMPLES} >= {"conv3x3", "dot", "maxpool"}


def test_random_programs(backend: str) -> None:
    # Settings per backend: a Hypothesis decorator cannot see the pytest parameter.  A pool's
    # examples are shared out so that every configuration in it runs.
    pool = POOLS.get(backend)
    runs = [small_configs()] if pool is None else [st.just(c) for c in pool]
    for configs in runs:
        _compare_random_programs(backend, configs,
                                 -(-scaled_examples(EXAMPLES_MAX[backend]) // len(runs)))


def _compare_random_programs(backend: str, configs: st.SearchStrategy[AccelConfig],
                             examples: int) -> None:
    @settings(max_examples=examples, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(data=st.data())
    def compare(data: st.DataObject) -> None:
        config = data.draw(configs, "config")
        pe = data.draw(st.sampled_from(config.weight_format.pe_kinds), "pe")
        image = data.draw(programs(config, wild=True), "program")
        config = config.replace(pe=pe)
        run = get_backend(backend).run
        try:
            golden = emulator.run(image, config, max_cycles=200_000)
        except emulator.EmulatorError as fault:
            assume(fault.kind is not None)  # the cycle limit: the RTL's limit is its own test
            # A faulting program faults on the RTL too, at the same pc, the same way.
            with pytest.raises(ProgramFault) as rtl:
                run(for_config(image, config), Limits(timeout=300))
            assert (rtl.value.kind, str(rtl.value)) == (fault.kind, str(fault))
            return
        result = run(for_config(image, config), Limits(timeout=300))
        assert_same(result, golden)

    compare()


def test_foreign_image_refused(backend: str) -> None:
    image = edges_image()
    other = CFG_A.replace(lanes=8)
    with pytest.raises(ImageError, match="another accelerator configuration.*lanes"):
        get_backend(backend).run(for_config(image, other))


def test_other_pe_kind_accepted(backend: str) -> None:
    # The PE kind is not part of the image's configuration hash: both kinds run every image.
    image = edges_image()
    result = get_backend(backend).run(for_config(image, CFG_A.replace(pe="multiplier")))
    assert result.config.pe == "multiplier"
    assert result.cycles == emulator.run(image).cycles


def test_cycle_limit(backend: str) -> None:
    # A loop of 2^k iterations that outlasts the limit: the limit must stop it.
    image = assemble("LOOP 65535, 1\nNOP\nNOP\nHALT\n", CFG_A, "long")
    with pytest.raises(BackendTimeout, match="cycle limit|timeout"):
        get_backend(backend).run(image, Limits(max_cycles=300, timeout=120))


def test_result_regions(backend: str) -> None:
    acts = np.random.default_rng(7).integers(CFG_A.act_min, CFG_A.act_max + 1, 8)
    src = ".amem 0 " + " ".join(map(str, acts)) + """
.region output 64 8
        SETI r2, 0
        SETI r4, 64
        VLD r2, 4, 4
        STORE r4, 4, 4
        VLD r2, 4, 4
        STORE r4, 4, 4
        HALT
"""
    result = get_backend(backend).run(assemble(src, CFG_A))
    assert result.region("output").tolist() == acts.tolist()
    assert result.cycles == 2 + 4 * 4 + 1


@pytest.mark.parametrize("pe", PE_KINDS)
def test_weights_before_any_loadw(backend: str, pe: str) -> None:
    # Regression (found by test_random_programs): W starts as code 0, which stands for
    # 2^0 + 2^0, not for zero; the multiplier's W register holds the decoded integer and
    # must reset to that value.
    src = """
.amem 0 5 -7 31 -32
        SETI r2, 0
        SETI r4, 100
        VMAC r2, 4, 0
        SHIFTADD r2, 0
        ACC
        STORE r4, 4, 0
        HALT
"""
    image = assemble(src, CFG_A)
    assert emulator.run(image).acc.tolist()[:2] == [5 * 16 + 5 * 16, -7 * 16 + 5 * 16]
    check(image, backend, pe)

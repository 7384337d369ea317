"""The RTL against the golden emulator on the backend chosen with ``--backend``: final AMEM,
cycle count, accumulators and registers must be equal, bit for bit, for both PE kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from contract.backend import BackendTimeout, Limits, for_config, get_backend
from contract.config import PE_KINDS, AccelConfig
from contract.faults import ProgramFault
from contract.image import Image, ImageError
from emu import emulator
from emu.asm import assemble, assemble_file
from tests.profiles import scaled_examples
from tests.rtl_cases import CFG_A, CFG_B, CFG_INT8, CFG_WIDE, EDGES, assert_rtl_matches
from tests.strategies import programs, small_configs

pytestmark = pytest.mark.rtl

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "programs" / "examples").glob("*.s"))

POOLS = {"icarus": [CFG_A, CFG_B, CFG_WIDE, CFG_INT8], "ghdl": [CFG_A, CFG_B, CFG_WIDE, CFG_INT8],
         "verilator": [CFG_A, CFG_WIDE, CFG_INT8]}
EXAMPLES_MAX = {"myhdl": 30, "icarus": 8, "ghdl": 8, "verilator": 8}


def check(image: Image, backend: str, pe: str) -> None:
    config = image.config.replace(pe=pe)
    golden = emulator.run(image, config)
    result = get_backend(backend).run(for_config(image, config), Limits(timeout=300))
    assert_rtl_matches(result, golden)





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
        assert_rtl_matches(result, golden)

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

"""The golden emulator: step-mode semantics, faults, counters, and fast mode == step mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import bench_emulator
from contract import isa
from contract.config import AccelConfig
from contract.image import Image
from emu.asm import assemble
from emu.emulator import EmulatorError, RunResult, run
from programs import kernels
from tests.helpers import assert_same
from tests.profiles import scaled_examples
from tests.strategies import programs_and_configs


def _outcome(img: Image, fast: bool, max_cycles: int) -> RunResult | str:
    try:
        return run(img, fast=fast, max_cycles=max_cycles)
    except EmulatorError as exc:
        return str(exc)


@settings(max_examples=scaled_examples(250), suppress_health_check=[HealthCheck.too_slow])
@given(programs_and_configs(wild=True), st.sampled_from([50, 400, 100_000]),
       st.sampled_from([50, 400, 100_000]))
def test_fast_equals_step_on_random_programs(case, max_cycles, again_cycles) -> None:  # type: ignore[no-untyped-def]
    _, img = case
    assert_same(_outcome(img, False, max_cycles), _outcome(img, True, max_cycles))
    # Run again: batches that start alike replay the first run's address work (emu.fast.plan),
    # under another cycle limit with fewer iterations in some.
    assert_same(_outcome(img, False, again_cycles), _outcome(img, True, again_cycles))


@given(programs_and_configs())
def test_static_cycles_equal_the_run(case) -> None:  # type: ignore[no-untyped-def]
    """The table's static timing (what the compiler plans with) is the emulator's count for
    every program that runs to HALT."""
    _, img = case
    res = _outcome(img, False, 100_000)
    if not isinstance(res, str):
        assert isa.static_cycles(img.text.tolist()) == res.cycles


def _asm(src: str, **cfg: int) -> Image:
    return assemble(src, AccelConfig(**cfg) if cfg else None)


def _both(img: Image, **kw: int) -> list[RunResult | str]:
    return [_outcome(img, fast, kw.get("max_cycles", 10**8)) for fast in (False, True)]


FAULTS = [
    ("SETI r1, 300\nVLD r1, 8, 0\nHALT\n", {"amem_depth": 256},
     r"^pc 1 \(VLD r1, 8, 0\): AMEM address 300\.\.307 \(r1\) out of range 0\.\.255$"),
    ("LOOP 100, e\nVLD r1, 8, 8\ne: NOP\nHALT\n", {"amem_depth": 256},
     r"^pc 1 \(VLD r1, 8, 8\): AMEM address 256\.\.263"),
    ("LOOP 2, a\nLOOP 2, b\nLOOP 2, c\nNOP\nc: NOP\nb: NOP\na: NOP\nHALT\n", {"loop_depth": 2},
     r"^pc 2 \(LOOP 2, 1\): loop nesting deeper than loop_depth = 2$"),
    ("LOOP 2, a\nLOOP 2, b\nNOP\na: NOP\nb: HALT\n", {},
     r"^pc 1 \(LOOP 2, 2\): loop body \(to 3\) extends past"),
    ("NOP\n", {}, r"^pc 1: pc 1 is past the program text"),
    ("LOOP 65535, a\nLOOP 65535, b\nNOP\nb: NOP\na: HALT\n", {},
     r"^pc 2 \(NOP\): cycle limit 100000 reached"),
    ("SETI r2, 5\nLOOP 10, a\nSTORE r2, 9, 1\na: NOP\nHALT\n", {},
     r"^pc 2 \(STORE r2, 9, 1\): n = 9 lanes, must be 1\.\.8$"),
    ("SETI r5, 4095\nLOOP 3, a\nLOADW r5, 1\na: NOP\nHALT\n", {},
     r"^pc 2 \(LOADW r5, 1\): WMEM address 4096 \(r5\) out of range"),
]


@pytest.mark.parametrize("src, cfg, pattern", FAULTS)
def test_faults_are_typed_and_name_pc_and_instruction(src, cfg, pattern) -> None:  # type: ignore[no-untyped-def]
    img = _asm(src, **cfg)
    step, fast = _both(img, max_cycles=100_000)
    assert isinstance(step, str)
    assert step == fast
    import re
    assert re.search(pattern, step), step


def test_cycle_limit_inside_a_batched_loop_matches_step_mode() -> None:
    # 19 cycles an iteration: CLR, 2 SETI, LOOP, 7 MAC, STORE of 8 lanes; then NOP, HALT.
    src = ("LOOP 1000, a\nCLR\nSETI r0, 0\nSETI r1, 0\nLOOP 7, b\nMAC r0, 1, r1, 1\n"
           "b: STORE r2, 8, 8\na: NOP\nHALT\n")
    img = _asm(src)
    total = 1 + 1000 * 19 + 2
    for limit in (1, 2, 3, 50, 5001, total - 1, total, total + 1):
        step, fast = _both(img, max_cycles=limit)
        assert_same(step, fast)
    # 5001 = 1 + 19 * 263 + 3: the fourth instruction (the inner LOOP) of iteration 264.
    assert "pc 4 (LOOP 7, 1): cycle limit 5001" in str(_both(img, max_cycles=5001)[1])
    done = _both(img, max_cycles=total)[1]
    assert not isinstance(done, str) and done.cycles == total


def test_counters_follow_the_timing_model() -> None:
    img = _asm("SETI r1, 4\nLOOP 3, e\nMAC r0, 1, r1, 1\ne: REQ r2, 0, 1\nSTORE r3, 5, 0\n"
               "VLD r1, 2, 0\nHALT\n")
    for res in _both(img):
        assert not isinstance(res, str)
        c = res.counters
        # SETI 1 + LOOP 1 + 3 MAC + REQ 1 + STORE 5 + VLD 2 + HALT 1
        assert c["cycles"] == 14 and c["instructions"] == 9
        assert c["ops"]["MAC"] == 3 and c["ops"]["LOOP"] == 1
        assert c["shift_adds"] == 3 * 8 + 8 and c["amem_reads"] == 3 + 2
        assert c["amem_writes"] == 5 and c["wmem_reads"] == 3 and c["bmem_reads"] == 1
        assert res.regs[0] == 3 and res.regs[1] == 7


def test_semantics_of_a_mac_loop_by_hand() -> None:
    img = _asm(".config lanes=2\nSETI r1, 0\nCLR\nLOOP 2, e\nMAC r0, 1, r1, 1\ne: HALT\n"
               ".wint 0 128 -64\n.wint 1 96 2\n.amem 0 3 -5\n")
    for res in _both(img):
        assert not isinstance(res, str)
        # Integers v * 2^7: 3*128 - 5*96 and 3*(-64) - 5*2
        assert res.acc.tolist() == [3 * 128 - 5 * 96, 3 * -64 - 5 * 2]
        assert res.products.tolist() == [-5 * 96, -5 * 2]


def test_trace_records_pc_instruction_and_changes() -> None:
    img = _asm("SETI r1, 7\nCLR\nVLD r1, 1, 0\nSTORE r1, 1, 1\nHALT\n.amem 7 -3\n", lanes=1)
    res = run(img, trace=True)
    assert res.trace is not None
    assert [e["pc"] for e in res.trace] == [0, 1, 2, 3, 4]
    assert res.trace[0] == {"cycle": 0, "pc": 0, "instr": "SETI r1, 7", "regs": {"r1": 7}}
    assert res.trace[2]["acc"] == [-3]
    assert res.trace[3]["stored"] == 1 and res.trace[3]["regs"] == {"r1": 8}


@pytest.mark.parametrize("lanes, cin, cout, size, stride, pad", [
    (4, 3, 6, 5, 1, 1), (8, 2, 8, 6, 2, 0), (3, 2, 7, 4, 1, 1), (1, 1, 2, 3, 1, 1)])
def test_conv2d_kernel_matches_reference_in_both_modes(lanes, cin, cout, size, stride, pad) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(lanes * 100 + cin)
    c = AccelConfig(lanes=lanes)
    x = rng.integers(-128, 128, (size, size, cin))
    w = kernels.random_weights((3, 3, cin, cout), c.exp_bits, rng)
    k = kernels.conv2d(x, w, rng.integers(-500, 500, cout), kernels.random_weights(
        (cout,), c.exp_bits, rng), rng.integers(0, 12, cout), stride=stride, pad=pad, config=c)
    step, fast = _both(k.image)
    assert_same(step, fast)
    assert not isinstance(step, str)
    assert np.array_equal(step.region(), k.expected)
    assert np.unique(k.expected).size > 2  # not all saturated or zero


def test_maxpool_and_dot_kernels_match_reference_in_both_modes() -> None:
    rng = np.random.default_rng(3)
    for k in (kernels.maxpool(rng.integers(-128, 128, (6, 6, 11)), 3, 2,
                              config=AccelConfig(lanes=4)),
              kernels.maxpool(rng.integers(-128, 128, (4, 4, 8)), 2, 2),
              kernels.dot(rng.integers(-128, 128, 40), kernels.random_weights((40, 8), 3, rng),
                          mult=96, shift=12)):
        step, fast = _both(k.image)
        assert_same(step, fast)
        assert not isinstance(step, str)
        assert np.array_equal(step.region(), k.expected)


def test_kernel_source_is_readable_assembly() -> None:
    k = kernels.conv2d(np.zeros((4, 4, 2), np.int64), np.zeros((3, 3, 2, 8), np.int64),
                       np.zeros(8, np.int64), np.ones(8, np.int64), np.zeros(8, np.int64),
                       pad=1)
    assert np.array_equal(assemble(k.source).text, k.image.text)
    assert "MAC r0, 1, r1, 1" in k.source and ".region output" in k.source


def test_benchmark_runs_at_a_tiny_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "emulator.json"
    assert bench_emulator.main(["--size", "6", "--channels", "8", "--lanes", "4",
                                "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["fast_matches_integer_reference"] is True
    assert result["step_slice_matches_reference"] is True
    assert result["fast_seconds"] > 0 and result["step_shift_adds_per_s"] > 0


@settings(max_examples=scaled_examples(60), suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_dot_product_paths_equal_step_mode(data) -> None:  # type: ignore[no-untyped-def]
    """MAC-only loops are matrix products in fast mode: float32, float64 or int64 by bound, and
    a gather when addresses wrap past 2^16 (the whole AMEM is addressable there)."""
    act_bits = data.draw(st.sampled_from([4, 8, 16]))
    exp_bits = data.draw(st.sampled_from([2, 3, 4]))
    lanes = data.draw(st.integers(1, 6))
    c = AccelConfig(lanes=lanes, act_bits=act_bits, exp_bits=exp_bits, acc_bits=40,
                    amem_depth=65536, wmem_depth=65536)
    n = data.draw(st.integers(1, 12))
    k = data.draw(st.integers(1, 40))
    iw, ix = data.draw(st.integers(-3, 3)), data.draw(st.integers(-3, 3))
    r0, r1 = data.draw(st.integers(0, 65535)), data.draw(st.integers(0, 65535))
    same = data.draw(st.booleans())
    mac = f"MAC r0, {iw}, r0, {ix}" if same else f"MAC r0, {iw}, r1, {ix}"
    src = (f"SETI r0, {r0}\nSETI r1, {r1}\nSETI r2, 60000\nLOOP {n}, a\nCLR\n"
           f"ADDI r0, r0, {data.draw(st.integers(-5, 5))}\nLOOP {k}, b\n{mac}\n"
           f"b: STORE r2, {lanes}, {lanes}\na: NOP\nHALT\n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    text = assemble(src, c).text
    img = Image(c, text, rng.integers(0, 1 << c.code_bits, (65536, lanes)), np.zeros((0, lanes)),
                rng.integers(c.act_min, c.act_max + 1, 50000), 0, {"output": (60000, 100)})
    assert_same(_outcome(img, False, 10**6), _outcome(img, True, 10**6))

"""Fast mode's special paths, each against step mode (the definition) and on programs that
provably take the path: sibling MAC loops fused into one matrix product (the kernel rows of a
convolution window), its float32 / float64 / int64 choice, its fallbacks (addresses that wrap,
windows of several registers, reads that meet the batch's own writes), and the helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import hwcode, isa, semantics
from contract.config import AccelConfig
from contract.image import Image
from emu.asm import assemble
from emu.emulator import EmulatorError, RunResult, run
from emu.fast import state as fast_state
from emu.fast.batch import Batch
from emu.fast.state import Tiles
from programs import kernels
from tests.helpers import assert_same
from tests.profiles import scaled_examples

EXAMPLES = scaled_examples(150)


def _outcome(img: Image, fast_mode: bool, max_cycles: int = 10**7) -> RunResult | str:
    try:
        return run(img, fast=fast_mode, max_cycles=max_cycles)
    except EmulatorError as exc:
        return str(exc)


class _Spy:
    """Counts what the fast paths did: fused groups taken and declined, batches refused."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.taken = self.declined = self.conflicts = 0
        group, order_free = Batch.group, Batch.memory_is_order_free

        def spy_group(batch: Any, g: Any, s: Any) -> bool:
            ok: bool = group(batch, g, s)
            if ok:
                self.taken += 1
            else:
                self.declined += 1
            return ok

        def spy_order(batch: Any) -> bool:
            ok: bool = order_free(batch)
            self.conflicts += not ok
            return ok

        monkeypatch.setattr(Batch, "group", spy_group)
        monkeypatch.setattr(Batch, "memory_is_order_free", spy_order)


def _conv(lanes: int, cin: int, cout: int, size: int, stride: int, pad: int, seed: int,
          **cfg: Any) -> kernels.Kernel:
    rng = np.random.default_rng(seed)
    c = AccelConfig(lanes=lanes, **cfg)
    x = rng.integers(c.act_min, c.act_max + 1, (size, size, cin))
    w = kernels.random_weights((3, 3, cin, cout), c.exp_bits, rng)
    return kernels.conv2d(x, w, rng.integers(-500, 500, cout),
                          kernels.random_weights((cout,), c.exp_bits, rng),
                          rng.integers(0, 12, cout), stride=stride, pad=pad, config=c)


@pytest.mark.parametrize("lanes, cin, cout, size, stride, pad", [
    (4, 3, 6, 5, 1, 1), (8, 2, 8, 6, 2, 0), (3, 2, 7, 4, 1, 1), (1, 1, 2, 3, 1, 1),
    (8, 16, 16, 8, 1, 1)])
def test_convolution_windows_are_one_product_and_exact(monkeypatch, lanes, cin, cout, size,  # type: ignore[no-untyped-def]
                                                       stride, pad) -> None:
    k = _conv(lanes, cin, cout, size, stride, pad, seed=lanes * 7 + cin)
    spy = _Spy(monkeypatch)
    step, quick = _outcome(k.image, False), _outcome(k.image, True)
    assert_same(step, quick)
    assert not isinstance(quick, str) and np.array_equal(quick.region(), k.expected)
    assert spy.taken > 0 and spy.conflicts == 0


def test_float32_would_round_so_float64_is_used(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """16-bit activations at the extremes times 4-bit-exponent weights: products reach 2^31,
    far past float32's 2^24, so a float32 product would round.  The bound must pick float64."""
    rng = np.random.default_rng(5)
    c = AccelConfig(lanes=4, act_bits=16, exp_bits=4, acc_bits=40)
    x = rng.choice([c.act_min, c.act_max, c.act_max - 1], (4, 4, 6))
    w = rng.choice([1 << 16, -(1 << 16), (1 << 15) + 1, -(1 << 15) - 4], (3, 3, 6, 4))
    k = kernels.conv2d(x, w, np.zeros(4, np.int64), np.ones(4, np.int64),
                       np.full(4, 30), pad=1, config=c)
    spy = _Spy(monkeypatch)
    step, quick = _outcome(k.image, False), _outcome(k.image, True)
    assert_same(step, quick)
    assert not isinstance(quick, str) and np.array_equal(quick.region(), k.expected)
    assert spy.taken > 0
    batch = Batch(Tiles([k.image]), {})
    assert batch.exact_region(0, c.amem_depth - 1, 3 * 6 * 3).dtype == np.float64


@pytest.mark.parametrize("cin, dtype, run_terms", [
    (113, np.float32, None), (114, np.float32, None), (115, np.float32, None),
    (114, np.float64, 1 << 30), (115, np.float64, 1 << 30)])
def test_float32_only_below_2_to_24(monkeypatch, cin, dtype, run_terms) -> None:  # type: ignore[no-untyped-def]
    """A 3x3 window of 127s and 125s times weights of 129, summed with no requantization:
    the bound max|x| * sum|w| = 127 * 129 * 9 * cin is just below 2^24 for 113 input channels
    and just above for 114 and 115.  With 115 the sum of 1035 odd products is odd and past
    2^24, so float32 could not even hold the result.  Past the bound the product is summed in
    float32 runs of 516 terms (127 * 256 each, 256 the codes' largest integer), the runs' sums
    added in float64; or, where runs that short are refused (``run_terms``), in float64.  Each
    side picks its type and leaves step mode's exact accumulator.  (One window: the tight
    bound is asked for, which a product of so few rows skips by default.)"""
    import emu.fast.products as products

    monkeypatch.setattr(products, "TIGHT_BOUND_ROWS", 0)
    if run_terms is not None:
        monkeypatch.setattr(products, "RUN_TERMS", run_terms)
    c = AccelConfig(lanes=4)
    row = 3 * cin
    src = ("SETI r2, 60000\nLOOP 1, a\nCLR\nSETI r0, 0\nSETI r1, 0\n"
           + "".join(f"LOOP {row}, k{i}\nMAC r0, 1, r1, 1\nk{i}: ADDI r1, r1, 5\n"
                     for i in range(3))
           + "STORE r2, 4, 4\na: NOP\nHALT\n")
    rng = np.random.default_rng(cin)
    acts = rng.choice([127, 125], 3 * row + 10, p=[0.9, 0.1])
    codes = np.full((c.wmem_depth, 4), int(hwcode.encode(129, c.exp_bits)))
    img = Image(c, assemble(src, c).text, codes, np.zeros((0, 4), np.int64), acts, 0, {})
    seen = []
    gather = Batch.gather_x

    def spy(src, starts, segs):  # type: ignore[no-untyped-def]
        seen.append(src.dtype)
        return gather(src, starts, segs)

    monkeypatch.setattr(Batch, "gather_x", staticmethod(spy))
    step, quick = _outcome(img, False), _outcome(img, True)
    assert_same(step, quick)
    assert seen == [dtype]
    assert not isinstance(step, str)
    window = np.concatenate([acts[i * (row + 5): i * (row + 5) + row] for i in range(3)])
    assert step.acc.tolist() == [int(window.sum()) * 129] * 4


@pytest.mark.parametrize("f32, f64", [(1, 1 << 53), (1, 1)])
def test_float64_and_int64_products_are_exact_too(monkeypatch, f32, f64) -> None:  # type: ignore[no-untyped-def]
    """With the exactness bounds lowered, the same programs take the float64 path (f32=1) and
    the int64 path (both 1, what a sum past 2^53 would take): still step mode's results."""
    monkeypatch.setattr(fast_state, "EXACT_F32", f32)
    monkeypatch.setattr(fast_state, "EXACT_F64", f64)
    k = _conv(4, 5, 6, 5, 1, 1, seed=11, acc_bits=17)
    batch = Batch(Tiles([k.image]), {})
    whole = batch.exact_region(0, k.image.config.amem_depth - 1, 45)
    assert whole.dtype == (np.int64 if f64 == 1 else np.float64)
    spy = _Spy(monkeypatch)
    step, quick = _outcome(k.image, False), _outcome(k.image, True)
    assert_same(step, quick)  # acc_bits 17 wraps: int64 keeps the low bits exactly
    assert spy.taken > 0


def test_output_over_the_input_falls_back_to_step_order(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Outputs stored over inputs that later windows read: instruction-major order would read
    the new values, so the batch must refuse and step mode's order decide."""
    rng = np.random.default_rng(9)
    c = AccelConfig(lanes=4)
    x = rng.integers(-128, 128, (5, 5, 4))
    w = kernels.random_weights((3, 3, 4, 4), c.exp_bits, rng)
    k = kernels.conv2d(x, w, rng.integers(-99, 99, 4), np.ones(4, np.int64), np.full(4, 6),
                       pad=1, config=c, in_base=0, out_base=8)
    spy = _Spy(monkeypatch)
    step, quick = _outcome(k.image, False), _outcome(k.image, True)
    assert_same(step, quick)
    assert spy.conflicts > 0
    assert not isinstance(step, str) and not np.array_equal(step.region(), k.expected)


GROUP_FALLBACKS = {
    # window addresses wrap past 2^16 inside the run: gathered one loop at a time
    "wrap": ("SETI r1, 65530\nSETI r0, 0\nSETI r2, 60000\nLOOP 3, a\nCLR\n"
             "LOOP 9, b\nMAC r0, 1, r1, 1\nb: ADDI r1, r1, 4\nLOOP 9, c\nMAC r0, 1, r1, 1\n"
             "c: STORE r2, 4, 4\na: NOP\nHALT\n"),
    # the two kernel rows hang off different registers (r1 and r5)
    "two registers": ("SETI r1, 0\nSETI r5, 900\nSETI r0, 0\nSETI r2, 60000\nLOOP 4, a\nCLR\n"
                      "LOOP 9, b\nMAC r0, 1, r1, 1\nb: LOOP 9, c\nMAC r0, 1, r5, 2\n"
                      "c: ADDI r1, r1, 3\nADDI r5, r5, 1\nSTORE r2, 4, 4\na: NOP\nHALT\n"),
    # rw == rx: both increments move one register, and windows and weights do not factor
    "one register": ("SETI r1, 100\nSETI r2, 60000\nLOOP 5, a\nCLR\nLOOP 6, b\n"
                     "MAC r1, 1, r1, 2\nb: ADDI r1, r1, -7\nLOOP 4, c\nMAC r1, -1, r1, 1\n"
                     "c: STORE r2, 4, 4\na: NOP\nHALT\n"),
    # weights run past WMEM: step mode's fault, with its pc
    "fault": ("SETI r0, 4090\nSETI r2, 60000\nLOOP 3, a\nCLR\nLOOP 4, b\nMAC r0, 1, r1, 1\n"
              "b: ADDI r0, r0, 0\nLOOP 4, c\nMAC r0, 1, r1, 1\nc: STORE r2, 4, 4\na: NOP\nHALT\n"),
}


@pytest.mark.parametrize("name", sorted(GROUP_FALLBACKS))
def test_group_fallbacks_match_step_mode(monkeypatch, name) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    c = AccelConfig(lanes=4, amem_depth=65536)
    img = Image(c, assemble(GROUP_FALLBACKS[name], c).text,
                rng.integers(0, 1 << c.code_bits, (c.wmem_depth, 4)), np.zeros((0, 4), np.int64),
                rng.integers(-128, 128, 65536), 0, {})
    spy = _Spy(monkeypatch)
    step, quick = _outcome(img, False), _outcome(img, True)
    assert_same(step, quick)
    assert spy.declined > 0
    assert isinstance(step, str) == (name == "fault")


@st.composite
def group_programs(draw: st.DrawFn) -> Image:
    """An outer loop over a body of sibling MAC loops and register-only instructions between
    them (copies between registers, constants, steps), with big memories so addresses wrap."""
    lanes = draw(st.integers(1, 6))
    act_bits = draw(st.sampled_from([4, 8, 16]))
    exp_bits = draw(st.sampled_from([2, 3, 4]))
    acc_bits = draw(st.sampled_from([act_bits + (1 << exp_bits) + 1, 40]))
    c = AccelConfig(lanes=lanes, act_bits=act_bits, exp_bits=exp_bits, acc_bits=acc_bits,
                    amem_depth=65536, wmem_depth=65536)
    regs = st.sampled_from([0, 1, 4, 5, 6, 7])
    lines = [f"SETI r{r}, {draw(st.integers(0, 65535))}" for r in (0, 1, 4, 5, 6, 7)]
    lines += ["SETI r2, 62000", f"SETI r3, {draw(st.integers(0, 3))}",
              f"LOOP {draw(st.integers(1, 10))}, outer",
              draw(st.sampled_from(["CLR", "BIAS r3, 0", "NOP"]))]
    label = ""  # a label names the instruction after a body: put it on the next line

    def emit(text: str) -> None:
        nonlocal label
        lines.append(label + text)
        label = ""

    for i in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(0, 2))):
            emit(draw(st.sampled_from([
                f"ADDI r{draw(regs)}, r{draw(regs)}, {draw(st.integers(-300, 300))}",
                f"SETI r{draw(regs)}, {draw(st.integers(0, 65535))}", "NOP"])))
        rw, rx = draw(regs), draw(regs)
        emit(f"LOOP {draw(st.integers(0, 25))}, m{i}")
        emit(f"MAC r{rw}, {draw(st.integers(-3, 3))}, r{rx}, {draw(st.integers(-3, 3))}")
        label = f"m{i}: "
    emit(f"ADDI r{draw(regs)}, r{draw(regs)}, {draw(st.integers(-9, 9))}")
    emit(f"STORE r2, {lanes}, {lanes}")
    lines += ["outer: NOP", "HALT"]
    src = "\n".join(lines) + "\n"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    acts = rng.integers(c.act_min, c.act_max + 1, 61000)
    if draw(st.booleans()):
        acts[rng.integers(0, len(acts), 200)] = draw(st.sampled_from([c.act_min, c.act_max]))
    return Image(c, assemble(src, c).text, rng.integers(0, 1 << c.code_bits, (65536, lanes)),
                 rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), (4, lanes)), acts, 0,
                 {})


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(group_programs(), st.sampled_from([10**6, 300]))
def test_fast_equals_step_on_sibling_mac_loops(img, max_cycles) -> None:  # type: ignore[no-untyped-def]
    assert_same(_outcome(img, False, max_cycles), _outcome(img, True, max_cycles))


@st.composite
def lane_programs(draw: st.DrawFn) -> Image:
    """A loop whose body moves A through the lane instructions whose bounds fast mode tracks
    to skip wraps (CLR, BIAS, VLD, VMAX, REQ, a MAC loop; partial lanes too) and stores it:
    BMEM words span the accumulator's range, so a wrong bound stores an unwrapped value."""
    lanes = draw(st.integers(1, 6))
    act_bits = draw(st.sampled_from([4, 8]))
    exp_bits = draw(st.sampled_from([2, 3]))
    acc_bits = draw(st.sampled_from([act_bits + (1 << exp_bits) + 2, 32]))
    c = AccelConfig(lanes=lanes, act_bits=act_bits, exp_bits=exp_bits, acc_bits=acc_bits)
    n = st.one_of(st.just(lanes), st.integers(1, lanes))  # every lane, often
    step = st.integers(0, 9)
    lines = [f"SETI r0, {draw(st.integers(0, 3000))}", f"SETI r1, {draw(st.integers(0, 3000))}",
             f"SETI r4, {draw(st.integers(0, 100))}", "SETI r2, 5000", "SETI r3, 0",
             f"LOOP {draw(st.integers(1, 12))}, outer",
             draw(st.sampled_from(["CLR", "NOP", f"BIAS r3, {draw(st.integers(0, 1))}",
                                   f"VLD r0, {draw(n)}, {draw(step)}"]))]
    for i in range(draw(st.integers(1, 5))):
        lines += draw(st.sampled_from([
            [f"VMAX r{draw(st.integers(0, 1))}, {draw(n)}, {draw(step)}"],
            [f"VLD r1, {draw(n)}, {draw(step)}"],
            [f"BIAS r3, {draw(st.integers(0, 1))}"],
            [f"REQ r3, {draw(st.integers(0, 1))}, {draw(st.integers(0, 1))}"],
            [f"LOOP {draw(st.integers(1, 20))}, m{i}", "MAC r4, 1, r1, 1", f"m{i}: NOP"]]))
    lines += [f"STORE r2, {lanes}, {lanes}", "outer: NOP", "HALT"]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = 1 << (acc_bits - 1)
    params = rng.integers(-top, top, (64, lanes))
    if draw(st.booleans()):  # words near the ends of the range
        params[rng.integers(0, 64, 20)] = draw(st.sampled_from([-top, top - 1]))
    return Image(c, assemble("\n".join(lines) + "\n", c).text,
                 rng.integers(0, 1 << c.code_bits, (c.wmem_depth, lanes)), params,
                 rng.integers(c.act_min, c.act_max + 1, 4000), 0, {})


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(lane_programs())
def test_fast_equals_step_where_bounds_on_a_skip_wraps(img) -> None:  # type: ignore[no-untyped-def]
    assert_same(_outcome(img, False), _outcome(img, True))


@pytest.mark.parametrize("body", [
    "BIAS r3, 0\nVMAX r0, 2, 3", "BIAS r3, 0\nVLD r0, 1, 3", "BIAS r3, 0\nVMAX r0, 1, 3",
    "BIAS r3, 0\nLOOP 4, m\nMAC r4, 1, r0, 1\nm: NOP", "VLD r0, 2, 3\nBIAS r3, 0",
    "BIAS r3, 0\nSETI r4, 0\nLOOP 2, m\nMAC r4, 1, r0, 1\nm: ADDI r0, r0, 1\nLOOP 2, n\n"
    "MAC r4, 1, r0, 1\nn: NOP",
    "CLR\nLOOP 4, m\nMAC r4, 1, r0, 1\nm: NOP\nVMAX r0, 2, 1"])
def test_each_bound_on_a_keeps_the_wraps_it_needs(body) -> None:  # type: ignore[no-untyped-def]
    """A parameter word past the activation range (or sums past the accumulator's), then
    instructions that keep some of it: every store must still wrap."""
    c = AccelConfig(lanes=2, acc_bits=20)
    src = ("SETI r0, 10\nSETI r2, 5000\nSETI r3, 0\nSETI r4, 0\nLOOP 5, outer\n"
           f"{body}\nSTORE r2, 2, 2\nouter: NOP\nHALT\n")
    top = int(hwcode.encode(128, c.exp_bits))
    img = Image(c, assemble(src, c).text, np.full((c.wmem_depth, 2), top),
                np.array([[524000, -300000], [3, 4]]), np.full(4000, 127), 0, {})
    step, quick = _outcome(img, False), _outcome(img, True)
    assert_same(step, quick)
    assert not isinstance(step, str) and step.counters["ops"]["STORE"] == 5


@settings(max_examples=EXAMPLES)
@given(st.data())
def test_run_check_equals_bitmap_check(data) -> None:  # type: ignore[no-untyped-def]
    """The order check by sorted write runs agrees with the check by a bitmap of AMEM."""
    depth = 512
    img = assemble(f".config amem_depth={depth}\nHALT\n")
    batch = Batch(Tiles([img]), {})
    kw = data.draw(st.integers(1, 8))
    for _ in range(data.draw(st.integers(1, 3))):
        starts = data.draw(st.lists(st.integers(0, depth - kw), min_size=1, max_size=12))
        batch.writes.append((np.array(starts, np.int64), kw))
    for _ in range(data.draw(st.integers(0, 4))):
        k = data.draw(st.integers(1, 9))
        step = data.draw(st.integers(-3, 3))
        lo, hi = max(0, -(k - 1) * step), depth - 1 - max(0, (k - 1) * step)
        starts = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=8))
        batch.reads.append((np.array(starts, np.int64), k, step))
    assert batch.runs_order_free(kw) == batch.bitmap_order_free()


@settings(max_examples=EXAMPLES)
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=300))
def test_factorize_is_unique_with_inverse(values) -> None:  # type: ignore[no-untyped-def]
    v = np.array(values, np.int64)
    got, inv = fast_state.factorize(v)
    want, winv = np.unique(v, return_inverse=True)
    assert np.array_equal(got, want) and np.array_equal(inv, winv.reshape(-1))


@pytest.mark.parametrize("exp_bits", [1, 2, 3, 4])
def test_code_table_equals_to_int(exp_bits) -> None:  # type: ignore[no-untyped-def]
    codes = np.arange(1 << (hwcode.code_bits(exp_bits) + 2), dtype=np.int64)  # high bits too
    assert np.array_equal(fast_state.code_ints(codes, exp_bits), hwcode.to_int(codes, exp_bits))


def test_decoded_weights_are_kept_across_runs_and_only_for_their_arrays(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A layer run again decodes nothing and stacks no memory, and still equals step mode;
    another weight array with the same codes is decoded and stacked anew (entries are found
    by identity, not content); the least recently used go past the budget; an entry goes
    when its array dies."""
    from emu.fast import prepacked

    prepacked.clear()
    made: list[int] = []
    stacked: list[int] = []
    decoded = prepacked.decoded

    def spy(arrays, idx, setting, make, pool=prepacked.DECODED, idx_key=None):  # type: ignore[no-untyped-def]
        def counted():  # type: ignore[no-untyped-def]
            if pool == prepacked.DECODED:
                made.append(len(arrays))
            else:
                stacked.append(id(arrays[0]))
            return make()
        return decoded(arrays, idx, setting, counted, pool, idx_key)

    monkeypatch.setattr(prepacked, "decoded", spy)
    k = _conv(4, 5, 6, 5, 1, 1, seed=3)
    step = _outcome(k.image, False)
    assert_same(step, _outcome(k.image, True))
    first = len(made)
    assert first > 0 and set(stacked) == {id(k.image.weights), id(k.image.params)}
    assert_same(step, _outcome(k.image, True))
    assert len(made) == first and len(stacked) == 2  # the same arrays: everything found
    twin = Image(k.image.config, k.image.text, k.image.weights.copy(), k.image.params,
                 k.image.acts, k.image.acts_base, k.image.regions)
    assert_same(step, _outcome(twin, True))
    assert len(made) == 2 * first
    assert sorted(stacked[2:]) == sorted({id(twin.weights), id(twin.params)})  # Image copies

    prepacked.clear()
    a, b, d = np.arange(8.0), np.arange(8.0), np.arange(8.0)
    idx = np.arange(3)
    v, _ = decoded([b], idx, (), lambda: np.ones(1000))
    assert not v.flags.writeable
    monkeypatch.setattr(prepacked, "CACHE_BYTES", 12000)
    decoded([a], idx, (), lambda: np.ones(1000))  # 16000 bytes: the older entry goes
    assert decoded([b], idx, (), lambda: np.zeros(1))[0].size == 1  # made anew
    assert len(prepacked._ITEMS) == 2
    del b  # the newer entry goes with its array
    assert len(prepacked._ITEMS) == 1 and prepacked._BYTES[0] == 8000
    decoded([d], idx, (), lambda: np.ones(500))  # 12000 bytes: within the budget
    assert decoded([a], idx, (), lambda: np.zeros(2))[0].size == 1000
    prepacked.clear()


@pytest.mark.parametrize("op", ["REQ r3, 1, 0", "BIAS r3, 1\nVMAX r0, 2, 0", "ACT r3, 1"])
def test_bmem_past_the_parameters_reads_the_zero_word(op) -> None:  # type: ignore[no-untyped-def]
    """The BMEM stack (and the REQ tables) hold the parameter image plus one zero word, the
    row of every address past it (Tiles.bmem_rows): a loop whose REQ, BIAS or ACT walks past
    the parameters equals step mode."""
    c = AccelConfig(lanes=2)
    src = ("SETI r0, 10\nSETI r2, 5000\nSETI r3, 0\nLOOP 6, outer\nVLD r0, 2, 3\n"
           f"{op}\nSTORE r2, 2, 2\nouter: NOP\nHALT\n")
    word = int(semantics.req_param(int(hwcode.encode(3, c.exp_bits)), 1, c.code_bits))
    img = Image(c, assemble(src, c).text, np.zeros((c.wmem_depth, 2), np.int64),
                np.full((2, 2), word), np.arange(-60, 60), 0, {})
    step, quick = _outcome(img, False), _outcome(img, True)
    assert_same(step, quick)
    assert not isinstance(step, str) and step.counters["ops"][op[:op.index(" ")]] == 6


def _req_program(c: AccelConfig, accs: list[int], word: int, relu: bool) -> Image:
    """A loop that sets both lanes of A to each of ``accs`` in turn (BIAS), requantizes them
    with the parameter ``word`` (REQ) and stores them."""
    n = len(accs)
    src = (f"SETI r0, 0\nSETI r3, {n}\nSETI r2, 1000\nLOOP {n}, end\nBIAS r0, 1\n"
           f"REQ r3, 0, {int(relu)}\nSTORE r2, 2, 2\nend: NOP\nHALT\n")
    params = np.array([[a, a] for a in accs] + [[word, word]], np.int64)
    return Image(c, assemble(src, c).text, np.zeros((1, c.lanes), np.int64), params,
                 np.zeros(0, np.int64), 0, {})


def _req_accs(c: AccelConfig, m: int, shift: int) -> list[int]:
    """Accumulators at the edges: the range's ends and zero, and those whose ``acc m`` lies
    one either side of a rounding tie (``j 2^s - 2^(s-1)``) or of a multiple of ``2^s``."""
    top = 1 << (c.acc_bits - 1)
    accs = {-top, top - 1, -1, 0, 1}
    if m:
        for j in (-3, -1, 0, 1, 2):
            for target in (j * (1 << shift) - (1 << shift >> 1), j * (1 << shift)):
                base = target // m
                accs.update(base + d for d in (-1, 0, 1))
        accs.update((top - 1) // abs(m) * sign for sign in (1, -1))
    return sorted(a for a in accs if -top <= a < top)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exp_bits=st.integers(1, 4), data=st.data(), relu=st.booleans())
def test_req_in_float64_equals_the_integers_at_the_edges(
        exp_bits: int, data: st.DataObject, relu: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQ in float64 (``floor(acc m 2^-s + 1/2)``, taken where ``2^(acc_bits-1) max|m| <
    2^52``) equals the integers' ``(acc m + 2^(s-1)) >> s`` at the accumulator range's ends
    and next to every rounding tie, for every shift, on both sides of that bound (exp_bits 4
    with acc_bits 36 is its last configuration inside it, 37 the first outside)."""
    pbits = AccelConfig(exp_bits=exp_bits).weight_format.product_bits(8, exp_bits)
    acc_bits = data.draw(st.sampled_from(sorted({pbits, 36, 37, 40} & set(range(pbits, 41)))))
    c = AccelConfig(lanes=2, exp_bits=exp_bits, acc_bits=acc_bits)
    codes = (1 << c.code_bits) - 1
    biggest = int(np.argmax(np.abs(hwcode.to_int(np.arange(codes + 1), exp_bits))))
    code = data.draw(st.sampled_from([biggest]) | st.integers(0, codes))
    shift = data.draw(st.integers(0, isa.REQ_SHIFT_MAX))
    m = int(hwcode.to_int(code, exp_bits))
    scales: list[bool] = []
    tables = Batch.requant_tables

    def spy(batch: Any) -> Any:
        out = tables(batch)
        scales.append(out[3] is not None)
        return out

    monkeypatch.setattr(Batch, "requant_tables", spy)
    img = _req_program(c, _req_accs(c, m, shift), semantics.req_param(code, shift, c.code_bits),
                       relu)
    step, quick = _outcome(img, False), _outcome(img, True)
    assert_same(step, quick)
    assert scales, "the REQ loop did not run as a batch"
    # Every table row's |m| (the accumulators' rows read as codes too) bounds the float path.
    rows = semantics.req_fields(img.params, c.code_bits)[0]
    top = int(np.abs(hwcode.to_int(rows, exp_bits)).max())
    assert scales[0] == ((1 << (acc_bits - 1)) * top < 1 << 52)

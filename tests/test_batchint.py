"""The batch paths of programs.batchint (onnxruntime's 8-bit products, float BLAS, fused
requantization, threads) equal the literal integer definition in programs.reference bit for
bit, on random layers and configurations, including reductions long enough to be cut into
chunks or to reach onnxruntime's int32 bound, accumulators narrow enough to wrap (where the fast
path must step aside), zero-point borders and the batch's narrow activation types."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import semantics
from contract.config import AccelConfig
from contract.isa import REQ_SHIFT_MAX
from programs import batchint, batchort, batchrequant, reference
from programs.graph import Graph, Layer
from programs.qnet import QLayer, QNet, narrow
from tests.strategies import small_configs


@contextmanager
def every_size(float_conv: bool = True) -> Iterator[None]:
    """The fast paths on layers of any size (small ones normally take the definition), the
    float products on onnxruntime's Conv or on their own blocks."""
    old = batchint.MIN_ROWS, batchint.FLOAT_CONV
    batchint.MIN_ROWS, batchint.FLOAT_CONV = 0, float_conv
    try:
        yield
    finally:
        batchint.MIN_ROWS, batchint.FLOAT_CONV = old


@contextmanager
def products_as(choice: str) -> Iterator[None]:
    """$ASD_BATCH_PRODUCTS set to ``choice`` for the block."""
    old = os.environ.get(batchint.PRODUCTS_VARIABLE)
    os.environ[batchint.PRODUCTS_VARIABLE] = choice
    try:
        yield
    finally:
        if old is None:
            del os.environ[batchint.PRODUCTS_VARIABLE]
        else:
            os.environ[batchint.PRODUCTS_VARIABLE] = old


def _layer(draw: st.DrawFn, c: AccelConfig, op: str) -> tuple[QLayer, QNet, list[np.ndarray]]:
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    groups = draw(st.sampled_from([1, 1, 2]))
    ci = groups * draw(st.integers(1, 5))
    co = groups * draw(st.integers(1, 6))
    k = draw(st.sampled_from([1, 2, 3]))
    s = draw(st.sampled_from([1, 2]))
    pads = tuple(draw(st.integers(0, k - 1)) for _ in range(4))
    h, w = draw(st.integers(k, 9)), draw(st.integers(k, 9))
    n = draw(st.integers(1, 3))
    if op == "avgpool" and draw(st.booleans()):  # global: the window is the whole map
        (k, kw), pads = (h, w), (0, 0, 0, 0)
    else:
        kw = k
    lay = Layer("l", op, ["x", "x"] if op == "add" else ["x"], "y", kernel=(k, kw), stride=(s, s),
                pads=pads, groups=groups)
    # Codes at the extremes as often as anywhere: long reductions of large weights are
    # what forces chunks and float64.
    fmt = c.weight_format
    top = (1 << fmt.code_bits(c.exp_bits)) - 1
    codes = rng.integers(0, top + 1, (co, ci // groups, k, k))
    if draw(st.booleans()):
        codes[:] = int(np.argmax(np.abs(fmt.to_int(np.arange(top + 1), c.exp_bits))))
    w_int = fmt.to_int(codes, c.exp_bits).astype(np.int64)
    lay.weight = w_int.astype(np.float64)
    req_codes = rng.integers(0, 1 << c.code_bits, co)
    mult = semantics.shift_add(np.ones(co, np.int64), req_codes, c.exp_bits)
    mult = np.where(mult == 0, 1, mult)
    ql = QLayer(lay, w_int=w_int, bias_int=rng.integers(-(1 << 20), 1 << 20, co),
                mult=mult, shift=rng.integers(0, REQ_SHIFT_MAX + 1, co),
                relu=draw(st.booleans()), config=c)
    if op == "avgpool":
        ql.w_int, ql.mult, ql.shift = None, mult[:1].repeat(ci), ql.shift[:1].repeat(ci)
        ql.bias_int = None if draw(st.booleans()) else ql.bias_int[:1].repeat(ci)
    if op == "add":
        ql.w_int, ql.add_ints = None, tuple(int(v) for v in fmt.to_int(rng.integers(0, top + 1, 2),
                                                                       c.exp_bits))
        ql.mult, ql.shift = mult[:1].repeat(ci), ql.shift[:1].repeat(ci)
        ql.bias_int = None if draw(st.booleans()) else ql.bias_int[:1].repeat(ci)
    zero = draw(st.sampled_from([0, c.act_min]))
    g = Graph("x", (ci, h, w), "y", [lay])
    q = QNet(g, c, {"x": 1.0, "y": 1.0}, {"l": ql}, zero_points={"x": zero} if zero else {})
    xs = [rng.integers(c.act_min, c.act_max + 1, (n, h, w, ci)) for _ in lay.inputs]
    if draw(st.booleans()):
        xs[0][...] = c.act_min
    return ql, q, xs


@given(small_configs(), st.sampled_from(["conv", "maxpool", "add", "avgpool"]), st.data())
def test_fast_layers_equal_the_literal_definition(c: AccelConfig, op: str, data: st.DataObject
                                                  ) -> None:
    ql, q, xs = _layer(data.draw, c, op)
    with (every_size(data.draw(st.booleans())),
          products_as(data.draw(st.sampled_from(batchint.PRODUCT_CHOICES)))):
        fast = reference.int_layer(ql, q, xs)
        # The batch's own narrow type (runtime.run): None only where the definition runs.
        narrow = batchint.int_layer(ql, q, [x.astype(np.dtype(c.act_storage)) for x in xs])
    literal = reference.int_layer(ql, q, xs, literal=True)
    assert fast.dtype == np.int64 and np.array_equal(fast, literal)
    assert narrow is None or (narrow.dtype == np.dtype(c.act_storage)
                              and np.array_equal(narrow, literal))


def test_long_reductions_are_cut_into_exact_chunks() -> None:
    """A 3x3x512 reduction of maximal weights on maximal inputs overflows float32's exact
    range: it runs in chunks (or float64) and still equals the definition."""
    absw = np.full((4, 4608), 192, np.int64)
    chunks, dtype = batchint._chunks(absw, 128) or ([], None)
    assert dtype is np.float64 or len(chunks) > 1
    assert all(192 * 128 * (b - a) < (1 << 53 if dtype is np.float64 else 1 << 24)
               for a, b in chunks)
    small = batchint._chunks(absw[:, :100], 128)
    assert small is not None and small[0] == [(0, 100)] and small[1] is np.float32


@given(small_configs(), st.integers(0, 2**31), st.integers(0, 20), st.booleans(),
       st.booleans())
def test_float32_requantization_equals_the_definition_at_ties_and_ends(
        c: AccelConfig, seed: int, shift: int, relu: bool, scratch: bool) -> None:
    """Where acc * m needs float64 but the clip leaves float32 enough (programs.batchrequant's
    notes), the float32 steps equal the definition: on each rounding tie across and beyond
    the output range, one sum either side, and at the exact range's ends."""
    rng = np.random.default_rng(seed)
    co = 8
    mult = semantics.shift_add(np.ones(co, np.int64), rng.integers(0, 1 << c.code_bits, co),
                               c.exp_bits)
    shifts = np.clip(shift + rng.integers(-2, 3, co), 0, REQ_SHIFT_MAX)
    limit = 1 << min(24, c.acc_bits - 1)  # |S| + |bias| below both bounds
    bias = rng.integers(-(limit >> 3), limit >> 3, co)
    ql = QLayer(Layer("l", "conv", ["x"], "y"), w_int=np.zeros((co, 1, 1, 1), np.int64),
                bias_int=bias, mult=mult, shift=shifts, relu=relu, config=c)
    m, s = batchrequant._req_factors(ql, c)
    half = np.where(s > 0, 1 << np.maximum(s - 1, 0), 0)
    # Sums A = S + bias around the ties m A + 2^(s-1) = k 2^s, k over the outputs and beyond.
    k = rng.integers(c.act_min - 3, c.act_max + 4, (256, co))
    tie = ((k << s) - half) // np.where(m == 0, 1, m)
    a = np.concatenate([tie + d for d in (-1, 0, 1, 2)] + [rng.integers(-limit, limit, (64, co))])
    room = limit - 1 - np.abs(bias)
    acc = np.clip(a - bias, -room, room)
    acc[:2] = [room, -room]
    reach = np.abs(acc).max(axis=0) + np.abs(bias)
    req = batchrequant.Requant.of(ql, c, bias, reach)
    assert req is not None
    lo = 0 if relu else c.act_min
    fits = max(c.act_max, -lo) <= 2.0 ** (24 - max(int(s.max()), 1))
    if req.scale.dtype == np.float64:  # not float32 throughout: then the float32 steps
        assert (req.bias32 is not None) is fits
    want = semantics.requantize(acc + bias, ql.req_params, c.exp_bits, c.act_bits, relu)
    got = np.empty(acc.shape, np.int64)
    req.apply(acc.astype(np.float32), got, scratch=scratch)
    assert np.array_equal(got, want)
    # Sums that hold the bias already (onnxruntime's Conv adds it), half of the channels.
    part = np.empty((len(acc), 4), np.int64)
    req.apply((acc + bias)[:, 2:6].astype(np.float32), part, slice(2, 6), biased=True)
    assert np.array_equal(part, want[:, 2:6])


def test_the_fast_path_is_taken_and_steps_aside_when_the_accumulator_wraps() -> None:
    c = AccelConfig()
    rng = np.random.default_rng(0)
    lay = Layer("l", "conv", ["x"], "y", kernel=(3, 3), pads=(1, 1, 1, 1))
    w_int = rng.integers(-192, 193, (8, 16, 3, 3))
    ql = QLayer(lay, w_int=w_int, bias_int=rng.integers(-1000, 1000, 8), mult=np.full(8, 3),
                shift=np.full(8, 12), relu=True, config=c)
    x = rng.integers(-128, 128, (4, 6, 6, 16))
    assert batchint.conv_layer(x, ql, c, 0) is not None  # 144 output pixels: the fast path
    # 36: onnxruntime (its weights prepared once) takes them; the float products would not
    # (the definition is cheaper than their passes over the weights).
    q = QNet(Graph("x", (16, 6, 6), "y", [lay]), c, {"x": 1.0, "y": 1.0}, {"l": ql})
    assert np.array_equal(batchint.conv_layer(x[:1], ql, c, 0),
                          reference.int_layer(ql, q, [x[:1]], literal=True))
    wide = AccelConfig(act_bits=9)  # no onnxruntime (activations beyond 8 bits)
    ql.config = wide
    assert batchint.conv_layer(x, ql, wide, 0) is not None
    assert batchint.conv_layer(x[:1], ql, wide, 0) is None
    narrow = AccelConfig(acc_bits=20)
    ql.config = narrow
    assert batchint.conv_layer(x, ql, narrow, 0) is None  # sums reach 2^19: wrap matters
    q = QNet(Graph("x", (16, 6, 6), "y", [lay]), narrow, {"x": 1.0, "y": 1.0}, {"l": ql})
    assert np.array_equal(reference.int_layer(ql, q, [x]),
                          reference.int_layer(ql, q, [x], literal=True))


@given(st.lists(st.integers(-(1 << 17), 1 << 17), min_size=1, max_size=40))
def test_digit_planes_rebuild_the_weights_within_the_unsaturated_range(ws: list[int]) -> None:
    w = np.array(ws, np.int64)[:, None]  # one channel, K = len(ws)
    digits, sums = batchort.planes(w.T)
    assert [int(s[0]) for s in sums] == [int(np.abs(d).sum()) for d in digits]
    assert all(d.min() >= batchort.DIGIT_MIN and d.max() <= batchort.DIGIT_MAX for d in digits)
    assert all(d.dtype == np.int8 for d in digits)
    assert np.array_equal(sum(d.astype(np.int64) * batchort.BASE ** p
                              for p, d in enumerate(digits)), w)
    assert len(digits) == 1 or digits[-1].any()


def _wide_layer(ci: int, w: int, c: AccelConfig) -> tuple[QLayer, QNet]:
    lay = Layer("l", "conv", ["x"], "y", kernel=(1, 1))
    ql = QLayer(lay, w_int=np.full((1, ci, 1, 1), w, np.int64), bias_int=np.array([-7]),
                mult=np.array([3]), shift=np.array([20]), relu=False, config=c)
    return ql, QNet(Graph("x", (ci, 1, 1), "y", [lay]), c, {"x": 1.0, "y": 1.0}, {"l": ql})


@given(st.integers(-3, 3), st.sampled_from([-64, 63, 192]), st.booleans())
def test_onnxruntime_steps_aside_at_the_int32_bound(step: int, w: int, low: bool) -> None:
    """A reduction whose int32 sums can reach 2^31 takes the float products; one just under
    it runs on onnxruntime, exactly, at the inputs that make the sums largest (every u = 255,
    weights at the digit range's ends: int16 pairs at their largest too).  One plane: the
    sums of u * d; two (192 = 2 * 128 - 64): Horner's step, bounded by u * (|w| + 65)."""
    c = AccelConfig()
    reach = abs(w) if -64 <= w <= 63 else abs(w) + 65
    ci = (1 << 31) // (255 * reach) + step  # the first ci past the bound has step 1
    ql, q = _wide_layer(ci, w, c)
    prep = batchint._ort_prepared(ql, c)
    assert prep is not None
    assert (prep.session is not None) == (255 * reach * ci < 1 << 31)
    x = np.full((2, 1, 1, ci), c.act_min if low else c.act_max, np.int64)
    x[1, ..., ::3] = c.act_max
    with every_size(), products_as("int8"):
        fast = batchint.int_layer(ql, q, [x])
    assert fast is not None
    assert np.array_equal(fast, reference.int_layer(ql, q, [x], literal=True))


def test_an_asd_network_layer_runs_on_onnxruntime() -> None:
    """The shipped configuration's weights (ASD, two planes) and 8-bit activations take the
    onnxruntime path, at extreme inputs too."""
    c = AccelConfig()
    rng = np.random.default_rng(3)
    lay = Layer("l", "conv", ["x"], "y", kernel=(3, 3), pads=(1, 1, 1, 1))
    top = c.weight_format.max_abs(c.exp_bits)
    ql = QLayer(lay, w_int=rng.choice([-top, -192, -65, -64, 63, 64, 192, top], (8, 32, 3, 3)),
                bias_int=rng.integers(-1000, 1000, 8), mult=np.full(8, 5), shift=np.full(8, 14),
                relu=True, config=c)
    q = QNet(Graph("x", (32, 6, 6), "y", [lay]), c, {"x": 1.0, "y": 1.0}, {"l": ql},
             zero_points={"x": -5})
    prep = batchint._ort_prepared(ql, c)
    assert prep is not None and prep.session is not None
    session, calls = prep.session, []

    class Counted:
        def run(self, u: np.ndarray) -> np.ndarray:
            calls.append(len(u))
            return session.run(u)

    prep.session = Counted()  # type: ignore[assignment]
    try:
        for choice, used in (("int8", True), ("float", False)):
            for x in (rng.integers(-128, 128, (5, 6, 6, 32)), np.full((5, 6, 6, 32), 127),
                      np.full((5, 6, 6, 32), -128)):
                want = reference.int_layer(ql, q, [x], literal=True)
                calls.clear()
                with products_as(choice):
                    got = batchint.conv_layer(x.astype(np.int8), ql, c, -5)
                assert np.array_equal(got, want)
                assert (sum(calls) == 5 * 6 * 6) == used and (not calls) == (not used)
    finally:
        prep.session = session


def test_a_batchs_float_products_run_on_onnxruntimes_conv() -> None:
    """Two images a thread or more: the float products take onnxruntime's float32 Conv
    (programs.batchort.FloatConv), whose own border is zeros; a zero point's border comes
    with the input.  The bias joins the Conv's sums where they stay below 2^24 with it, and
    the requantization otherwise.  Every case equals the definition."""
    c = AccelConfig()
    rng = np.random.default_rng(1)
    lay = Layer("l", "conv", ["x"], "y", kernel=(3, 3), stride=(2, 1), pads=(1, 0, 2, 1))
    x = rng.integers(-128, 128, (2 * batchint.workers(), 17, 13, 3))
    for bias in (rng.integers(-1000, 1000, 8), np.full(8, -(1 << 24))):
        ql = QLayer(lay, w_int=rng.integers(-192, 193, (8, 3, 3, 3)), bias_int=bias,
                    mult=np.full(8, 129), shift=np.full(8, 17), relu=False, config=c)
        joins = int(np.abs(bias).max()) < 1 << 20
        for zero in (0, c.act_min):
            q = QNet(Graph("x", (3, 17, 13), "y", [lay]), c, {"x": 1.0, "y": 1.0}, {"l": ql},
                     zero_points={"x": zero} if zero else {})
            with products_as("float"):
                got = batchint.conv_layer(x.astype(np.int8), ql, c, zero)
            assert np.array_equal(got, reference.int_layer(ql, q, [x], literal=True))
            bordered, in_conv = batchort._CACHE[(id(ql), "float conv")][2]
            assert bordered is (zero != 0) and (in_conv is not None) is joins
    # The small bias's sums need float64 for acc * m, but float32 holds the outputs' range.
    reach = np.full(8, 128 * 27 * 192 + 1000)
    req = batchrequant.Requant.of(ql, c, np.full(8, 1000), reach)
    assert req is not None and req.scale.dtype == np.float64 and req.bias32 is not None


def test_the_faster_products_are_chosen_from_the_machines_rates() -> None:
    """Two digit planes take onnxruntime where its 8-bit products are more than twice as
    fast as the float ones, else the float products, and then never prepare the session; a
    bad setting is refused by name."""
    c = AccelConfig()
    saved = dict(batchort._RATES)
    x = np.random.default_rng(5).integers(-128, 128, (batchint.MIN_ROWS, 1, 1, 64))
    try:
        for int8, want in ((5.0, True), (1.5, False)):
            batchort._RATES.clear()
            batchort._RATES.update(int8=int8, float32=1.0, float64=0.5)
            ql, q = _wide_layer(64, 192, c)  # 192 = 2 * 128 - 64: two planes
            assert batchint._int8_faster(ql, c) is want
            got = batchint.conv_layer(x.astype(np.int8), ql, c, 0)
            assert np.array_equal(got, reference.int_layer(ql, q, [x], literal=True))
            # The float products' layer never prepared the session's planes.
            assert ((id(ql), "prepared") in batchort._CACHE) is want
            prep = batchint._ort_prepared(ql, c)
            assert prep is not None and prep.session is not None and prep.planes == 2
            assert (prep.session._sess is not None) is want
    finally:
        batchort._RATES.clear()
        batchort._RATES.update(saved)
    measured = batchort.rates()
    assert set(measured) == {"int8", "float32", "float64"}
    assert all(0 < v < float("inf") for v in measured.values())
    with products_as("fastest"):
        with pytest.raises(ValueError, match="ASD_BATCH_PRODUCTS='fastest'"):
            batchint.products()


def test_a_layers_session_is_built_once_and_dropped_with_the_layer() -> None:
    c = AccelConfig()
    ql, q = _wide_layer(64, 5, c)
    first = batchint._ort_prepared(ql, c)
    assert first is not None and batchint._ort_prepared(ql, c) is first
    ql.bias_int = np.array([8])  # a new bias: a new session
    assert batchint._ort_prepared(ql, c) is not first
    gone = id(ql)
    del ql, q, first
    assert (gone, "prepared") not in batchort._CACHE


@given(st.lists(st.integers(-(1 << 16), 1 << 16), min_size=1, max_size=8), st.booleans())
def test_narrow_types_hold_the_values_and_their_negations(ws: list[int], sym: bool) -> None:
    w = np.array(ws, np.int64)
    v = narrow(w, symmetric=sym)
    assert np.array_equal(v, w) and v.dtype.itemsize <= 8
    if sym:
        assert np.array_equal(np.abs(v).astype(np.int64), np.abs(w))
    smaller = {np.int16: np.int8, np.int32: np.int16, np.int64: np.int32}.get(v.dtype.type)
    if smaller is not None:  # the narrowest: one size down would not hold them
        info = np.iinfo(smaller)
        ends = (min(ws), max(ws), *([-max(ws), -min(ws)] if sym else []))
        assert min(ends) < info.min or max(ends) > info.max


def test_the_prepared_sums_take_the_weights_int8_and_int16_ends() -> None:
    """The onnxruntime path sums |w| in the weights' narrowest type: -128 and -32768 (whose
    negation leaves int8 and int16) must count as +128 and +32768."""
    c = AccelConfig()
    for w in (-128, 127, -32768):
        ql, _ = _wide_layer(9, w, c)
        prep = batchint._ort_prepared(ql, c)
        assert prep is not None and int(prep.abs_sum[0]) == 9 * abs(w)
        assert int(prep.bias_u[0]) == -7 + c.act_min * 9 * w


def test_blocks_run_once_each_on_the_caller_while_the_pool_is_busy(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """parallel() takes its tasks on the calling thread too: with every pool thread held by
    other work (the runtime's emulator checks), a layer's blocks still all run, once each,
    instead of waiting behind that work; an error in a block reaches the caller."""
    import threading

    monkeypatch.setattr(batchint, "workers", lambda: 2)
    release = threading.Event()
    busy = [batchint.pool().submit(release.wait, 30) for _ in range(2)]
    done: list[int] = []
    callers: set[int] = set()

    def work(i: int, _: int) -> None:
        done.append(i)
        callers.add(threading.get_ident())

    runner = threading.Thread(target=batchint.parallel, args=([(i, 0) for i in range(20)], work))
    runner.start()
    runner.join(10)
    finished = not runner.is_alive()
    release.set()
    for f in busy:
        f.result()
    assert finished and sorted(done) == list(range(20)) and callers == {runner.ident}
    # With the pool free its threads help, and still each task runs once.
    done.clear()
    batchint.parallel([(i, 0) for i in range(200)], lambda i, _: done.append(i))
    assert sorted(done) == list(range(200))

    def fails(i: int, _: int) -> None:
        if i == 7:
            raise ValueError("block 7")

    with pytest.raises(ValueError, match="block 7"):
        batchint.parallel([(i, 0) for i in range(20)], fails)

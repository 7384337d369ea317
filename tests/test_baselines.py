"""Baselines: uniform INT-b, one-digit power of two, ShiftCNN greedy N-term."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asd.baselines import IntFormat, ShiftCnnFormat, pot_format
from asd.schemes import get_scheme
from tests.strategies import scaled_values, small_weights


@given(st.integers(2, 10), st.lists(st.floats(-600, 600), min_size=1, max_size=30))
def test_int_nearest_is_round_half_away_and_saturates(bits, xs):
    fmt = IntFormat(bits)
    x = np.array(xs)
    expect = np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), -fmt.qmax, fmt.qmax)
    assert np.array_equal(fmt.nearest_int(x), expect)


@given(st.integers(2, 16))
def test_int_codes_are_twos_complement_and_round_trip(bits):
    fmt = IntFormat(bits)
    v = np.arange(-fmt.qmax, fmt.qmax + 1)
    c = fmt.encode(v)
    assert np.all((c >= 0) & (c < (1 << bits)))
    assert np.array_equal(fmt.decode(c), v)
    assert int(fmt.encode(-1)) == (1 << bits) - 1
    with pytest.raises(ValueError):
        fmt.decode(1 << (bits - 1))  # the unused most negative code


def test_pot_codebook_is_signed_powers_of_two_and_zero():
    fmt = pot_format(3)
    vals = fmt.values()
    pos = vals[vals > 0]
    assert np.array_equal(np.sort(pos), np.ldexp(1.0, -np.arange(7))[::-1])
    assert 0.0 in vals and vals.size == 15 and fmt.code_bits == 4


@given(st.integers(1, 3), st.lists(scaled_values, min_size=1, max_size=20))
def test_shiftcnn_is_greedy_and_decodes(terms, xs):
    fmt = ShiftCnnFormat(terms, 3)
    x = np.clip(np.array(xs), -4, 4)
    codes, total = fmt.quantize(x)
    assert np.array_equal(fmt.decode(codes), total)
    # Replay the greedy choice one term at a time with the one-digit nearest rounding.
    term = pot_format(3)
    r = x.copy()
    acc = np.zeros_like(x)
    for _ in range(terms):
        q = term.to_float(term.codebook.int_values(term.codebook.nearest_index_ref(
            np.ldexp(r, term.frac_bits + 1))))
        acc += q
        r -= q
    assert np.array_equal(fmt.to_float(total), acc)


@given(st.lists(st.floats(-1, 1), min_size=1, max_size=40))
def test_shiftcnn_more_terms_never_hurt_and_one_term_is_pot(xs):
    x = np.array(xs)
    errs = []
    for n in (1, 2, 3):
        fmt = ShiftCnnFormat(n, 3)
        errs.append(np.abs(x - fmt.to_float(fmt.quantize(x)[1])))
    assert np.all(errs[1] <= errs[0]) and np.all(errs[2] <= errs[1])
    one = ShiftCnnFormat(1, 3)
    pot = pot_format(3)
    assert np.array_equal(one.to_float(one.quantize(x)[1]),
                          pot.to_float(pot.codebook.int_values(pot.codebook.index(x))))


@given(small_weights, st.sampled_from(["int8", "int4", "pot", "shiftcnn", "asd2", "fp8-e4m3",
                                       "fp8-e5m2"]),
       st.sampled_from(["tensor", "channel"]), st.sampled_from(["max", "mse", "pow2"]))
def test_every_scheme_decodes_its_codes_to_its_floats(w, name, gran, scale):
    sch = get_scheme(name)
    res = sch.quantize(w, gran, scale)
    v = sch.decode(res.codes)
    assert np.array_equal((v * res.scale_broadcast()).astype(np.float32), res.dequant)
    assert res.dequant.shape == w.shape and res.scale.dtype == np.float32
    assert res.scale.size == (w.shape[0] if gran == "channel" else 1)


def test_per_channel_int_uses_each_channels_range():
    w = np.array([[1.0, -0.5, 0.25], [100.0, 50.0, -25.0]], np.float32)
    res = get_scheme("int8").quantize(w, "channel", "max")
    # Scales are stored as float16: the max-abs scale rounded to it.
    assert np.array_equal(res.scale, np.float16([1 / 127, 100 / 127]).astype(np.float32))
    assert np.abs(res.dequant - w).max() <= 0.5 * 100 / 127

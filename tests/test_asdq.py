"""ASD quantization: codebook, nearest rounding, the published CSD conversion, codes."""

from __future__ import annotations

import functools
import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from asd.asdq import AsdFormat, csd_round, csd_round_int, nearest, nearest_int
from contract import hwcode
from tests.profiles import scaled_examples
from tests.strategies import asd_formats, scaled_values


@functools.cache
def fmt_of(k: int, e: int) -> AsdFormat:
    return AsdFormat(k, e)


@functools.cache
def brute_codebook(k: int, e: int) -> np.ndarray:
    """Values with at most k digits at distinct window positions, by direct search."""
    w = 1 << e
    lo = 1 if k == 1 else 0  # the one-digit code gives position 2**-(W-1) to zero
    vals = {0}
    for pos in itertools.combinations(range(lo, w), min(k, w - lo)):
        for digits in itertools.product((-1, 0, 1), repeat=len(pos)):
            vals.add(sum(d << p for d, p in zip(digits, pos, strict=True)))
    return np.array(sorted(vals), dtype=np.int64)


def brute_nearest(x: float, k: int, e: int) -> int:
    # Exact rational distances: no float rounding can fake or hide a tie.
    cb = brute_codebook(k, e)
    unit = Fraction(1, 1 << ((1 << e) - 1))
    xf = Fraction(x)
    d = [abs(int(c) * unit - xf) for c in cb]
    m = min(d)
    best = [int(c) for c, di in zip(cb, d, strict=True) if di == m]
    return max(best, key=abs)  # ties: the larger magnitude


@given(asd_formats)
def test_codebook_is_exactly_the_k_digit_window_values(ke):
    k, e = ke
    assert np.array_equal(fmt_of(k, e).codebook.signed_levels, brute_codebook(k, e))


@settings(max_examples=scaled_examples(300))
@given(asd_formats, scaled_values)
def test_nearest_equals_brute_force(ke, x):
    k, e = ke
    assert int(nearest_int(x, fmt_of(k, e))) == brute_nearest(x, k, e)


@given(asd_formats, st.lists(scaled_values, min_size=1, max_size=30))
def test_properties_of_nearest(ke, xs):
    k, e = ke
    fmt = fmt_of(k, e)
    x = np.array(xs)
    q = nearest(x, fmt)
    cb = fmt.values()
    assert np.all(np.isin(q, cb))  # at most K digits in the window
    assert np.array_equal(nearest(q, fmt), q)  # idempotent
    assert np.array_equal(nearest(-x, fmt), -q)  # sign symmetric
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)  # monotone
    inside = np.abs(x) <= fmt.vmax
    hi = np.searchsorted(cb, x[inside])
    hi = np.clip(hi, 1, cb.size - 1)
    gap = cb[hi] - cb[hi - 1]
    assert np.all(np.abs(x[inside] - q[inside]) <= gap / 2)  # within half the local gap
    assert np.all(q[x > fmt.vmax] == fmt.vmax)  # saturation
    assert np.all(q[x < -fmt.vmax] == -fmt.vmax)


@given(asd_formats, st.lists(scaled_values, min_size=1, max_size=30))
def test_csd_conversion_properties(ke, xs):
    k, e = ke
    fmt = fmt_of(k, e)
    x = np.array(xs)
    q = csd_round(x, fmt)
    assert np.all(np.isin(q, fmt.values()))
    assert np.array_equal(csd_round(q, fmt), q)
    assert np.array_equal(csd_round(-x, fmt), -q)


@given(st.sampled_from([(2, 3), (3, 3), (2, 4), (4, 4)]), st.integers(-384, 384))
def test_csd_conversion_equals_csdigit_truncation(ke, n):
    import csdigit.csd as ref

    k, e = ke
    fmt = fmt_of(k, e)
    x = n / 2.0**fmt.frac_bits
    assume(not 2 / 3 < abs(x) < 1)  # csdigit's known gap, see test_csd.py
    expect = ref.to_decimal(ref.to_csdnnz(x, k))
    assume(abs(expect) <= fmt.vmax and np.isin(int(expect * 2**fmt.frac_bits),
                                                fmt.codebook.signed_levels))
    assert float(csd_round(x, fmt)) == expect


def test_csd_and_nearest_differ_where_they_should():
    fmt = AsdFormat(1, 3)
    # 11/128 = CSD 16-4-1: the published conversion keeps 16/128; nearest is 8/128.
    assert int(csd_round_int(11 / 128, fmt)) == 16
    assert int(nearest_int(11 / 128, fmt)) == 8


def test_guards_powers_of_two_zero_window_and_nan():
    fmt = AsdFormat(2, 3)
    p = np.ldexp(1.0, -np.arange(8))
    assert np.array_equal(nearest(p, fmt), p)
    assert np.array_equal(csd_round(p, fmt), p)
    assert nearest([0.0, -0.0], fmt).tolist() == [0.0, 0.0]
    assert nearest([1e30, -1e30, 1.6, 2.0], fmt).tolist() == [1.5, -1.5, 1.5, 1.5]
    assert csd_round([1e30, 1.7], fmt).tolist() == [1.5, 1.5]
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError):
            nearest([0.5, bad], fmt)
        with pytest.raises(ValueError):
            csd_round([bad], fmt)
        with pytest.raises(ValueError):
            fmt.codebook.index(np.array([[0.5, bad]], np.float32), 1.0)


def test_tie_goes_away_from_zero():
    fmt = AsdFormat(2, 3)
    # 1.25 and 1.5 are neighbours: 1.375 is a tie.
    assert nearest([1.375, -1.375], fmt).tolist() == [1.5, -1.5]


@given(asd_formats, st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
@settings(max_examples=scaled_examples(60))
def test_fast_table_path_equals_binary_search(ke, seed, dtype):
    k, e = ke
    fmt = fmt_of(k, e)
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((5, 300)) * rng.uniform(0.01, 3, (5, 1))).astype(dtype)
    w[0, :5] = [0.0, 1e-30, -1e-30, 1e20, -1e20]
    s = rng.uniform(0.01, 2, 5).astype(np.float32)
    idx = fmt.codebook.index(w, s)
    f = (2.0 ** (fmt.frac_bits + 1) / s.astype(np.float64)).astype(dtype)
    a = w * f[:, None]
    assert np.array_equal(idx, fmt.codebook.nearest_index_ref(a))


@given(asd_formats, st.integers(0, 2**32 - 1))
@settings(max_examples=scaled_examples(40))
def test_float32_bit_pattern_lookup_equals_binary_search_at_every_edge(ke, seed):
    k, e = ke
    cb = fmt_of(k, e).codebook
    if cb._f32_key is None:
        return
    # Each midpoint and its float32 neighbours (where a coarser key would go wrong), both
    # signs, and random bit patterns over every finite exponent.
    mids = cb.mid2.astype(np.float32)
    near = np.concatenate([mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.inf)])
    bits = np.random.default_rng(seed).integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32)
    rand = bits.view(np.float32)
    rand = rand[np.isfinite(rand)]
    a = np.concatenate([near, -near, rand, [np.float32(0), np.float32(-0.0)]]).astype(np.float32)
    # This scale makes the quantizer's product the value itself.
    got = cb.index(a[None, :], 2.0 ** (cb.frac_bits + 1))[0]
    assert np.array_equal(got, cb.nearest_index_ref(a))


def test_float32_product_overflow_saturates_but_inf_weights_raise():
    cb = fmt_of(2, 3).codebook
    w = np.array([[3e38, -3e38, 0.25]], np.float32)
    assert cb.int_values(cb.index(w, 1e-3)).tolist() == [[192, -192, 192]]
    with pytest.raises(ValueError, match="NaN or Inf"):
        cb.index(np.array([[np.inf, 0.25]], np.float32), 1e-3)


def test_large_window_falls_back_to_binary_search():
    fmt = AsdFormat(2, 5)
    assert fmt.codebook._bucket_index is None
    x = np.random.default_rng(1).standard_normal((3, 50))
    idx = fmt.codebook.index(x, 1.0)
    assert np.array_equal(fmt.codebook.int_values(idx), nearest_int(x, fmt))


@given(asd_formats)
def test_codes_round_trip_and_k2_is_hwcode(ke):
    k, e = ke
    fmt = fmt_of(k, e)
    iv = fmt.codebook.signed_levels
    codes = fmt.encode(iv)
    assert np.all(codes < (1 << fmt.code_bits))
    assert np.unique(codes).size == iv.size
    assert np.array_equal(fmt.decode(codes), iv)
    if k == 2:
        assert fmt.code_bits == hwcode.code_bits(e)
        assert np.array_equal(codes, hwcode.encode(iv, e))
        assert np.array_equal(hwcode.to_int(codes, e), iv)
    if k == 1:
        assert fmt.code_bits == 1 + e
        assert int(fmt.encode(0)) == (1 << e) - 1


def test_headline_code_is_8_bits_and_rejects_off_codebook_values():
    fmt = AsdFormat(2, 3)
    assert fmt.code_bits == 8
    with pytest.raises(ValueError):
        fmt.encode([11])  # 11/128 needs three digits
    with pytest.raises(ValueError):
        AsdFormat(1, 3).decode([0b1111])  # negative zero is not a code

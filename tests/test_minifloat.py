"""Minifloat ExMy; FP8 E4M3 (fn) and E5M2 equal ml_dtypes bit for bit."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from asd.minifloat import Minifloat, fp8_e4m3, fp8_e5m2, parse_format, quantize_feature_map
from tests.profiles import scaled_examples
from tests.strategies import any_float32, any_float64

PAIRS = [(fp8_e4m3, ml_dtypes.float8_e4m3fn), (fp8_e5m2, ml_dtypes.float8_e5m2)]


def ml_bits(x, dt) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(dt).view(np.uint8).astype(np.int64)


def test_all_256_codes_decode_and_reencode_like_ml_dtypes():
    codes = np.arange(256)
    for make, dt in PAIRS:
        fmt = make(saturate=False)
        ours = fmt.decode(codes)
        theirs = codes.astype(np.uint8).view(dt).astype(np.float64)
        assert np.array_equal(ours, theirs, equal_nan=True)
        assert np.array_equal(np.signbit(ours), np.signbit(theirs))
        assert np.array_equal(fmt.encode(ours), ml_bits(ours, dt))


@settings(max_examples=scaled_examples(400))
@given(st.lists(any_float32, min_size=1, max_size=20))
def test_float32_conversion_equals_ml_dtypes(xs):
    x = np.array(xs, dtype=np.float32)
    for make, dt in PAIRS:
        assert np.array_equal(make(saturate=False).encode(x), ml_bits(x, dt))
        # Saturating = ml_dtypes on the clipped input.
        sat = make(saturate=True)
        clipped = np.clip(x, -sat.max_finite, sat.max_finite)
        assert np.array_equal(sat.encode(x), ml_bits(clipped, dt))


@settings(max_examples=scaled_examples(300))
@given(st.lists(any_float64, min_size=1, max_size=20))
def test_float64_conversion_equals_ml_dtypes(xs):
    x = np.array(xs, dtype=np.float64)
    for make, dt in PAIRS:
        assert np.array_equal(make(saturate=False).encode(x), ml_bits(x, dt))


@given(st.lists(st.floats(-1e-3, 1e-3), min_size=1, max_size=20))
def test_subnormal_region_equals_ml_dtypes(xs):
    x = np.array(xs)
    for make, dt in PAIRS:
        assert np.array_equal(make().encode(x), ml_bits(x, dt))


@given(st.integers(2, 5), st.integers(0, 4), st.lists(st.floats(-1e3, 1e3), min_size=1,
                                                      max_size=20))
def test_generic_exmy_is_nearest_even_idempotent_monotone(e, m, xs):
    fmt = Minifloat(e, m, special="none")
    x = np.sort(np.array(xs))
    r = fmt.round(x)
    assert np.array_equal(fmt.round(r), r)
    assert np.all(np.diff(r) >= 0)
    vals = np.concatenate([-fmt.positive_values()[::-1], fmt.positive_values()])
    assert np.all(np.isin(r, vals))
    inside = np.abs(x) <= fmt.max_finite
    d = np.abs(vals[None, :] - x[inside, None]).min(axis=1)
    assert np.all(np.abs(r[inside] - x[inside]) == d)
    assert np.all(np.abs(r[~inside]) == fmt.max_finite)
    assert np.array_equal(fmt.decode(fmt.encode(r)), r)


def test_named_formats_and_feature_maps():
    assert parse_format("e4m3").max_finite == 448.0
    assert parse_format("fp8-e5m2").max_finite == 57344.0
    assert parse_format("e3m2").code_bits == 6
    fm = quantize_feature_map(np.array([1000.0, 0.3, -0.3]), fp8_e4m3())
    assert fm.tolist() == [448.0, np.float32(0.3).astype(ml_dtypes.float8_e4m3fn).astype(
        np.float32), -np.float32(0.3).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)]

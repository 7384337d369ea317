"""Scale choice: max-abs, power of two, MSE search (equal to brute force over candidates)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from asd import scales
from asd.schemes import get_scheme


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["asd2", "pot", "int4", "int8"]))
def test_mse_search_picks_the_brute_force_best(seed, name):
    rng = np.random.default_rng(seed)
    w = (rng.laplace(size=(6, 200)) * rng.uniform(0.1, 3, (6, 1))).astype(np.float32)
    sch = get_scheme(name)
    chosen = scales.scale_mse(w, sch.levels())
    m = np.abs(w).max(axis=1)
    def err(s):
        v = sch.decode(sch._codes(w, s)) * s[:, None]
        return ((w - v) ** 2).sum(axis=1)

    cands = [(m * a / sch.vmax).astype(np.float32) for a in scales.mse_ratios()]
    best = np.argmin([err(s) for s in cands], axis=0)
    # The search picks the brute-force best candidate, then stores it as float16.
    want = np.float16([cands[b][i] for i, b in enumerate(best)]).astype(np.float32)
    assert np.array_equal(chosen.astype(np.float16), chosen)  # stored exactly
    assert np.allclose(err(chosen), err(want), rtol=1e-9, atol=0)


@given(st.integers(0, 2**32 - 1))
def test_pow2_and_max_scales(seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 30)).astype(np.float32)
    w[2] = 0.0
    m = np.abs(w).max(axis=1)
    s = scales.scale_pow2(w, 1.5)
    assert np.all(np.log2(s) == np.round(np.log2(s)))
    assert np.all((m[[0, 1, 3]] / s[[0, 1, 3]] <= 1.5) & (m[[0, 1, 3]] / s[[0, 1, 3]] > 0.75))
    assert s[2] == 1.0  # an all-zero channel gets a harmless scale
    sm = scales.scale_max(w, 1.5)
    assert np.allclose(sm[[0, 1, 3]] * 1.5, m[[0, 1, 3]], rtol=2.0**-11)  # float16 storage


def test_mse_candidates_include_max_abs():
    a = scales.mse_ratios()
    assert a.size >= 32 and 1.0 in a


def test_nan_weights_are_rejected():
    w = np.ones((2, 3), np.float32)
    w[1, 1] = np.nan
    for method in scales.METHODS:
        try:
            scales.choose_scale(w, method, 1.5, np.array([0.0, 1.0, 1.5]))
        except ValueError as exc:
            assert "NaN" in str(exc)
        else:
            raise AssertionError(f"{method} accepted NaN")

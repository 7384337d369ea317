"""Scale choice: max-abs, power of two, MSE search (equal to brute force over candidates)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asd import scales
from asd.schemes import get_scheme
from tests.profiles import scaled_examples


def _check_brute_force(w, name):
    """scale_mse picks the candidate with the least error under the scheme's own quantizer."""
    sch = get_scheme(name)
    chosen = scales.scale_mse(w, sch.levels(), starts=0)  # the first stage alone
    m = np.abs(w).max(axis=1)

    def err(s):
        v = sch.decode(sch._codes(w, s)) * s[:, None]
        return ((w - v) ** 2).sum(axis=1)

    ratios = scales.mse_ratios()
    cands = [np.where(m > 0, m * a / sch.vmax, 1.0).astype(np.float32) for a in ratios]
    best = np.argmin([err(s) for s in cands], axis=0)
    # The search picks the brute-force best candidate, then stores it as float16, rounded
    # once from float64 (through float32 it may round to the other float16 neighbour: seed
    # 192926's 14.48828... is 14.4921875 in float16 but 14.484375 through float32).
    m64 = np.abs(w).max(axis=1).astype(np.float64)
    want = np.float16([m64[i] * ratios[b] / sch.vmax if m64[i] > 0 else 1.0
                       for i, b in enumerate(best)]).astype(np.float32)
    assert np.array_equal(chosen.astype(np.float16), chosen)  # stored exactly
    assert np.allclose(err(chosen), err(want), rtol=1e-9, atol=0)


@settings(max_examples=scaled_examples(40))
@given(st.integers(0, 2**32 - 1), st.sampled_from(["asd2", "pot", "int4", "int8"]))
@example(192926, "asd2")  # a best candidate on a float16 rounding edge
def test_mse_search_picks_the_brute_force_best(seed, name):
    rng = np.random.default_rng(seed)
    w = (rng.laplace(size=(6, 200)) * rng.uniform(0.1, 3, (6, 1))).astype(np.float32)
    _check_brute_force(w, name)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((3, 70000), np.float32), ((300, 64), np.float32), ((40, 500), np.float64)],
)
def test_mse_search_brute_force_in_blocks(shape, dtype):
    # Rows longer than a block, more rows than a block holds, float64 weights, a zero row,
    # and weights on the candidates' thresholds (one float32 step either side of them too).
    rng = np.random.default_rng(shape[0])
    w = (rng.laplace(size=shape) * rng.uniform(0.1, 3, (shape[0], 1))).astype(dtype)
    w[1] = 0.0
    sch = get_scheme("asd2")
    m = np.abs(w[0]).max()
    thr = np.float32(scales.mse_ratios()[3] * m / sch.vmax) * np.float32(sch.levels()[5] + 0.5 * (
        sch.levels()[6] - sch.levels()[5]))
    w[0, 1:4] = [thr, np.nextafter(thr, np.float32(0)), np.nextafter(thr, np.float32(1))]
    _check_brute_force(w, "asd2")


@pytest.mark.parametrize("name", ["asd2", "pot", "int4", "int8", "fp8-e4m3"])
def test_edge_binning_is_exact(name):
    # The table lookup counts the edges <= u exactly, on the edges and one float32 step away.
    lv = get_scheme(name).levels()
    assert lv is not None
    binner = scales._search_plan(tuple(lv.tolist()), tuple(scales.mse_ratios().tolist()))[0]
    e = binner.edges
    rng = np.random.default_rng(0)
    u = np.concatenate([
        e, np.nextafter(e, np.float32(0)), np.nextafter(e, np.float32(2)),
        rng.uniform(0, 1, 100000).astype(np.float32), np.float32([0, 1, np.nextafter(1, 2)]),
        rng.uniform(0, e[0], 1000).astype(np.float32),
    ]).astype(np.float32)
    # Also with more inner edges per cell (coarser tables) and with the binary-search fallback.
    coarse = type("Coarse", (scales._EdgeBinner,), {"TOUCHED": 1 << 11})(e)
    none = type("NoTable", (scales._EdgeBinner,), {"TOUCHED": 0})(e)
    assert none.shift < 0
    for b in (binner, coarse, none):
        got = np.empty(u.size, np.intp)
        b(u, got, [np.empty(u.size, np.int64) for _ in range(b.buffers)])
        assert np.array_equal(got, np.searchsorted(e, u, side="right"))


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
    # max|w| can land on 1.0 of a two-digit codebook (vmax 1.5), where it is densest
    assert a.max() >= 1.5


def _brute_best(sch, w, n=3000):
    """Least squared error per row over a fine grid of n scales (2**-3 .. 2**1.5 of max/vmax),
    each rounded to float16 as scales are stored (see test_fp16_storage_is_what_limits_tiny)."""
    m = np.abs(w).max(axis=1)
    best = np.full(w.shape[0], np.inf)
    for a in np.exp2(np.linspace(-3, 1.5, n)):
        s = (m * a / sch.vmax).astype(np.float16).astype(np.float32)
        d = w - sch.decode(sch._codes(w, s)) * s[:, None]
        best = np.minimum(best, (d * d).sum(axis=1))
    return best


def _rows_to_test(rng):
    # per channel (rows of 300), per tensor (one row of 2000), normal and heavy-tailed, and
    # tiny channels: 2 weights (a squeeze-excitation conv's) and 9 (a 3x3 depthwise filter)
    return (rng.normal(size=(8, 300)), rng.laplace(size=(8, 300)),
            rng.standard_t(3, size=(8, 300)), rng.standard_t(3, size=(1, 2000)),
            rng.standard_t(3, size=(16, 2)), rng.normal(size=(16, 9)))


CODEBOOKS = [("asd", {"digits": k, "exp_bits": e}) for k in (1, 2, 3) for e in (2, 3, 4)] + [
    ("pot", {}), ("int4", {}), ("int6", {}), ("int8", {}), ("shiftcnn", {}),
    ("asd", {"conversion": "csd"}), ("fp8-e4m3", {})]


@pytest.mark.parametrize(("name", "opts"), CODEBOOKS)
def test_mse_search_reaches_the_fine_grid_optimum(name, opts):
    # Every row within 0.05 dB of the best of 3000 (float16) scales under the scheme's own
    # quantizer.
    sch = get_scheme(name, **opts)
    for w in _rows_to_test(np.random.default_rng(1)):
        w = w.astype(np.float32)
        s = sch._scales(w, "mse", "fp16")
        d = w - sch.decode(sch._codes(w, s)) * s[:, None]
        gap_db = 10 * np.log10((d * d).sum(axis=1) / _brute_best(sch, w))
        assert gap_db.max() <= 0.05, (name, opts, w.shape, gap_db)


@pytest.mark.parametrize("name", ["asd2", "int8", "shiftcnn"])
def test_sweep_errors_are_the_quantizers(name):
    # The piecewise-quadratic sweep reproduces the quantizer's own squared error at any scale
    # in its range, and its optimum is at least as good as every scale tried.
    sch = get_scheme(name)
    rng = np.random.default_rng(2)
    w = rng.laplace(size=(5, 40)).astype(np.float32)
    thr, lv = sch.steps()
    sw = scales.Sweep(w, thr, lv, sch.vmax)
    m = np.abs(w).max(axis=1)
    cand = (m[:, None] / sch.vmax * np.exp2(rng.uniform(-3.9, 1.9, (5, 50)))).astype(np.float32)
    got = sw.errors(cand.astype(np.float64))
    for j in range(cand.shape[1]):
        s = cand[:, j]
        d = w.astype(np.float64) - sch.decode(sch._codes(w, s)) * s[:, None].astype(np.float64)
        assert np.allclose(got[:, j], (d * d).sum(axis=1), rtol=1e-6, atol=1e-9)
    _, best = sw.optimum()
    assert np.all(best <= got.min(axis=1) + 1e-9)


def test_sweep_blocks_and_zero_rows(monkeypatch):
    # Rows swept in several blocks choose what one block chooses; an all-zero row gets scale 1.
    sch = get_scheme("asd2")
    w = np.random.default_rng(3).laplace(size=(50, 9)).astype(np.float32)
    w[7] = 0.0
    whole = sch._scales(w, "mse")
    monkeypatch.setattr(scales, "SWEEP_BLOCK", 9 * 51 * 4)  # 4 rows a block
    assert np.array_equal(sch._scales(w, "mse"), whole)
    assert whole[7] == 1.0


def test_fp16_storage_is_what_limits_tiny_channels():
    # On 2-weight rows the optimum over float32 scales can beat every float16 scale: the gap
    # the tests above measure against float16 scales is then the storage's, not the search's.
    sch = get_scheme("asd2")
    w = np.random.default_rng(1).standard_t(3, size=(16, 2)).astype(np.float32)
    s = sch._scales(w, "mse", "fp16")
    d = w - sch.decode(sch._codes(w, s)) * s[:, None]
    assert np.all((d * d).sum(axis=1) <= _brute_best(sch, w) * (1 + 1e-6))


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

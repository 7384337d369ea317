"""The chunked scale search and row quantization (programs.scale_search) against the
whole-tensor formulas they replace: the same multipliers and integers, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from contract.config import AccelConfig
from programs import scale_search
from programs.layout import weight_codes
from programs.quantize import SEARCH_HI, SEARCH_LO, mult_candidates, weight_scheme
from programs.scale_search import NearestTable, quantize_rows, search_multipliers


def whole_tensor_search(w, m0, cands, scale_of, approx):
    """The search as one pass over the whole tensor per candidate (the former code)."""
    best_err = np.full(w.shape[0], np.inf)
    best_m = m0.copy()
    for cand in cands:
        valid = ~np.isnan(cand)
        mc = np.where(valid, cand, m0)
        s = scale_of(mc)
        wq = approx(w / s[:, None]) * s[:, None]
        err = np.where(valid, ((wq - w) ** 2).sum(axis=1), np.inf)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_m = np.where(better, mc, best_m)
    return best_m


def weights_with_midpoints(rng, co, k, near, dtype):
    """Random weights, some put exactly on a bucket edge or a level of the table after
    scaling (where a different rounding of |w| / s would pick another level)."""
    w = rng.standard_normal((co, k)).astype(dtype) * rng.uniform(0.01, 2, (co, 1))
    w[:, :3] = 0.0
    edges = np.concatenate([near.mid, near.levels])
    picks = rng.choice(edges, (co, k // 4)) * rng.choice([-1, 1], (co, k // 4))
    w[:, 3: 3 + k // 4] = (picks * np.abs(w).max(axis=1, keepdims=True) / near.levels[-1])
    return w.astype(dtype)


@pytest.mark.parametrize("exp_bits,dtype,k", [(3, np.float32, 75), (3, np.float64, 1),
                                              (4, np.float32, 300), (3, np.float32, 4099)])
def test_search_equals_the_whole_tensor_search(monkeypatch, exp_bits, dtype, k) -> None:
    monkeypatch.setattr(scale_search, "CHUNK_ELEMENTS", 1024)  # many chunks, a ragged last
    rng = np.random.default_rng(exp_bits * 1000 + k)
    quant, vmax = weight_scheme("asd", exp_bits)
    near = NearestTable(quant.levels)
    unit = float(AccelConfig(exp_bits=exp_bits).weight_format.unit(exp_bits))
    co = 37
    w = weights_with_midpoints(rng, co, k, near, dtype)
    amax = np.abs(w).max(axis=1)
    m0 = np.where(amax > 0, amax, 1.0) / vmax * 0.37
    cands = mult_candidates(m0 * SEARCH_LO, m0 * SEARCH_HI, exp_bits)

    def scale_of(mc):
        return mc * unit * 0.05 / 0.02

    want = whole_tensor_search(w, m0, cands, scale_of, near)
    got = search_multipliers(w, m0, cands, scale_of, near, near)
    assert np.array_equal(got, want)
    # The general path (a quantizer without a table) too.
    general = search_multipliers(w, m0, cands, scale_of, lambda v: quant(v) / unit, None)
    assert np.array_equal(general, whole_tensor_search(w, m0, cands, scale_of,
                                                       lambda v: quant(v) / unit))
    # Rows quantized through the table equal the scheme's own quantizer.
    s_w = scale_of(got)
    by_table = quantize_rows(quant, w, s_w, near, unit)
    assert np.array_equal(by_table, quant(w / s_w[:, None]))
    assert by_table.dtype == np.int64


def test_rows_without_a_table_use_the_scheme() -> None:
    quant, _ = weight_scheme("int", 3, weights="int8", bits=8)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((9, 40))
    s = np.abs(w).max(axis=1) / 127
    assert np.array_equal(quantize_rows(quant, w, s, None), quant(w / s[:, None]))


@pytest.mark.parametrize("config", [AccelConfig(), AccelConfig(exp_bits=4),
                                    AccelConfig(weights="int8", pe="multiplier")])
def test_weight_codes_equal_the_format_encoder(config) -> None:
    fmt, e = config.weight_format, config.exp_bits
    held = np.unique(fmt.to_int(np.arange(1 << fmt.code_bits(e)), e))
    w = np.random.default_rng(0).choice(held, (20, 3, 3, 5))
    codes = weight_codes(w, config)
    assert np.array_equal(codes, fmt.encode(w, e))
    assert codes.dtype.itemsize <= 2
    bad = w.copy()
    bad[1, 2, 0, 4] = 1 << 20
    with pytest.raises(ValueError, match=str(1 << 20)):
        weight_codes(bad, config)

"""The quantization benchmark still runs (tiny size); its figures are not judged here."""

from __future__ import annotations

import json

from benchmarks.bench_quantize import main, resnet18_shapes


def test_benchmark_runs_at_tiny_size(tmp_path, capsys):
    out = tmp_path / "q.json"
    assert main(["--shrink", "32", "--repeat", "1", "--sample", "200", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["weights"] > 0 and res["mse_candidates"] >= 32
    for key in ("nearest_over_abs", "mse_over_abs", "nearest_peak_extra_over_weights",
                "python_over_vectorized_nearest"):
        assert res[key] > 0
    assert "np.abs" in capsys.readouterr().out


def test_full_size_is_resnet18_weight_count():
    total = sum(int(__import__("numpy").prod(s)) for s in resnet18_shapes(1))
    assert 11_600_000 < total < 11_700_000

"""The GPTQ timing benchmark runs (at a tiny input size) and writes what it prints."""

from __future__ import annotations

import json

from benchmarks.bench_gptq_time import main


def test_gptq_time_benchmark_runs_at_tiny_size(tmp_path, capsys):
    out = tmp_path / "gptq.json"
    assert main(["--images", "2", "--size", "32", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["weights_m"] > 11  # ResNet-18's 11.7 M weights whatever the input size
    assert r["total_s"] >= r["rounding_s"] >= 0
    assert f"{r['total_s']} s" in capsys.readouterr().out

"""The benchmarks behind docs/quantizers.md's generated tables run, and their output feeds the
generators (small sizes: the saved results come from the full runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_rounding, bench_scales, doctables, tablefmt


def test_scales_benchmark_runs_and_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "scales.json"
    assert bench_scales.main(["--shrink", "32", "--schemes", "asd K=2 E=3,int8",
                              "-o", str(out)]) == 0
    res = json.loads(out.read_text())
    asd = res["schemes"]["asd K=2 E=3"]
    assert set(asd) == {f"{g}/{s}" for g in bench_scales.GRANULARITIES
                        for s in bench_scales.SCALES}
    # The MSE scale is chosen for the least squared error: it cannot lose to max.
    assert asd["channel/mse"]["sqnr_db"] >= asd["channel/max"]["sqnr_db"]
    monkeypatch.setattr(tablefmt, "RESULTS", tmp_path)
    text = doctables.scale_choice()
    assert f"{asd['channel/mse']['sqnr_db']:.2f}" in text and "| int8 |" in text


def test_rounding_benchmark_runs_and_renders(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "rounding.json"
    assert bench_rounding.main(["--models", "digits_cnn", "--limit", "40", "--calib", "32",
                                "-o", str(out)]) == 0
    m = json.loads(out.read_text())["models"]["digits_cnn"]
    assert set(m["points"]) == {f"{s}/{r}" for ss, rr in bench_rounding.POINTS
                                for s in ss for r in rr}
    assert m["images"] == 40 and m["calibration_images"] == 32
    monkeypatch.setattr(tablefmt, "RESULTS", tmp_path)
    text = doctables.rounding()
    assert "| digits_cnn |" in text and "Stretch goal INT7" in text

"""The benchmarks behind docs/quantizers.md's generated tables run, and their output feeds the
generators (small sizes: the saved results come from the full runs); docs/compiler.md's and
docs/fidelity.md's generated words follow the results they are given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_rounding, bench_scales, compilertables, doctables, tablefmt


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


def _results_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> dict[str, Any]:
    """Copies of saved results the test may edit, read by the generators instead of the real
    ones (call ``save`` after editing)."""
    data = {n: json.loads((tablefmt.RESULTS / f"{n}.json").read_text()) for n in names}
    monkeypatch.setattr(tablefmt, "RESULTS", tmp_path)
    return data


def save(tmp_path: Path, data: dict[str, Any]) -> None:
    for name, d in data.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(d))


def test_compiler_fidelity_text_follows_the_results(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = _results_copy(tmp_path, monkeypatch, "fidelity_compiled")
    nets = data["fidelity_compiled"]["networks"]
    save(tmp_path, data)
    words = " ".join(compilertables.fidelity_ort().split())
    assert f"met on {len(nets)} of {len(nets)} networks" in words
    first = nets[0]
    first["goal"]["gap_db"] = 5.0  # 5 dB below onnxruntime: the goal no longer holds there
    for r in nets:  # a run without --all-roundings has no extra columns
        for label in ("asd2 bias q", "asd2 gptq q", "asd2 gptq+bias c sym"):
            r["rows"].pop(label)
        r.pop("layers")
    save(tmp_path, data)
    words = " ".join(compilertables.fidelity_ort().split())
    assert f"met on {len(nets) - 1} of {len(nets)} networks" in words
    assert f"from 5.0 dB below `ort qdq` on {first['network']}" in words
    head = compilertables.fidelity_roundings().splitlines()[0].split(" | ")
    assert "bias" in head and "bias q" not in head and "gptq q" not in head
    assert "zero points alone" not in compilertables.fidelity_roundings()
    assert compilertables.fidelity_layers().startswith("Not measured")


def test_compile_scale_judges_the_goals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _results_copy(tmp_path, monkeypatch, "compiler_seednets", "compiler_before_scale",
                         "compiler_seednets_small")
    save(tmp_path, data)
    assert compilertables.compile_scale().endswith("are met.")
    vgg = data["compiler_seednets"]["networks"]["vgg16"]
    vgg["peak_rss_bytes_during_compile"] = 5 * 2**30
    for n in data["compiler_seednets_small"]["networks"].values():
        n.pop("note", None)
    save(tmp_path, data)
    words = " ".join(compilertables.compile_scale().split())
    assert "VGG-16's compile peak 5.00 GiB" in words and words.endswith("are **not met**.")
    assert "(before)" not in compilertables.seednets_small()


def test_speed_goals_follow_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _results_copy(tmp_path, monkeypatch, "compiler_seednets")
    nets = data["compiler_seednets"]["networks"]
    for n in nets.values():  # every goal met
        n["emulator_over_onnxruntime"] = 9.0
        if "batch_over_onnxruntime" in n:
            n["batch_over_onnxruntime"] = 2.5
    save(tmp_path, data)
    words = " ".join(compilertables.seednets_notes().split())
    assert "ResNet-18 2.5x, SqueezeNet 1.1 2.5x: met" in words and "not met" not in words
    assert "whole batch" not in words and "edge" not in words
    nets["resnet18"]["emulator_over_onnxruntime"] = 9.7  # met, within a tenth of the goal
    save(tmp_path, data)
    words = " ".join(compilertables.seednets_notes().split())
    assert "ResNet-18 9.7x" in words and "not met" not in words
    assert "met; ResNet-18 within a tenth of the goal, at its edge)" in words
    nets["resnet18"]["emulator_over_onnxruntime"] = 9.0
    nets["squeezenet1_1"]["batch_over_onnxruntime"] = 6.0
    nets["alexnet"]["emulator_over_onnxruntime"] = 11.0
    for n in nets.values():
        n.pop("gemm_floor_over_onnxruntime", None)
    save(tmp_path, data)
    words = " ".join(compilertables.seednets_notes().split())
    assert "SqueezeNet 1.1 6.0x: **not met** on SqueezeNet 1.1" in words
    assert "AlexNet 11.0x" in words and "**not met** on AlexNet)" in words
    assert "SqueezeNet 1.1's batch checks image 0" in words and "GEMMs" not in words
    for n in nets.values():
        n["emulator_over_onnxruntime"] = 40.0
    save(tmp_path, data)
    assert "**not met** on any" in " ".join(compilertables.seednets_notes().split())
    # The products the batch took: two planes against float32, from the recorded rates.
    for rates, verdict in (({"int8": 40e9, "float32": 26e9, "float64": 17e9}, "lose"),
                           ({"int8": 160e9, "float32": 26e9, "float64": 17e9}, "win")):
        for n in nets.values():
            n.pop("batch_product_rates", None)
        nets["resnet18"]["batch_product_rates"] = rates
        save(tmp_path, data)
        words = " ".join(compilertables.seednets_notes().split())
        assert f"{rates['int8'] / 1e9:.1f} G products/s (u8s8" in words
        assert f"ASD's two digit planes {verdict} against float32" in words

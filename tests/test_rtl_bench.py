"""The backend benchmark still runs (tiny size, on the chosen backend); its figures are not
judged here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_backends import main, scaled_conv
from emu import emulator

pytestmark = pytest.mark.rtl


def test_scaling_multiplies_the_work() -> None:
    one, three = emulator.run(scaled_conv(1)), emulator.run(scaled_conv(3))
    # Three passes over the same convolution: three times the MACs, the same output.
    assert three.counters["ops"]["MAC"] == 3 * one.counters["ops"]["MAC"] > 0
    assert (three.amem == one.amem).all()


def test_benchmark_runs_at_tiny_size(backend: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    assert main(["--repeat", "1", "--backends", backend, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["backends"]) == {"emu-fast", "emu-step", backend}
    for row in res["backends"].values():
        assert row["cycles"] == res["cycles"] > 0 and row["cycles_per_second"] > 0
    assert res["backends"]["emu-fast"]["slowdown_vs_emu_fast"] == 1.0
    assert backend in capsys.readouterr().out

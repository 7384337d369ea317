"""benchmarks/bench_energy.py: the per-block energy measurement, its JSON and the tables and
README sentence generated from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_energy, energytables, tablefmt
from contract.config import AccelConfig


def _designs(floor: float, sa: float, b8: float) -> dict[str, dict[str, object]]:
    return {name: {"pj_per_idle_cycle": 10.0, "crit_ns": 2.0,
                   "s": {"pj_per_mac_cycle": v, "pj_per_mac_cycle_zero_delay": v / 2}}
            for name, v in (("floor", floor), ("shiftadd", sa), ("int8_booth", b8))}


def test_the_bound_is_what_the_target_needs() -> None:
    """``shiftadd_pe_needed_pj`` is exactly the shift-add PE that puts the array at the
    target, and the array's ratio never falls below the PEs' own."""
    a = bench_energy.analyse(_designs(100.0, 300.0, 400.0), AccelConfig(lanes=3), "s")
    assert a["pe_pj"] == {"shiftadd": 200.0, "int8_booth": 300.0}
    assert a["pe_ratio"] == pytest.approx(2 / 3, abs=1e-3)
    assert (100.0 + a["shiftadd_pe_needed_pj"]) / 400.0 == pytest.approx(bench_energy.TARGET)
    assert a["ratio_mac_cycle"] >= a["pe_ratio"]
    assert a["no_glitches"]["pe_ratio"] == pytest.approx((150 - 50) / (200 - 50), abs=1e-3)
    assert "per_image" not in a  # no counters stored for 3 lanes


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_energy.main(["--lanes", "0"])
    assert "--lanes and --macs must be positive" in capsys.readouterr().err


@pytest.mark.synth
def test_benchmark_runs_and_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "energy_blocks.json"
    assert bench_energy.main(["--lanes", "1", "--macs", "200", "-o", str(out),
                              "--work", str(tmp_path / "work")]) == 0
    res = json.loads(out.read_text())
    assert set(res["designs"]) == set(bench_energy.DESIGNS)
    assert set(res["streams"]) == set(bench_energy.STREAMS)
    for name, m in res["designs"].items():
        for s in bench_energy.STREAMS:
            f = m[s]
            # The blocks add up to the MAC cycle (each rounded to 0.01 pJ).
            assert sum(f["blocks_pj"].values()) == pytest.approx(f["pj_per_mac_cycle"],
                                                                 abs=0.05), (name, s)
    for s in bench_energy.STREAMS:  # glitches only add energy
        for m in res["designs"].values():
            assert m[s]["pj_per_mac_cycle_zero_delay"] <= m[s]["pj_per_mac_cycle"] * 1.01
    # No multiply at all costs less than either PE, on every stream.
    for s in bench_energy.STREAMS:
        floor = res["designs"]["floor"][s]["pj_per_mac_cycle"]
        assert floor < res["designs"]["shiftadd"][s]["pj_per_mac_cycle"]
        assert floor < res["designs"]["int8_booth"][s]["pj_per_mac_cycle"]
    # The demo's stream as compiled: zero points, so hardly a zero activation.
    assert res["designs"]["shiftadd"]["mnist_lenet"]["zero_activations"] < 0.05
    assert res["designs"]["floor"]["flip_flops"] < res["designs"]["shiftadd"]["flip_flops"]
    monkeypatch.setattr(tablefmt, "RESULTS", tmp_path)
    (tmp_path / "hwreport.json").write_text("{}")
    text = energytables.hw_energy_blocks()
    a = res["streams"][energytables.SHIPPED_STREAM]
    assert f"{a['pe_ratio']:.2f}" in text and "| floor (no multiply) |" in text
    assert f"{a['pe_ratio']:.2f} of the Booth PE" in energytables.readme_energy_sentence()

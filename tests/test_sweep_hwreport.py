"""The hardware sweep as sweep specs: the hwreport measure's design kinds (the int8 forms and
the decoded-ASD multiplier beside the shift-add PE), its cells-only and energy-per-inference
options, the study specs of benchmarks/bench_hwreport.py, and a design measured through the
sweep against the direct call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asd_cli.sweep import runner, spec
from asd_cli.sweep.store import Store

ROOT = Path(__file__).resolve().parent.parent
STUDIES = ROOT / "benchmarks" / "sweeps" / "hwreport"


def _load(tmp_path: Path, text: str) -> spec.Spec:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return spec.load(p)


def test_partial_product_forms_only_where_the_mode_keeps_sums_unresolved(
        tmp_path: Path) -> None:
    sp = _load(tmp_path, '[axes]\npe = ["shiftadd", "multiplier", "int8", "int8_booth", '
                         '"int8_array"]\nmodes = ["pipelined", "tree"]\n[measures.hwreport]\n')
    kinds = [(q["mode"], q["pe"]) for q in spec.points(sp)]
    assert [k for m, k in kinds if m == "pipelined"] == ["shiftadd", "multiplier", "int8"]
    assert len([k for m, k in kinds if m == "tree"]) == 5


def test_run_refuses_a_design_kind_and_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(spec.SpecError, match=r":3: axes.pe\[0\]: 'int8_booth' is a design"):
        _load(tmp_path, '[axes]\nmodels = ["mnist_lenet"]\npe = ["int8_booth"]\n'
                        "[measures.run]\n")
    with pytest.raises(spec.SpecError, match=r":3: measures.hwreport.networks\[0\]: unknown"):
        _load(tmp_path, '[measures.hwreport]\ncells_only = true\nnetworks = ["nope"]\n')
    with pytest.raises(spec.SpecError, match=r"measures.hwreport.cells_only: expected bool"):
        _load(tmp_path, "[measures.hwreport]\ncells_only = 1\n")


def test_every_study_of_the_results_is_a_spec() -> None:
    """Each study of hwreport.json has a spec whose configurations include the study's rows
    (a row the JSON holds is a configuration of the spec: the JSON is regenerated from them)."""
    from benchmarks import bench_hwreport
    from contract.config import AccelConfig

    stored = json.loads((ROOT / "benchmarks" / "results" / "hwreport.json").read_text())
    assert sorted(p.stem for p in STUDIES.glob("*.toml")) == sorted(bench_hwreport.STUDIES)
    base = AccelConfig().to_dict()
    for name in bench_hwreport.STUDIES:
        sp = spec.load(STUDIES / f"{name}.toml")
        assert sp.values["mode"] == [stored[name]["pe_array_mode"]]
        have = {tuple({**base, **c}[k] for k in bench_hwreport.ROW_FIELDS)
                for c in sp.values["config"]}
        rows = {tuple(r[k] for k in bench_hwreport.ROW_FIELDS) for r in stored[name]["results"]}
        assert rows <= have, name
        assert all(q["measure"] == "hwreport" for q in spec.points(sp))


@pytest.mark.synth
def test_a_design_through_the_sweep_equals_the_direct_call(tmp_path: Path) -> None:
    """The int8 multiplier (Booth form) of a 1-lane, 4-bit carry-save PE array, measured as a
    sweep point on the embedded cluster and by accel.hwreport.measure directly: the same
    figures (about 30 s)."""
    from accel import hwreport, inference
    from accel.kinds import KINDS
    from asd_cli.hwreport import shipped_stream
    from contract.config import AccelConfig

    sp = _load(tmp_path, '[axes]\nconfigs = [{lanes = 1, act_bits = 4}]\npe = ["int8_booth"]\n'
                         'modes = ["carrysave_drain"]\n[measures.hwreport]\nmacs = 200\n'
                         'networks = ["mnist_lenet"]\n')
    version = runner.project_version()
    tasks, inputs = runner.plan(sp, spec.points(sp), version)
    with Store(tmp_path / "s.sqlite") as store:
        out = runner.execute(tasks, inputs, store, version, workers=1, workdir=tmp_path / "w")
        (row,) = store.rows()
    assert out.ok == 1, row["error"]
    got = row["result"]
    kind = KINDS["int8_booth"]
    cfg = kind.config(AccelConfig(lanes=1, act_bits=4))
    direct = hwreport.measure(cfg, "pe", tmp_path / "direct", seeds=1,
                              stream=shipped_stream(cfg, 200), mode="carrysave_drain",
                              form=kind.form)
    assert got.pop("layer_macs") == 200
    (net,) = got.pop("networks")
    assert net["name"] == "mnist_lenet" and net["mac_cycles"] > 0
    assert got == json.loads(json.dumps(direct))
    cycles = inference.NetworkCycles(net["name"], net["cycles"], net["mac_cycles"],
                                     net["single_lane_macs"], net["sums"])
    assert net.pop("inference") == inference.per_inference(direct, cycles, cfg,
                                                           "carrysave_drain")


def test_a_design_is_written_the_same_whatever_its_process_built_before(
        tmp_path: Path) -> None:
    """MyHDL's process-wide block names made the n-th design of a process other net names
    than the same design built first (and nextpnr's Fmax follows names): a sweep worker's
    earlier points, or the serial benchmark's study order, changed a design's figures."""
    from accel import designs, hwreport
    from contract.config import AccelConfig

    def rtl(name: str, cfg: AccelConfig) -> list[str]:
        hwreport.fresh_hdl_names()
        srcs, _, _ = designs.write_design(cfg, "pe", tmp_path / name, "product", "resolved")
        # The header names the file and the time of conversion.
        return [line for p in srcs for line in p.read_text().splitlines()
                if not line.startswith(("// File:", "// Date:"))]

    cfg = AccelConfig(lanes=1, act_bits=4)
    first = rtl("a", cfg)
    rtl("b", cfg.replace(lanes=2))
    assert rtl("c", cfg) == first

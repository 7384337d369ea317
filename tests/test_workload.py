"""MAC utilization: a layer's MACs counted from its weights and output shape, set against
lanes x cycles by `asd run --json` (programs.runtime) and never above 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asd_cli.main import main as asd_main
from contract.config import AccelConfig
from programs import runtime
from programs.manifest import compile_model

MODEL = Path(__file__).parent.parent / "asd" / "data" / "models" / "mnist_resnet18.onnx"


def test_macs_and_utilization_per_layer_and_network() -> None:
    comp = compile_model(MODEL, AccelConfig(), None)
    g = comp.qnet.graph
    x = np.random.default_rng(0).standard_normal((2, *g.input_shape)).astype(np.float32)
    rep = runtime.run(comp, x)
    lanes = comp.config.lanes
    by_name = {lay.name: lay for lay in g.layers}
    for r in rep.layers:
        lay = by_name[r.name]
        c, oh, ow = g.shapes[lay.output]
        if lay.op == "conv":
            assert lay.weight is not None
            want = lay.weight.size * oh * ow  # every weight once per output pixel
        elif lay.op == "add":
            want = 2 * c * oh * ow
        elif lay.op == "avgpool":
            want = c * oh * ow * lay.kernel[0] * lay.kernel[1]
        else:
            want = 0
        assert r.macs == want, r.name
        if r.cycles:
            assert 0 <= r.mac_utilization <= 1
            assert r.mac_utilization == r.macs / (lanes * r.cycles)
    d = rep.as_dict()
    macs = sum(r.macs for r in rep.layers)
    assert d["macs_per_image"] == macs > 0
    assert d["mac_utilization"] == macs / (lanes * rep.cycles_per_image)
    assert 0 < d["mac_utilization_end_to_end"] < d["mac_utilization"] <= 1


def test_asd_run_json_reports_utilization(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert asd_main(["compile", str(MODEL), "-o", str(out)]) == 0
    x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert asd_main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert 0 < d["mac_utilization"] <= 1
    assert all("mac_utilization" in layer for layer in d["layers"])

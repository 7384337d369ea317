"""``asd compile`` and ``asd run`` end to end, and the compiled directory round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from asd_cli.main import main
from contract.backend import DEFAULT_LIMITS, Limits, RunResult, get_backend
from contract.config import AccelConfig
from contract.image import Image
from programs import reference, runtime
from programs.manifest import Compiled, compile_model
from tests.zoo_onnx import chain_model

SPEC = {"c": 2, "h": 8, "w": 8, "seed": 4, "steps": [
    ("conv", {"co": 6, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True, "bn": True,
              "groups": "dense", "act": "relu"}),
    ("maxpool", {"k": 2, "s": 2, "pads": [0, 0, 0, 0], "ceil": False}),
    ("residual", {"act": "relu"}), ("gemm", {"co": 5}), ("softmax", {})]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    onnx.save(chain_model(SPEC), d / "m.onnx")
    rng = np.random.default_rng(0)
    np.save(d / "calib.npy", rng.standard_normal((4, 2, 8, 8)).astype(np.float32))
    np.save(d / "x.npy", rng.standard_normal((5, 2, 8, 8)).astype(np.float32))
    AccelConfig(lanes=4, amem_depth=256).save(d / "cfg.toml")
    assert main(["compile", str(d / "m.onnx"), "--config", str(d / "cfg.toml"), "-o",
                 str(d / "out"), "--calib", str(d / "calib.npy")]) == 0
    return d


def test_compile_writes_images_listings_manifest(built: Path) -> None:
    man = json.loads((built / "out" / "manifest.json").read_text())
    assert man["config"]["lanes"] == 4 and man["totals"]["tiles"] >= 4
    ops = [e["op"] for e in man["layers"]]
    assert ops == ["conv", "maxpool", "conv", "conv", "add", "conv", "softmax"]
    for e in man["layers"]:
        for t in e["tiles"]:
            assert (built / "out" / t["image"]).stat().st_size > 0
            assert "HALT" in (built / "out" / t["listing"]).read_text()
    # amem_depth 256 cannot hold the 8x8 conv in one piece: row bands.
    assert len(man["layers"][0]["tiles"]) > 1
    assert man["totals"]["cycles"] == sum(e["cycles"] for e in man["layers"])


def test_run_json_outputs_and_cycles(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["run", str(built / "out"), "--input", str(built / "x.npy"), "--output",
                 str(built / "y.npy"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    y = np.load(built / "y.npy")
    assert y.shape == (5, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)  # softmax on the host
    man = json.loads((built / "out" / "manifest.json").read_text())
    assert rep["cycles_per_image"] == man["totals"]["cycles"]
    assert rep["cycles_total"] == 5 * man["totals"]["cycles"]
    # The dequantized output is the integer reference's.
    comp = Compiled.load(built / "out")
    x = np.load(built / "x.npy")
    want = reference.to_user(reference.dequantize(
        comp.qnet, comp.qnet.graph.output,
        reference.int_forward(comp.qnet, x)[comp.qnet.graph.output]), comp.qnet.graph)
    np.testing.assert_allclose(y, want, rtol=1e-6)


def test_run_trace_names_no_divergence_and_compares_float(
        built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["run", str(built / "out"), "--input", str(built / "x.npy"), "--trace",
                 "--emulate", "all"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact in every layer" in out and "float-err" in out


def test_trace_names_the_first_diverging_layer(built: Path) -> None:
    comp = Compiled.load(built / "out")
    x = np.load(built / "x.npy")
    emu = get_backend("emu", fast=True)
    target = comp.layers[2].tiles[0].image.text.tobytes()

    class Broken:
        """The emulator, but one tile's first output is off by 3."""

        name = "broken"

        def run(self, image: Image, limits: Limits = DEFAULT_LIMITS) -> RunResult:
            result = emu.run(image, limits)
            if image.text.tobytes() == target:
                result.amem = result.amem.copy()
                result.amem[comp.layers[2].tiles[0].out_base] += 3
            return result

    broken = Broken()
    rep = runtime.run(comp, x, broken, trace=True)
    assert rep.first_int_divergence == comp.layers[2].name
    assert rep.layers[2].int_max_diff == 3
    with pytest.raises(runtime.DivergenceError, match=comp.layers[2].name):
        runtime.run(comp, x, broken)

    class BrokenMany(Broken):
        """The same fault where the checks run beside the batch (a backend with run_many)."""

        def run_many(self, images: list[Image], limits: Limits = DEFAULT_LIMITS
                     ) -> list[RunResult]:
            return [self.run(im, limits) for im in images]

    said: list[str] = []
    with pytest.raises(runtime.DivergenceError, match=f"layer {comp.layers[2].name} .*max "
                                                      r"\|diff\| 3"):
        runtime.run(comp, x, BrokenMany(), progress=said.append)
    assert [line.split(":")[0] for line in said] == [ll.name for ll in comp.layers[:2]]


def test_batched_run_equals_emulating_every_image(built: Path) -> None:
    comp = Compiled.load(built / "out")
    x = np.load(built / "x.npy")
    said: list[str] = []
    fast = runtime.run(comp, x, progress=said.append)  # checks on a thread beside the batch
    every = runtime.run(comp, x, batched=False)
    assert np.array_equal(fast.output_int, every.output_int)
    assert fast.cycles_per_image == every.cycles_per_image
    # Each layer's record and progress line, in layer order, once its check is in.
    assert [(r.name, r.cycles, r.mac_utilization) for r in fast.layers] == [
        (r.name, r.cycles, r.mac_utilization) for r in every.layers]
    assert [line.split(":")[0] for line in said] == [ll.name for ll in comp.layers]
    assert all(f": {r.cycles} cycles" in line for r, line in zip(fast.layers, said))
    # Each accelerator layer's emulator time, apart from its batch path's (host layers: none).
    for rep in (fast, every):
        assert all((r.backend_seconds > 0) == (r.cycles > 0) for r in rep.layers)
        assert rep.as_dict()["layers"][0]["backend_seconds"] == rep.layers[0].backend_seconds


def test_user_errors(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(built / "nope.onnx"), "-o", str(built / "o2")]) == 2
    np.save(built / "bad.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert main(["run", str(built / "out"), "--input", str(built / "bad.npy")]) == 2
    assert "N x 2 x 8 x 8" in capsys.readouterr().err
    small = AccelConfig(wmem_depth=8)  # one input channel of the 3x3 kernel needs 9 words
    small.save(built / "small.toml")
    assert main(["compile", str(built / "m.onnx"), "--config", str(built / "small.toml"),
                 "-o", str(built / "o3")]) == 2
    err = capsys.readouterr().err
    assert "can never fit" in err and "9 weight words, wmem_depth is 8" in err


def test_compiled_roundtrip_runs_identically(tmp_path: Path) -> None:
    m = chain_model(SPEC)
    x = np.random.default_rng(3).standard_normal((2, 2, 8, 8)).astype(np.float32)
    comp = compile_model(m, AccelConfig(), x)
    comp.write(tmp_path)
    again = Compiled.load(tmp_path)
    a, b = runtime.run(comp, x), runtime.run(again, x)
    assert np.array_equal(a.output_int, b.output_int)

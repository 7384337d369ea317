"""The one ONNX loader on models written the way Paddle2ONNX, tf2onnx and old torch write them
(tests/exporter_onnx.py): the loaded graph computes what the file does, and ``asd quantize``,
``asd eval``, ``asd compile`` and ``asd run`` give on it what they give on the clean model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from asd import modelio
from asd.onnx_load import TARGET_OPSET, default_opset, load_onnx
from asd_cli.main import main
from tests.exporter_onnx import IN_SHAPE, STYLES, clean, exporter_model

CLUTTER = {"Constant", "Identity", "Dropout", "Cast", "BatchNormalization", "Shape", "Gather",
           "Slice", "Concat", "Unsqueeze"}


def _ort(model: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("exporters")
    onnx.save(clean(), d / "clean.onnx")
    for style in STYLES:
        onnx.save(exporter_model(style), d / f"{style}.onnx")
    rng = np.random.default_rng(3)
    np.save(d / "calib.npy", rng.standard_normal((8, *IN_SHAPE)).astype(np.float32))
    np.save(d / "x.npy", rng.uniform(0, 1, (4, *IN_SHAPE)).astype(np.float32))
    return d


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("batch_one", [False, True])
def test_loaded_graph_computes_what_the_file_does(style: str, batch_one: bool) -> None:
    original = exporter_model(style)
    loaded = load_onnx(original, input_shape=(-1, None, None, None) if batch_one else None)
    x = np.random.default_rng(1).standard_normal((1 if batch_one else 5, *IN_SHAPE)
                                                 ).astype(np.float32)
    want = _ort(original, x)
    # The builder's clutter is the clean network in real arithmetic ...
    np.testing.assert_allclose(want, _ort(clean(), x), rtol=1e-5, atol=1e-5)
    # ... and the loader's folding keeps onnxruntime's result to float32 rounding.
    np.testing.assert_allclose(_ort(loaded, x), want, rtol=1e-5, atol=1e-6)
    assert default_opset(original) < TARGET_OPSET == default_opset(loaded)
    left = sorted({n.op_type for n in loaded.graph.node} & CLUTTER)
    assert left == [], f"{style}: {left} left after loading"
    assert [n.op_type for n in loaded.graph.node] == [n.op_type for n in clean().graph.node]


def test_the_source_model_is_not_modified() -> None:
    original = exporter_model("paddle")
    before = original.SerializeToString()
    load_onnx(original, input_shape=(-1, None, None, None))
    assert original.SerializeToString() == before


def test_bn_after_gemm_folds_into_it() -> None:
    loaded = load_onnx(exporter_model("torch_old"))
    gemm = [n for n in loaded.graph.node if n.op_type == "Gemm"]
    assert len(gemm) == 1 and gemm[0].output[0] == loaded.graph.output[0].name
    assert "BatchNormalization" not in {n.op_type for n in loaded.graph.node}


def _quantize_summary(path: Path, out: Path, *extra: str) -> dict[str, Any]:
    assert main(["quantize", str(path), "-o", str(out), "--quiet", *extra]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    tensors = sorted((tuple(t["shape"]), t["size"]["total_bits"], t["scale_count"],
                      round(t["sqnr_db"], 3)) for t in side["tensors"].values())
    return {"tensors": tensors,
            "biases": sorted(b["bits"] for b in side["biases"].values()),
            "others": sorted(o["bits"] for o in side["others"].values())}


@pytest.mark.parametrize("style", STYLES)
def test_quantize_gives_the_clean_models_result(files: Path, tmp_path: Path, style: str
                                                ) -> None:
    got = _quantize_summary(files / f"{style}.onnx", tmp_path / "q.npz")
    want = _quantize_summary(files / "clean.onnx", tmp_path / "clean_q.npz")
    assert len(got["tensors"]) == 3 and got == want


def test_calibrated_rounding_reads_the_loaded_graph(files: Path, tmp_path: Path) -> None:
    """gptq+bias collects layer statistics by weight name: those of the loaded graph."""
    extra = ("--rounding", "gptq+bias", "--dataset", "digits", "--calib", "32")
    got = _quantize_summary(files / "paddle.onnx", tmp_path / "q.npz", *extra)
    want = _quantize_summary(files / "clean.onnx", tmp_path / "clean_q.npz", *extra)
    assert got == want


def test_quantize_before_the_loader_found_no_weights(files: Path) -> None:
    """What ``asd quantize`` read before: the file's initializers, none of them a weight."""
    raw = onnx.load(str(files / "paddle.onnx"))
    assert len(raw.graph.initializer) == 0
    assert len(modelio.load(files / "paddle.onnx").weights) == 3


def _eval(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["eval", str(path), "--dataset", "digits", "--limit", "60", "--schemes",
                 "float,asd2,int8", "--json"]) == 0
    return list(json.loads(capsys.readouterr().out)["schemes"].values())


@pytest.mark.parametrize("style", STYLES)
def test_eval_gives_the_clean_models_result(files: Path, style: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    got, want = _eval(files / f"{style}.onnx", capsys), _eval(files / "clean.onnx", capsys)
    assert [r["scheme"] for r in got] == [r["scheme"] for r in want] and len(got) == 3
    for g, w in zip(got, want):
        for key in ("top1", "top5", "bits_per_weight", "size_bytes", "agreement"):
            assert g[key] == w[key], (g["scheme"], key)
        if w["sqnr_db"] is not None:
            assert g["sqnr_db"] == pytest.approx(w["sqnr_db"], abs=0.01)


def _compile_and_run(files: Path, name: str, out: Path,
                     capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], np.ndarray]:
    assert main(["compile", str(files / f"{name}.onnx"), "-o", str(out), "--calib",
                 str(files / "calib.npy"), "--json"]) == 0
    man = json.loads(capsys.readouterr().out)
    assert main(["run", str(out), "--input", str(files / "x.npy"), "--emulate", "all",
                 "--trace", "--json", "--output", str(out / "y.npy")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["first_int_divergence"] is None  # emulator == integer reference, every layer
    return man, np.load(out / "y.npy")


@pytest.mark.parametrize("style", STYLES)
def test_compile_and_run_give_the_clean_models_result(files: Path, tmp_path: Path, style: str,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    capsys.readouterr()
    man, y = _compile_and_run(files, style, tmp_path / style, capsys)
    man_clean, y_clean = _compile_and_run(files, "clean", tmp_path / "clean", capsys)
    assert [e["op"] for e in man["layers"]] == [e["op"] for e in man_clean["layers"]]
    assert man["totals"] == man_clean["totals"]
    # The same integer outputs: the dequantizing scale differs by float32 rounding of the
    # folded weights (~1e-7 relative) while one quantization step is ~1e-2.
    np.testing.assert_allclose(y, y_clean, rtol=1e-6, atol=1e-7)


def _unsupported_op_model(opset: int) -> Any:
    """A Paddle-style model (weights in Constant nodes) with an Elu, which neither the
    accelerator nor the host runs."""
    w = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.1, np.float32), "w")
    nodes = [helper.make_node("Constant", [], ["w"], value=w, name="Constant@0"),
             helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Elu", ["c"], ["y"], name="elu1")]
    g = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", *IN_SHAPE])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 2, 8, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [11, 13])
def test_unsupported_op_is_refused_before_quantization_and_nothing_written(
        tmp_path: Path, opset: int, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import programs.manifest

    def never(*_a: Any, **_k: Any) -> None:
        raise AssertionError("quantization ran on a model the compiler refuses")

    monkeypatch.setattr(programs.manifest, "quantize", never)
    onnx.save(_unsupported_op_model(opset), tmp_path / "hs.onnx")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["compile", str(tmp_path / "hs.onnx"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "node 'elu1' (Elu): not supported; nearest supported: LeakyRelu/PRelu" in err
    assert "opset" not in err and not out.exists()


def test_every_unsupported_node_is_counted_in_the_one_line() -> None:
    from programs.onnx_import import ImportError_, import_model

    m = _unsupported_op_model(13)
    m.graph.node.append(helper.make_node("Tanh", ["y"], ["z"], name="tanh"))
    m.graph.node.append(helper.make_node("Erf", ["z"], ["s"], name="erf"))
    m.graph.output[0].name = "s"
    with pytest.raises(ImportError_) as exc:
        import_model(m)
    msg = str(exc.value)
    assert msg.startswith("node 'elu1' (Elu): not supported") and "\n" not in msg
    assert "2 more unsupported node(s): Tanh x1, Erf x1" in msg


def test_opset_older_than_7_is_refused_by_quantize_too(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    m = clean()
    m.opset_import[0].version = 6
    onnx.save(m, tmp_path / "old.onnx")
    assert main(["quantize", str(tmp_path / "old.onnx"), "-o", str(tmp_path / "q.npz")]) == 2
    assert "opset 6; opsets 7 and later" in capsys.readouterr().err
    assert not (tmp_path / "q.npz").exists()


def test_opset_7_the_oldest_the_converter_reads_loads_and_imports() -> None:
    from programs.onnx_import import import_model

    m = exporter_model("torch_old")
    m.opset_import[0].version = 7  # every op of this model has the same form in opset 7
    onnx.checker.check_model(m)
    x = np.random.default_rng(2).standard_normal((2, *IN_SHAPE)).astype(np.float32)
    loaded = load_onnx(m)
    assert default_opset(loaded) == TARGET_OPSET
    np.testing.assert_allclose(_ort(loaded, x), _ort(m, x), rtol=1e-5, atol=1e-6)
    assert [lay.op for lay in import_model(m).layers] == [
        lay.op for lay in import_model(clean()).layers]

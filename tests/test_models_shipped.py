"""The trained models shipped in asd/data/models: load, run, op set, recorded accuracy.

Needs onnx + onnxruntime and the dataset packages, never torch.  The models are reproduced by
``zoo/train.py --all`` (see zoo/README.md); the ones trained elsewhere (``FOREIGN``) by
``zoo/mtcnn.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from asd import datasets

MODEL_DIR = Path(__file__).resolve().parent.parent / "asd" / "data" / "models"

# name -> (dataset, minimum float top-1 in percent on the test split)
SHIPPED = {
    "mnist_lenet": ("mnist5k", 98.0),
    "digits_cnn": ("digits", 96.0),
    "mnist_alexnet": ("mnist5k", 96.0),
    "mnist_vgg": ("mnist5k", 96.0),
    "mnist_resnet18": ("mnist5k", 96.0),
    "mnist_squeezenet": ("mnist5k", 95.0),
}

# trained elsewhere, exported by zoo/mtcnn.py: name -> (dataset, input size, minimum top-1)
FOREIGN = {
    "mtcnn_rnet": ("lfw_faces24", 24, 95.0),
    "mtcnn_onet": ("lfw_faces48", 48, 95.0),
}

# the ONNX ops the compiler imports (issue 6)
ALLOWED_OPS = {
    "Conv", "Gemm", "MatMul", "Relu", "LeakyRelu", "PRelu", "Clip", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Add", "Concat", "Flatten", "Reshape", "BatchNormalization",
    "Dropout", "Softmax",
}

# architectural signature: ops each seed-style model must contain
SIGNATURE = {
    "mnist_resnet18": {"Add", "GlobalAveragePool"},
    "mnist_squeezenet": {"Concat", "GlobalAveragePool"},
    "mnist_alexnet": {"Gemm", "MaxPool"},
    "mnist_vgg": {"Gemm", "MaxPool"},
}


def _record(name: str) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads((MODEL_DIR / f"{name}.json").read_text())
    return rec


def _session(name: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(MODEL_DIR / f"{name}.onnx"), opts,
                                providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def data() -> dict[str, datasets.Dataset]:
    return {name: datasets.load(name) for name in ("mnist5k", "digits")}


def test_exactly_the_expected_models_ship() -> None:
    names = sorted([*SHIPPED, *FOREIGN])
    assert sorted(p.stem for p in MODEL_DIR.glob("*.onnx")) == names
    assert sorted(p.stem for p in MODEL_DIR.glob("*.json")) == names
    total = sum(p.stat().st_size for p in MODEL_DIR.glob("*.onnx"))
    assert total < 6_000_000


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_graph_ops_io_and_record(name: str) -> None:
    path = MODEL_DIR / f"{name}.onnx"
    rec = _record(name)
    blob = path.read_bytes()
    assert len(blob) < 2_000_000
    assert rec["onnx_bytes"] == len(blob)
    assert rec["onnx_sha256"] == hashlib.sha256(blob).hexdigest()  # JSON belongs to this file
    assert rec["dataset"] == SHIPPED[name][0] and rec["name"] == name

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 13
    ops = {n.op_type for n in model.graph.node}
    assert ops <= ALLOWED_OPS, sorted(ops - ALLOWED_OPS)
    assert ops >= SIGNATURE.get(name, {"Conv", "Gemm"})
    assert sorted(ops) == rec["ops"]

    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == rec["input_shape"] and dims[0] == "N" and dims[1] == 1


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_runs_on_a_few_images_batch_independent(
    name: str, data: dict[str, datasets.Dataset]
) -> None:
    ds = data[SHIPPED[name][0]]
    sess = _session(name)
    x = ds.x_test[:5]
    (batch,) = sess.run(["logits"], {"input": x})
    assert batch.shape == (5, 10) and batch.dtype == np.float32
    assert np.isfinite(batch).all()
    singles = np.concatenate([sess.run(["logits"], {"input": x[i : i + 1]})[0] for i in range(5)])
    assert np.allclose(batch, singles, rtol=1e-4, atol=1e-4)
    # the logits depend on the image: not a constant output
    assert np.ptp(batch, axis=0).max() > 1e-3


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_float_accuracy_matches_record(name: str, data: dict[str, datasets.Dataset]) -> None:
    dataset, floor = SHIPPED[name]
    ds = data[dataset]
    rec = _record(name)
    assert rec["split"]["test"] == len(ds.y_test)
    assert rec["normalization"] == ds.normalization
    (logits,) = _session(name).run(["logits"], {"input": ds.x_test})
    top1 = 100.0 * float((logits.argmax(1) == ds.y_test).mean())
    assert abs(top1 - rec["test_top1_onnxruntime"]) <= 0.1 + 1e-9
    assert abs(rec["test_top1_torch"] - rec["test_top1_onnxruntime"]) <= 100.0 / len(ds.y_test)
    assert top1 >= floor


# --------------------------------------------------------------------------- trained elsewhere


@pytest.fixture(scope="module")
def faces() -> dict[str, datasets.Dataset]:
    return {ds: datasets.load(ds) for ds, _, _ in FOREIGN.values()}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_graph_and_record(name: str) -> None:
    dataset, size, _ = FOREIGN[name]
    path = MODEL_DIR / f"{name}.onnx"
    rec = _record(name)
    blob = path.read_bytes()
    assert len(blob) < 2_000_000
    assert rec["onnx_bytes"] == len(blob)
    assert rec["onnx_sha256"] == hashlib.sha256(blob).hexdigest()
    assert rec["name"] == name and rec["dataset"] == dataset and rec["trained_here"] is False
    src = rec["source"]
    assert (src["package"], src["version"]) == ("facenet-pytorch", "2.6.0")
    assert src["licence"].startswith("MIT")
    assert src["max_abs_prob_diff_onnx_vs_package"] <= 1e-4
    assert rec["classes"] == list(datasets.FACE_CLASSES)

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= ALLOWED_OPS and {"Conv", "PRelu", "MaxPool", "Gemm"} <= ops
    assert sorted(ops) == rec["ops"]
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == rec["input_shape"] == ["N", 3, size, size]


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_float_accuracy_matches_record(
    name: str, faces: dict[str, datasets.Dataset]
) -> None:
    dataset, _, floor = FOREIGN[name]
    ds = faces[dataset]
    rec = _record(name)
    assert rec["split"]["test"] == len(ds.y_test)
    assert rec["normalization"] == ds.normalization
    (logits,) = _session(name).run(["logits"], {"input": ds.x_test})
    assert logits.shape == (len(ds.y_test), 2) and np.isfinite(logits).all()
    top1 = 100.0 * float((logits.argmax(1) == ds.y_test).mean())
    assert abs(top1 - rec["test_top1_onnxruntime"]) <= 0.1 + 1e-9
    assert rec["test_top1_torch"] == rec["test_top1_onnxruntime"]
    assert top1 >= floor


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_compiler_float_reference_equals_onnxruntime(
    name: str, faces: dict[str, datasets.Dataset]
) -> None:
    """The compiler imports the graph (PRelu, ceil-mode pools, flatten, dense) as onnxruntime
    runs it: its float64 reference gives the same logits on the whole data set."""
    from programs import reference
    from programs.onnx_import import import_model

    ds = faces[FOREIGN[name][0]]
    x = np.concatenate([ds.x_train, ds.x_test])
    graph = import_model(onnx.load(str(MODEL_DIR / f"{name}.onnx")))
    ours = reference.to_user(reference.float_forward(graph, x)[graph.output], graph)
    (theirs,) = _session(name).run(["logits"], {"input": x})
    assert ours.shape == theirs.shape == (len(x), 2)
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-4)

"""Bad models are refused by `compile_model` with a typed one-line error naming the node or
tensor (never another exception type); a program longer than IMEM makes the planner shrink."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from contract.config import AccelConfig
from contract.errors import AsdError
from programs import reference, runtime
from programs.budget import MemoryBudgetError
from programs.lower import LowerError
from programs.manifest import compile_model
from programs.onnx_import import ImportError_
from programs.quantize import QuantizeError

MODELS = Path(__file__).parent.parent / "asd" / "data" / "models"
CALIB = np.random.default_rng(0).random((2, 2, 6, 6)).astype(np.float32)


def _model(nodes: list[Any], inits: dict[str, np.ndarray], out: str,
           shape: tuple[int, int, int] = (2, 6, 6), opset: int = 13) -> Any:
    """A model of ``nodes`` on input ``x`` (1 x ``shape``), not run through onnx's checker,
    as a careless exporter or a hostile user might write it."""
    g = helper.make_graph(
        nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv(weight: np.ndarray | None = None, bias: np.ndarray | None = None,
          **attrs: Any) -> Any:
    w = np.full((3, 2, 3, 3), 0.1) if weight is None else weight
    b = np.zeros(3) if bias is None else bias
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv1", **attrs)
    return _model([node], {"W": w, "B": b}, "y")


def _refused(model: Any, kind: type[AsdError], *needles: str) -> str:
    with pytest.raises(AsdError) as exc:
        compile_model(model, AccelConfig(), CALIB)
    msg = str(exc.value)
    assert isinstance(exc.value, kind), f"{type(exc.value).__name__}: {msg}"
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_a_good_model_of_the_builder_compiles() -> None:
    """The builder's models are refused for their flaw alone."""
    comp = compile_model(_conv(strides=[1, 1], group=1, kernel_shape=[3, 3]), AccelConfig(),
                         CALIB)
    assert comp.totals()["tiles"] >= 1


@pytest.mark.parametrize("tensor,arr", [
    ("W", np.where(np.arange(54).reshape(3, 2, 3, 3) == 7, np.nan, 0.1)),
    ("W", np.where(np.arange(54).reshape(3, 2, 3, 3) == 0, -np.inf, 0.1)),
    ("B", np.array([0.0, np.inf, 0.0])),
])
def test_nan_or_inf_parameters_are_refused_by_name(tensor: str, arr: np.ndarray) -> None:
    model = _conv(weight=arr) if tensor == "W" else _conv(bias=arr)
    _refused(model, ImportError_, "conv1", f"'{tensor}'", "expected finite", "found 1 NaN or Inf")


def test_a_batchnorm_with_negative_variance_is_refused() -> None:
    conv = helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv1")
    bn = helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn1",
                          epsilon=0.0)
    model = _model([conv, bn], {"W": np.full((3, 2, 3, 3), 0.1), "B": np.zeros(3),
                                "g": np.ones(3), "b": np.zeros(3), "m": np.zeros(3),
                                "v": np.array([1.0, -1.0, 1.0])}, "y")
    _refused(model, ImportError_, "bn1", "var 'v' + epsilon: expected > 0, found -1")


def test_parameters_that_overflow_when_fused_are_refused_by_layer() -> None:
    node = helper.make_node("Gemm", ["f", "W"], ["y"], name="fc1", alpha=1e300)
    flat = helper.make_node("Flatten", ["x"], ["f"], name="flat1")
    model = _model([flat, node], {"W": np.full((72, 3), 1e30)}, "y")
    _refused(model, ImportError_, "layer fc1", "weight", "expected finite")


def test_nan_calibration_data_is_refused() -> None:
    calib = CALIB.copy()
    calib[0, 0, 0, 0] = np.nan
    with pytest.raises(QuantizeError, match="calibration data.*NaN"):
        compile_model(_conv(), AccelConfig(), calib)


@pytest.mark.parametrize("attrs,name,found", [
    ({"strides": [0, 1]}, "strides", "[0, 1]"),
    ({"strides": [1.5, 1.0]}, "strides", "[1.5, 1.0]"),
    ({"group": 0}, "group", "0"),
    ({"kernel_shape": [5, 5]}, "kernel_shape", "[5, 5]"),
    ({"pads": [-1, 0, 0, 0]}, "pads", "[-1, 0, 0, 0]"),
    ({"dilations": [0, 0]}, "dilations", "[0, 0]"),
])
def test_bad_conv_attributes_name_node_attribute_and_values(attrs: dict[str, Any], name: str,
                                                            found: str) -> None:
    _refused(_conv(**attrs), ImportError_, "conv1", f"attribute {name}", "expected",
             f"found {found}")


@pytest.mark.parametrize("attrs,name", [
    ({}, "kernel_shape"),
    ({"kernel_shape": [2, 2], "strides": [2, 0]}, "strides"),
    ({"kernel_shape": [0, 2]}, "kernel_shape"),
])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_bad_pool_attributes_name_node_and_attribute(op: str, attrs: dict[str, Any],
                                                     name: str) -> None:
    node = helper.make_node(op, ["x"], ["y"], name="pool1", **attrs)
    _refused(_model([node], {}, "y"), ImportError_, "pool1", f"({op})", f"attribute {name}",
             "expected")


def test_an_opset_newer_than_onnx_knows_is_refused() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu1")
    _refused(_model([node], {}, "y", opset=999), ImportError_, "opset 999", "expected 13..")


def test_duplicate_node_outputs_are_refused() -> None:
    first = helper.make_node("Relu", ["x"], ["y"], name="relu1")
    second = helper.make_node("MaxPool", ["x"], ["y"], name="pool1", kernel_shape=[2, 2])
    _refused(_model([first, second], {}, "y"), ImportError_, "pool1", "output 'y'",
             "duplicate")


def test_an_input_beyond_the_memory_budget_is_refused_before_allocating() -> None:
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv1")
    model = _model([node], {"W": np.full((8, 1, 3, 3), 0.1)}, "y", shape=(1, 4000, 4000))
    tracemalloc.start()
    try:
        with pytest.raises(MemoryBudgetError) as exc:
            compile_model(model, AccelConfig())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(exc.value)
    assert "input 'x' of 1x4000x4000" in msg and "GiB" in msg and "'y' 8x3998x3998" in msg
    assert isinstance(exc.value, AsdError) and isinstance(exc.value, ValueError)
    assert peak < 64 << 20  # refused from the declared shapes, not after allocating them


def test_a_budget_below_a_shipped_model_need_is_refused() -> None:
    with pytest.raises(MemoryBudgetError, match="expected at most"):
        compile_model(MODELS / "digits_cnn.onnx", AccelConfig(), memory_budget=1000)


def test_a_program_longer_than_imem_shrinks_the_tile_and_stays_bit_exact() -> None:
    """At imem_depth 32 the first layer's full block group needs 34 words: the planner must
    split it (the assembler used to refuse it first with AsmError)."""
    x = np.random.default_rng(1).random((2, 1, 8, 8)).astype(np.float32)
    small = AccelConfig(imem_depth=32)
    comp = compile_model(MODELS / "digits_cnn.onnx", small, x)
    roomy = compile_model(MODELS / "digits_cnn.onnx", AccelConfig(), x)
    assert max(len(t.image.text) for ll in comp.layers for t in ll.tiles) <= 32
    assert comp.totals()["tiles"] > roomy.totals()["tiles"]
    rep = runtime.run(comp, x, emulate="all", trace=True)
    assert rep.first_int_divergence is None
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name


def test_a_program_that_never_fits_imem_is_a_lower_error() -> None:
    with pytest.raises(LowerError, match="exceeds imem_depth 16"):
        compile_model(MODELS / "digits_cnn.onnx", AccelConfig(imem_depth=16))


def test_an_initializer_declaring_a_huge_size_is_refused_before_reading() -> None:
    huge = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20])
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv1")
    model = _model([node], {}, "y")
    model.graph.initializer.append(huge)
    _refused(model, MemoryBudgetError, "initializer 'W' of 1048576x1048576", "GiB")


def test_initializer_data_that_does_not_match_its_shape_is_refused() -> None:
    bad = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 2, 3, 3],
                      float_data=[0.1] * 5)
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv1")
    model = _model([node], {}, "y")
    model.graph.initializer.append(bad)
    _refused(model, ImportError_, "initializer 'W': cannot read its data")


@pytest.mark.parametrize("shape", [(0, 6, 6), (2, 0, 6)])
def test_an_empty_input_is_refused(shape: tuple[int, int, int]) -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu1")
    _refused(_model([node], {}, "y", shape=shape), ImportError_, "input 'x'",
             "expected C, H, W >= 1")

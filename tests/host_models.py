"""A tiny ONNX network of every host op, for the test modules that compile it (a test module
never imports another)."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def tiny_host_model() -> Any:
    """Conv -> HardSwish (opset 14 op) -> Mul(x, HardSigmoid(x)) (a hard-swish written out,
    alpha 0.2) -> SE (GAP, conv, HardSigmoid, Mul) -> Div by a
    constant -> Add a constant -> Resize by 1.5 x 0.75 (non-integer factors) -> Sigmoid."""
    rng = np.random.default_rng(3)

    def init(name: str, a: np.ndarray) -> Any:
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    inits = [init("w1", rng.standard_normal((4, 3, 3, 3)) * 0.5),
             init("w2", rng.standard_normal((4, 4, 1, 1)) * 0.5), init("b2", np.zeros(4)),
             init("k", np.array([2.0, 3.0, 4.0, 5.0]).reshape(1, 4, 1, 1)),
             init("c", np.array([0.5])), init("sc", np.array([1, 1, 1.5, 0.75]))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c1"], ["h0"], name="hswish"),
             helper.make_node("HardSigmoid", ["h0"], ["hg"], name="hsig", alpha=0.2),
             helper.make_node("Mul", ["hg", "h0"], ["h"], name="hswish2"),
             helper.make_node("GlobalAveragePool", ["h"], ["g"], name="gap"),
             helper.make_node("Conv", ["g", "w2", "b2"], ["s"], name="se_conv"),
             helper.make_node("HardSigmoid", ["s"], ["hs"], name="gate", alpha=1 / 6),
             helper.make_node("Mul", ["hs", "h"], ["m"], name="se_mul"),
             helper.make_node("Div", ["m", "k"], ["dv"], name="div"),
             helper.make_node("Add", ["dv", "c"], ["ad"], name="add_c"),
             helper.make_node("Resize", ["ad", "", "sc"], ["r"], name="resize",
                              mode="nearest"),
             helper.make_node("Sigmoid", ["r"], ["y"], name="sig")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 3, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 4, 9, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])

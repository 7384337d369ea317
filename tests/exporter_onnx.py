"""Small ONNX models written the way other exporters write them, built with ``onnx.helper``.

Every style computes the same function as :func:`clean` (one network, one set of weights):

* ``clean``: opset 13, weights as initializers, BatchNormalization already folded, the
  classifier's input flattened by ``Reshape(x, [0, -1])`` with a constant target.
* ``paddle`` (Paddle2ONNX): opset 11, every weight in a ``Constant`` node, the convolution
  without bias followed by BatchNormalization, the classifier's Reshape target computed by
  ``Shape -> Slice -> Cast -> Concat``, an ``Identity`` producing the graph output.
* ``torch_old`` (torch.onnx before 1.x, IR 3): opset 9, initializers listed as graph inputs,
  ``x.view(x.size(0), -1)`` as ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``,
  Dropout, BatchNormalization after a conv and after the Gemm.
* ``tf2onnx``: opset 11, weights read through ``Identity`` nodes, float-to-float ``Cast`` on
  feature maps, the bias as a separate constant ``Add``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STYLES = ("paddle", "torch_old", "tf2onnx")
IN_SHAPE = (1, 8, 8)  # the digits dataset's images
CLASSES = 10


class _Builder:
    def __init__(self, style: str) -> None:
        self.style = style
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def tensor(self, arr: Any, dtype: Any = np.float32) -> str:
        """A constant the way the style stores it."""
        self.n += 1
        name = f"p{self.n}"
        t = numpy_helper.from_array(np.asarray(arr, dtype), name)
        if self.style == "paddle":
            self.nodes.append(helper.make_node("Constant", [], [name], value=t,
                                               name=f"Constant@{self.n}"))
        elif self.style == "tf2onnx":
            self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype), name + "_raw"))
            self.nodes.append(helper.make_node("Identity", [name + "_raw"], [name],
                                               name=f"{name}/read"))
        else:
            self.inits.append(t)
        return name

    def node(self, op: str, ins: list[str], **attrs: Any) -> str:
        self.n += 1
        out = f"{op.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op, ins, [out], name=f"{op}_{self.n}", **attrs))
        return out


def _params(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"w1": rng.standard_normal((4, 1, 3, 3)) * 0.5, "b1": rng.standard_normal(4) * 0.1,
            "w2": rng.standard_normal((6, 4, 3, 3)) * 0.3, "b2": rng.standard_normal(6) * 0.1,
            "wf": rng.standard_normal((CLASSES, 6 * 4 * 4)) * 0.1,
            "bf": rng.standard_normal(CLASSES) * 0.1,
            "gamma": rng.uniform(0.5, 2.0, 4), "mean": rng.standard_normal(4) * 0.2,
            "var": rng.uniform(0.5, 2.0, 4), "gamma_f": rng.uniform(0.5, 2.0, CLASSES),
            "mean_f": rng.standard_normal(CLASSES) * 0.2, "var_f": rng.uniform(0.5, 2.0, CLASSES)}


EPS = 1e-5


def _conv_bn(b: _Builder, x: str, w: Any, bias: Any, gamma: Any, mean: Any, var: Any) -> str:
    """``Conv(x, w) + bias`` written as ``BN(Conv'(x))`` with the same value in real
    arithmetic: BN(y) = k (y - mean) + beta, k = gamma / sqrt(var + eps)."""
    k = gamma / np.sqrt(var + EPS)
    conv = b.node("Conv", [x, b.tensor(w / k[:, None, None, None])], kernel_shape=[3, 3],
                  pads=[1, 1, 1, 1])
    return b.node("BatchNormalization", [conv, b.tensor(gamma), b.tensor(bias + k * mean),
                                         b.tensor(mean), b.tensor(var)], epsilon=EPS)


def _flatten_by_shape(b: _Builder, x: str, opset: int) -> str:
    """The classifier's ``Reshape(x, [N, -1])`` with N computed from ``Shape(x)``."""
    shape = b.node("Shape", [x])
    if b.style == "paddle":
        batch = b.node("Slice", [shape, b.tensor([0], np.int64), b.tensor([1], np.int64)])
        batch = b.node("Cast", [batch], to=TensorProto.INT64)
    else:
        idx = b.node("Gather", [shape, b.tensor(np.array(0), np.int64)], axis=0)
        batch = b.node("Unsqueeze", [idx], axes=[0])  # axes as attribute: opset < 13
    target = b.node("Concat", [batch, b.tensor([-1], np.int64)], axis=0)
    return b.node("Reshape", [x, target])


def exporter_model(style: str, seed: int = 0) -> Any:
    """The network of :func:`clean` with ``style``'s clutter (see the module docstring)."""
    p = _params(seed)
    b = _Builder(style)
    opset = 9 if style == "torch_old" else 11
    x = "x"
    if style == "tf2onnx":
        x = b.node("Cast", [x], to=TensorProto.FLOAT)  # tf2onnx's dtype bookkeeping
        c1 = b.node("Conv", [x, b.tensor(p["w1"])], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        h = b.node("Add", [c1, b.tensor(p["b1"].reshape(1, 4, 1, 1))])
    else:
        h = _conv_bn(b, x, p["w1"], p["b1"], p["gamma"], p["mean"], p["var"])
    h = b.node("Relu", [h])
    h = b.node("Identity", [h]) if style != "torch_old" else b.node("Dropout", [h], ratio=0.5)
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.node("Conv", [h, b.tensor(p["w2"]), b.tensor(p["b2"])], kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])
    h = b.node("Relu", [h])
    if style == "tf2onnx":
        h = b.node("Cast", [h], to=TensorProto.FLOAT)
    h = _flatten_by_shape(b, h, opset)
    if style == "torch_old":
        kf = p["gamma_f"] / np.sqrt(p["var_f"] + EPS)
        g = b.node("Gemm", [h, b.tensor(p["wf"] / kf[:, None]), b.tensor(np.zeros(CLASSES))],
                   transB=1)
        y = b.node("BatchNormalization", [g, b.tensor(p["gamma_f"]),
                                          b.tensor(p["bf"] + kf * p["mean_f"]),
                                          b.tensor(p["mean_f"]), b.tensor(p["var_f"])],
                   epsilon=EPS)
    else:
        y = b.node("Gemm", [h, b.tensor(p["wf"]), b.tensor(p["bf"])], transB=1)
    if style == "paddle":
        y = b.node("Identity", [y])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *IN_SHAPE])]
    if style == "torch_old":  # IR 3: every initializer is also a graph input
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in b.inits]
    g = helper.make_graph(b.nodes, style, inputs,
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", CLASSES])],
                          b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          ir_version=3 if style == "torch_old" else 6)
    onnx.checker.check_model(m)
    return m


def clean(seed: int = 0) -> Any:
    """The reference network: what a recent torch export of it looks like."""
    p = _params(seed)
    b = _Builder("clean")
    h = b.node("Conv", ["x", b.tensor(p["w1"]), b.tensor(p["b1"])], kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])
    h = b.node("Relu", [h])
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.node("Conv", [h, b.tensor(p["w2"]), b.tensor(p["b2"])], kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])
    h = b.node("Relu", [h])
    h = b.node("Reshape", [h, b.tensor([0, -1], np.int64)])
    y = b.node("Gemm", [h, b.tensor(p["wf"]), b.tensor(p["bf"])], transB=1)
    g = helper.make_graph(b.nodes, "clean",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         ["N", *IN_SHAPE])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", CLASSES])],
                          b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    return m

"""Small ONNX models for the compiler tests, built with onnx.helper (no torch).

:func:`chain_model` turns a layer-chain spec (see the ``layers`` section of
``tests/strategies.py``) into a model: a list of steps applied in order to one running tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.config import AccelConfig


def pool_out(n: int, k: int, s: int, a: int, b: int, ceil: int) -> int:
    """ONNX pooling output size (a ceil-mode window may not start in the end padding)."""
    o = (-(-(n + a + b - k) // s) if ceil else (n + a + b - k) // s) + 1
    return o - 1 if ceil and (o - 1) * s >= n + a else o


class Net:
    def __init__(self, c: int, h: int, w: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.shape: dict[str, tuple[int, int, int]] = {"x": (c, h, w)}
        self.n = 0

    def name(self, k: str) -> str:
        self.n += 1
        return f"{k}{self.n}"

    def const(self, arr: Any) -> str:
        n = self.name("k")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), n))
        return n

    def node(self, op: str, ins: list[str], shape: tuple[int, int, int], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], name=out + "_node", **attrs))
        self.shape[out] = shape
        return out

    def conv(self, x: str, co: int, k: int, s: int, pads: list[int], groups: int = 1,
             bias: bool = True) -> str:
        c, h, w = self.shape[x]
        fan_in = c // groups * k * k
        wt = self.rng.standard_normal((co, c // groups, k, k)) * np.sqrt(2.0 / fan_in)
        ins = [x, self.const(wt)] + ([self.const(self.rng.standard_normal(co) * 0.2)]
                                     if bias else [])
        oh = (h + pads[0] + pads[2] - k) // s + 1
        ow = (w + pads[1] + pads[3] - k) // s + 1
        return self.node("Conv", ins, (co, oh, ow), kernel_shape=[k, k], strides=[s, s],
                         pads=pads, group=groups)

    def act(self, x: str, kind: str) -> str:
        c = self.shape[x][0]
        if kind == "relu":
            return self.node("Relu", [x], self.shape[x])
        if kind == "clip":
            return self.node("Clip", [x, self.const(np.array(0.0)), self.const(np.array(1.0))],
                             self.shape[x])
        if kind == "leaky":
            return self.node("LeakyRelu", [x], self.shape[x], alpha=0.125)
        if kind == "prelu":
            return self.node("PRelu", [x, self.const(self.rng.uniform(0.05, 0.5, (c, 1, 1)))],
                             self.shape[x])
        return x

    def model(self, out: str, flat: bool = False) -> Any:
        c, h, w = self.shape["x"]
        oshape: list[Any] = ["N", self.shape[out][0]] if flat else ["N", *self.shape[out]]
        g = helper.make_graph(self.nodes, "test",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["N", c, h, w])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, oshape)],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        onnx.checker.check_model(m)
        return m


def chain_model(spec: dict[str, Any]) -> Any:
    """A model from ``{"c", "h", "w", "seed", "steps": [(op, params), ...]}``."""
    net = Net(spec["c"], spec["h"], spec["w"], spec["seed"])
    x = "x"
    flat = False
    for op, p in spec["steps"]:
        c, h, w = net.shape[x]
        if op == "conv":
            groups = {"dense": 1, "depthwise": c, "grouped": 2 if c % 2 == 0 else 1}[p["groups"]]
            co = c if p["groups"] == "depthwise" else p["co"] * (2 if groups == 2 else 1)
            x = net.conv(x, co, p["k"], p["s"], p["pads"], groups, p["bias"])
            if p["bn"]:
                x = net.node("BatchNormalization",
                             [x] + [net.const(a) for a in (
                                 net.rng.uniform(0.5, 1.5, co), net.rng.standard_normal(co) * .1,
                                 net.rng.standard_normal(co) * .1, net.rng.uniform(.5, 1.5, co))],
                             net.shape[x])
            x = net.act(x, p["act"])
        elif op in ("maxpool", "avgpool"):
            k, s = p["k"], p["s"]
            pads = p["pads"] if op == "maxpool" else [0, 0, 0, 0]
            ceil = int(p["ceil"]) if op == "maxpool" else 0
            attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [s, s], "pads": pads}
            if ceil:
                attrs["ceil_mode"] = 1
            x = net.node("MaxPool" if op == "maxpool" else "AveragePool", [x],
                         (c, pool_out(h, k, s, pads[0], pads[2], ceil),
                          pool_out(w, k, s, pads[1], pads[3], ceil)), **attrs)
        elif op == "gap":
            x = net.node("GlobalAveragePool", [x], (c, 1, 1))
        elif op == "residual":
            y = net.act(net.conv(x, c, 3, 1, [1, 1, 1, 1]), "relu")
            y = net.conv(y, c, 3, 1, [1, 1, 1, 1])
            x = net.act(net.node("Add", [y, x], (c, h, w)), p["act"])
        elif op == "concat":
            a = net.act(net.conv(x, p["c1"], 1, 1, [0, 0, 0, 0]), "relu")
            b = net.act(net.conv(x, p["c2"], 3, 1, [1, 1, 1, 1]), "relu")
            x = net.node("Concat", [a, b], (p["c1"] + p["c2"], h, w), axis=1)
        elif op == "act":
            x = net.act(x, p["act"])
        elif op == "gemm":
            f = net.node("Flatten", [x], (c * h * w, 1, 1), axis=1)
            wt = net.rng.standard_normal((p["co"], c * h * w)) / np.sqrt(c * h * w)
            x = net.node("Gemm", [f, net.const(wt), net.const(net.rng.standard_normal(p["co"]))],
                         (p["co"], 1, 1), transB=1)
            flat = True
        elif op == "matmul":
            f = net.node("Flatten", [x], (c * h * w, 1, 1), axis=1)
            wt = net.rng.standard_normal((c * h * w, p["co"])) / np.sqrt(c * h * w)
            m = net.node("MatMul", [f, net.const(wt)], (p["co"], 1, 1))
            x = net.node("Add", [m, net.const(net.rng.standard_normal(p["co"]))], (p["co"], 1, 1))
            flat = True
        elif op == "softmax":
            x = net.node("Softmax", [x], net.shape[x], axis=1)
        else:
            raise ValueError(op)
    return net.model(x, flat)


# A chain whose reductions split on SPLIT_CONFIG (tests/test_compiler_split.py, test_levels.py):
# 3x3x16 = 144 weight words a block against 64 in WMEM: chunks of up to 7 input channels; a row
# of 6 outputs with partial sums in and out (2 x 6 x 4 lanes x 4 pieces) exceeds 128 AMEM
# elements: column groups.  The Gemm head (6x6x6 = 216 words) is split too.
SPLIT_SPEC = {"c": 16, "h": 12, "w": 12, "seed": 3, "steps": [
    ("conv", {"co": 6, "k": 3, "s": 2, "pads": [1, 1, 1, 1], "bias": True, "bn": False,
              "groups": "dense", "act": "leaky"}),
    ("gemm", {"co": 5})]}
SPLIT_CONFIG = AccelConfig(lanes=4, wmem_depth=64, amem_depth=128, bmem_depth=16, imem_depth=256)

"""The compiler's graph IR: a topologically ordered list of *layers* over named tensors.

A layer is what the accelerator computes in one pass (or what the host does between passes),
after the importer has fused ONNX nodes: BatchNormalization folded into the Conv weights, the
activation (Relu, Clip, LeakyRelu, PRelu) into the layer that produces its input, Gemm/MatMul
turned into a convolution whose kernel covers the whole input, Dropout and Identity removed.

Every tensor is one image's feature map ``(C, H, W)``; a flat vector of ``K`` features is
``(K, 1, 1)``.  Batch is not part of the IR.  Layer ops:

=========  ==================================================================================
conv       ``weight (Co, Ci/groups, KH, KW)``, ``bias (Co,)``, stride, pads, groups, act
maxpool    kernel, stride, pads (``ceil_mode`` folded into extra bottom/right padding)
avgpool    kernel, stride, pads (only where every window averages ``KH*KW`` elements), act
add        two inputs of one shape, act
concat     inputs joined along channels (host: producers share one output scale)
flatten    host layout change ``(C, H, W) -> (C*H*W, 1, 1)`` in ONNX's NCHW order
softmax    host, over the channel axis of the final ``(K, 1, 1)`` output
mul        host, feature map times feature map (same shape, or ``(C, 1, 1)`` per channel)
sigmoid    host, by a table of the int8 input
hardswish  host, by a table of the int8 input (``params``: alpha, beta of its hard-sigmoid)
resize     host, nearest: ``params`` holds the source ``rows`` and ``cols`` of every output
           (-1: a zero, as a transposed convolution's stride inserts)
=========  ==================================================================================

``act`` is ``none``, ``relu``, ``clip`` (``act_hi`` is the upper bound; the lower is 0),
``leaky`` (``slope`` holds one value per channel) or ``prelu`` (likewise).  The integer
semantics of the host ops mul, sigmoid, hardswish and resize are written once in
:mod:`programs.hostops`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Shape = tuple[int, int, int]

ACTS = ("none", "relu", "clip", "leaky", "prelu")
HOST_OPS = ("concat", "flatten", "softmax", "mul", "sigmoid", "hardswish", "resize")
DEVICE_OPS = ("conv", "maxpool", "avgpool", "add")


@dataclass
class Layer:
    name: str
    op: str
    inputs: list[str]
    output: str
    onnx_nodes: list[str] = field(default_factory=list)
    weight: NDArray[np.float64] | None = None
    bias: NDArray[np.float64] | None = None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    groups: int = 1
    act: str = "none"
    act_hi: float = math.inf
    slope: NDArray[np.float64] | None = None
    params: dict[str, Any] = field(default_factory=dict)  # JSON-ready op attributes (resize)

    @property
    def depthwise(self) -> bool:
        """One input and one output channel per group: per-lane activations (VMAC)."""
        if self.op != "conv" or self.weight is None:
            return False
        return self.weight.shape[1] == 1 and self.weight.shape[0] == self.groups

    def out_shape(self, shapes: dict[str, Shape]) -> Shape:
        ins = [shapes[t] for t in self.inputs]
        if self.op in ("conv", "maxpool", "avgpool"):
            c, h, w = ins[0]
            kh, kw = self.kernel
            t, l, b, r = self.pads
            oh = (h + t + b - kh) // self.stride[0] + 1
            ow = (w + l + r - kw) // self.stride[1] + 1
            if oh < 1 or ow < 1:
                raise ValueError(f"layer {self.name}: kernel {self.kernel} larger than its "
                                 f"padded input {(h + t + b, w + l + r)}")
            co = self.weight.shape[0] if self.op == "conv" and self.weight is not None else c
            return (co, oh, ow)
        if self.op == "add":
            if ins[0] != ins[1]:
                raise ValueError(f"layer {self.name}: Add of shapes {ins[0]} and {ins[1]} "
                                 "(broadcasting between feature maps is not supported)")
            return ins[0]
        if self.op == "concat":
            if len({s[1:] for s in ins}) != 1:
                raise ValueError(f"layer {self.name}: Concat inputs differ in H, W: {ins}")
            return (sum(s[0] for s in ins), ins[0][1], ins[0][2])
        if self.op == "flatten":
            return (int(np.prod(ins[0])), 1, 1)
        if self.op in ("softmax", "sigmoid", "hardswish"):
            return ins[0]
        if self.op == "mul":
            if ins[1] not in (ins[0], (ins[0][0], 1, 1)):
                raise ValueError(f"layer {self.name}: Mul of shapes {ins[0]} and {ins[1]} "
                                 "(the second must match the first or be one value a channel)")
            return ins[0]
        if self.op == "resize":
            return (ins[0][0], len(self.params["rows"]), len(self.params["cols"]))
        raise ValueError(f"layer {self.name}: unknown op {self.op}")

    def attrs(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-ready."""
        return {"name": self.name, "op": self.op, "inputs": list(self.inputs),
                "output": self.output, "onnx_nodes": list(self.onnx_nodes),
                "kernel": list(self.kernel), "stride": list(self.stride),
                "pads": list(self.pads), "groups": self.groups, "act": self.act,
                "act_hi": None if math.isinf(self.act_hi) else self.act_hi,
                "params": dict(self.params)}

    @classmethod
    def from_attrs(cls, d: dict[str, Any], arrays: dict[str, NDArray]) -> Layer:
        lay = cls(d["name"], d["op"], list(d["inputs"]), d["output"], list(d["onnx_nodes"]),
                  kernel=(int(d["kernel"][0]), int(d["kernel"][1])),
                  stride=(int(d["stride"][0]), int(d["stride"][1])),
                  pads=tuple(int(p) for p in d["pads"]),  # type: ignore[arg-type]
                  groups=int(d["groups"]), act=d["act"],
                  act_hi=math.inf if d["act_hi"] is None else float(d["act_hi"]),
                params=dict(d.get("params", {})))
        lay.weight = arrays.get("weight")
        lay.bias = arrays.get("bias")
        lay.slope = arrays.get("slope")
        return lay


@dataclass
class Graph:
    """Layers in execution order, from ``input`` (shape ``input_shape``) to ``output``.

    ``output_dims`` is the rank of the ONNX output (2 for logits ``N x K``, 4 for a feature map)
    so results can be handed back in the shape the model promised.
    """

    input: str
    input_shape: Shape
    output: str
    layers: list[Layer]
    output_dims: int = 2
    shapes: dict[str, Shape] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.infer_shapes()

    def infer_shapes(self) -> None:
        shapes: dict[str, Shape] = {self.input: self.input_shape}
        for lay in self.layers:
            for t in lay.inputs:
                if t not in shapes:
                    raise ValueError(f"layer {lay.name} reads tensor '{t}' before it is made")
            shapes[lay.output] = lay.out_shape(shapes)
        if self.output not in shapes:
            raise ValueError(f"graph output '{self.output}' is never produced")
        self.shapes = shapes

    def producer(self, tensor: str) -> Layer | None:
        for lay in self.layers:
            if lay.output == tensor:
                return lay
        return None

    def consumers(self, tensor: str) -> list[Layer]:
        return [lay for lay in self.layers if tensor in lay.inputs]

    def layer(self, name: str) -> Layer:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(f"no layer named '{name}'")

    def summary(self) -> str:
        lines = [f"input {self.input} {self.input_shape}"]
        for lay in self.layers:
            extra = ""
            if lay.op in ("conv", "maxpool", "avgpool"):
                extra = f" k={lay.kernel} s={lay.stride} p={lay.pads}"
                if lay.groups > 1:
                    extra += f" g={lay.groups}"
            if lay.act != "none":
                extra += f" +{lay.act}"
            lines.append(f"{lay.name:<24} {lay.op:<8} {self.shapes[lay.output]}{extra}")
        return "\n".join(lines)

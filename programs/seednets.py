"""The seed papers' networks - AlexNet, VGG-16, ResNet-18, SqueezeNet 1.0 and 1.1 - the edge
networks MobileNetV2 and MobileNetV3-Small, and a small FPN-style detector, defined directly
as ONNX graphs (onnx.helper, no torch) with random weights.

``width`` scales every channel count (1.0 is the published network; tests use a fraction) and
``size`` is the input height and width (224 for ImageNet; tests use less).  The layer
structure follows torchvision's definitions; AlexNet's adaptive average pool is left out (it
is the identity at 224x224, and a fully connected layer takes whatever map remains).  Weights
are He-normal and BatchNormalization statistics random, so activations stay in a sane range
through all the layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

NETS = ("alexnet", "vgg16", "resnet18", "squeezenet1_0", "squeezenet1_1")
# Depthwise convolutions, hard-swish and squeeze-excitation (activation times activation: the
# product runs on the host, programs.hostops).
MOBILENETS = ("mobilenet_v2", "mobilenet_v3_small")
# A detector whose output is a feature map of per-cell sigmoid scores: FPN-style top-down path
# (nearest 2x Resize on the host, a 2x ConvTranspose, Add and Concat), Sigmoid head on the host.
DETECTORS = ("tiny_fpn_detector",)
OPSET = 13


class _Builder:
    def __init__(self, channels: int, size: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.shape = {"input": (channels, size, size)}
        self.n = 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def _init(self, name: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def _node(self, op: str, ins: list[str], shape: tuple[int, int, int], **attrs: Any) -> str:
        from onnx import helper

        name = self._name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [name], name=name, **attrs))
        self.shape[name] = shape
        return name

    def conv(self, x: str, co: int, k: int, s: int = 1, p: int = 0, bias: bool = True,
             groups: int = 1) -> str:
        c, h, w = self.shape[x]
        ci = c // groups
        wt = self.rng.standard_normal((co, ci, k, k)) * np.sqrt(2.0 / (ci * k * k))
        ins = [x, self._init(self._name("W"), wt)]
        if bias:
            ins.append(self._init(self._name("B"), self.rng.standard_normal(co) * 0.05))
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return self._node("Conv", ins, (co, oh, ow), kernel_shape=[k, k], strides=[s, s],
                          pads=[p, p, p, p], group=groups)

    def bn(self, x: str) -> str:
        c = self.shape[x][0]
        r = self.rng
        ins = [x] + [self._init(self._name(n), a) for n, a in (
            ("g", r.uniform(0.5, 1.5, c)), ("b", r.standard_normal(c) * 0.1),
            ("m", r.standard_normal(c) * 0.1), ("v", r.uniform(0.5, 1.5, c)))]
        return self._node("BatchNormalization", ins, self.shape[x], epsilon=1e-5)

    def relu(self, x: str) -> str:
        return self._node("Relu", [x], self.shape[x])

    def relu6(self, x: str) -> str:
        lo = self._init(self._name("lo"), np.array(0.0))
        hi = self._init(self._name("hi"), np.array(6.0))
        return self._node("Clip", [x, lo, hi], self.shape[x])

    def hardsigmoid(self, x: str) -> str:
        # torch's relu6(x + 3) / 6
        return self._node("HardSigmoid", [x], self.shape[x], alpha=1.0 / 6, beta=0.5)

    def mul(self, a: str, b: str) -> str:
        return self._node("Mul", [a, b], self.shape[a])

    def hardswish(self, x: str) -> str:
        return self.mul(x, self.hardsigmoid(x))

    def maxpool(self, x: str, k: int, s: int, p: int = 0, ceil: bool = False) -> str:
        c, h, w = self.shape[x]

        def out(n: int) -> int:
            o = (-(-(n + 2 * p - k) // s) if ceil else (n + 2 * p - k) // s) + 1
            return o - 1 if ceil and (o - 1) * s >= n + p else o

        return self._node("MaxPool", [x], (c, out(h), out(w)), kernel_shape=[k, k],
                          strides=[s, s], pads=[p, p, p, p], ceil_mode=int(ceil))

    def gap(self, x: str) -> str:
        return self._node("GlobalAveragePool", [x], (self.shape[x][0], 1, 1))

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.shape[a])

    def concat(self, xs: list[str]) -> str:
        c = sum(self.shape[x][0] for x in xs)
        return self._node("Concat", xs, (c, *self.shape[xs[0]][1:]), axis=1)

    def resize2x(self, x: str) -> str:
        c, h, w = self.shape[x]
        scales = self._init(self._name("scales"), np.array([1.0, 1.0, 2.0, 2.0]))
        return self._node("Resize", [x, "", scales], (c, 2 * h, 2 * w), mode="nearest")

    def conv_transpose2x(self, x: str, co: int) -> str:
        """A learned 2x upsampling: kernel 4, stride 2, padding 1."""
        c, h, w = self.shape[x]
        wt = self.rng.standard_normal((c, co, 4, 4)) * np.sqrt(2.0 / (c * 4))
        return self._node("ConvTranspose", [x, self._init(self._name("W"), wt)],
                          (co, 2 * h, 2 * w), kernel_shape=[4, 4], strides=[2, 2],
                          pads=[1, 1, 1, 1])

    def sigmoid(self, x: str) -> str:
        return self._node("Sigmoid", [x], self.shape[x])

    def flatten(self, x: str) -> str:
        return self._node("Flatten", [x], (int(np.prod(self.shape[x])), 1, 1), axis=1)

    def dropout(self, x: str) -> str:
        return self._node("Dropout", [x], self.shape[x])

    def gemm(self, x: str, co: int) -> str:
        k = self.shape[x][0]
        w = self._init(self._name("W"), self.rng.standard_normal((co, k)) * np.sqrt(2.0 / k))
        b = self._init(self._name("B"), self.rng.standard_normal(co) * 0.05)
        return self._node("Gemm", [x, w, b], (co, 1, 1), transB=1)

    def model(self, out: str, name: str) -> Any:
        from onnx import TensorProto, helper

        c, h, w = self.shape["input"]
        oc, oh, ow = self.shape[out]
        out_dims: list[str | int] = ["N", oc] if (oh, ow) == (1, 1) else ["N", oc, oh, ow]
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, h, w])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_dims)], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 producer_name="asd programs.seednets")


def _ch(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def alexnet(b: _Builder, width: float, classes: int) -> str:
    x = b.relu(b.conv("input", _ch(64, width), 11, 4, 2))
    x = b.maxpool(x, 3, 2)
    x = b.maxpool(b.relu(b.conv(x, _ch(192, width), 5, 1, 2)), 3, 2)
    x = b.relu(b.conv(x, _ch(384, width), 3, 1, 1))
    x = b.relu(b.conv(x, _ch(256, width), 3, 1, 1))
    x = b.maxpool(b.relu(b.conv(x, _ch(256, width), 3, 1, 1)), 3, 2)
    x = b.dropout(b.flatten(x))
    x = b.dropout(b.relu(b.gemm(x, _ch(4096, width))))
    x = b.relu(b.gemm(x, _ch(4096, width)))
    return b.gemm(x, classes)


def vgg16(b: _Builder, width: float, classes: int) -> str:
    x = "input"
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        x = b.maxpool(x, 2, 2) if v == "M" else b.relu(b.conv(x, _ch(int(v), width), 3, 1, 1))
    x = b.dropout(b.relu(b.gemm(b.flatten(x), _ch(4096, width))))
    x = b.dropout(b.relu(b.gemm(x, _ch(4096, width))))
    return b.gemm(x, classes)


def resnet18(b: _Builder, width: float, classes: int) -> str:
    x = b.relu(b.bn(b.conv("input", _ch(64, width), 7, 2, 3, bias=False)))
    x = b.maxpool(x, 3, 2, 1)
    for stage, co in enumerate((64, 128, 256, 512)):
        for block in range(2):
            s = 2 if stage > 0 and block == 0 else 1
            y = b.relu(b.bn(b.conv(x, _ch(co, width), 3, s, 1, bias=False)))
            y = b.bn(b.conv(y, _ch(co, width), 3, 1, 1, bias=False))
            short = x
            if s != 1 or b.shape[x][0] != b.shape[y][0]:
                short = b.bn(b.conv(x, _ch(co, width), 1, s, 0, bias=False))
            x = b.relu(b.add(y, short))
    return b.gemm(b.flatten(b.gap(x)), classes)


def _fire(b: _Builder, x: str, sq: int, e1: int, e3: int, width: float) -> str:
    s = b.relu(b.conv(x, _ch(sq, width), 1))
    return b.concat([b.relu(b.conv(s, _ch(e1, width), 1)),
                     b.relu(b.conv(s, _ch(e3, width), 3, 1, 1))])


def squeezenet(b: _Builder, width: float, classes: int, version: str) -> str:
    if version == "1_0":
        x = b.maxpool(b.relu(b.conv("input", _ch(96, width), 7, 2)), 3, 2, ceil=True)
        plan: list[Any] = [(16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192), (48, 192),
                           (64, 256), "M", (64, 256)]
    else:
        x = b.maxpool(b.relu(b.conv("input", _ch(64, width), 3, 2)), 3, 2, ceil=True)
        plan = [(16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192),
                (64, 256), (64, 256)]
    for p in plan:
        x = b.maxpool(x, 3, 2, ceil=True) if p == "M" else _fire(b, x, p[0], p[1], p[1], width)
    x = b.relu(b.conv(b.dropout(x), classes, 1))
    return b.flatten(b.gap(x))


def _divisible(v: float, d: int = 8) -> int:
    """torchvision's _make_divisible: the nearest multiple of d, never 10% below v."""
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


def _conv_bn(b: _Builder, x: str, co: int, k: int, s: int, act: str, groups: int = 1) -> str:
    y = b.bn(b.conv(x, co, k, s, (k - 1) // 2, bias=False, groups=groups))
    if act == "none":
        return y
    acts: dict[str, Callable[[str], str]] = {"relu": b.relu, "relu6": b.relu6,
                                             "hswish": b.hardswish}
    return acts[act](y)


def mobilenet_v2(b: _Builder, width: float, classes: int) -> str:
    x = _conv_bn(b, "input", _divisible(32 * width), 3, 2, "relu6")
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        co = _divisible(c * width)
        for i in range(n):
            ci = b.shape[x][0]
            y = x if t == 1 else _conv_bn(b, x, ci * t, 1, 1, "relu6")
            y = _conv_bn(b, y, b.shape[y][0], 3, s if i == 0 else 1, "relu6",
                         groups=b.shape[y][0])
            y = _conv_bn(b, y, co, 1, 1, "none")
            x = b.add(x, y) if (s == 1 or i > 0) and ci == co else y
    x = _conv_bn(b, x, _divisible(1280 * max(1.0, width)), 1, 1, "relu6")
    return b.gemm(b.dropout(b.flatten(b.gap(x))), classes)


def _squeeze_excite(b: _Builder, x: str) -> str:
    c = b.shape[x][0]
    s = b.relu(b.conv(b.gap(x), _divisible(c // 4), 1))
    return b.mul(x, b.hardsigmoid(b.conv(s, c, 1)))


def mobilenet_v3_small(b: _Builder, width: float, classes: int) -> str:
    x = _conv_bn(b, "input", _divisible(16 * width), 3, 2, "hswish")
    for k, exp, c, se, act, s in (
            (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
            (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hswish", 2),
            (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
            (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1),
            (5, 288, 96, True, "hswish", 2), (5, 576, 96, True, "hswish", 1),
            (5, 576, 96, True, "hswish", 1)):
        ci, ce, co = b.shape[x][0], _divisible(exp * width), _divisible(c * width)
        y = x if ce == ci else _conv_bn(b, x, ce, 1, 1, act)
        y = _conv_bn(b, y, ce, k, s, act, groups=ce)
        if se:
            y = _squeeze_excite(b, y)
        y = _conv_bn(b, y, co, 1, 1, "none")
        x = b.add(x, y) if s == 1 and ci == co else y
    x = _conv_bn(b, x, 6 * b.shape[x][0], 1, 1, "hswish")
    x = b.hardswish(b.gemm(b.flatten(b.gap(x)), _divisible(1024 * width)))
    return b.gemm(b.dropout(x), classes)


def tiny_fpn_detector(b: _Builder, width: float, classes: int) -> str:
    """Four stride-2 stages (C1..C4 at 1/2..1/16), 1x1 laterals, a top-down path (P4 -> 2x
    nearest Resize -> + lateral C3 = P3 -> 2x ConvTranspose, concatenated with lateral C2 ->
    3x3 conv = P2) and a 1x1 head of ``classes`` scores and 4 box offsets per cell at 1/4
    resolution, each through a sigmoid."""
    feats = []
    x = "input"
    for c in (16, 32, 64, 128):
        x = _conv_bn(b, x, _ch(c, width), 3, 2, "relu")
        x = _conv_bn(b, x, _ch(c, width), 3, 1, "relu")
        feats.append(x)
    f = _ch(64, width)
    p4 = b.conv(feats[3], f, 1)
    p3 = b.add(b.resize2x(p4), b.conv(feats[2], f, 1))
    p2 = b.concat([b.conv_transpose2x(p3, f), b.conv(feats[1], f, 1)])
    p2 = b.relu(b.conv(p2, f, 3, 1, 1))
    return b.sigmoid(b.conv(p2, classes + 4, 1))


def build(name: str, *, width: float = 1.0, size: int = 224, classes: int = 1000,
          channels: int = 3, seed: int = 0) -> Any:
    """The ONNX ModelProto of seed network ``name`` (one of :data:`NETS`, :data:`MOBILENETS`,
    :data:`DETECTORS`)."""
    b = _Builder(channels, size, seed)
    if name == "alexnet":
        out = alexnet(b, width, classes)
    elif name == "vgg16":
        out = vgg16(b, width, classes)
    elif name == "resnet18":
        out = resnet18(b, width, classes)
    elif name in ("squeezenet1_0", "squeezenet1_1"):
        out = squeezenet(b, width, classes, name[-3:])
    elif name == "mobilenet_v2":
        out = mobilenet_v2(b, width, classes)
    elif name == "mobilenet_v3_small":
        out = mobilenet_v3_small(b, width, classes)
    elif name == "tiny_fpn_detector":
        out = tiny_fpn_detector(b, width, classes)
    else:
        raise ValueError(f"unknown seed network '{name}'; known: "
                         f"{', '.join(NETS + MOBILENETS + DETECTORS)}")
    return b.model(out, name)

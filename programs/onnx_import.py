"""ONNX (opset 13 and later; 7..12 converted on loading) -> the compiler's graph IR
(:mod:`programs.graph`).  Models are read by :func:`asd.onnx_load.load_onnx`, which has
already folded constants, shape arithmetic, Identity/Dropout/Cast and BatchNormalization after
Conv/Gemm; what is left is matched here.

Fusions, all exact in float: BatchNormalization folds into the preceding Conv (or becomes a
depthwise 1x1 conv when nothing precedes it), an activation fuses into the layer producing its
input when it is that tensor's only reader (otherwise it becomes a depthwise 1x1 identity conv
carrying the activation), Gemm and MatMul become a convolution whose kernel covers the whole
input (a Flatten in between only permutes the weight columns from NCHW order to the
channel-innermost layout), a constant Add after Gemm/MatMul/Conv becomes its bias, Dropout and
Identity vanish.  Anything else is an :class:`ImportError_` naming the node, the op and what is
supported: never a silently wrong result.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .graph import Graph, Layer, Shape
from .onnx_checks import (
    MIN_OPSET,
    ImportError_,
    check_kernel_shape,
    check_layer_params_finite,
    check_opset,
    check_supported_ops,
    check_unique_outputs,
    int_attr,
    ints_attr,
    load_initializers,
    node_label,
    require_finite,
)
from .onnx_host import HOST_IMPORT_OPS, HostOpsImport

SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", "Relu", "LeakyRelu", "PRelu", "Clip", "MaxPool",
                 "AveragePool", "GlobalAveragePool", "Add", "Concat", "Flatten", "Reshape",
                 "BatchNormalization", "Dropout", "Identity", "Softmax", "Constant",
                 *HOST_IMPORT_OPS)
__all__ = ["MIN_OPSET", "SUPPORTED_OPS", "ImportError_", "import_model"]


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


class _Importer(HostOpsImport):
    def __init__(self, model: Any, input_hw: tuple[int, int] | None) -> None:
        self.model = model
        g = model.graph
        self.consts: dict[str, NDArray] = load_initializers(g)
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ImportError_(f"model has {len(inputs)} graph inputs; the compiler takes "
                               "exactly one (an N x C x H x W image batch)")
        if len(g.output) != 1:
            raise ImportError_(f"model has {len(g.output)} outputs; the compiler takes one")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in inp.type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise ImportError_(f"input '{inp.name}' has rank {len(dims)}; expected N x C x H x W")
        c, h, w = dims[1], dims[2], dims[3]
        if input_hw is not None:
            h, w = input_hw
        if c is None or h is None or w is None:
            raise ImportError_(f"input '{inp.name}' has symbolic C/H/W {dims[1:]}; give the "
                               "input size explicitly")
        if min(c, h, w) < 1:
            raise ImportError_(f"input '{inp.name}': expected C, H, W >= 1, found "
                               f"{c}x{h}x{w}")
        self.input = inp.name
        self.input_shape: Shape = (int(c), int(h), int(w))
        self.output = g.output[0].name
        out_dims = g.output[0].type.tensor_type.shape.dim
        self.output_dims = len(out_dims) if len(out_dims) else 2
        # Dropout and Identity are renames; resolve them before counting readers.
        self.alias: dict[str, str] = {}
        self.layers: list[Layer] = []
        self.shapes: dict[str, Shape] = {self.input: self.input_shape}
        self.readers: dict[str, int] = {}
        for node in g.node:
            if node.op_type in ("Dropout", "Identity"):
                self.alias[node.output[0]] = self.name(node.input[0])
        for node in g.node:
            if node.op_type in ("Dropout", "Identity"):
                continue
            for t in node.input:
                if t:
                    t = self.name(t)
                    self.readers[t] = self.readers.get(t, 0) + 1
        self.readers[self.name(self.output)] = self.readers.get(self.name(self.output), 0) + 1

    def name(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def fail(self, node: Any, msg: str) -> ImportError_:
        return ImportError_(f"{node_label(node)}: {msg}")

    def const(self, node: Any, t: str, what: str, finite: bool = True) -> NDArray:
        """Constant input ``t``; a parameter (``finite``) with NaN or Inf is refused here,
        by name, before it poisons quantization."""
        t = self.name(t)
        if t not in self.consts:
            raise self.fail(node, f"{what} '{t}' must be a constant initializer")
        return require_finite(node, self.consts[t], what, t) if finite else self.consts[t]

    def act_input(self, node: Any, t: str) -> str:
        t = self.name(t)
        if t not in self.shapes:
            if t in self.consts:
                raise self.fail(node, f"input '{t}' is a constant where a feature map is "
                                "expected (constant folding is not supported)")
            raise self.fail(node, f"input '{t}' is not produced by a supported layer")
        return t

    def add(self, lay: Layer) -> None:
        try:
            self.shapes[lay.output] = lay.out_shape(self.shapes)
        except ValueError as exc:
            raise ImportError_(str(exc)) from None
        self.layers.append(lay)

    def producer(self, t: str) -> Layer | None:
        for lay in reversed(self.layers):
            if lay.output == t:
                return lay
        return None

    def sole_reader(self, t: str) -> bool:
        return self.readers.get(t, 0) == 1 and t != self.name(self.output)

    # ---------------------------------------------------------------------------------------
    def run(self) -> Graph:
        check_opset(self.model)
        check_unique_outputs(self.model.graph)
        check_supported_ops(self.model.graph, SUPPORTED_OPS)
        for node in self.model.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(node, f"domain '{node.domain}' is not supported")
            op = node.op_type
            if op in ("Dropout", "Identity"):
                continue
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                raise self.fail(node, "op not supported; supported ops: "
                                + ", ".join(SUPPORTED_OPS))
            handler(node)
        out = self.name(self.output)
        if out not in self.shapes:
            raise ImportError_(f"graph output '{out}' is not produced by a supported layer")
        layers = self.live_layers(out)
        for lay in layers:
            check_layer_params_finite(lay.name, {"weight": lay.weight, "bias": lay.bias,
                                                 "slope": lay.slope})
        for lay in layers[:-1]:
            if lay.op == "softmax":
                raise ImportError_(f"layer {lay.name}: Softmax runs on the host and is "
                                   "supported only as the last layer")
        return Graph(self.input, self.input_shape, out, layers, self.output_dims)

    def live_layers(self, out: str) -> list[Layer]:
        need = {out}
        keep: list[Layer] = []
        for lay in reversed(self.layers):
            if lay.output in need:
                keep.append(lay)
                need.update(lay.inputs)
        return keep[::-1]

    # Ops --------------------------------------------------------------------------------------
    def op_Constant(self, node: Any) -> None:  # noqa: N802
        from onnx import numpy_helper

        a = _attrs(node)
        if "value" not in a:
            raise self.fail(node, "only the 'value' attribute is supported")
        arr = numpy_helper.to_array(a["value"])
        self.consts[node.output[0]] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr

    def _pads(self, node: Any, a: dict[str, Any], kernel: tuple[int, int],
              stride: tuple[int, int], hw: tuple[int, int]) -> tuple[int, int, int, int]:
        auto = _decode(a.get("auto_pad", "NOTSET"))
        if auto in ("NOTSET", "VALID"):
            p = a.get("pads", [0, 0, 0, 0]) if auto == "NOTSET" else [0, 0, 0, 0]
            if isinstance(p, list) and len(p) != 4:
                raise self.fail(node, f"pads {p}: only 2-D pads are supported")
            t, l, b, r = ints_attr(node, {"pads": p}, "pads", None, 4, 0)
            return (t, l, b, r)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = []
            for i in range(2):
                o = -(-hw[i] // stride[i])
                total = max(0, (o - 1) * stride[i] + kernel[i] - hw[i])
                small = total // 2
                out.append((small, total - small) if auto == "SAME_UPPER"
                           else (total - small, small))
            return (out[0][0], out[1][0], out[0][1], out[1][1])
        raise self.fail(node, f"auto_pad '{auto}' is not supported")

    def _check_2d(self, node: Any, a: dict[str, Any], names: tuple[str, ...]) -> None:
        for n in names:
            if n in a and isinstance(a[n], list) and len(a[n]) != 2:
                raise self.fail(node, f"{n} {list(a[n])}: only 2-D operations are supported")

    def op_Conv(self, node: Any) -> None:  # noqa: N802
        a = _attrs(node)
        self._check_2d(node, a, ("kernel_shape", "strides", "dilations"))
        x = self.act_input(node, node.input[0])
        w = self.const(node, node.input[1], "weight")
        if w.ndim != 4:
            raise self.fail(node, f"weight of rank {w.ndim}: only 2-D convolutions are supported")
        if any(d != 1 for d in ints_attr(node, a, "dilations", [1, 1], 2, 1)):
            raise self.fail(node, f"dilations {list(a['dilations'])}: only 1 is supported")
        groups = int_attr(node, a, "group", 1, 1)
        c = self.shapes[x][0]
        if c % groups or w.shape[0] % groups or w.shape[1] * groups != c:
            raise self.fail(node, f"group {groups} does not match {c} input channels and "
                            f"weight shape {w.shape}")
        b = (self.const(node, node.input[2], "bias") if len(node.input) > 2 and node.input[2]
             else np.zeros(w.shape[0]))
        kernel = (int(w.shape[2]), int(w.shape[3]))
        check_kernel_shape(node, a, kernel)
        stride = ints_attr(node, a, "strides", [1, 1], 2, 1)
        pads = self._pads(node, a, kernel, stride, self.shapes[x][1:])  # type: ignore[arg-type]
        self.add(Layer(node.name or node.output[0], "conv", [x], node.output[0], [node.name],
                       weight=np.asarray(w, np.float64), bias=np.asarray(b, np.float64).copy(),
                       kernel=kernel, stride=stride, pads=pads,  # type: ignore[arg-type]
                       groups=groups))

    def _dense(self, node: Any, x: str, wmat: NDArray, bias: NDArray) -> None:
        """A fully connected layer ``y = wmat @ flatten(x) + bias`` as a convolution."""
        src = x
        prod = self.producer(x)
        if prod is not None and prod.op == "flatten":
            src = prod.inputs[0]
        c, h, w = self.shapes[src]
        if wmat.shape[1] != c * h * w:
            raise self.fail(node, f"weight has {wmat.shape[1]} inputs, the feature map "
                            f"{(c, h, w)} has {c * h * w}")
        # NCHW flatten order is c*H*W + y*W + x, exactly a (Co, C, H, W) kernel.
        weight = wmat.reshape(wmat.shape[0], c, h, w)
        self.add(Layer(node.name or node.output[0], "conv", [src], node.output[0], [node.name],
                       weight=np.ascontiguousarray(weight, np.float64),
                       bias=bias.astype(np.float64).copy(), kernel=(h, w)))

    def op_Gemm(self, node: Any) -> None:  # noqa: N802
        a = _attrs(node)
        if int(a.get("transA", 0)):
            raise self.fail(node, "transA=1 is not supported (the input must be N x K)")
        x = self.act_input(node, node.input[0])
        b = self.const(node, node.input[1], "B")
        bt = b.T if int(a.get("transB", 0)) else b
        alpha = float(a.get("alpha", 1.0))
        wmat = bt.T if alpha == 1.0 else alpha * bt.T  # no copy of a 100 M weight layer for 1.0
        bias = np.zeros(wmat.shape[0])
        if len(node.input) > 2 and node.input[2]:
            cb = self.const(node, node.input[2], "C")
            bias = float(a.get("beta", 1.0)) * np.broadcast_to(cb.reshape(-1), (wmat.shape[0],))
        self._dense(node, x, wmat, bias)

    def op_MatMul(self, node: Any) -> None:  # noqa: N802
        x = self.act_input(node, node.input[0])
        b = self.const(node, node.input[1], "B")
        if b.ndim != 2:
            raise self.fail(node, f"B of rank {b.ndim}: only N x K times K x M is supported")
        self._dense(node, x, b.T, np.zeros(b.shape[1]))

    def op_BatchNormalization(self, node: Any) -> None:  # noqa: N802
        a = _attrs(node)
        if int(a.get("training_mode", 0)):
            raise self.fail(node, "training_mode=1 is not supported (export in eval mode)")
        x = self.act_input(node, node.input[0])
        gamma, beta, mean, var = (self.const(node, t, n) for t, n in
                                  zip(node.input[1:5], ("scale", "B", "mean", "var")))
        eps = float(a.get("epsilon", 1e-5))
        if not np.all(var + eps > 0):
            raise self.fail(node, f"var '{self.name(node.input[4])}' + epsilon: expected > 0, "
                            f"found {float(np.min(var + eps)):.4g}")
        k = gamma / np.sqrt(var + eps)
        prod = self.producer(x)
        if prod is not None and prod.op == "conv" and prod.act == "none" and self.sole_reader(x):
            assert prod.weight is not None and prod.bias is not None
            prod.weight = prod.weight * k[:, None, None, None]
            prod.bias = (prod.bias - mean) * k + beta
            prod.output = node.output[0]
            prod.onnx_nodes.append(node.name)
            self.shapes[prod.output] = self.shapes.pop(x)
            return
        c = self.shapes[x][0]
        self.add(Layer(node.name or node.output[0], "conv", [x], node.output[0], [node.name],
                       weight=k.reshape(c, 1, 1, 1), bias=beta - mean * k, groups=c))

    def _activation(self, node: Any, act: str, hi: float = math.inf,
                    slope: NDArray | None = None) -> None:
        x = self.act_input(node, node.input[0])
        c = self.shapes[x][0]
        if slope is not None:
            slope = np.broadcast_to(np.asarray(slope, np.float64).reshape(-1), (c,)).copy()
        prod = self.producer(x)
        if (prod is not None and prod.op in ("conv", "add", "avgpool") and prod.act == "none"
                and self.sole_reader(x)):
            prod.act, prod.act_hi, prod.slope = act, hi, slope
            prod.output = node.output[0]
            prod.onnx_nodes.append(node.name)
            self.shapes[prod.output] = self.shapes.pop(x)
            return
        # Nothing to fuse into: a depthwise 1x1 identity convolution carries the activation.
        self.add(Layer(node.name or node.output[0], "conv", [x], node.output[0], [node.name],
                       weight=np.ones((c, 1, 1, 1)), bias=np.zeros(c), groups=c, act=act,
                       act_hi=hi, slope=slope))

    def op_Relu(self, node: Any) -> None:  # noqa: N802
        self._activation(node, "relu")

    def op_LeakyRelu(self, node: Any) -> None:  # noqa: N802
        self._activation(node, "leaky", slope=np.array([_attrs(node).get("alpha", 0.01)]))

    def op_PRelu(self, node: Any) -> None:  # noqa: N802
        s = self.const(node, node.input[1], "slope")
        if s.size not in (1, self.shapes[self.act_input(node, node.input[0])][0]):
            raise self.fail(node, f"slope of shape {s.shape}: only one slope or one per "
                            "channel is supported")
        self._activation(node, "prelu", slope=s)

    def op_Clip(self, node: Any) -> None:  # noqa: N802
        lo = (float(self.const(node, node.input[1], "min", finite=False))
              if len(node.input) > 1 and node.input[1] else -math.inf)
        hi = (float(self.const(node, node.input[2], "max", finite=False))
              if len(node.input) > 2 and node.input[2] else math.inf)
        if lo != 0.0 or not hi > 0:
            raise self.fail(node, f"Clip({lo}, {hi}): only min=0 with max>0 (ReLU, ReLU6) is "
                            "supported")
        self._activation(node, "clip" if math.isfinite(hi) else "relu", hi=hi)

    def _pool(self, node: Any, op: str) -> None:
        a = _attrs(node)
        self._check_2d(node, a, ("kernel_shape", "strides", "dilations"))
        x = self.act_input(node, node.input[0])
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "the Indices output is not supported")
        if any(d != 1 for d in ints_attr(node, a, "dilations", [1, 1], 2, 1)):
            raise self.fail(node, f"dilations {list(a['dilations'])}: only 1 is supported")
        if int(a.get("storage_order", 0)):
            raise self.fail(node, "storage_order=1 is not supported")
        kernel = ints_attr(node, a, "kernel_shape", None, 2, 1)
        stride = ints_attr(node, a, "strides", [1, 1], 2, 1)
        _, h, w = self.shapes[x]
        t, l, b, r = self._pads(node, a, kernel, stride, (h, w))  # type: ignore[arg-type]
        if int(a.get("ceil_mode", 0)):
            if op == "avgpool":
                raise self.fail(node, "ceil_mode=1 is supported for MaxPool only")
            # Extra bottom/right padding for the last, partial window; ONNX drops a window
            # that would start in the right/bottom padding.
            extra = []
            for size, k, s, p0, p1 in ((h, kernel[0], stride[0], t, b),
                                       (w, kernel[1], stride[1], l, r)):
                o = -(-(size + p0 + p1 - k) // s) + 1
                if (o - 1) * s >= size + p0:
                    # Runtimes disagree on a last window that starts in the end padding
                    # (PyTorch drops it, onnxruntime keeps it): refuse rather than guess.
                    raise self.fail(node, "ceil_mode=1 with a last window starting in the end "
                                    "padding is ambiguous; supported when every window starts "
                                    "inside the input or its begin padding")
                extra.append(max(0, (o - 1) * s + k - (size + p0 + p1)))
            b, r = b + extra[0], r + extra[1]
        if op == "avgpool" and any((t, l, b, r)) and not int(a.get("count_include_pad", 0)):
            raise self.fail(node, "AveragePool with padding needs count_include_pad=1 (border "
                            "windows would divide by fewer elements); pads=0 is supported")
        self.add(Layer(node.name or node.output[0], op, [x], node.output[0], [node.name],
                       kernel=kernel, stride=stride, pads=(t, l, b, r)))  # type: ignore[arg-type]

    def op_MaxPool(self, node: Any) -> None:  # noqa: N802
        self._pool(node, "maxpool")

    def op_AveragePool(self, node: Any) -> None:  # noqa: N802
        self._pool(node, "avgpool")

    def op_GlobalAveragePool(self, node: Any) -> None:  # noqa: N802
        x = self.act_input(node, node.input[0])
        _, h, w = self.shapes[x]
        self.add(Layer(node.name or node.output[0], "avgpool", [x], node.output[0], [node.name],
                       kernel=(h, w), stride=(1, 1)))

    def op_Add(self, node: Any) -> None:  # noqa: N802
        ins = [self.name(t) for t in node.input]
        consts = [t for t in ins if t in self.consts]
        if not consts:
            a, b = (self.act_input(node, t) for t in ins)
            self.add(Layer(node.name or node.output[0], "add", [a, b], node.output[0],
                           [node.name]))
            return
        if len(consts) == 2:
            raise self.fail(node, "both inputs constant (constant folding is not supported)")
        x = self.act_input(node, ins[1] if ins[0] in consts else ins[0])
        # A per-channel shift: the producing conv's bias, else a depthwise 1x1 convolution.
        shift = self._per_channel(node, x, consts[0], "addend")
        self.affine(node, x, node.output[0], np.ones(shift.size), shift)

    def op_Concat(self, node: Any) -> None:  # noqa: N802
        axis = int(_attrs(node).get("axis", 1))
        ins = [self.act_input(node, t) for t in node.input]
        if axis not in (1, -3):
            raise self.fail(node, f"axis {axis}: only channel concatenation (axis 1) is "
                            "supported")
        self.add(Layer(node.name or node.output[0], "concat", ins, node.output[0], [node.name]))

    def _flatten(self, node: Any, x: str) -> None:
        self.add(Layer(node.name or node.output[0], "flatten", [x], node.output[0], [node.name]))

    def op_Flatten(self, node: Any) -> None:  # noqa: N802
        axis = int(_attrs(node).get("axis", 1))
        if axis != 1:
            raise self.fail(node, f"axis {axis}: only axis 1 (keep the batch) is supported")
        self._flatten(node, self.act_input(node, node.input[0]))

    def op_Reshape(self, node: Any) -> None:  # noqa: N802
        x = self.act_input(node, node.input[0])
        shape = [int(s) for s in self.const(node, node.input[1], "shape").reshape(-1)]
        k = int(np.prod(self.shapes[x]))
        if len(shape) != 2 or not (shape[1] == k or (shape[1] == -1 and shape[0] != -1)):
            raise self.fail(node, f"shape {shape}: only flattening to N x {k} is supported")
        self._flatten(node, x)

    def op_Softmax(self, node: Any) -> None:  # noqa: N802
        axis = int(_attrs(node).get("axis", -1))
        x = self.act_input(node, node.input[0])
        c, h, w = self.shapes[x]
        if h * w != 1 or axis not in (1, -1):
            raise self.fail(node, f"axis {axis} on a {(c, h, w)} map: only a softmax over the "
                            "features of an N x K output is supported")
        self.add(Layer(node.name or node.output[0], "softmax", [x], node.output[0], [node.name]))


def import_model(model: Any, input_hw: tuple[int, int] | None = None) -> Graph:
    """Import an ``onnx.ModelProto`` or a path to a .onnx file, read by the loader every
    command shares (:func:`asd.onnx_load.load_onnx`: exporter clutter folded, opsets 7..12
    converted) with a batch of one and ``input_hw``, so shape arithmetic on the input folds."""
    from asd.onnx_load import OnnxLoadError, load_onnx

    shape = (-1, None, *input_hw) if input_hw is not None else (-1, None, None, None)
    try:
        loaded = load_onnx(model, input_shape=shape)
    except OnnxLoadError as exc:
        raise ImportError_(str(exc)) from None
    return _Importer(loaded, input_hw).run()

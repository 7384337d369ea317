"""Retrain-less accuracy of a model under each quantization scheme.

For every scheme the model's Conv/Gemm/MatMul weights are replaced by their dequantized values
(no retraining, no fine-tuning) and the model runs in onnxruntime, the independent float
reference.  The floating-point schemes (``fp8-e4m3``, ``fp8-e5m2``) quantize *all* parameters
(weights and biases) and every feature map: a Cast to the 8-bit float type and back follows the
input and every intermediate float tensor, as in the published floating-point mode.

Size accounting counts every stored bit: packed codes, per-channel scales (in their stored
format, :mod:`asd.scale_formats`) and biases (as ``asd quantize`` stores them: float16 by
default, or 8 bits in the fp8 schemes), against float32 for everything.
``onnx`` and ``onnxruntime`` are imported on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asd import fidelity, modelio, onnx_load, scale_formats
from asd import rounding as rounding_
from asd.quantize_model import DEFAULT_BIAS_FORMAT, quantize_model
from asd.schemes import FpScheme, get_scheme
from contract import blas

DEFAULT_SCHEMES = ("float", "asd2", "pot", "int8", "int6", "int4", "fp8-e4m3", "fp8-e5m2")
FP8_TYPES = {"fp8-e4m3": "FLOAT8E4M3FN", "fp8-e5m2": "FLOAT8E5M2"}


@dataclass
class SchemeAccuracy:
    scheme: str
    top1: float
    top5: float | None
    bits_per_weight: float
    size_bytes: float
    size_reduction: float
    drop_vs_float: float
    feature_maps: str
    rounding: str = "nearest"
    agreement: float = 100.0  # top-1 agreement with float, percent
    sqnr_db: float | None = None  # output logits against float; None: identical
    kl: float = 0.0  # mean KL(softmax float || softmax quantized), nats
    layer_sqnr_db: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def topk_accuracy(logits: NDArray, labels: NDArray, k: int) -> float:
    """Percent of rows whose label is among the k largest logits (ties count against)."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(100.0 * np.mean(np.any(top == labels[:, None], axis=1)))


def _onnx() -> Any:
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError:
        raise modelio.ModelError(
            "evaluation needs the 'onnx' and 'onnxruntime' packages "
            "(pip install 'asd-accel[onnx]')") from None
    return onnx


def _with_weights(proto: Any, tensors: dict[str, NDArray]) -> Any:
    onnx = _onnx()
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for init in out.graph.initializer:
        if init.name in tensors:
            init.CopyFrom(numpy_helper.from_array(
                np.asarray(tensors[init.name], dtype=np.float32), init.name))
    return out


def _with_fp8_feature_maps(proto: Any, type_name: str) -> Any:
    """Cast the graph input and every float node output to fp8 and back (saturating)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, shape_inference, version_converter

    if max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
           default=0) < 19:
        proto = version_converter.convert_version(proto, 19)
    proto = shape_inference.infer_shapes(proto)
    g = proto.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(g.value_info) + list(g.input) + list(g.output)}
    inits = {i.name for i in g.initializer}
    to = getattr(TensorProto, type_name)

    def is_float(name: str) -> bool:
        return types.get(name) == TensorProto.FLOAT

    def cast_pair(src: str, dst: str) -> list[Any]:
        mid = f"{dst}__fp8"
        return [helper.make_node("Cast", [src], [mid], to=to, saturate=1),
                helper.make_node("Cast", [mid], [dst], to=TensorProto.FLOAT)]

    # Consumers of a graph input read its quantized copy; a node's raw output is renamed and
    # its quantized value takes the original name, so graph outputs are quantized too.
    in_map = {i.name: f"{i.name}__q" for i in g.input if i.name not in inits and is_float(i.name)}
    nodes: list[Any] = []
    for name, q in in_map.items():
        nodes += cast_pair(name, q)
    for n in g.node:
        outs = [f"{o}__raw" if o and is_float(o) else o for o in n.output]
        new = helper.make_node(n.op_type, [in_map.get(i, i) for i in n.input], outs,
                               name=n.name, domain=n.domain)
        new.attribute.extend(n.attribute)
        nodes.append(new)
        for o, raw in zip(n.output, outs):
            if raw != o:
                nodes += cast_pair(raw, o)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    onnx.checker.check_model(proto)
    return proto


class Runner:
    """An onnxruntime session over a model, batched, with optional progress callback."""

    def __init__(self, proto: Any):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = blas.ort_threads()
        self.session = ort.InferenceSession(proto.SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]

    def outputs(self, xb: NDArray) -> dict[str, NDArray]:
        """Every graph output of one batch, by name."""
        return dict(zip(self.names, self.session.run(None, {self.input: xb}), strict=True))

    def __call__(self, x: NDArray, batch: int = 256,
                 progress: Callable[[int], None] | None = None) -> NDArray:
        outs = []
        for i in range(0, len(x), batch):
            outs.append(self.session.run(None, {self.input: x[i:i + batch]})[0])
            if progress:
                progress(min(batch, len(x) - i))
        return np.concatenate(outs).reshape(len(x), -1)


def _compare(ref: Runner, quant: Runner, x: NDArray, batch: int, layers: list[str],
             progress: Callable[[int], None] | None) -> tuple[NDArray, NDArray, dict]:
    """Both models batch by batch: float and quantized logits, per-layer output SQNR."""
    acc = fidelity.LayerSqnr(layers)
    outs: tuple[list[NDArray], list[NDArray]] = ([], [])
    for i in range(0, len(x), batch):
        a, b = ref.outputs(x[i:i + batch]), quant.outputs(x[i:i + batch])
        acc.add(a, b)
        outs[0].append(a[ref.names[0]])
        outs[1].append(b[quant.names[0]])
        if progress:
            progress(min(batch, len(x) - i))
    return (np.concatenate(outs[0]).reshape(len(x), -1),
            np.concatenate(outs[1]).reshape(len(x), -1), acc.result())


def evaluate(model_path: str | Path, x: NDArray, y: NDArray,
             schemes: Iterable[str] = DEFAULT_SCHEMES, *, granularity: str = "channel",
             scale: str = "mse", batch: int = 256,
             progress: Callable[[str, int], None] | None = None,
             roundings: Iterable[str] = ("nearest",), calib_x: NDArray | None = None,
             scale_format: str = scale_formats.DEFAULT,
             bias_format: str = DEFAULT_BIAS_FORMAT,
             ) -> list[SchemeAccuracy]:
    """Accuracy and fidelity to float of the model on (x, y) for each scheme and rounding
    (``bias``/``gptq`` need calibration images ``calib_x``); the first result is float."""
    _onnx()  # a clear error when the onnx package is missing
    path = Path(model_path)
    model = modelio.load(path)
    proto = model.proto  # the loaded graph: the weights' names are its initializers'
    if proto is None:
        raise modelio.ModelError(f"{path}: evaluation runs the model, so it must be .onnx")
    schemes = [s for s in schemes if s != "float"]
    roundings = list(roundings)
    weight_count = sum(int(w.size) for w in model.weights.values())
    bias_count = sum(int(b.size) for b in model.biases.values())
    float_bits = 32 * (weight_count + bias_count)
    layers = fidelity.layer_outputs(proto)
    ref = Runner(fidelity.exposing(proto, layers))
    cal = None
    if any(r != "nearest" for r in roundings):
        if calib_x is None:
            raise modelio.ModelError("bias and gptq rounding need calibration images")
        with onnx_load.as_file(proto) as loaded:
            cal = rounding_.collect_stats(loaded, calib_x)

    def cb(name: str) -> Callable[[int], None] | None:
        return (lambda k: progress(name, k)) if progress else None

    logits = Runner(proto)(x, batch, cb("float"))
    k5 = logits.shape[1] >= 10
    ref1 = topk_accuracy(logits, y, 1)
    results = [SchemeAccuracy("float", ref1, topk_accuracy(logits, y, 5) if k5 else None,
                              32.0, float_bits / 8, 0.0, 0.0, "float32")]
    for name in schemes:
        try:
            scheme = get_scheme(name)
        except ValueError as exc:
            raise modelio.ModelError(str(exc)) from None
        for rnd in roundings if name not in FP8_TYPES else ["nearest"]:
            qm = quantize_model(model, scheme, granularity, scale, rnd, cal,
                                scale_format=scale_format, bias_format=bias_format)
            tensors: dict[str, NDArray] = {k: r.dequant for k, r in qm.results.items()}
            bits = sum(r.size.payload_bits + r.size.scales_bits for r in qm.results.values())
            if name in FP8_TYPES:
                # All parameters in fp8: biases too (unscaled, saturating like feature maps).
                fmt = FpScheme(format=name.split("-")[1]).fmt
                for bname, b in model.biases.items():
                    tensors[bname] = fmt.decode(fmt.encode(b.astype(np.float64))).astype(
                        np.float32)
                bbits = 8 * bias_count
                p = _with_fp8_feature_maps(_with_weights(proto, tensors), FP8_TYPES[name])
                fmaps = name
            else:
                # as stored (float16 by default), corrected by the bias rounding
                tensors.update({k: v.astype(np.float32) for k, v in qm.biases.items()})
                bbits = qm.bias_bits
                p = _with_weights(proto, tensors)
                fmaps = "float32"
            bits += bbits
            label = name if rnd == "nearest" else f"{name}/{rnd}"
            f_out, out, per_layer = _compare(ref, Runner(fidelity.exposing(p, layers)), x,
                                             batch, layers, cb(label))
            top1 = topk_accuracy(out, y, 1)
            sq = fidelity.sqnr_db(f_out, out)
            results.append(SchemeAccuracy(
                name, top1, topk_accuracy(out, y, 5) if k5 else None,
                (bits - bbits) / max(weight_count, 1),
                bits / 8, 1.0 - bits / float_bits, ref1 - top1, fmaps, rnd,
                fidelity.agreement(f_out, out), None if sq == float("inf") else sq,
                fidelity.softmax_kl(f_out, out), per_layer, list(qm.notes)))
    return results


def format_table(results: list[SchemeAccuracy], layers: bool = False) -> str:
    """One row per scheme and rounding; ``layers``: then the per-layer output SQNR."""
    head = (f"{'scheme':<10} {'rounding':<8} {'top-1 %':>8} {'top-5 %':>8} {'agree %':>8} "
            f"{'SQNR dB':>8} {'KL':>9} {'bits/w':>7} {'size KiB':>9} {'smaller':>8} "
            f"{'drop':>6}  feature maps")
    lines = [head, "-" * len(head)]
    for r in results:
        t5 = f"{r.top5:8.2f}" if r.top5 is not None else f"{'-':>8}"
        sq = f"{r.sqnr_db:8.2f}" if r.sqnr_db is not None else f"{'inf':>8}"
        lines.append(f"{r.scheme:<10} {r.rounding:<8} {r.top1:8.2f} {t5} {r.agreement:8.2f} "
                     f"{sq} {r.kl:9.2e} {r.bits_per_weight:7.2f} "
                     f"{r.size_bytes / 1024:9.1f} {100 * r.size_reduction:7.1f}% "
                     f"{r.drop_vs_float:+6.2f}  {r.feature_maps}")
    quant = [r for r in results if r.layer_sqnr_db]
    if layers and quant:
        lines += ["", "per-layer output SQNR (dB) against float:"]
        names = list(quant[0].layer_sqnr_db)
        width = max(len(n) for n in names)
        lines.append(" " * width + "".join(f" {(r.scheme + '/' + r.rounding)[:14]:>14}"
                                           for r in quant))
        for n in names:
            cells = [r.layer_sqnr_db.get(n) for r in quant]
            lines.append(n.ljust(width) + "".join(
                f" {'inf' if c is None else f'{c:.2f}':>14}" for c in cells))
    return "\n".join(lines)

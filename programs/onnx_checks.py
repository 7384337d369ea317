"""What the ONNX importer checks before it trusts a model: the opset, unique tensor names,
attribute values, finite parameters.

Every refusal is an :class:`ImportError_` of one line naming the node (or tensor), the
attribute, what was expected and what was found, so a bad model never reaches the arithmetic
(a stride of 0 used to end in ``ZeroDivisionError``, a NaN weight in an ``IndexError`` deep in
quantization).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract.errors import AsdError

from .budget import DEFAULT_MEMORY_BUDGET, FLOAT_BYTES, MemoryBudgetError

MIN_OPSET = 13


class ImportError_(ValueError, AsdError):  # noqa: N801 - ImportError is a builtin with other meaning
    """A model the compiler cannot import; the message names the node and the op."""


def load_initializers(graph: Any, budget: int = DEFAULT_MEMORY_BUDGET) -> dict[str, NDArray]:
    """Every initializer as an array (floats as float64), each declared size checked against
    ``budget`` before it is read: external data can declare any size."""
    from onnx import numpy_helper

    arrays: dict[str, NDArray] = {}
    for init in graph.initializer:
        dims = list(init.dims)
        if any(d < 0 for d in dims):
            raise ImportError_(f"initializer '{init.name}': expected dimensions >= 0, found "
                               f"{dims}")
        if FLOAT_BYTES * math.prod(dims) > budget:
            raise MemoryBudgetError(f"initializer '{init.name}' of {'x'.join(map(str, dims))}: "
                                    f"expected at most {budget / 2**30:.3g} GiB, found "
                                    f"{FLOAT_BYTES * math.prod(dims) / 2**30:.3g} GiB")
        try:
            arr = numpy_helper.to_array(init)
        except Exception as exc:  # onnx raises several unrelated types for bad tensor data
            raise ImportError_(f"initializer '{init.name}': cannot read its data: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                               ) from None
        arrays[init.name] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
    return arrays


def node_label(node: Any) -> str:
    return f"node '{node.name or (node.output[0] if node.output else '?')}' ({node.op_type})"


def max_opset() -> int:
    """The newest opset the installed ``onnx`` defines: a newer one may mean ops whose
    semantics this importer has never seen."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


def check_opset(model: Any) -> None:
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    if opset < MIN_OPSET:
        raise ImportError_(f"model uses opset {opset}; the importer supports opset "
                           f"{MIN_OPSET} and later (re-export or convert the model)")
    newest = max_opset()
    if opset > newest:
        raise ImportError_(f"model uses opset {opset}; expected {MIN_OPSET}..{newest} (the "
                           "newest the installed onnx defines)")


def check_unique_outputs(graph: Any) -> None:
    """Every tensor has one producer: a node output that repeats a graph input, an initializer
    or an earlier node's output would make the graph ambiguous."""
    seen = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for node in graph.node:
        for t in node.output:
            if not t:
                continue  # an omitted optional output
            if t in seen:
                raise ImportError_(f"{node_label(node)}: output '{t}': expected a name no "
                                   "other node, input or initializer produces, found a "
                                   "duplicate")
            seen.add(t)


def _bad_attr(node: Any, name: str, expected: str, found: Any) -> ImportError_:
    return ImportError_(f"{node_label(node)}: attribute {name}: expected {expected}, found "
                        f"{found!r}")


def int_attr(node: Any, attrs: dict[str, Any], name: str, default: int, least: int) -> int:
    """An integer attribute, at least ``least``."""
    v = attrs.get(name, default)
    if not isinstance(v, int) or v < least:
        raise _bad_attr(node, name, f"an integer >= {least}", v)
    return v


def ints_attr(node: Any, attrs: dict[str, Any], name: str, default: list[int] | None,
              count: int, least: int) -> tuple[int, ...]:
    """A list attribute of ``count`` integers, each at least ``least``; ``default`` None
    means the attribute is required."""
    if name not in attrs and default is None:
        raise _bad_attr(node, name, f"{count} integers >= {least} (required)", None)
    v = attrs.get(name, default)
    if (not isinstance(v, (list, tuple)) or len(v) != count
            or not all(isinstance(x, int) and x >= least for x in v)):
        raise _bad_attr(node, name, f"{count} integers >= {least}",
                        list(v) if isinstance(v, (list, tuple)) else v)
    return tuple(v)


def check_kernel_shape(node: Any, attrs: dict[str, Any], weight_hw: tuple[int, int]) -> None:
    """A Conv's ``kernel_shape``, when given, must be the weights' spatial shape."""
    if "kernel_shape" in attrs:
        found = ints_attr(node, attrs, "kernel_shape", None, 2, 1)
        if found != weight_hw:
            raise _bad_attr(node, "kernel_shape", f"{list(weight_hw)} (the weights' kernel)",
                            list(found))


def require_finite(node: Any, values: NDArray, what: str, tensor: str) -> NDArray:
    """``values`` of initializer ``tensor`` when all finite; NaN or Inf is refused."""
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ImportError_(f"{node_label(node)}: {what} '{tensor}': expected finite values, "
                           f"found {bad} NaN or Inf")
    return values


def check_layer_params_finite(name: str, arrays: dict[str, NDArray | None]) -> None:
    """After fusion (BatchNormalization folding, Gemm's alpha/beta) a layer's parameters must
    still be finite: a variance + epsilon <= 0 or a huge scale gives NaN or Inf."""
    for what, values in arrays.items():
        if values is not None and not np.all(np.isfinite(values)):
            raise ImportError_(f"layer {name}: {what}: expected finite values after fusing "
                               "its nodes, found NaN or Inf (check BatchNormalization "
                               "variances and Gemm alpha/beta)")


# What to re-export an op the compiler lacks as: the supported op closest in effect.  Ops not
# listed get the supported op with the closest name, or none.
NEAREST_SUPPORTED = {
    "Tanh": "Clip (min 0); Sigmoid (host)",
    "Elu": "LeakyRelu/PRelu", "Selu": "LeakyRelu/PRelu", "Celu": "LeakyRelu/PRelu",
    "Gelu": "Relu", "Softplus": "Relu", "Mish": "Relu", "ThresholdedRelu": "Relu",
    "Swish": "Mul(x, Sigmoid(x)) (Sigmoid and the product run on the host)",
    "Abs": "Relu", "Max": "Clip/Relu", "Min": "Clip",
    "Sum": "Add", "Mean": "Add",
    "ConvInteger": "Conv", "QLinearConv": "Conv (float: asd quantizes)",
    "MatMulInteger": "MatMul (float: asd quantizes)", "QLinearMatMul": "MatMul (float)",
    "QuantizeLinear": "none (give the float model: asd quantizes it)",
    "DequantizeLinear": "none (give the float model: asd quantizes it)",
    "GlobalMaxPool": "MaxPool with the whole map as kernel",
    "ReduceMean": "GlobalAveragePool", "ReduceMax": "MaxPool", "LpPool": "AveragePool",
    "InstanceNormalization": "BatchNormalization", "LayerNormalization": "BatchNormalization",
    "LRN": "BatchNormalization", "LogSoftmax": "Softmax (last layer)",
    "Transpose": "Flatten/Reshape to N x K", "Squeeze": "Flatten/Reshape to N x K",
    "Unsqueeze": "Flatten/Reshape to N x K",
    "Pad": "the pads attribute of Conv/MaxPool/AveragePool",
    "Upsample": "Resize (mode=nearest)",
}


def nearest_supported(op: str, supported: tuple[str, ...]) -> str:
    if op in NEAREST_SUPPORTED:
        return NEAREST_SUPPORTED[op]
    import difflib

    close = difflib.get_close_matches(op, supported, n=1, cutoff=0.6)
    return close[0] if close else "none"


def check_supported_ops(graph: Any, supported: tuple[str, ...]) -> None:
    """Refuse, before anything is quantized or written, every node whose op the compiler
    cannot run: one line naming the first such node, its op and the nearest supported op,
    then how many other nodes of which ops are refused too."""
    bad = [n for n in graph.node
           if n.domain not in ("", "ai.onnx") or n.op_type not in supported]
    if not bad:
        return
    first = bad[0]
    what = (f"domain '{first.domain}' is not supported" if first.domain not in ("", "ai.onnx")
            else f"not supported; nearest supported: {nearest_supported(first.op_type, supported)}")
    counts: dict[str, int] = {}
    for n in bad[1:]:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    more = (f"; {len(bad) - 1} more unsupported node(s): "
            + ", ".join(f"{op} x{k}" for op, k in counts.items())) if counts else ""
    raise ImportError_(f"{node_label(first)}: {what}{more}; supported ops: "
                       + ", ".join(supported))

"""The one ONNX loader: every command that reads a model (quantize, eval, compile, demo,
sweep) reads it through :func:`load_onnx`, so each sees the same graph.

Exporters other than a recent torch leave clutter that carries no computation of its own:
weights in ``Constant`` nodes, shape arithmetic (``Shape``, ``Gather``, ``Slice``, ``Concat``,
``Unsqueeze``, ``Cast``) computing the target of a ``Reshape``, ``Identity`` and ``Dropout``,
BatchNormalization after each convolution, and opsets older than the importer's.  The loader

1. lists no initializer as a graph input (IR < 4 exports do; onnxruntime will not fold a
   tensor a caller could override);
2. optionally fixes the input shape (the compiler's batch of one and ``--input-size``), so
   shape arithmetic on the input becomes constant too;
3. runs onnxruntime's *basic* graph optimizer, which folds constants and constant subgraphs
   into initializers, removes Identity, Dropout and same-type Cast, and folds BatchNormalization
   (and constant Add/Mul) into a preceding Conv; these rewrites are provider-independent and
   keep the result a standard ONNX model;
4. converts opsets 7..12 to :data:`TARGET_OPSET` with ``onnx.version_converter`` and, when it
   did, optimizes once more (the converter's adapters add constant inputs);
5. folds a BatchNormalization into a preceding Gemm (onnxruntime folds it only after Conv).

The float model stays the same model: tests compare onnxruntime's output on the original and
on the loaded graph.  When onnxruntime cannot run a model (an op or domain it lacks, an invalid
attribute), steps 3 and 4's re-optimization are skipped and the graph goes on unfolded, so the
caller's own checks name the node that is wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from contract.errors import AsdError

TARGET_OPSET = 13  # the importer's oldest supported opset: older models are converted to it
OLDEST_CONVERTIBLE_OPSET = 7  # onnx.version_converter's adapters start here
_DEFAULT_DOMAINS = ("", "ai.onnx")


class OnnxLoadError(ValueError, AsdError):
    """A file that is no usable ONNX model; the message names the file and the reason."""


def default_opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS),
               default=0)


def load_onnx(source: str | Path | Any, *, input_shape: tuple[int | None, ...] | None = None,
              optimize: bool = True) -> Any:
    """``source`` (a path or an ``onnx.ModelProto``, never modified) as a folded, converted
    ``ModelProto``.  ``input_shape`` fixes the dimensions of the single graph input: ``None``
    keeps a dimension, ``-1`` sets it to 1 only where it is symbolic (a batch of one)."""
    import onnx

    label = str(source) if isinstance(source, (str, Path)) else "model"
    if isinstance(source, (str, Path)):
        try:
            model = onnx.load(str(source))
        except Exception as exc:  # protobuf DecodeError, OSError, ...: all mean "unreadable"
            raise OnnxLoadError(f"{source}: not a readable ONNX model ({type(exc).__name__}: "
                                f"{exc})") from None
        base_dir = str(Path(source).parent)
    else:
        model = onnx.ModelProto()
        model.CopyFrom(source)
        base_dir = ""
    opset = default_opset(model)
    if 0 < opset < OLDEST_CONVERTIBLE_OPSET:
        raise OnnxLoadError(f"{label}: model uses opset {opset}; opsets "
                            f"{OLDEST_CONVERTIBLE_OPSET} and later are read (older ones are "
                            f"converted to {TARGET_OPSET}); re-export the model")
    if base_dir and any(_is_external(t) for t in model.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(model, base_dir)
        except Exception as exc:  # a missing or short external file
            raise OnnxLoadError(f"{label}: external weight data cannot be read ({exc})") from None
    _initializers_not_inputs(model)
    _check_batchnorm(model)
    if input_shape is not None:
        _fix_input_shape(model, input_shape)
    if not optimize:
        return model
    model = _ort_basic(model)
    converted = 0 < default_opset(model) < TARGET_OPSET
    if converted:
        model = _convert(model, label)
    if _copy_dims_in_reshape_targets(model) or converted:
        _drop_dead_nodes(model)
        model = _ort_basic(model)
    _fold_bn_after_gemm(model)
    return model


def _is_external(t: Any) -> bool:
    import onnx

    return bool(t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL)


def _initializers_not_inputs(model: Any) -> None:
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    if len(keep) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 4)  # IR 4 lets initializers be non-inputs


def _check_batchnorm(model: Any) -> None:
    """Folding a BatchNormalization with non-finite parameters or variance + epsilon <= 0
    into its conv would leave NaN weights that no longer name the culprit: refuse it here."""
    from onnx import helper, numpy_helper

    consts = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            if value is not None:
                consts[n.output[0]] = value
    for n in model.graph.node:
        if n.op_type != "BatchNormalization" or len(n.input) < 5:
            continue
        label = f"node '{n.name or n.output[0]}' (BatchNormalization)"
        params = {}
        for what, t in zip(("scale", "B", "mean", "var"), n.input[1:5]):
            if t not in consts:
                break
            try:
                params[what] = numpy_helper.to_array(consts[t]).astype(np.float64)
            except Exception:  # unreadable data: the importer names it
                break
            if not np.all(np.isfinite(params[what])):
                raise OnnxLoadError(f"{label}: {what} '{t}': expected finite values, found "
                                    "NaN or Inf")
        if "var" not in params:
            continue
        eps = next((float(helper.get_attribute_value(a)) for a in n.attribute
                    if a.name == "epsilon"), 1e-5)
        if not np.all(params["var"] + eps > 0):
            raise OnnxLoadError(f"{label}: var '{n.input[4]}' + epsilon: expected > 0, found "
                                f"{float(np.min(params['var'] + eps)):.4g}")


def _fix_input_shape(model: Any, shape: tuple[int | None, ...]) -> None:
    inputs = list(model.graph.input)
    if len(inputs) != 1:
        return  # the caller's own check names the inputs
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        return
    for d, v in zip(dims, shape):
        if v is None or (v == -1 and d.HasField("dim_value") and d.dim_value > 0):
            continue
        d.Clear()
        d.dim_value = 1 if v == -1 else int(v)


def _ort_basic(model: Any) -> Any:
    """``model`` through onnxruntime's basic (provider-independent) optimizer, or unchanged
    when onnxruntime is missing or cannot load it."""
    import onnx

    try:
        import onnxruntime as ort
    except ImportError:
        return model
    data = model.SerializeToString()
    # ``model`` is the loader's own copy: emptied while onnxruntime holds the model too (a
    # VGG-16 is 0.55 GB a copy), rebuilt from ``data`` if onnxruntime refuses it.
    model.Clear()
    with tempfile.TemporaryDirectory(prefix="asd-onnx-") as tmp:
        out = Path(tmp) / "folded.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(out)
        opts.log_severity_level = 4
        try:
            ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            folded = onnx.load(str(out))
        except Exception:  # onnxruntime refuses the model: the caller's checks name why
            model.ParseFromString(data)
            return model
    _drop_unused_domains(folded)
    return folded


def _drop_unused_domains(model: Any) -> None:
    """onnxruntime lists every domain it knows in the saved model; keep those in use."""
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _convert(model: Any, label: str) -> Any:
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, TARGET_OPSET)
    except Exception as exc:  # the converter raises RuntimeError/ValueError per adapter
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxLoadError(f"{label}: converting opset {default_opset(model)} to "
                            f"{TARGET_OPSET} failed: {first}") from None


def _int_values(t: str, inits: dict[str, Any]) -> list[int] | None:
    from onnx import numpy_helper

    if t not in inits:
        return None
    arr = numpy_helper.to_array(inits[t])
    return [int(v) for v in arr.reshape(-1)] if arr.dtype.kind in "iu" else None


def _shape_part(part: str, x: str, pos: int, producer: dict[str, Any],
                inits: dict[str, Any]) -> list[int] | None:
    """The entries of a Reshape target's part ``part`` at position ``pos``: its constant
    values, or zeros where it reads ``x``'s own dimensions ``pos..`` (``Slice`` or ``Gather``
    of ``Shape(x)``); None for anything else."""
    const = _int_values(part, inits)
    if const is not None:
        return const
    node = producer.get(part)
    if node is not None and node.op_type == "Unsqueeze" and _int_values(
            node.input[1] if len(node.input) > 1 else "", inits) == [0]:
        node = producer.get(node.input[0])
        scalar = True
    else:
        scalar = False
    if node is None or node.op_type not in ("Slice", "Gather") or node.attribute and not (
            node.op_type == "Gather" and [a.name for a in node.attribute] == ["axis"]
            and node.attribute[0].i == 0):
        return None
    shape = producer.get(node.input[0])
    if shape is None or shape.op_type != "Shape" or shape.input[0] != x or shape.attribute:
        return None
    if node.op_type == "Gather":
        idx = _int_values(node.input[1], inits)
        scalar_idx = node.input[1] in inits and len(inits[node.input[1]].dims) == 0
        ok = idx == [pos] and scalar_idx == scalar
        return [0] if ok else None
    starts, ends = (_int_values(t, inits) for t in node.input[1:3])
    rest = [_int_values(t, inits) for t in node.input[3:5] if t]
    if scalar or starts != [pos] or ends is None or len(ends) != 1 or any(
            r != [0] and r != [1] for r in rest) or not pos < ends[0] < 2**31:
        return None  # rest: axes [0] and steps [1] only
    return [0] * (ends[0] - pos)


def _copy_dims_in_reshape_targets(model: Any) -> bool:
    """``Reshape(x, Concat(<x's own dimensions>, constants))`` -> a constant target with 0
    ("copy this dimension of x", the meaning of 0 when ``allowzero`` is 0) where the target
    reads x's dimension at the same position: exporters compute ``x.view(x.size(0), -1)`` so,
    and onnxruntime cannot fold it while the batch is symbolic.  True if any was rewritten."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {t: n for n in g.node for t in n.output}
    changed = False
    for node in g.node:
        if (node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] in inits
                or any(a.name == "allowzero" and a.i for a in node.attribute)):
            continue
        concat = producer.get(node.input[1])
        if concat is None or concat.op_type != "Concat":
            continue
        values: list[int] = []
        for part in concat.input:
            got = _shape_part(part, node.input[0], len(values), producer, inits)
            if got is None:
                break
            values += got
        else:
            name = f"{node.output[0]}_target"
            g.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
            inits[name] = g.initializer[-1]
            node.input[1] = name
            changed = True
    return changed


def _drop_dead_nodes(model: Any) -> None:
    """Remove nodes none of whose outputs is read or is a graph output."""
    g = model.graph
    while True:
        used = {t for n in g.node for t in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(t in used for t in n.output if t)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


def _fold_bn_after_gemm(model: Any) -> None:
    """``BatchNormalization(Gemm(x, B, C))`` -> ``Gemm(x, B', C')`` when the Gemm's output has
    no other reader and B, C and the BN parameters are initializers (exact in real arithmetic:
    the BN is an affine map per output feature)."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, int] = {}
    for n in g.node:
        for t in n.input:
            readers[t] = readers.get(t, 0) + 1
    outputs = {o.name for o in g.output}
    producer = {t: n for n in g.node for t in n.output}
    replaced: set[str] = set()
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        gemm = producer.get(bn.input[0])
        if (gemm is None or gemm.op_type != "Gemm" or readers.get(bn.input[0], 0) != 1
                or bn.input[0] in outputs or len([t for t in bn.output if t]) != 1
                or not all(t in inits for t in bn.input[1:5]) or gemm.input[1] not in inits
                or (len(gemm.input) > 2 and gemm.input[2] and gemm.input[2] not in inits)):
            continue
        ga = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        ba = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
        if int(ba.get("training_mode", 0)):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[t]).astype(np.float64)
                                  for t in bn.input[1:5])
        k = gamma / np.sqrt(var + float(ba.get("epsilon", 1e-5)))
        b = numpy_helper.to_array(inits[gemm.input[1]]).astype(np.float64)
        trans_b = int(ga.get("transB", 0))
        cols = b.shape[0] if trans_b else b.shape[1]
        if k.shape != (cols,) or not np.all(np.isfinite(k)):
            continue
        alpha, beta_c = float(ga.get("alpha", 1.0)), float(ga.get("beta", 1.0))
        c = np.zeros(cols)
        if len(gemm.input) > 2 and gemm.input[2]:
            c = beta_c * np.broadcast_to(
                numpy_helper.to_array(inits[gemm.input[2]]).astype(np.float64).reshape(-1),
                (cols,))
        b_new = alpha * (b * (k[:, None] if trans_b else k[None, :]))
        c_new = (c - mean) * k + beta
        dtype = numpy_helper.to_array(inits[gemm.input[1]]).dtype
        w_name, c_name = f"{gemm.input[1]}_bn", f"{bn.output[0]}_bias"
        g.initializer.extend([numpy_helper.from_array(b_new.astype(dtype), w_name),
                              numpy_helper.from_array(c_new.astype(dtype), c_name)])
        new = helper.make_node("Gemm", [gemm.input[0], w_name, c_name], [bn.output[0]],
                               name=gemm.name, transB=trans_b)
        idx = list(g.node).index(gemm)
        g.node.remove(bn)
        g.node.remove(gemm)
        g.node.insert(idx, new)
        replaced.update(gemm.input[1:3])
        replaced.update(bn.input[1:5])
    used = {t for n in g.node for t in n.input}
    for t in [t for t in g.initializer if t.name in replaced and t.name not in used]:
        g.initializer.remove(t)


@contextmanager
def as_file(model: Any) -> Iterator[Path]:
    """``model`` written to a temporary .onnx file for the length of the ``with`` block, for
    code that takes a path (the calibration statistics read the loaded graph, whose tensor
    names are the ones quantization uses)."""
    with tempfile.TemporaryDirectory(prefix="asd-onnx-") as tmp:
        path = Path(tmp) / "loaded.onnx"
        path.write_bytes(model.SerializeToString())
        yield path

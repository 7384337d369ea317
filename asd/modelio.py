"""Loading model weights from ``.npz`` or ONNX, with errors that name the file and tensor.

* ``.npz``: a flat archive of named arrays.  Every float array with ``ndim >= 2`` is a weight
  (output channels on axis 0), every 1-D float array a bias; anything else is kept as is.
* ``.onnx``: initializers feeding the weight input of Conv, Gemm or MatMul are weights, those
  feeding the bias input of Conv or Gemm are biases, other initializers are kept as is.  The
  output-channel axis is 0 for Conv and for Gemm with ``transB=1``, the last axis for MatMul
  and for Gemm with ``transB=0``.  The file is read by :func:`asd.onnx_load.load_onnx` (the
  loader every command shares: exporter clutter folded, old opsets converted), so weights an
  exporter kept in ``Constant`` nodes are found and named as in the graph ``Model.proto``
  holds.  The ``onnx`` package is imported only here, on demand.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract.errors import AsdError


class ModelError(AsdError):
    """A model file that cannot be used; the message names the file (and tensor)."""


@dataclass
class Model:
    path: str
    weights: dict[str, NDArray] = field(default_factory=dict)
    channel_axis: dict[str, int] = field(default_factory=dict)
    biases: dict[str, NDArray] = field(default_factory=dict)
    others: dict[str, NDArray] = field(default_factory=dict)
    proto: Any = None  # the loaded (folded) onnx.ModelProto of an .onnx model


def load(path: str | Path) -> Model:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such file")
    if p.is_dir():
        raise ModelError(f"{p}: is a directory, expected a .npz or .onnx file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        model = _load_npz(p)
    elif suffix == ".onnx":
        model = _load_onnx(p)
    else:
        raise ModelError(f"{p}: unknown model type {suffix or '(none)'}; use .npz or .onnx")
    _validate(model)
    return model


def _validate(model: Model) -> None:
    if not model.weights:
        where = ("Conv, Gemm or MatMul weights that are constant after folding"
                 if model.proto is not None else "float arrays of rank >= 2")
        raise ModelError(f"{model.path}: no weight tensors found (expected {where})")
    for kind, group in (("weight", model.weights), ("bias", model.biases)):
        for name, arr in group.items():
            if arr.size == 0:
                raise ModelError(f"{model.path}: {kind} tensor {name!r} is empty")
            if not np.all(np.isfinite(arr)):
                raise ModelError(f"{model.path}: {kind} tensor {name!r} holds NaN or Inf")


def _load_npz(p: Path) -> Model:
    model = Model(str(p))
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ModelError(f"{p}: cannot read ({exc.strerror})") from None
    if head[:2] != b"PK":  # a zip's signature (an empty archive has another after "PK")
        # numpy would read a plain .npy or a pickle instead and say something about pickles.
        found = "an empty file" if not head else f"bytes {head!r}"
        raise ModelError(f"{p}: not a readable .npz archive: expected a zip of .npy arrays, "
                         f"found {found}")
    try:
        with np.load(p, allow_pickle=False) as z:
            items = [(k, z[k]) for k in z.files]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ModelError(f"{p}: not a readable .npz archive ({exc})") from None
    for name, arr in items:
        if arr.dtype.kind == "f" and arr.ndim >= 2:
            model.weights[name] = arr
            model.channel_axis[name] = 0
        elif arr.dtype.kind == "f" and arr.ndim == 1:
            model.biases[name] = arr
        else:
            model.others[name] = arr
    return model


_WEIGHT_OPS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1, None)}


def _load_onnx(p: Path) -> Model:
    try:
        from onnx import numpy_helper
    except ImportError:
        raise ModelError(
            f"{p}: reading ONNX needs the 'onnx' package (pip install 'asd-accel[onnx]')"
        ) from None
    from asd.onnx_load import OnnxLoadError, load_onnx

    try:
        proto = load_onnx(p)
    except OnnxLoadError as exc:
        raise ModelError(str(exc)) from None
    inits = {t.name: t for t in proto.graph.initializer}
    roles: dict[str, tuple[str, int]] = {}
    for node in proto.graph.node:
        if node.op_type not in _WEIGHT_OPS:
            continue
        wi, bi = _WEIGHT_OPS[node.op_type]
        if len(node.input) > wi and node.input[wi] in inits:
            axis = 0
            if node.op_type == "MatMul":
                axis = -1
            elif node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axis = 0 if trans_b else -1
            roles.setdefault(node.input[wi], ("weight", axis))
        if bi is not None and len(node.input) > bi and node.input[bi] in inits:
            roles.setdefault(node.input[bi], ("bias", 0))
    model = Model(str(p), proto=proto)
    for name, t in inits.items():
        try:
            arr = numpy_helper.to_array(t)
        except Exception as exc:
            raise ModelError(f"{p}: initializer {name!r} cannot be read ({exc})") from None
        role, axis = roles.get(name, ("other", 0))
        if role == "weight" and arr.dtype.kind == "f":
            model.weights[name] = arr
            model.channel_axis[name] = axis % max(arr.ndim, 1)
        elif role == "bias" and arr.dtype.kind == "f":
            model.biases[name] = arr
        else:
            model.others[name] = arr
    return model

"""Error-compensating rounding without retraining: bias correction and GPTQ-style rounding.

Three roundings of a weight tensor onto a scheme's codebook (per-output-channel or per-tensor
scales chosen first, by the scheme's scale search, and then kept fixed; only GPTQ may move a
channel's scale, to the candidate of :data:`SCALE_RATIOS` its own account says is best):

* ``nearest``: every weight to its nearest codebook value.
* ``bias``: nearest, then the expected output shift ``(W_q - W) E[x]``, with ``E[x]`` the mean
  layer input over the calibration images (im2col patches for a convolution, so padding is
  counted), subtracted from the bias -- the bias correction of Nagel et al. 2019, "Data-Free
  Quantization Through Weight Equalization and Bias Correction" (ICCV), here from calibration
  data rather than batch-norm statistics.  A layer without a bias keeps its error (said in the
  notes).
* ``gptq``: the layer-wise second-order rounding of Frantar et al. 2022, "GPTQ: Accurate
  Post-Training Quantization for Generative Pre-trained Transformers" (after their Optimal
  Brain Quantization, "Optimal Brain Compression", NeurIPS 2022): the columns (inputs) of the
  ``(outputs, inputs)`` weight matrix are rounded in order, and each column's rounding error
  is pushed onto the columns not yet rounded through the inverse of the layer's input Hessian
  ``H = X^T X`` (``X``: the calibration inputs as im2col rows), so the layer's output on the
  calibration data, not the weights, stays close.  Nothing in it assumes a uniform grid: each
  column is rounded by the scheme's own quantizer, so the non-uniform ASD codebook works as is.
  ``H`` gets ``DAMP`` times its mean diagonal added (and 1 on an always-zero input), so fewer
  calibration rows than columns still works (the notes say so).
* ``gptq+bias``: ``gptq``, then the bias correction of what it left (the mean output shift).

For weight-only studies the layer inputs come from the float model: one onnxruntime pass per
batch with every weight layer's input exposed as an extra graph output; see
:func:`collect_stats`.  The compiler (``programs.quantize``) feeds the same statistics from its
own graph, from the float network's or the quantized network's (int8-activation) layer inputs
(:meth:`LayerStats.add`, ``ref_mean``), and rounds with :func:`gptq_layer` and
:func:`output_shift`.  No labels, gradients or epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asd.modelio import ModelError

ROUNDINGS = ("nearest", "bias", "gptq", "gptq+bias")
DAMP = 0.01  # fraction of the mean diagonal of H added to its diagonal
BLOCK = 128  # columns per lazy-update block
ROWS_F32 = 1 << 14  # im2col rows per float32 product in LayerStats.add
# Scales GPTQ tries per output channel, as ratios to the scale that is best for nearest
# rounding (first: kept where nothing is better); docs/quantizers.md measures the choice.
SCALE_RATIOS = (1.0, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15)
ROUNDING_INPUTS = ("float", "quantized", "compensate")


@dataclass
class WeightRounding:
    """How the compiler (``programs.quantize``) puts weights onto the grid once every
    channel's scale is fixed: ``method`` from :data:`ROUNDINGS`; ``inputs``: whose layer
    inputs give each layer's Hessian and mean input, the float network's or the quantized
    network's own (int8 activations, dequantized); ``compensate``: the quantized network's, and
    the weights first move to undo the error already in those inputs
    (:func:`input_compensated`).  ``notes`` collects what the user should be told (a damped
    Hessian)."""

    method: str = "nearest"
    inputs: str = "float"
    notes: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.method not in ROUNDINGS:
            raise ModelError(f"rounding {self.method!r}: expected one of {', '.join(ROUNDINGS)}")
        if self.inputs not in ROUNDING_INPUTS:
            raise ModelError(f"rounding inputs {self.inputs!r}: expected one of "
                             f"{', '.join(ROUNDING_INPUTS)}")


_ROUNDING: ContextVar[WeightRounding | None] = ContextVar("weight_rounding", default=None)


@contextmanager
def weight_rounding(method: str, inputs: str = "float") -> Iterator[WeightRounding]:
    """Within the block, ``programs.quantize.quantize`` (and so ``compile_model``, which
    passes no rounding of its own) rounds weights this way; yields the settings, whose
    ``notes`` fill as layers are rounded."""
    rnd = WeightRounding(method, inputs)
    rnd.check()
    token = _ROUNDING.set(rnd)
    try:
        yield rnd
    finally:
        _ROUNDING.reset(token)


def current_rounding() -> WeightRounding:
    """The settings :func:`weight_rounding` put in place, else nearest rounding."""
    return _ROUNDING.get() or WeightRounding()


@dataclass
class LayerStats:
    """Calibration statistics of one weight layer's input, in the weight's column order."""

    op: str  # Conv, Gemm or MatMul
    groups: int  # Conv groups (1 otherwise); H and mean are per group
    hessian: NDArray[np.float64]  # (groups, cols, cols): sum of x x^T over im2col rows
    mean: NDArray[np.float64]  # (groups, cols): mean im2col row
    rows: int  # im2col rows seen (per group)
    bias: str | None = None  # the layer's bias initializer, if any
    # The float model's mean input when ``hessian`` and ``mean`` come from another network's
    # inputs (the compiler's quantized one): the bias correction then removes the whole mean
    # output shift ``W_q E[x_q] - W E[x]``, input quantization included.
    ref_mean: NDArray[np.float64] | None = None
    # ... and the cross moments sum x_ref x^T (groups, cols, cols): see :func:`input_compensated`.
    cross: NDArray[np.float64] | None = None

    @classmethod
    def empty(cls, op: str, groups: int, cols: int, bias: str | None = None) -> LayerStats:
        return cls(op, groups, np.zeros((groups, cols, cols)), np.zeros((groups, cols)), 0, bias)

    def add(self, r: NDArray) -> None:
        """Accumulate im2col rows ``r`` of shape ``(groups, rows, cols)``.  float32 rows are
        multiplied in float32 (``collect_stats``: twice the BLAS rate and half the memory
        traffic of float64; at most ``ROWS_F32`` rows per product, so its rounding error stays
        below about 1e-5 of an entry) and summed into the float64 totals; float64 rows (the
        compiler's) in float64."""
        r = np.asarray(r)
        if r.dtype != np.float32:
            r = r.astype(np.float64, copy=False)
        step = ROWS_F32 if r.dtype == np.float32 else max(r.shape[1], 1)
        for i in range(0, r.shape[1], step):
            c = r[:, i:i + step]
            # matmul, not einsum: BLAS, and numpy's a.T @ a takes its symmetric (syrk) path.
            self.hessian += np.matmul(c.transpose(0, 2, 1), c)
        n = self.rows + r.shape[1]
        self.mean = (self.mean * self.rows + r.sum(axis=1, dtype=np.float64)) / max(n, 1)
        self.rows = n

    def reorder(self, order: NDArray[np.intp]) -> None:
        """Columns accumulated in another order (:func:`patches`' ``(kh, kw, c)``) put into
        the weight's: column ``k`` becomes the accumulated column ``order[k]``."""
        ix = np.ix_(np.arange(self.groups), order, order)
        self.hessian = self.hessian[ix]
        self.mean = self.mean[:, order]
        if self.ref_mean is not None:
            self.ref_mean = self.ref_mean[:, order]
        if self.cross is not None:
            self.cross = self.cross[ix]

    def damping_note(self, name: str) -> str | None:
        """What the user should know when the Hessian is rank-deficient (fewer rows than
        columns): it still works, damped."""
        cols = self.hessian.shape[-1]
        if self.rows >= cols:
            return None
        return (f"{name}: {self.rows} calibration rows for {cols} inputs: the Hessian is "
                f"rank-deficient; damped by {DAMP} of its mean diagonal")


@dataclass
class Calibration:
    images: int
    layers: dict[str, LayerStats] = field(default_factory=dict)  # by weight name


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return default


def patches(x: NDArray, kernel: tuple[int, int], strides: tuple[int, int],
            pads: tuple[int, int, int, int], dilations: tuple[int, int], groups: int) -> NDArray:
    """``(groups, N*OH*OW, kh*kw*C/groups)`` patches of an NHWC input, columns in ``(kh, kw,
    c)`` order: each copy writes whole channel vectors, where the weight's ``(c, kh, kw)``
    order scatters them ``kh*kw`` elements apart (3x slower on ResNet-18's 3x3 layers here).
    :func:`col_order` maps the columns to the weight's order."""
    n, h, w, c = x.shape
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3]), (0, 0)))
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilations[0], j * dilations[1]
            cols[:, :, :, i, j, :] = xp[:, r0:r0 + strides[0] * (oh - 1) + 1:strides[0],
                                        c0:c0 + strides[1] * (ow - 1) + 1:strides[1]]
    if groups == 1:
        return cols.reshape(1, n * oh * ow, kh * kw * c)
    cg = c // groups
    return cols.reshape(n * oh * ow, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(
        groups, n * oh * ow, kh * kw * cg)


def col_order(kernel: tuple[int, int], cin_per_group: int) -> NDArray[np.intp]:
    """For each column of a Conv weight ``(M, C/groups, kh, kw)`` reshaped to ``(M, -1)``, its
    column in :func:`patches`' ``(kh, kw, c)`` order."""
    kh, kw = kernel
    return np.arange(kh * kw * cin_per_group).reshape(kh, kw, cin_per_group).transpose(
        2, 0, 1).reshape(-1)


def im2col(x: NDArray, kernel: tuple[int, int], strides: tuple[int, int],
           pads: tuple[int, int, int, int], dilations: tuple[int, int], groups: int) -> NDArray:
    """``(groups, N*OH*OW, C/groups*kh*kw)`` patches of an NCHW input, in the column order of
    a Conv weight ``(M, C/groups, kh, kw)`` reshaped to ``(M, -1)``."""
    p = patches(x.transpose(0, 2, 3, 1), kernel, strides, pads, dilations, groups)
    return p[:, :, col_order(kernel, x.shape[1] // groups)]


def _layer_rows(node: Any, x: NDArray, wshape: tuple[int, ...]
                ) -> tuple[NDArray, NDArray[np.intp] | None]:
    """The layer input ``x`` as ``(groups, rows, cols)`` rows, and for a convolution the
    :func:`col_order` that maps them to the weight's columns (``None``: already in order)."""
    if node.op_type == "Conv":
        if x.ndim != 4:
            raise ModelError(f"Conv {node.name!r}: only 2-D convolutions are calibrated")
        k = tuple(_attr(node, "kernel_shape", wshape[2:]))
        pads = tuple(_attr(node, "pads", [0, 0, 0, 0]))
        if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or len(k) != 2:
            raise ModelError(f"Conv {node.name!r}: auto_pad or kernel shape not supported")
        kernel, groups = (int(k[0]), int(k[1])), int(_attr(node, "group", 1))
        return (patches(x.transpose(0, 2, 3, 1), kernel, tuple(_attr(node, "strides", [1, 1])),
                        pads, tuple(_attr(node, "dilations", [1, 1])), groups),
                col_order(kernel, x.shape[1] // groups))
    if node.op_type == "Gemm" and _attr(node, "transA", 0):
        x = x.T
    return x.reshape(1, -1, x.shape[-1]), None


def collect_stats(model_path: str | Path, x: NDArray, batch: int = 32,
                  progress: Callable[[int], None] | None = None) -> Calibration:
    """Hessians and mean inputs of every Conv/Gemm/MatMul weight layer over images ``x``.

    NaN/Inf in the images or in a layer input raise :class:`ModelError` naming it."""
    import onnx
    import onnxruntime as ort

    if x.size == 0 or len(x) == 0:
        raise ModelError("calibration needs at least one image")
    if not np.all(np.isfinite(x)):
        raise ModelError("NaN or Inf in the calibration images")
    proto = onnx.load(str(model_path))
    inits = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    layers: dict[str, tuple[Any, str]] = {}  # weight name -> (node, input tensor)
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 \
                and node.input[1] in inits and node.input[0] not in inits:
            layers.setdefault(node.input[1], (node, node.input[0]))
    biases = {w: n.input[2] for w, (n, _) in layers.items()
              if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in inits}
    outs = [o.name for o in proto.graph.output]
    extra = sorted({t for _, t in layers.values()} - set(outs))
    for t in extra:
        proto.graph.output.append(onnx.ValueInfoProto(name=t))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    names = outs + extra
    cal = Calibration(images=len(x))
    orders: dict[str, NDArray[np.intp]] = {}
    for i in range(0, len(x), batch):
        got = dict(zip(names, sess.run(names, {inp: x[i:i + batch].astype(np.float32)}),
                       strict=True))
        for wname, (node, tname) in layers.items():
            a = got[tname]
            if not np.all(np.isfinite(a)):
                raise ModelError(f"NaN or Inf in layer input {tname!r} (of {wname!r})")
            # float32 as onnxruntime gives it: see LayerStats.add
            r, order = _layer_rows(node, a.astype(np.float32, copy=False), inits[wname])
            if order is not None:
                orders[wname] = order
            st = cal.layers.get(wname)
            if st is None:
                st = cal.layers[wname] = LayerStats.empty(node.op_type, r.shape[0],
                                                          r.shape[2], biases.get(wname))
            st.add(r)
        if progress:
            progress(min(batch, len(x) - i))
    for wname, order in orders.items():
        cal.layers[wname].reorder(order)
    return cal


def weight_matrix(w: NDArray, axis: int) -> NDArray[np.float64]:
    """``(outputs, inputs)`` view of a weight with its output channels on ``axis``."""
    return np.moveaxis(np.asarray(w, dtype=np.float64), axis, 0).reshape(w.shape[axis], -1)


def from_matrix(m: NDArray, shape: tuple[int, ...], axis: int) -> NDArray:
    moved = list(shape)
    moved.insert(0, moved.pop(axis))
    return np.moveaxis(m.reshape(moved), 0, axis)


def inverse_factor(h: NDArray[np.float64], damp: float = DAMP) -> NDArray[np.float64]:
    """Upper Cholesky factor ``U`` of ``(H + damp*mean(diag H)*I)^-1`` (``H^-1 = U^T U``);
    an input that is always zero gets 1 on its diagonal."""
    h = h.copy()
    d = np.diag(h).copy()
    dead = d <= 0
    d[dead] = 1.0
    h[np.diag_indices_from(h)] = d
    h[np.diag_indices_from(h)] += damp * float(np.mean(d))
    hinv = np.linalg.inv(h)
    hinv = (hinv + hinv.T) / 2
    return np.asarray(np.linalg.cholesky(hinv).T, dtype=np.float64)


def gptq(w: NDArray[np.float64], u: NDArray[np.float64],
         round_cols: Callable[[NDArray[np.float64], int, int], NDArray[np.float64]],
         block: int = BLOCK) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Second-order rounding of ``w`` (outputs x inputs) given ``U`` from :func:`inverse_factor`.

    ``round_cols(cols, c0, c1)`` rounds columns ``c0:c1`` (given as a 2-D block) onto the grid.
    Returns the compensated weights just before each column was rounded (rounding them with
    the same quantizer gives the GPTQ result) and each row's output error ``e H e^T`` (``H``
    damped, as :func:`inverse_factor` had it): each column's rounding error over ``U[j, j]``,
    squared and summed, as Optimal Brain Quantization accounts it.  Blocks of columns are
    updated lazily (GPTQ's trick): inside a block column by column, the rest of the matrix
    once per block.
    """
    w = w.copy()
    n = w.shape[1]
    loss = np.zeros(w.shape[0])
    for b0 in range(0, n, block):
        b1 = min(b0 + block, n)
        err = np.empty((w.shape[0], b1 - b0))
        for j in range(b0, b1):
            col = w[:, j:j + 1]
            e = (col - round_cols(col, j, j + 1)) / u[j, j]
            w[:, j + 1:b1] -= e * u[j, j + 1:b1]
            err[:, j - b0] = e[:, 0]
        loss += np.einsum("ij,ij->i", err, err)
        if b1 < n:
            w[:, b1:] -= err @ u[b0:b1, b1:]
    return w, loss


def check_calibration(cal: Calibration, name: str, cols: int) -> LayerStats:
    st = cal.layers.get(name)
    if st is None:
        raise ModelError(f"tensor {name!r}: no calibration input (not a Conv/Gemm/MatMul "
                         "weight fed by a computed tensor)")
    if st.hessian.shape[-1] != cols // st.groups and st.hessian.shape[-1] * st.groups != cols:
        raise ModelError(f"tensor {name!r}: calibration columns {st.hessian.shape[-1]} do not "
                         f"match the weight's {cols}")
    return st


def bias_shift(dq: NDArray[np.float64], st: LayerStats) -> NDArray[np.float64]:
    """Expected output change ``(W_q - W) E[x]`` per output channel, ``dq = W_q - W``."""
    g = st.groups
    rows = dq.shape[0] // g
    return np.concatenate([dq[k * rows:(k + 1) * rows] @ st.mean[k] for k in range(g)])


def gptq_layer(wm: NDArray[np.float64], st: LayerStats,
               round_at: Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.float64]],
               scales: Sequence[NDArray[np.float64]], block: int = BLOCK, act_order: bool = True
               ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """:func:`gptq` of an ``(outputs, inputs)`` matrix group by group (a grouped convolution
    has one Hessian per group) at each candidate of per-row ``scales``, keeping per output row
    the candidate whose rounding leaves the least output error on the calibration inputs
    (:func:`gptq`'s account).  ``round_at(cols, s)`` rounds a block of columns of rows at
    scales ``s`` (one per row) onto the grid.  Rows are rounded independently, so choosing
    per row is exact; the scale that is best for nearest rounding is not best once the error
    is compensated (docs/quantizers.md measures it).  Returns the compensated weights
    (rounding them at the chosen scales gives the result) and each row's candidate index (the
    first of equal errors: put the default scale first).  ``act_order``: columns in order of
    decreasing ``diag(H)`` (the GPTQ authors' "act-order": the inputs that carry the most
    energy are rounded first, while the most columns are left to take their error)."""
    per = wm.shape[0] // st.groups
    k = len(scales)
    target = np.empty_like(wm)
    choice = np.zeros(wm.shape[0], np.intp)
    for g in range(st.groups):
        rows = slice(g * per, (g + 1) * per)
        h = st.hessian[g]
        perm = (np.argsort(-np.diag(h), kind="stable") if act_order
                else np.arange(h.shape[0]))
        u = inverse_factor(h[np.ix_(perm, perm)])
        # Every candidate's rows stacked: one pass over the columns for all of them.
        ws = np.concatenate([wm[rows][:, perm]] * k)
        ss = np.concatenate([np.asarray(s, np.float64)[rows] for s in scales])

        def round_cols(c: NDArray[np.float64], c0: int, c1: int,
                       ss: NDArray[np.float64] = ss) -> NDArray[np.float64]:
            return round_at(c, ss)

        out, loss = gptq(ws, u, round_cols, block)
        best = np.argmin(loss.reshape(k, per), axis=0)
        target[rows] = out.reshape(k, per, -1)[best, np.arange(per)][:, np.argsort(perm)]
        choice[rows] = best
    return target, choice


def output_shift(wq: NDArray[np.float64], w: NDArray[np.float64], st: LayerStats
                 ) -> NDArray[np.float64]:
    """Mean output change per output channel, ``W_q E[x_q] - W E[x]``, to subtract from the
    bias; with no ``ref_mean`` both inputs are the same and this is :func:`bias_shift`."""
    if st.ref_mean is None:
        return bias_shift(wq - w, st)
    g = st.groups
    rows = wq.shape[0] // g
    return np.concatenate([wq[k * rows:(k + 1) * rows] @ st.mean[k]
                           - w[k * rows:(k + 1) * rows] @ st.ref_mean[k] for k in range(g)])


def conv_stats(x: NDArray, wshape: tuple[int, ...], strides: tuple[int, int],
               pads: tuple[int, int, int, int], groups: int, tensor: str,
               ref: NDArray | None = None, cross: bool = False) -> LayerStats:
    """:class:`LayerStats` of a convolution's channel-innermost (NHWC) input batch ``x`` for a
    ``(Co, Ci/groups, KH, KW)`` weight; ``ref``: the float network's input when ``x`` is
    another network's (its mean becomes ``ref_mean``; ``cross``: its cross moments with ``x``
    too).  NaN/Inf raise naming ``tensor``."""
    _, cig, kh, kw = wshape
    for v in (x, ref):
        if v is not None and not np.all(np.isfinite(v)):
            raise ModelError(f"NaN or Inf in the calibration values of {tensor}")
    st = LayerStats.empty("Conv", groups, cig * kh * kw)
    ref_sum = np.zeros_like(st.mean)
    n, h, w = x.shape[:3]
    per_image = (h + kh) * (w + kw) * cig * groups * kh * kw
    chunk = max(1, (1 << 23) // per_image)  # im2col of about 64 MB at a time

    def rows(v: NDArray) -> NDArray:
        return im2col(np.asarray(v, np.float64).transpose(0, 3, 1, 2), (kh, kw), strides,
                      pads, (1, 1), groups)

    if cross:
        st.cross = np.zeros_like(st.hessian)
    for i in range(0, n, chunk):
        r = rows(x[i:i + chunk])
        st.add(r)
        if ref is not None:
            rr = rows(ref[i:i + chunk])
            ref_sum += rr.sum(axis=1)
            if st.cross is not None:
                st.cross += np.matmul(rr.transpose(0, 2, 1), r)
    if ref is not None:
        st.ref_mean = ref_sum / max(st.rows, 1)
    return st


def input_compensated(wm: NDArray[np.float64], st: LayerStats) -> NDArray[np.float64]:
    """Float weights that best map the layer's actual inputs to its float outputs:
    ``W' = argmin ||W X_ref - W' X||^2 + lam ||W' - W||^2 = W (C + lam I)(H + lam I)^-1`` with
    ``C = sum x_ref x^T`` (:attr:`cross`) and ``lam`` GPTQ's damping (so ``W' = W`` when the
    inputs are exact), per group, so the error the earlier layers' rounding left in
    ``X`` is undone before ``W'`` is rounded (the asymmetric target of GPTQ variants that
    calibrate on quantized inputs).  Without cross moments ``W`` is returned."""
    if st.cross is None:
        return wm
    per = wm.shape[0] // st.groups
    out = np.empty_like(wm)
    for g in range(st.groups):
        h, c = st.hessian[g].copy(), st.cross[g].copy()
        d = np.diag(h).copy()
        dead = d <= 0
        d[dead] = 1.0
        lam = DAMP * float(np.mean(d))
        h[np.diag_indices_from(h)] = d + lam
        c[np.diag_indices_from(c)] += np.where(dead, 1.0, 0.0) + lam
        rows = slice(g * per, (g + 1) * per)
        out[rows] = np.linalg.solve(h, (wm[rows] @ c).T).T  # H symmetric
    return out

"""References for the compiled network.

* :func:`int_forward` - the quantized network in plain numpy integers: the bit-exact target
  every backend must reproduce.  It uses the integer semantics of :mod:`contract.semantics` (the
  one written definition) but no emulator.
* :func:`float_forward` - the float network in numpy over the same IR (calibration needs the
  intermediate tensors); :func:`onnx_forward` runs the original model through onnxruntime.
* :func:`error_bounds` - per element, how far the dequantized integer result may lie from the
  float result given the scales, weights and rounding of the quantized network.

Host tensors are channel-innermost ``(N, H, W, C)`` like the accelerator's memory; a flattened
tensor is ``(N, 1, 1, K)`` with its features in ONNX's NCHW order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import blas, semantics

from . import batchint, hostops
from .graph import Graph, Layer
from .qnet import QLayer, QNet

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def windows(x: NDArray, kernel: tuple[int, int], stride: tuple[int, int],
            pads: tuple[int, int, int, int], pad_value: float = 0) -> NDArray:
    """``(N, OH, OW, KH, KW, C)`` windows of a padded ``(N, H, W, C)`` tensor (a view)."""
    t, l, b, r = pads
    if any(pads):
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=pad_value)
    v = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(1, 2))
    v = v[:, :: stride[0], :: stride[1]]  # (N, OH, OW, C, KH, KW)
    return v.transpose(0, 1, 2, 4, 5, 3)


def conv_sum(x: NDArray, w: NDArray, stride: tuple[int, int], pads: tuple[int, int, int, int],
             groups: int, pad_value: float = 0) -> F64:
    """``sum x*w`` of a grouped convolution in float64: NHWC input, ``(Co, Ci/g, KH, KW)``
    weights, the border holding ``pad_value``.  Integer operands below 2^53 in every partial
    sum give exact integers."""
    co, cig, kh, kw = w.shape
    v = windows(np.asarray(x, np.float64), (kh, kw), stride, pads, pad_value)
    n, oh, ow = v.shape[:3]
    cog = co // groups
    out = np.empty((n, oh, ow, co), np.float64)
    for g in range(groups):
        cols = v[..., g * cig:(g + 1) * cig].reshape(n * oh * ow, kh * kw * cig)
        wg = np.asarray(w[g * cog:(g + 1) * cog], np.float64).transpose(0, 2, 3, 1)
        out[..., g * cog:(g + 1) * cog] = (cols @ wg.reshape(cog, -1).T).reshape(n, oh, ow, cog)
    return out


def flatten_nhwc(x: NDArray) -> NDArray:
    """Flatten in ONNX's NCHW order, kept as ``(N, 1, 1, K)``."""
    return x.transpose(0, 3, 1, 2).reshape(x.shape[0], 1, 1, -1)


def nchw_to_nhwc(x: NDArray) -> NDArray:
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1))


def to_user(y: NDArray, graph: Graph) -> NDArray:
    """A host output ``(N, H, W, C)`` in the model's own layout (``N x K`` or NCHW)."""
    out = y.transpose(0, 3, 1, 2)
    return out.reshape(out.shape[0], -1) if graph.output_dims == 2 else out


# Float ---------------------------------------------------------------------------------------
def _act_float(lay: Layer, pre: F64) -> F64:
    if lay.act == "relu":
        return np.maximum(pre, 0)
    if lay.act == "clip":
        return np.clip(pre, 0, lay.act_hi)
    if lay.act in ("leaky", "prelu"):
        assert lay.slope is not None
        return np.where(pre < 0, pre * lay.slope, pre)
    return pre


def float_layer(lay: Layer, ins: list[F64]) -> tuple[F64, F64]:
    """``(pre-activation, output)`` of one layer in float64."""
    if lay.op == "conv":
        assert lay.weight is not None and lay.bias is not None
        pre = conv_sum(ins[0], lay.weight, lay.stride, lay.pads, lay.groups) + lay.bias
    elif lay.op == "maxpool":
        pre = windows(ins[0], lay.kernel, lay.stride, lay.pads, -np.inf).max(axis=(3, 4))
    elif lay.op == "avgpool":
        pre = windows(ins[0], lay.kernel, lay.stride, lay.pads).mean(axis=(3, 4))
    elif lay.op == "add":
        pre = ins[0] + ins[1]
    elif lay.op == "concat":
        pre = np.concatenate(ins, axis=3)
    elif lay.op == "flatten":
        pre = flatten_nhwc(ins[0])
    elif lay.op == "softmax":
        e = np.exp(ins[0] - ins[0].max(axis=3, keepdims=True))
        pre = e / e.sum(axis=3, keepdims=True)
    elif lay.op in hostops.HOST_COMPUTE_OPS:
        pre = hostops.float_op(lay, ins)
    else:
        raise ValueError(f"layer {lay.name}: no float semantics for {lay.op}")
    return pre, _act_float(lay, pre)


def float_forward(graph: Graph, x_nchw: NDArray, pre: dict[str, F64] | None = None
                  ) -> dict[str, F64]:
    """Every tensor of the float network (NHWC).  ``pre`` collects pre-activations."""
    vals: dict[str, F64] = {graph.input: nchw_to_nhwc(np.asarray(x_nchw, np.float64))}
    for lay in graph.layers:
        p, y = float_layer(lay, [vals[t] for t in lay.inputs])
        if pre is not None:
            pre[lay.name] = p
        vals[lay.output] = y
    return vals


def onnx_forward(model: str | Path | Any, x_nchw: NDArray, tensors: list[str] | None = None
                 ) -> dict[str, NDArray]:
    """The original model through onnxruntime; ``tensors`` are extra intermediate outputs."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    m = onnx.ModelProto.FromString(m.SerializeToString())
    names = [o.name for o in m.graph.output]
    for t in tensors or []:
        if t not in names:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
            names.append(t)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = blas.ort_threads()
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    outs = sess.run(names, {inp: np.asarray(x_nchw, np.float32)})
    return dict(zip(names, outs))


# Integer -------------------------------------------------------------------------------------
def quantize_input(x_nchw: NDArray, scale: float, act_bits: int, zero: int = 0) -> I64:
    """Host-side quantization of the network input: ``x / scale`` rounded half to even (as
    ONNX QuantizeLinear rounds), plus the zero point, saturated."""
    lim = (1 << (act_bits - 1))
    q = np.round(nchw_to_nhwc(np.asarray(x_nchw, np.float64)) / scale) + zero
    return np.clip(q, -lim, lim - 1).astype(np.int64)


def int_layer(ql: QLayer, qnet: QNet, ins: list[I64], literal: bool = False) -> I64:
    """One layer in integers, exactly as the accelerator computes it (NHWC, batch first).

    Convolutions, additions and poolings go through :mod:`programs.batchint` (float BLAS and
    fused requantization where bounds prove them exact); ``literal`` runs the definition
    below instead, which the tests hold the fast paths against."""
    c = qnet.config
    lay = ql.layer
    if not literal:
        fast = batchint.int_layer(ql, qnet, ins)
        if fast is not None:
            return fast
    if lay.op == "maxpool":
        return windows(ins[0], lay.kernel, lay.stride, lay.pads, c.act_min).max(axis=(3, 4))
    if lay.op == "concat":
        return np.concatenate(ins, axis=3)
    if lay.op == "flatten":
        return flatten_nhwc(ins[0])
    if lay.op == "softmax":
        return ins[0]  # on the host, in float, after dequantization
    if lay.op in hostops.HOST_COMPUTE_OPS:
        return hostops.int_layer(ql, ins, c.act_bits)
    # The border of a padded input holds its zero point (the padding is a real 0).
    pad = qnet.zero(lay.inputs[0])
    if lay.op == "conv":
        assert ql.w_int is not None and ql.bias_int is not None
        acc = conv_sum(ins[0], ql.w_int, lay.stride, lay.pads, lay.groups, pad).astype(np.int64)
        acc = semantics.wrap(acc + ql.bias_int, c.acc_bits)
    elif lay.op == "avgpool":
        s = windows(ins[0], lay.kernel, lay.stride, lay.pads, pad).sum(axis=(3, 4),
                                                                         dtype=np.int64)
        acc = semantics.product(s, qnet.unit_code, c.weights, c.exp_bits)
        # A bias (BIAS instead of CLR) only where zero points need one: it starts the sum.
        acc = semantics.wrap(acc if ql.bias_int is None else ql.bias_int + acc, c.acc_bits)
    elif lay.op == "add":
        assert ql.add_codes is not None
        acc = (semantics.product(ins[0], ql.add_codes[0], c.weights, c.exp_bits)
               + semantics.product(ins[1], ql.add_codes[1], c.weights, c.exp_bits))
        acc = semantics.wrap(acc if ql.bias_int is None else ql.bias_int + acc, c.acc_bits)
    else:
        raise ValueError(f"layer {lay.name}: no integer semantics for {lay.op}")
    y = semantics.requantize(acc, ql.req_params, c.exp_bits, c.act_bits, ql.relu)
    if ql.slope_params is not None:
        y = semantics.leaky(y, ql.slope_params, c.exp_bits, c.act_bits)
    return np.asarray(y, np.int64)


def int_forward(qnet: QNet, x_nchw: NDArray, literal: bool = False) -> dict[str, I64]:
    """Every tensor of the quantized network in integers (NHWC), from a float NCHW input
    (``literal``: by the definition alone, see int_layer)."""
    g = qnet.graph
    vals = {g.input: quantize_input(x_nchw, qnet.scales[g.input], qnet.config.act_bits,
                                    qnet.zero(g.input))}
    for lay in qnet.graph.layers:
        vals[lay.output] = int_layer(qnet.qlayers[lay.name], qnet, [vals[t] for t in lay.inputs],
                                     literal)
    return vals


def dequantize(qnet: QNet, tensor: str, v: I64) -> F64:
    """Float value of an integer tensor; the host softmax applies here."""
    lay = qnet.graph.producer(tensor)
    if lay is not None and lay.op == "softmax":
        t = lay.inputs[0]
        x = (v - qnet.zero(t)) * qnet.scales[t]
        e = np.exp(x - x.max(axis=3, keepdims=True))
        return np.asarray(e / e.sum(axis=3, keepdims=True), np.float64)
    return np.asarray((v - qnet.zero(tensor)) * qnet.scales[tensor], np.float64)


def zero_offset(qnet: QNet, lay: Layer) -> F64:
    """Per output channel, what the layer's integer bias holds for the zero points, in
    accumulator units: the inputs' zero points through the weights (subtracted by the bias),
    and the output's divided by the requantization factor (added).  Zero without zero
    points.  ``float bias = (bias_int - zero_offset) * requant factor * s_y``."""
    ql = qnet.qlayers[lay.name]
    mult = ql.mult_float()
    z_in = [qnet.zero(t) for t in lay.inputs]
    if lay.op == "conv":
        assert ql.w_int is not None
        through = z_in[0] * ql.w_int.reshape(len(ql.w_int), -1).sum(axis=1)
    elif lay.op == "avgpool":
        through = np.full(len(mult), z_in[0] * qnet.unit_int * lay.kernel[0] * lay.kernel[1])
    elif lay.op == "add":
        assert ql.add_ints is not None
        through = np.full(len(mult), z_in[0] * ql.add_ints[0] + z_in[1] * ql.add_ints[1])
    else:
        raise ValueError(f"layer {lay.name}: {lay.op} has no bias")
    return np.asarray(qnet.zero(lay.output) / mult - through, np.float64)


# Error bound ---------------------------------------------------------------------------------
def _sat_excess(y: F64, s: float, act_bits: int, zero: int = 0) -> F64:
    """How far a float value lies outside what the output integer range can hold."""
    lo, hi = (-(1 << (act_bits - 1)) - zero) * s, ((1 << (act_bits - 1)) - 1 - zero) * s
    return np.maximum(0, np.maximum(y - hi, lo - y))


def error_bounds(qnet: QNet, x_nchw: NDArray) -> tuple[dict[str, F64], dict[str, F64]]:
    """Float tensors and, per element, a bound on ``|dequantized integer - float|``.

    The integer network computes, per layer, ``s_y * sat(rnd(t))`` where ``t`` is an exact
    linear function of the integer inputs with *effective* float weights (the quantized
    weights times the requantization factor actually used).  So the error of a layer is at
    most: its input errors through the absolute effective weights, plus the float inputs
    through the weight differences, plus the bias difference, plus half an output step for
    the rounding, plus what saturation cuts off; max-pool, ReLU and concatenation pass errors
    through unchanged (they are 1-Lipschitz per element).
    """
    g = qnet.graph
    c = qnet.config
    x = nchw_to_nhwc(np.asarray(x_nchw, np.float64))
    s_in = qnet.scales[g.input]
    xq = dequantize(qnet, g.input, quantize_input(x_nchw, s_in, c.act_bits, qnet.zero(g.input)))
    vals: dict[str, F64] = {g.input: x}
    errs: dict[str, F64] = {g.input: np.abs(xq - x)}
    for lay in g.layers:
        ql = qnet.qlayers[lay.name]
        ins = [vals[t] for t in lay.inputs]
        eins = [errs[t] for t in lay.inputs]
        pre, y = float_layer(lay, ins)
        vals[lay.output] = y
        if lay.op == "maxpool":
            errs[lay.output] = windows(eins[0], lay.kernel, lay.stride, lay.pads).max(axis=(3, 4))
            continue
        if lay.op in ("concat", "flatten"):
            errs[lay.output] = float_layer(lay, eins)[1]
            continue
        if lay.op in hostops.HOST_COMPUTE_OPS:
            errs[lay.output] = hostops.error_bound(ql, qnet.scales, c.act_bits, ins, eins, y)
            continue
        if lay.op == "softmax":
            errs[lay.output] = np.broadcast_to(eins[0].max(axis=3, keepdims=True), y.shape).copy()
            continue
        s_y = qnet.scales[lay.output]
        mult = ql.mult_float()  # per output channel, m / 2^sh
        # The bias's part that is no zero point's, at the output's scale (0 without a bias).
        b_eff = 0.0 if ql.bias_int is None else (ql.bias_int - zero_offset(qnet, lay)) * mult * s_y
        if lay.op == "conv":
            assert ql.w_int is not None and ql.bias_int is not None and lay.weight is not None
            assert lay.bias is not None
            s_x = qnet.scales[lay.inputs[0]]
            w_eff = ql.w_int * (mult * s_y / s_x)[:, None, None, None]
            e = (conv_sum(eins[0], np.abs(w_eff), lay.stride, lay.pads, lay.groups)
                 + conv_sum(np.abs(ins[0]), np.abs(w_eff - lay.weight), lay.stride, lay.pads,
                            lay.groups) + np.abs(b_eff - lay.bias))
        elif lay.op == "avgpool":
            s_x = qnet.scales[lay.inputs[0]]
            k = lay.kernel[0] * lay.kernel[1]
            a_eff = qnet.unit_int * mult * s_y / s_x
            e = (windows(eins[0], lay.kernel, lay.stride, lay.pads).sum(axis=(3, 4)) * a_eff
                 + windows(np.abs(ins[0]), lay.kernel, lay.stride, lay.pads).sum(axis=(3, 4))
                 * np.abs(a_eff - 1.0 / k)) + np.abs(b_eff)
        else:  # add
            assert ql.add_ints is not None
            e = np.zeros_like(pre)
            for t, xin, ein, w in zip(lay.inputs, ins, eins, ql.add_ints):
                a_eff = w * mult * s_y / qnet.scales[t]
                e = e + ein * a_eff + np.abs(xin) * np.abs(a_eff - 1.0)
            e = e + np.abs(b_eff)
        e = e + 0.5 * s_y
        if lay.act in ("leaky", "prelu"):
            assert lay.slope is not None and ql.slope_ints is not None
            sq = ql.slope_ints / float(1 << (c.window - 1))
            # The pre-activation saturates before the slope applies.
            e = (e + _sat_excess(pre, s_y, c.act_bits, qnet.zero(lay.output))
                 ) * np.maximum(1.0, np.abs(sq))
            e = e + np.where(pre < 0, np.abs(pre) * np.abs(sq - lay.slope), 0) + 0.5 * s_y
        else:
            e = e + _sat_excess(y, s_y, c.act_bits, qnet.zero(lay.output))
        errs[lay.output] = e
    return vals, errs

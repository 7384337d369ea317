"""Quantization of a whole network for the shift-add accelerator.

* Weights: per output channel ``w ~ s_w[c] * w_int / 2^(W-1)`` with ``w_int`` from a weight
  scheme whose values the two-digit hardware code holds (ASD with two digits, its CSD-rounded
  variant, one-digit powers of two).
* Activations: int8 (``act_bits``) per tensor, ``real = s * (q - z)``; the range is the
  calibrated max-abs (or a percentile of |x|) over a few inputs.  Symmetric (``z = 0``,
  ``s = range / (2^(act_bits-1) - 1)``) by default; a tensor that is non-negative by
  construction (after ReLU or Clip(0, hi), max/average pooling, concatenation, flattening or
  an Add of such; the network input when every calibration value is >= 0) gets the zero point
  ``z = act_min`` (-128) and ``s = range / (2^act_bits - 1)``: all 256 codes instead of 128
  (``act_zero_point="auto"``, :func:`zero_points`).  Only where every layer that writes or reads
  the tensor handles it (:data:`ZERO_POINT_WRITERS`, :data:`ZERO_POINT_READERS`); the integer
  semantics stay as they are: the zero points live in the integer biases (a conv's
  ``-z_in * sum(w)`` and ``z_out / M``; average pool and Add get a BIAS word where they need
  one), the padded border holds ``z_in``, and the saturation at ``act_min`` is the ReLU.
  Tensors that must share a scale (Concat inputs and output, max-pool and flatten in/out) get
  the largest range of their group and one zero point.
* Biases at the accumulator's scale: ``bias_int = round(b / (s_x * s_w[c] / 2^(W-1)))``.
* Requantization ``y = sat(rnd(acc * m, sh))`` where ``m`` is a two-digit value, so the
  datapath stays multiplier-less.  A two-digit ``m`` is coarse (up to ~8% off), so the weight
  scale - free per channel - is chosen among the values that make
  ``M_c = s_x * s_w[c] / (2^(W-1) * s_y)`` *exactly* ``m / 2^sh`` (requant-aware scale search,
  least weight MSE wins).  Average pooling and Add have no weights; their output scale is free
  instead and is snapped (upwards, so nothing new saturates) to make ``M`` exact.
* LeakyReLU/PReLU slopes are two-digit codes ``slope * 2^(W-1)`` applied by ACT.
* ReLU6 (Clip 0..6): the output scale is ``min(range, 6) / 127`` so saturation clamps at 6.
* Weight rounding (:class:`WeightRounding`): with every channel's scale fixed by the search
  above (GPTQ alone may move it to a nearby exact multiplier that leaves less output error,
  :func:`asd.rounding.gptq_layer`), the weights go onto the scheme's grid by nearest rounding
  or by an error-compensating
  rounding of :mod:`asd.rounding` (``bias``, ``gptq``, ``gptq+bias``: the same code as
  ``asd quantize --rounding``), with each conv's input statistics from the calibration images
  through the float network or through the quantized network itself (``inputs="quantized"``:
  the int8 activations the accelerator really sees, each layer after the ones before it are
  fixed); a bias correction goes into the integer bias.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asd.rounding import ROUNDING_INPUTS as ROUNDING_INPUTS
from asd.rounding import WeightRounding, current_rounding
from asd.rounding import weight_rounding as weight_rounding
from contract import hwcode
from contract import weights as wformats
from contract.config import AccelConfig

from . import hostops
from .calibration import calibrate
from .graph import Graph
from .qnet import QLayer, QNet, QuantizeError
from .reference import dequantize, int_layer, quantize_input, zero_offset
from .scale_search import NearestTable, quantize_rows, search_multipliers
from .zero_points import ACT_ZERO_POINTS as ACT_ZERO_POINTS
from .zero_points import ZERO_POINT_READERS as ZERO_POINT_READERS
from .zero_points import ZERO_POINT_WRITERS as ZERO_POINT_WRITERS
from .zero_points import ScaleGroups as _Groups
from .zero_points import logits, output_zero_point, zero_points

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


# Weight schemes ------------------------------------------------------------------------------
# A scheme maps weights in value units (w / s) to integers in units 2^-(W-1).  Schemes come from
# asd's registry; the compiler only needs "quantize at this scale", which every scheme has.
SchemeFn = Callable[[F64], I64]

# Registry options that follow the accelerator's exponent width.
_EXP_BITS_SCHEMES = ("asd", "pot", "shiftcnn")


def weight_scheme(name: str, exp_bits: int, *, weights: str = "asd", **options: Any
                  ) -> tuple[SchemeFn, float]:
    """``(quantizer, largest value)`` of a registry scheme; the quantizer refuses values the
    WMEM weight format ``weights`` (contract.weights) cannot hold (so on the two-digit code
    int8, minifloats etc. fail with a clear error)."""
    from asd.schemes import available, get_scheme

    if name in _EXP_BITS_SCHEMES:
        options = {"exp_bits": exp_bits, **options}
    try:
        sch = get_scheme(name, **options)
    except ValueError as exc:
        raise QuantizeError(str(exc)) from None
    wfmt = wformats.get(weights)
    unit = float(wfmt.unit(exp_bits))

    checked: set[int] = set()

    def fn(v: F64) -> I64:
        v2 = np.asarray(v, np.float64).reshape(v.shape[0], -1)
        cb = getattr(getattr(sch, "fmt", None), "codebook", None)
        if sch.levels() is not None and cb is not None:
            # Nearest rounding on a codebook (what levels() promises): straight to values.
            idx = cb.map(v2, 1.0).astype(np.intp) + cb.m
            vals = np.ldexp(cb.signed_levels[idx].astype(np.float64), -cb.frac_bits) * unit
        else:
            codes = sch._codes(v2, np.ones(v2.shape[0], np.float32))
            vals = np.asarray(sch.decode(codes), np.float64) * unit
        ints = np.rint(vals)
        # Only values not seen before need the (slow) check against the hardware code.
        new = [int(u) for u in np.unique(ints) if int(u) not in checked]
        try:
            if not np.array_equal(ints, vals):
                raise ValueError("values off the 2^-(W-1) grid")
            if new:
                wfmt.encode(np.array(new, np.int64), exp_bits)
                checked.update(new)
        except ValueError:
            raise QuantizeError(
                f"weight scheme '{name}' {options} gives values the accelerator's {weights} "
                f"weights (E={exp_bits}) cannot hold; usable: "
                + ("asd (digits<=2), asd conversion=csd, pot" if weights == "asd" else
                   "int bits<=8") + f"; registry: {', '.join(available())}") from None
        return ints.astype(np.int64).reshape(v.shape)

    fn.levels = sch.levels()  # type: ignore[attr-defined]
    # Nearest rounding on the levels, ties away from zero (the codebook's own rule).
    fn.nearest = (fn.levels is not None  # type: ignore[attr-defined]
                  and getattr(getattr(sch, "fmt", None), "codebook", None) is not None)
    return fn, float(sch.vmax)


def _asd_format(exp_bits: int, digits: int) -> Any:
    from asd.asdq import AsdFormat

    return AsdFormat(digits=digits, exp_bits=exp_bits)


# Two-digit multipliers -----------------------------------------------------------------------
def two_digit_ints(exp_bits: int) -> I64:
    """Every positive integer the two-digit code holds, ascending (1 .. 2^W)."""
    top = hwcode.window(exp_bits) - 1
    vals = {(1 << i) + s * (1 << j) for i in range(top + 1) for j in range(top + 1)
            for s in (1, -1)}
    vals.add(1 << (top + 1))
    return np.array(sorted(v for v in vals if v > 0), np.int64)


def snap_mult(target: F64, exp_bits: int, mode: str = "nearest") -> tuple[I64, I64]:
    """``(m, sh)`` with ``m`` two-digit and ``m / 2^sh`` nearest to (or, with ``mode='floor'``,
    the largest not above) each positive ``target``."""
    t = np.atleast_1d(np.asarray(target, np.float64))
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise QuantizeError(f"requantization factor {t} must be positive and finite")
    ms = two_digit_ints(exp_bits).astype(np.float64)
    # For every m the shift putting m/2^sh just above and below the target.
    sh0 = np.floor(np.log2(ms[None, :] / t[:, None]))
    best_m = np.zeros(t.shape, np.int64)
    best_s = np.zeros(t.shape, np.int64)
    best_err = np.full(t.shape, np.inf)
    for d in (-1.0, 0.0, 1.0):
        sh = np.clip(sh0 + d, 0, 63)
        val = ms[None, :] / np.exp2(sh)
        err = np.abs(val - t[:, None]) / t[:, None]
        if mode == "floor":
            err = np.where(val <= t[:, None] * (1 + 1e-12), err, np.inf)
        j = np.argmin(err, axis=1)
        e = err[np.arange(t.size), j]
        better = e < best_err
        best_err = np.where(better, e, best_err)
        best_m = np.where(better, ms[j].astype(np.int64), best_m)
        best_s = np.where(better, sh[np.arange(t.size), j].astype(np.int64), best_s)
    if np.any(~np.isfinite(best_err)):
        raise QuantizeError(f"requantization factor {t[~np.isfinite(best_err)][0]:.3g} is "
                            "outside what a two-digit multiplier and a 0..63 shift can express")
    return best_m, best_s


def mult_candidates(lo: F64, hi: F64, exp_bits: int) -> list[F64]:
    """All exact two-digit multipliers ``m / 2^sh`` in ``[lo, hi]`` per row, as a list of
    arrays (candidate k of every row; rows with fewer candidates repeat their last)."""
    ms = two_digit_ints(exp_bits).astype(np.float64)
    mant = np.unique(ms / np.exp2(np.floor(np.log2(ms))))  # in [1, 2)
    k0 = np.floor(np.log2(lo)) - 1
    cands = []
    for dk in range(0, 4):
        for mt in mant:
            cands.append(mt * np.exp2(k0 + dk))
    arr = np.stack(cands, axis=1)  # (rows, n)
    ok = (arr >= lo[:, None]) & (arr <= hi[:, None])
    out = []
    for j in range(arr.shape[1]):
        if np.any(ok[:, j]):
            out.append(np.where(ok[:, j], arr[:, j], np.nan))
    return out


def quantize(graph: Graph, config: AccelConfig, calib: NDArray, *, scheme: str = "asd",
             scheme_options: dict[str, Any] | None = None, percentile: float | None = None,
             requant_aware: bool = True, rounding: WeightRounding | None = None,
             slope_mse: bool = True, act_zero_point: str = "auto") -> QNet:
    """Quantize every layer of ``graph`` for ``config`` using calibration inputs ``calib``
    (float, NCHW).  ``rounding``: how weights go onto the grid (default: the one
    :func:`weight_rounding` set, else nearest); its ``notes`` receive what the user should
    know.  ``slope_mse=False``: LeakyReLU/PReLU output scales cover the whole pre-activation
    range (the rule before :func:`programs.calibration.slope_range`, for comparison).
    ``act_zero_point``: ``auto`` gives non-negative tensors the zero point ``act_min``
    (:func:`zero_points`) and a signed network output the one that spreads its range over
    every code (:func:`output_zero_point`), ``none`` keeps every tensor symmetric."""
    rnd = rounding or current_rounding()
    rnd.check()
    qmax = (1 << (config.act_bits - 1)) - 1
    fvals: dict[str, F64] = {}
    groups = _Groups()
    for t in graph.shapes:
        groups.find(t)
    for lay in graph.layers:
        if lay.op in ("concat", "maxpool", "flatten", "resize"):
            for t in lay.inputs:
                groups.union(t, lay.output)
    signed: dict[str, tuple[float, float]] = dict.fromkeys(groups.members(logits(graph)),
                                                           (0.0, 0.0))
    ranges, pre_ranges = calibrate(graph, calib, percentile,
                                   fvals if rnd.method != "nearest" else None, qmax, slope_mse,
                                   signed)
    want: dict[str, float] = {}
    for lay in graph.layers:
        r = hostops.output_range(lay, ranges[lay.output])
        if lay.act in ("leaky", "prelu"):
            # REQ saturates the pre-activation before ACT scales negatives: cover both.
            r = max(r, pre_ranges[lay.name])
        if lay.act == "clip":
            r = min(r, lay.act_hi)
        want[lay.output] = r
    want[graph.input] = ranges[graph.input]
    zeros = zero_points(graph, groups, config.act_min,
                        bool(np.min(calib) >= 0), act_zero_point)
    # Codes above the zero point: the positive range's steps.
    levels = {t: config.act_max - zeros.get(t, 0) for t in graph.shapes}
    scales: dict[str, float] = {}
    for t in graph.shapes:
        scales[t] = max(want.get(m, 0.0) for m in groups.members(t)) / levels[t]
    out_zero = output_zero_point(graph, groups, min(lo for lo, _ in signed.values()),
                                 max(hi for _, hi in signed.values()), config.act_bits, zeros,
                                 act_zero_point)
    if out_zero is not None:
        for m in groups.members(logits(graph)):
            zeros[m], scales[m] = out_zero
    for lay in graph.layers:
        if lay.act == "clip" and scales[lay.output] * levels[lay.output] > lay.act_hi * (1 + 1e-9):
            raise QuantizeError(f"layer {lay.name}: Clip(0, {lay.act_hi}) output shares a "
                                f"scale with a wider tensor; its upper clamp cannot be kept")

    if config.weights == "int8" and scheme == "asd":  # the format's own scheme by default
        scheme, scheme_options = "int", {"bits": 8}
    quant, vmax = weight_scheme(scheme, config.exp_bits, weights=config.weights,
                                **(scheme_options or {}))
    qlayers: dict[str, QLayer] = {}
    qnet = QNet(graph, config, scales, qlayers, scheme,
                "maxabs" if percentile is None else f"p{percentile:g}", requant_aware, zeros)
    # The quantized network's own tensors, layer by layer (inputs="quantized").
    ivals: dict[str, I64] | None = None
    if rnd.method != "nearest" and rnd.inputs != "float":
        ivals = {graph.input: quantize_input(calib, scales[graph.input], config.act_bits,
                                             qnet.zero(graph.input))}
    for lay in graph.layers:
        # With the zero point act_min the output's saturation is the ReLU (code act_min is 0.0).
        ql = QLayer(lay, relu=lay.act in ("relu", "clip") and qnet.zero(lay.output) == 0,
                    config=config)
        qlayers[lay.name] = ql
        _quantize_layer(ql, qnet, groups, quant, vmax, rnd, fvals, ivals)
        if ivals is not None:
            ivals[lay.output] = int_layer(ql, qnet, [ivals[t] for t in lay.inputs])
    return qnet


def _quantize_layer(ql: QLayer, qnet: QNet, groups: _Groups, quant: SchemeFn, vmax: float,
                    rnd: WeightRounding, fvals: dict[str, F64], ivals: dict[str, I64] | None
                    ) -> None:
    lay, config, scales, graph = ql.layer, qnet.config, qnet.scales, qnet.graph
    unit = config.weight_format.unit(config.exp_bits)
    requant_aware = qnet.requant_aware
    if lay.op in hostops.HOST_COMPUTE_OPS:
        try:
            hostops.quantize_layer(ql, scales, config.act_bits)
        except hostops.HostOpError as exc:
            raise QuantizeError(str(exc)) from None
        return
    if lay.op not in ("concat", "flatten", "softmax", "maxpool"):
        # The output scale is free unless another layer's output shares it: the max pools and
        # flattens that read this output (alone) follow it.
        followers = [m for m in groups.members(lay.output) if m != lay.output]
        free = lay.act != "clip" and all(
            (p := graph.producer(m)) is not None and p.op in ("maxpool", "flatten")
            for m in followers)
        s_y = scales[lay.output]
        if lay.op == "conv":
            stats = None
            if rnd.method != "nearest":
                from asd.rounding import conv_stats

                t = lay.inputs[0]
                assert lay.weight is not None
                stats = conv_stats(fvals[t] if ivals is None else dequantize(qnet, t, ivals[t]),
                                   lay.weight.shape, lay.stride, lay.pads, lay.groups,
                                   f"{t!r} (input of layer {lay.name})",
                                   None if ivals is None else fvals[t],
                                   rnd.inputs == "compensate")
                note = stats.damping_note(lay.name)
                if note and rnd.method.startswith("gptq"):
                    rnd.notes.append(note)
            _quantize_conv(ql, scales[lay.inputs[0]], s_y, quant, vmax, config, requant_aware,
                           rnd.method, stats)
            ql.bias_int = _with_zero_points(ql, qnet, ql.bias_int)
        elif lay.op == "avgpool":
            k = lay.kernel[0] * lay.kernel[1]
            target = scales[lay.inputs[0]] / (unit * k * s_y)
            s_y = _set_mult(ql, target, free and requant_aware, config, graph)
            if free and requant_aware:
                for t in (lay.output, *followers):
                    scales[t] = scales[lay.inputs[0]] / (unit * k * ql.mult_float()[0])
            ql.bias_int = _with_zero_points(ql, qnet, None)
        elif lay.op == "add":
            sa, sb = scales[lay.inputs[0]], scales[lay.inputs[1]]
            ql.add_ints = _add_weights(sa, sb, config)
            target = sa / (ql.add_ints[0] * s_y)
            _set_mult(ql, target, free and requant_aware, config, graph)
            if free and requant_aware:
                for t in (lay.output, *followers):
                    scales[t] = sa / (ql.add_ints[0] * ql.mult_float()[0])
            ql.bias_int = _with_zero_points(ql, qnet, None)
        if lay.act in ("leaky", "prelu"):
            assert lay.slope is not None
            fmt = _asd_format(config.exp_bits, 2)
            from asd import asdq

            ql.slope_ints = asdq.nearest_int(np.clip(lay.slope, -fmt.vmax, fmt.vmax), fmt)


def _with_zero_points(ql: QLayer, qnet: QNet, bias: I64 | None) -> I64 | None:
    """The integer bias with the zero points folded in (:func:`reference.zero_offset`); a
    layer without a bias of its own (average pool, add) gets one only where it needs one."""
    lay = ql.layer
    if all(qnet.zero(t) == 0 for t in (*lay.inputs, lay.output)):
        return bias
    # In float first: a requantization factor that underflows to 0 makes the offset
    # infinite, which an integer cast would turn into -2^63 without a word.
    total = np.rint(zero_offset(qnet, lay)) + (0 if bias is None else bias)
    lim = 1 << (qnet.config.acc_bits - 1)
    if not np.all(np.abs(total) < lim):
        why = ("" if np.all(np.isfinite(total)) else " (a requantization factor of 0: a "
               "channel's weights are too small beside the output's range)")
        raise QuantizeError(f"layer {lay.name}: the bias with the zero points needs more than "
                            f"acc_bits={qnet.config.acc_bits}{why}; compile with "
                            "act_zero_point='none'")
    return total.astype(np.int64)


def _set_mult(ql: QLayer, target: float, snap: bool, config: AccelConfig, graph: Graph
              ) -> float:
    c = graph.shapes[ql.layer.output][0]
    m, sh = snap_mult(np.array([target]), config.exp_bits, "floor" if snap else "nearest")
    ql.mult = np.repeat(m, c)
    ql.shift = np.repeat(sh, c)
    ql.exact = snap or bool(abs(ql.mult_float()[0] - target) <= 1e-12 * target)
    return float(ql.mult_float()[0])


def _add_weights(sa: float, sb: float, config: AccelConfig) -> tuple[int, int]:
    """Weights ``(ca, cb)`` of the WMEM format with ``ca / sa`` as close to ``cb / sb`` as any
    pair."""
    ms = config.weight_format.positive_ints(config.exp_bits).astype(np.float64)
    ratio = sb / sa  # want cb / ca == ratio
    err = np.abs(ms[None, :] / ms[:, None] / ratio - 1.0)  # rows ca, columns cb
    # Among (near-)ties prefer large weights: finer rounding of the sum.
    err = err + 1e-9 * (ms.max() * 2 - ms[:, None] - ms[None, :])
    i, j = np.unravel_index(np.argmin(err), err.shape)
    return int(ms[i]), int(ms[j])


# The requant-aware search tries every exact multiplier in this band around the max-abs one:
# MSE-optimal scales of two-digit codebooks lie well inside it.
SEARCH_LO, SEARCH_HI = 0.6, 1.5


def _quantize_conv(ql: QLayer, s_x: float, s_y: float, quant: SchemeFn, vmax: float,
                   config: AccelConfig, aware: bool, rounding: str = "nearest",
                   stats: Any = None) -> None:
    lay = ql.layer
    assert lay.weight is not None and lay.bias is not None
    unit = config.weight_format.unit(config.exp_bits)
    co = lay.weight.shape[0]
    w = lay.weight.reshape(co, -1)
    amax = np.maximum(w.max(axis=1), -w.min(axis=1))  # max |w| without a copy of |w|
    # A channel of zeros has no natural scale: borrow the typical one so its bias still fits.
    typical = float(np.median(amax[amax > 0])) if np.any(amax > 0) else 1.0
    s0 = np.where(amax > 0, amax, typical) / vmax
    # A channel whose weights are tiny beside its bias or the output's step (a folded batch
    # norm with gamma near 0) would get an accumulator unit so fine that its bias and the
    # output's zero point leave acc_bits: its scale stays where the two together take at most
    # 2^-3 of the accumulator's range (its weights then round to about 0, as their effect does).
    hold = (np.abs(lay.bias) + (1 << (config.act_bits - 1)) * s_y) * float(unit) / s_x
    s0 = np.maximum(s0, hold / 2.0 ** (config.acc_bits - 4))
    m0 = s_x * s0 / (unit * s_y)
    levels = getattr(quant, "levels", None)
    unit_f = float(unit)
    near = NearestTable(levels) if levels is not None else None

    def approx(v: F64) -> F64:  # the scheme's values, unscaled (quant / unit)
        return near(v) if near is not None else quant(v) / unit_f
    exact_mults: list[F64] = []
    if aware:
        exact_mults = mult_candidates(m0 * SEARCH_LO, m0 * SEARCH_HI, config.exp_bits)
        best_m = search_multipliers(w, m0, exact_mults, lambda mc: mc * unit * s_y / s_x,
                                    approx, near)
        m, sh = snap_mult(best_m, config.exp_bits)
        s_w = (m / np.exp2(sh)) * unit * s_y / s_x
        ql.exact = True
    else:
        s_w = s0
        m, sh = snap_mult(m0, config.exp_bits)
        ql.exact = bool(np.all(np.abs(m / np.exp2(sh) - m0) <= 1e-12 * m0))
    target = w
    if rounding.startswith("gptq"):
        from asd.rounding import SCALE_RATIOS, gptq_layer, input_compensated

        target = input_compensated(np.asarray(w, np.float64), stats)
        # Per channel, GPTQ at the searched scale and at others near it; the one with the
        # least output error is kept (asd.rounding.gptq_layer).  Requant-aware: the exact
        # multipliers nearest each ratio, so the requantization stays exact.
        # (Without the requant-aware search the multipliers stay as they are.)
        m_best = m / np.exp2(sh)
        cands = [s_w]
        if aware:
            grid = np.stack(exact_mults, axis=1)
            for r in SCALE_RATIOS[1:]:
                dist = np.abs(grid - (m_best * r)[:, None])
                pick = grid[np.arange(co), np.argmin(np.where(np.isnan(dist), np.inf, dist),
                                                     axis=1)]
                mr = np.where(np.isnan(pick), m_best, pick)
                cands.append(mr * unit * s_y / s_x)

        def round_at(c: F64, s: F64) -> F64:
            return approx(c / s[:, None]) * s[:, None]

        target, choice = gptq_layer(target, stats, round_at, cands)
        if aware:
            m, sh = snap_mult(np.choose(choice, cands) * s_x / (unit * s_y), config.exp_bits)
            s_w = (m / np.exp2(sh)) * unit * s_y / s_x
    ql.mult, ql.shift, ql.s_w = m.astype(np.int64), sh.astype(np.int64), s_w
    ql.w_int = quantize_rows(quant, target, s_w, near if getattr(quant, "nearest", False)
                             else None, unit_f).reshape(lay.weight.shape)
    b = lay.bias
    if rounding.endswith("bias"):
        from asd.rounding import output_shift

        b = b - output_shift(ql.w_int.reshape(co, -1) * (s_w / unit_f)[:, None], w, stats)
    acc_unit = s_x * s_w / unit
    bias = np.round(b / acc_unit)
    lim = 1 << (config.acc_bits - 1)
    if np.any(np.abs(bias) >= lim):
        raise QuantizeError(f"layer {lay.name}: bias {lay.bias[np.argmax(np.abs(bias))]:.4g} "
                            f"needs more than acc_bits={config.acc_bits} at the accumulator "
                            "scale")
    ql.bias_int = bias.astype(np.int64)

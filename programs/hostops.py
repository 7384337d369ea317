"""Host operations: what the accelerator's ISA cannot compute, done by the host between
accelerator passes, with integer semantics written here once.

The integer reference (:func:`programs.reference.int_layer`), the runtime (which calls it for
host layers) and the quantizer (which fixes the integer parameters) all use these functions,
so an emulator- or RTL-run network and the numpy reference agree bit for bit by construction.

=========  ==================================================================================
mul        ``a * b`` of two feature maps (hard-swish, squeeze-excitation): ``b`` is the same
           shape as ``a`` or one value per channel ``(C, 1, 1)``.  Integer:
           ``y = sat(rshift_half_up(((qa - za) * (qb - zb)) * m, sh) + zy)`` with a
           fixed-point multiplier ``m`` of :data:`MULT_BITS` bits, ``m / 2^sh ~ s_a s_b / s_y``
sigmoid    ``1 / (1 + e^-x)``.  Integer: a table of ``2^act_bits`` entries indexed by the int8
           input, ``T[q] = sat(floor(sigmoid(q * s_x) / s_y + 1/2))``, computed once when
           quantizing and stored with the network (the runtime never evaluates ``exp``)
hardswish  ``x * clip(alpha x + beta, 0, hi)`` (``params``: alpha, beta, hi; ONNX HardSwish,
           ``Mul(x, HardSigmoid(x))``, ``Mul(x, Clip(x + 3, 0, 6))``), a function of one int8
           input: a table like sigmoid's, so no product at all
resize     nearest-neighbour resampling (ONNX Resize, ``mode=nearest``): a gather of rows and
           columns whose source indices the importer computed from the ONNX attributes; an
           index -1 is a zero (ConvTranspose's stride inserts zeros, then a convolution on
           the accelerator).  Integer: the same gather; input and output share one scale, so
           it is exact
=========  ==================================================================================

Rounding is half up (add ``2^(sh-1)``, arithmetic shift right), saturation to the signed
``act_bits`` range.  Zero points ``z`` are 0 today (symmetric int8); the functions take them
so a per-tensor zero point can be added without changing the written semantics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import semantics

from .graph import Layer

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

HOST_COMPUTE_OPS = ("mul", "sigmoid", "hardswish", "resize")
TABLE_OPS = ("sigmoid", "hardswish")
MULT_BITS = 15  # the host multiplier m lies in [2^(MULT_BITS-1), 2^MULT_BITS)
SHIFT_MAX = 62


class HostOpError(ValueError):
    """Integer parameters a host op cannot have (a factor out of the fixed-point range)."""


# Integer primitives --------------------------------------------------------------------------
def fixed_point(factor: float) -> tuple[int, int]:
    """``(m, sh)`` with ``m`` of :data:`MULT_BITS` bits and ``m / 2^sh`` nearest to ``factor``
    (relative error below ``2^-MULT_BITS``)."""
    if not (math.isfinite(factor) and factor > 0):
        raise HostOpError(f"fixed-point factor {factor!r}: expected finite and > 0")
    sh = MULT_BITS - 1 - math.floor(math.log2(factor))
    if sh < 0:
        raise HostOpError(f"fixed-point factor {factor:.4g} exceeds 2^{MULT_BITS - 1}")
    sh = min(sh, SHIFT_MAX)
    m = int(math.floor(factor * 2.0 ** sh + 0.5))
    if m >= 1 << MULT_BITS:  # rounded up to the next power of two
        if sh == 0:
            raise HostOpError(f"fixed-point factor {factor:.4g} rounds to 2^{MULT_BITS}")
        m, sh = m >> 1, sh - 1
    return max(m, 1), sh


# Rounding and saturation are the accelerator's own (contract.semantics), written once.
rshift_half_up = semantics.round_shift


def saturate(v: I64, bits: int) -> I64:
    return np.asarray(semantics.saturate(np.asarray(v, np.int64), bits), np.int64)


def mul_int(a: I64, b: I64, m: int, sh: int, bits: int,
            zero_points: tuple[int, int, int] = (0, 0, 0)) -> I64:
    """Elementwise product of two int tensors (``b`` broadcast), requantized by ``m / 2^sh``."""
    za, zb, zy = zero_points
    prod = (np.asarray(a, np.int64) - za) * (np.asarray(b, np.int64) - zb)
    return saturate(rshift_half_up(prod * m, sh) + zy, bits)


def sigmoid(x: NDArray) -> F64:
    """``1 / (1 + e^-x)`` without overflow for large ``|x|``."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64))), np.float64)


def hardswish(x: NDArray, alpha: float = 1 / 6, beta: float = 0.5, hi: float = 1.0) -> F64:
    x = np.asarray(x, np.float64)
    return np.asarray(x * np.clip(alpha * x + beta, 0.0, hi), np.float64)


def unary(lay: Layer) -> Any:
    """The float function of a table op."""
    if lay.op == "sigmoid":
        return sigmoid
    a, b, hi = (float(lay.params[k]) for k in ("alpha", "beta", "hi"))
    return lambda x: hardswish(x, a, b, hi)


def lipschitz(lay: Layer) -> float:
    """Largest slope of a table op's function: sigmoid 1/4; hard-swish's is ``hi`` where the
    gate is saturated and ``2 alpha x + beta`` over its quadratic part, between ``-beta`` and
    ``2 hi - beta``."""
    if lay.op == "sigmoid":
        return 0.25
    b, hi = float(lay.params["beta"]), float(lay.params["hi"])
    return max(hi, abs(b), abs(2 * hi - b))


def lookup_table(fn: Any, s_x: float, s_y: float, bits: int,
                 zero_points: tuple[int, int] = (0, 0)) -> I64:
    """``T[q + 2^(bits-1)]`` for every int input ``q``: ``fn`` of ``q``, quantized."""
    zx, zy = zero_points
    lim = 1 << (bits - 1)
    q = np.arange(-lim, lim, dtype=np.int64)
    f = fn((q - zx) * s_x)
    return saturate(np.floor(f / s_y + 0.5).astype(np.int64) + zy, bits)


def lookup(x: I64, table: I64, bits: int) -> I64:
    return np.asarray(table, np.int64)[np.asarray(x, np.int64) + (1 << (bits - 1))]


def gather_rows_cols(x: NDArray, rows: list[int], cols: list[int], zero: int = 0) -> NDArray:
    """``x[:, rows][:, :, cols]`` of an NHWC tensor (nearest resize); an index -1 gives
    ``zero`` (the zeros a transposed convolution's stride inserts)."""
    r, c = np.asarray(rows, np.intp), np.asarray(cols, np.intp)
    x = np.asarray(x)
    y = x[:, np.maximum(r, 0)][:, :, np.maximum(c, 0)]
    if r.min(initial=0) >= 0 and c.min(initial=0) >= 0:
        return y
    keep = (r >= 0)[:, None] & (c >= 0)[None, :]
    return np.where(keep[None, :, :, None], y, np.asarray(zero, x.dtype))


def nearest_indices(n_in: int, n_out: int, scale: float, coord: str, rounding: str) -> list[int]:
    """Source index of every output index of ONNX Resize ``mode=nearest`` along one axis
    (``scale`` as ONNX defines it: given, or ``n_out / n_in`` when sizes were given)."""
    i = np.arange(n_out, dtype=np.float64)
    if coord == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    elif coord == "asymmetric":
        x = i / scale
    elif coord == "align_corners":
        x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    elif coord == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        x = n_in / 2 * (1 - adj) + (i + 0.5) / scale - 0.5
    else:
        raise HostOpError(f"coordinate_transformation_mode '{coord}' is not supported")
    if rounding == "round_prefer_floor":
        j = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif rounding == "round_prefer_ceil":
        j = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    elif rounding == "floor":
        j = np.floor(x)
    elif rounding == "ceil":
        j = np.ceil(x)
    else:
        raise HostOpError(f"nearest_mode '{rounding}' is not supported")
    return [int(v) for v in np.clip(j, 0, n_in - 1)]


# Layer-level hooks: quantization, integer, float, error bound ---------------------------------
def output_range(lay: Layer, calibrated: float) -> float:
    """The range an output's int8 scale covers: a sigmoid's is known, (0, 1)."""
    return 1.0 if lay.op == "sigmoid" else calibrated


def quantize_layer(ql: Any, scales: dict[str, float], act_bits: int) -> None:
    """Fix the integer parameters of host layer ``ql`` (a :class:`programs.qnet.QLayer`)
    from the tensor scales."""
    lay = ql.layer
    s_y = scales[lay.output]
    if lay.op == "mul":
        factor = scales[lay.inputs[0]] * scales[lay.inputs[1]] / s_y
        try:
            m, sh = fixed_point(factor)
        except HostOpError as exc:
            raise HostOpError(f"layer {lay.name}: {exc}") from None
        ql.mult, ql.shift = np.array([m], np.int64), np.array([sh], np.int64)
    elif lay.op in TABLE_OPS:
        ql.table = lookup_table(unary(lay), scales[lay.inputs[0]], s_y, act_bits)
    ql.exact = True


def int_layer(ql: Any, ins: list[I64], act_bits: int) -> I64:
    lay = ql.layer
    if lay.op == "mul":
        assert ql.mult is not None and ql.shift is not None
        return mul_int(ins[0], ins[1], int(ql.mult[0]), int(ql.shift[0]), act_bits)
    if lay.op in TABLE_OPS:
        assert ql.table is not None
        return lookup(ins[0], ql.table, act_bits)
    if lay.op == "resize":
        return gather_rows_cols(ins[0], lay.params["rows"], lay.params["cols"])
    raise ValueError(f"layer {lay.name}: {lay.op} is not a host compute op")


def float_op(lay: Layer, ins: list[F64]) -> F64:
    if lay.op == "mul":
        return np.asarray(ins[0] * ins[1], np.float64)
    if lay.op in TABLE_OPS:
        return np.asarray(unary(lay)(ins[0]), np.float64)
    if lay.op == "resize":
        return gather_rows_cols(ins[0], lay.params["rows"], lay.params["cols"])
    raise ValueError(f"layer {lay.name}: {lay.op} is not a host compute op")


def error_bound(ql: Any, scales: dict[str, float], act_bits: int, ins: list[F64],
                eins: list[F64], y: F64) -> F64:
    """Per element, a bound on ``|dequantized integer - float|`` of a host layer's output,
    given its float inputs ``ins`` and their error bounds ``eins``.

    * resize: a gather, so the errors are gathered;
    * sigmoid, hardswish: the input bound times the function's largest slope
      (:func:`lipschitz`), plus half an output step for the table's rounding;
    * mul: ``|a^ b^ - a b| <= |a| e_b + |b| e_a + e_a e_b``, plus the fixed-point factor's
      relative error times ``|a^ b^|``, half an output step, and what saturation cuts off.

    Input and output errors are capped by :func:`reach` (an int8 value cannot lie farther
    from the float one than the far end of its range): the products would otherwise square
    bounds that are already loose after many layers.
    """
    lay = ql.layer
    s_y = scales[lay.output]
    if lay.op == "resize":
        return gather_rows_cols(eins[0], lay.params["rows"], lay.params["cols"])
    if lay.op in TABLE_OPS:
        e = eins[0] * lipschitz(lay) + 0.5 * s_y
    elif lay.op == "mul":
        ea, eb = (np.minimum(e, reach(v, scales[t], act_bits))
                  for e, v, t in zip(eins, ins, lay.inputs))
        a, b = (np.abs(v) for v in ins)
        want = scales[lay.inputs[0]] * scales[lay.inputs[1]] / s_y
        rel = abs(float(ql.mult[0]) / 2.0 ** int(ql.shift[0]) / want - 1.0)
        lo, hi = -(1 << (act_bits - 1)) * s_y, ((1 << (act_bits - 1)) - 1) * s_y
        sat = np.maximum(0, np.maximum(y - hi, lo - y))
        e = a * eb + b * ea + ea * eb + (a + ea) * (b + eb) * rel + 0.5 * s_y + sat
    else:
        raise ValueError(f"layer {lay.name}: {lay.op} is not a host compute op")
    return np.minimum(e, reach(y, s_y, act_bits))


def reach(v: F64, s: float, act_bits: int) -> F64:
    """The farthest any dequantized value of scale ``s`` lies from float ``v``: no error of
    an int tensor can exceed it (caps a bound that deep layers inflate)."""
    lo, hi = -(1 << (act_bits - 1)) * s, ((1 << (act_bits - 1)) - 1) * s
    return np.maximum(np.abs(v - lo), np.abs(hi - v))

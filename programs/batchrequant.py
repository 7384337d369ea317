"""The requantization of a batch's exact integer sums in float, bit-exact with
``requantize(wrap(acc))`` of contract.semantics (programs.batchint's layers use it):

* ``rnd(acc * m, s) = (acc * m + 2^(s-1)) >> s`` equals ``floor(S * (m 2^-s) + (bias * m
  2^-s + 1/2))`` in float64 (``acc = S + bias``): each term is an integer scaled by a power
  of two and their sum is ``(acc*m + 2^(s-1)) 2^-s`` with ``|acc * m| < 2^52``, so every step
  is exact.  The same steps are exact in float32 where every ``acc * m + 2^(s-1)`` stays
  below 2^24.
* Float32 also serves float32 sums when ``|acc| < 2^24`` and the output range fits
  ``B = 2^(24 - max(s, 1))`` (``max(hi, -lo) <= B``): ``t = (S + bias) * (m 2^-s) + 1/2``.
  ``S + bias`` is an exact integer; ``T = acc m 2^-s`` and ``T + 1/2`` are multiples of
  ``2^-max(s,1)``, so float32 holds them exactly while ``|T| < B``.  Beyond, rounding is
  monotone and ``+-B`` are representable, so the result stays on the side where the clip
  saturates, as the exact one does.  Half the bytes a pass of float64, which the 8-bit
  layers' ``acc * m`` (up to 2^30 on the seed networks) would otherwise need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import semantics
from contract.config import AccelConfig

from .qnet import QLayer

I64 = NDArray[np.int64]

EXACT_F32 = 1 << 24


def _req_factors(ql: QLayer, c: AccelConfig) -> tuple[I64, I64]:
    """Per channel the REQ multiplier's integer ``m`` and shift ``s``, read back from the
    parameter words the accelerator gets (so the hardware's semantics, not the compiler's
    intent, define them)."""
    code, shift = semantics.req_fields(ql.req_params, c.code_bits)
    m = semantics.shift_add(np.ones_like(code), code, c.exp_bits)
    return np.asarray(m, np.int64), np.asarray(shift, np.int64)


@dataclass
class Requant:
    """``y = clip(floor(S * scale + offset))`` per output channel (see the module notes)."""

    scale: NDArray[Any]  # float64, or float32 where that is exact too
    offset: NDArray[Any]
    lo: int
    hi: int
    # float32 bias and scale for float32 sums where the float64 steps would be needed for
    # every value but the clip makes float32 enough (see the module notes); else None.
    bias32: NDArray[np.float32] | None = None
    scale32: NDArray[np.float32] | None = None

    @staticmethod
    def of(ql: QLayer, c: AccelConfig, bias: I64, reach: I64,
           terms: I64 | None = None) -> Requant | None:
        """None unless ``reach`` (per channel, a bound on the true |S| + |bias|) proves the
        wrap a no-op and ``terms`` (a bound on |S| + |bias| as the float steps take them,
        ``reach`` unless given) proves the float64 steps exact."""
        m, s = _req_factors(ql, c)
        if reach.size and int(reach.max()) >= 1 << (c.acc_bits - 1):
            return None
        reach = reach if terms is None else terms
        if reach.size and float(np.max(reach * np.abs(m))) >= 2.0 ** 52:
            return None
        scale = np.asarray(m * np.exp2(-s.astype(np.float64)), np.float64)
        lo = 0 if ql.relu else c.act_min
        offset = np.asarray(bias * scale + 0.5, np.float64)
        # The same steps are exact in float32 (half the bytes a pass) when every numerator
        # acc * m + 2^(s-1) stays below 2^24: short reductions, often the largest outputs.
        half = np.where(s > 0, np.exp2(np.maximum(s - 1, 0).astype(np.float64)), 0.0)
        if reach.size and float(np.max(reach * np.abs(m) + half)) < EXACT_F32:
            return Requant(scale.astype(np.float32), offset.astype(np.float32), lo, c.act_max)
        bias32 = scale32 = None
        quantum = int(np.max(s, initial=1))  # max(s, 1): the finest step of T and T + 1/2
        if (reach.size and int(reach.max()) < EXACT_F32
                and max(c.act_max, -lo) <= 2.0 ** (24 - quantum)):
            bias32, scale32 = bias.astype(np.float32), scale.astype(np.float32)
        return Requant(scale, offset, lo, c.act_max, bias32, scale32)

    def apply(self, acc: NDArray[Any], out: I64, cols: slice = slice(None),
              scratch: bool = False, biased: bool = False) -> None:
        """Requantize ``acc`` (rows x channels, exact integers: the sums S, or S + bias where
        ``biased``) into ``out``; ``scratch``: acc is the caller's to overwrite (then a float
        acc of the scale's type is the work array)."""
        if self.bias32 is not None and self.scale32 is not None and acc.dtype == np.float32:
            t = acc if scratch else acc.copy()
            if not biased:
                t += self.bias32[cols]
            t *= self.scale32[cols]
            t += np.float32(0.5)
        else:
            if scratch and acc.dtype == self.scale.dtype:
                t = np.multiply(acc, self.scale[cols], out=acc)
            else:
                t = np.multiply(acc, self.scale[cols], dtype=self.scale.dtype)
            if biased:
                t += t.dtype.type(0.5)
            else:
                t += self.offset[cols]
        # Over a non-negative range the cast's truncation is the floor (clip(floor(t)) ==
        # trunc(clip(t)) there): one pass less on the ReLU layers.
        if self.lo < 0:
            np.floor(t, out=t)
        # Clipped straight into the integer output: the unsafe cast truncates, as the
        # assignment would, and saves a pass (8.7 -> 7.6 ms on 50000 x 128, float32).
        np.clip(t, self.lo, self.hi, out=out, casting="unsafe")


def linear_requant(acc: I64, ql: QLayer, c: AccelConfig) -> I64:
    """requantize(wrap(acc)) of an exact int64 accumulator, as integers: ``acc * m`` never
    wraps int64 (|acc| < 2^40, |m| <= 2^(2^E)) and the rounding is an add and a shift."""
    m, s = _req_factors(ql, c)
    acc = semantics.wrap(acc, c.acc_bits)
    y = acc * m
    y += np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
    np.right_shift(y, s, out=y)
    np.clip(y, 0 if ql.relu else c.act_min, c.act_max, out=y)
    return np.asarray(y, np.int64)

"""Minifloat ExMy: sign, E exponent bits, M mantissa bits, for weights and feature maps.

Code layout (most significant first): ``| s | exponent (E) | mantissa (M) |``, ``1+E+M`` bits.
Exponent field ``f``: ``f == 0`` is subnormal, ``(-1)**s * 2**(1-bias) * m/2**M``; otherwise
``(-1)**s * 2**(f-bias) * (1 + m/2**M)``.  ``special`` says what the top codes mean:

* ``"ieee"``: exponent all ones is Inf (m=0) or NaN (m!=0)  -- FP8 E5M2.
* ``"fn"``:   only exponent and mantissa all ones is NaN; no Inf -- FP8 E4M3 (``e4m3fn``).
* ``"none"``: every code is a finite number.

Rounding is round-to-nearest, ties to even mantissa, applied once to the exact input.
Overflow: with ``saturate=True`` (the default for quantizing) values beyond the largest finite
magnitude become it; with ``saturate=False`` they follow IEEE: a value that rounds above the
largest finite becomes Inf (``ieee``) or NaN (``fn``), which is what ``ml_dtypes`` does.
NaN encodes as the format's NaN with the input's sign (mantissa all ones for ``fn``, the quiet
pattern ``10..0`` for ``ieee``); the quantizers reject NaN/Inf before this point.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

SPECIALS = ("ieee", "fn", "none")


class Minifloat:
    def __init__(
        self,
        exp_bits: int,
        man_bits: int,
        bias: int | None = None,
        special: str = "ieee",
        saturate: bool = True,
    ) -> None:
        if not 1 <= exp_bits <= 8 or not 0 <= man_bits <= 10:
            raise ValueError(f"unsupported minifloat E{exp_bits}M{man_bits}")
        if special not in SPECIALS:
            raise ValueError(f"special must be one of {SPECIALS}")
        if special == "ieee" and exp_bits < 2:
            raise ValueError("IEEE specials need at least 2 exponent bits")
        if special == "fn" and exp_bits + man_bits < 2:
            raise ValueError("an fn format needs a NaN code")
        self.exp_bits = exp_bits
        self.man_bits = man_bits
        self.bias = (1 << (exp_bits - 1)) - 1 if bias is None else bias
        self.special = special
        self.saturate = saturate
        emask = (1 << exp_bits) - 1
        top_f = emask - 1 if special == "ieee" else emask
        top_m = (1 << man_bits) - 1 - (1 if special == "fn" else 0)
        if top_m < 0:
            top_f, top_m = top_f - 1, (1 << man_bits) - 1
        self.emin = 1 - self.bias
        self.emax = top_f - self.bias
        self.max_finite = math.ldexp(1.0 + top_m / (1 << man_bits), self.emax)
        if top_f == 0:
            self.max_finite = math.ldexp(top_m / (1 << man_bits), self.emin)

    def __repr__(self) -> str:
        return (f"Minifloat(E{self.exp_bits}M{self.man_bits}, bias={self.bias}, "
                f"special={self.special!r}, saturate={self.saturate})")

    @property
    def code_bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def vmax(self) -> float:
        return self.max_finite

    def round(self, x: ArrayLike) -> NDArray[np.float64]:
        """Nearest representable value (ties to even), with the overflow rule above."""
        a = np.asarray(x, dtype=np.float64)
        mag = np.abs(a)
        with np.errstate(invalid="ignore", over="ignore"):
            e = np.frexp(mag)[1] - 1  # floor(log2|x|) for normal inputs
            e = np.maximum(np.where(np.isfinite(mag), e, self.emax), self.emin)
            q = e - self.man_bits
            r = np.ldexp(np.rint(np.ldexp(mag, -q)), q)
            if self.saturate:
                r = np.where(np.isnan(mag), np.nan, np.minimum(r, self.max_finite))
            elif self.special == "ieee":
                r = np.where(r > self.max_finite, np.inf, r)
            else:
                r = np.where(r > self.max_finite, np.nan, r)
        return np.copysign(r, a)

    def encode(self, x: ArrayLike) -> NDArray[np.int64]:
        """Codes of ``x`` (rounded first)."""
        a = np.asarray(x, dtype=np.float64)
        r = self.round(a)
        sign = np.signbit(r).astype(np.int64)
        mag = np.abs(r)
        nan = np.isnan(mag)
        inf = np.isinf(mag)
        fin = ~(nan | inf)
        m_one = 1 << self.man_bits
        safe = np.where(fin & (mag > 0), mag, 1.0)
        e = np.maximum(np.frexp(safe)[1] - 1, self.emin)
        sub = safe < math.ldexp(1.0, self.emin)
        field = np.where(sub, 0, e + self.bias)
        man = np.ldexp(safe, self.man_bits - e).astype(np.int64) - np.where(sub, 0, m_one)
        field = np.where(mag == 0, 0, field)
        man = np.where(mag == 0, 0, man)
        emask = (1 << self.exp_bits) - 1
        if self.special == "ieee":
            field = np.where(nan | inf, emask, field)
            man = np.where(inf, 0, np.where(nan, 1 << max(self.man_bits - 1, 0), man))
        elif self.special == "fn":
            field = np.where(nan, emask, field)
            man = np.where(nan, m_one - 1, man)
        elif np.any(nan | inf):
            raise ValueError(f"{self!r} has no NaN or Inf code")
        return (sign << (self.exp_bits + self.man_bits)) | (field << self.man_bits) | man

    def decode(self, codes: ArrayLike) -> NDArray[np.float64]:
        c = np.asarray(codes, dtype=np.int64)
        if np.any((c < 0) | (c >= (1 << self.code_bits))):
            raise ValueError(f"code out of range for {self!r}")
        man = c & ((1 << self.man_bits) - 1)
        field = (c >> self.man_bits) & ((1 << self.exp_bits) - 1)
        sign = c >> (self.exp_bits + self.man_bits)
        frac = man.astype(np.float64) / (1 << self.man_bits)
        val = np.where(
            field == 0,
            np.ldexp(frac, self.emin),
            np.ldexp(1.0 + frac, field - self.bias),
        )
        emask = (1 << self.exp_bits) - 1
        if self.special == "ieee":
            val = np.where(field == emask, np.where(man == 0, np.inf, np.nan), val)
        elif self.special == "fn":
            val = np.where((field == emask) & (man == (1 << self.man_bits) - 1), np.nan, val)
        return np.where(sign == 1, -val, val)

    def positive_values(self) -> NDArray[np.float64]:
        """Non-negative finite values, sorted (the codebook for scale search)."""
        v = self.decode(np.arange(1 << (self.code_bits - 1)))
        return np.unique(v[np.isfinite(v)])

    def with_saturate(self, saturate: bool) -> Minifloat:
        return Minifloat(self.exp_bits, self.man_bits, self.bias, self.special, saturate)


def fp8_e4m3(saturate: bool = True) -> Minifloat:
    """FP8 E4M3 as ``ml_dtypes.float8_e4m3fn``: bias 7, no Inf, max 448."""
    return Minifloat(4, 3, 7, "fn", saturate)


def fp8_e5m2(saturate: bool = True) -> Minifloat:
    """FP8 E5M2 as ``ml_dtypes.float8_e5m2``: bias 15, IEEE Inf/NaN, max 57344."""
    return Minifloat(5, 2, 15, "ieee", saturate)


FORMATS = {"e4m3": fp8_e4m3, "e5m2": fp8_e5m2}


def parse_format(name: str, saturate: bool = True) -> Minifloat:
    """``e4m3``/``e5m2`` (the FP8 formats) or any ``eXmY`` (IEEE-style bias, saturating)."""
    key = name.lower().removeprefix("fp8-").removeprefix("fp8")
    if key in FORMATS:
        return FORMATS[key](saturate)
    import re

    m = re.fullmatch(r"e(\d+)m(\d+)", key)
    if not m:
        raise ValueError(f"unknown float format {name!r}; use e4m3, e5m2 or eXmY")
    return Minifloat(int(m.group(1)), int(m.group(2)), special="ieee" if int(m.group(1)) >= 2
                     else "none", saturate=saturate)


def quantize_feature_map(x: ArrayLike, fmt: Minifloat, scale: float = 1.0) -> NDArray[np.float32]:
    """Feature maps in a minifloat: ``scale * round(x / scale)``, saturating, NaN/Inf rejected."""
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("NaN or Inf in feature map")
    sat = fmt if fmt.saturate else fmt.with_saturate(True)
    return (sat.round(a / scale) * scale).astype(np.float32)

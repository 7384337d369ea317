"""Canonical signed digits (CSD) of integers and fixed-point values, vectorized.

The CSD (non-adjacent form) of an integer ``n`` writes ``n = sum_i d_i * 2**i`` with
``d_i in {-1, 0, +1}`` and no two adjacent non-zero digits.  It is unique and has the fewest
non-zero digits of any signed-digit form of ``n``.

Digit arrays are little-endian: ``digits[..., i]`` is the digit of weight ``2**i`` (for a
fixed-point value with ``frac_bits`` fractional bits, the weight ``2**(i - frac_bits)``).

Integers must satisfy ``|n| < 2**61`` so that ``3*n`` fits in int64 (the construction below).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

_LIMIT = 1 << 61


def _as_int64(n: ArrayLike) -> NDArray[np.int64]:
    arr = np.asarray(n)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"CSD of integers needs an integer array, got {arr.dtype}")
    v = arr.astype(np.int64)
    if v.size and int(np.max(np.abs(v))) >= _LIMIT:
        raise ValueError("CSD conversion supports |n| < 2**61")
    return v


def naf_masks(n: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Bit masks ``(plus, minus)`` of the +1 and -1 digits of each integer's CSD.

    For ``m >= 0``, the bits of ``3m`` that ``m`` lacks are, one place up, the +1 digits, and the
    bits of ``m`` that ``3m`` lacks are the -1 digits: adding ``m`` to ``2m`` turns every run of
    ones into ``+1 0 ... 0 -1``, which is exactly the non-adjacent recoding.  Negative numbers
    use the mirrored digits of ``|n|``.
    """
    v = _as_int64(n)
    m = np.abs(v)
    t = 3 * m
    plus = (t & ~m) >> 1
    minus = (m & ~t) >> 1
    neg = v < 0
    return np.where(neg, minus, plus), np.where(neg, plus, minus)


def popcount(x: ArrayLike) -> NDArray[np.int64]:
    """Number of set bits of non-negative int64 values (SWAR, no Python loop)."""
    v = np.asarray(x, dtype=np.uint64)
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    with np.errstate(over="ignore"):  # the byte-sum multiply wraps on purpose
        total = v * np.uint64(0x0101010101010101)
    return (total >> np.uint64(56)).astype(np.int64)


def nonzero_digits(n: ArrayLike) -> NDArray[np.int64]:
    """Number of non-zero digits in the CSD of each integer (its minimal signed-digit weight)."""
    plus, minus = naf_masks(n)
    return popcount(plus | minus)


def csd_digits(n: ArrayLike, ndigits: int | None = None) -> NDArray[np.int8]:
    """CSD digits of integers, shape ``n.shape + (ndigits,)``, little-endian.

    ``ndigits`` defaults to the fewest digits that hold every element's CSD (a CSD may be one
    digit longer than the binary form, e.g. ``3 = 4 - 1``).
    """
    plus, minus = naf_masks(n)
    both = plus | minus
    need = int(np.max(both)).bit_length() if both.size else 0
    if ndigits is None:
        ndigits = max(need, 1)
    elif ndigits < need:
        raise ValueError(f"{ndigits} digits cannot hold a CSD that needs {need}")
    pos = np.arange(ndigits, dtype=np.int64)
    d = ((plus[..., None] >> pos) & 1) - ((minus[..., None] >> pos) & 1)
    return d.astype(np.int8)


def from_digits(digits: ArrayLike) -> NDArray[np.int64]:
    """Integer value of little-endian signed-digit arrays (any signed-digit form)."""
    d = np.asarray(digits, dtype=np.int64)
    weights = np.left_shift(np.int64(1), np.arange(d.shape[-1], dtype=np.int64))
    return (d * weights).sum(axis=-1)


def to_fixed(x: ArrayLike, frac_bits: int) -> NDArray[np.int64]:
    """Fixed-point integers ``round(x * 2**frac_bits)``, ties away from zero.

    Ties away from zero keep the conversion odd-symmetric (``f(-x) == -f(x)``), which the
    signed-digit quantizers rely on.  NaN/Inf raise ``ValueError``.
    """
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("fixed-point conversion of NaN or Inf")
    scaled = np.ldexp(a, frac_bits)
    r = np.floor(np.abs(scaled) + 0.5)
    if r.size and float(np.max(r)) >= _LIMIT:
        raise ValueError("fixed-point value out of range (|x * 2**frac_bits| >= 2**61)")
    return (np.sign(scaled) * r).astype(np.int64)


def csd_fixed(x: ArrayLike, frac_bits: int) -> NDArray[np.int8]:
    """CSD digits of fixed-point values; digit ``i`` has weight ``2**(i - frac_bits)``."""
    return csd_digits(to_fixed(x, frac_bits))


def to_string(n: int, frac_bits: int = 0) -> str:
    """CSD of one fixed-point integer as text, most significant digit first.

    Digits are ``+``, ``-`` and ``0``; with ``frac_bits > 0`` a ``.`` marks the binary point
    (``to_string(57, 1) == '+00-00.+'``, i.e. 28.5).  Leading zeros of the integer part are
    dropped, keeping one ``0`` for values below one.
    """
    d = csd_digits(np.int64(n))
    d = np.concatenate([d, np.zeros(max(frac_bits + 1 - d.size, 0), dtype=np.int8)])[::-1]
    sym = np.array(["-", "0", "+"])[d + 1]
    whole = "".join(sym[: len(sym) - frac_bits]).lstrip("0") or "0"
    frac = "".join(sym[len(sym) - frac_bits :])
    return whole + ("." + frac if frac_bits > 0 else "")

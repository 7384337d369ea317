"""Approximate signed digits (ASD): a scale times at most K signed power-of-two digits.

A value ``v = sum_k d_k * 2**-e_k`` with ``d_k in {-1, 0, +1}``, at most K non-zero digits, at
distinct positions ``e_k in 0 .. W-1`` where ``W = 2**E`` (E exponent bits).  Every such value is
an integer times ``2**-(W-1)``; the code works on that integer (``contract.hwcode.to_int``'s unit).

Codes (all most-significant bit first):

* K=2: exactly :mod:`contract.hwcode`'s canonical code, ``2*(1+E)`` bits (8 for E=3).  The quantizer
  never produces ``+-2`` (two digits at position 0), which hwcode can also hold.
* K=1 (one-digit power of two): ``| s | e (E bits) |`` = ``(-1)**s * 2**-e``; the all-ones
  exponent is reserved for zero (written with s=0; s=1 is invalid), so the usable positions are
  ``0 .. W-2`` and the codebook is ``{0, +-1, +-1/2, ..., +-2**-(W-2)}`` (2W-1 values).
* K>=3: offset-binary index into the sorted codebook, ``ceil(log2(2M+1))`` bits for M positive
  values (index M is zero).

Two conversions:

* :func:`nearest_int` / :meth:`GridCodebook.index`: the nearest codebook value; a tie (exact
  midpoint between two neighbours) goes to the one of larger magnitude (ties away from zero),
  so ``q(-x) == -q(x)``.  Beyond the largest value it saturates.
* :func:`csd_round_int`: the published style: round to fixed point (``W-1`` fractional bits,
  ties away from zero), take the CSD, keep its K most significant non-zero digits.  Dropping a
  CSD tail *is* rounding at the last kept digit: below a non-zero digit at position p the CSD
  tail is at most ``2**p / 3`` in magnitude, under half a unit of that digit.  A result the
  window cannot hold (the CSD may use position ``2**1``, e.g. ``2 - 1/4``) snaps to its nearest
  codebook value, which saturates values above the largest one.
"""

from __future__ import annotations

import itertools
import math
import threading
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from asd import csd
from contract import hwcode

# Elements per chunk: small enough that every temporary stays in L2 cache, large enough that
# the per-chunk Python overhead is negligible.
CHUNK = 1 << 16
# Bucket tables larger than this fall back to a binary search per element.
MAX_LUT = 1 << 22
# Float32 bit-pattern keys (sign, exponent, top mantissa bits) at most this wide.
MAX_F32_KEY_BITS = 20
# The keyed path's chunk: fewer, longer numpy calls (its per-call overhead is what dominates).
KEYED_CHUNK = 1 << 17


def _compute_dtype(w: NDArray) -> type[np.floating]:
    return np.float32 if w.dtype == np.float32 else np.float64


_ONES: dict[tuple[int, np.dtype], NDArray] = {}


def _ones(n: int, dtype: DTypeLike, chunk: int = CHUNK) -> NDArray:
    key = (chunk, np.dtype(dtype))
    if key not in _ONES:
        _ONES[key] = np.ones(key[0], dtype=dtype)
    return _ONES[key][:n]


_WORK = threading.local()


def _keyed_buffers() -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """This thread's work buffers for :meth:`GridCodebook._map_keyed`: kept, because a fresh
    megabyte is page-faulted in on first touch, which costs as much as quantizing a small layer."""
    bufs = getattr(_WORK, "keyed", None)
    if bufs is None:
        bufs = _WORK.keyed = (np.empty(KEYED_CHUNK, np.float32), np.empty(KEYED_CHUNK, np.intp))
    return bufs


def check_finite(x: NDArray, what: str = "values") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf."""
    # One BLAS dot is the cheapest pass that flags both (Inf*0 or Inf-Inf still give NaN);
    # only a hit, or a finite overflow, pays for the exact test.
    flat = x.reshape(-1)
    for i in range(0, flat.size, CHUNK):
        part = flat[i : i + CHUNK]
        if not np.isfinite(np.dot(part, _ones(part.size, part.dtype))):
            if not np.all(np.isfinite(part)):
                raise ValueError(f"NaN or Inf in {what}")


class GridCodebook:
    """A sign-symmetric codebook of integers times ``2**-frac_bits`` with a nearest quantizer.

    ``levels`` are the non-negative integer values, ``levels[0] == 0``.  Every midpoint between
    neighbours is an integer in units of ``2**-(frac_bits+1)``, so after one multiplication by
    ``2**(frac_bits+1)/scale`` and truncation toward zero a table lookup gives the nearest value
    exactly; truncation toward zero puts an exact midpoint into the upper bucket, i.e. ties away
    from zero.
    """

    def __init__(self, levels: ArrayLike, frac_bits: int) -> None:
        lv = np.unique(np.abs(np.asarray(levels, dtype=np.int64)))
        if lv.size == 0 or lv[0] != 0:
            lv = np.concatenate([[0], lv])
        self.levels: NDArray[np.int64] = lv
        self.frac_bits = frac_bits
        self.m = int(lv.size - 1)
        # Midpoints in units of 2**-(frac_bits+1): integers by construction.
        self.mid2: NDArray[np.int64] = lv[:-1] + lv[1:]
        self.signed_levels: NDArray[np.int64] = np.concatenate([-lv[:0:-1], lv])
        self.top = int(2 * lv[-1])  # largest level in units of 2**-(frac_bits+1)

    @property
    def vmax(self) -> float:
        return math.ldexp(float(self.levels[-1]), -self.frac_bits)

    def values(self) -> NDArray[np.float64]:
        """All codebook values, signed and sorted, as float64."""
        return np.ldexp(self.signed_levels.astype(np.float64), -self.frac_bits)

    def positive_values(self) -> NDArray[np.float64]:
        return np.ldexp(self.levels.astype(np.float64), -self.frac_bits)

    def index_dtype(self) -> type[np.signedinteger]:
        return np.int16 if self.m < (1 << 15) else np.int32

    @cached_property
    def _bucket_index(self) -> NDArray[np.signedinteger] | None:
        if 2 * self.top + 1 > MAX_LUT:
            return None
        g = np.arange(-self.top, self.top + 1, dtype=np.int64)
        idx = np.searchsorted(self.mid2, np.abs(g), side="right")
        return (np.sign(g) * idx).astype(self.index_dtype())

    def nearest_index_ref(self, a: ArrayLike) -> NDArray[np.signedinteger]:
        """Signed level index nearest to ``a / 2**(frac_bits+1)`` by binary search (reference)."""
        x = np.asarray(a, dtype=np.float64)
        check_finite(x)
        idx = np.searchsorted(self.mid2.astype(np.float64), np.abs(x), side="right")
        return (np.where(x < 0, -idx, idx)).astype(self.index_dtype())

    @cached_property
    def _f32_key(self) -> tuple[int, NDArray[np.signedinteger]] | None:
        """``(shift, bucket)`` such that ``bucket[bits >> shift]`` is the signed level index of
        any finite float32 whose bit pattern is ``bits``, or None when that table is too big.

        Keeping the sign, the exponent and the top ``P`` mantissa bits groups floats into cells
        of ``2**(23-P)`` neighbours.  With ``P`` large enough that every midpoint is exactly a
        cell start, no midpoint falls strictly inside a cell, so one bucket serves the whole
        cell; the tie rule (a midpoint belongs to the upper bucket) is the searchsorted at the
        cell start.  NaN/Inf cells hold the saturated index; callers check finiteness.
        """
        odd = [int(m) >> ((int(m) & -int(m)).bit_length() - 1) for m in self.mid2 if m > 0]
        prec = max((o.bit_length() - 1 for o in odd), default=0)
        if 9 + prec > MAX_F32_KEY_BITS or self.top >= 2**127:  # too big, or beyond float32
            return None
        shift = 23 - prec
        keys = np.arange(1 << (8 + prec), dtype=np.int64)
        start = (keys << shift).astype(np.uint32).view(np.float32)
        with np.errstate(invalid="ignore"):
            start = np.where(np.isfinite(start), start, np.inf).astype(np.float64)
        mag = np.searchsorted(self.mid2.astype(np.float64), start, side="right")
        bucket = np.concatenate([mag, -mag]).astype(self.index_dtype())
        return shift, bucket

    def _table(self, by_index: NDArray | None) -> tuple[NDArray | None, NDArray | None]:
        bi = self._bucket_index
        if by_index is None:
            return bi, None
        if bi is None:
            return None, by_index
        return by_index[bi.astype(np.intp) + self.m], by_index

    def _f32_table(self, by_index: NDArray | None) -> tuple[int, NDArray] | None:
        plan = self._f32_key
        if plan is None or by_index is None:
            return plan
        shift, bucket = plan
        # Composed once per index table (a code table is a few hundred bytes to hash).
        key = (by_index.dtype.str, by_index.tobytes())
        cache: dict = self.__dict__.setdefault("_f32_tables", {})
        if key not in cache:
            cache[key] = by_index[bucket.astype(np.intp) + self.m]
        return shift, cache[key]

    def map(
        self, w: ArrayLike, scale: ArrayLike = 1.0, by_index: NDArray | None = None
    ) -> NDArray:
        """Quantize ``w / scale`` to the nearest level; return the signed level index, or
        ``by_index[index + M]`` when a table over indices is given (e.g. codes).

        ``scale`` is a scalar or one value per row of axis 0.  The scaled value is computed as
        ``w * (2**(frac_bits+1) / scale)`` in float32 for float32 input (float64 otherwise), one
        rounding for the factor and one for the product; nearest-ness and ties are decided on
        that product.  NaN/Inf raise ``ValueError``.
        """
        arr = np.asarray(w)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        ct = _compute_dtype(arr)
        w2 = arr.reshape(arr.shape[0], -1) if arr.ndim >= 1 else arr.reshape(1, 1)
        if w2.size == 0:
            raise ValueError("empty tensor")
        rows, n = w2.shape
        s = np.asarray(scale, dtype=np.float64).reshape(-1)
        if s.size == 1:
            s = np.repeat(s, rows)
        if s.size != rows or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("scales must be positive and finite, one per row or one in all")
        f = (math.ldexp(1.0, self.frac_bits + 1) / s).astype(ct)
        if not np.all(np.isfinite(f)):
            raise ValueError("scale too small for the compute precision")
        keyed = self._f32_table(by_index) if ct == np.float32 else None
        if keyed is not None:
            return self._map_keyed(w2, f, *keyed).reshape(arr.shape)
        table, fallback = self._table(by_index)
        out_dtype = (table if table is not None else fallback if fallback is not None
                     else np.empty(0, self.index_dtype())).dtype
        out = np.empty((rows, n), dtype=out_dtype)
        top = self.top
        buf = np.empty(CHUNK, dtype=ct)
        ibuf = np.empty(CHUNK, dtype=np.intp)
        for r0, r1, c0, c1 in _blocks(rows, n):
            x = w2[r0:r1, c0:c1]
            check_finite(x, "weights")
            b = buf[: x.size].reshape(x.shape)
            np.multiply(x, f[r0:r1, None], out=b)
            dst = out[r0:r1, c0:c1]
            if table is None:
                idx = self.nearest_index_ref(b)
                dst[...] = idx if fallback is None else fallback[idx.astype(np.intp) + self.m]
                continue
            ii = ibuf[: x.size].reshape(x.shape)
            # Saturate, and truncate toward zero in the same pass.
            np.clip(b, -top, top, out=ii, casting="unsafe")
            ii += top
            np.take(table, ii, out=dst)
        return out.reshape(arr.shape)

    @staticmethod
    def _map_keyed(w2: NDArray, f: NDArray, shift: int, table: NDArray) -> NDArray:
        """:meth:`map` for float32: per chunk a multiply, the bit-pattern key, one gather."""
        rows, n = w2.shape
        out = np.empty(rows * n, dtype=table.dtype)
        buf, ibuf = _keyed_buffers()
        ones = _ones(KEYED_CHUNK, np.float32, KEYED_CHUNK)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing product saturates
            for r0, r1, c0, c1 in _blocks(rows, n, KEYED_CHUNK):
                x = w2[r0:r1, c0:c1]
                size = x.size
                b = buf[:size]
                np.multiply(x, f[r0:r1, None], out=b.reshape(x.shape))
                # A NaN/Inf weight makes the dot non-finite; so may a product that overflows,
                # which is only saturation: the exact test on the weights tells them apart.
                if not np.isfinite(np.dot(b, ones[:size])):
                    check_finite(x, "weights")
                ii = ibuf[:size]
                np.right_shift(b.view(np.uint32), shift, out=ii, casting="unsafe")
                start = r0 * n + c0  # the block is this contiguous run of the output
                table.take(ii, out=out[start : start + size], mode="clip")  # keys never clip
        return out

    def index(self, w: ArrayLike, scale: ArrayLike = 1.0) -> NDArray[np.signedinteger]:
        return self.map(w, scale)

    def int_values(self, index: ArrayLike) -> NDArray[np.int64]:
        """Integer value (units ``2**-frac_bits``) of signed level indices."""
        return self.signed_levels[np.asarray(index, dtype=np.intp) + self.m]


def _blocks(rows: int, n: int, chunk: int = CHUNK):
    """Row/column blocks of about ``chunk`` elements, each contiguous in a C-ordered (rows, n)."""
    if n >= chunk:
        for r in range(rows):
            for c0 in range(0, n, chunk):
                yield r, r + 1, c0, min(c0 + chunk, n)
    else:
        step = max(1, chunk // n)
        for r0 in range(0, rows, step):
            yield r0, min(r0 + step, rows), 0, n


def _enumerate_levels(digits: int, window: int) -> NDArray[np.int64]:
    """Non-negative integers with at most ``digits`` signed digits at distinct positions."""
    vals = [np.zeros(1, dtype=np.int64)]
    for k in range(1, min(digits, window) + 1):
        pos = np.array(list(itertools.combinations(range(window), k)), dtype=np.int64)
        signs = np.array(list(itertools.product((1, -1), repeat=k)), dtype=np.int64)
        v = (signs[None, :, :] * np.left_shift(np.int64(1), pos)[:, None, :]).sum(axis=-1)
        vals.append(v[v > 0])
    return np.unique(np.concatenate(vals))


class AsdFormat:
    """ASD with ``digits`` (K) non-zero digits and ``exp_bits`` (E) exponent bits."""

    def __init__(self, digits: int = 2, exp_bits: int = 3) -> None:
        if not 1 <= exp_bits <= 5:
            raise ValueError(f"exp_bits must be 1..5, got {exp_bits}")
        w = 1 << exp_bits
        if not 1 <= digits <= w:
            raise ValueError(f"digits must be 1..{w} for exp_bits={exp_bits}, got {digits}")
        if math.comb(w, min(digits, w)) << min(digits, w) > (1 << 24):
            raise ValueError(f"codebook of K={digits}, E={exp_bits} is too large to enumerate")
        self.digits = digits
        self.exp_bits = exp_bits
        self.window = w
        self.frac_bits = w - 1
        if digits == 1:
            # Position 0 (2**-(W-1)) gives way to the zero code.
            lv = np.concatenate([[0], np.left_shift(np.int64(1), np.arange(1, w, dtype=np.int64))])
        else:
            lv = _enumerate_levels(digits, w)
        self.codebook = GridCodebook(lv, self.frac_bits)

    def __repr__(self) -> str:
        return f"AsdFormat(digits={self.digits}, exp_bits={self.exp_bits})"

    @property
    def code_bits(self) -> int:
        if self.digits == 1:
            return 1 + self.exp_bits
        if self.digits == 2:
            return hwcode.code_bits(self.exp_bits)
        return int(math.ceil(math.log2(2 * self.codebook.m + 1)))

    @property
    def vmax(self) -> float:
        return self.codebook.vmax

    def values(self) -> NDArray[np.float64]:
        return self.codebook.values()

    def encode(self, ints: ArrayLike) -> NDArray[np.int64]:
        """Codes of integer values (units ``2**-(W-1)``) that lie in the codebook."""
        v = np.asarray(ints, dtype=np.int64)
        cb = self.codebook
        pos = np.searchsorted(cb.signed_levels, v)
        ok = (pos < cb.signed_levels.size) & (
            cb.signed_levels[np.minimum(pos, cb.signed_levels.size - 1)] == v
        )
        if not np.all(ok):
            bad = int(v.reshape(-1)[np.flatnonzero(~ok.reshape(-1))[0]])
            raise ValueError(f"{bad} * 2**-{self.frac_bits} is not in the {self!r} codebook")
        if self.digits == 2:
            return hwcode.encode(v, self.exp_bits)
        if self.digits == 1:
            mag = np.abs(v)
            p = np.zeros_like(mag)
            nz = mag > 0
            p[nz] = np.frexp(mag[nz].astype(np.float64))[1] - 1
            e = np.where(nz, self.window - 1 - p, self.window - 1)
            return ((v < 0).astype(np.int64) << self.exp_bits) | e
        return pos.astype(np.int64)

    def decode(self, codes: ArrayLike) -> NDArray[np.int64]:
        """Integer values (units ``2**-(W-1)``) of codes; invalid codes raise ``ValueError``."""
        c = np.asarray(codes, dtype=np.int64)
        if np.any((c < 0) | (c >= (1 << self.code_bits))):
            raise ValueError(f"code out of range for {self.code_bits}-bit {self!r}")
        if self.digits == 2:
            return hwcode.to_int(c, self.exp_bits)
        if self.digits == 1:
            emask = self.window - 1
            e = c & emask
            s = c >> self.exp_bits
            zero = e == emask
            if np.any(zero & (s == 1)):
                raise ValueError("invalid one-digit code: negative zero")
            mag = np.where(zero, 0, np.left_shift(np.int64(1), emask - e))
            return np.where(s == 1, -mag, mag)
        if np.any(c >= self.codebook.signed_levels.size):
            raise ValueError(f"code beyond the codebook of {self!r}")
        return self.codebook.signed_levels[c]

    @cached_property
    def code_table(self) -> NDArray[np.unsignedinteger]:
        """Code of every signed level index (offset by M): the bucket table's payload."""
        dt = np.uint8 if self.code_bits <= 8 else np.uint16 if self.code_bits <= 16 else np.uint32
        return self.encode(self.codebook.signed_levels).astype(dt)

    def to_float(self, ints: ArrayLike) -> NDArray[np.float64]:
        return np.ldexp(np.asarray(ints, dtype=np.float64), -self.frac_bits)


def nearest_int(x: ArrayLike, fmt: AsdFormat) -> NDArray[np.int64]:
    """Nearest codebook integer to each ``x`` (unscaled, in value units), ties away from zero."""
    a = np.ldexp(np.asarray(x, dtype=np.float64), fmt.frac_bits + 1)
    return fmt.codebook.int_values(fmt.codebook.nearest_index_ref(a))


def nearest(x: ArrayLike, fmt: AsdFormat) -> NDArray[np.float64]:
    """Nearest codebook value to each ``x``, as float64."""
    return fmt.to_float(nearest_int(x, fmt))


def _highest_bit(m: NDArray[np.int64]) -> NDArray[np.int64]:
    ex = np.frexp(m.astype(np.float64))[1]
    return np.where(m > 0, np.left_shift(np.int64(1), np.maximum(ex - 1, 0)), 0)


def csd_round_int(x: ArrayLike, fmt: AsdFormat) -> NDArray[np.int64]:
    """Published-style conversion: fixed point, CSD, keep the K most significant digits."""
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("NaN or Inf in values")
    # Anything at or above 2**1 saturates; clipping first keeps the CSD in range.
    lim = 2.0
    n = csd.to_fixed(np.clip(a, -lim, lim), fmt.frac_bits)
    plus, minus = csd.naf_masks(n)
    rest = plus | minus
    kept = np.zeros_like(rest)
    for _ in range(fmt.digits):
        hb = _highest_bit(rest)
        kept |= hb
        rest &= ~hb
    v = (plus & kept) - (minus & kept)
    # Snap to the window (identity for representable values, saturation above the top).
    a2 = np.ldexp(v.astype(np.float64), 1)
    return fmt.codebook.int_values(fmt.codebook.nearest_index_ref(a2))


def csd_round(x: ArrayLike, fmt: AsdFormat) -> NDArray[np.float64]:
    return fmt.to_float(csd_round_int(x, fmt))

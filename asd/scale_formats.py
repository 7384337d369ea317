"""How scales are stored: the scale *format*, chosen against size and error (issue 24).

A tensor's scales (one per output channel, or one per tensor) are stored in one of:

=========== ============================================== =====================================
name        scale of row r                                 stored bits
=========== ============================================== =====================================
fp16        a float16 each                                 16 per row
fp16-pack   the same values, no sign bit, exponent offset  8 (smallest exponent) + 8 (width) +
            from the tensor's smallest                     10 + exponent bits per row, packed
log8        ``fp16(base * 2**(-i_r/32))``, ``i_r`` 0..255  16 (float16 base) + 8 per row
shared-exp  ``M * 2**-k_r``: one float16 mantissa, k_r     16 (M) + 8 (width) + width per row,
            unsigned of the fewest bits that hold them     packed
pow2        ``2**(e0 - k_r)``: a shift, no multiplier      8 (e0) + 8 (width) + width per row,
                                                           packed
=========== ============================================== =====================================

Every decoded scale is a float16 value (log8 rounds its power to float16), so the codes are
always computed at the decoded value and ``NAME.scale`` (float16) holds what the weights are
multiplied by; the format's own fields are what the size accounting counts.  ``fit`` picks,
per row, the representable scale with the least squared error among the neighbours of the
searched (continuous) optimum, under the scheme's own quantizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asd import packing

MIN_SCALE = 2.0**-24  # the smallest float16 subnormal
MAX_SCALE = 65504.0  # the largest finite float16
LOG_STEPS = 32  # log8: codes per octave (8 octaves below the base)
DEFAULT = "fp16-pack"  # chosen by measurement: docs/quantizers.md "Scale formats"

Values = Callable[[NDArray, NDArray[np.float32]], NDArray]


@dataclass
class StoredScales:
    """What a tensor's scales cost and hold: ``arrays`` (suffix -> array) go into the archive
    as ``NAME<suffix>``; ``bits`` counts every stored bit (header, fields, padding)."""

    fmt: str
    scale: NDArray[np.float32]  # decoded, float16 values
    bits: int
    arrays: dict[str, NDArray] = field(default_factory=dict)
    width: int = 16  # bits per row's field


def fp16(s: NDArray) -> NDArray[np.float32]:
    """Scales as float16 values (held in float32), kept within float16's positive range."""
    return np.clip(np.asarray(s, np.float64), MIN_SCALE, MAX_SCALE).astype(np.float16).astype(
        np.float32)


def _width(k: NDArray[np.int64]) -> int:
    return int(k.max()).bit_length() if k.size else 0


Grid = Callable[[NDArray[np.float64], int], NDArray[np.float64]]


class ScaleFormat:
    name = "?"
    span = 1

    def grid(self, s: NDArray[np.float64], weight: NDArray[np.float64]) -> tuple[Grid, float]:
        """For this tensor (continuous scales ``s``, row energies ``weight``): the tensor's
        header (base or mantissa; 0 when none) and ``at(x, j)``, the representable value ``j``
        steps above the largest one ``<= x`` (``j = 0``: that one; clipped to the range)."""
        raise NotImplementedError

    def encode(self, scale: NDArray, header: float | None = None) -> StoredScales:
        """The stored form of representable ``scale`` (``header`` as :meth:`grid` chose it)."""
        raise NotImplementedError


class Fp16(ScaleFormat):
    name = "fp16"
    span = 16  # representable values tried either side of an exact optimum

    def grid(self, s: NDArray[np.float64], weight: NDArray[np.float64]) -> tuple[Grid, float]:
        def at(x: NDArray[np.float64], j: int) -> NDArray[np.float64]:
            h = fp16(x).astype(np.float16)
            h = np.where(h.astype(np.float64) > x, np.nextafter(h, np.float16(0)), h)
            for _ in range(abs(j)):
                h = np.nextafter(h, np.float16(0 if j < 0 else np.inf))
            return fp16(h.astype(np.float64)).astype(np.float64)
        return at, 0.0

    def encode(self, scale: NDArray, header: float | None = None) -> StoredScales:
        s = fp16(scale)
        return StoredScales(self.name, s, 16 * s.size, {".scale": s.astype(np.float16)})


class Fp16Pack(Fp16):
    """The float16 values of :class:`Fp16`, stored without what every scale of a tensor
    shares: no sign bit (scales are positive) and the exponent as an offset from the tensor's
    smallest, in the fewest bits that hold the tensor's range.  Lossless against fp16."""

    name = "fp16-pack"

    def encode(self, scale: NDArray, header: float | None = None) -> StoredScales:
        s = fp16(scale)
        h = s.astype(np.float16).view(np.uint16).astype(np.int64)
        e = h >> 10
        e0 = int(e.min())
        w = _width(e - e0) + 10
        codes = packing.pack(((e - e0) << 10) | (h & 1023), w)
        # header: the smallest exponent (5 bits, counted as a byte) and the field width (a byte)
        fields = {".scale_exp": np.array([e0], np.uint8), ".scale_codes": codes}
        return StoredScales(self.name, s, 16 + 8 * codes.size, fields, width=w)

    @staticmethod
    def decode(e0: int, codes: NDArray[np.int64]) -> NDArray[np.float32]:
        h = (((codes >> 10) + e0) << 10) | (codes & 1023)
        return h.astype(np.uint16).view(np.float16).astype(np.float32)


class Log8(ScaleFormat):
    name = "log8"
    span = 96  # three octaves either side

    @staticmethod
    def value(base: float, i: NDArray) -> NDArray[np.float32]:
        return fp16(base * np.exp2(-np.asarray(i, np.float64) / LOG_STEPS))

    def grid(self, s: NDArray[np.float64], weight: NDArray[np.float64]) -> tuple[Grid, float]:
        base = float(fp16(np.array([s.max() * 2.0 ** (1 / LOG_STEPS)]))[0])

        def at(x: NDArray[np.float64], j: int) -> NDArray[np.float64]:
            i = np.ceil(np.log2(base / x) * LOG_STEPS - 1e-9) - j
            return self.value(base, np.clip(i, 0, 255)).astype(np.float64)
        return at, base

    def encode(self, scale: NDArray, header: float | None = None) -> StoredScales:
        s = np.asarray(scale, np.float64)
        base = float(fp16(np.array([s.max()]))[0]) if header is None else header
        i = np.clip(np.rint(np.log2(base / s) * LOG_STEPS), 0, 255).astype(np.int64)
        # the code whose decoded value is the given scale (the nearest otherwise)
        for d in (-1, 1):
            alt = np.clip(i + d, 0, 255)
            better = np.abs(self.value(base, alt) - s) < np.abs(self.value(base, i) - s)
            i = np.where(better, alt, i)
        fields = {".scale_base": np.array([base], np.float16), ".scale_codes": i.astype(np.uint8)}
        return StoredScales(self.name, self.value(base, i), 16 + 8 * s.size, fields, width=8)


class SharedExp(ScaleFormat):
    """``M * 2**-k``: a mantissa ``M`` shared by the tensor, a small exponent per row."""

    name = "shared-exp"
    pow2_only = False
    span = 4

    def _mantissa(self, s: NDArray[np.float64], weight: NDArray[np.float64]) -> float:
        if self.pow2_only:
            return 1.0
        # Candidate fractional octaves: each row's own, and a 1/64 grid; cost = energy-weighted
        # squared log distance to the nearest M * 2**k (rounding a scale costs ~ its square).
        frac = np.mod(np.log2(s), 1.0)
        cand = np.unique(np.concatenate([frac, np.arange(64) / 64]))
        d = np.mod(frac[None, :] - cand[:, None] + 0.5, 1.0) - 0.5
        return float(np.exp2(cand[np.argmin((d * d * weight[None, :]).sum(axis=1))]))

    def grid(self, s: NDArray[np.float64], weight: NDArray[np.float64]) -> tuple[Grid, float]:
        m = self._mantissa(s, weight)

        def at(x: NDArray[np.float64], j: int) -> NDArray[np.float64]:
            e = np.floor(np.log2(x / m) + 1e-12) + j
            return fp16(m * np.exp2(e)).astype(np.float64)
        return at, m

    def encode(self, scale: NDArray, header: float | None = None) -> StoredScales:
        s = np.asarray(scale, np.float64)
        top = float(s.max())  # every other scale is top * 2**-k
        k = np.rint(np.log2(top / s)).astype(np.int64)
        dec = fp16(top * np.exp2(-k.astype(np.float64)))
        w = _width(k)
        if self.pow2_only:
            e0 = np.array([int(np.rint(np.log2(top)))], np.int8)
            head: dict[str, NDArray] = {".scale_exp": e0}
            head_bits = 8
        else:
            head, head_bits = {".scale_base": np.array([top], np.float16)}, 16
        codes = packing.pack(k, w) if w else np.zeros(0, np.uint8)
        # + 8: the field width, needed to unpack
        return StoredScales(self.name, dec, head_bits + 8 + 8 * codes.size,
                            {**head, ".scale_codes": codes}, width=w)


class Pow2(SharedExp):
    name = "pow2"
    pow2_only = True


FORMATS: dict[str, ScaleFormat] = {
    f.name: f for f in (Fp16Pack(), Fp16(), Log8(), SharedExp(), Pow2())}


def get(name: str) -> ScaleFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown scale format {name!r}; use one of {', '.join(FORMATS)}") \
            from None


def row_errors(w2: NDArray, s: NDArray, values: Values) -> NDArray[np.float64]:
    """Squared error per row of ``w2`` quantized at scales ``s`` by ``values``."""
    s32 = np.asarray(s, np.float32)
    d = w2 - values(w2, s32).astype(w2.dtype, copy=False) * s32.astype(w2.dtype)[:, None]
    return np.einsum("ij,ij->i", d, d).astype(np.float64)


def fit(fmt: ScaleFormat, w2: NDArray, s: NDArray, values: Values | None,
        neighbours: int = 1) -> StoredScales:
    """Per row, the representable scale with the least squared error among the ``neighbours``
    on either side of ``s`` (without ``values``: the nearest one at or above ``s``), stored."""
    s64 = np.clip(np.asarray(s, np.float64), MIN_SCALE, MAX_SCALE)
    if isinstance(fmt, Fp16) and values is not None and np.array_equal(fp16(s64), s64):
        return fmt.encode(s64)  # the search already chose among float16 values
    energy = np.einsum("ij,ij->i", w2, w2).astype(np.float64)
    at, header = fmt.grid(s64, energy + 1e-300)
    if values is None:
        lo = at(s64, 0)
        return fmt.encode(np.where(lo < s64, at(s64, 1), lo), header)
    best_s = at(s64, 0)
    best_e = row_errors(w2, best_s, values)
    for j in [*range(1, neighbours + 1), *range(-neighbours + 1, 0)]:
        c = at(s64, j)
        e = row_errors(w2, c, values)
        better = e < best_e
        best_s[better], best_e[better] = c[better], e[better]
    return fmt.encode(best_s, header)


def fit_exact(fmt: ScaleFormat, w2: NDArray, s: NDArray, sweeps: list[tuple[int, Any]]
              ) -> StoredScales:
    """Like :func:`fit`, exactly, with :class:`asd.scales.Sweep` blocks (``(first row,
    sweep)``): in every piece of a row's error the best representable value is the format's
    nearest below or above the piece's vertex, if inside the piece; the least of those over
    all pieces is the row's best representable scale in the swept range."""
    s64 = np.clip(np.asarray(s, np.float64), MIN_SCALE, MAX_SCALE)
    energy = np.einsum("ij,ij->i", w2, w2).astype(np.float64)
    at, header = fmt.grid(s64, energy + 1e-300)
    best = s64.copy()
    for r0, sw in sweeps:
        left, right, v = sw.pieces()
        v = np.clip(v, MIN_SCALE, MAX_SCALE)
        top = np.full(v.shape[0], np.inf)
        for c in (at(v, 0), at(v, 1)):
            e = np.where((c > left) & (c <= right), sw.piece_errors(c), np.inf)
            k = np.argmin(e, axis=1)
            i = np.arange(e.shape[0])
            better = e[i, k] < top
            top[better] = e[i, k][better]
            rows = r0 + np.flatnonzero(better)
            best[rows] = c[i, k][better]
    best = np.where(energy > 0, best, s64)  # an all-zero row keeps its scale (1)
    return fmt.encode(best, header)

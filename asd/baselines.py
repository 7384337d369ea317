"""Baselines the ASD results are compared against.

* Uniform symmetric INT-b: ``v in {-(2**(b-1)-1) .. 2**(b-1)-1}`` (the most negative two's
  complement value is unused so the grid is sign-symmetric), code = b-bit two's complement.
* One-digit power of two (INQ / LogQuant style): :class:`asd.asdq.AsdFormat` with ``digits=1``
  (``1+E`` bits: sign, exponent, all-ones exponent = zero).
* ShiftCNN-style greedy N-term: N terms, each from the one-digit power-of-two codebook;
  term k is the nearest one-digit value to the residual left by terms 1..k-1.  Code = the N
  one-digit codes concatenated, term 1 in the most significant bits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from asd.asdq import AsdFormat, GridCodebook


class IntFormat:
    """Uniform symmetric integer grid of ``bits`` bits (2..16)."""

    def __init__(self, bits: int = 8) -> None:
        if not 2 <= bits <= 16:
            raise ValueError(f"int bits must be 2..16, got {bits}")
        self.bits = bits
        self.qmax = (1 << (bits - 1)) - 1
        self.codebook = GridCodebook(np.arange(self.qmax + 1), 0)

    def __repr__(self) -> str:
        return f"IntFormat(bits={self.bits})"

    @property
    def code_bits(self) -> int:
        return self.bits

    @property
    def vmax(self) -> float:
        return float(self.qmax)

    def encode(self, ints: ArrayLike) -> NDArray[np.int64]:
        v = np.asarray(ints, dtype=np.int64)
        if np.any(np.abs(v) > self.qmax):
            raise ValueError(f"integer beyond +-{self.qmax}")
        return v & ((1 << self.bits) - 1)

    def decode(self, codes: ArrayLike) -> NDArray[np.int64]:
        c = np.asarray(codes, dtype=np.int64)
        if np.any((c < 0) | (c >= (1 << self.bits))):
            raise ValueError(f"code out of range for {self.bits}-bit integers")
        v = np.where(c >= (1 << (self.bits - 1)), c - (1 << self.bits), c)
        if np.any(v < -self.qmax):
            raise ValueError("the most negative integer code is not used")
        return v

    def to_float(self, ints: ArrayLike) -> NDArray[np.float64]:
        return np.asarray(ints, dtype=np.float64)

    def nearest_int(self, x: ArrayLike) -> NDArray[np.int64]:
        """Round to nearest integer, ties away from zero, saturating at ``+-qmax``."""
        a = np.ldexp(np.asarray(x, dtype=np.float64), 1)
        return self.codebook.int_values(self.codebook.nearest_index_ref(a))


def pot_format(exp_bits: int = 3) -> AsdFormat:
    """One-digit power of two: ``{0, +-1, +-1/2, ..., +-2**-(2**E - 2)}``, ``1+E`` bits."""
    return AsdFormat(digits=1, exp_bits=exp_bits)


class ShiftCnnFormat:
    """Greedy sum of ``terms`` one-digit power-of-two values."""

    def __init__(self, terms: int = 2, exp_bits: int = 3) -> None:
        if not 1 <= terms <= 4:
            raise ValueError(f"ShiftCNN terms must be 1..4, got {terms}")
        self.terms = terms
        self.term = pot_format(exp_bits)
        self.exp_bits = exp_bits
        self.frac_bits = self.term.frac_bits

    def __repr__(self) -> str:
        return f"ShiftCnnFormat(terms={self.terms}, exp_bits={self.exp_bits})"

    @property
    def code_bits(self) -> int:
        return self.terms * self.term.code_bits

    @property
    def vmax(self) -> float:
        # Weights are normalized to the first term's range, as in ShiftCNN; later terms refine.
        return 1.0

    def quantize(self, x: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Greedy codes and integer values (units ``2**-frac_bits``) of unscaled ``x``."""
        r = np.asarray(x, dtype=np.float64)
        total = np.zeros(r.shape, dtype=np.int64)
        codes = np.zeros(r.shape, dtype=np.int64)
        cb = self.term.codebook
        for _ in range(self.terms):
            iv = cb.int_values(cb.index(r))
            total += iv
            codes = (codes << self.term.code_bits) | self.term.encode(iv)
            r = r - self.term.to_float(iv)
        return codes, total

    def decode(self, codes: ArrayLike) -> NDArray[np.int64]:
        c = np.asarray(codes, dtype=np.int64)
        if np.any((c < 0) | (c >= (1 << self.code_bits))):
            raise ValueError(f"code out of range for {self.code_bits}-bit {self!r}")
        b = self.term.code_bits
        total = np.zeros(c.shape, dtype=np.int64)
        for k in range(self.terms):
            total += self.term.decode((c >> (b * k)) & ((1 << b) - 1))
        return total

    def to_float(self, ints: ArrayLike) -> NDArray[np.float64]:
        return self.term.to_float(ints)

"""The two-digit weight code the accelerator consumes (the hardware contract).

A code of ``2 * (1 + E)`` bits holds two signed power-of-two digits, most significant bit first::

    | s1 | e1 (E bits) | s2 | e2 (E bits) |

and stands for the value ``v = (-1)**s1 * 2**-e1 + (-1)**s2 * 2**-e2``.  With ``W = 2**E`` window
positions the integer the datapath uses is ``v * 2**(W-1)``, so one product ``x * v`` is exactly
two shifts and one add or subtract: ``(-1)**s1 * (x << (W-1-e1)) + (-1)**s2 * (x << (W-1-e2))``.

Both digits are always present; values with fewer non-zero digits are written with a pair:
zero as ``+2**-(W-1) - 2**-(W-1)``, a single digit ``2**-e`` as ``2**-(e+1) + 2**-(e+1)`` (and
``2**-(W-1)`` as ``2**-(W-2) - 2**-(W-1)``).  So every code decodes with no special case, and
every ASD value with at most two digits in the window has exactly one *canonical* code, the one
:func:`encode` returns.  For E=3 a code is 8 bits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

I64 = NDArray[np.int64]


def code_bits(exp_bits: int) -> int:
    """Bits in one two-digit code."""
    return 2 * (1 + exp_bits)


def window(exp_bits: int) -> int:
    """Number of digit positions: exponents run 0 .. window-1."""
    return 1 << exp_bits


def split(codes: ArrayLike, exp_bits: int) -> tuple[I64, I64, I64, I64]:
    """Fields ``(s1, e1, s2, e2)`` of every code (vectorized)."""
    c = np.asarray(codes, dtype=np.int64)
    emask = (1 << exp_bits) - 1
    e2 = c & emask
    s2 = (c >> exp_bits) & 1
    e1 = (c >> (exp_bits + 1)) & emask
    s1 = (c >> (2 * exp_bits + 1)) & 1
    return s1, e1, s2, e2


def join(s1: ArrayLike, e1: ArrayLike, s2: ArrayLike, e2: ArrayLike, exp_bits: int) -> I64:
    """Inverse of :func:`split`."""
    s1, e1, s2, e2 = (np.asarray(a, dtype=np.int64) for a in (s1, e1, s2, e2))
    return (((s1 << exp_bits | e1) << 1 | s2) << exp_bits) | e2


def to_int(codes: ArrayLike, exp_bits: int) -> I64:
    """The integer weight ``v * 2**(W-1)`` each code stands for."""
    s1, e1, s2, e2 = split(codes, exp_bits)
    top = window(exp_bits) - 1
    t1 = np.left_shift(1, top - e1)
    t2 = np.left_shift(1, top - e2)
    ints: I64 = np.where(s1 == 1, -t1, t1) + np.where(s2 == 1, -t2, t2)
    return ints


def to_float(codes: ArrayLike, exp_bits: int) -> NDArray[np.float64]:
    """The value ``v`` each code stands for, as float64."""
    return to_int(codes, exp_bits).astype(np.float64) / float(1 << (window(exp_bits) - 1))


def encode(value_int: ArrayLike, exp_bits: int) -> I64:
    """Canonical code of integer weights ``v * 2**(W-1)`` with at most two digits in the window.

    Raises ``ValueError`` naming the first value that has no such form.
    """
    v = np.asarray(value_int, dtype=np.int64)
    top = window(exp_bits) - 1
    mag = np.abs(v)
    neg = (v < 0).astype(np.int64)
    # Highest set bit and what remains below it.
    hi = np.zeros_like(mag)
    nz = mag > 0
    hi[nz] = np.floor(np.log2(mag[nz])).astype(np.int64)
    # log2 of large ints may round up; correct it exactly.
    over = nz & ((np.left_shift(1, hi)) > mag)
    hi[over] -= 1
    rest = mag - np.where(nz, np.left_shift(1, hi), 0)
    lo = np.zeros_like(mag)
    rnz = rest > 0
    lo[rnz] = np.floor(np.log2(rest[rnz])).astype(np.int64)
    lover = rnz & ((np.left_shift(1, lo)) > rest)
    lo[lover] -= 1
    single = nz & ~rnz
    double = rnz & (rest == np.left_shift(1, lo))
    two_same_sign = double  # v = +-(2^hi + 2^lo)
    # 2^(top+1) = 2^top + 2^top is the one value a code holds beyond the window.
    ok = (~nz) | (single & (hi <= top + 1)) | (double & (hi <= top))
    # 2^hi - 2^lo forms (e.g. 7 = 8 - 1) are values with two digits of opposite sign.
    diff_hi = np.zeros_like(mag)
    diff_lo = np.zeros_like(mag)
    is_diff = np.zeros(mag.shape, dtype=bool)
    cand = nz & ~ok
    if np.any(cand):
        # mag = 2^p - 2^q with p > q: mag + 2^q is a power of two where q is mag's lowest set bit.
        low = mag & -mag
        up = mag + low
        pow2 = (up & (up - 1)) == 0
        p = np.zeros_like(mag)
        pc = cand & pow2
        p[pc] = np.round(np.log2(up[pc])).astype(np.int64)
        q = np.zeros_like(mag)
        q[pc] = np.round(np.log2(low[pc])).astype(np.int64)
        is_diff = pc & (p <= top) & (q < p - 1)
        diff_hi[is_diff] = p[is_diff]
        diff_lo[is_diff] = q[is_diff]
    bad = ~(ok | is_diff)
    if np.any(bad):
        first = v.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
        raise ValueError(
            f"integer weight {int(first)} is not a sum of two signed powers of two "
            f"with exponents in 0..{top}"
        )
    # Exponents in code are measured downwards from the top position: e = top - bit position.
    s1 = np.zeros_like(mag)
    e1 = np.zeros_like(mag)
    s2 = np.zeros_like(mag)
    e2 = np.zeros_like(mag)
    # zero
    z = ~nz
    s1[z], e1[z], s2[z], e2[z] = 0, top, 1, top
    # single digit 2^hi: two halves, or 2^(hi+1) - 2^hi at the bottom position
    sg = single
    half = sg & (hi >= 1)
    s1[half], s2[half] = neg[half], neg[half]
    e1[half] = top - (hi[half] - 1)
    e2[half] = top - (hi[half] - 1)
    bottom = sg & (hi == 0)
    s1[bottom], s2[bottom] = neg[bottom], 1 - neg[bottom]
    e1[bottom], e2[bottom] = top - 1, top
    # two digits of one sign
    dd = two_same_sign & ~single
    s1[dd], s2[dd] = neg[dd], neg[dd]
    e1[dd], e2[dd] = top - hi[dd], top - lo[dd]
    # 2^p - 2^q
    s1[is_diff], s2[is_diff] = neg[is_diff], 1 - neg[is_diff]
    e1[is_diff], e2[is_diff] = top - diff_hi[is_diff], top - diff_lo[is_diff]
    return join(s1, e1, s2, e2, exp_bits)

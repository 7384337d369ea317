"""Integer semantics, written once.  The emulator (step and fast mode) uses these functions and
the RTL implements exactly them; they work on Python ints and on numpy int64 arrays alike.

* Two's complement throughout.  ``wrap(v, bits)`` keeps the low ``bits`` bits as a signed value:
  accumulators and STORE wrap, they never saturate.
* ``sa(x, code)`` is the shift-add product: with the code's fields ``(s1, e1, s2, e2)`` and
  ``T = 2^E - 1``, ``(-1)^s1 (x << (T - e1)) + (-1)^s2 (x << (T - e2))``, exact (never wraps:
  its width is that of ``x`` plus ``2^E + 1`` bits).
* ``product(x, code, weights, E)`` is the MAC product of a WMEM code in the configuration's
  weight format (``contract.weights``): ``sa(x, code)`` for ``asd``, ``x * q`` for ``int8``,
  both exact.  REQ and ACT parameters are two-digit codes in every format.
* ``rnd(t, s)`` rounds half up: ``(t + 2^(s-1)) >> s`` with an arithmetic shift; ``rnd(t, 0) = t``.
* ``sat`` clamps to ``[-2^(act_bits-1), 2^(act_bits-1) - 1]``.

Widths guarantee int64 never overflows: acc_bits <= 40, 2^E <= 16, and a REQ shift (up to
``isa.REQ_SHIFT_MAX``) only after rounding has brought the value back into range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import hwcode
from . import weights as wformats
from .isa import REQ_SHIFT_MAX


def wrap(v: Any, bits: int) -> Any:
    """Signed value of the low ``bits`` bits of ``v``."""
    half = 1 << (bits - 1)
    return ((v + half) & ((1 << bits) - 1)) - half


def saturate(v: Any, bits: int) -> Any:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if isinstance(v, np.ndarray):
        return np.clip(v, lo, hi)
    return min(max(v, lo), hi)


def shift_add(x: Any, code: Any, exp_bits: int) -> Any:
    """``x`` times the code's value ``v * 2^(2^E - 1)``, as two shifts and one add/subtract."""
    s1, e1, s2, e2 = hwcode.split(code, exp_bits)
    top = hwcode.window(exp_bits) - 1
    x = np.asarray(x, dtype=np.int64)
    t1 = np.left_shift(x, top - e1)
    t2 = np.left_shift(x, top - e2)
    out = np.where(s1 == 1, -t1, t1) + np.where(s2 == 1, -t2, t2)
    return out


def product(x: Any, code: Any, weights: str, exp_bits: int) -> Any:
    """``x`` times the integer a WMEM ``code`` stands for in format ``weights``, exact."""
    if weights == wformats.DEFAULT:
        return shift_add(x, code, exp_bits)
    ints = wformats.get(weights).to_int(code, exp_bits)
    return np.asarray(x, dtype=np.int64) * ints


def round_shift(t: Any, shift: Any) -> Any:
    """Round half up, then arithmetic shift right by ``shift`` (0 leaves ``t`` as it is)."""
    t = np.asarray(t, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return np.right_shift(t + half, shift)


def req_fields(param: Any, code_bits: int) -> tuple[Any, Any]:
    """``(code, shift)`` of a REQ/ACT parameter word entry."""
    p = np.asarray(param, dtype=np.int64)
    return p & ((1 << code_bits) - 1), (p >> code_bits) & REQ_SHIFT_MAX


def req_param(code: int, shift: int, code_bits: int) -> int:
    """The BMEM entry that REQ reads as ``(code, shift)``."""
    if not 0 <= shift <= REQ_SHIFT_MAX:
        raise ValueError(f"requant shift {shift} out of range 0..{REQ_SHIFT_MAX}")
    return int(code) | (int(shift) << code_bits)


def requantize(acc: Any, param: Any, exp_bits: int, act_bits: int, relu: bool) -> Any:
    code, shift = req_fields(param, hwcode.code_bits(exp_bits))
    y = saturate(round_shift(shift_add(acc, code, exp_bits), shift), act_bits)
    return np.maximum(y, 0) if relu else y


def leaky(acc: Any, param: Any, exp_bits: int, act_bits: int) -> Any:
    code, _ = req_fields(param, hwcode.code_bits(exp_bits))
    top = hwcode.window(exp_bits) - 1
    neg = saturate(round_shift(shift_add(acc, code, exp_bits), top), act_bits)
    a = np.asarray(acc, dtype=np.int64)
    return np.where(a < 0, neg, a)

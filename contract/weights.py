"""The weight formats WMEM can hold: one table the emulator (step and fast), the compiler,
the integer reference, the RTL and the docs share.

Per format: the width of one code in WMEM, how a code becomes the integer the datapath
multiplies by, the integer standing for the value 1.0 (the compiler's accumulator unit) and
the product's semantics.  Products are exact integer products ``x * to_int(code)`` in both
formats; only how the integer is coded differs.

``asd``   the two-digit code of :mod:`contract.hwcode`, ``2(1+E)`` bits; the integer is
          ``v * 2^(2^E - 1)``, so 1.0 is ``2^(2^E - 1)``; the product is two shifts and one
          add/subtract (``semantics.shift_add``), on either PE kind.
``int8``  a plain 8-bit two's complement integer ``q`` (-128..127); 1.0 is 1 (``w = s_w * q``);
          the product is ``x * q`` on a multiplier (PE kind ``multiplier`` only).

With either format the accumulator holds ``sum x * w_int`` and ``w ~ s_w * w_int / unit``: the
compiler sets the requantization factor ``s_x * s_w / (unit * s_y)`` from this table, so REQ and
ACT (two-digit codes in BMEM, applied by shift-add) keep their semantics unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import hwcode

I64 = NDArray[np.int64]

INT8_BITS = 8


@dataclass(frozen=True)
class WeightFormat:
    """One row of :data:`FORMATS` (``exp_bits`` is the configuration's ASD exponent width)."""

    name: str
    pe_kinds: tuple[str, ...]   # PE kinds that can multiply by it
    summary: str                # one line for the docs

    def code_bits(self, exp_bits: int) -> int:
        """Bits of one weight code in WMEM (per lane)."""
        return hwcode.code_bits(exp_bits) if self.name == "asd" else INT8_BITS

    def to_int(self, codes: ArrayLike, exp_bits: int) -> I64:
        """The integer the datapath multiplies by (only the low ``code_bits`` bits count)."""
        if self.name == "asd":
            return hwcode.to_int(codes, exp_bits)
        c = np.asarray(codes, dtype=np.int64) & 0xFF
        ints: I64 = c - ((c & 0x80) << 1)
        return ints

    def encode(self, ints: ArrayLike, exp_bits: int) -> I64:
        """Canonical code of integer weights; ``ValueError`` names the first it cannot hold."""
        if self.name == "asd":
            return hwcode.encode(ints, exp_bits)
        v = np.asarray(ints, dtype=np.int64)
        bad = (v < -128) | (v > 127)
        if np.any(bad):
            raise ValueError(f"integer weight {int(v[bad].reshape(-1)[0])} does not fit int8 "
                             "(-128..127)")
        codes: I64 = v & 0xFF
        return codes

    def unit(self, exp_bits: int) -> int:
        """The weight integer of the value 1.0: the accumulator's unit is ``s_x * s_w / unit``."""
        return 1 << (hwcode.window(exp_bits) - 1) if self.name == "asd" else 1

    def max_abs(self, exp_bits: int) -> int:
        """Largest ``|to_int(code)|`` over all codes."""
        return 1 << hwcode.window(exp_bits) if self.name == "asd" else 128

    def positive_ints(self, exp_bits: int) -> I64:
        """Every positive integer a code holds, ascending."""
        every = self.to_int(np.arange(1 << self.code_bits(exp_bits)), exp_bits)
        return np.unique(every[every > 0])

    def product_bits(self, xbits: int, exp_bits: int) -> int:
        """Width that holds every product of an ``xbits`` activation and a weight."""
        if self.name == "asd":
            return xbits + hwcode.window(exp_bits) + 1
        return xbits + INT8_BITS


FORMATS: dict[str, WeightFormat] = {
    "asd": WeightFormat(
        "asd", ("shiftadd", "multiplier"),
        "two-digit code `| s1 | e1 | s2 | e2 |`, 2(1+E) bits, integer v * 2^(2^E - 1); "
        "x * w is two shifts and one add"),
    "int8": WeightFormat(
        "int8", ("multiplier",),
        "plain 8-bit two's complement integer q (-128..127); x * w is x * q on a multiplier"),
}
DEFAULT = "asd"


def get(name: str) -> WeightFormat:
    """The format called ``name``; ``KeyError`` lists the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown weight format {name!r} (known: {', '.join(FORMATS)})") from None

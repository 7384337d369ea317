"""Processing elements: ``x`` times a two-digit weight, in two hardware forms.

``shiftadd``: the code ``| s1 | e1 | s2 | e2 |`` (see :mod:`asd.hwcode`) selects two barrel
shifts of ``x``; the signs are folded into the one adder as ``(s1 ? ~t1 : t1) + (s2 ? ~t2 :
t2) + s1 + s2`` (two's complement negation is invert-and-add-one, and both +1s enter the same
addition), so there is no separate negation carry chain in front of the adder.
:func:`shift_terms` hands the two sign-folded terms over unresolved, for an accumulator in
carry-save form (``accel.designs``, mode ``carrysave``): then the PE has no adder at all.

``multiplier``: the same product with a real multiplier; the code is decoded to its integer
``v * 2^(2^E - 1)`` (by :func:`decode_code`) before it reaches the PE, so the lane stores the
integer in its W register.

Both compute the exact product: the output width ``xbits + 2^E + 1`` always holds it.
``x`` is widened to the output width before it is shifted, because VHDL shifts at the
operand's width (DESIGN.md s.6).
"""

from __future__ import annotations

from typing import Any

from myhdl import Signal, always_comb, block, intbv

from asd import hwcode


def _signed(bits: int) -> Signal:
    return Signal(intbv(0, min=-(1 << (bits - 1)), max=1 << (bits - 1)))


def _unsigned(bits: int) -> Signal:
    return Signal(intbv(0)[bits:])


@block
def code_fields(code: Any, exp_bits: int, s1: Any, sh1: Any, s2: Any, sh2: Any) -> Any:
    """Signs and left-shift amounts ``T - e`` of both digits."""
    e = exp_bits
    cb = hwcode.code_bits(exp_bits)
    top = hwcode.window(exp_bits) - 1

    @always_comb
    def split_code() -> None:
        s1.next = code[cb - 1]
        s2.next = code[e]
        sh1.next = top - code[cb - 1:e + 1]
        sh2.next = top - code[e:0]

    return split_code


@block
def fold_signs(s1: Any, t1: Any, s2: Any, t2: Any, o1: Any, o2: Any) -> Any:
    """``o = s ? ~t : t``: with a +1 per set sign still to add, ``o1 + o2 + s1 + s2`` is
    ``(-1)^s1 t1 + (-1)^s2 t2``."""

    @always_comb
    def invert() -> None:
        if s1:
            o1.next = ~t1
        else:
            o1.next = t1
        if s2:
            o2.next = ~t2
        else:
            o2.next = t2

    return invert


@block
def fold_add(s1: Any, t1: Any, s2: Any, t2: Any, y: Any) -> Any:
    """``y = (-1)^s1 t1 + (-1)^s2 t2`` with both signs folded into one addition."""
    o1 = Signal(t1.val)
    o2 = Signal(t2.val)
    cst = _signed(3)

    @always_comb
    def carries() -> None:
        if s1 and s2:
            cst.next = 2
        elif s1 or s2:
            cst.next = 1
        else:
            cst.next = 0

    @always_comb
    def add3() -> None:
        y.next = o1 + o2 + cst

    return fold_signs(s1, t1, s2, t2, o1, o2), carries, add3


@block
def shifted_terms(x: Any, code: Any, s1: Any, t1: Any, s2: Any, t2: Any,
                  exp_bits: int) -> Any:
    """The digits' signs and the two shifted copies of ``x``:
    ``sa(x, code) = (-1)^s1 t1 + (-1)^s2 t2``."""
    xw = _signed(len(t1))
    sh1, sh2 = _unsigned(exp_bits), _unsigned(exp_bits)

    @always_comb
    def widen() -> None:
        xw.next = x

    @always_comb
    def shifts() -> None:
        t1.next = xw << sh1
        t2.next = xw << sh2

    return widen, code_fields(code, exp_bits, s1, sh1, s2, sh2), shifts


@block
def shift_add(x: Any, code: Any, y: Any, xbits: int, exp_bits: int) -> Any:
    """``y = sa(x, code)``: two shifts and one add/subtract, no multiplier."""
    pw = product_bits(xbits, exp_bits)
    s1, s2 = Signal(bool(0)), Signal(bool(0))
    t1, t2 = _signed(pw), _signed(pw)
    return shifted_terms(x, code, s1, t1, s2, t2, exp_bits), fold_add(s1, t1, s2, t2, y)


@block
def shift_terms(x: Any, code: Any, quiet: Any, o1: Any, o2: Any, g1: Any, g2: Any,
                xbits: int, exp_bits: int) -> Any:
    """The shift-add product left unresolved, for a carry-save accumulator:
    ``sa(x, code) = o1 + o2 + g1 + g2`` (signs folded in, no adder).

    ``quiet`` (the product is known to be zero: a zero activation or the zero weight) forces
    everything to 0.  Without it a negated digit of a zero product would still hand over
    ``~0`` and its +1, which is exact but flips every bit of the accumulator rows for
    nothing: zero activations (ReLU) and zero weights are common.
    """
    pw = product_bits(xbits, exp_bits)
    s1, s2 = Signal(bool(0)), Signal(bool(0))
    t1, t2 = _signed(pw), _signed(pw)
    f1, f2 = _signed(pw), _signed(pw)

    @always_comb
    def quieten() -> None:
        if quiet:
            o1.next = 0
            o2.next = 0
        else:
            o1.next = f1
            o2.next = f2
        g1.next = s1 and not quiet
        g2.next = s2 and not quiet

    return (shifted_terms(x, code, s1, t1, s2, t2, exp_bits),
            fold_signs(s1, t1, s2, t2, f1, f2), quieten)


def product_bits(xbits: int, exp_bits: int) -> int:
    """Width that holds every product of an ``xbits`` activation and a two-digit weight."""
    return xbits + hwcode.window(exp_bits) + 1


@block
def decode_code(code: Any, value: Any, exp_bits: int) -> Any:
    """``value`` = the integer a code stands for (``asd.hwcode.to_int``), for the multiplier."""
    wbits = hwcode.window(exp_bits) + 2
    s1, s2 = Signal(bool(0)), Signal(bool(0))
    sh1, sh2 = _unsigned(exp_bits), _unsigned(exp_bits)
    # Powers of two as a ROM: a shift of the constant 1 would be a shifter for nothing.
    pow2 = tuple(1 << s for s in range(hwcode.window(exp_bits)))
    p1u, p2u = _unsigned(wbits - 1), _unsigned(wbits - 1)
    p1, p2 = _signed(wbits), _signed(wbits)

    @always_comb
    def rom() -> None:
        p1u.next = pow2[sh1]
        p2u.next = pow2[sh2]

    @always_comb
    def to_signed() -> None:
        p1.next = p1u
        p2.next = p2u

    return (code_fields(code, exp_bits, s1, sh1, s2, sh2), rom, to_signed,
            fold_add(s1, p1, s2, p2, value))


@block
def multiply(x: Any, w: Any, y: Any) -> Any:
    """``y = x * w`` with ``w`` the decoded weight integer."""

    @always_comb
    def mul() -> None:
        y.next = x * w

    return mul


@block
def pe(x: Any, w: Any, y: Any, kind: str, xbits: int, exp_bits: int) -> Any:
    """The PE of ``kind``: ``w`` is a code for ``shiftadd`` and a decoded integer for
    ``multiplier``."""
    if kind == "shiftadd":
        return shift_add(x, w, y, xbits, exp_bits)
    if kind == "multiplier":
        return multiply(x, w, y)
    raise ValueError(f"unknown PE kind {kind!r} (shiftadd or multiplier)")

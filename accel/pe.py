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
def shift_terms(x: Any, code: Any, o1: Any, o2: Any, s1: Any, s2: Any, xbits: int,
                exp_bits: int) -> Any:
    """The shift-add product left unresolved, for a carry-save accumulator:
    ``sa(x, code) = o1 + o2 + s1 + s2`` (signs folded in, no adder).

    Each shift is ``exp_bits`` stages of 2:1 muxes (by 1, 2, 4, ...) with the sign folded
    into the last stage: a mux and an XOR are one LUT4.  Written as one variable shift and
    a separate fold, the carry-save array (8 lanes, 8 bits) mapped to the same LUT4 count
    but 2% more generic gates and one gate level deeper.
    """
    sh1, sh2 = _unsigned(exp_bits), _unsigned(exp_bits)
    return (code_fields(code, exp_bits, s1, sh1, s2, sh2),
            log_shift(x, sh1, s1, o1, exp_bits), log_shift(x, sh2, s2, o2, exp_bits))


@block
def log_shift(x: Any, sh: Any, s: Any, o: Any, exp_bits: int) -> Any:
    """``o = s ? ~(x << sh) : x << sh`` through one 2:1 mux stage per bit of ``sh``."""
    pw = len(o)
    stages = [_signed(pw) for _ in range(exp_bits + 1)]

    @always_comb
    def widen() -> None:
        stages[0].next = x

    @always_comb
    def fold() -> None:
        if s:
            o.next = ~stages[exp_bits]
        else:
            o.next = stages[exp_bits]

    return [widen, fold] + [_shift_stage(stages[k], sh, k, stages[k + 1])
                            for k in range(exp_bits)]


@block
def _shift_stage(a: Any, sh: Any, k: int, y: Any) -> Any:
    """``y = a << 2**k`` if bit ``k`` of ``sh`` is set, else ``a``."""
    step = 1 << k

    @always_comb
    def stage() -> None:
        if sh[k]:
            y.next = a << step
        else:
            y.next = a

    return stage


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

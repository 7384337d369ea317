"""Processing elements: ``x`` times a two-digit weight, in two hardware forms.

``shiftadd``: the code ``| s1 | e1 | s2 | e2 |`` (see :mod:`contract.hwcode`) selects two barrel
shifts of ``x``; no negation carry chain sits in front of the one adder.  The first sign is
folded in as ``(s1 ? ~t1 : t1) + s1`` (two's complement negation is invert-and-add-one, the +1
the adder's carry-in); the second digit shifts ``-x`` when negative, with ``-x`` computed once
for all the lanes sharing ``x`` (the core and the PE array pass it in).  Without ``-x`` (the
requantization PE) both signs are folded and both +1s enter the same, three-operand, addition.
:func:`shift_terms` hands the two sign-folded terms over unresolved, for an accumulator in
carry-save form (:mod:`accel.lanes`, mode ``carrysave``): then the PE has no adder at all.

``multiplier``: the same product with a real multiplier; the code is decoded to its integer
``v * 2^(2^E - 1)`` (by :func:`decode_code`: two signed powers of two from a ROM, one add)
before it reaches the PE, so the lane stores the integer in its W register.  With ``int8``
weights (:mod:`contract.weights`) WMEM holds the integer itself: :func:`int_weight` only
reinterprets the 8 bits as signed, and the product is ``act_bits + 8`` bits wide.

For a carry-save accumulator the multiplier can keep its partial products unresolved too
(:data:`MULTIPLIER_FORMS`): :func:`booth_terms` (radix-4 Booth: one sign-folded term
``0, +-x, +-2x`` per two weight bits) or :func:`array_terms` (one term ``x`` or 0 per weight
bit, the sign bit's negated), summed by :mod:`accel.arith` with the accumulator, as the
shift-add PE's two terms are.

Both compute the exact product: the output width ``xbits + 2^E + 1`` always holds it.
``x`` is widened to the output width before it is shifted, because VHDL shifts at the
operand's width (DESIGN.md s.6).
"""

from __future__ import annotations

from typing import Any

from myhdl import Signal, always_comb, block, concat

from contract import hwcode

from .hdl import signed, unsigned


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
    cst = signed(3)

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
    xw = signed(len(t1))
    sh1, sh2 = unsigned(exp_bits), unsigned(exp_bits)

    @always_comb
    def widen() -> None:
        xw.next = x

    @always_comb
    def shifts() -> None:
        t1.next = xw << sh1
        t2.next = xw << sh2

    return widen, code_fields(code, exp_bits, s1, sh1, s2, sh2), shifts


@block
def shift_add(x: Any, code: Any, y: Any, xbits: int, exp_bits: int,
              neg_x: Any = None) -> Any:
    """``y = sa(x, code)``: two shifts and one add/subtract, no multiplier.

    With both signs folded, ``o1 + o2 + s1 + s2`` leaves two +1s, and an adder has one
    carry-in: the second makes it a three-operand add (49 iCE40 LUT4 for 17 bits against 17
    for two operands and a carry-in).  Given ``neg_x`` (``-x``, one bit wider, computed once
    for all the lanes sharing ``x``; the PE array registers it with ``x``, so no carry chain
    sits in front of the shifter there), the second digit shifts ``-x`` when it is negative
    instead, and the product is one two-operand add with one carry-in."""
    pw = product_bits(xbits, exp_bits)
    s1, s2 = Signal(bool(0)), Signal(bool(0))
    if neg_x is None:
        t1, t2 = signed(pw), signed(pw)
        return shifted_terms(x, code, s1, t1, s2, t2, exp_bits), fold_add(s1, t1, s2, t2, y)
    sh1, sh2 = unsigned(exp_bits), unsigned(exp_bits)
    o1, t2 = signed(pw), signed(pw)
    x2 = Signal(neg_x.val)
    c1 = signed(2)

    @always_comb
    def pick() -> None:
        if s2:
            x2.next = neg_x
        else:
            x2.next = x
        c1.next = s1

    @always_comb
    def add() -> None:
        y.next = o1 + t2 + c1

    return (code_fields(code, exp_bits, s1, sh1, s2, sh2), pick, add,
            log_shift(x, sh1, s1, o1, exp_bits), log_shift(x2, sh2, None, t2, exp_bits))


@block
def shift_terms(x: Any, code: Any, o1: Any, o2: Any, s1: Any, s2: Any, xbits: int,
                exp_bits: int, live: Any = None) -> Any:
    """The shift-add product left unresolved, for a carry-save accumulator:
    ``sa(x, code) = o1 + o2 + s1 + s2`` (signs folded in, no adder); ``o1``, ``o2`` need
    :func:`term_bits` bits, two fewer than the product.

    Each shift is ``exp_bits`` stages of 2:1 muxes (by 1, 2, 4, ...) with the sign folded
    into the last stage: a mux and an XOR are one LUT4.  Written as one variable shift and
    a separate fold, the carry-save array (8 lanes, 8 bits) mapped to the same LUT4 count
    but 2% more generic gates and one gate level deeper.

    ``live`` (``x != 0``, registered with ``x``), if given, clears both signs on a zero
    activation: then both terms are 0 instead of ``~0`` and a +1 for a negative digit,
    which would flip every bit of the terms with the weights' signs for a product of 0.
    """
    sh1, sh2 = unsigned(exp_bits), unsigned(exp_bits)
    if live is None:
        return (code_fields(code, exp_bits, s1, sh1, s2, sh2),
                log_shift(x, sh1, s1, o1, exp_bits), log_shift(x, sh2, s2, o2, exp_bits))
    r1, r2 = Signal(bool(0)), Signal(bool(0))

    @always_comb
    def gate_signs() -> None:
        s1.next = r1 and live
        s2.next = r2 and live

    return (code_fields(code, exp_bits, r1, sh1, r2, sh2), gate_signs,
            log_shift(x, sh1, s1, o1, exp_bits), log_shift(x, sh2, s2, o2, exp_bits))


@block
def log_shift(x: Any, sh: Any, s: Any, o: Any, exp_bits: int) -> Any:
    """``o = s ? ~(x << sh) : x << sh`` (``s`` None: ``x << sh``) through one 2:1 mux stage
    per bit of ``sh``."""
    pw = len(o)
    stages = [signed(pw) for _ in range(exp_bits)] + [o if s is None else signed(pw)]
    # Generators see single signals only: a list named inside one converts as a memory.
    first, shifted = stages[0], stages[exp_bits]

    @always_comb
    def widen() -> None:
        first.next = x

    insts = [widen] + [shift_stage(stages[k], sh, k, stages[k + 1]) for k in range(exp_bits)]
    if s is None:
        return insts

    @always_comb
    def fold() -> None:
        if s:
            o.next = ~shifted
        else:
            o.next = shifted

    return insts + [fold]


@block  # no leading underscore: VHDL names may not hold two in a row
def shift_stage(a: Any, sh: Any, k: int, y: Any) -> Any:
    """``y = a << 2**k`` if bit ``k`` of ``sh`` is set, else ``a``."""
    step = 1 << k

    @always_comb
    def stage() -> None:
        if sh[k]:
            y.next = a << step
        else:
            y.next = a

    return stage


def term_bits(xbits: int, exp_bits: int) -> int:
    """Width that holds every shifted activation ``x << s`` and its complement ``~(x << s)``
    (``s`` up to ``2^E - 1``): the sign-folded terms of :func:`shift_terms`."""
    return xbits + hwcode.window(exp_bits) - 1


def product_bits(xbits: int, exp_bits: int) -> int:
    """Width that holds every product of an ``xbits`` activation and a two-digit weight."""
    return xbits + hwcode.window(exp_bits) + 1


@block
def decode_code(code: Any, value: Any, exp_bits: int) -> Any:
    """``value`` = the integer a code stands for (``hwcode.to_int``), for the multiplier."""
    wbits = hwcode.window(exp_bits) + 2
    s1, s2 = Signal(bool(0)), Signal(bool(0))
    sh1, sh2 = unsigned(exp_bits), unsigned(exp_bits)
    # Signed powers of two as a ROM indexed by sign and shift (two's complement bit
    # patterns): a shift of the constant 1 would be a shifter for nothing, and folding the
    # signs would leave two +1s, a three-operand add.
    mask = (1 << wbits) - 1
    table = tuple(((-1) ** sign * (1 << k)) & mask
                  for sign in (0, 1) for k in range(hwcode.window(exp_bits)))
    i1, i2 = unsigned(exp_bits + 1), unsigned(exp_bits + 1)
    p1u, p2u = unsigned(wbits), unsigned(wbits)
    p1, p2 = signed(wbits), signed(wbits)

    @always_comb
    def index() -> None:
        i1.next = concat(s1, sh1)
        i2.next = concat(s2, sh2)

    @always_comb
    def rom() -> None:
        p1u.next = table[i1]
        p2u.next = table[i2]

    @always_comb
    def to_signed() -> None:
        p1.next = p1u.signed()
        p2.next = p2u.signed()

    @always_comb
    def add() -> None:
        value.next = p1 + p2

    return code_fields(code, exp_bits, s1, sh1, s2, sh2), index, rom, to_signed, add


@block
def int_weight(code: Any, value: Any) -> Any:
    """``value`` = the WMEM bits read as a two's complement integer (``int8`` weights: the
    multiplier takes them straight, no decoder)."""

    @always_comb
    def as_signed() -> None:
        value.next = code.signed()

    return as_signed


# How a multiplier lane hands its product on: resolved (``x * w``, one word) or as
# unresolved partial products (Booth radix-4 or a plain array of weight bits).
MULTIPLIER_FORMS = ("resolved", "booth", "array")


def partial_product_widths(form: str, xbits: int, wbits: int) -> list[int]:
    """Widths of the signed terms :func:`partial_products` makes for an ``xbits`` activation
    and a ``wbits`` weight: term ``j`` already shifted into place."""
    if form == "booth":  # digit j weighs 4^j; |d| x fits xbits + 1 bits
        return [xbits + 1 + 2 * j for j in range((wbits + 1) // 2)]
    if form == "array":  # bit j weighs 2^j
        return [xbits + j for j in range(wbits)]
    raise ValueError(f"no partial products for multiplier form {form!r} "
                     f"({', '.join(MULTIPLIER_FORMS)})")


def partial_product_negs(form: str, wbits: int) -> int:
    """How many +1s (negated terms) :func:`partial_products` hands over."""
    return len(partial_product_widths(form, 1, wbits)) if form == "booth" else 1


@block
def partial_products(x: Any, w: Any, live: Any, terms: list[Any], negs: list[Any],
                     form: str) -> Any:
    """``x * w == sum(terms) + (number of set negs)`` for signed ``x`` and ``w``, no adder:
    the terms (:func:`partial_product_widths`) and the +1s of the negated ones, for an
    accumulator that sums them in full-adder rows.  ``live`` (``x != 0``) clears the signs
    on a zero activation, so every term is 0 then rather than ``~0`` and a +1."""
    if form == "booth":
        return booth_terms(x, w, live, terms, negs)
    return array_terms(x, w, live, terms, negs)


@block
def booth_terms(x: Any, w: Any, live: Any, terms: list[Any], negs: list[Any]) -> Any:
    """Radix-4 Booth: digit ``j`` of ``w`` (bits ``2j+1, 2j, 2j-1``, bit -1 being 0) is
    ``d in {-2..2}``; term ``j`` is ``(|d| x) << 2j``, inverted when ``d < 0`` with its +1 in
    ``negs[j]``."""
    digits = len(terms)
    wide = signed(2 * digits)  # w sign-extended to whole digits
    padded = unsigned(2 * digits + 1)  # and bit -1 (0) below it

    @always_comb
    def widen_w() -> None:
        wide.next = w

    @always_comb
    def pad() -> None:
        padded.next = concat(wide[2 * digits:], False)

    return [widen_w, pad] + [booth_term(x, padded, live, j, terms[j], negs[j])
                             for j in range(digits)]


@block
def booth_term(x: Any, padded: Any, live: Any, j: int, t: Any, neg: Any) -> Any:
    """One Booth digit's term (see :func:`booth_terms`)."""
    tw = len(t)
    lo, mid, hi = 2 * j, 2 * j + 1, 2 * j + 2
    shift = 2 * j
    xw, mag = signed(tw), signed(tw)
    one, two = Signal(bool(0)), Signal(bool(0))

    @always_comb
    def recode() -> None:
        one.next = padded[mid] ^ padded[lo]
        two.next = (padded[hi] and not padded[mid] and not padded[lo]) or \
            (not padded[hi] and padded[mid] and padded[lo])
        # 111 is -0: no sign, so the term is 0 rather than ~0 and a +1.
        neg.next = padded[hi] and not (padded[mid] and padded[lo]) and live

    @always_comb
    def widen_x() -> None:
        xw.next = x

    @always_comb
    def pick() -> None:
        if one:
            mag.next = xw << shift
        elif two:
            mag.next = xw << (shift + 1)
        else:
            mag.next = 0

    @always_comb
    def fold() -> None:
        if neg:
            t.next = ~mag
        else:
            t.next = mag

    return recode, widen_x, pick, fold


@block
def array_terms(x: Any, w: Any, live: Any, terms: list[Any], negs: list[Any]) -> Any:
    """A plain partial-product array: term ``j`` is ``x << j`` where bit ``j`` of ``w`` is
    set (0 otherwise); the sign bit weighs ``-2^(n-1)``, so its term is inverted with the
    +1 in ``negs[0]``."""
    top = len(terms) - 1
    insts = [array_term(x, w, j, terms[j]) for j in range(top)]
    return insts + [array_sign_term(x, w, live, top, terms[top], negs[0])]


@block
def array_term(x: Any, w: Any, j: int, t: Any) -> Any:
    xw = signed(len(t))

    @always_comb
    def widen_x() -> None:
        xw.next = x

    @always_comb
    def gate() -> None:
        if w[j]:
            t.next = xw << j
        else:
            t.next = 0

    return widen_x, gate


@block
def array_sign_term(x: Any, w: Any, live: Any, j: int, t: Any, neg: Any) -> Any:
    xw = signed(len(t))

    @always_comb
    def widen_x() -> None:
        xw.next = x

    @always_comb
    def sign() -> None:
        neg.next = w[j] and live

    @always_comb
    def gate() -> None:
        if neg:
            t.next = ~(xw << j)
        else:
            t.next = 0

    return widen_x, sign, gate


@block
def multiply(x: Any, w: Any, y: Any) -> Any:
    """``y = x * w`` with ``w`` the decoded weight integer."""

    @always_comb
    def mul() -> None:
        y.next = x * w

    return mul


@block
def pe(x: Any, w: Any, y: Any, kind: str, xbits: int, exp_bits: int,
       neg_x: Any = None) -> Any:
    """The PE of ``kind``: ``w`` is a code for ``shiftadd`` and a decoded integer for
    ``multiplier``; ``neg_x`` (``-x``, shiftadd only) see :func:`shift_add`."""
    if kind == "shiftadd":
        return shift_add(x, w, y, xbits, exp_bits, neg_x)
    if kind == "multiplier":
        return multiply(x, w, y)
    raise ValueError(f"unknown PE kind {kind!r} (shiftadd or multiplier)")

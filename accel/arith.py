"""Arithmetic blocks of the PE arrays: full-adder rows, block (carry-save) accumulators and
their adders, and the compressor tree that sums many terms with one carry-propagate adder.

Words are unsigned bit vectors unless a docstring says otherwise; a signed term enters an
adder row biased (its sign bit inverted) so rows never need sign extension.

Blocks keep their names, leading underscores included: a block's name prefixes its
nets in the converted HDL, so renaming one would change every netlist.
"""

from __future__ import annotations

from typing import Any

from myhdl import ConcatSignal, Signal, always_comb, always_seq, block, concat, intbv

from .hdl import _delay, signed, slice_bits, unsigned

# Bits per carry-save block: the longest carry chain of a carry-save lane.
CARRY_BLOCK = 4


@block
def full_adder_row(a: Any, b: Any, c: Any, cin: Any | None, s: Any, k: Any,
                   cout: Any = None) -> Any:
    """A 3:2 compressor on unsigned words: ``s + k == a + b + c + cin`` (mod 2**len): the
    carries move up one bit, and ``cin`` (None: 0) takes the free bit 0; the top carry goes
    to ``cout`` if given (then ``s + k + cout * 2**len`` is the whole sum)."""
    n = len(s)
    maj = unsigned(n)

    @always_comb
    def row() -> None:
        s.next = a ^ b ^ c
        maj.next = (a & b) | (a & c) | (b & c)

    if cin is None:

        @always_comb
        def move_up() -> None:
            k.next = maj[n - 1:0] << 1

    else:

        @always_comb
        def move_up() -> None:
            k.next = concat(maj[n - 1:0], cin)

    if cout is None:
        return row, move_up

    @always_comb
    def top() -> None:
        cout.next = maj[n - 1]

    return row, move_up, top


@block
def _adder(a: Any, b: Any | None, cin: Any | None, total: Any) -> Any:
    """``total = a + b + cin``, leaving out the operands that are None."""
    if b is not None and cin is not None:

        @always_comb
        def add3() -> None:
            total.next = a + b + cin

        return add3
    if b is not None:

        @always_comb
        def add2() -> None:
            total.next = a + b

        return add2
    if cin is not None:

        @always_comb
        def inc() -> None:
            total.next = a + cin

        return inc

    @always_comb
    def copy() -> None:
        total.next = a

    return copy


@block
def _split_reg(clk: Any, rst: Any, total: Any, word: Any, carry: Any) -> Any:
    """``word <- total`` without its top bit; ``carry <- `` the top bit (dropped: wrap)."""
    w = len(word)
    if carry is None:

        @always_seq(clk.posedge, reset=rst)
        def keep() -> None:
            word.next = total[w:]

        return keep

    @always_seq(clk.posedge, reset=rst)
    def keep_and_carry() -> None:
        word.next = total[w:]
        carry.next = total[w]

    return keep_and_carry


def carry_blocks(acc_bits: int, block: int | None = None) -> list[tuple[int, int]]:
    """``(low bit, width)`` of carry-save blocks (default ``CARRY_BLOCK`` bits), least
    significant first."""
    b = block or CARRY_BLOCK
    return [(lo, min(b, acc_bits - lo)) for lo in range(0, acc_bits, b)]


class BlockAccumulator:
    """A carry-save accumulator: ``blocks`` (registered words, one per carry block) and
    ``carries`` (registered carry into block i, i >= 1); its value, mod ``2**acc_bits``, is
    ``word + sum(carry_i << low_i)``."""

    def __init__(self, acc_bits: int, block: int | None = None) -> None:
        self.layout = carry_blocks(acc_bits, block)
        self.blocks = [unsigned(w) for _, w in self.layout]
        self.carries = [Signal(bool(0)) for _ in self.layout[1:]]
        self.word = _joined(self.blocks)
        self.carry_word = _joined(self.carries) if self.carries else None

    def carry_vector(self) -> Any:
        """The carries as one word: carry i at bit ``low_i``, zeros elsewhere."""
        parts: list[Any] = ["0" * self.layout[0][1]]  # least significant first
        for (_, w), cy in zip(self.layout[1:], self.carries, strict=True):
            parts += [cy, "0" * (w - 1)] if w > 1 else [cy]
        return ConcatSignal(*reversed(parts))


def _joined(parts: list[Any]) -> Any:
    """One read-only word of ``parts`` (least significant first)."""
    if len(parts) == 1:
        return parts[0]
    return ConcatSignal(*reversed(parts))


@block
def _block_add(a: Any, b: Any | None, cin0: Any | None, carry_in: list[Any] | None,
               acc: BlockAccumulator, clk: Any, rst: Any) -> Any:
    """Registered ``acc <- a + b`` block by block: block i adds its slices and its carry-in
    (``cin0`` for block 0, ``carry_in[i-1]`` above; None: none), keeps the sum, and registers
    its carry out as the next block's carry-in.  No carry travels further than one block a
    cycle."""
    insts: list[Any] = []
    for i, (lo, w) in enumerate(acc.layout):
        ai = unsigned(w)
        bi = None if b is None else unsigned(w)
        total = unsigned(w + 1)
        cin = cin0 if i == 0 else None if carry_in is None else carry_in[i - 1]
        insts.append(slice_bits(a, lo, w, ai))
        if bi is not None:
            insts.append(slice_bits(b, lo, w, bi))
        insts.append(_adder(ai, bi, cin, total))
        insts.append(_split_reg(clk, rst, total, acc.blocks[i],
                                acc.carries[i] if i < len(acc.carries) else None))
    return insts


@block
def _carrysave_terms_add(r1: Any, r2: Any, rs1: Any, rs2: Any, acc: BlockAccumulator, clk: Any,
                         rst: Any) -> Any:
    """``acc <- acc + r1 + r2 + rs1 + rs2`` for the signed ``tw``-bit terms ``r1``, ``r2``.

    Three words (accumulator and both terms) become two through one full-adder row; the +1
    of each negated digit takes a free carry-in (bit 0 of the row's carries, block 0's
    adder).  The row spans the terms' ``tw`` bits only: a signed term is its bits with the
    sign bit inverted, read unsigned, minus ``2**(tw-1)``, so both terms together bring
    ``-2**tw``, and above the row that constant plus the row's carry out ``c`` is ``c - 1``
    times ``2**tw``: every bit there is ``not c``.  Sign-extended terms would instead cost a
    full adder on every accumulator bit.
    """
    n = len(acc.word)
    tw = len(r1)
    if n <= tw:  # no accumulator bits above the terms: the row is the whole word
        t1, t2, s, k = (unsigned(n) for _ in range(4))

        @always_comb
        def low() -> None:
            t1.next = r1[n:]
            t2.next = r2[n:]

        return low, full_adder_row(acc.word, t1, t2, rs1, s, k), \
            _block_add(s, k, rs2, acc.carries, acc, clk, rst)
    b1, b2 = unsigned(tw), unsigned(tw)
    lo, hi = unsigned(tw), unsigned(n - tw)
    s, k = unsigned(tw), unsigned(tw)
    cout, fill = Signal(bool(0)), Signal(bool(0))
    u = ConcatSignal(hi, s)
    v = ConcatSignal(*([fill] * (n - tw)), k)

    @always_comb
    def upper_bits() -> None:
        fill.next = not cout

    return (slice_bits(acc.word, 0, tw, lo), slice_bits(acc.word, tw, n - tw, hi),
            _biased(r1, b1), _biased(r2, b2), upper_bits,
            full_adder_row(lo, b1, b2, rs1, s, k, cout),
            _block_add(u, v, rs2, acc.carries, acc, clk, rst))


def tree_widths(term_widths: list[int], ones: int, acc_bits: int) -> tuple[int, int, int]:
    """``(R, W, bias)`` of :func:`tree_accumulate`: ``R`` holds the sum of every biased term
    and every +1 (so the rows below it lose no carry), ``bias`` is the sum of the terms'
    offsets, and ``W`` (at most ``R``) the low region whose bias is a whole multiple of
    ``2**W``."""
    most = sum((1 << w) - 1 for w in term_widths) + ones
    r = min(most.bit_length(), acc_bits)
    offset = sum(1 << (w - 1) for w in term_widths)
    tz = (offset & -offset).bit_length() - 1 if offset else r
    return r, min(tz, r), offset


@block
def tree_accumulate(terms: list[Any], ones: list[Any], acc: Any, clk: Any, rst: Any) -> Any:
    """``acc <- acc + sum(terms) + (number of set bits of ones)`` (mod ``2**len(acc)``):
    rows of full adders (a Wallace tree: each level adds the words three by three) reduce
    the terms to two words, one more row adds them to the accumulator, and a single
    carry-propagate adder resolves the sum.

    The rows stay as narrow as the terms: each signed term enters as its bits with the sign
    bit inverted (its value plus ``2**(w-1)``, never negative), so the words are ``R`` bits
    (:func:`tree_widths`) with no carry lost and no sign extension.  Their biases sum to
    ``q * 2**W``; the last row adds the low ``W`` bits of both words to the accumulator's
    and carries out ``c``; above it the second operand of the adder is the small signed
    number ``top_a + top_b + c - q`` (the words' bits from ``W`` up), sign-extended.  Each
    +1 takes the free bit 0 of a row's carry word, the last one the adder's carry-in.

    The two words (and the +1s still to add) are registered before the last row: the tree
    ends the product stage, and the accumulate stage (the last row and the adder) is the
    same for both PE kinds.  The register also stops the products' glitches: without it
    the shift-add array (2 lanes, 8 bits) spent 32% more toggle energy than the multiplier
    one (15% with it) and ran at 58 against 96 MHz.
    """
    n = len(acc)
    widths = [len(t) for t in terms]
    r, w, offset = tree_widths(widths, len(ones), n)
    q = (offset >> w) if w < n else 0
    insts: list[Any] = []
    words: list[Any] = []
    for t in terms:
        u = unsigned(r)
        insts.append(_biased(t, u))
        words.append(u)
    pending = list(ones)
    while len(words) > 2:
        nxt: list[Any] = []
        while len(words) >= 3:
            a, b, c = words.pop(0), words.pop(0), words.pop(0)
            s, k = unsigned(r), unsigned(r)
            insts.append(full_adder_row(a, b, c, pending.pop(0) if pending else None, s, k))
            nxt += [s, k]
        words = nxt + words
    while len(words) < 2:
        words.append(unsigned(r))  # fewer than two terms: add zeros
    # Reset to a sum of zero: the two words hold the bias.
    held = [Signal(intbv(offset % (1 << r))[r:]), unsigned(r)] + [Signal(bool(0)) for _ in pending]
    insts += [_delay(v, h, clk, rst) for v, h in zip(words + pending, held, strict=True)]
    words, pending = held[:2], held[2:]
    lo_a, lo_b, lo_acc = unsigned(w), unsigned(w), unsigned(w)
    s, k = unsigned(w), unsigned(w)
    cout = Signal(bool(0))
    insts += [slice_bits(words[0], 0, w, lo_a), slice_bits(words[1], 0, w, lo_b),
              slice_bits(acc, 0, w, lo_acc),
              full_adder_row(lo_acc, lo_a, lo_b, pending.pop(0) if pending else None, s, k, cout)]
    if len(pending) > 1:
        raise ValueError(f"{len(pending)} carry-ins left for one adder: too few tree rows")
    cin = pending[0] if pending else None
    if w == n:
        insts.append(_final_add(s, k, cin, acc, clk, rst))
        return insts
    hi_acc, top = unsigned(n - w), unsigned(n - w)
    insts += [slice_bits(acc, w, n - w, hi_acc),
              _top_sum(words[0], words[1], w, cout, q, top)]
    insts.append(_final_add(ConcatSignal(hi_acc, s), ConcatSignal(top, k), cin, acc, clk, rst))
    return insts


@block
def _top_sum(a: Any, b: Any, w: int, c: Any, q: int, y: Any) -> Any:
    """``y`` = ``a[R:w] + b[R:w] + c - q`` as ``len(y)``-bit two's complement bits."""
    r = len(a)
    m = len(y)
    d = signed(max(r - w, 1) + 3 + q.bit_length())
    wide = signed(max(m, len(d)) + 1)  # y keeps the low m bits of d, however wide d is

    @always_comb
    def small_add() -> None:
        d.next = a[r:w] + b[r:w] + c - q

    @always_comb
    def extend() -> None:
        wide.next = d

    @always_comb
    def bits() -> None:
        y.next = wide[m:]

    return small_add, extend, bits


@block
def _biased(t: Any, u: Any) -> Any:
    """``u`` = signed ``t`` with its sign bit inverted, as an unsigned (zero-extended) word:
    ``t + 2**(len(t) - 1)``."""
    w = len(t)
    flip = 1 << (w - 1)

    @always_comb
    def invert_sign() -> None:
        u.next = t[w:] ^ flip

    return invert_sign


@block
def _final_add(a: Any, b: Any, cin: Any | None, acc: Any, clk: Any, rst: Any) -> Any:
    """The one carry-propagate adder: ``acc <- a + b + cin`` (mod ``2**len(acc)``)."""
    n = len(acc)
    total = unsigned(n + 1)

    @always_seq(clk.posedge, reset=rst)
    def keep() -> None:
        acc.next = total[n:].signed()

    return _adder(a, b, cin, total), keep




"""A multiplier's partial products kept unresolved for a carry-save accumulator: summed by
full-adder rows to a carry-save pair (:func:`carrysave_product`), then merged into the block
accumulator of :mod:`accel.arith` by one more row (:func:`_carrysave_pair_add`), as the
shift-add PE's two terms are by :func:`accel.arith._carrysave_terms_add`.

Blocks keep their names, leading underscores included: a block's name prefixes its
nets in the converted HDL, so renaming one would change every netlist.
"""

from __future__ import annotations

from typing import Any

from myhdl import ConcatSignal, Signal, always_comb, block, concat

from .arith import BlockAccumulator, _block_add, full_adder_row
from .hdl import signed, slice_bits, unsigned


def pair_layout(term_widths: list[int], ones: int) -> tuple[int, int, int, int]:
    """``(R, K, merged, left)`` of :func:`carrysave_product`: ``R`` holds the sum of every
    biased term and +1; ``K = 2**R - offset`` is the constant that turns the terms' offsets
    into exactly ``2**R``; ``merged`` the term whose free upper bits take ``K`` (-1: ``K``
    is a word of its own), ``left`` the +1s the rows have no carry-in for."""
    most = sum((1 << w) - 1 for w in term_widths) + ones
    r = most.bit_length()
    offset = sum(1 << (w - 1) for w in term_widths)
    k = (1 << r) - offset
    low = min(range(len(term_widths)), key=lambda i: term_widths[i])
    p = term_widths[low] - 1  # its sign bit: the constant may start there
    merged = low if k % (1 << p) == 0 else -1
    words = len(term_widths) + (merged < 0)
    rows = 0
    while words > 2:
        rows += words // 3
        words -= words // 3
    return r, k, merged, max(0, ones - rows)


@block
def _biased_live(t: Any, live: Any, u: Any) -> Any:
    """``u`` = ``t + 2**(w-1)`` (sign bit inverted, :func:`_biased`) while ``live``; ``t``
    itself, which is then 0, while not."""
    w = len(t)

    @always_comb
    def invert_sign() -> None:
        u.next = concat(t[w - 1] ^ live, t[w - 1:])

    return invert_sign


@block
def _merged_constant(t: Any, live: Any, k: int, u: Any) -> Any:
    """``u`` = ``t + 2**(w-1) + k`` for signed ``t`` of ``w`` bits and ``k`` a multiple of
    ``2**(w-1)``: the sign bit picks one of two constants for the bits from ``w - 1`` up,
    so the constant costs no adder row (the Booth sign-extension trick).  Not ``live``:
    ``t`` (0)."""
    w = len(t)
    p = w - 1
    positive = ((1 << p) + k) >> p  # sign 0: the biased term's 2**p, plus k
    negative = k >> p
    top = unsigned(len(u) - p)

    @always_comb
    def pick() -> None:
        if not live:
            top.next = 0
        elif t[p]:
            top.next = negative
        else:
            top.next = positive

    @always_comb
    def join() -> None:
        u.next = concat(top, t[p:])

    return pick, join


@block
def carrysave_product(terms: list[Any], ones: list[Any], live: Any, a: Any, b: Any,
                      left: list[Any]) -> Any:
    """A multiplier's partial products summed to a carry-save pair, no carry propagated:
    ``a + b + (set bits of left) == sum(terms) + (set bits of ones) + live * 2**R`` exactly,
    with ``a`` and ``b`` of ``R + 1`` bits (:func:`pair_layout`).

    Each signed term enters biased (sign bit inverted, as in :func:`tree_accumulate`); the
    biases and the constant ``K`` sum to ``2**R``, and ``K`` rides in the free upper bits of
    the narrowest term, so full-adder rows (three words into two, each with a +1 in its free
    carry-in) reduce only the terms.  On a zero activation (``live`` low) the terms are 0
    and the biases and ``K`` are left out too: the pair is (0, 0), which a carry-save
    accumulator adds without making a carry (the drain relies on it)."""
    r1 = len(a)
    r, k, merged, _ = pair_layout([len(t) for t in terms], len(ones))
    assert r1 == r + 1, (r1, r)
    insts: list[Any] = []
    words: list[Any] = []
    for i, t in enumerate(terms):
        if i == merged:
            u = unsigned(r1)
            insts.append(_merged_constant(t, live, k, u))
        else:
            u = unsigned(len(t))
            insts.append(_biased_live(t, live, u))
        words.append(u)
    if merged < 0:
        const = unsigned(r1)
        insts.append(_live_constant(live, k, const))
        words.append(const)
    for i, w in enumerate(words):
        if len(w) < r1:  # zero-extended to the rows' width
            wide = unsigned(r1)
            insts.append(copy_word(w, wide))
            words[i] = wide
    pending = list(ones)
    while len(words) > 2:
        nxt: list[Any] = []
        while len(words) >= 3:
            x, y, z = words.pop(0), words.pop(0), words.pop(0)
            s, c = unsigned(r1), unsigned(r1)
            insts.append(full_adder_row(x, y, z, pending.pop(0) if pending else None, s, c))
            nxt += [s, c]
        words = nxt + words
    if len(words) == 1:
        words.append(unsigned(r1))
    assert len(pending) == len(left), (len(pending), len(left))
    insts += [copy_word(words[0], a), copy_word(words[1], b)]
    insts += [copy_word(p, q) for p, q in zip(pending, left, strict=True)]
    return insts


@block
def _live_constant(live: Any, k: int, y: Any) -> Any:
    @always_comb
    def gate() -> None:
        if live:
            y.next = k
        else:
            y.next = 0

    return gate


@block
def copy_word(d: Any, q: Any) -> Any:
    @always_comb
    def copy() -> None:
        q.next = d

    return copy


@block
def _carrysave_pair_add(a: Any, b: Any, cin_row: Any | None, cin0: Any | None, live: Any,
                        acc: BlockAccumulator, clk: Any, rst: Any) -> Any:
    """``acc <- acc + a + b + cin_row + cin0 - live * 2**R`` for a pair of
    :func:`carrysave_product` (``R + 1`` bits): one full-adder row over the low ``R`` bits
    merges the pair with the accumulator (as :func:`_carrysave_terms_add` merges two terms);
    above it the small signed number ``a[R] + b[R] + cout - live``, sign-extended, is the
    second operand."""
    n = len(acc.word)
    r = len(a) - 1
    if n <= r:  # the whole accumulator is under the row: 2**R vanishes modulo 2**n
        la, lb, s, k = (unsigned(n) for _ in range(4))
        return (slice_bits(a, 0, n, la), slice_bits(b, 0, n, lb),
                full_adder_row(acc.word, la, lb, cin_row, s, k),
                _block_add(s, k, cin0, acc.carries, acc, clk, rst))
    la, lb, lo = unsigned(r), unsigned(r), unsigned(r)
    s, k = unsigned(r), unsigned(r)
    hi, top = unsigned(n - r), unsigned(n - r)
    cout = Signal(bool(0))
    return (slice_bits(a, 0, r, la), slice_bits(b, 0, r, lb), slice_bits(acc.word, 0, r, lo),
            slice_bits(acc.word, r, n - r, hi),
            full_adder_row(lo, la, lb, cin_row, s, k, cout),
            _top_sum_live(a, b, r, cout, live, top),
            _block_add(ConcatSignal(hi, s), ConcatSignal(top, k), cin0, acc.carries, acc, clk,
                       rst))


@block
def _top_sum_live(a: Any, b: Any, w: int, c: Any, live: Any, y: Any) -> Any:
    """``y`` = ``a[R:w] + b[R:w] + c - live`` as ``len(y)``-bit two's complement bits."""
    r = len(a)
    m = len(y)
    d = signed(max(r - w, 1) + 3)
    wide = signed(max(m, len(d)) + 1)

    @always_comb
    def small_add() -> None:
        d.next = a[r:w] + b[r:w] + c - live

    @always_comb
    def extend() -> None:
        wide.next = d

    @always_comb
    def bits() -> None:
        y.next = wide[m:]

    return small_add, extend, bits

"""The designs ``asd hwreport`` synthesizes, as Verilog files in a directory.

* ``pe``: the PE array alone -- the lanes' PEs of :mod:`accel.pe` exactly as the core
  instantiates them, with the activation broadcast from one register, each lane's weight
  register (the code for ``shiftadd``; for ``multiplier`` the integer decoded when it is
  loaded, as in the core), a product register and the accumulator.  The product register
  splits the product from the accumulate (one MAC per lane per cycle either way: equal
  throughput), so the critical path of each PE kind is that of its own product stage unless
  the accumulate stage, identical for both, is longer.  ``mode="direct"`` drops the product
  register (the core lane's single-cycle MAC); ``mode="product"`` keeps only the product
  stage (the accumulator register just holds the last product, no adder): the PE alone.
  ``mode="carrysave"`` keeps the accumulator in block carry-save form: ``CARRY_BLOCK``-bit
  blocks whose carry outs are registered into the next block, so no carry crosses more
  than one block a cycle; the readout lets the pending carries drain through one
  incrementer stage per block boundary.  The shift-add PE hands over its two sign-folded
  terms unresolved (one full-adder row merges them with the accumulator; no adder in the
  PE at all), the multiplier its resolved product.  ``mode="carrysave_direct"`` is the
  same without the terms and product registers: the shift-add terms (their signs cleared
  on a zero activation) and the multiplier's product go straight into the accumulator's
  row, one cycle from the activation register to the accumulator.
  ``mode="carrysave_drain"`` has the lanes of ``carrysave_direct`` and no carry-resolving
  readout: after the last MAC the lanes take zero products (zero activations) until their
  own block adders have carried every pending carry through (one block a cycle, see
  :func:`readout_latency`), and the selected lane's word is then its sum, read through a
  registered mux.  It trades those cycles at the end of each accumulation (9 for a 40-bit
  accumulator in 4-bit blocks, the same for both kinds) for the readout pipeline's flip-flops
  (about 260 at 40 bits, as many as four lanes have).
  ``mode="tree"`` takes ``TREE_PRODUCTS`` activations and as many weights per lane each
  cycle (K MACs per lane per cycle, for both kinds: equal throughput) and sums all the
  products with the accumulator in one compressor tree of full-adder rows and a single
  carry-propagate adder: the shift-add PE hands its ``2K`` sign-folded terms (their +1s
  ride the rows' free carry-ins), the multiplier its ``K`` products.  The tree's two words
  are registered; the last row (adding the accumulator) and the adder are the accumulate
  stage, identical for both kinds.
  One lane's accumulator is read out through a registered mux (``sel``), so the pin count
  does not grow with the lanes.
* ``core``: the whole core of :mod:`accel.core` as :mod:`accel.export` converts it.

For place and route every design is wrapped in :func:`scan_wrapper`: all its inputs come
from flip-flops and all its outputs go into flip-flops of one scan chain, so only five pins
are used and every path of the design is a register-to-register path.  Area figures are
taken from the design alone (without the wrapper).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from myhdl import ConcatSignal, Signal, always_comb, always_seq, block, concat, intbv

from contract import hwcode
from contract.config import AccelConfig

from . import core as core_mod
from . import pe as pe_mod

PE_ARRAY_NAME = "asd_pe_array"
WRAPPER_NAME = "asd_synth_top"
MODES = ("pipelined", "direct", "product", "carrysave", "carrysave_direct", "carrysave_drain",
         "tree")
CARRYSAVE_MODES = ("carrysave", "carrysave_direct", "carrysave_drain")
# Products a lane of the compressor-tree array sums each cycle.
TREE_PRODUCTS = 4
# Bits per carry-save block: the longest carry chain of a carry-save lane.
CARRY_BLOCK = 4
# Block of the readout's carry-resolving adders (shared by the lanes: fewer, longer stages).
READOUT_BLOCK = 8


def _signed(bits: int) -> Signal:
    return Signal(intbv(0, min=-(1 << (bits - 1)), max=1 << (bits - 1)))


def _unsigned(bits: int) -> Signal:
    return Signal(intbv(0)[bits:])


def sel_bits(lanes: int) -> int:
    return max(1, (lanes - 1).bit_length())


def products_per_cycle(mode: str) -> int:
    """MACs a lane does each cycle in PE array ``mode``."""
    return TREE_PRODUCTS if mode == "tree" else 1


def pe_array_ports(config: AccelConfig, mode: str = "pipelined") -> dict[str, tuple[int, str]]:
    """``name -> (width, 'in'|'out')`` of the PE array (width 0: one-bit): ``x_in`` holds
    :func:`products_per_cycle` activations, ``w_in`` as many codes per lane (activation
    ``j`` at bit ``j * act_bits``; lane ``i``'s code ``j`` at ``(i * K + j) * code_bits``)."""
    c = config
    k = products_per_cycle(mode)
    return {"clk": (0, "in"), "rst": (0, "in"), "x_in": (k * c.act_bits, "in"),
            "w_in": (c.lanes * k * c.code_bits, "in"), "load": (0, "in"),
            "sel": (sel_bits(c.lanes), "in"), "acc_out": (c.acc_bits, "out")}


def cycle_words(config: AccelConfig, mode: str, x: Any, codes: Any) -> list[tuple[int, int]]:
    """``(x_in, w_in)`` per cycle for the MAC stream ``x[i]``, ``codes[i, lane]``: the MACs
    in order, :func:`products_per_cycle` of them a cycle (the last cycle padded with zero
    activations, which add nothing)."""
    c = config
    k = products_per_cycle(mode)
    xm = (1 << c.act_bits) - 1
    out = []
    for t in range(0, len(x), k):
        xw = ww = 0
        for j in range(min(k, len(x) - t)):
            xw |= (int(x[t + j]) & xm) << (j * c.act_bits)
            for lane in range(c.lanes):
                ww |= int(codes[t + j, lane]) << ((lane * k + j) * c.code_bits)
        out.append((xw, ww))
    return out


@block
def pe_array(clk: Any, rst: Any, x_in: Any, w_in: Any, load: Any, sel: Any, acc_out: Any,
             config: AccelConfig, mode: str = "pipelined") -> Any:
    """``lanes`` PEs sharing one activation; see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"unknown PE array mode {mode!r} ({', '.join(MODES)})")
    c = config
    pw = pe_mod.product_bits(c.act_bits, c.exp_bits)
    acc_bits = c.acc_bits
    insts: list[Any] = []
    if mode == "tree":
        accs = [_signed(acc_bits) for _ in range(c.lanes)]
        return (_tree_lanes(clk, rst, x_in, w_in, load, accs, c),
                _readout(clk, rst, sel, accs, acc_out, acc_bits))
    xreg = _signed(c.act_bits)

    @always_seq(clk.posedge, reset=rst)
    def x_reg() -> None:
        xreg.next = x_in.signed()

    insts.append(x_reg)
    nxreg = None  # -x, registered with x: the shift-add PE's negative second digit
    if c.pe == "shiftadd" and mode not in CARRYSAVE_MODES:
        nxreg = _signed(c.act_bits + 1)
        xw = _signed(c.act_bits + 1)  # negated at the result's width (VHDL: operand's)

        @always_comb
        def widen_x() -> None:
            xw.next = x_in.signed()

        @always_seq(clk.posedge, reset=rst)
        def neg_x_reg() -> None:
            nxreg.next = -xw

        insts += [widen_x, neg_x_reg]
    xzero = Signal(bool(0))  # registered with x: the carry-save shift-add PE stays quiet on 0
    if mode in CARRYSAVE_MODES and c.pe == "shiftadd":

        @always_seq(clk.posedge, reset=rst)
        def x_zero_reg() -> None:
            xzero.next = x_in == 0

        insts.append(x_zero_reg)
    accs = []
    for i in range(c.lanes):
        wl = _unsigned(c.code_bits)
        insts.append(core_mod.slice_bits(w_in, i * c.code_bits, c.code_bits, wl))
        wload, wreg = _weight_signals(c, wl)
        if c.pe == "multiplier":
            insts.append(pe_mod.decode_code(wl, wload, c.exp_bits))
        if mode in CARRYSAVE_MODES:
            bacc = _BlockAcc(acc_bits)
            accs.append(bacc)
            insts.append(_lane_carrysave(clk, rst, load, wload, wreg, xreg, xzero, bacc, c,
                                         registered=mode == "carrysave"))
            continue
        prod = _signed(pw)
        insts.append(pe_mod.pe(xreg, wreg, prod, c.pe, c.act_bits, c.exp_bits, nxreg))
        acc = _signed(acc_bits)
        accs.append(acc)
        insts.append(_lane_regs(clk, rst, load, wload, wreg, prod, acc, acc_bits, mode))
    if mode == "carrysave_drain":
        word = _unsigned(acc_bits)
        insts += [mux_tree(sel, [a.word for a in accs], word),
                  _slice_reg(clk, rst, word, 0, acc_bits, acc_out)]
        return insts
    if mode in CARRYSAVE_MODES:
        insts.append(_carrysave_readout(clk, rst, sel, accs, acc_out, acc_bits))
        return insts
    insts.append(_readout(clk, rst, sel, accs, acc_out, acc_bits))
    return insts


def _weight_signals(c: AccelConfig, code: Any) -> tuple[Any, Any]:
    """``(value loaded, W register)`` of one weight: the code itself for the shift-add PE;
    for the multiplier the integer :func:`accel.pe.decode_code` makes of ``code`` (the
    caller instantiates the decoder), its register reset to the zero weight."""
    if c.pe != "multiplier":
        return code, _unsigned(c.code_bits)
    wbits = c.window + 2
    return _signed(wbits), Signal(intbv(int(hwcode.to_int(0, c.exp_bits)),
                                        min=-(1 << (wbits - 1)), max=1 << (wbits - 1)))


@block
def _readout(clk: Any, rst: Any, sel: Any, accs: list[Any], acc_out: Any, acc_bits: int) -> Any:
    """The selected lane's (resolved) accumulator, registered."""
    asel = _signed(acc_bits)

    @always_seq(clk.posedge, reset=rst)
    def out_reg() -> None:
        acc_out.next = asel[acc_bits:]

    return core_mod.mux_chain(sel, tuple(range(len(accs))), accs, asel), out_reg


@block
def _tree_lanes(clk: Any, rst: Any, x_in: Any, w_in: Any, load: Any, accs: list[Any],
                c: AccelConfig) -> Any:
    """The lanes of the compressor-tree array (see the module docstring), accumulating into
    ``accs``."""
    k = TREE_PRODUCTS
    insts: list[Any] = []
    xregs, lives = [], []
    for j in range(k):
        xs, xr, live = _unsigned(c.act_bits), _signed(c.act_bits), Signal(bool(0))
        insts += [core_mod.slice_bits(x_in, j * c.act_bits, c.act_bits, xs),
                  _activation_reg(clk, rst, xs, xr, live)]
        xregs.append(xr)
        lives.append(live)
    for i, acc in enumerate(accs):
        terms: list[Any] = []  # signed words the tree sums
        ones: list[Any] = []  # +1s (folded signs)
        for j in range(k):
            wl = _unsigned(c.code_bits)
            insts.append(core_mod.slice_bits(w_in, (i * k + j) * c.code_bits, c.code_bits, wl))
            wload, wreg = _weight_signals(c, wl)
            if c.pe == "multiplier":
                prod = _signed(pe_mod.product_bits(c.act_bits, c.exp_bits))
                insts += [pe_mod.decode_code(wl, wload, c.exp_bits),
                          pe_mod.multiply(xregs[j], wreg, prod)]
                terms.append(prod)
            else:
                tw = pe_mod.term_bits(c.act_bits, c.exp_bits)
                o1, o2 = _signed(tw), _signed(tw)
                s1, s2 = Signal(bool(0)), Signal(bool(0))
                insts.append(pe_mod.shift_terms(xregs[j], wreg, o1, o2, s1, s2, c.act_bits,
                                                c.exp_bits, lives[j]))
                terms += [o1, o2]
                ones += [s1, s2]
            insts.append(_weight_reg(clk, rst, load, wload, wreg))
        insts.append(tree_accumulate(terms, ones, acc, clk, rst))
    return insts


@block
def _activation_reg(clk: Any, rst: Any, xs: Any, xr: Any, live: Any) -> Any:
    """``xr`` <- the activation, ``live`` <- whether it is non-zero (ReLU makes about half
    of them 0: the shift-add terms stay 0 then, see :func:`accel.pe.shift_terms`)."""

    @always_seq(clk.posedge, reset=rst)
    def hold() -> None:
        xr.next = xs.signed()
        live.next = xs != 0

    return hold


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
        u = _unsigned(r)
        insts.append(_biased(t, u))
        words.append(u)
    pending = list(ones)
    while len(words) > 2:
        nxt: list[Any] = []
        while len(words) >= 3:
            a, b, c = words.pop(0), words.pop(0), words.pop(0)
            s, k = _unsigned(r), _unsigned(r)
            insts.append(full_adder_row(a, b, c, pending.pop(0) if pending else None, s, k))
            nxt += [s, k]
        words = nxt + words
    while len(words) < 2:
        words.append(_unsigned(r))  # fewer than two terms: add zeros
    # Reset to a sum of zero: the two words hold the bias.
    held = [Signal(intbv(offset % (1 << r))[r:]), _unsigned(r)] + [Signal(bool(0)) for _ in pending]
    insts += [_delay(v, h, clk, rst) for v, h in zip(words + pending, held, strict=True)]
    words, pending = held[:2], held[2:]
    lo_a, lo_b, lo_acc = _unsigned(w), _unsigned(w), _unsigned(w)
    s, k = _unsigned(w), _unsigned(w)
    cout = Signal(bool(0))
    insts += [core_mod.slice_bits(words[0], 0, w, lo_a), core_mod.slice_bits(words[1], 0, w, lo_b),
              core_mod.slice_bits(acc, 0, w, lo_acc),
              full_adder_row(lo_acc, lo_a, lo_b, pending.pop(0) if pending else None, s, k, cout)]
    if len(pending) > 1:
        raise ValueError(f"{len(pending)} carry-ins left for one adder: too few tree rows")
    cin = pending[0] if pending else None
    if w == n:
        insts.append(_final_add(s, k, cin, acc, clk, rst))
        return insts
    hi_acc, top = _unsigned(n - w), _unsigned(n - w)
    insts += [core_mod.slice_bits(acc, w, n - w, hi_acc),
              _top_sum(words[0], words[1], w, cout, q, top)]
    insts.append(_final_add(ConcatSignal(hi_acc, s), ConcatSignal(top, k), cin, acc, clk, rst))
    return insts


@block
def _delay(d: Any, q: Any, clk: Any, rst: Any) -> Any:
    @always_seq(clk.posedge, reset=rst)
    def hold() -> None:
        q.next = d

    return hold


@block
def _top_sum(a: Any, b: Any, w: int, c: Any, q: int, y: Any) -> Any:
    """``y`` = ``a[R:w] + b[R:w] + c - q`` as ``len(y)``-bit two's complement bits."""
    r = len(a)
    m = len(y)
    d = _signed(max(r - w, 1) + 3 + q.bit_length())
    wide = _signed(max(m, len(d)) + 1)  # y keeps the low m bits of d, however wide d is

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
    total = _unsigned(n + 1)

    @always_seq(clk.posedge, reset=rst)
    def keep() -> None:
        acc.next = total[n:].signed()

    return _adder(a, b, cin, total), keep


@block
def _lane_regs(clk: Any, rst: Any, load: Any, wload: Any, wreg: Any, prod: Any, acc: Any,
               acc_bits: int, mode: str) -> Any:
    preg = Signal(prod.val)
    asum = _signed(acc_bits + 1)
    src = prod if mode == "direct" else preg
    accumulate = mode != "product"

    @always_comb
    def add() -> None:
        if accumulate:
            asum.next = acc + src
        else:
            asum.next = src

    @always_seq(clk.posedge, reset=rst)
    def regs() -> None:
        if load:
            wreg.next = wload
        preg.next = prod
        acc.next = asum[acc_bits:].signed()

    return add, regs


def carry_blocks(acc_bits: int, block: int | None = None) -> list[tuple[int, int]]:
    """``(low bit, width)`` of carry-save blocks (default ``CARRY_BLOCK`` bits), least
    significant first."""
    b = block or CARRY_BLOCK
    return [(lo, min(b, acc_bits - lo)) for lo in range(0, acc_bits, b)]


def readout_latency(config: AccelConfig, mode: str) -> int:
    """Cycles from a change of ``sel`` to that lane's sum on ``acc_out``; in
    ``carrysave_drain`` also the zero-product cycles after the last MAC before the first
    lane is read (a carry crosses one block boundary a cycle)."""
    if mode == "carrysave_drain":  # a cycle per block boundary, then the readout register
        return len(carry_blocks(config.acc_bits))
    if mode not in CARRYSAVE_MODES:
        return 1
    # select, add the carries in, one drain stage per readout block boundary
    return 2 + len(carry_blocks(config.acc_bits, READOUT_BLOCK)) - 1


class _BlockAcc:
    """A carry-save accumulator: ``blocks`` (registered words, one per carry block) and
    ``carries`` (registered carry into block i, i >= 1); its value, mod ``2**acc_bits``, is
    ``word + sum(carry_i << low_i)``."""

    def __init__(self, acc_bits: int, block: int | None = None) -> None:
        self.layout = carry_blocks(acc_bits, block)
        self.blocks = [_unsigned(w) for _, w in self.layout]
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
               acc: _BlockAcc, clk: Any, rst: Any) -> Any:
    """Registered ``acc <- a + b`` block by block: block i adds its slices and its carry-in
    (``cin0`` for block 0, ``carry_in[i-1]`` above; None: none), keeps the sum, and registers
    its carry out as the next block's carry-in.  No carry travels further than one block a
    cycle."""
    insts: list[Any] = []
    for i, (lo, w) in enumerate(acc.layout):
        ai = _unsigned(w)
        bi = None if b is None else _unsigned(w)
        total = _unsigned(w + 1)
        cin = cin0 if i == 0 else None if carry_in is None else carry_in[i - 1]
        insts.append(core_mod.slice_bits(a, lo, w, ai))
        if bi is not None:
            insts.append(core_mod.slice_bits(b, lo, w, bi))
        insts.append(_adder(ai, bi, cin, total))
        insts.append(_split_reg(clk, rst, total, acc.blocks[i],
                                acc.carries[i] if i < len(acc.carries) else None))
    return insts


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


@block
def _lane_carrysave(clk: Any, rst: Any, load: Any, wload: Any, wreg: Any, xreg: Any,
                    xzero: Any, acc: _BlockAcc, c: AccelConfig, registered: bool = True) -> Any:
    """One lane of the carry-save array: the PE's terms (shift-add) or product (multiplier)
    added into the block carry-save accumulator, through a register if ``registered``."""
    n = c.acc_bits
    pw = pe_mod.product_bits(c.act_bits, c.exp_bits)
    insts: list[Any] = []
    if c.pe == "shiftadd":
        tw = pe_mod.term_bits(c.act_bits, c.exp_bits)
        o1, o2 = _signed(tw), _signed(tw)
        s1, s2 = Signal(bool(0)), Signal(bool(0))
        if not registered:
            # No register to clear: a zero activation clears the signs instead, so both
            # terms are 0 rather than ~0 and a +1.  (Not the zero weight: its two digits
            # cancel only with their signs; 0.7% of this layer's weights.)
            live = Signal(bool(0))
            insts += [_negated(xzero, live),
                      pe_mod.shift_terms(xreg, wreg, o1, o2, s1, s2, c.act_bits, c.exp_bits,
                                         live),
                      _carrysave_terms_add(o1, o2, s1, s2, acc, clk, rst)]
        else:
            # The zero weight's flag is decoded at load, as the multiplier decodes its integer.
            wzero, quiet = Signal(bool(0)), Signal(bool(0))
            insts += [_zero_weight_reg(clk, rst, load, wload, wzero, c.exp_bits),
                      _either(xzero, wzero, quiet)]
            insts.append(pe_mod.shift_terms(xreg, wreg, o1, o2, s1, s2, c.act_bits, c.exp_bits))
            r1, r2 = _signed(tw), _signed(tw)
            rs1, rs2 = Signal(bool(0)), Signal(bool(0))
            insts += [_carrysave_terms_add(r1, r2, rs1, rs2, acc, clk, rst)]

            @always_seq(clk.posedge, reset=rst)
            def terms_reg() -> None:
                # A product known to be zero (zero activation: ReLU; the zero weight) clears the
                # terms: a negated digit would otherwise hand over ~0 and its +1, exact but
                # flipping every bit of the accumulator rows for nothing.  The clear is the
                # flip-flops' synchronous reset, no logic in front of them.
                if quiet:
                    r1.next = 0
                    r2.next = 0
                    rs1.next = False
                    rs2.next = False
                else:
                    r1.next = o1
                    r2.next = o2
                    rs1.next = s1
                    rs2.next = s2

            insts.append(terms_reg)
    else:
        prod = _signed(pw)
        rp = _signed(pw) if registered else prod
        ep = _unsigned(n)
        insts += [pe_mod.pe(xreg, wreg, prod, c.pe, c.act_bits, c.exp_bits),
                  sign_extend(rp, ep), _block_add(acc.word, ep, None, acc.carries, acc, clk, rst)]
        if registered:

            @always_seq(clk.posedge, reset=rst)
            def product_reg() -> None:
                rp.next = prod

            insts.append(product_reg)

    insts.append(_weight_reg(clk, rst, load, wload, wreg))
    return insts


@block
def _carrysave_terms_add(r1: Any, r2: Any, rs1: Any, rs2: Any, acc: _BlockAcc, clk: Any,
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
        t1, t2, s, k = (_unsigned(n) for _ in range(4))

        @always_comb
        def low() -> None:
            t1.next = r1[n:]
            t2.next = r2[n:]

        return low, full_adder_row(acc.word, t1, t2, rs1, s, k), \
            _block_add(s, k, rs2, acc.carries, acc, clk, rst)
    b1, b2 = _unsigned(tw), _unsigned(tw)
    lo, hi = _unsigned(tw), _unsigned(n - tw)
    s, k = _unsigned(tw), _unsigned(tw)
    cout, fill = Signal(bool(0)), Signal(bool(0))
    u = ConcatSignal(hi, s)
    v = ConcatSignal(*([fill] * (n - tw)), k)

    @always_comb
    def upper_bits() -> None:
        fill.next = not cout

    return (core_mod.slice_bits(acc.word, 0, tw, lo), core_mod.slice_bits(acc.word, tw, n - tw, hi),
            _biased(r1, b1), _biased(r2, b2), upper_bits,
            full_adder_row(lo, b1, b2, rs1, s, k, cout),
            _block_add(u, v, rs2, acc.carries, acc, clk, rst))


@block
def _zero_weight_reg(clk: Any, rst: Any, load: Any, wload: Any, wzero: Any,
                     exp_bits: int) -> Any:
    zero_code = int(hwcode.encode(0, exp_bits))

    @always_seq(clk.posedge, reset=rst)
    def flag() -> None:
        if load:
            wzero.next = wload == zero_code

    return flag


@block
def _either(a: Any, b: Any, y: Any) -> Any:
    @always_comb
    def orr() -> None:
        y.next = a or b

    return orr


@block
def _negated(a: Any, y: Any) -> Any:
    @always_comb
    def inv() -> None:
        y.next = not a

    return inv


@block
def _weight_reg(clk: Any, rst: Any, load: Any, wload: Any, wreg: Any) -> Any:
    @always_seq(clk.posedge, reset=rst)
    def hold() -> None:
        if load:
            wreg.next = wload

    return hold


@block
def sign_extend(a: Any, y: Any) -> Any:
    """``y`` (unsigned, wider) = the two's complement bits of signed ``a``."""
    wide = _signed(len(y))

    @always_comb
    def widen() -> None:
        wide.next = a

    @always_comb
    def bits() -> None:
        y.next = wide[len(y):]

    return widen, bits


@block
def full_adder_row(a: Any, b: Any, c: Any, cin: Any | None, s: Any, k: Any,
                   cout: Any = None) -> Any:
    """A 3:2 compressor on unsigned words: ``s + k == a + b + c + cin`` (mod 2**len): the
    carries move up one bit, and ``cin`` (None: 0) takes the free bit 0; the top carry goes
    to ``cout`` if given (then ``s + k + cout * 2**len`` is the whole sum)."""
    n = len(s)
    maj = _unsigned(n)

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
def _carrysave_readout(clk: Any, rst: Any, sel: Any, accs: list[_BlockAcc], acc_out: Any,
                       acc_bits: int) -> Any:
    """Register the selected lane's word and carries; add the carries in as one sparse word,
    in ``READOUT_BLOCK``-bit blocks; then let the blocks' carries drain, one incrementer stage
    per block boundary (no carry crosses a block in a cycle).  The last stage's word is the
    sum."""
    picked = _BlockAcc(acc_bits)
    word = _unsigned(acc_bits)
    insts: list[Any] = [mux_tree(sel, [a.word for a in accs], word)]
    for i, (lo, w) in enumerate(picked.layout):
        insts.append(_slice_reg(clk, rst, word, lo, w, picked.blocks[i]))
    stage = _BlockAcc(acc_bits, READOUT_BLOCK)
    if picked.carries:
        carries = _unsigned(len(picked.carries))
        insts.append(mux_tree(sel, [a.carry_word for a in accs], carries))
        for i, cy in enumerate(picked.carries):
            insts.append(_slice_reg(clk, rst, carries, i, 1, cy))
        insts.append(_block_add(picked.word, picked.carry_vector(), None, None, stage, clk, rst))
    else:
        insts.append(_block_add(picked.word, None, None, None, stage, clk, rst))
    for _ in stage.carries:
        nxt = _BlockAcc(acc_bits, READOUT_BLOCK)
        insts.append(_block_add(stage.word, None, None, stage.carries, nxt, clk, rst))
        stage = nxt
    insts.append(core_mod.copy_sig(stage.word, acc_out))
    return insts


@block
def mux_tree(sel: Any, inputs: list[Any], out: Any) -> Any:
    """``out = inputs[sel]`` as a balanced tree of two-way muxes, one level per bit of
    ``sel`` (a chain of ``sel == k`` compares would put every lane in series)."""
    level = list(inputs)
    insts: list[Any] = []
    bit = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level), 2):
            if j + 1 == len(level):
                nxt.append(level[j])
                continue
            y = out if len(level) == 2 else Signal(out.val)
            insts.append(_mux_bit(sel, bit, level[j + 1], level[j], y))
            nxt.append(y)
        level = nxt
        bit += 1
    if len(inputs) == 1:
        insts.append(core_mod.copy_sig(inputs[0], out))
    return insts


@block
def _mux_bit(sel: Any, bit: int, one: Any, zero: Any, y: Any) -> Any:
    @always_comb
    def pick() -> None:
        if sel[bit]:
            y.next = one
        else:
            y.next = zero

    return pick


@block
def _slice_reg(clk: Any, rst: Any, word: Any, lo: int, w: int, y: Any) -> Any:
    """``y <- word[lo + w : lo]`` (a bit when ``y`` is a bool)."""
    if w == 1 and isinstance(y.val, bool):

        @always_seq(clk.posedge, reset=rst)
        def bit() -> None:
            y.next = word[lo]

        return bit

    @always_seq(clk.posedge, reset=rst)
    def part() -> None:
        y.next = word[lo + w:lo]

    return part


def pe_array_signals(config: AccelConfig, mode: str = "pipelined") -> dict[str, Any]:
    return core_mod.signals_for({name: w for name, (w, _) in
                                 pe_array_ports(config, mode).items()})


def convert_pe_array(config: AccelConfig, directory: str | Path,
                     mode: str = "pipelined") -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with core_mod.fast_elaboration():
        inst = pe_array(**pe_array_signals(config, mode), config=config, mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inst.convert(hdl="Verilog", path=str(d), name=PE_ARRAY_NAME, initial_values=True,
                     no_testbench=True)
    return d / f"{PE_ARRAY_NAME}.v"


def core_ports(config: AccelConfig) -> dict[str, tuple[int, str]]:
    return {n: (w, "in" if n in core_mod.PORT_INPUTS else "out")
            for n, w in core_mod.port_widths(config).items()}


def convert_core(config: AccelConfig, directory: str | Path) -> Path:
    from .export import CORE_NAME, convert

    convert(config, "verilog", directory)
    return Path(directory) / f"{CORE_NAME}.v"


def scan_wrapper(top: str, ports: dict[str, tuple[int, str]]) -> str:
    """Verilog of a wrapper that feeds every input of ``top`` from, and captures every
    output into, one scan chain (pins: clk, rst, si, se, so)."""
    ins = [(n, max(w, 1)) for n, (w, d) in ports.items() if d == "in" and n not in ("clk", "rst")]
    outs = [(n, max(w, 1)) for n, (w, d) in ports.items() if d == "out"]
    nin = sum(w for _, w in ins)
    nout = sum(w for _, w in outs)
    lines = [f"// Scan wrapper for place and route of {top} (generated by accel.designs).",
             f"module {WRAPPER_NAME}(input clk, input rst, input si, input se, output so);",
             f"reg [{nin - 1}:0] sin = 0;", f"reg [{nout - 1}:0] sout = 0;",
             f"wire [{nout - 1}:0] dout;"]
    conns = [".clk(clk)", ".rst(rst)"]
    lo = 0
    for n, w in ins:
        conns.append(f".{n}(sin[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for n, w in outs:
        conns.append(f".{n}(dout[{lo + w - 1}:{lo}])")
        lo += w
    shift_in = f"{{sin[{nin - 2}:0], si}}" if nin > 1 else "si"
    shift_out = f"{{sout[{nout - 2}:0], sin[{nin - 1}]}}" if nout > 1 else f"sin[{nin - 1}]"
    lines += [f"{top} dut({', '.join(conns)});",
              "always @(posedge clk) begin",
              f"    if (se) begin sin <= {shift_in}; sout <= {shift_out}; end",
              "    else sout <= dout;",
              "end",
              f"assign so = sout[{nout - 1}];",
              "endmodule", ""]
    return "\n".join(lines)


def write_design(config: AccelConfig, target: str, directory: str | Path,
                 mode: str = "pipelined") -> tuple[list[Path], str, Path]:
    """Convert ``target`` (``pe`` or ``core``) for ``config`` into ``directory``; returns
    ``(sources, top module name, wrapper file)``."""
    d = Path(directory)
    if target == "pe":
        src = convert_pe_array(config, d, mode)
        top, ports = PE_ARRAY_NAME, pe_array_ports(config, mode)
    elif target == "core":
        src = convert_core(config, d)
        top, ports = core_mod_name(), core_ports(config)
    else:
        raise ValueError(f"unknown target {target!r} (pe or core)")
    wrap = d / f"{WRAPPER_NAME}.v"
    wrap.write_text(scan_wrapper(top, ports))
    return [src], top, wrap


def core_mod_name() -> str:
    from .export import CORE_NAME

    return CORE_NAME

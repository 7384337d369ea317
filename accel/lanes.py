"""The lanes of the PE arrays and the registry of PE-array modes.

:data:`LANE_MODES` maps each mode to a :class:`LaneMode`: how its lanes accumulate and
read out, and what follows for the stimulus (products per cycle) and the readout latency.
:func:`accel.pe_array.pe_array` builds every mode from these properties; the modes
themselves are described in :mod:`accel.pe_array`.

Blocks keep their names, leading underscores included: a block's name prefixes its
nets in the converted HDL, so renaming one would change every netlist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from myhdl import Signal, always_comb, always_seq, block, intbv

from contract import hwcode
from contract.config import AccelConfig

from . import pe as pe_mod
from .arith import BlockAccumulator, _block_add, _carrysave_terms_add, tree_accumulate
from .hdl import _delay, _either, _negated, sign_extend, signed, slice_bits, unsigned
from .pairs import _carrysave_pair_add, carrysave_product, pair_layout
from .readouts import (
    _carrysave_readout,
    _readout,
    carrysave_latency,
    drain_latency,
    resolved_latency,
)

# Products a lane of the compressor-tree array sums each cycle.
TREE_PRODUCTS = 4


@dataclass(frozen=True)
class LaneMode:
    """How the lanes of one PE-array mode are built.

    ``tree``: the lanes sum ``products_per_cycle`` products in one compressor tree
    (:func:`_tree_lanes`); otherwise one product a cycle into a resolved accumulator
    (:func:`_lane_regs`) or, with ``carry_save``, a block carry-save one
    (:func:`_lane_carrysave`).  ``registered``: a register between the PE and the
    accumulate.  ``accumulates``: False leaves the accumulator holding the last product.
    ``readout`` is the readout block, None when the lanes drain their own carries and are
    read through a registered mux.
    """

    readout_latency: Callable[[AccelConfig], int]
    # No default: a block stored on the class would bind to the instance like a method
    # (MyHDL blocks are descriptors) and prefix its nets with ``LaneMode0``.
    readout: Callable[..., Any] | None
    products_per_cycle: int = 1
    tree: bool = False
    carry_save: bool = False
    registered: bool = True
    accumulates: bool = True


LANE_MODES: dict[str, LaneMode] = {
    "pipelined": LaneMode(resolved_latency, _readout),
    "direct": LaneMode(resolved_latency, _readout, registered=False),
    "product": LaneMode(resolved_latency, _readout, accumulates=False),
    "carrysave": LaneMode(carrysave_latency, _carrysave_readout, carry_save=True),
    "carrysave_direct": LaneMode(carrysave_latency, _carrysave_readout, carry_save=True,
                                 registered=False),
    "carrysave_drain": LaneMode(drain_latency, None, carry_save=True, registered=False),
    "tree": LaneMode(resolved_latency, _readout, products_per_cycle=TREE_PRODUCTS, tree=True),
}
MODES = tuple(LANE_MODES)
CARRYSAVE_MODES = tuple(m for m, spec in LANE_MODES.items() if spec.carry_save)


def lane_mode(mode: str) -> LaneMode:
    """The registry entry of ``mode`` (a ValueError names the known modes)."""
    if mode not in LANE_MODES:
        raise ValueError(f"unknown PE array mode {mode!r} ({', '.join(MODES)})")
    return LANE_MODES[mode]


def products_per_cycle(mode: str) -> int:
    """MACs a lane does each cycle in PE array ``mode``."""
    return lane_mode(mode).products_per_cycle


def readout_latency(config: AccelConfig, mode: str) -> int:
    """Cycles from a change of ``sel`` to that lane's sum on ``acc_out``; in
    ``carrysave_drain`` also the zero-product cycles after the last MAC before the first
    lane is read (a carry crosses one block boundary a cycle)."""
    return lane_mode(mode).readout_latency(config)


def weight_signals(c: AccelConfig, code: Any) -> tuple[Any, Any]:
    """``(value loaded, W register)`` of one weight: the code itself for the shift-add PE;
    for the multiplier the integer :func:`accel.pe.decode_code` makes of ``code`` (the
    caller instantiates the decoder), its register reset to the zero weight; with ``int8``
    weights the 8 bits read as signed (:func:`accel.pe.int_weight`, no decoder)."""
    if c.pe != "multiplier":
        return code, unsigned(c.code_bits)
    if c.weights == "int8":
        return signed(c.weight_bits), signed(c.weight_bits)
    wbits = c.window + 2
    return signed(wbits), Signal(intbv(int(hwcode.to_int(0, c.exp_bits)),
                                        min=-(1 << (wbits - 1)), max=1 << (wbits - 1)))


def lane_product_bits(c: AccelConfig) -> int:
    """Width of one lane's product in ``c``'s weight format."""
    return c.weight_format.product_bits(c.act_bits, c.exp_bits)


@block
def _weight_reg(clk: Any, rst: Any, load: Any, wload: Any, wreg: Any) -> Any:
    @always_seq(clk.posedge, reset=rst)
    def hold() -> None:
        if load:
            wreg.next = wload

    return hold


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
def _activation_reg(clk: Any, rst: Any, xs: Any, xr: Any, live: Any) -> Any:
    """``xr`` <- the activation, ``live`` <- whether it is non-zero (ReLU makes about half
    of them 0: the shift-add terms stay 0 then, see :func:`accel.pe.shift_terms`)."""

    @always_seq(clk.posedge, reset=rst)
    def hold() -> None:
        xr.next = xs.signed()
        live.next = xs != 0

    return hold


@block
def _lane_regs(clk: Any, rst: Any, load: Any, wload: Any, wreg: Any, prod: Any, acc: Any,
               acc_bits: int, spec: LaneMode) -> Any:
    """A resolved lane's registers: W, the product (unless ``spec.registered`` is False,
    then the PE feeds the adder directly) and the accumulator."""
    preg = Signal(prod.val)
    asum = signed(acc_bits + 1)
    src = preg if spec.registered else prod
    accumulate = spec.accumulates

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


@block
def _lane_carrysave(clk: Any, rst: Any, load: Any, wload: Any, wreg: Any, xreg: Any,
                    xzero: Any, acc: BlockAccumulator, c: AccelConfig,
                    registered: bool = True, form: str = "resolved") -> Any:
    """One lane of the carry-save array: the PE's terms (shift-add), product (multiplier,
    ``form`` resolved) or partial products (``booth``, ``array``: summed to a carry-save
    pair, :func:`_products_carrysave`) added into the block carry-save accumulator, through a
    register if ``registered``."""
    n = c.acc_bits
    pw = lane_product_bits(c)
    insts: list[Any] = []
    if form == "floor":
        return [_floor_terms(xreg, acc, clk, rst, c), _weight_reg(clk, rst, load, wload, wreg)]
    if c.pe == "multiplier" and form != "resolved":
        return [_products_carrysave(clk, rst, wreg, xreg, xzero, acc, c, registered, form),
                _weight_reg(clk, rst, load, wload, wreg)]
    if c.pe == "shiftadd":
        tw = pe_mod.term_bits(c.act_bits, c.exp_bits)
        o1, o2 = signed(tw), signed(tw)
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
            r1, r2 = signed(tw), signed(tw)
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
        prod = signed(pw)
        rp = signed(pw) if registered else prod
        ep = unsigned(n)
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
def _floor_terms(xreg: Any, acc: BlockAccumulator, clk: Any, rst: Any, c: AccelConfig) -> Any:
    """The no-multiply probe's lane: the activation is the first term, the second is 0, into
    the shift-add lane's own row and accumulator (a zero activation adds no carry, so the
    drain works).  The weight register is left unread: synthesis drops it."""
    tw = pe_mod.term_bits(c.act_bits, c.exp_bits)
    t1, t2 = signed(tw), signed(tw)
    neg = Signal(bool(0))

    @always_comb
    def terms() -> None:
        t1.next = xreg
        t2.next = 0
        neg.next = False

    return terms, _carrysave_terms_add(t1, t2, neg, neg, acc, clk, rst)


@block
def _products_carrysave(clk: Any, rst: Any, wreg: Any, xreg: Any, xzero: Any,
                        acc: BlockAccumulator, c: AccelConfig, registered: bool,
                        form: str) -> Any:
    """The multiplier's partial products (:func:`accel.pe.partial_products`) reduced to a
    carry-save pair (:func:`accel.arith.carrysave_product`) and merged into the block
    accumulator by one full-adder row, as the shift-add PE's two terms are: no carry is
    resolved on either side.  ``registered``: the pair (and its pending +1s) is registered
    between the two, reset to a zero product."""
    widths = pe_mod.partial_product_widths(form, c.act_bits, len(wreg))
    terms = [signed(w) for w in widths]
    negs = [Signal(bool(0)) for _ in range(pe_mod.partial_product_negs(form, len(wreg)))]
    r, _, _, nleft = pair_layout(widths, len(negs))
    if nleft > 2:
        raise ValueError(f"{nleft} +1s left for a carry-save pair: too few rows")
    pa, pb = unsigned(r + 1), unsigned(r + 1)
    left = [Signal(bool(0)) for _ in range(nleft)]
    live = Signal(bool(0))
    insts: list[Any] = [_negated(xzero, live),
                        pe_mod.partial_products(xreg, wreg, live, terms, negs, form),
                        carrysave_product(terms, negs, live, pa, pb, left)]
    if registered:  # reset to (0, 0) and not live: a zero product
        ra, rb, rlive = unsigned(r + 1), unsigned(r + 1), Signal(bool(0))
        rleft = [Signal(bool(0)) for _ in left]
        insts += [_delay(pa, ra, clk, rst), _delay(pb, rb, clk, rst),
                  _delay(live, rlive, clk, rst)]
        insts += [_delay(d, q, clk, rst) for d, q in zip(left, rleft, strict=True)]
        pa, pb, left, live = ra, rb, rleft, rlive
    cin_row = left[0] if left else None
    cin0 = left[1] if len(left) > 1 else None
    insts.append(_carrysave_pair_add(pa, pb, cin_row, cin0, live, acc, clk, rst))
    return insts


@block
def _tree_lanes(clk: Any, rst: Any, x_in: Any, w_in: Any, load: Any, accs: list[Any],
                c: AccelConfig, form: str = "resolved") -> Any:
    """The lanes of the compressor-tree array (see the module docstring), accumulating into
    ``accs``; a multiplier of ``form`` booth or array hands the tree its partial products
    instead of its products."""
    k = TREE_PRODUCTS
    insts: list[Any] = []
    xregs, lives = [], []
    for j in range(k):
        xs, xr, live = unsigned(c.act_bits), signed(c.act_bits), Signal(bool(0))
        insts += [slice_bits(x_in, j * c.act_bits, c.act_bits, xs),
                  _activation_reg(clk, rst, xs, xr, live)]
        xregs.append(xr)
        lives.append(live)
    for i, acc in enumerate(accs):
        terms: list[Any] = []  # signed words the tree sums
        ones: list[Any] = []  # +1s (folded signs)
        for j in range(k):
            wl = unsigned(c.weight_bits)
            insts.append(slice_bits(w_in, (i * k + j) * c.weight_bits, c.weight_bits, wl))
            wload, wreg = weight_signals(c, wl)
            if c.pe == "multiplier" and form != "resolved":
                widths = pe_mod.partial_product_widths(form, c.act_bits, len(wreg))
                pps = [signed(w) for w in widths]
                negs = [Signal(bool(0))
                        for _ in range(pe_mod.partial_product_negs(form, len(wreg)))]
                insts += [pe_mod.int_weight(wl, wload) if c.weights == "int8" else
                          pe_mod.decode_code(wl, wload, c.exp_bits),
                          pe_mod.partial_products(xregs[j], wreg, lives[j], pps, negs, form)]
                terms += pps
                ones += negs
            elif c.pe == "multiplier":
                prod = signed(lane_product_bits(c))
                insts += [pe_mod.int_weight(wl, wload) if c.weights == "int8" else
                          pe_mod.decode_code(wl, wload, c.exp_bits),
                          pe_mod.multiply(xregs[j], wreg, prod)]
                terms.append(prod)
            else:
                tw = pe_mod.term_bits(c.act_bits, c.exp_bits)
                o1, o2 = signed(tw), signed(tw)
                s1, s2 = Signal(bool(0)), Signal(bool(0))
                insts.append(pe_mod.shift_terms(xregs[j], wreg, o1, o2, s1, s2, c.act_bits,
                                                c.exp_bits, lives[j]))
                terms += [o1, o2]
                ones += [s1, s2]
            insts.append(_weight_reg(clk, rst, load, wload, wreg))
        insts.append(tree_accumulate(terms, ones, acc, clk, rst))
    return insts



"""The PE array ``asd hwreport`` synthesizes as target ``pe``: the lanes' PEs of
:mod:`accel.pe` exactly as the core instantiates them, with the activation broadcast from
one register, each lane's weight register (the code for ``shiftadd``; for ``multiplier`` the
integer decoded when it is loaded, as in the core), a product register and the accumulator.
One lane's accumulator is read out through a registered mux (``sel``), so the pin count does
not grow with the lanes.  The modes (their properties in :data:`accel.lanes.LANE_MODES`):

* ``pipelined``: the product register splits the product from the accumulate (one MAC per
  lane per cycle either way: equal throughput), so the critical path of each PE kind is that
  of its own product stage unless the accumulate stage, identical for both, is longer.
* ``direct`` drops the product register (the core lane's single-cycle MAC).
* ``product`` keeps only the product stage (the accumulator register just holds the last
  product, no adder): the PE alone.
* ``carrysave`` keeps the accumulator in block carry-save form: ``CARRY_BLOCK``-bit blocks
  whose carry outs are registered into the next block, so no carry crosses more than one
  block a cycle; the readout lets the pending carries drain through one incrementer stage
  per block boundary.  The shift-add PE hands over its two sign-folded terms unresolved (one
  full-adder row merges them with the accumulator; no adder in the PE at all), the
  multiplier its resolved product.
* ``carrysave_direct`` is the same without the terms and product registers: the shift-add
  terms (their signs cleared on a zero activation) and the multiplier's product go straight
  into the accumulator's row, one cycle from the activation register to the accumulator.
* ``carrysave_drain`` has the lanes of ``carrysave_direct`` and no carry-resolving readout:
  after the last MAC the lanes take zero products (zero activations) until their own block
  adders have carried every pending carry through (one block a cycle, see
  :func:`accel.lanes.readout_latency`), and the selected lane's word is then its sum, read
  through a registered mux.  It trades those cycles at the end of each accumulation (9 for a
  40-bit accumulator in 4-bit blocks, the same for both kinds) for the readout pipeline's
  flip-flops (about 260 at 40 bits, as many as four lanes have).
* ``tree`` takes ``TREE_PRODUCTS`` activations and as many weights per lane each cycle (K
  MACs per lane per cycle, for both kinds: equal throughput) and sums all the products with
  the accumulator in one compressor tree of full-adder rows and a single carry-propagate
  adder: the shift-add PE hands its ``2K`` sign-folded terms (their +1s ride the rows' free
  carry-ins), the multiplier its ``K`` products.  The tree's two words are registered; the
  last row (adding the accumulator) and the adder are the accumulate stage, identical for
  both kinds.
"""

from __future__ import annotations

from typing import Any

from myhdl import Signal, always_comb, always_seq, block

from contract.config import AccelConfig

from . import pe as pe_mod
from .arith import BlockAccumulator
from .hdl import _slice_reg, mux_tree, signals_for, signed, slice_bits, unsigned
from .lanes import (
    _lane_carrysave,
    _lane_regs,
    _tree_lanes,
    lane_mode,
    lane_product_bits,
    products_per_cycle,
    weight_signals,
)

# The no-multiply probe (:mod:`benchmarks.bench_energy`): the shift-add lane with its PE
# replaced by the activation itself (a product of weight 1), in the unregistered carry-save
# modes, to measure the energy and area that no PE can remove.
FLOOR_FORM = "floor"
FLOOR_MODES = ("carrysave_direct", "carrysave_drain")


def check_form(config: AccelConfig, mode: str, form: str) -> None:
    """Refuse a multiplier form the array cannot build, naming what would work."""
    if form not in (*pe_mod.MULTIPLIER_FORMS, FLOOR_FORM):
        raise ValueError(f"unknown multiplier form {form!r} "
                         f"({', '.join(pe_mod.MULTIPLIER_FORMS)})")
    if form == "resolved":
        return
    if form == FLOOR_FORM:
        if config.pe != "shiftadd" or mode not in FLOOR_MODES:
            raise ValueError(f"form {form!r} (the no-multiply probe) needs pe = 'shiftadd' and "
                             f"mode {' or '.join(map(repr, FLOOR_MODES))}, not "
                             f"{config.pe!r} in {mode!r}")
        return
    if config.pe != "multiplier":
        raise ValueError(f"multiplier form {form!r} needs pe = 'multiplier', not "
                         f"{config.pe!r}")
    spec = lane_mode(mode)
    if not (spec.carry_save or spec.tree):
        raise ValueError(f"multiplier form {form!r} keeps partial products unresolved, which "
                         f"only the carry-save and tree modes take, not {mode!r}")


def sel_bits(lanes: int) -> int:
    return max(1, (lanes - 1).bit_length())


def pe_array_ports(config: AccelConfig, mode: str = "pipelined") -> dict[str, tuple[int, str]]:
    """``name -> (width, 'in'|'out')`` of the PE array (width 0: one-bit): ``x_in`` holds
    :func:`products_per_cycle` activations, ``w_in`` as many codes per lane (activation
    ``j`` at bit ``j * act_bits``; lane ``i``'s code ``j`` at ``(i * K + j) * code_bits``)."""
    c = config
    k = products_per_cycle(mode)
    return {"clk": (0, "in"), "rst": (0, "in"), "x_in": (k * c.act_bits, "in"),
            "w_in": (c.lanes * k * c.weight_bits, "in"), "load": (0, "in"),
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
                ww |= int(codes[t + j, lane]) << ((lane * k + j) * c.weight_bits)
        out.append((xw, ww))
    return out


@block
def pe_array(clk: Any, rst: Any, x_in: Any, w_in: Any, load: Any, sel: Any, acc_out: Any,
             config: AccelConfig, mode: str = "pipelined", form: str = "resolved") -> Any:
    """``lanes`` PEs sharing one activation; see the module docstring.  ``form``: how a
    multiplier hands on its product in the carry-save and tree modes
    (:data:`accel.pe.MULTIPLIER_FORMS`; partial products need one of those modes)."""
    # The registry's flags pick the parts; the parts are instantiated here, in this block,
    # because MyHDL names every signal after the block whose locals hold it.
    spec = lane_mode(mode)
    c = config
    check_form(c, mode, form)
    pw = lane_product_bits(c)
    acc_bits = c.acc_bits
    insts: list[Any] = []
    readout = spec.readout
    if spec.tree:
        assert readout is not None
        accs = [signed(acc_bits) for _ in range(c.lanes)]
        return (_tree_lanes(clk, rst, x_in, w_in, load, accs, c, form),
                readout(clk, rst, sel, accs, acc_out, acc_bits))
    xreg = signed(c.act_bits)

    @always_seq(clk.posedge, reset=rst)
    def x_reg() -> None:
        xreg.next = x_in.signed()

    insts.append(x_reg)
    nxreg = None  # -x, registered with x: the shift-add PE's negative second digit
    if c.pe == "shiftadd" and not spec.carry_save:
        nxreg = signed(c.act_bits + 1)
        xw = signed(c.act_bits + 1)  # negated at the result's width (VHDL: operand's)

        @always_comb
        def widen_x() -> None:
            xw.next = x_in.signed()

        @always_seq(clk.posedge, reset=rst)
        def neg_x_reg() -> None:
            nxreg.next = -xw

        insts += [widen_x, neg_x_reg]
    xzero = Signal(bool(0))  # registered with x: the carry-save shift-add PE stays quiet on 0
    if spec.carry_save and (c.pe == "shiftadd" or form != "resolved"):

        @always_seq(clk.posedge, reset=rst)
        def x_zero_reg() -> None:
            xzero.next = x_in == 0

        insts.append(x_zero_reg)
    accs = []
    for i in range(c.lanes):
        wl = unsigned(c.weight_bits)
        insts.append(slice_bits(w_in, i * c.weight_bits, c.weight_bits, wl))
        wload, wreg = weight_signals(c, wl)
        if c.pe == "multiplier":
            insts.append(pe_mod.int_weight(wl, wload) if c.weights == "int8" else
                         pe_mod.decode_code(wl, wload, c.exp_bits))
        if spec.carry_save:
            bacc = BlockAccumulator(acc_bits)
            accs.append(bacc)
            insts.append(_lane_carrysave(clk, rst, load, wload, wreg, xreg, xzero, bacc, c,
                                         registered=spec.registered, form=form))
            continue
        prod = signed(pw)
        insts.append(pe_mod.pe(xreg, wreg, prod, c.pe, c.act_bits, c.exp_bits, nxreg))
        acc = signed(acc_bits)
        accs.append(acc)
        insts.append(_lane_regs(clk, rst, load, wload, wreg, prod, acc, acc_bits, spec))
    if readout is None:  # the lanes drained their carries: the word is the sum
        word = unsigned(acc_bits)
        insts += [mux_tree(sel, [a.word for a in accs], word),
                  _slice_reg(clk, rst, word, 0, acc_bits, acc_out)]
        return insts
    insts.append(readout(clk, rst, sel, accs, acc_out, acc_bits))
    return insts


def pe_array_signals(config: AccelConfig, mode: str = "pipelined") -> dict[str, Any]:
    return signals_for({name: w for name, (w, _) in pe_array_ports(config, mode).items()})



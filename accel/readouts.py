"""Readouts of the PE arrays: one lane's accumulator, chosen by ``sel``, registered onto
``acc_out``, so the pin count does not grow with the lanes.

Each readout comes with its latency (cycles from a change of ``sel`` to that lane's sum on
``acc_out``), which :mod:`accel.lanes` records per mode.

Blocks keep their names, leading underscores included: a block's name prefixes its
nets in the converted HDL, so renaming one would change every netlist.
"""

from __future__ import annotations

from typing import Any

from myhdl import always_seq, block

from contract.config import AccelConfig

from .arith import BlockAccumulator, _block_add, carry_blocks
from .hdl import _slice_reg, copy_sig, mux_chain, mux_tree, signed, unsigned

# Block of the readout's carry-resolving adders (shared by the lanes: fewer, longer stages).
READOUT_BLOCK = 8


@block
def _readout(clk: Any, rst: Any, sel: Any, accs: list[Any], acc_out: Any, acc_bits: int) -> Any:
    """The selected lane's (resolved) accumulator, registered."""
    asel = signed(acc_bits)

    @always_seq(clk.posedge, reset=rst)
    def out_reg() -> None:
        acc_out.next = asel[acc_bits:]

    return mux_chain(sel, tuple(range(len(accs))), accs, asel), out_reg


@block
def _carrysave_readout(clk: Any, rst: Any, sel: Any, accs: list[BlockAccumulator], acc_out: Any,
                       acc_bits: int) -> Any:
    """Register the selected lane's word and carries; add the carries in as one sparse word,
    in ``READOUT_BLOCK``-bit blocks; then let the blocks' carries drain, one incrementer stage
    per block boundary (no carry crosses a block in a cycle).  The last stage's word is the
    sum."""
    picked = BlockAccumulator(acc_bits)
    word = unsigned(acc_bits)
    insts: list[Any] = [mux_tree(sel, [a.word for a in accs], word)]
    for i, (lo, w) in enumerate(picked.layout):
        insts.append(_slice_reg(clk, rst, word, lo, w, picked.blocks[i]))
    stage = BlockAccumulator(acc_bits, READOUT_BLOCK)
    if picked.carries:
        carries = unsigned(len(picked.carries))
        insts.append(mux_tree(sel, [a.carry_word for a in accs], carries))
        for i, cy in enumerate(picked.carries):
            insts.append(_slice_reg(clk, rst, carries, i, 1, cy))
        insts.append(_block_add(picked.word, picked.carry_vector(), None, None, stage, clk, rst))
    else:
        insts.append(_block_add(picked.word, None, None, None, stage, clk, rst))
    for _ in stage.carries:
        nxt = BlockAccumulator(acc_bits, READOUT_BLOCK)
        insts.append(_block_add(stage.word, None, None, stage.carries, nxt, clk, rst))
        stage = nxt
    insts.append(copy_sig(stage.word, acc_out))
    return insts

def resolved_latency(config: AccelConfig) -> int:
    """:func:`_readout`: the output register."""
    return 1


def carrysave_latency(config: AccelConfig) -> int:
    """:func:`_carrysave_readout`: select, add the carries in, one drain stage per readout
    block boundary."""
    return 2 + len(carry_blocks(config.acc_bits, READOUT_BLOCK)) - 1


def drain_latency(config: AccelConfig) -> int:
    """Lanes that drain their own carries: a zero-product cycle per block boundary after the
    last MAC, then the readout register."""
    return len(carry_blocks(config.acc_bits))

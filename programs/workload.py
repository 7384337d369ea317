"""A layer's work, to set the accelerator's cycles against: its multiply-accumulates, and
the words the host moves for it (:func:`layer_transfers`).

MAC utilization is ``MACs / (lanes x cycles)``: the fraction of the lanes' cycles that did a
product of the model.  A layer's MACs are the model's, counted the usual way (every kernel
position of every output, padding included): a convolution ``Cout x OH x OW x Cin/groups x
KH x KW`` (a fully connected layer is one whose kernel covers its input), a depthwise one
``C x OH x OW x KH x KW``, an average pool one product (by 1.0) per window element, an add
two per output element; a max pool and the host's layers (concat, flatten, softmax) none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contract.config import AccelConfig

from .graph import Graph, Layer
from .lower import LoweredLayer


def layer_macs(lay: Layer, graph: Graph) -> int:
    """Multiply-accumulates of one image through ``lay``."""
    c, oh, ow = graph.shapes[lay.output]
    kh, kw = lay.kernel
    if lay.op == "conv":
        cin = graph.shapes[lay.inputs[0]][0]
        return c * oh * ow * (cin // lay.groups) * kh * kw
    if lay.op == "avgpool":
        return c * oh * ow * kh * kw
    if lay.op == "add":
        return 2 * c * oh * ow
    return 0


def utilization(macs: int, lanes: int, cycles: int) -> float:
    """``macs / (lanes x cycles)``; 0 for no cycles."""
    return macs / (lanes * cycles) if cycles else 0.0


@dataclass
class Transfers:
    """What the host moves for one image of a layer, tile by tile: the program, the weights
    (a block already in WMEM from the tile before is not loaded again), the parameters and the
    input bands in; the output band out.  Words are memory words (an instruction, a WMEM or
    BMEM word of every lane, an AMEM element); cycles at ``host_words_per_cycle``, not
    overlapped with computing."""

    load_words: int = 0
    store_words: int = 0
    bytes: int = 0
    cycles: int = 0


def layer_transfers(ll: LoweredLayer, config: AccelConfig) -> Transfers:
    """The host's loads and stores for one image of ``ll`` (static: tiles have fixed bands;
    kept on the layer, since every run of a compiled network asks for them)."""
    key = ("transfers", config)
    found = ll.derived.get(key)
    if found is None:
        found = ll.derived[key] = _transfers(ll, config)
    assert isinstance(found, Transfers)
    return Transfers(**vars(found))  # callers may add to theirs


def _transfers(ll: LoweredLayer, config: AccelConfig) -> Transfers:
    c = config
    word_bytes = {"text": 4, "weights": c.lanes * c.weight_bits / 8,
                  "params": c.lanes * c.acc_bits / 8, "acts": c.act_bits / 8}
    t = Transfers()
    moved = 0.0
    in_wmem: NDArray[np.integer] | None = None
    for tile in ll.tiles:
        img = tile.image
        w = img.weights
        reload = not (in_wmem is not None and in_wmem.shape == w.shape
                      and np.array_equal(in_wmem, w))
        in_wmem = w
        acts = tile.out_base + len(img.acts)  # the input bands lie below the output
        x0, x1 = tile.out_cols or (0, ll.out_shape[2])
        out = (tile.out_rows[1] - tile.out_rows[0]) * (x1 - x0) * (
            tile.out_channels[1] - tile.out_channels[0])
        words = {"text": len(img.text), "weights": len(w) if reload else 0,
                 "params": len(img.params), "acts": acts + out}
        t.load_words += sum(words.values()) - out
        t.store_words += out
        moved += sum(words[k] * word_bytes[k] for k in words)
    t.bytes = int(round(moved))
    t.cycles = -(-(t.load_words + t.store_words) // c.host_words_per_cycle)
    return t

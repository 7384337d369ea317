"""A layer's arithmetic, to set the accelerator's cycles against: its multiply-accumulates.

MAC utilization is ``MACs / (lanes x cycles)``: the fraction of the lanes' cycles that did a
product of the model.  A layer's MACs are the model's, counted the usual way (every kernel
position of every output, padding included): a convolution ``Cout x OH x OW x Cin/groups x
KH x KW`` (a fully connected layer is one whose kernel covers its input), a depthwise one
``C x OH x OW x KH x KW``, an average pool one product (by 1.0) per window element, an add
two per output element; a max pool and the host's layers (concat, flatten, softmax) none.
"""

from __future__ import annotations

from .graph import Graph, Layer


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

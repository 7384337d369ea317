"""The partition of a compiled network between the accelerator and the host: per side the
layers by op, the multiply-accumulates and the words moved (``asd compile`` prints it,
``--json`` gives it; the runtime counts the host's work per layer with :func:`host_work`).

MACs: on the accelerator every product the PE lanes form (:func:`programs.workload.layer_macs`:
a convolution's ``Co * OH * OW * Ci/g * KH * KW``, an average pool's ``C * OH * OW * KH * KW``,
an Add's two per element, a max pool none).  On the host the products of two feature maps
(``mul``: one per output element); a sigmoid is a table look-up, a resize, concatenation or
flatten a copy, so they count as host *elements* (output elements computed or moved), not
MACs; the softmax (float, last layer) likewise.
``mac_share`` is accelerator MACs over all MACs.

Words: the accelerator side's are the host <-> accelerator transfers of
:func:`programs.workload.layer_transfers` (program, weights, parameters, input and output
bands); the host side's are the elements a host op reads and writes, counted at the same
``host_words_per_cycle`` (conservative: a host op between two accelerator layers reads what
the layer before stored and its output is loaded again by the next).
"""

from __future__ import annotations

import math
from typing import Any

from .graph import Graph, Layer
from .lower import LoweredLayer
from .workload import layer_macs, layer_transfers


def host_work(lay: Layer, graph: Graph) -> tuple[int, int, int]:
    """``(elements, macs, words)`` of one image of host layer ``lay``: output elements,
    feature-map products, and elements read plus written."""
    out = math.prod(graph.shapes[lay.output])
    read = sum(math.prod(graph.shapes[t]) for t in lay.inputs)
    return out, out if lay.op == "mul" else 0, read + out


def partition(graph: Graph, layers: list[LoweredLayer], config: Any) -> dict[str, Any]:
    """Per side (``accelerator``, ``host``): layers, ops (count by op), MACs, words and their
    cycles at ``host_words_per_cycle``; and ``mac_share``."""

    by_name = {lay.name: lay for lay in graph.layers}
    sides: dict[str, dict[str, Any]] = {
        side: {"layers": 0, "ops": {}, "macs": 0, "elements": 0, "words": 0}
        for side in ("accelerator", "host")}
    for ll in layers:
        lay = by_name[ll.name]
        side = sides["host" if ll.host else "accelerator"]
        side["layers"] += 1
        side["ops"][ll.op] = side["ops"].get(ll.op, 0) + 1
        if ll.host:
            elements, macs, words = host_work(lay, graph)
            side["elements"] += elements
            side["macs"] += macs
            side["words"] += words
        else:
            side["macs"] += layer_macs(lay, graph)
            side["elements"] += math.prod(graph.shapes[lay.output])
            moved = layer_transfers(ll, config)
            side["words"] += moved.load_words + moved.store_words
    for side in sides.values():
        side["cycles"] = -(-side["words"] // config.host_words_per_cycle)
    total = sides["accelerator"]["macs"] + sides["host"]["macs"]
    return {**sides, "mac_share": sides["accelerator"]["macs"] / total if total else 1.0}


def format_partition(p: dict[str, Any]) -> list[str]:
    """Lines for ``asd compile``."""
    lines = [f"{'partition':<12} {'layers':>6} {'MACs':>14} {'elements':>12} {'words':>12}  ops"]
    for side in ("accelerator", "host"):
        s = p[side]
        ops = ", ".join(f"{op} x{k}" for op, k in sorted(s["ops"].items())) or "-"
        lines.append(f"{side:<12} {s['layers']:>6} {s['macs']:>14} {s['elements']:>12} "
                     f"{s['words']:>12}  {ops}")
    lines.append(f"MACs on the accelerator: {100 * p['mac_share']:.2f}% (host MACs: products "
                 "of two feature maps; words: accelerator transfers, host op reads + writes)")
    return lines

"""Which tensors share one scale (a union-find over pass-through layers) and which get a zero
point: a feature map that can never be negative is stored as ``real = s * (q - z)`` with
``z = act_min``, so all ``2^act_bits`` codes cover its range instead of half of them.  Only
layer kinds whose programs (or the host) handle it read or write such a tensor; the integer
semantics do not change: :func:`programs.reference.zero_offset` folds the zero points into the
integer biases and the padded border holds them.
"""

from __future__ import annotations

from .graph import Graph
from .qnet import QuantizeError


class ScaleGroups:
    """Union-find over tensors that must share one scale."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, t: str) -> str:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)

    def members(self, t: str) -> list[str]:
        r = self.find(t)
        return [k for k in list(self.parent) if self.find(k) == r]


# Zero points -----------------------------------------------------------------------------------
ACT_ZERO_POINTS = ("auto", "none")
# Layer kinds whose programs read a tensor with a zero point correctly (conv/gemm/depthwise and
# average pool: the padded border holds it and the bias removes ``z * sum(w)``; add: its bias;
# max pool, concat, flatten: codes pass through; softmax and the network output: dequantized
# with it on the host).  Any other reader (a host op) keeps its inputs at zero point 0.
ZERO_POINT_READERS = ("conv", "maxpool", "avgpool", "add", "concat", "flatten", "softmax")
# Layer kinds that can write one: those with a bias to fold it into, and the pass-throughs.
ZERO_POINT_WRITERS = ("conv", "maxpool", "avgpool", "add", "concat", "flatten")


def nonnegative_tensors(graph: Graph, input_nonnegative: bool) -> set[str]:
    """Tensors that can never be negative, whatever the input: outputs of a ReLU or Clip(0,
    hi), and what max/average pooling, concatenation, flattening and Add make of them."""
    out = {graph.input} if input_nonnegative else set()
    for lay in graph.layers:
        if lay.op not in ZERO_POINT_WRITERS:
            continue
        if lay.act in ("relu", "clip") or (
                lay.act == "none" and lay.op != "conv" and all(t in out for t in lay.inputs)):
            out.add(lay.output)
    return out


def zero_points(graph: Graph, groups: ScaleGroups, act_min: int, input_nonnegative: bool,
                mode: str = "auto") -> dict[str, int]:
    """``act_min`` for every tensor of a scale group whose members are all non-negative,
    written by :data:`ZERO_POINT_WRITERS` (or the host's input quantization) and read only by
    :data:`ZERO_POINT_READERS`; nothing else (zero point 0)."""
    if mode not in ACT_ZERO_POINTS:
        raise QuantizeError(f"act_zero_point {mode!r}: expected one of "
                            f"{', '.join(ACT_ZERO_POINTS)}")
    if mode == "none":
        return {}
    nonneg = nonnegative_tensors(graph, input_nonnegative)

    def handled(t: str) -> bool:
        lay = graph.producer(t)
        return (t in nonneg and (lay is None or lay.op in ZERO_POINT_WRITERS)
                and all(c.op in ZERO_POINT_READERS for c in graph.consumers(t)))

    out: dict[str, int] = {}
    for t in graph.shapes:
        if t not in out and all(handled(m) for m in groups.members(t)):
            out.update({m: act_min for m in groups.members(t)})
    return out

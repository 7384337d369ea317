"""Which tensors share one scale (a union-find over pass-through layers) and which get a zero
point: a feature map that can never be negative is stored as ``real = s * (q - z)`` with
``z = act_min``, so all ``2^act_bits`` codes cover its range instead of half of them; the
network's signed output (logits), read by the host alone, gets the zero point that spreads its
calibration range ``[lo, hi]`` over all codes (:func:`output_zero_point`).  Only
layer kinds whose programs (or the host) handle it read or write such a tensor; the integer
semantics do not change: :func:`programs.reference.zero_offset` folds the zero points into the
integer biases and the padded border holds them.
"""

from __future__ import annotations

import numpy as np

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


def logits(graph: Graph) -> str:
    """The network's output tensor, or the input of the host softmax that makes it."""
    lay = graph.producer(graph.output)
    return lay.inputs[0] if lay is not None and lay.op == "softmax" else graph.output


def output_zero_point(graph: Graph, groups: ScaleGroups, lo: float, hi: float, act_bits: int,
                      taken: dict[str, int], mode: str = "auto") -> tuple[int, float] | None:
    """``(z, s)`` for the scale group of the network's :func:`logits` when they are signed:
    ``s = (hi - lo) / (2^act_bits - 1)`` and ``z`` the code of a real 0, so ``[lo, hi]`` (the
    calibration range, holding 0) takes every code instead of the ``2 max(|lo|, hi)`` a
    symmetric scale spans.  Logits are rarely centred on 0; a finer output step leaves fewer
    images whose two largest outputs round to one code.  None where the group already has a
    zero point, or a member is written or read by a layer that does not handle one (as
    :func:`zero_points`)."""
    t = logits(graph)
    if mode == "none" or t in taken or not hi > lo:
        return None
    for m in groups.members(t):
        lay = graph.producer(m)
        if (lay is None or lay.op not in ZERO_POINT_WRITERS or lay.act != "none"
                or any(c.op not in ZERO_POINT_READERS for c in graph.consumers(m))):
            return None
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    codes = (1 << act_bits) - 1
    s = (hi - lo) / codes
    act_min = -(1 << (act_bits - 1))
    return int(np.clip(act_min + np.rint(-lo / s), act_min, act_min + codes)), s

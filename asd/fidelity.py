"""Measures that tell quantized models apart when top-1 saturates: output SQNR against the
float model, KL divergence of the softmax, top-1 agreement with float (and whether two models'
agreements differ by more than chance), and the SQNR of every weight layer's output (where
along the network the error grows).

All compare the quantized model's outputs with the float model's on the same images, no labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray


def sqnr_db(ref: NDArray, out: NDArray) -> float:
    """``10 log10(sum ref^2 / sum (out - ref)^2)``; +inf when equal."""
    r = np.asarray(ref, dtype=np.float64)
    d = np.asarray(out, dtype=np.float64) - r
    noise = float(np.sum(d * d))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(max(float(np.sum(r * r)), 1e-300) / noise)


def _log_softmax(z: NDArray) -> NDArray[np.float64]:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_kl(ref: NDArray, out: NDArray) -> float:
    """Mean over rows of KL(softmax(ref) || softmax(out)), in nats."""
    lp, lq = _log_softmax(ref), _log_softmax(out)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


def agreement(ref: NDArray, out: NDArray) -> float:
    """Percent of rows whose top-1 class equals the float model's."""
    return float(100.0 * np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1)))


def agreement_difference(ref: NDArray, a: NDArray, b: NDArray) -> tuple[int, int, float]:
    """Two models' top-1 agreement with float on the same images, paired: (images only ``a``
    agrees on, images only ``b`` agrees on, the exact two-sided McNemar p-value).  Images both
    get right or both get wrong say nothing about which is better; under "equally good" each
    discordant image is a fair coin, so a split of 0 against 2 (p = 0.5) is no evidence."""
    truth = np.argmax(ref, axis=1)
    ra = np.argmax(a, axis=1) == truth
    rb = np.argmax(b, axis=1) == truth
    only_a, only_b = int(np.sum(ra & ~rb)), int(np.sum(rb & ~ra))
    n, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return only_a, only_b, min(1.0, 2.0 * tail)


def layer_outputs(proto: Any) -> list[str]:
    """Output tensor of every Conv/Gemm/MatMul with an initializer weight, in graph order."""
    inits = {t.name for t in proto.graph.initializer}
    return [n.output[0] for n in proto.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
            and n.input[1] in inits]


def exposing(proto: Any, names: list[str]) -> Any:
    """A copy of ``proto`` with ``names`` added as graph outputs (after the existing ones)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    have = {o.name for o in out.graph.output}
    for n in names:
        if n not in have:
            out.graph.output.append(onnx.ValueInfoProto(name=n))
    return out


class LayerSqnr:
    """Accumulates signal and noise energy per layer output over batches."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.signal = dict.fromkeys(names, 0.0)
        self.noise = dict.fromkeys(names, 0.0)

    def add(self, ref: dict[str, NDArray], out: dict[str, NDArray]) -> None:
        for n in self.names:
            r = ref[n].astype(np.float64)
            d = out[n].astype(np.float64) - r
            self.signal[n] += float(np.sum(r * r))
            self.noise[n] += float(np.sum(d * d))

    def result(self) -> dict[str, float | None]:
        return {n: (None if self.noise[n] == 0 else
                    10.0 * math.log10(max(self.signal[n], 1e-300) / self.noise[n]))
                for n in self.names}

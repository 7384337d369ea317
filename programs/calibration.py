"""Activation ranges from calibration images: per tensor ``max |x|`` (or a percentile), the
signed ``[min, max]`` where a zero point needs it, and the LeakyReLU/PReLU pre-activation
range with the least output error (:func:`slope_range`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from . import reference
from .graph import Graph

F64 = NDArray[np.float64]


def calibrate(graph: Graph, calib: NDArray, percentile: float | None = None,
              keep: dict[str, F64] | None = None, qmax: int = 127, slope_mse: bool = True,
              signed: dict[str, tuple[float, float]] | None = None
              ) -> tuple[dict[str, float], dict[str, float]]:
    """Per tensor the range ``max |x|`` (or the given percentile of |x|) over the calibration
    inputs, and per layer the range of its pre-activation (LeakyReLU/PReLU, ``slope_mse``:
    the one :func:`slope_range` picks); ``keep`` receives the float tensors (NHWC),
    ``signed`` for each tensor it names ``(min, max)`` (the percentiles 100 - P and P)."""
    pre: dict[str, F64] = {}
    vals = reference.float_forward(graph, calib, pre)
    if keep is not None:
        keep.update(vals)
    for t, v in vals.items():
        if signed is None or t not in signed:
            continue
        signed[t] = ((float(v.min()), float(v.max())) if percentile is None else
                     (float(np.percentile(v, 100 - percentile)),
                      float(np.percentile(v, percentile))))

    def rng(v: F64) -> float:
        a = np.abs(v)
        r = float(np.percentile(a, percentile)) if percentile is not None else float(a.max())
        return r if r > 0 else 1.0

    ranges = {k: rng(v) for k, v in vals.items()}
    pre_ranges = {k: rng(v) for k, v in pre.items()}
    for lay in graph.layers:
        if slope_mse and lay.act in ("leaky", "prelu") and lay.slope is not None:
            lo = ranges[lay.output]
            pre_ranges[lay.name] = slope_range(pre[lay.name], lay.slope, lo,
                                               max(lo, pre_ranges[lay.name]), qmax)
    return ranges, pre_ranges


def slope_range(pre: F64, slope: F64, lo: float, hi: float, qmax: int,
                samples: int = 1 << 20) -> float:
    """The range ``R`` in ``[lo, hi]`` of a LeakyReLU/PReLU layer's int8 scale ``R / qmax``
    with the least squared output error on the calibration pre-activations ``pre`` (NHWC).

    REQ saturates the pre-activation at the output's scale before ACT multiplies negatives by
    the slope, so covering the whole negative pre-activation range (``hi``) can make the step
    much coarser (MTCNN R-Net: 6.55 against an output range of 3.95) to keep values the slope
    then shrinks.  Per ``R``: saturation error of both sides plus rounding noise ``s^2/12``
    per element (REQ, and ACT again on the negatives, through the slope)."""
    p = np.asarray(pre, np.float64)
    sl = np.broadcast_to(np.asarray(slope, np.float64), p.shape).reshape(-1)
    p = p.reshape(-1)
    step = max(1, p.size // samples)
    p, sl = p[::step], sl[::step]
    neg = p < 0
    y = np.where(neg, p * sl, p)
    noise_count = p.size + float(np.sum(sl[neg] ** 2))
    best, best_err = hi, np.inf
    for r in np.linspace(lo, hi, 41):
        s = r / qmax
        c = np.clip(p, -r - s, r)
        out = np.where(neg, np.clip(c * sl, -r - s, r), c)
        err = float(np.sum((out - y) ** 2)) + s * s / 12 * noise_count
        if err < best_err:
            best, best_err = float(r), err
    return best

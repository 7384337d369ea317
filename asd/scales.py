"""Scale choice: per tensor or per output channel; max-abs, power-of-two, MSE-optimal search.

A weight ``w`` is stored as ``scale * v`` with ``v`` in a codebook whose largest magnitude is
``vmax``.  Scales are returned as float32 (what is stored) and every quantizer uses the stored
float32 value, so decoding the stored codes reproduces the stored floats exactly.

* ``max``:  ``scale = max|w| / vmax``: no weight clips.
* ``pow2``: the smallest power of two ``>= max|w| / vmax``: rescaling is a shift in hardware.
* ``mse``:  ``scale = alpha * max|w| / vmax`` for the candidate ``alpha`` (32 by default, on a
  geometric grid from ``2**0.25`` down to ``2**-1.6875``; ``alpha = 1`` is one of them, so the
  result is never worse than ``max``) with the least squared error under nearest rounding.

The MSE search costs about one pass of binning over the weights, not one per candidate: each
candidate's decision thresholds, relative to ``max|w|``, are the same for every channel, so all
thresholds of all candidates are merged into one sorted edge list; every ``|w|/max|w|`` is
binned once (a uniform-grid lookup plus a few compares), per-(channel, bin) counts and sums are
accumulated, and the squared error of every candidate follows from a matrix product.  The error
is exact except that a weight within one float32 rounding of a threshold may be counted on the
other side of it.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import ArrayLike, NDArray

from asd.asdq import CHUNK

METHODS = ("max", "pow2", "mse")
GRANULARITIES = ("tensor", "channel")
# Scales below this are raised to it: their channels' weights are all but zero, and a smaller
# scale would overflow the float32 reciprocal the quantizers multiply by.
MIN_SCALE = 2.0**-24  # the smallest float16 subnormal
MAX_SCALE = 65504.0  # the largest finite float16
SCALE_BITS = 16  # scales are stored as float16


def rows(w: ArrayLike, granularity: str, axis: int = 0) -> NDArray:
    """2-D view ``(channels, n)`` (one row for per-tensor); the channel axis moves first."""
    a = np.asarray(w)
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; use one of {GRANULARITIES}")
    if a.size == 0:
        raise ValueError("empty tensor")
    if granularity == "tensor" or a.ndim == 0:
        return a.reshape(1, -1)
    return np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)


def max_abs(w2: NDArray) -> NDArray[np.float64]:
    """Largest magnitude per row; NaN/Inf raise ``ValueError``."""
    # max and min need no temporary (unlike abs) and propagate NaN, so they are also the check.
    m = np.maximum(w2.max(axis=1).astype(np.float64), -w2.min(axis=1).astype(np.float64))
    if not np.all(np.isfinite(m)):
        raise ValueError("NaN or Inf in weights")
    return m


def _finish(s: NDArray[np.float64], m: NDArray[np.float64]) -> NDArray[np.float32]:
    """Scales as they are stored: float16 values (held in float32 arrays).  16 bits are plenty
    (a relative step of 2^-11 against the codebook's gaps) and halve the per-channel overhead
    that small layers pay; all-zero rows get scale 1."""
    s16 = np.clip(np.where(m > 0, s, 1.0), MIN_SCALE, MAX_SCALE).astype(np.float16)
    return s16.astype(np.float32)


def scale_max(w2: NDArray, vmax: float) -> NDArray[np.float32]:
    m = max_abs(w2)
    return _finish(m / vmax, m)


def scale_pow2(w2: NDArray, vmax: float) -> NDArray[np.float32]:
    m = max_abs(w2)
    with np.errstate(divide="ignore"):
        e = np.ceil(np.log2(np.where(m > 0, m / vmax, 1.0)))
    return _finish(np.ldexp(1.0, e.astype(np.int64)), m)


def mse_ratios(count: int = 32) -> NDArray[np.float64]:
    """Candidate ``alpha`` values: ``2**(0.25 - k/16)``, k = 0..count-1 (k=4 is alpha=1)."""
    if count < 1:
        raise ValueError("need at least one candidate")
    return np.exp2(0.25 - np.arange(count) / 16.0)


class _EdgeBinner:
    """Maps ``u in [0, 1]`` to the number of edges ``<= u`` with a table and a few compares."""

    def __init__(self, edges: NDArray[np.float32]) -> None:
        self.edges = edges
        self.grid = 0
        # Fewest compares first, then the smallest table (it must stay in cache).
        for allowed in (1, 2, 3):
            for bits in range(12, 19):
                g = 1 << bits
                cell = np.floor(edges.astype(np.float64) * g)
                inner = cell[cell != edges.astype(np.float64) * g]
                most = int(np.bincount(inner.astype(np.int64)).max()) if inner.size else 0
                if most <= allowed:
                    self.grid, self.extra = g, most
                    break
            if self.grid:
                break
        if self.grid:
            cuts = np.arange(self.grid + 1, dtype=np.float64) / self.grid
            self.base = np.searchsorted(edges.astype(np.float64), cuts, side="right")
            self.ext = np.concatenate([edges, np.full(self.extra + 1, np.inf, np.float32)])

    def __call__(self, u: NDArray[np.float32]) -> NDArray[np.intp]:
        if not self.grid:
            return np.searchsorted(self.edges, u, side="right")
        g = np.empty(u.shape, dtype=np.intp)
        np.clip(u * np.float32(self.grid), 0, self.grid, out=g, casting="unsafe")
        b0 = self.base.take(g)
        if not self.extra:
            return b0
        beta = b0 + (u >= self.ext.take(b0))
        for _ in range(1, self.extra):
            b0 += 1
            beta += u >= self.ext.take(b0)
        return beta


@functools.lru_cache(maxsize=16)
def _search_plan(
    levels: tuple[float, ...], alpha: tuple[float, ...]
) -> tuple[_EdgeBinner, NDArray[np.intp], int]:
    # Depends only on the codebook and the candidates: shared by every layer and channel.
    lv = np.asarray(levels)
    al = np.asarray(alpha)
    mids = (lv[:-1] + lv[1:]) / 2
    thr = (al[:, None] * mids[None, :] / lv[-1]).astype(np.float32)  # (K, M), u units
    edges = np.unique(thr[thr <= 1])
    lower = np.concatenate([[-np.inf], edges]).astype(np.float32)
    lev = np.stack([np.searchsorted(np.sort(t), lower, side="right") for t in thr])
    # Bins are in level order for every candidate, so level j of candidate k owns a run of
    # bins; cut[k, j] is the first bin above level j (the cumulative-sum index it ends at).
    j = np.arange(lv.size - 1)
    cut = np.stack([np.searchsorted(row, j, side="right") for row in lev])
    return _EdgeBinner(edges), cut, edges.size + 1


def scale_mse(
    w2: NDArray, levels: ArrayLike, ratios: ArrayLike | None = None
) -> NDArray[np.float32]:
    """Per-row scale minimizing the squared error of nearest rounding to ``+-levels``.

    ``levels``: the non-negative codebook values, sorted, starting at 0.
    """
    lv = np.asarray(levels, dtype=np.float64)
    alpha = mse_ratios() if ratios is None else np.asarray(ratios, dtype=np.float64)
    vmax = float(lv[-1])
    m = max_abs(w2)
    binner, cut, nb = _search_plan(tuple(lv.tolist()), tuple(alpha.tolist()))
    rows_n, n = w2.shape
    cnt = np.zeros((rows_n, nb))
    s1 = np.zeros((rows_n, nb))
    inv = np.where(m > 0, 1.0 / np.where(m > 0, m, 1.0), 0.0).astype(np.float32)
    ct = np.float32 if w2.dtype == np.float32 else np.float64
    step = max(1, min(CHUNK // n, CHUNK // nb)) if n < CHUNK else 1
    for r0 in range(0, rows_n, step):
        r1 = min(r0 + step, rows_n)
        for c0 in range(0, n, CHUNK):
            c1 = min(c0 + CHUNK, n)
            u = np.abs(w2[r0:r1, c0:c1]).astype(ct, copy=False)
            u *= inv[r0:r1, None].astype(ct)
            u = u.astype(np.float32, copy=False)
            beta = binner(u)
            beta += (np.arange(r1 - r0) * nb)[:, None]
            size = (r1 - r0) * nb
            cnt[r0:r1] += np.bincount(beta.reshape(-1), minlength=size).reshape(r1 - r0, nb)
            s1[r0:r1] += np.bincount(
                beta.reshape(-1), weights=u.reshape(-1), minlength=size
            ).reshape(r1 - r0, nb)
    sk = alpha / vmax  # candidate scales in units of max|w|
    # sum over bins of level(bin) * stat(bin), as a telescoping sum over cumulative stats:
    # far cheaper than a (rows x bins) @ (bins x candidates) product.
    def level_weighted(stat: NDArray, lev: NDArray) -> NDArray:
        cs = np.cumsum(stat, axis=1)  # cs[:, b] = stats of bins 0..b
        below = np.concatenate([np.zeros((stat.shape[0], 1)), cs], axis=1)[:, cut]
        return lev[-1] * cs[:, -1:] - below @ np.diff(lev)

    a1 = level_weighted(s1, lv)
    a2 = level_weighted(cnt, lv**2)
    # Squared error minus the candidate-independent sum of w**2, in units of max|w|**2.
    err = -2.0 * sk[None, :] * a1 + (sk**2)[None, :] * a2
    best = np.argmin(err, axis=1)
    return _finish(m * alpha[best] / vmax, m)


def choose_scale(
    w2: NDArray, method: str, vmax: float, levels: ArrayLike | None = None
) -> NDArray[np.float32]:
    """Scale per row of ``w2`` by ``method`` (``levels`` needed for ``mse``)."""
    if method == "max":
        return scale_max(w2, vmax)
    if method == "pow2":
        return scale_pow2(w2, vmax)
    if method == "mse":
        if levels is None:
            raise ValueError("the mse scale needs the codebook levels")
        return scale_mse(w2, levels)
    raise ValueError(f"unknown scale method {method!r}; use one of {METHODS}")

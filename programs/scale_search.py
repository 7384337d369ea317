"""The requant-aware weight-scale search of :mod:`programs.quantize`, done in bounded memory.

For every output channel the search tries each exact two-digit requantization factor of a
band (:func:`programs.quantize.mult_candidates`) and keeps the one whose weight scale gives
the least squared weight error.  Done on the whole weight tensor at once, each candidate
costs several float64 copies of it (VGG-16's first fully connected layer: 0.8 GB each); here
the rows (channels) go through in chunks of about :data:`CHUNK_ELEMENTS` weights, every
candidate on one chunk before the next, so the work stays in the cache and the memory is a
few chunk-sized buffers.  Every channel's decision depends on its own row only, and every
element's arithmetic is the whole-tensor formula's (below), so the result is the same bit
for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# Weights per chunk: a few float64 buffers of this size stay in a core's L2 cache.
CHUNK_ELEMENTS = 1 << 15


class NearestTable:
    """Nearest value of a sign-symmetric codebook, ties away from zero (the rounding
    ``Scheme.levels()`` promises): a fast stand-in for the scheme inside the scale search.

    The midpoints of two-digit codebooks lie on a power-of-two grid, so one table lookup per
    element is exact: every ``|v|`` in ``[k*r, (k+1)*r)`` has the same nearest value."""

    def __init__(self, levels: F64) -> None:
        lv = np.unique(np.abs(np.asarray(levels, np.float64)))
        mid = (lv[:-1] + lv[1:]) / 2
        self.levels, self.mid = lv, mid
        r = 2.0 ** -40
        while r < 1 and np.all(np.mod(mid, 2 * r) == 0):
            r *= 2
        self.table: F64 | None = None
        if np.all(np.mod(mid, r) == 0) and mid[-1] / r < (1 << 20):
            grid = np.arange(int(mid[-1] / r) + 2) * r
            self.table = lv[np.searchsorted(mid, grid, side="right")]
            self.r, self.inv_r = r, 1.0 / r
            self.last = len(self.table) - 1

    def magnitude(self, a: F64) -> F64:
        """The nearest level of every ``a >= 0`` (``a`` may be overwritten)."""
        if self.table is None:
            return self.levels[np.searchsorted(self.mid, a, side="right")]
        a *= self.inv_r
        np.minimum(a, self.last, out=a)
        return self.table[a.astype(np.intp)]

    def __call__(self, v: F64) -> F64:
        return np.copysign(self.magnitude(np.abs(v)), v)


def search_multipliers(w: NDArray, m0: F64, candidates: list[F64],
                       scale_of: Callable[[F64], F64], approx: Callable[[F64], F64],
                       nearest: NearestTable | None) -> F64:
    """Per row of ``w`` (channels x weights) the candidate multiplier with the least
    ``sum((approx(w / s) * s - w)^2)``, ``s = scale_of(m)``; ``m0`` where no candidate is
    valid (``candidates[k]`` holds NaN in a row without a k-th candidate); the first of
    equal errors.

    With ``nearest`` (the quantizer is a sign-symmetric table), ``|w|`` stands for ``w``:
    ``|w / s| = |w| / s`` and ``copysign(q, w) * s - w = sign(w) * (q * s - |w|)`` exactly in
    IEEE arithmetic, so the squares and their sums are the same numbers; and the table's
    bucket ``(|w| / s) / r`` (``r`` a power of two) is computed as ``|w| / (s * r)``, the same
    number when nothing is subnormal."""
    co = w.shape[0]
    w = w.reshape(co, -1)
    k = max(1, w.shape[1])
    valid = [~np.isnan(c) for c in candidates]
    mults = [np.where(ok, c, m0) for ok, c in zip(valid, candidates)]
    scales = [scale_of(m) for m in mults]
    best_err = np.full(co, np.inf)
    best_m = np.array(m0, np.float64, copy=True)
    step = max(1, CHUNK_ELEMENTS // k)
    size = min(co, step) * k
    buf, ibuf, dbuf = np.empty(size), np.empty(size, np.intp), np.empty(size)
    table = nearest.table if nearest is not None else None
    for r0 in range(0, co, step):
        rows = slice(r0, min(co, r0 + step))
        part = w[rows]
        n = part.size
        mag = np.abs(part).astype(np.float64) if nearest is not None else None
        # Bucket by one division only where |w| / s cannot be subnormal.
        fold = (table is not None and mag is not None
                and not np.any((mag > 0) & (mag < 2.0 ** -900)))
        err_best, m_best = best_err[rows], best_m[rows]
        for ok, m, s in zip(valid, mults, scales):
            if not ok[rows].any():  # no row of this chunk has this candidate
                continue
            sr = s[rows, None]
            if fold and mag is not None and nearest is not None and table is not None:
                b = buf[:n].reshape(part.shape)
                np.divide(mag, sr * nearest.r, out=b)
                ii = ibuf[:n].reshape(part.shape)
                np.clip(b, 0, nearest.last, out=ii, casting="unsafe")
                d = dbuf[:n].reshape(part.shape)
                table.take(ii, out=d, mode="clip")
                d *= sr
                d -= mag
            elif mag is not None and nearest is not None:
                d = nearest.magnitude(mag / sr)
                d *= sr
                d -= mag
            else:
                d = approx(part / sr) * sr - part
            d *= d
            err = np.where(ok[rows], d.sum(axis=1), np.inf)
            better = err < err_best
            err_best = np.where(better, err, err_best)
            m_best = np.where(better, m[rows], m_best)
        best_err[rows], best_m[rows] = err_best, m_best
    return best_m


def quantize_rows(quant: Callable[[F64], I64], w: NDArray, s_w: F64,
                  nearest: NearestTable | None = None, unit: float = 1.0) -> I64:
    """``quant(w / s_w[:, None])`` as int64, a chunk of rows at a time (the quantizer works
    element by element, so this is the same array without whole-tensor temporaries).

    ``nearest``: the quantizer rounds to the nearest of these levels, ties away from zero, and
    returns ``level * unit``: then the table gives the same integers, once ``quant`` has
    agreed on every level (it also checks that the accelerator's code holds them)."""
    co = w.shape[0]
    w2 = w.reshape(co, -1)
    out = np.empty(w2.shape, np.int64)
    step = max(1, (CHUNK_ELEMENTS * 8) // max(1, w2.shape[1]))
    ints = None
    if nearest is not None and nearest.table is not None:
        lv = nearest.levels
        every = np.concatenate([-lv[::-1], lv]).reshape(-1, 1)
        want = np.rint(every * unit)
        try:
            agree = np.array_equal(quant(every).reshape(-1), want.reshape(-1))
        except ValueError:  # a level the code cannot hold: the general path names it
            agree = False
        if agree:
            ints = np.rint(nearest.table * unit).astype(np.int64)
    for r0 in range(0, co, step):
        rows = slice(r0, min(co, r0 + step))
        v = w2[rows] / s_w[rows, None]
        if ints is None or nearest is None:
            out[rows] = quant(v)
            continue
        a = np.abs(v)
        a *= nearest.inv_r
        np.minimum(a, nearest.last, out=a)
        got = ints.take(a.astype(np.intp))
        np.negative(got, out=got, where=np.signbit(v))
        out[rows] = got
    return out.reshape(w.shape)

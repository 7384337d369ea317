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
binned once (a table lookup on its float32 bit pattern plus one carry test per edge inside the
table's cell, all integer), per-(channel, bin) counts and sums are accumulated with
``np.bincount`` a block of channels at a time, and each block's sums of ``u * level`` and
``level**2`` for every candidate are two matrix products with (bins x candidates) level tables.
The error is exact except that a weight within one float32 rounding of a threshold may be
counted on the other side of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from asd.asdq import CHUNK
from contract.blas import one_blas_thread

METHODS = ("max", "pow2", "mse")
GRANULARITIES = ("tensor", "channel")
# Scales below this are raised to it: their channels' weights are all but zero, and a smaller
# scale would overflow the float32 reciprocal the quantizers multiply by.
MIN_SCALE = 2.0**-24  # the smallest float16 subnormal
MAX_SCALE = 65504.0  # the largest finite float16
SCALE_BITS = 16  # scales are stored as float16
STARTS = 2  # local minima of the coarse grid refined on a finer one
FINE_POINTS = 33  # fine candidates across a coarse neighbour on each side
POLISH_STEPS = 2  # assignment <-> least-squares scale alternations


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


def mse_ratios(count: int = 73) -> NDArray[np.float64]:
    """Candidate ``alpha`` values: ``2**(1.5 - k/8)``, k = 0..count-1 (k=12 is alpha=1):
    from max|w| at a third of ``vmax`` (room for the dense part of a two-digit codebook near
    1.0 when ``vmax`` is 1.5 or more) down to ``vmax`` clipping at an eighth of max|w|."""
    if count < 1:
        raise ValueError("need at least one candidate")
    return np.exp2(1.5 - np.arange(count) / 16.0)


_ONE_BITS = int(np.float32(1.0).view(np.int32))  # u <= 1 (up to a rounding): keys <= this >> shift
_NO_EDGE = 2**31 - 1  # above the bit pattern of every u


class _EdgeBinner:
    """Maps ``u in [0, 1]`` (float32) to the number of edges ``<= u``: table lookups on the bit
    pattern, no multiply, no float compare.

    For non-negative floats the int32 bit pattern orders like the value, so ``key = bits >> k``
    is an exact coarse key (cells of ``2**k`` consecutive floats, about ``2**(k-23)`` relative
    width: log-spaced, like the candidates' thresholds).  ``k`` is the coarsest shift that
    leaves at most ``extra`` edges strictly inside any cell with a table whose used part (u
    above the smallest edge) stays small enough for L2.  Table ``i`` holds, per cell,
    ``(base << 32) + 2**32 - e_i`` (``base`` = edges at or below the cell's start, only in table
    0; ``e_i`` = the bit pattern of the cell's i-th inner edge, or one no ``u`` reaches), so
    ``(table_i[key] + bits) >> 32`` is ``base`` plus ``bits >= e_i`` (the carry): one gather,
    one add and one shift per inner edge, all in int64.
    """

    TOUCHED = 1 << 15  # most table cells between the smallest edge and 1.0
    MAX_EXTRA = 8

    def __init__(self, edges: NDArray[np.float32]) -> None:
        self.edges = edges
        eb = edges.view(np.int32).astype(np.int64)
        self.shift, self.extra = -1, 0
        for allowed in range(1, self.MAX_EXTRA + 1):
            for k in range(23, 0, -1):
                if (_ONE_BITS >> k) - (int(eb[0]) >> k) > self.TOUCHED:
                    break
                cell = eb >> k
                inner = cell[(eb & ((1 << k) - 1)) != 0]
                most = int(np.bincount(inner).max()) if inner.size else 0
                if most <= allowed:
                    self.shift, self.extra = k, max(most, 1)
                    break
            if self.shift >= 0:
                break
        if self.shift < 0:
            return
        k = self.shift
        starts = np.arange((_ONE_BITS >> k) + 2, dtype=np.int64) << k
        base = np.searchsorted(eb, starts, side="right")
        self.tables = []
        for i in range(self.extra):
            # the i-th edge above the cell start, if it is inside the cell
            j = base + i
            e = np.concatenate([eb, [_NO_EDGE]])[np.minimum(j, eb.size)]
            e = np.where(e < starts + (1 << k), e, _NO_EDGE)
            self.tables.append((base << 32 if i == 0 else 0) + (1 << 32) - e)

    @property
    def buffers(self) -> int:
        """How many int64 work buffers :meth:`__call__` needs."""
        return 2 if self.shift < 0 or self.extra <= 2 else 3

    def __call__(self, u: NDArray[np.float32], out: NDArray[np.intp], tmp: list[NDArray]) -> None:
        """``out[:] = number of edges <= u``; ``tmp``: :attr:`buffers` int64 arrays like ``u``."""
        if self.shift < 0:
            out[...] = np.searchsorted(self.edges, u, side="right")
            return
        b64, key = tmp[:2]
        np.copyto(b64, u.view(np.int32))
        np.right_shift(b64, self.shift, out=key)
        last = len(self.tables) - 1
        for i, table in enumerate(self.tables):
            # The last table read of key may overwrite it.
            t = out if i == 0 else key if i == last else tmp[2]
            np.take(table, key, out=t, mode="clip")
            t += b64
            t >>= 32
            if i:
                out += t


@functools.lru_cache(maxsize=512)
def _search_plan(
    levels: tuple[float, ...], alpha: tuple[float, ...]
) -> tuple[_EdgeBinner, NDArray[np.float64], NDArray[np.float64]]:
    # Depends only on the codebook and the candidates: shared by every layer and channel.
    lv = np.asarray(levels)
    al = np.asarray(alpha)
    mids = (lv[:-1] + lv[1:]) / 2
    thr = (al[:, None] * mids[None, :] / lv[-1]).astype(np.float32)  # (K, M), u units
    edges = np.unique(thr[thr <= 1])
    # Bin b holds u from edge b-1 (bin 0: from 0) up to edge b.  Candidate k rounds u to level
    # j+1 or above from its threshold j on, i.e. from bin pos[k, j] (the bin above that edge;
    # nb, past every bin, for a threshold above 1).  With C the running sum of a per-bin
    # statistic (C[0] = 0, C[nb] = total), sum_b stat(b) * level(b)**p
    # = sum_j (lv[j+1]**p - lv[j]**p) * (C[nb] - C[pos[k, j]]): a gather, not a product.
    pos = np.where(thr <= 1, 1 + np.searchsorted(edges, thr, side="left"), edges.size + 1)
    return _EdgeBinner(edges), pos.astype(np.intp), np.stack([np.diff(lv), np.diff(lv**2)])


def grid_errors(
    w2: NDArray, levels: ArrayLike, ratios: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Squared error of nearest rounding to ``+-levels`` at every candidate scale
    ``ratio * max|w| / vmax`` of every row, minus the row's sum of ``w**2``, in units of the
    row's ``max|w|**2`` (so comparable across candidate sets); also ``max|w|`` per row.

    ``levels``: the non-negative codebook values, sorted, starting at 0.
    """
    lv = np.asarray(levels, dtype=np.float64)
    alpha = np.asarray(ratios, dtype=np.float64)
    vmax = float(lv[-1])
    m = max_abs(w2)
    binner, pos, dl = _search_plan(tuple(lv.tolist()), tuple(alpha.tolist()))
    nb = binner.edges.size + 1
    flat = pos.reshape(-1)
    run = np.empty((2, 0, nb + 1))
    rows_n, n = w2.shape
    # a1[r, k] = sum of u * level, a2[r, k] = sum of level**2 over row r for candidate k.
    a1 = np.zeros((rows_n, alpha.size))
    a2 = np.zeros((rows_n, alpha.size))
    inv = np.where(m > 0, 1.0 / np.where(m > 0, m, 1.0), 0.0).astype(np.float32)
    f32 = w2.dtype == np.float32
    # Blocks of whole rows (or of one row's columns) of about CHUNK weights, at most CHUNK
    # histogram cells: every temporary stays in L2, and the buffers are reused.
    cols = min(n, CHUNK)
    step = max(1, min(CHUNK // cols, CHUNK // nb))
    size = step * cols
    ub = np.empty(size, np.float32)
    beta = np.empty(size, np.intp)
    tmp = [np.empty(size, np.int64) for _ in range(binner.buffers)]
    wide = None if f32 else np.empty(size, np.float64)
    offs = (np.arange(step) * nb)[:, None]
    with one_blas_thread():
        for r0 in range(0, rows_n, step):
            r1 = min(r0 + step, rows_n)
            r = r1 - r0
            for c0 in range(0, n, CHUNK):
                c1 = min(c0 + CHUNK, n)
                e = r * (c1 - c0)
                x = w2[r0:r1, c0:c1]
                u = ub[:e].reshape(x.shape)
                if wide is None:
                    np.abs(x, out=u)
                    u *= inv[r0:r1, None]
                else:
                    t = wide[:e].reshape(x.shape)
                    np.abs(x, out=t)
                    t *= inv[r0:r1, None].astype(np.float64)
                    u[...] = t
                bt = beta[:e]
                binner(ub[:e], bt, [b[:e] for b in tmp])
                bt.reshape(x.shape)[...] += offs[:r]
                if run.shape[1] != r:
                    run = np.zeros((2, r, nb + 1))
                np.cumsum(np.bincount(bt, weights=ub[:e], minlength=r * nb).reshape(r, nb),
                          axis=1, out=run[0, :, 1:])
                np.cumsum(np.bincount(bt, minlength=r * nb).reshape(r, nb), axis=1,
                          out=run[1, :, 1:])
                got = run[:, :, flat].reshape(2, r, -1, dl.shape[1])
                a1[r0:r1] += run[0, :, -1:] * dl[0].sum() - got[0] @ dl[0]
                a2[r0:r1] += run[1, :, -1:] * dl[1].sum() - got[1] @ dl[1]
    sk = alpha / vmax  # candidate scales in units of max|w|
    # Squared error minus the candidate-independent sum of w**2, in units of max|w|**2.
    return -2.0 * sk[None, :] * a1 + (sk**2)[None, :] * a2, m


Quantizer = Callable[[NDArray, NDArray[np.float32]], NDArray]


def local_minima(err: NDArray[np.float64], count: int) -> NDArray[np.intp]:
    """``(rows, count)`` candidate indices: each row's ``count`` lowest local minima of ``err``
    along the candidates (a plateau counts once per point), padded with the global best."""
    e = np.pad(err, ((0, 0), (1, 1)), constant_values=np.inf)
    loc = (e[:, 1:-1] <= e[:, :-2]) & (e[:, 1:-1] <= e[:, 2:])
    ranked = np.argsort(np.where(loc, err, np.inf), axis=1, kind="stable")[:, :count]
    worst = np.take_along_axis(loc, ranked, axis=1)
    return np.where(worst, ranked, ranked[:, :1])


def refine_windows(
    w2: NDArray, starts: NDArray[np.intp], alpha: NDArray[np.float64], fine: NDArray[np.float64],
    errors: Callable[[NDArray, NDArray[np.float64]], NDArray[np.float64]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Best ratio and its error per row over the windows ``alpha[k] * fine`` for every start
    ``k`` in ``starts[row]``; ``errors(rows_of_w2, ratios)`` gives ``(rows, ratios)`` errors.
    Rows with the same start share one call (its candidate set is theirs alone)."""
    n = w2.shape[0]
    best_e = np.full(n, np.inf)
    best_a = np.ones(n)
    for j in range(starts.shape[1]):
        for k in np.unique(starts[:, j]):
            r = np.flatnonzero(starts[:, j] == k)
            sub = w2 if r.size == n else w2[r]
            cand = alpha[k] * fine
            e = errors(sub, cand)
            i = np.argmin(e, axis=1)
            e_min = e[np.arange(r.size), i]
            better = e_min < best_e[r]
            best_e[r[better]] = e_min[better]
            best_a[r[better]] = cand[i[better]]
    return best_a, best_e


def polish(
    w2: NDArray, s: NDArray[np.float32], values: Quantizer, steps: int = POLISH_STEPS,
    nearest: bool = True,
) -> NDArray[np.float32]:
    """Alternate assignment and scale: with the codes ``q`` of the current scale fixed, the
    least-squares scale is ``<w,q>/<q,q>``; keep the best scale seen per row.

    ``values(w2, s)``: the unscaled quantized values.  For a nearest-rounding codebook
    (``nearest``) re-rounding at the new scale can only lower the error, so the last step's
    scale is taken on its fixed-assignment error (an upper bound) without another pass.
    """
    m = max_abs(w2)
    cur = s
    best_s = s.copy()
    best_e = np.full(s.shape, np.inf)
    for _ in range(steps):
        v = values(w2, cur).astype(w2.dtype, copy=False)
        c = cur.astype(w2.dtype)[:, None]
        d = w2 - c * v
        e = np.einsum("ij,ij->i", d, d).astype(np.float64)
        num = np.einsum("ij,ij->i", w2, v).astype(np.float64)
        den = np.einsum("ij,ij->i", v, v).astype(np.float64)
        better = e < best_e
        best_e[better], best_s[better] = e[better], cur[better]
        ok = den > 0
        nxt = _finish(np.where(ok, num / np.where(ok, den, 1.0), cur), m)
        if nearest:
            c64, n64 = cur.astype(np.float64), nxt.astype(np.float64)
            bound = e - 2.0 * (n64 - c64) * (num - c64 * den) + (n64 - c64) ** 2 * den
            better = bound < best_e
            best_e[better], best_s[better] = bound[better], nxt[better]
        cur = nxt
    return best_s


def scale_mse(
    w2: NDArray, levels: ArrayLike, ratios: ArrayLike | None = None, *,
    starts: int | None = None, values: Quantizer | None = None,
) -> NDArray[np.float32]:
    """Per-row scale minimizing the squared error of nearest rounding to ``+-levels``.

    Three stages: every candidate of ``ratios`` (default :func:`mse_ratios`, a 2**(1/16)
    grid); a grid 16 times finer across the neighbours of each row's ``starts`` best local
    minima; then, given ``values`` (the codebook's nearest quantizer), :func:`polish`.
    ``starts=0`` stops after the first stage (the best candidate of ``ratios``).
    """
    lv = np.asarray(levels, dtype=np.float64)
    alpha = mse_ratios() if ratios is None else np.asarray(ratios, dtype=np.float64)
    vmax = float(lv[-1])
    starts = STARTS if starts is None else starts
    err, m = grid_errors(w2, lv, alpha)
    best_a = alpha[np.argmin(err, axis=1)]
    if starts and alpha.size > 1:
        step = float(np.log2(alpha[0] / alpha[1]))
        fine = np.exp2(np.linspace(-step, step, FINE_POINTS))
        best_a, _ = refine_windows(w2, local_minima(err, starts), alpha, fine,
                                   lambda x, a: grid_errors(x, lv, a)[0])
    s = _finish(m * best_a / vmax, m)
    if values is not None and starts:
        s = polish(w2, s, values)
    return s

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


# Exact search: the error of a row as a function of its scale is piecewise quadratic ----------
EXACT_EVENTS = 1 << 12  # rows with at most this many (weight, threshold) events: exact sweep
EXACT_ROW_EVENTS = 1 << 21  # quantizers without a nearest codebook: a row's budget
EXACT_TENSOR_EVENTS = 1 << 22  # dense nearest codebooks: a whole tensor's budget (~2 s)
SWEEP_BLOCK = 1 << 17  # events per block of rows: the sweep's arrays (~100 bytes an event)
SWEEP_RANGE = (2.0**-4, 2.0**2)  # scales swept, in units of max|w| / vmax


def exact_rows(rows: int, n: int, thresholds: int, nearest: bool, dense: bool) -> bool:
    """Whether ``rows`` rows of ``n`` weights get the exact sweep for a step function with
    ``thresholds`` steps.  Always for small rows (where a grid of scales misses narrow optima);
    for quantizers without a nearest codebook (csd, ShiftCNN: the grid search quantizes every
    candidate, so the sweep is also faster) up to a budget per row; for ``dense`` nearest
    codebooks (many uneven levels: fp8, asd K=3) up to a budget per tensor, since their grid
    search is fast and the sweep costs about 0.5 us an event."""
    events = n * thresholds
    if events <= EXACT_EVENTS:
        return True
    if not nearest:
        return events <= EXACT_ROW_EVENTS
    return dense and rows * events <= EXACT_TENSOR_EVENTS


class Sweep:
    """Exact squared error of each row of ``w2`` at every scale ``s`` in ``SWEEP_RANGE``, for
    a quantizer that maps ``u = |w|/s`` to ``levels[j]`` with ``j`` the number of
    ``thresholds <= u`` (a tie goes up, as in nearest rounding with ties away from zero).

    As ``s`` grows, weight ``i`` drops from ``levels[j+1]`` to ``levels[j]`` at the event
    ``s = u_i / thresholds[j]``; between events the codes are fixed and the error
    ``sum w**2 - 2 s B + s**2 C`` (``B = sum u q``, ``C = sum q**2``) is a quadratic with its
    least value at ``B / C``.  Sorting the events of a row and summing their changes to ``B``
    and ``C`` gives every piece; the optimum is the best piece's clipped vertex."""

    def __init__(self, w2: NDArray, thresholds: ArrayLike, levels: ArrayLike,
                 vmax: float) -> None:
        thr = np.asarray(thresholds, np.float64)
        lv = np.asarray(levels, np.float64)
        u = np.abs(np.asarray(w2, np.float64))
        r, n = u.shape
        m = u.max(axis=1)
        unit = np.where(m > 0, m / vmax, 1.0)
        self.lo, self.hi = unit * SWEEP_RANGE[0], unit * SWEEP_RANGE[1]
        q0 = lv[np.searchsorted(thr, u / self.lo[:, None], side="right")]
        b0 = np.einsum("ij,ij->i", u, q0)
        c0 = np.einsum("ij,ij->i", q0, q0)
        t = u[:, :, None] / thr[None, None, :]  # (r, n, P)
        inside = (t > self.lo[:, None, None]) & (t < self.hi[:, None, None])
        db = np.where(inside, u[:, :, None] * (lv[:-1] - lv[1:])[None, None, :], 0.0)
        dc = np.where(inside, (lv[:-1] ** 2 - lv[1:] ** 2)[None, None, :], 0.0)
        t = np.where(inside, t, self.hi[:, None, None]).reshape(r, -1)
        order = np.argsort(t, axis=1, kind="stable")
        self.t = np.take_along_axis(t, order, axis=1)
        cb = np.cumsum(np.take_along_axis(db.reshape(r, -1), order, axis=1), axis=1)
        cc = np.cumsum(np.take_along_axis(dc.reshape(r, -1), order, axis=1), axis=1)
        self.b = np.concatenate([b0[:, None], b0[:, None] + cb], axis=1)  # after k events
        self.c = np.concatenate([c0[:, None], c0[:, None] + cc], axis=1)
        self.a = np.einsum("ij,ij->i", u, u)

    def pieces(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Per row and piece: its ``(left, right]`` bounds and its vertex clipped into it."""
        left = np.concatenate([self.lo[:, None], self.t], axis=1)
        right = np.concatenate([self.t, self.hi[:, None]], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(self.c > 0, self.b / self.c, right)
        return left, right, np.clip(v, left, right)

    def piece_errors(self, s: NDArray[np.float64]) -> NDArray[np.float64]:
        """The error of every piece's quadratic at ``s`` (rows, pieces)."""
        return self.a[:, None] - 2 * s * self.b + s * s * self.c

    def optimum(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The least-error scale per row over the swept range, and its squared error."""
        s = self.pieces()[2]
        e = self.piece_errors(s)
        k = np.argmin(e, axis=1)
        i = np.arange(s.shape[0])
        return s[i, k], e[i, k]

    def errors(self, s: NDArray) -> NDArray[np.float64]:
        """Squared error of every row at the scales ``s`` (rows, k)."""
        s = np.asarray(s, np.float64)
        # events strictly below s have happened (at s == t the weight is still on the upper
        # level: the tie goes up); one searchsorted over rows laid end to end
        r, width = self.t.shape
        span = self.hi.max() * 4 + 1.0
        off = np.arange(r)[:, None] * span
        k = np.searchsorted((self.t + off).reshape(-1), (s + off).reshape(-1), side="left")
        k = k.reshape(s.shape) - np.arange(r)[:, None] * width
        b = np.take_along_axis(self.b, k, axis=1)
        c = np.take_along_axis(self.c, k, axis=1)
        return self.a[:, None] - 2 * s * b + s * s * c

"""Integer layers of a batch through float BLAS, bit-exact with their literal definition.

:func:`programs.reference.int_layer` defines a layer as sums of integer products, the
accumulator's wrap and a requantization.  Done literally in int64 that has no BLAS and many
passes over big arrays; this module computes the same integers with float matrix products
wherever a bound proves them exact, and returns None (the caller then runs the literal
definition) wherever one does not:

* A sum of integer products whose absolute values add up to less than 2^24 (float32) or
  2^53 (float64) is exact in that type in any order a BLAS may take: every partial sum is an
  integer under the bound, which the type holds exactly.  The bound is max|x| (this batch's
  data and the border's value) times each output channel's sum of |w|.  A reduction too long
  for float32 is cut into a few chunks that each satisfy its bound (float32 products run about
  twice as fast as float64 here), and the chunk results are added in float64.
* Where |sum| + |bias| stays below 2^(acc_bits-1) the accumulator's wrap changes nothing.
* The requantization's steps in float64 or float32 are exact too (programs.batchrequant).
* im2col runs block by block (rows of one image's output), so the copied windows stay in the
  cache, and each block is requantized right after its product; a 1x1 stride-1 convolution
  needs no copy at all.
* A batch of two images a thread or more takes float32 products from onnxruntime's float
  Conv instead (programs.batchort.FloatConv: the same sums, exact by the same bound, from
  MLAS's kernels), a few images a block, each block requantized as it comes; except a 1x1
  convolution that narrows the channels, whose products here need no copy at all.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import blas, semantics
from contract.config import AccelConfig

from . import batchort
from .batchrequant import EXACT_F32, Requant, linear_requant
from .qnet import QLayer, QNet, narrow

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

EXACT_F64 = 1 << 53
# Past this many float32 chunks one float64 product is cheaper.
MAX_F32_CHUNKS = 3
# Fewer output pixels than this (a fully connected layer on a few images, the last 7x7 of
# one image) run by the literal definition unless onnxruntime's session (its weights prepared
# once) takes them: there the passes over the weights that the float products make
# (transpose, bounds, float copy) cost more than the product; AlexNet's first fully connected
# layer on one image took 2.3 s here against 0.35 s.
MIN_ROWS = 128
# Whether the float products of a batch's convolutions take onnxruntime's float32 Conv
# (programs.batchort.FloatConv) where they can (the tests take both paths).  Its blocks are
# whole images, so a batch of one keeps one thread busy where the own products' rows keep
# two; but `asd run` checks image 0 on the emulator on the other, and the Conv takes about
# half the CPU: ResNet-18's one image (integer semantics and check) 0.288 -> 0.265 s.
FLOAT_CONV = True
# Grouped convolutions with more groups than this run by the literal definition.
MAX_GROUPS = 8
# Bytes of one block's copied windows: well inside the 1-4 MB L2 caches of current cores.
BLOCK_BYTES = 1 << 20
# Which products a layer takes where both are exact: "auto" (onnxruntime's 8-bit ones where
# batchort.rates() says they are faster for the layer's digit planes), "int8" or "float".
PRODUCT_CHOICES = ("auto", "int8", "float")
PRODUCTS_VARIABLE = "ASD_BATCH_PRODUCTS"


def products() -> str:
    """The product choice: ``$ASD_BATCH_PRODUCTS``, "auto" unless set."""
    v = os.environ.get(PRODUCTS_VARIABLE, "auto").strip().lower() or "auto"
    if v not in PRODUCT_CHOICES:
        raise ValueError(f"{PRODUCTS_VARIABLE}={v!r}: expected one of {', '.join(PRODUCT_CHOICES)}")
    return v


def _chunks(absw: I64, xmax: int) -> tuple[list[tuple[int, int]], Any] | None:
    """Column ranges of the reduction (``absw`` is |w| as channels x K) and the float type in
    which each range's products sum exactly; None when not even one term is exact."""
    k = absw.shape[1]
    if xmax == 0 or k == 0:
        return [(0, k)], np.float32
    for limit, dtype, most in ((EXACT_F32, np.float32, MAX_F32_CHUNKS),
                               (EXACT_F64, np.float64, k)):
        for n in range(1, most + 1):
            starts = np.linspace(0, k, n + 1).astype(np.int64)
            if len(np.unique(starts)) != n + 1:
                break
            # Per range the largest channel's sum of |w| (channels in blocks: bounded memory).
            worst = max(int(np.add.reduceat(absw[i: i + 256], starts[:-1], axis=1,
                                            dtype=np.int64).max())
                        for i in range(0, absw.shape[0], 256))
            if worst * xmax < limit:
                return [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])], dtype
            if n == 1 and dtype is np.float64 and int(absw.max()) * xmax >= limit:
                return None
    return None


_POOL: dict[int, ThreadPoolExecutor] = {}  # by thread count, made on first use


def workers() -> int:
    """Threads for a batch: onnxruntime's intra-op setting (contract.blas.ort_threads), so
    the two run side by side with the same threads; its default is one per usable core."""
    return blas.ort_threads() or len(os.sched_getaffinity(0))


def parallel(tasks: list[tuple[int, int]], work: Callable[[int, int], None]) -> None:
    """``work(*task)`` for every task, on :func:`workers` threads each with a one-thread
    BLAS.  numpy drops the GIL in products, copies and ufunc loops, so blocks overlap; pool
    threads wait on a queue, where BLAS's own threads would spin against the rest of a busy
    machine (see contract.blas).

    The calling thread is one of the workers: it takes tasks too, and the pool's threads
    help as they come free.  The runtime queues its emulator checks on the same pool, so a
    layer's blocks queued there behind them waited for the checks of earlier layers
    (SqueezeNet 1.0's one image: its integer semantics took 0.13 s beside the checks where
    they take 0.045 s alone)."""
    n = workers()
    with blas.one_blas_thread():
        if n <= 1 or len(tasks) <= 1:
            for t in tasks:
                work(*t)
            return
        todo = iter(tasks)
        lock = threading.Lock()

        def drain() -> None:
            while True:
                with lock:
                    t = next(todo, None)
                if t is None:
                    return
                work(*t)

        helpers = [pool().submit(drain) for _ in range(min(n, len(tasks)) - 1)]
        try:
            drain()
        finally:
            # A helper still queued behind other work has nothing left to take.
            running = [f for f in helpers if not f.cancel()]
            for f in running:
                f.result()


def pool() -> ThreadPoolExecutor:
    """The batch's threads (:func:`workers` of them), made on first use and kept: the
    runtime queues its emulator checks here too, so the two share the cores without a third
    thread competing (SqueezeNet 1.1, a batch of 32: 0.50..0.55 s against 0.52..0.57 s with
    a thread of their own, alternated runs)."""
    n = workers()
    if n not in _POOL:
        _POOL[n] = ThreadPoolExecutor(n, thread_name_prefix="batchint")
    return _POOL[n]


def _abs_max(x: I64) -> int:
    return max(int(x.max()), -int(x.min())) if x.size else 0


def conv_layer(x: I64, ql: QLayer, c: AccelConfig, pad: int) -> I64 | None:
    """A convolution layer's requantized output (N, OH, OW, Co), or None when a bound fails
    (leaky activations too: the caller applies the literal definition)."""
    lay = ql.layer
    assert ql.w_int is not None and ql.bias_int is not None
    # Many groups (depthwise) would be many tiny products per block: the literal definition's
    # one pass per group over the whole batch is the better loop there.
    if ql.slope_params is not None or lay.groups > MAX_GROUPS:
        return None
    w = np.asarray(ql.w_int, np.int64)
    co, cig, kh, kw = w.shape
    (t, l, b, r), (sh, sw) = lay.pads, lay.stride
    n, h, wd, ci = x.shape
    oh, ow = (h + t + b - kh) // sh + 1, (wd + l + r - kw) // sw + 1
    groups = lay.groups
    cog = co // groups
    xmax = max(_abs_max(x), abs(pad) if any(lay.pads) else 0)
    bias = np.asarray(ql.bias_int, np.int64)
    choice = products()
    # Few rows take the session whichever is faster per product: the float path's passes
    # over the weights would cost more than the products (see MIN_ROWS).  The choice comes
    # first, so a layer whose float products win never builds the session's digit planes.
    int8 = (groups == 1 and choice != "float" and _ort_possible(c)
            and (choice == "int8" or n * oh * ow < MIN_ROWS or _int8_faster(ql, c)))
    prep = _ort_prepared(ql, c) if int8 else None
    if prep is not None and prep.session is not None and Requant.of(
            ql, c, prep.bias_u, xmax * prep.abs_sum + np.abs(bias), prep.terms) is not None:
        sess, req = prep.session, prep.requant
        # uint8 codes u = x - act_min (programs.batchort), the border too.
        dtype: Any = np.uint8
        shape = (n, h + t + b, wd + l + r, ci)
        xp = np.full(shape, pad - c.act_min, dtype) if any(lay.pads) else np.empty(shape, dtype)
        inner = xp[:, t:t + h, l:l + wd]
        if x.dtype == np.int8:
            # x - act_min (in [0, 255]) is x's byte plus -act_min, modulo 256: one byte pass.
            np.add(x.view(np.uint8), np.uint8(-c.act_min & 0xFF), out=inner)
        else:
            np.subtract(x, c.act_min, out=inner, dtype=np.int32, casting="unsafe")
    else:
        if n * oh * ow < MIN_ROWS:
            return None
        sess = None
        wk = w.transpose(0, 2, 3, 1).reshape(co, -1)  # (Co, K), K in window order (kh, kw, ci)
        absw = np.abs(wk)
        abs_sum = absw.sum(axis=1)
        req = Requant.of(ql, c, bias, xmax * abs_sum + np.abs(bias))
        plans = [_chunks(absw[g * cog:(g + 1) * cog], xmax) for g in range(groups)]
        if req is None or any(p is None for p in plans):
            return None
        dtype = np.float64 if any(p[1] is np.float64 for p in plans if p) else np.float32
        # A 1x1 stride-1 convolution of more input than output channels (SqueezeNet's
        # squeezes) stays here: its products read the activations in place, a block at a
        # time in the cache, where onnxruntime's Conv reorders the whole float input first
        # (SqueezeNet 1.1's 128 -> 16 on 32 images: 11.7 against 19.7 ms).
        squeeze = kh == kw == 1 and sh == sw == 1 and ci > co
        if (FLOAT_CONV and dtype == np.float32 and oh * ow > 1 and not squeeze
                and batchort.available()
                and all(p is not None and len(p[0]) == 1 for p in plans)):
            # The bias joins the sums in the Conv where it keeps every partial sum below 2^24
            # at any activations (a data-independent choice: one session per layer).
            top = max(-c.act_min, c.act_max) * abs_sum + np.abs(bias)
            return _float_conv(x, ql, pad, req, (n, oh, ow, co),
                               bias if int(top.max()) < EXACT_F32 else None)
        wmats = [wk[g * cog:(g + 1) * cog].astype(dtype) for g in range(groups)]
        # The border in x's own (narrow) type; each block's windows become floats as they are
        # copied, on the threads.
        if any(lay.pads):
            xp = np.full((n, h + t + b, wd + l + r, ci), pad, x.dtype)
            xp[:, t:t + h, l:l + wd] = x
        else:
            xp = x
    out = np.empty((n, oh, ow, co), x.dtype)
    plain = kh == kw == 1 and sh == sw == 1
    if not plain:
        v = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
        v = v[:, ::sh, ::sw].transpose(0, 1, 2, 4, 5, 3)  # (N, OH, OW, KH, KW, C), a view
    # A block's windows and its float64 outputs both well inside the cache.
    rows = max(1, min(BLOCK_BYTES // max(1, ow * kh * kw * ci * np.dtype(dtype).itemsize),
                      BLOCK_BYTES // max(1, ow * co * 8)))

    # Small maps: several whole images a block, at least as many rows as output channels
    # where it can (each block streams the weights once: a fully connected layer's are far
    # more than its inputs), yet two blocks a thread.
    cap = max(1, -(-n // (2 * workers())))
    per = min(max(rows // oh, -(-co // (oh * ow))), cap) if rows >= oh else 1

    def block(i: int, r0: int) -> None:
        imgs, r1 = (slice(i, i + per), oh) if per > 1 else (slice(i, i + 1), min(oh, r0 + rows))
        # The one copy (im2col), into the product's type.
        cols = (xp[imgs, r0:r1] if plain else v[imgs, r0:r1]).astype(dtype, copy=False)
        cols = cols.reshape(-1, kh * kw * ci)
        dest = out[imgs, r0:r1].reshape(-1, co)
        if sess is not None:
            req.apply(sess.run(cols), dest)
            return
        for g, plan in enumerate(plans):
            assert plan is not None
            gcols = cols if groups == 1 else _group_cols(cols, g, groups, kh * kw, cig)
            acc: NDArray[Any] | None = None
            for k0, k1 in plan[0]:
                part = gcols[:, k0:k1] @ wmats[g][:, k0:k1].T
                acc = part if acc is None else np.add(acc, part, dtype=np.float64)
            assert acc is not None
            gs = slice(g * cog, (g + 1) * cog)
            req.apply(acc, dest[:, gs], gs, scratch=True)

    parallel([(i, r0) for i in range(0, n, per) for r0 in range(0, oh, rows)], block)
    return out


def _float_conv(x: NDArray[Any], ql: QLayer, pad: int, req: Requant,
                shape: tuple[int, int, int, int], bias: I64 | None) -> NDArray[Any]:
    """The float products on onnxruntime's float32 Conv (programs.batchort.FloatConv), NHWC in
    and out, plus ``bias`` unless None, a few images a block on the threads, each block
    requantized as it comes into the output (N, OH, OW, Co) of ``shape``.  Measured against
    :func:`conv_layer`'s own blocks in docs/compiler-log.md."""
    lay = ql.layer
    n, h, wd, ci = x.shape
    _, oh, ow, co = shape
    out = np.empty(shape, x.dtype)
    (t, l, b, r) = lay.pads
    # The border is the session's zeros, or the input's own where it holds another value.
    bordered = pad != 0 and any(lay.pads)

    def make() -> batchort.FloatConv:
        assert ql.w_int is not None
        return batchort.FloatConv(np.asarray(ql.w_int, np.float32), lay.stride,
                                  (0, 0, 0, 0) if bordered else (t, l, b, r), lay.groups,
                                  None if bias is None else bias.astype(np.float32))

    key = (bordered, None if bias is None else bias.tobytes())
    conv = batchort.cached(ql, key, make, "float conv")
    per = max(1, min(-(-n // (2 * workers())), BLOCK_BYTES // max(1, co * oh * ow * 4)))

    def block(i: int, _: int) -> None:
        xs = x[i:i + per]
        if bordered:
            u = np.full((len(xs), h + t + b, wd + l + r, ci), pad, np.float32)
            u[:, t:t + h, l:l + wd] = xs
        else:
            u = xs.astype(np.float32)
        req.apply(conv.run(u).reshape(-1, co), out[i:i + per].reshape(-1, co), scratch=True,
                  biased=bias is not None)

    parallel([(i, 0) for i in range(0, n, per)], block)
    return out


def _ort_prepared(ql: QLayer, c: AccelConfig) -> batchort.Prepared | None:
    """What the onnxruntime path (programs.batchort) needs of a layer, built once per layer
    and configuration: None where it cannot apply (wider activations); its session None where
    the data-independent bounds fail (the float products then)."""
    if not _ort_possible(c):
        return None
    assert ql.w_int is not None and ql.bias_int is not None
    bias = np.asarray(ql.bias_int, np.int64)
    key = (c, ql.relu, bias.tobytes(), np.asarray(ql.req_params).tobytes())
    w_int = ql.w_int

    def make() -> batchort.Prepared:
        wk = _window_weights(w_int)
        digits, sums = batchort.planes(wk)  # K x Co each
        abs_sum = np.abs(wk).sum(axis=1, dtype=np.int64)
        # Sums over u = x - act_min: act_min * sum(w) joins the bias; the float steps see the
        # planes' sums (each at most (2^act_bits - 1) sum |d| 128^p) and that bias.
        bias_u = bias + c.act_min * wk.sum(axis=1, dtype=np.int64)
        terms = ((1 << c.act_bits) - 1) * sum(s * batchort.BASE ** p for p, s in enumerate(sums))
        terms = terms + np.abs(bias_u)
        # The wrap depends on the data (checked per batch); the float steps do not.
        req = Requant.of(ql, c, bias_u, np.zeros(0, np.int64), terms)
        sess = None
        if req is not None and batchort.fits(sums, abs_sum, wk.shape[1], c.act_bits):
            sess = batchort.Session(digits)
        return batchort.Prepared(sess, abs_sum, bias_u, terms, req, len(digits))

    return batchort.cached(ql, key, make)


def _window_weights(w_int: I64) -> NDArray[Any]:
    """The weights as (Co, K), K in window order (kh, kw, ci), in their narrowest type, not
    int64: a quarter of the bytes for the copy and the sums made of it (AlexNet's first dense
    layer, 38 M weights: 1.8 s -> 0.4 s)."""
    w = narrow(w_int, symmetric=True)
    return w.transpose(0, 2, 3, 1).reshape(len(w), -1)


def _ort_possible(c: AccelConfig) -> bool:
    """Whether the onnxruntime path can apply at all: 8-bit activations, onnxruntime there."""
    return c.act_bits <= 8 and batchort.available()


def _int8_faster(ql: QLayer, c: AccelConfig) -> bool:
    """Whether the layer's session would beat its float products on this machine: one
    product per digit plane against one pass of the float plan at the largest |x| the
    activations take (float32 or float64; none at all: the literal definition).  Decided on
    first need (a layer that only ever sees a few rows never pays the pass over its weights),
    kept while the layer lives."""
    assert ql.w_int is not None
    w_int = ql.w_int

    def decide() -> bool:
        wk = _window_weights(w_int)
        plan = _chunks(np.abs(wk), max(-c.act_min, c.act_max))
        r = batchort.rates()
        return plan is None or batchort.plane_count(wk) / r["int8"] < 1 / r[
            np.dtype(plan[1]).name]

    return bool(batchort.cached(ql, c, decide, "int8_faster"))


def _group_cols(block: NDArray[Any], g: int, groups: int, taps: int, cig: int) -> NDArray[Any]:
    """Group g's columns of an im2col block whose K axis is (taps, all input channels)."""
    return block.reshape(len(block), taps, groups * cig)[:, :, g * cig:(g + 1) * cig].reshape(
        len(block), -1)


def maxpool(x: I64, kernel: tuple[int, int], stride: tuple[int, int],
            pads: tuple[int, int, int, int], fill: int) -> I64:
    """Max pooling as a running maximum of the kernel's strided slices (one pass each),
    image by image on the threads."""
    t, l, b, r = pads
    if any(pads):
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill)
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)

    def image(n: int, _: int) -> None:
        for i in range(kh):
            for j in range(kw):
                s = x[n, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
                if i == j == 0:
                    out[n] = s
                else:
                    np.maximum(out[n], s, out=out[n])

    parallel([(n, 0) for n in range(len(x))], image)
    return out


def _code_int(code: int, c: AccelConfig) -> int:
    return int(semantics.product(np.ones(1, np.int64), code, c.weights, c.exp_bits)[0])


def int_layer(ql: QLayer, qnet: QNet, ins: list[I64]) -> I64 | None:
    """The layer's output by the paths above, or None where the literal definition runs."""
    c, lay = qnet.config, ql.layer
    if lay.op == "conv":
        return conv_layer(ins[0], ql, c, qnet.zero(lay.inputs[0]))
    if lay.op == "maxpool":
        return maxpool(ins[0], lay.kernel, lay.stride, lay.pads, c.act_min)
    if (lay.op == "avgpool" and ql.slope_params is None and not any(lay.pads)
            and tuple(lay.kernel) == ins[0].shape[1:3]):
        # Global average pooling: one window, a sum over the map (no padding, any stride).
        acc = ins[0].sum(axis=(1, 2), keepdims=True, dtype=np.int64) * _code_int(qnet.unit_code, c)
        if ql.bias_int is not None:
            acc += ql.bias_int
        return linear_requant(acc, ql, c).astype(ins[0].dtype, copy=False)
    if lay.op == "add" and ql.slope_params is None:
        assert ql.add_codes is not None
        a0, a1 = (_code_int(code, c) for code in ql.add_codes)
        fast = add_layer(ins[0], ins[1], a0, a1, ql, c)
        if fast is not None:
            return fast
        acc = ins[0].astype(np.int64) * a0
        acc += ins[1].astype(np.int64) * a1
        if ql.bias_int is not None:
            acc += ql.bias_int
        return linear_requant(acc, ql, c).astype(ins[0].dtype, copy=False)
    return None


def add_layer(x0: I64, x1: I64, a0: int, a1: int, ql: QLayer, c: AccelConfig) -> I64 | None:
    """``requantize(wrap(x0 a0 + x1 a1 + bias))`` as ``floor(x0 (a0 scale) + x1 (a1 scale)
    + offset)`` in float64, image by image on the threads: each term is an integer times a
    power of two under 2^52, and so is their sum (see the module notes).  None where the
    bound fails."""
    channels = x0.shape[-1]
    bias = (np.zeros(channels, np.int64) if ql.bias_int is None
            else np.asarray(ql.bias_int, np.int64))
    reach = _abs_max(x0) * abs(a0) + _abs_max(x1) * abs(a1) + np.abs(bias)
    req = Requant.of(ql, c, bias, reach)
    if req is None:
        return None
    s0, s1 = a0 * req.scale, a1 * req.scale
    out = np.empty(x0.shape, x0.dtype)

    def image(i: int, _: int) -> None:
        t = np.multiply(x0[i], s0, dtype=s0.dtype)
        t += x1[i] * s1
        t += req.offset
        np.floor(t, out=t)
        np.clip(t, req.lo, req.hi, out=t)
        out[i] = t

    parallel([(i, 0) for i in range(len(x0))], image)
    return out

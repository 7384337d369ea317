"""A convolution's integer products on onnxruntime's 8-bit kernels, bit-exact by proof.

onnxruntime's ``MatMulInteger`` on uint8 activations and int8 weights (MLAS's u8s8 GEMM: on an
AVX-512 VNNI machine about 6x a float32 product of the same shape) accumulates in int32.  Its result
equals the integer sum of products under two bounds, checked per layer before it is used:

* **No int16 saturation.**  Kernels without VNNI (AVX2, AVX-512BW) add two u8 x s8 products in
  a saturating int16 (``vpmaddubsw``).  Every weight integer given to onnxruntime lies in
  [-64, 63], so a pair is at most 2 * 255 * 64 = 32640 < 2^15.  Weight integers beyond that
  (ASD's ``+-2^a +-2^b`` reach 2^(2^E)) are split into balanced base-128 digit planes
  ``w = sum_p d_p 128^p`` (d_p in [-64, 63]), one product each.
* **No int32 wrap.**  The activations are given as ``u = x - act_min`` in [0, 2^act_bits - 1],
  so every partial sum of a plane's products, in any order a kernel takes, is at most
  ``(2^act_bits - 1) * sum |d_p|`` over the reduction, held below 2^31.

The true sum is ``sum x w = sum_p 128^p (u . d_p) + act_min * sum w`` (the border holds the
zero point, given as ``pad - act_min`` like any other element): the session combines the planes
by Horner's rule in int32 (each step's value bounded below 2^31 too) and ``act_min * sum w``
joins the bias of the requantization, which programs.batchrequant applies in float as for the
float products (onnxruntime's elementwise kernels took twice numpy's time there).  Graph
optimizations are off, so no fusion (onnxruntime has a MatMulInteger-to-float32 one) changes
the arithmetic.  One session per layer, built on first use with one intra-op thread (the
caller's threads run blocks side by side), cached.  A layer of P planes makes P products
where the float path makes one: programs.batchint takes this path only where :func:`rates`,
timed on this machine, says it is faster.

:class:`FloatConv` serves those float products: onnxruntime's float32 Conv on integer data,
exact under the float path's bound.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]

BASE = 128
DIGIT_MIN, DIGIT_MAX = -64, 63
INT32_LIMIT = 1 << 31


def planes(wk: NDArray[Any]) -> tuple[list[NDArray[np.int8]], list[I64]]:
    """Balanced base-128 digits of the integer matrix ``wk`` (Co x K, |w| < 2^31),
    transposed to K x Co (onnxruntime's layout), lowest first, each in [-64, 63]:
    ``wk.T == sum_p planes[p] * 128**p``; at least one plane.  With each plane's sum of
    |digits| per channel.  Block by block of channels in int32 (whole layers: AlexNet's first
    fully connected one has 38 M weights, where a plain transpose and int64 passes took
    seconds)."""
    wk = np.asarray(wk)
    n = plane_count(wk)
    out = [np.empty(wk.shape[::-1], np.int8) for _ in range(n)]
    sums = [np.empty(wk.shape[0], np.int64) for _ in range(n)]
    step = max(1, (1 << 18) // max(1, wk.shape[1]))
    for c0 in range(0, wk.shape[0], step):
        rest = wk[c0:c0 + step].T.astype(np.int32)
        for plane, total in zip(out, sums):
            d = rest - DIGIT_MIN
            d &= BASE - 1
            d += DIGIT_MIN
            plane[:, c0:c0 + step] = d
            total[c0:c0 + step] = np.abs(d).sum(axis=0)
            rest -= d
            rest >>= 7  # exact: a multiple of 128 (BASE)
    return out, sums


def plane_count(wk: NDArray[Any]) -> int:
    """How many base-128 digit planes :func:`planes` gives ``wk``."""
    top, low = (int(wk.max()), int(wk.min())) if wk.size else (0, 0)
    # P digits hold exactly the interval [-64, 63] * (128^P - 1) / 127.
    n = 1
    while top > DIGIT_MAX * (BASE ** n - 1) // (BASE - 1) or \
            low < DIGIT_MIN * (BASE ** n - 1) // (BASE - 1):
        n += 1
    return n


def fits(plane_sums: list[I64], abs_sum: I64, k: int, act_bits: int) -> bool:
    """Whether every int32 value the session forms stays below 2^31 in magnitude, from the
    planes' per-channel sums of |digits| (``planes``), the weights' ``abs_sum`` and the
    reduction's length ``k``.  Each plane's partial sums are at most (2^act_bits - 1) sum |d|.
    Horner's rule forms sums of u times ``V = 128 W_j`` and ``W_j`` for the upper digits
    ``W_j = sum_{p >= j} d_p 128^(p-j)`` (j >= 1): ``128 W_j = (w - low)/128^(j-1)`` with
    |low| <= 64 (128^j - 1)/127, so |V| <= |w| + 65."""
    umax = (1 << act_bits) - 1
    if any(umax * int(s.max(initial=0)) >= INT32_LIMIT for s in plane_sums):
        return False
    return len(plane_sums) == 1 or umax * int((abs_sum + 65 * k).max(initial=0)) < INT32_LIMIT


def _graph(digit_planes: list[NDArray[np.int8]]) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    k = digit_planes[0].shape[0]
    inits = [numpy_helper.from_array(np.array(BASE, np.int32), "base")]
    nodes = []
    # Horner's rule in int32, highest plane first: s = (.. i_top * 128 + ..) * 128 + i_0.
    # The last node writes "s" itself (an Identity would copy the whole output).
    total = ""
    for p in reversed(range(len(digit_planes))):
        d = digit_planes[p]
        inits.append(numpy_helper.from_array(np.ascontiguousarray(d), f"w{p}"))
        name = "s" if p == 0 else f"a{p}"
        if total:
            nodes += [helper.make_node("MatMulInteger", ["u", f"w{p}"], [f"i{p}"]),
                      helper.make_node("Mul", [total, "base"], [f"h{p}"]),
                      helper.make_node("Add", [f"h{p}", f"i{p}"], [name])]
        else:
            nodes.append(helper.make_node("MatMulInteger", ["u", f"w{p}"], [name]))
        total = name
    g = helper.make_graph(nodes, "asd_conv_sum",
                          [helper.make_tensor_value_info("u", TensorProto.UINT8, [None, k])],
                          [helper.make_tensor_value_info("s", TensorProto.INT32, [None, None])],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    return bytes(model.SerializeToString())


class _Lazy:
    """An onnxruntime session on the graph ``graph()`` returns, built on its first run (one
    intra-op thread: the caller's threads run blocks side by side)."""

    _optimize = "ORT_DISABLE_ALL"

    def __init__(self, graph: Callable[[], bytes]) -> None:
        self._graph: Callable[[], bytes] | None = graph
        self._sess: Any = None
        self._lock = threading.Lock()

    def _session(self) -> Any:
        with self._lock:  # blocks of one layer run on several threads
            if self._sess is None:
                import onnxruntime as ort

                assert self._graph is not None
                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                opts.intra_op_num_threads = 1
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                        self._optimize)
                # No arena: each session would keep its largest blocks' buffers while its layer
                # lives (SqueezeNet 1.1 after four batches of 32: 0.47..0.59 GiB resident,
                # without 0.34..0.38 GiB, at the same speed).
                opts.enable_cpu_mem_arena = False
                self._sess = ort.InferenceSession(self._graph(), opts,
                                                  providers=["CPUExecutionProvider"])
                self._graph = None  # the session holds its own copy of the weights
            return self._sess

    def run(self, u: NDArray[Any]) -> NDArray[Any]:
        sess = self._sess if self._sess is not None else self._session()
        return np.asarray(sess.run(None, {"u": np.ascontiguousarray(u)})[0])


class Session(_Lazy):
    """One layer's onnxruntime session: ``run(u)`` maps uint8 rows (M x K) to the sums
    ``u . w`` (int32, M x Co) of the weights whose digit planes (K x Co each) it was built on.

    Built on its first run: a layer prepared for it but sent to the float products by its
    data's bounds never pays for one.  No graph optimization: a fusion (onnxruntime has a
    MatMulInteger-to-float32 one) would change the arithmetic."""

    def __init__(self, digit_planes: list[NDArray[np.int8]]) -> None:
        super().__init__(partial(_graph, digit_planes))


def _conv_graph(w: NDArray[np.float32], stride: tuple[int, int],
                pads: tuple[int, int, int, int], groups: int,
                bias: NDArray[np.float32] | None) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    t, l, b, r = pads
    inits = [numpy_helper.from_array(w, "w")]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "b"))
    nodes = [helper.make_node("Transpose", ["u"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w"] + (["b"] if bias is not None else []),
                              ["y"], kernel_shape=list(w.shape[2:]),
                              strides=list(stride), pads=[t, l, b, r], group=groups),
             helper.make_node("Transpose", ["y"], ["s"], perm=[0, 2, 3, 1])]
    g = helper.make_graph(
        nodes, "asd_conv_float",
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, [None, None, None,
                                                                 w.shape[1] * groups])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    return bytes(model.SerializeToString())


class FloatConv(_Lazy):
    """A convolution's sums on onnxruntime's float32 Conv: ``run(u)`` maps a float32 NHWC
    batch of integers to the float32 NHWC sums over the integer weights ``w`` (Co x Ci/g x KH
    x KW) it was built on, plus ``bias`` unless None, zero border ``pads`` (t, l, b, r).
    Exact where the float32 products of programs.batchint are and |sum| + |bias| stays below
    2^24 too (the caller's bounds): MLAS computes a convolution as sums of products only
    (im2col and GEMM, or its blocked NCHWc kernels; it has no Winograd or FFT transform,
    onnxruntime issue 12834), and every partial sum is an integer below 2^24 in any order.
    Graph optimizations stay on: there is nothing to fuse, and the layout pass (NCHWc) only
    moves data, taking in the transposes to and from NHWC.  The session holds the weights
    in float32 (and NCHWc's reordered copy), while the layer lives."""

    _optimize = "ORT_ENABLE_ALL"

    def __init__(self, w: NDArray[np.float32], stride: tuple[int, int],
                 pads: tuple[int, int, int, int], groups: int,
                 bias: NDArray[np.float32] | None = None) -> None:
        super().__init__(partial(_conv_graph, w, stride, pads, groups, bias))


@dataclass
class Prepared:
    """A layer's session (None where the bounds that do not depend on the data fail) and the
    per-channel figures for the bounds that do: sum |w|, the bias over u (see the module
    notes) and a bound on the float steps' |terms|."""

    session: Session | None
    abs_sum: I64
    bias_u: I64
    terms: I64
    requant: Any  # programs.batchrequant.Requant of the sums over u (data-independent)
    planes: int = 1


_RATES: dict[str, float] = {}
_RATES_LOCK = threading.Lock()
# The block rates() times: a 3x3x64 window's 576 columns by 64 channels, 2048 rows (the
# batch path's blocks are about this size).
RATE_SHAPE = (2048, 576, 64)


def rates() -> dict[str, float]:
    """Products (multiply-adds) per second on one thread, measured once per process, best of
    five alternated runs of one block (``RATE_SHAPE``): ``int8`` for a one-plane session,
    ``float32`` and ``float64`` for numpy's BLAS.  Which wins depends on the machine: with
    AVX-512 VNNI the 8-bit kernels ran about 6x float32; on an AVX2 machine (int16 pairs,
    vpmaddubsw) 1.3..1.6x, where a layer of two digit planes ran faster in float32."""
    from contract.blas import one_blas_thread

    with _RATES_LOCK:
        if not _RATES:
            m, k, n = RATE_SHAPE
            rng = np.random.default_rng(0)
            u = rng.integers(0, 256, (m, k), dtype=np.uint8)
            d = rng.integers(DIGIT_MIN, DIGIT_MAX + 1, (k, n), dtype=np.int8)
            sess = Session([d])
            runs: dict[str, Callable[[], Any]] = {"int8": lambda: sess.run(u)}
            for t in (np.float32, np.float64):
                runs[np.dtype(t).name] = partial(np.matmul, u.astype(t), d.astype(t))
            best = dict.fromkeys(runs, float("inf"))
            with one_blas_thread():
                for _ in range(5):
                    for name, run in runs.items():
                        t0 = time.perf_counter()
                        run()
                        best[name] = min(best[name], time.perf_counter() - t0)
            _RATES.update({name: m * k * n / max(s, 1e-9) for name, s in best.items()})
        return dict(_RATES)


# By id of the layer and what is cached, for as long as the layer lives (a weak reference; a
# finalizer drops the entry, and its session, with the layer): a network's sessions last as
# long as the compiled network, and a process that compiles many holds none of the dropped ones.
_CACHE: dict[tuple[int, str], tuple[weakref.ref[Any], Any, Any, Any]] = {}


def cached(ql: Any, key: Any, make: Callable[[], Any], kind: str = "prepared") -> Any:
    """``make()`` for layer ``ql`` (one value per ``kind``), once while ``ql``, its weight
    array and ``key`` (what else it was made from: biases, requantization, configuration)
    stay the same."""
    slot = (id(ql), kind)
    hit = _CACHE.get(slot)
    if hit is not None and hit[1] is ql.w_int and hit[2] == key and hit[0]() is ql:
        return hit[3]
    value = make()
    if hit is None or hit[0]() is not ql:
        weakref.finalize(ql, _CACHE.pop, slot, None)
    _CACHE[slot] = (weakref.ref(ql), ql.w_int, key, value)
    return value


def available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:  # pragma: no cover - both are dependencies
        return False
    return True

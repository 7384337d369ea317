"""Running a compiled network layer by layer, on a batch, over any backend.

A backend is any :class:`contract.backend.Backend`, usually one the registry built by name
(``get_backend("myhdl")``), so this package never imports the RTL (``accel``); the default is
the emulator in fast mode.  The emulator backend is batched: programs
have no data-dependent control flow, so every image of a batch takes the same cycles and the
layer's integer semantics (:func:`programs.reference.int_layer`, vectorized over the batch)
give every image's output; the emulator runs the tiles of the first image (or of every image
with ``emulate="all"``) and the runtime insists on bit-equality, so the batch costs one
image's Python overhead plus a few numpy passes.  Other backends run every tile of every image.

``trace`` keeps every layer's output, compares it with the integer reference (exact) and the
float reference (onnxruntime, or numpy when the ONNX file is absent), and names the first
layer that diverges and by how much.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import blas
from contract.backend import DEFAULT_LIMITS, GOLDEN, Backend, Limits, get_backend
from contract.errors import AsdError
from contract.image import Image, as_activations

from . import batchint
from . import reference as ref
from .lower import LoweredLayer, Tile
from .manifest import Compiled
from .partition import host_work
from .workload import layer_macs, layer_transfers, utilization

I64 = NDArray[np.int64]


class DivergenceError(RuntimeError, AsdError):
    """A backend's result differs from the integer reference (never expected: a bug)."""


class InputError(ValueError, AsdError):
    """An input batch the network cannot take (its shape)."""


@dataclass
class LayerRecord:
    name: str
    op: str
    cycles: int                     # per image
    tiles: int
    transfer_words: int = 0         # per image, host loads and stores
    transfer_cycles: int = 0
    transfer_bytes: int = 0
    host_elements: int = 0          # per image, a host layer's output elements
    host_macs: int = 0              # per image, a host layer's feature-map products
    host_words: int = 0             # per image, elements a host layer reads and writes
    host_cycles: int = 0            # host_words at host_words_per_cycle
    seconds: float = 0.0            # this layer's path (in a batch: the integer semantics)
    backend_seconds: float = 0.0    # its backend run (in a batch: beside that, on a thread)
    emulated_images: int = 0
    int_mismatches: int = 0         # elements differing from the integer reference
    int_max_diff: int = 0
    float_max_err: float | None = None
    float_rel_err: float | None = None
    macs: int = 0                   # per image, the model's (programs.workload)
    mac_utilization: float = 0.0    # macs / (lanes x cycles)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunReport:
    output: NDArray[np.float64]               # dequantized, in the model's layout, N first
    output_int: I64
    layers: list[LayerRecord]
    batch: int
    backend: str
    seconds: float
    tensors: dict[str, I64] = field(default_factory=dict)  # with trace
    first_int_divergence: str | None = None
    first_float_divergence: str | None = None
    lanes: int = 1

    @property
    def cycles_per_image(self) -> int:
        return sum(r.cycles for r in self.layers)

    @property
    def transfer_cycles_per_image(self) -> int:
        return sum(r.transfer_cycles for r in self.layers)

    def mac_figures(self) -> dict[str, Any]:
        """The network's MACs per image and its MAC utilization, over the compute cycles and
        end to end (with the host transfers)."""
        macs = sum(r.macs for r in self.layers)
        lanes = self.lanes
        return {"macs_per_image": macs,
                "mac_utilization": utilization(macs, lanes, self.cycles_per_image),
                "mac_utilization_end_to_end": utilization(
                    macs, lanes, self.cycles_per_image + self.transfer_cycles_per_image)}

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "batch": self.batch, "seconds": self.seconds,
                "cycles_per_image": self.cycles_per_image,
                "cycles_total": self.cycles_per_image * self.batch,
                **self.mac_figures(),
                "transfer_cycles_per_image": self.transfer_cycles_per_image,
                "end_to_end_cycles_per_image": self.cycles_per_image
                + self.transfer_cycles_per_image,
                "transfer_words_per_image": sum(r.transfer_words for r in self.layers),
                "transfer_bytes_per_image": sum(r.transfer_bytes for r in self.layers),
                **{f"{k}_per_image": sum(getattr(r, k) for r in self.layers)
                   for k in ("host_elements", "host_macs", "host_words", "host_cycles")},
                "layers": [r.as_dict() for r in self.layers],
                "first_int_divergence": self.first_int_divergence,
                "first_float_divergence": self.first_float_divergence}


def tile_bands(tile: Tile, padded: dict[str, I64],
               views: dict[tuple[Any, ...], I64] | None = None) -> list[tuple[int, I64]]:
    """The tile's input bands: (base, a view of one image's padded tensor), in order.
    ``views``: the bands already taken for other tiles, by what they read; a band that
    several tiles read is then one array (the channel blocks of one row band, the output
    blocks of one reduction chunk), which the emulator places once for all of them."""
    out = []
    for ti in tile.inputs:
        key = (ti.tensor, ti.rows, ti.cols, ti.channels)
        band = None if views is None else views.get(key)
        if band is None:
            band = padded[ti.tensor][ti.rows[0]:ti.rows[1],
                                     slice(*ti.cols) if ti.cols else slice(None),
                                     ti.channels[0]:ti.channels[1]]
            if views is not None:
                views[key] = band
        out.append((ti.base, band))
    return out


def tile_amem(tile: Tile, padded: dict[str, I64],
              placed: dict[tuple[Any, ...], Image] | None = None) -> Image:
    """The tile's image with its inputs placed (``padded`` is one image's padded tensors).
    ``placed``: images already built for other tiles of the same tensors, by placement; the
    channel blocks of one row band read the same band at the same address, and share its
    activations (nothing writes an image's initial activations)."""
    key = tile.placement
    found = placed.get(key) if placed is not None else None
    if found is not None:
        return tile.image.with_acts_of(found)
    out = tile.image.with_bands(tile_bands(tile, padded))
    if placed is not None:
        placed[key] = out
    return out


def _pad(x: NDArray[Any], pads: tuple[int, int, int, int], value: int) -> NDArray[Any]:
    t, l, b, r = pads
    if not any(pads):
        return x
    # np.pad's general path took 0.15 ms a layer: a filled array and one copy.
    n, h, w, c = x.shape
    out = np.full((n, h + t + b, w + l + r, c), value, x.dtype)
    out[:, t: t + h, l: l + w] = x
    return out


def tile_levels(ll: LoweredLayer) -> list[list[Tile]]:
    """The layer's tiles in levels (:attr:`LoweredLayer.levels`)."""
    return [[ll.tiles[i] for i in level] for level in ll.levels]


def run_layer_on(ll: LoweredLayer, ins: list[I64], backend: Backend, out: I64,
                 images: range, limits: Limits = DEFAULT_LIMITS) -> int:
    """Run every tile of ``ll`` for the given batch indices, writing ``out``; returns the
    cycles of one image (checked equal for all)."""
    # In the activations' storage type, checked once a layer rather than once a band.
    padded = [_pad(as_activations(x, ll.tiles[0].image.config) if ll.tiles else x, ll.pads,
                   ll.pad_value) for x in ins]
    ow = ll.out_shape[2]
    # A backend that runs many images at once (the emulator in fast mode: the tiles that share
    # a program text in lockstep) gets the tiles by levels (see tile_levels).
    run_many = getattr(backend, "run_many", None)
    waves = tile_levels(ll) if run_many is not None else [[tile] for tile in ll.tiles]
    # The emulator places a wave's bands in its stacked AMEM itself, once a band: ResNet-18's
    # image spent a tenth of its time building each tile's AMEM image to be copied there.
    places_bands = run_many is not None and getattr(backend, "places_bands", False)
    cycles_seen = None
    for i in images:
        mine = {t: p[i] for t, p in zip(ll.inputs, padded)}
        if ll.partial_channels:
            # Partial sums of a split reduction: spilled by one chunk's tiles, restored by the
            # next's; the host only moves them (AMEM words, in their storage type).
            mine[ll.partial_name] = np.zeros((ll.out_shape[1], ow, ll.partial_channels),
                                             ll.tiles[0].image.config.act_storage)
        total = 0
        for wave in waves:
            if places_bands and run_many is not None:
                views: dict[tuple[Any, ...], I64] = {}
                results = run_many([tile.image for tile in wave], limits,
                                   bands=[tile_bands(tile, mine, views) for tile in wave])
            else:
                placed: dict[tuple[Any, ...], Image] = {}
                imgs = [tile_amem(tile, mine, placed) for tile in wave]
                results = (run_many(imgs, limits) if run_many is not None
                           else [backend.run(imgs[0], limits)])
            for tile, result in zip(wave, results):
                total += result.cycles
                o0, o1 = tile.out_rows
                k0, k1 = tile.out_channels
                x0, x1 = tile.out_cols or (0, ow)
                n = (o1 - o0) * (x1 - x0) * (k1 - k0)
                dest = mine[tile.out_tensor] if tile.out_tensor else out[i]
                dest[o0:o1, x0:x1, k0:k1] = result.amem[tile.out_base: tile.out_base + n
                                                        ].reshape(o1 - o0, x1 - x0, k1 - k0)
        if cycles_seen is not None and total != cycles_seen:
            raise DivergenceError(f"layer {ll.name}: image {i} took {total} cycles, image 0 "
                                  f"{cycles_seen} (programs have no data-dependent timing)")
        cycles_seen = total
    return int(cycles_seen or 0)


def run(compiled: Compiled, x_nchw: NDArray, backend: Backend | None = None, *,
        limits: Limits = DEFAULT_LIMITS, batched: bool = True, emulate: str = "first",
        trace: bool = False, float_tol: float = 0.25,
        progress: Callable[[str], None] | None = None) -> RunReport:
    """Run ``compiled`` on a float NCHW batch on ``backend`` (default: the emulator, fast
    mode), each tile within ``limits``.

    ``batched`` (emulator only): outputs of the whole batch from the vectorized integer
    semantics, the backend running the images ``emulate`` selects (``first`` or ``all``) and
    required to agree bit for bit.  Without it every image runs on the backend.
    """
    t_start = time.perf_counter()
    q = compiled.qnet
    g = q.graph
    x = np.asarray(x_nchw, np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != g.input_shape:
        raise InputError(f"input of shape {x.shape}; the network takes N x "
                         f"{' x '.join(map(str, g.input_shape))} (float32, NCHW)")
    backend = backend or get_backend(GOLDEN, fast=True)
    n = x.shape[0]
    # The batch in the narrowest integer type that holds every activation (a quarter to an
    # eighth of int64's bytes a pass); trace keeps int64 for its comparisons.
    narrow = batched and not trace
    # Batched without trace on the in-process emulator (a backend with run_many), the check
    # of a layer needs only that layer's inputs: it runs beside the rest of the batch (numpy,
    # BLAS and onnxruntime release the GIL), queued on the batch path's own threads
    # (batchint.pool), and is judged in layer order as it finishes.  BLAS stays on one
    # thread for the whole run, so neither side's setting undoes the other's.  Other backends
    # keep the main thread.
    in_process = getattr(backend, "run_many", None) is not None
    overlap = (_Overlap(progress, compiled.config.lanes, backend.name)
               if batched and not trace and in_process else None)
    with contextlib.ExitStack() as stack:
        if overlap is not None:
            stack.enter_context(blas.one_blas_thread())
            stack.callback(overlap.close)
        records, vals, first_int = _layers(compiled, x, backend, limits, batched, emulate,
                                           trace, narrow, overlap, progress)
    y_int = vals[g.output].astype(np.int64)
    y_out = np.asarray(ref.to_user(ref.dequantize(q, g.output, y_int), g), np.float64)
    report = RunReport(y_out, y_int, records, n, backend.name, time.perf_counter() - t_start,
                       vals if trace else {}, first_int, lanes=q.config.lanes)
    if trace:
        _float_trace(compiled, x, vals, report, float_tol)
    return report


def _layers(compiled: Compiled, x: NDArray, backend: Backend, limits: Limits, batched: bool,
            emulate: str, trace: bool, narrow: bool, overlap: _Overlap | None,
            progress: Callable[[str], None] | None
            ) -> tuple[list[LayerRecord], dict[str, I64], str | None]:
    """Every layer of :func:`run`: the records, the tensors and the first layer whose
    backend result differs from the integer reference (trace only; otherwise that raises)."""
    q = compiled.qnet
    g = q.graph
    n = x.shape[0]
    vals: dict[str, I64] = {g.input: _quantize_input(q, x, narrow)}
    records: list[LayerRecord] = []
    first_int: str | None = None
    for ll in compiled.layers:
        t0 = time.perf_counter()
        ql = q.qlayers[ll.name]
        ins = [vals[t] for t in ll.inputs]
        rec = LayerRecord(ll.name, ll.op, 0, len(ll.tiles))
        if not ll.host:
            moved = layer_transfers(ll, q.config)
            rec.transfer_words = moved.load_words + moved.store_words
            rec.transfer_cycles, rec.transfer_bytes = moved.cycles, moved.bytes
        if ll.host:
            rec.host_elements, rec.host_macs, rec.host_words = host_work(ql.layer, g)
            rec.host_cycles = -(-rec.host_words // q.config.host_words_per_cycle)
            y = _batch_int_layer(ql, q, ins) if narrow else ref.int_layer(ql, q, ins)
        else:
            shape = (*ll.out_shape[1:], ll.out_shape[0])
            if batched:
                want = _batch_int_layer(ql, q, ins) if narrow else ref.int_layer(ql, q, ins)
                k = n if emulate == "all" else min(1, n)
                rec.emulated_images = k
                # Only the emulated images' inputs: padding the whole batch per layer costs.
                mine = [v[:k] for v in ins]
                y = want
                if overlap is not None:
                    rec.macs = layer_macs(ql.layer, g)
                    rec.seconds = time.perf_counter() - t0
                    overlap.submit(rec, functools.partial(_emulate, ll, mine, backend, shape,
                                                          k, limits), want[:k])
                    records.append(rec)
                    vals[ll.output] = y
                    continue
                rec.cycles, got, rec.backend_seconds = _emulate(ll, mine, backend, shape, k,
                                                                limits)
                diff = got != want[:k]
                if diff.any():
                    y = want.copy()
                    y[:k] = got  # the backend's own results, never hidden
            else:
                rec.cycles, y, rec.backend_seconds = _emulate(ll, ins, backend, shape, n,
                                                              limits)
                rec.emulated_images = n
                if trace:
                    want = ref.int_layer(ql, q, ins)
                    diff = y != want
                else:
                    diff = np.zeros(1, bool)
            rec.int_mismatches = int(diff.sum())
            if rec.int_mismatches:
                k = diff.shape[0]
                rec.int_max_diff = int(np.abs(np.where(
                    diff, y[:k].astype(np.int64) - want[:k], 0)).max())
                if first_int is None:
                    first_int = ll.name
                if not trace:
                    raise _divergence(rec, backend.name)
        vals[ll.output] = y
        rec.macs = layer_macs(ql.layer, g)
        rec.mac_utilization = utilization(rec.macs, q.config.lanes, rec.cycles)
        rec.seconds = time.perf_counter() - t0
        records.append(rec)
        if overlap is not None:
            overlap.submit(rec)
        elif progress is not None:
            progress(_line(rec))
    if overlap is not None:
        overlap.collect(wait=True)
    return records, vals, first_int


def _line(rec: LayerRecord) -> str:
    """A layer's progress line."""
    return f"{rec.name}: {rec.cycles} cycles, {rec.seconds:.2f} s"


def _divergence(rec: LayerRecord, backend: str) -> DivergenceError:
    return DivergenceError(
        f"layer {rec.name} ({rec.op}): {backend} differs from the integer reference in "
        f"{rec.int_mismatches} elements (max |diff| {rec.int_max_diff}); rerun with --trace "
        "for every layer")


def _emulate(ll: LoweredLayer, ins: list[I64], backend: Backend, shape: tuple[int, ...],
             k: int, limits: Limits) -> tuple[int, I64, float]:
    """The first ``k`` images of layer ``ll`` on ``backend``: (cycles of one image, outputs,
    seconds)."""
    t0 = time.perf_counter()
    got = np.zeros((k, *shape), np.int64)
    cycles = run_layer_on(ll, ins, backend, got, range(k), limits)
    return cycles, got, time.perf_counter() - t0


class _Overlap:
    """The backend's layer checks on the batch's threads (batchint.pool), queued beside its
    blocks and judged in layer order: a layer's record gets its cycles when its check is in,
    and a check that differs from the integer reference raises :class:`DivergenceError`
    naming that layer."""

    def __init__(self, progress: Callable[[str], None] | None, lanes: int, name: str) -> None:
        self.pool = batchint.pool()
        self.queue: list[tuple[LayerRecord, Future[tuple[int, I64, float]] | None, Any]] = []
        self.progress, self.lanes, self.name = progress, lanes, name

    def submit(self, rec: LayerRecord, job: Callable[[], tuple[int, I64, float]] | None = None,
               want: I64 | None = None) -> None:
        """Queue ``rec``'s check (``job``, against ``want``), or a record that is complete
        (no job: its progress line only, kept in layer order); then judge what has finished."""
        self.queue.append((rec, None if job is None else self.pool.submit(job), want))
        self.collect(wait=False)

    def collect(self, wait: bool) -> None:
        while self.queue and (wait or self.queue[0][1] is None or self.queue[0][1].done()):
            rec, fut, want = self.queue.pop(0)
            if fut is not None:
                rec.cycles, got, rec.backend_seconds = fut.result()
                rec.mac_utilization = utilization(rec.macs, self.lanes, rec.cycles)
                diff = got != want
                rec.int_mismatches = int(diff.sum())
                if rec.int_mismatches:
                    rec.int_max_diff = int(np.abs(np.where(diff, got - want, 0)).max())
                    raise _divergence(rec, self.name)
            if self.progress is not None:
                self.progress(_line(rec))

    def close(self) -> None:
        """Cancel the checks not yet started and wait for the running ones (the pool stays)."""
        for _, fut, _ in self.queue:
            if fut is not None:
                fut.cancel()
        futures.wait([fut for _, fut, _ in self.queue if fut is not None])


def _quantize_input(q: Any, x: NDArray, narrow: bool) -> NDArray:
    """reference.quantize_input of the batch; ``narrow``: image by image on the batch's
    threads into its narrow type (whole, the float64 temporaries of 32 images at 224x224 took
    0.1-0.3 s)."""
    g = q.graph
    if not narrow:
        return ref.quantize_input(x, q.scales[g.input], q.config.act_bits, q.zero(g.input))
    out = np.empty((x.shape[0], *x.shape[2:], x.shape[1]), q.config.act_storage)

    def image(i: int, _: int) -> None:
        out[i] = ref.quantize_input(x[i:i + 1], q.scales[g.input], q.config.act_bits,
                                    q.zero(g.input))[0]

    batchint.parallel([(i, 0) for i in range(len(x))], image)
    return out


# Layers that only move elements: any integer type goes through the definition unchanged.
_MOVES = ("concat", "flatten", "softmax")


def _batch_int_layer(ql: Any, q: Any, ins: list[NDArray]) -> NDArray:
    """ref.int_layer on the batch's narrow integer type (programs.batchint.storage): the
    batch paths keep it; the literal definition, written for int64, gets int64 and its result
    is narrowed back (every activation fits)."""
    fast = batchint.int_layer(ql, q, ins)
    if fast is not None:
        return fast
    if ql.layer.op in _MOVES:
        return ref.int_layer(ql, q, ins, literal=True)
    wide = ref.int_layer(ql, q, [v.astype(np.int64) for v in ins], literal=True)
    kind = np.iinfo(ins[0].dtype)
    if wide.size and (wide.min() < kind.min or wide.max() > kind.max):
        raise DivergenceError(f"layer {ql.layer.name} ({ql.layer.op}): outputs outside "
                              f"{ins[0].dtype}, the batch's activation type")
    return wide.astype(ins[0].dtype)


def _float_trace(compiled: Compiled, x: NDArray, vals: dict[str, I64], report: RunReport,
                 tol: float) -> None:
    q = compiled.qnet
    g = q.graph
    # Tensors the compiler made up (a "#" in the name: ConvTranspose's zero-filled input) are
    # not in the ONNX graph; asking onnxruntime for them would lose every other comparison.
    names = [ll.output for ll in compiled.layers if "#" not in ll.output]
    floats: dict[str, NDArray] = {}
    if compiled.model_path is not None:
        try:
            got = ref.onnx_forward(compiled.model_path, x, names)
            floats = {k: ref.nchw_to_nhwc(v) if v.ndim == 4 else v.reshape(v.shape[0], 1, 1, -1)
                      for k, v in got.items()}
        except Exception:  # a graph onnxruntime cannot run: the numpy float model still can
            floats = {}
    if not floats:
        floats = ref.float_forward(g, x)
    for rec, ll in zip(report.layers, compiled.layers):
        f = floats.get(ll.output)
        if f is None:
            continue
        d = ref.dequantize(q, ll.output, vals[ll.output])
        if ll.op == "flatten" or f.shape != d.shape:
            f = np.asarray(f).reshape(d.shape)
        err = float(np.abs(d - f).max())
        rec.float_max_err = err
        rec.float_rel_err = err / max(float(np.abs(f).max()), 1e-12)
        if report.first_float_divergence is None and rec.float_rel_err > tol:
            report.first_float_divergence = ll.name

"""Compiler benchmark: the seed networks (random weights, from programs.seednets) at 224x224.

Measures compile time (import, quantization, lowering), the emulator's time in fast mode for
one image (``asd run``'s path: runtime.run; the first run apart) beside onnxruntime's float
time on the same input (best of seven each, taken in alternation; as a ratio), the
total program bytes and the cycles per image; ``asd run``'s batch path on ``--batch`` images beside
onnxruntime on the same batch (a ratio, with every image checked bit for bit); and, on a
smaller copy, the output error with and without the
requant-aware weight-scale search.  Prints and saves JSON.

    python benchmarks/bench_compiler.py [--networks resnet18,alexnet,...|all] [--size 224]
                                        [--width 1.0] [--config default|small|wide|FILE]
                                        [--batch 32] [--out FILE]

The default is ResNet-18 alone (the issue's figure); ``--networks all`` adds AlexNet, VGG-16 and
SqueezeNet 1.0 and 1.1 (minutes each: VGG-16 has 138 M weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contract import blas
from contract.backend import get_backend
from contract.config import AccelConfig
from programs import batchint, batchort, reference, runtime, seednets
from programs.manifest import compile_model

# The shipped configuration; a small one (reductions split into many chunks, narrow row
# bands); and the wide one the figures used before reduction tiling, when ResNet-18's 3x3x512
# convolutions (4608 weight words a block), AlexNet's first FC layer (9216) and VGG-16's
# (25088) had to fit WMEM whole.
CONFIGS = {"default": AccelConfig(), "small": AccelConfig(wmem_depth=512, amem_depth=8192),
           "wide": AccelConfig(wmem_depth=32768)}
BENCH_CONFIG = CONFIGS["default"]
NETWORKS = ("resnet18", "alexnet", "vgg16", "squeezenet1_0", "squeezenet1_1")
# One image takes milliseconds on onnxruntime, whose two threads a shared machine slows most:
# best of seven alternated runs (three left it at 0.034 s where thirty in a row gave 0.021 s).
ONE_IMAGE_ROUNDS = 7
# A batch: best of five alternated runs (three left SqueezeNet 1.1's ratio between 3.7x and
# 4.1x from one run to the next).
BATCH_ROUNDS = 5


def _ort_runner(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime float session on ``model`` as a function of the input, warm."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # The threads the batch path uses too (programs.batchint.workers): one per core unless
    # OMP_NUM_THREADS says otherwise.
    opts.intra_op_num_threads = blas.ort_threads()
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: np.asarray(sess.run(None, {name: x})[0])


def side_by_side(ours: Callable[[], Any], model: Any, x: np.ndarray, rounds: int
                 ) -> tuple[float, float, Any, np.ndarray]:
    """Best times of ``ours()`` and of onnxruntime on ``x``, taken in alternation (on a
    shared machine a quiet moment then favours neither), after one warm-up run of
    onnxruntime (session creation is not inference); ``ours``' first run is its own warm-up
    and counts.  Returns (ours, onnxruntime, ours' last result, onnxruntime's output)."""
    ort_run = _ort_runner(model)
    y_ort = ort_run(x)
    t_ours, t_ort, got = [], [], None
    for _ in range(rounds):
        t = time.perf_counter()
        got = ours()
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        y_ort = ort_run(x)
        t_ort.append(time.perf_counter() - t)
    return min(t_ours), min(t_ort), got, y_ort


def requant_comparison(size: int, width: float, n: int = 8, seed: int = 1) -> dict[str, Any]:
    """Output error against the float model with and without the requant-aware search."""
    model = seednets.build("resnet18", width=width, size=size, classes=10, seed=seed)
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    want = next(iter(reference.onnx_forward(model, x).values()))
    out: dict[str, Any] = {"model": f"resnet18 width {width} at {size}x{size}", "images": n}
    for aware in (True, False):
        comp = compile_model(model, AccelConfig(), calib, requant_aware=aware)
        got = reference.to_user(reference.dequantize(
            comp.qnet, comp.qnet.graph.output,
            reference.int_forward(comp.qnet, x)[comp.qnet.graph.output]), comp.qnet.graph)
        key = "requant_aware" if aware else "max_abs_scales"
        out[key] = {
            "rel_rms_error": float(np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2))),
            "top1_agreement": float(np.mean(got.argmax(1) == want.argmax(1))),
        }
    return out


def unique_bytes(comp: Any) -> dict[str, int]:
    """What a network's programs must hold at least once: every weight code, every channel's
    parameter words (bias, requant, slope) and the instructions of every tile."""
    c = comp.config
    weights = params = 0
    for ql in comp.qnet.qlayers.values():
        if ql.w_int is not None:
            weights += ql.w_int.size
        if ql.mult is not None:
            per_channel = 1 + int(ql.bias_int is not None) + int(ql.slope_ints is not None)
            params += per_channel * len(ql.mult)
    text = sum(len(t.image.text) for ll in comp.layers for t in ll.tiles)
    return {"weight_code_bytes": -(-weights * c.weight_bits // 8),
            "param_bytes": -(-params * c.acc_bits // 8), "instruction_bytes": 4 * text}


def gemm_floor(model: Any, rounds: int = 3) -> dict[str, Any]:
    """The exact arithmetic alone of one image: every convolution and dense layer as one
    float64 GEMM (float64 is what holds their integer sums exactly; float32 does not), on
    operands made beforehand (no im2col, no requantization), with BLAS on its own threads;
    best of ``rounds``.  An emulator that runs the programs cannot take less than this."""
    import onnx
    from onnx import numpy_helper

    shapes = onnx.shape_inference.infer_shapes(model).graph
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*shapes.value_info, *shapes.output, *shapes.input]}
    inits = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    pairs = []
    for node in model.graph.node:
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type not in ("Conv", "Gemm", "MatMul") or w is None:
            continue
        if node.op_type == "Conv":
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            out = dims[node.output[0]]
            shape = (out[2] * out[3], int(np.prod(w[1:])), w[0] // groups)
        else:  # Gemm B is (K, N), or (N, K) with transB; MatMul's is (K, N)
            trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
            groups, shape = 1, (dims[node.output[0]][0] or 1, w[1 - trans], w[trans])
        pairs += [(rng.random(shape[:2]), rng.random(shape[1:])) for _ in range(groups)]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for a, b in pairs:
            a @ b
        times.append(time.perf_counter() - t)
    return {"gemm_floor_seconds": min(times), "gemm_floor_products": len(pairs),
            "gemm_floor_macs": sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs)}


def machine() -> dict[str, Any]:
    """Python, the CPU's model and the widest vector extension onnxruntime's kernels may use
    (its float and u8s8 products, and so every ratio here, depend on it), and the cores."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    isa = next((name for flag, name in (("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"),
                                        ("avx2", "AVX2")) if flag in flags), "no AVX2")
    return {"python": platform.python_version(), "cpu": model, "cpu_isa": isa,
            "cores": len(os.sched_getaffinity(0))}


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (Linux reports kilobytes)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Start the peak resident memory (VmHWM) afresh, so that the next reading is the peak of
    what runs from now on (Linux 4.0 and later); False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def batch_figures(comp: Any, model: Any, n: int, size: int, seed: int,
                  repeat: int = BATCH_ROUNDS) -> dict[str, Any]:
    """``asd run``'s path on a batch of ``n`` (runtime.run on the emulator: the whole batch by
    the integer semantics, image 0 on the emulator in fast mode and checked against it) beside
    an onnxruntime float session on the same images and threads; best of ``repeat`` each.
    Then, untimed, every image's output against the literal integer definition (int64, no
    BLAS): the batch's exactness is checked, not assumed."""
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    best, t_ort, rep, _ = side_by_side(
        lambda: runtime.run(comp, x, get_backend("emu", fast=True)), model, x, repeat)
    literal = reference.int_forward(comp.qnet, x, literal=True)[comp.qnet.graph.output]
    return {"batch_size": n, "batch_rounds": repeat, "batch_seconds": best,
            "onnxruntime_batch_seconds": t_ort,
            "batch_over_onnxruntime": best / t_ort, "batch_threads": batchint.workers(),
            "batch_bit_exact": bool(rep.first_int_divergence is None
                                    and np.array_equal(rep.output_int, literal)),
            "batch_layer_seconds": {r.name: round(r.seconds, 4) for r in rep.layers},
            "batch_layer_emulator_seconds": {r.name: round(r.backend_seconds, 4)
                                             for r in rep.layers},
            # What decided each layer's products (programs.batchint, ASD_BATCH_PRODUCTS).
            "batch_products": batchint.products(),
            "batch_product_rates": batchort.rates()}


def bench(size: int = 224, width: float = 1.0, calib_n: int = 2, seed: int = 0,
          compare_size: int = 32, compare_width: float = 0.25,
          network: str = "resnet18", config: AccelConfig = BENCH_CONFIG,
          batch: int = 0) -> dict[str, Any]:
    model = seednets.build(network, width=width, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((calib_n, 3, size, size)).astype(np.float32)
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    peak_before = peak_rss_bytes()  # the model built in memory, and this process so far
    rss_before = _status_bytes("VmRSS")
    # The compile's own peak, with the model the caller holds resident (built above).
    fresh = reset_peak_rss()
    t0, cpu0 = time.perf_counter(), time.process_time()
    comp = compile_model(model, config, calib)
    t_compile, cpu_compile = time.perf_counter() - t0, time.process_time() - cpu0
    peak = peak_rss_bytes()
    peak_compile = _status_bytes("VmHWM") if fresh else None
    totals = comp.totals()
    least = unique_bytes(comp)
    # Best of ONE_IMAGE_ROUNDS each, in alternation; the first run, which also parses each
    # program's loop nests (cached per text), saved apart.
    t0 = time.perf_counter()
    rep = runtime.run(comp, x, get_backend("emu", fast=True))
    t_first = time.perf_counter() - t0
    t_emu, t_ort, rep, y_ort = side_by_side(
        lambda: runtime.run(comp, x, get_backend("emu", fast=True)), model, x, ONE_IMAGE_ROUNDS)
    t_emu = min(t_emu, t_first)
    # The emulator's result is checked bit for bit against the integer reference inside run().
    result = {
        "network": f"{network} (random weights), width {width}, input {size}x{size}",
        "config": config.to_dict(),
        "compile_seconds": t_compile,
        "compile_cpu_seconds": cpu_compile,
        "peak_rss_bytes_before_compile": peak_before,
        "peak_rss_bytes_after_compile": peak,
        "rss_bytes_before_compile": rss_before,
        "peak_rss_bytes_during_compile": peak_compile,
        "compile_breakdown": comp.info["compile_seconds"],
        "emulator_fast_seconds": t_emu,
        "emulator_fast_seconds_first_run": t_first,
        "one_image_rounds": ONE_IMAGE_ROUNDS,
        "onnxruntime_float_seconds": t_ort,
        "emulator_over_onnxruntime": t_emu / t_ort,
        "program_bytes": totals["image_bytes"],
        "tiles": totals["tiles"],
        "instructions": totals["text_words"],
        "weight_words": totals["weight_words"],
        **least,
        "program_over_unique": totals["image_bytes"] / sum(least.values()),
        "split_layers": sum(1 for ll in comp.layers if ll.partial_channels),
        "cycles_per_image": rep.cycles_per_image,
        "transfer_cycles_per_image": rep.transfer_cycles_per_image,
        "transfer_bytes_per_image": rep.as_dict()["transfer_bytes_per_image"],
        **rep.mac_figures(),
        "layer_mac_utilization": {r.name: round(r.mac_utilization, 4) for r in rep.layers
                                  if r.macs},
        "bit_exact_with_integer_reference": rep.first_int_divergence is None,
        "output_rel_rms_error_vs_float": float(np.sqrt(np.mean((rep.output - y_ort) ** 2)
                                                       / np.mean(y_ort ** 2))),
        "requant_search": (requant_comparison(compare_size, compare_width)
                           if network == "resnet18" else None),
        "machine": machine(),
    }
    if batch:
        result.update(batch_figures(comp, model, batch, size, seed))
    # Last: BLAS's own threads spin for a while after a product, against what runs next.
    result.update(gemm_floor(model))
    result["gemm_floor_over_onnxruntime"] = result["gemm_floor_seconds"] / t_ort
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default="resnet18",
                   help=f"comma-separated from {', '.join(NETWORKS)}, or all")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--config", default="default",
                   help=f"accelerator: {', '.join(CONFIGS)} or a TOML/JSON file")
    p.add_argument("--batch", type=int, default=32,
                   help="also time asd run's batch path on this many images beside "
                        "onnxruntime (0: skip)")
    p.add_argument("--compare-size", type=int, default=32)
    p.add_argument("--compare-width", type=float, default=0.25)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "compiler.json"))
    p.add_argument("--merge", action="store_true",
                   help="keep the networks of an existing --out file that this run does not "
                        "measure (each network's figures stay from one run)")
    args = p.parse_args(argv)
    names = list(NETWORKS) if args.networks == "all" else args.networks.split(",")
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        p.error(f"unknown network {unknown[0]} (known: {', '.join(NETWORKS)})")
    config = (CONFIGS[args.config] if args.config in CONFIGS
              else AccelConfig.load(args.config))
    results: dict[str, Any] = {}
    if args.merge and Path(args.out).exists():
        kept = json.loads(Path(args.out).read_text()).get("networks", {})
        results.update({k: v for k, v in kept.items() if k not in names})
    for name in names:
        results[name] = bench(args.size, args.width, compare_size=args.compare_size,
                              compare_width=args.compare_width, network=name, config=config,
                              batch=args.batch)
        r = results[name]
        peak = r["peak_rss_bytes_during_compile"] or r["peak_rss_bytes_after_compile"]
        print(f"{name:<14} compile {r['compile_seconds']:7.1f} s ({r['compile_cpu_seconds']:.1f} s "
              f"CPU)   emulator "
              f"{r['emulator_fast_seconds']:7.2f} s   onnxruntime "
              f"{r['onnxruntime_float_seconds']:6.3f} s   ratio "
              f"{r['emulator_over_onnxruntime']:6.1f}x   (its float64 GEMMs alone "
              f"{r['gemm_floor_over_onnxruntime']:.1f}x)   {r['program_bytes'] / 1e6:7.1f} MB "
              f"({r['program_over_unique']:.2f}x weights+params+text)   compile peak "
              f"{peak / 2**30:.2f} GiB   "
              f"{r['cycles_per_image']:>14,} cycles   MAC utilization "
              f"{r['mac_utilization']:.1%} ({r['mac_utilization_end_to_end']:.1%} end to end)"
              f"   bit-exact {r['bit_exact_with_integer_reference']}", flush=True)
        if args.batch:
            print(f"{'':<14} batch of {r['batch_size']}: asd run {r['batch_seconds']:.2f} s   "
                  f"onnxruntime {r['onnxruntime_batch_seconds']:.3f} s   ratio "
                  f"{r['batch_over_onnxruntime']:.1f}x   ({r['batch_threads']} threads)   "
                  f"bit-exact {r['batch_bit_exact']}", flush=True)
        # Saved after every network: a long run stopped half way keeps what it measured.
        res = results[names[0]] if len(results) == 1 else {"networks": results}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

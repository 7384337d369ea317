"""The networks with host ops (issue 24): partition, cycles, bit-exactness and output SQNR
against float onnxruntime, beside onnxruntime's own static int8 quantization, in one run.

For each network of :mod:`programs.seednets` (random weights, so standard-normal images stand
in for data): compile on the default configuration with nearest and with the default
calibrated rounding (gptq+bias), run through :mod:`programs.runtime` (image 0 on the emulator,
required bit-exact with the integer reference, which is also checked for the whole batch),
and measure the output SQNR (dB) against float onnxruntime; onnxruntime's ``quantize_static``
(QDQ, per-channel int8 weights, int8 activations, min-max calibration on the same images) is
measured the same way, and (diagnostic) with symmetric activations like the accelerator's.

    python -m zoo.host_fidelity [--networks mobilenet_v3_small,...] [--size 224]
                                [--width 1.0] [--calib 16] [--test 16] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from asd import fidelity
from contract.config import AccelConfig
from programs import partition, reference, runtime, seednets
from programs.manifest import compile_model

NETWORKS = ("mobilenet_v3_small", "mobilenet_v2", "tiny_fpn_detector")


def _flat(y: np.ndarray) -> np.ndarray:
    return np.asarray(y, np.float64).reshape(len(y), -1)


def measure(name: str, size: int, width: float, n_calib: int, n_test: int, d: Path
            ) -> dict[str, Any]:
    classes = 4 if name in seednets.DETECTORS else 1000
    path = d / f"{name}.onnx"
    import onnx

    onnx.save(seednets.build(name, size=size, width=width, classes=classes), path)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((n_calib, 3, size, size)).astype(np.float32)
    x = rng.standard_normal((n_test, 3, size, size)).astype(np.float32)
    ref = _flat(next(iter(reference.onnx_forward(path, x).values())))
    out: dict[str, Any] = {"network": name, "size": size, "width": width}
    for rounding in ("nearest", "gptq+bias"):
        t0 = time.perf_counter()
        comp = compile_model(path, AccelConfig(), calib, rounding=rounding)
        seconds = time.perf_counter() - t0
        rep = runtime.run(comp, x)  # raises DivergenceError unless image 0 is bit-exact
        want = reference.int_forward(comp.qnet, x)[comp.qnet.graph.output]
        row = {"sqnr_db": round(fidelity.sqnr_db(ref, _flat(rep.output)), 2),
               "bit_exact": bool(np.array_equal(rep.output_int, want)),
               "compile_seconds": round(seconds, 1)}
        if rounding == "nearest":
            split = partition.partition(comp.qnet.graph, comp.layers, comp.config)
            d_ = rep.as_dict()
            out["partition"] = split
            out["cycles"] = {k: d_[k] for k in (
                "cycles_per_image", "transfer_cycles_per_image", "end_to_end_cycles_per_image",
                "host_elements_per_image", "host_macs_per_image", "host_words_per_image",
                "host_cycles_per_image")}
        out[f"asd {rounding}"] = row
    try:
        from benchmarks.bench_fidelity import ORT_ROWS, ORT_SYMMETRIC, ort_static

        got = ort_static(path, calib, x)
        out["ort static int8 (qdq)"] = {
            "sqnr_db": round(fidelity.sqnr_db(ref, _flat(got[ORT_ROWS[0]])), 2),
            "symmetric_activations_sqnr_db": round(fidelity.sqnr_db(
                ref, _flat(got[ORT_SYMMETRIC])), 2)}
    except Exception as exc:  # onnxruntime's quantizer refusing a graph is a finding too
        out["ort static int8 (qdq)"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--calib", type=int, default=16)
    ap.add_argument("--test", type=int, default=16)
    ap.add_argument("--out", metavar="FILE.json")
    args = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime quantizer chatter
    results = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.networks.split(","):
            r = measure(name, args.size, args.width, args.calib, args.test, Path(d))
            results.append(r)
            p, c = r["partition"], r["cycles"]
            print(f"{name} {args.size}x{args.size} width {args.width}: MACs on the accelerator "
                  f"{100 * p['mac_share']:.2f}% ({p['accelerator']['macs']} vs host "
                  f"{p['host']['macs']}; host ops {p['host']['ops'] or '-'}); "
                  f"{c['cycles_per_image']} compute + {c['transfer_cycles_per_image']} "
                  f"transfer + {c['host_cycles_per_image']} host-op word cycles per image")
            for k in ("asd nearest", "asd gptq+bias", "ort static int8 (qdq)"):
                print(f"  {k:<24} {r[k]}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

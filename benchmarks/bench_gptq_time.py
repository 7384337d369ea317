"""Time of the second-order rounding on ResNet-18 at 224x224 (issue 19: under 2 minutes here).

``asd quantize --rounding gptq+bias`` in two steps, timed apart: the layer input statistics
(:func:`asd.rounding.collect_stats`: onnxruntime with every weight layer's input as an extra
output, im2col, ``X^T X``) over the calibration images, then GPTQ (act-order) and the bias
correction of every weight tensor (:func:`asd.quantize_model.quantize_model`).  The network is
``programs.seednets``' ResNet-18 (11.7 M weights, random He-normal weights and random
BatchNormalization statistics: the timing does not depend on them); the calibration images are
standard normal.  The default is what ships: ``asd quantize``'s 256 calibration images.

The machine is shared: besides the wall time of each step the JSON has this process's CPU time
(user + system, all its threads) and the 1-minute load average before and after, so a wall time
stretched by other work shows as wall >> CPU at a load above the core count.

    python benchmarks/bench_gptq_time.py [--images 256] [--size 224] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "gptq_time.json"


def measure(images: int, size: int) -> dict[str, float]:
    import onnx

    from asd import modelio, onnx_load, rounding
    from asd.quantize_model import quantize_model
    from asd.schemes import get_scheme
    from programs import seednets

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "resnet18.onnx"
        onnx.save(seednets.build("resnet18", size=size), str(path))
        model = modelio.load(path)
        x = np.random.default_rng(0).standard_normal((images, 3, size, size)).astype(np.float32)
        load0 = _load()
        t0, c0 = time.perf_counter(), time.process_time()
        with onnx_load.as_file(model.proto) as loaded:  # the weight names quantize uses
            cal = rounding.collect_stats(loaded, x)
        t1, c1 = time.perf_counter(), time.process_time()
        quantize_model(model, get_scheme("asd2"), rounding="gptq+bias", calibration=cal)
        t2, c2 = time.perf_counter(), time.process_time()
    return {"weights_m": round(sum(w.size for w in model.weights.values()) / 1e6, 2),
            "images": images, "size": size, "statistics_s": round(t1 - t0, 1),
            "rounding_s": round(t2 - t1, 1), "total_s": round(t2 - t0, 1),
            "statistics_cpu_s": round(c1 - c0, 1), "rounding_cpu_s": round(c2 - c1, 1),
            "cores": os.cpu_count() or 0, "load_average_1min": [load0, _load()]}


def _load() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256,
                    help="calibration images (default 256, asd quantize's)")
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    ap.add_argument("--out", type=Path, default=OUT, help=f"JSON (default {OUT.name})")
    args = ap.parse_args(argv)
    r = measure(args.images, args.size) | {"machine": platform.machine(), "goal_s": 120}
    print(f"ResNet-18 {r['size']}x{r['size']}, {r['weights_m']} M weights, {r['images']} "
          f"calibration images: statistics {r['statistics_s']} s, GPTQ + bias correction "
          f"{r['rounding_s']} s, total {r['total_s']} s (goal < {r['goal_s']} s); CPU time "
          f"{r['statistics_cpu_s']} + {r['rounding_cpu_s']} s on {r['cores']} cores, load "
          f"average {r['load_average_1min'][0]} -> {r['load_average_1min'][1]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

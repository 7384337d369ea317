"""Weight-only output fidelity of every shipped MNIST-family model under each rounding.

For each model: its own test split (the first ``--limit`` images) and training split (the first
``--calib`` images, for the data-driven roundings), weights quantized per output channel with
the MSE-optimal scale, float activations, onnxruntime: the output SQNR against the float model,
top-1 and top-1 agreement with float, exactly as ``asd eval MODEL --json`` measures them. The
points (scheme / rounding):

* ``asd2``: ``nearest``, ``bias``, ``gptq``, ``gptq+bias`` (error-compensating rounding);
* ``int6``, ``int8``: ``nearest`` and ``gptq+bias`` (the same compensation for the baselines);
* ``int7``: ``nearest`` (the stretch target).

docs/quantizers.md's rounding table is generated from the output (``python -m
benchmarks.tables``).

    python benchmarks/bench_rounding.py          # writes benchmarks/results/rounding.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asd import datasets, evaluate  # noqa: E402

MODELS_DIR = ROOT / "asd" / "data" / "models"
MODELS = ["mnist_lenet", "digits_cnn", "mnist_alexnet", "mnist_squeezenet", "mnist_vgg",
          "mnist_resnet18"]
# (schemes, roundings): one evaluate() call each, so no point is measured that is not shown.
POINTS = [(["asd2"], ["nearest", "bias", "gptq", "gptq+bias"]),
          (["int6", "int8"], ["nearest", "gptq+bias"]),
          (["int7"], ["nearest"])]
KEEP = ("top1", "agreement", "sqnr_db", "kl", "bits_per_weight")


def measure(model: str, limit: int, calib: int) -> dict[str, Any]:
    path = MODELS_DIR / f"{model}.onnx"
    meta = json.loads(path.with_suffix(".json").read_text())
    data = datasets.load(meta["dataset"])
    x, y = data.x_test[:limit], data.y_test[:limit]
    cal = data.x_train[:calib]
    out: dict[str, Any] = {"dataset": meta["dataset"], "images": int(len(x)),
                           "calibration_images": int(len(cal)), "points": {}}
    t0 = time.perf_counter()
    for schemes, roundings in POINTS:
        res = evaluate.evaluate(path, x, y, ["float", *schemes], roundings=roundings,
                                calib_x=cal)
        out["float_top1"] = res[0].top1
        for r in res[1:]:
            out["points"][f"{r.scheme}/{r.rounding}"] = {k: getattr(r, k) for k in KEEP}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated shipped models")
    ap.add_argument("--limit", type=int, default=500, help="test images per model")
    ap.add_argument("--calib", type=int, default=256, help="calibration images (training split)")
    ap.add_argument("-o", "--out", default=str(ROOT / "benchmarks" / "results" / "rounding.json"))
    args = ap.parse_args(argv)
    models = {}
    for m in [s.strip() for s in args.models.split(",") if s.strip()]:
        models[m] = measure(m, args.limit, args.calib)
        pts = models[m]["points"]
        print(f"{m}: asd2 nearest {pts['asd2/nearest']['sqnr_db']:.2f} dB, gptq+bias "
              f"{pts['asd2/gptq+bias']['sqnr_db']:.2f} dB, int6 nearest "
              f"{pts['int6/nearest']['sqnr_db']:.2f} dB ({models[m]['seconds']} s)", flush=True)
    res = {"benchmark": "bench_rounding", "granularity": "channel", "scale": "mse",
           "activations": "float", "python": platform.python_version(), "models": models}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Retrain-less accuracy of every shipped model under every scheme, as one JSON file.

For each model in ``asd/data/models`` (or ``--models``): its own test split, weights quantized
per output channel with the MSE-optimal scale, no retraining, every stored bit counted (the same
as ``asd eval MODEL --json``), and the size of the ASD codes with a 4-bit exponent field
(E = 4, 10-bit codes: the hardware study's other operating point). Then the model compiled
for the accelerator at the shipped configuration (``AccelConfig()``: ASD weights, 8-bit
activations calibrated on 64 training images, as ``asd demo``) and its top-1 on the whole test
split: every image through the integer reference, the first one also on the fast emulator and
required to agree bit for bit (``asd demo`` runs them all on the emulator). The README's and
docs/benchmarks.md's accuracy tables are generated from the output (``python -m
benchmarks.tables``).

Run: ``python benchmarks/bench_accuracy.py`` (writes ``benchmarks/results/accuracy.json``).
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

from asd import datasets, evaluate, modelio, schemes  # noqa: E402
from asd.quantize_model import quantize_model  # noqa: E402
from contract.config import AccelConfig  # noqa: E402
from programs import manifest, runtime  # noqa: E402

MODELS_DIR = ROOT / "asd" / "data" / "models"
MODELS = ["mnist_lenet", "digits_cnn", "mnist_alexnet", "mnist_vgg", "mnist_resnet18",
          "mnist_squeezenet"]
SCHEMES = ["float", "asd2", "pot", "int8", "int6", "int4", "fp8-e4m3", "fp8-e5m2"]
CALIBRATION_IMAGES = 64


def on_accelerator(name: str, data: datasets.Dataset) -> dict[str, Any]:
    """Top-1 of the model compiled at the shipped configuration."""
    config = AccelConfig()
    net = manifest.compile_model(MODELS_DIR / f"{name}.onnx", config,
                                 calib=data.x_train[:CALIBRATION_IMAGES])
    rep = runtime.run(net, data.x_test, emulate="first")  # raises unless bit-exact
    top1 = evaluate.topk_accuracy(rep.output.reshape(len(data.x_test), -1), data.y_test, 1)
    return {"top1": top1, "cycles_per_image": rep.cycles_per_image,
            "lanes": config.lanes, "act_bits": config.act_bits, "exp_bits": config.exp_bits,
            "pe": config.pe, "calibration_images": CALIBRATION_IMAGES,
            "emulated_images": 1, "bit_exact": True}


def measure(name: str, names: list[str]) -> dict[str, Any]:
    meta = json.loads((MODELS_DIR / f"{name}.json").read_text())
    data = datasets.load(meta["dataset"])
    t0 = time.perf_counter()
    res = evaluate.evaluate(MODELS_DIR / f"{name}.onnx", data.x_test, data.y_test, names)
    e4 = quantize_model(modelio.load(MODELS_DIR / f"{name}.onnx"),
                        schemes.get_scheme("asd2", exp_bits=4))
    return {"dataset": data.name, "images": int(len(data.x_test)),
            "seconds": time.perf_counter() - t0,
            "schemes": {r.scheme: r.as_dict() for r in res},
            "asd2_exp_bits_4_size": {"bits_per_weight": e4.weight_bits_per_weight,
                                     "size_reduction": e4.reduction},
            "accelerator": on_accelerator(name, data)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("-o", "--output", type=Path,
                    default=ROOT / "benchmarks" / "results" / "accuracy.json")
    args = ap.parse_args(argv)
    names = args.schemes.split(",")
    models: dict[str, dict[str, Any]] = {}
    for name in args.models.split(","):
        rec = models[name] = measure(name, names)
        top1 = ", ".join(f"{k} {v['top1']:.1f}" for k, v in rec["schemes"].items())
        print(f"{name}: {top1}; accelerator {rec['accelerator']['top1']:.1f}", flush=True)
    out = {"granularity": "channel", "scale": "mse", "retraining": False,
           "python": platform.python_version(), "models": models}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

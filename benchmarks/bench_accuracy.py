"""Retrain-less accuracy of every shipped model under every scheme, as one JSON file.

For each model in ``asd/data/models`` (or ``--models``): its own test split, weights quantized
per output channel with the MSE-optimal scale, no retraining, every stored bit counted (the same
as ``asd eval MODEL --json``), and the size of the ASD codes with a 4-bit exponent field
(E = 4, 10-bit codes: the hardware study's other operating point). The README's and
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asd import datasets, evaluate, modelio, schemes  # noqa: E402
from asd.quantize_model import quantize_model  # noqa: E402

MODELS_DIR = ROOT / "asd" / "data" / "models"
MODELS = ["mnist_lenet", "digits_cnn", "mnist_alexnet", "mnist_vgg", "mnist_resnet18",
          "mnist_squeezenet"]
SCHEMES = ["float", "asd2", "pot", "int8", "int6", "int4", "fp8-e4m3", "fp8-e5m2"]


def measure(name: str, names: list[str]) -> dict[str, object]:
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
                                     "size_reduction": e4.reduction}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("-o", "--output", type=Path,
                    default=ROOT / "benchmarks" / "results" / "accuracy.json")
    args = ap.parse_args(argv)
    names = args.schemes.split(",")
    out: dict[str, object] = {
        "granularity": "channel", "scale": "mse", "retraining": False,
        "python": platform.python_version(), "models": {}}
    for name in args.models.split(","):
        rec = measure(name, names)
        out["models"][name] = rec  # type: ignore[index]
        s = rec["schemes"]
        print(f"{name}: " + ", ".join(f"{k} {v['top1']:.1f}" for k, v in s.items()),  # type: ignore[attr-defined]
              flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

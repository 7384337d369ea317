"""Weight SQNR of each scheme under each scale choice: the measurement behind the default
``asd quantize --granularity channel --scale mse``.

The weights are ResNet-18's conv and fc shapes with the channel counts divided by ``--shrink``
(default 4), Laplace-distributed with a spread drawn per output channel (the generator of
``bench_quantize.py``). Every scheme quantizes them as ``asd quantize`` does (nearest rounding,
the default scale format), per output channel and per tensor, with the ``max``, ``pow2`` and
``mse`` scales; the figure is the SQNR (dB) of all the weights together, and the bits per
weight with every stored bit counted. docs/quantizers.md's scale table is generated from the
output (``python -m benchmarks.tables``).

    python benchmarks/bench_scales.py            # writes benchmarks/results/scales.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asd import modelio  # noqa: E402
from asd.quantize_model import error_stats, quantize_model  # noqa: E402
from asd.schemes import get_scheme  # noqa: E402
from benchmarks.bench_quantize import make_weights, resnet18_shapes  # noqa: E402

# label -> (scheme name, options), in the table's order
SCHEMES: dict[str, tuple[str, dict[str, object]]] = {
    "asd K=2 E=3": ("asd2", {}),
    "asd K=2 E=3 (csd conversion)": ("asd2", {"conversion": "csd"}),
    "pot E=3": ("pot", {}),
    "int8": ("int8", {}),
    "int4": ("int4", {}),
    "fp8 e4m3": ("fp8-e4m3", {}),
    "shiftcnn N=2": ("shiftcnn", {"terms": 2}),
}
GRANULARITIES = ("channel", "tensor")
SCALES = ("max", "pow2", "mse")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shrink", type=int, default=4, help="divide channel counts by this")
    ap.add_argument("--schemes", default=",".join(SCHEMES),
                    help="comma-separated labels (default: all)")
    ap.add_argument("-o", "--out", default=str(ROOT / "benchmarks" / "results" / "scales.json"))
    args = ap.parse_args(argv)
    shapes = resnet18_shapes(args.shrink)
    _, layers = make_weights(shapes)
    model = modelio.Model("resnet18-shaped laplace",
                          weights={f"w{i}": w.reshape(s) for i, (w, s) in
                                   enumerate(zip(layers, shapes))})
    every = np.concatenate([w.reshape(-1) for w in model.weights.values()])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label in [s.strip() for s in args.schemes.split(",") if s.strip()]:
        name, options = SCHEMES[label]
        out[label] = {}
        for gran in GRANULARITIES:
            for scale in SCALES:
                t0 = time.perf_counter()
                qm = quantize_model(model, get_scheme(name, **options), gran, scale)
                deq = np.concatenate([qm.results[k].dequant.reshape(-1) for k in model.weights])
                _, sqnr = error_stats(every, deq)
                bits = sum(r.size.bits_per_weight * np.prod(r.shape) for r in qm.reports)
                out[label][f"{gran}/{scale}"] = {
                    "sqnr_db": sqnr, "bits_per_weight": float(bits / every.size),
                    "seconds": round(time.perf_counter() - t0, 2)}
                print(f"{label:30s} {gran:8s} {scale:5s} {sqnr:6.2f} dB", flush=True)
    res = {"benchmark": "bench_scales", "shrink": args.shrink, "weights": int(every.size),
           "layers": len(shapes), "rounding": "nearest", "numpy": np.__version__,
           "python": platform.python_version(), "schemes": out}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

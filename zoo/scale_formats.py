"""Scale formats measured against size and error (issue 24 part 4): the study behind the
default of ``asd quantize --scale-format`` and ``--bias-format``.

    python -m zoo.scale_formats [--sizes] [--sqnr] [--images N] [--json OUT]

* ``--sizes``: for every shipped model, the PP-OCR classifier (``python -m zoo.paddle_ocr_cls``
  fetches it) and every seed network at 224x224 (``programs.seednets``, random weights: size
  does not depend on them), ASD-2 with per-channel MSE scales in each scale format, with
  float16 and float32 biases: the size cut against float32, every stored bit counted (packed
  codes, the format's scale fields, biases, other arrays).
* ``--sqnr``: weight-only output SQNR (dB, float activations, onnxruntime) against the float
  model, as ``asd eval`` measures it, on the first ``--images`` test images of each shipped
  model's data set and on standard-normal inputs for the PP-OCR classifier (no data set ships
  for it; its outputs are softmax probabilities).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from asd import modelio, scale_formats
from asd.quantize_model import BIAS_FORMATS, store_bias
from asd.schemes import get_scheme

MODELS = Path(__file__).resolve().parent.parent / "asd" / "data" / "models"
PPOCR = Path.home() / ".cache" / "asd-zoo" / "rapidocr" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def networks(ppocr: Path, tmp: Path) -> list[tuple[str, Path]]:
    import onnx

    from programs import seednets

    nets = [(p.stem, p) for p in sorted(MODELS.glob("*.onnx"))]
    nets.append(("ppocr_cls (real)", ppocr))
    for name in seednets.NETS + seednets.MOBILENETS:
        path = tmp / f"{name}.onnx"
        onnx.save(seednets.build(name), str(path))
        nets.append((f"{name} 224", path))
    return nets


def sizes(path: Path, scheme: str = "asd2") -> dict[str, float]:
    """Size cut per (scale format, bias format), tensor by tensor (big nets fit in memory)."""
    model = modelio.load(path)
    sch = get_scheme(scheme)
    weights = sum(w.size for w in model.weights.values())
    f32 = 32 * (weights + sum(b.size for b in model.biases.values()))
    others = sum(8 * a.nbytes for a in model.others.values())
    f32 += others
    bias = {bf: sum(8 * store_bias(b, bf).nbytes for b in model.biases.values())
            for bf in BIAS_FORMATS}
    out: dict[str, float] = {}
    for fmt in scale_formats.FORMATS:
        bits = 0
        for name, w in model.weights.items():
            r = sch.quantize(w, "channel", "mse", model.channel_axis[name], scale_format=fmt)
            bits += r.size.total_bits
            del r
        out[f"{fmt} bits/w"] = bits / weights
        for bf in BIAS_FORMATS:
            out[f"{fmt}+{bf}"] = 100 * (1 - (bits + bias[bf] + others) / f32)
    return out


def sqnr(path: Path, images: int, formats: list[tuple[str, str]]) -> dict[str, float]:
    from asd import datasets
    from asd.evaluate import evaluate

    side = path.with_suffix(".json")
    meta = json.loads(side.read_text()) if side.exists() else {}
    if "dataset" in meta:
        data = datasets.load(meta["dataset"])
        x, y = data.x_test[:images], data.y_test[:images]
    else:  # the PP-OCR classifier: 3 x 48 x 192 inputs, no labels
        x = np.random.default_rng(0).standard_normal((images, 3, 48, 192)).astype(np.float32)
        y = np.zeros(images, np.int64)
    out = {}
    for fmt, bf in formats:
        res = evaluate(path, x, y, ["asd2"], scale_format=fmt, bias_format=bf)[1]
        out[f"{fmt}+{bf}"] = float(res.sqnr_db) if res.sqnr_db is not None else float("inf")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", action="store_true")
    p.add_argument("--sqnr", action="store_true")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--ppocr", default=str(PPOCR), help="the PP-OCR classifier's .onnx")
    p.add_argument("--only", nargs="*", help="network names to keep (default: all)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    result: dict[str, Any] = {"sizes": {}, "sqnr": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in networks(Path(args.ppocr), Path(tmp)):
            if args.only and name.split()[0] not in args.only:
                continue
            if args.sizes:
                s = sizes(path)
                result["sizes"][name] = s
                print(f"size  {name:<26} " + "  ".join(f"{k} {v:.2f}" for k, v in s.items()),
                      flush=True)
            if args.sqnr and " 224" not in name:
                forms = [(f, "fp16") for f in scale_formats.FORMATS] + [("fp16", "fp32")]
                q = sqnr(path, args.images, forms)
                result["sqnr"][name] = q
                print(f"sqnr  {name:<26} " + "  ".join(f"{k} {v:.2f}" for k, v in q.items()),
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

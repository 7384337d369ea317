"""``asd quantize``: quantize a model's weights and write codes, scales and dequantized floats."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asd import modelio, onnx_load, rounding, scale_formats
from asd.quantize_model import BIAS_FORMATS, DEFAULT_BIAS_FORMAT, format_table, quantize_model, save
from asd.schemes import get_scheme

EPILOG = """\
examples:
  asd quantize model.onnx -o model_asd.npz
      ASD, 2 digits, 3 exponent bits (8-bit codes the accelerator runs), per-channel
      MSE-optimal scales: the defaults.
  asd quantize weights.npz -o w_pot.npz --scheme pot --exp-bits 3
      one-digit power of two (4-bit codes) for comparison.
  asd quantize weights.npz -o w_int8.npz --scheme int --bits 8 --granularity tensor --scale max
      classic per-tensor INT8.
  asd quantize weights.npz -o w_fp8.npz --scheme fp --fp-format e4m3 --scale max
      FP8 E4M3 with a max-abs scale.
  asd quantize asd/data/models/mnist_vgg.onnx -o vgg_asd.npz --rounding gptq
      error-compensating rounding: each layer's rounding error is pushed onto the inputs not
      yet rounded through the inverse input Hessian of 256 calibration images (the model's
      training split; --dataset for another).  Corrected biases are stored with --rounding bias.

rounding (ONNX models only for bias/gptq: the layer inputs come from running the float model;
the default, auto, picks gptq+bias when the model is ONNX and --dataset or its JSON sidecar
names a data set, nearest otherwise, and says which):
  nearest  every weight to its nearest code (no data needed)
  bias     nearest, then the mean output shift on the calibration images is taken out of the
           bias (Nagel et al. 2019, data-free quantization's bias correction)
  gptq     columns rounded in order, errors compensated through H^-1, H = X^T X of the layer
           inputs (Frantar et al. 2022, GPTQ / OBQ); scales are chosen first and kept
  gptq+bias  gptq, then bias correction of the mean shift it leaves (best measured: see
           docs/quantizers.md)

what is stored: OUT.npz holds, for every weight tensor NAME, NAME (dequantized float32),
NAME.codes (packed codes, uint8), NAME.scale (the decoded scales, float16) and the scale
format's fields (NAME.scale_base, NAME.scale_codes, ...); biases float16 (--bias-format).
OUT.json records the scheme, options, formats and per-tensor sizes.  Weights are: in ONNX,
initializers used as the weight of Conv/Gemm/MatMul; in .npz, every float array with 2 or
more dimensions.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="quantize a model's weights (ASD or a baseline) without retraining",
        description=(
            "Quantize every weight tensor of MODEL to scale * v, v from the chosen number "
            "system, print a per-tensor table (bits per weight with scales, relative L2 error, "
            "SQNR) and the size saved against float32."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="trained model: .onnx or .npz of named arrays")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                   help="output archive (a sidecar OUT.json is written next to it)")
    p.add_argument("--scheme", default="asd", choices=["asd", "pot", "int", "fp", "shiftcnn"],
                   help="number system (default: asd)")
    p.add_argument("--digits", type=int, default=2, metavar="K",
                   help="asd: non-zero signed digits per weight (default: 2)")
    p.add_argument("--exp-bits", type=int, default=3, metavar="E",
                   help="asd/pot/shiftcnn: digit positions span a window of 2**E (default: 3)")
    p.add_argument("--conversion", default="nearest", choices=["nearest", "csd"],
                   help="asd: nearest codebook value, or the published CSD truncation")
    p.add_argument("--bits", type=int, default=8, help="int: bits per weight (default: 8)")
    p.add_argument("--terms", type=int, default=2, help="shiftcnn: power-of-two terms")
    p.add_argument("--fp-format", default="e4m3", metavar="FMT",
                   help="fp: e4m3, e5m2 or any eXmY (default: e4m3)")
    p.add_argument("--granularity", default="channel", choices=["tensor", "channel"],
                   help="one scale per tensor or per output channel (default: channel)")
    p.add_argument("--scale", default="mse", choices=["max", "mse", "pow2"],
                   help="max-abs, MSE-optimal search, or power of two (default: mse)")
    p.add_argument("--scale-format", default=scale_formats.DEFAULT,
                   choices=list(scale_formats.FORMATS),
                   help="how scales are stored: fp16 each, log8 (8-bit log code under a "
                        "float16 base), shared-exp (float16 mantissa, per-channel exponents), "
                        "pow2 (a shift) (default: %(default)s; docs/quantizers.md)")
    p.add_argument("--bias-format", default=DEFAULT_BIAS_FORMAT, choices=list(BIAS_FORMATS),
                   help="how biases are stored (default: %(default)s; a tensor float16 "
                        "cannot hold stays float32)")
    p.add_argument("--rounding", default="auto", choices=["auto", *rounding.ROUNDINGS],
                   help="how weights are rounded onto the codes at the chosen scales "
                        "(default: auto = gptq+bias, the best measured, for an ONNX model "
                        "with a known calibration set, else nearest; see below)")
    p.add_argument("--dataset", help="bias/gptq: calibration data, mnist5k | digits | "
                                     "imagefolder:DIR (default: the model's JSON sidecar's)")
    p.add_argument("--calib", type=int, default=256, metavar="N",
                   help="bias/gptq: calibration images (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the table")
    p.set_defaults(func=run)


def _scheme_options(args: argparse.Namespace) -> dict:
    if args.scheme == "asd":
        return {"digits": args.digits, "exp_bits": args.exp_bits, "conversion": args.conversion}
    if args.scheme == "pot":
        return {"exp_bits": args.exp_bits}
    if args.scheme == "int":
        return {"bits": args.bits}
    if args.scheme == "shiftcnn":
        return {"terms": args.terms, "exp_bits": args.exp_bits}
    return {"format": args.fp_format}


def _calibration(args: argparse.Namespace, model: modelio.Model) -> rounding.Calibration:
    from asd_cli.evaluate import load_dataset
    from asd_cli.main import UserError

    path = Path(args.model)
    if path.suffix.lower() != ".onnx":
        raise UserError(f"--rounding {args.rounding} needs an ONNX model (the layer inputs "
                        f"come from running it); {path.name} is not one")
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text()) if side.exists() else {}
    args.size = args.limit = None
    data = load_dataset(args.dataset, meta, args)
    x = data.x_train if len(data.x_train) else data.x_test
    if args.calib < 1:
        raise UserError("--calib must be at least 1")
    with onnx_load.as_file(model.proto) as loaded:  # the graph whose weight names quantize uses
        return rounding.collect_stats(loaded, x[: args.calib])


def run(args: argparse.Namespace) -> int:
    from asd_cli.main import UserError

    try:
        scheme = get_scheme(args.scheme, **_scheme_options(args))
    except ValueError as exc:  # get_scheme's documented refusal of a name or an option
        raise UserError(str(exc)) from None
    out = Path(args.output)
    if out.exists() and out.is_dir():
        raise UserError(f"{out}: is a directory, expected an output .npz path")
    if args.rounding == "auto":
        side = Path(args.model).with_suffix(".json")
        known = args.dataset or (side.exists() and "dataset" in json.loads(side.read_text()))
        onnx_model = Path(args.model).suffix.lower() == ".onnx"
        args.rounding = "gptq+bias" if onnx_model and known else "nearest"
        if not args.quiet and onnx_model and not known:
            print("rounding: nearest (no calibration data known; --dataset for gptq+bias)")
    try:
        model = modelio.load(args.model)
        cal = _calibration(args, model) if args.rounding != "nearest" else None
        qm = quantize_model(model, scheme, args.granularity, args.scale, args.rounding, cal,
                            scale_format=args.scale_format, bias_format=args.bias_format)
        npz, side = save(qm, out)
    except modelio.ModelError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{out}: cannot write ({exc.strerror or exc})") from None
    if not args.quiet:
        print(format_table(qm))
        if cal is not None:
            print(f"calibrated on {cal.images} images")
        print(f"wrote {npz} and {side}")
    return 0

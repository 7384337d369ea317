"""`asd eval`: retrain-less accuracy of a model under each quantization scheme."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from asd.rounding import ROUNDINGS
from asd_cli.main import UserError, require_counts

MODELS_DIR = Path(__file__).resolve().parent.parent / "asd" / "data" / "models"


def resolve_model(name: str) -> tuple[Path, dict[str, Any]]:
    """A path, or the name of a shipped model; returns the path and its JSON sidecar (or {})."""
    p = Path(name)
    if not p.exists() and (MODELS_DIR / f"{name}.onnx").exists():
        p = MODELS_DIR / f"{name}.onnx"
    if not p.exists():
        shipped = ", ".join(sorted(q.stem for q in MODELS_DIR.glob("*.onnx")))
        raise UserError(f"{name}: no such model file (shipped models: {shipped})")
    side = p.with_suffix(".json")
    try:
        meta = json.loads(side.read_text()) if side.exists() else {}
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{side}: the model's sidecar is not readable JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{side}: expected a JSON object in the model's sidecar, found "
                        f"{type(meta).__name__}")
    return p, meta


def load_dataset(spec: str | None, meta: dict[str, Any], args: argparse.Namespace) -> Any:
    from asd import datasets

    spec = spec or meta.get("dataset")
    if not spec:
        raise UserError(f"{getattr(args, 'model', 'the model')}: no --dataset given and no JSON "
                        "sidecar beside the model names one (expected --dataset mnist5k, "
                        "digits or imagefolder:DIR)")
    kw: dict[str, Any] = {}
    if spec.startswith("imagefolder:"):
        for key in ("size", "limit"):
            if getattr(args, key, None):
                kw[key] = getattr(args, key)
    try:
        return datasets.load(spec, **kw)
    # asd.datasets refuses a spec with ValueError (not yet an AsdError) and passes on what
    # reading the user's files raises.
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        raise UserError(f"dataset {spec}: {exc}") from None


def check_input_shape(path: Path, x: Any, dataset: str) -> None:
    """Refuse a data set whose images are not the shape the model declares for its input
    (the batch dimension and any symbolic one aside), before onnxruntime fails deep inside."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except (OSError, ValueError, DecodeError):
        return  # not a readable model: the evaluation says so in its own terms
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if not inputs:
        return
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    got = tuple(x.shape)
    if len(dims) != len(got) or any(d is not None and d != g for d, g in zip(dims[1:], got[1:])):
        want = " x ".join("?" if d is None else str(d) for d in dims[1:])
        raise UserError(f"{path}: input '{inputs[0].name}' expects images of {want}, data set "
                        f"{dataset} gives {' x '.join(map(str, got[1:]))}")


def cmd_eval(args: argparse.Namespace) -> int:
    from asd import evaluate, modelio
    from asd_cli import progress

    require_counts(args, "limit", "calib", "size")
    path, meta = resolve_model(args.model)
    data = load_dataset(args.dataset, meta, args)
    x, y = data.x_test, data.y_test
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    check_input_shape(path, x, data.name)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    roundings = [r.strip() for r in args.rounding.split(",") if r.strip()]
    bad = [r for r in roundings if r not in ROUNDINGS]
    if bad:
        raise UserError(f"--rounding {bad[0]!r}: use one or more of {', '.join(ROUNDINGS)}")
    calib = None
    if any(r != "nearest" for r in roundings):
        calib = data.x_train[: args.calib] if len(data.x_train) else x[: args.calib]
        if not len(data.x_train):
            print(f"note: {data.name} has no training split; calibrating on the first "
                  f"{len(calib)} test images", flush=True)
    fp8 = [s for s in schemes if s in evaluate.FP8_TYPES]  # they take one rounding only
    runs = 1 + len(fp8) + (len(schemes) - len(fp8) - schemes.count("float")) * len(roundings)

    with progress.bar("eval", len(x) * runs, quiet=args.json) as bar:
        def step(name: str, k: int) -> None:
            bar.set_description(f"eval {name}", refresh=False)
            bar.update(k)

        try:
            results = evaluate.evaluate(path, x, y, schemes, granularity=args.granularity,
                                        scale=args.scale, progress=step, roundings=roundings,
                                        calib_x=calib)
        except modelio.ModelError as exc:
            raise UserError(str(exc)) from None
    if args.report:
        html = write_report(args.report, path, data.name, len(x), results)
        if not args.json:
            print(f"wrote {html}", flush=True)
    if args.json:
        print(json.dumps({"model": str(path), "dataset": data.name, "images": int(len(x)),
                          "calibration_images": 0 if calib is None else int(len(calib)),
                          "schemes": {(r.scheme if r.rounding == "nearest"
                                       else f"{r.scheme}/{r.rounding}"): r.as_dict()
                                      for r in results}}, indent=2))
    else:
        print(f"{path.name} on {data.name} ({len(x)} test images), weights quantized "
              f"per {args.granularity}, scale {args.scale}, no retraining"
              + (f", {len(calib)} calibration images" if calib is not None else "") + "\n")
        print(evaluate.format_table(results, layers=args.layers))
        for r in results:
            for n in r.notes:
                print(f"note ({r.scheme}/{r.rounding}): {n}")
    return 0


def _short(name: str) -> str:
    return name if len(name) <= 28 else "..." + name[-25:]


def write_report(out_dir: str, model: Path, dataset: str, images: int,
                 results: list[Any]) -> Path:
    """The HTML report of an eval run: accuracy and fidelity per scheme and rounding, and the
    output SQNR of every weight layer per scheme (the figures come in as the JSON's data)."""
    from asd_cli import report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{**r.as_dict(), "scheme": r.scheme if r.rounding == "nearest"
             else f"{r.scheme}/{r.rounding}"} for r in results]
    quantized = [r for r in rows if r["layer_sqnr_db"]]
    layers = list(quantized[0]["layer_sqnr_db"]) if quantized else []
    figures = {}
    report.accuracy_figure(out / "accuracy.png", rows)
    figures["Top-1 per scheme"] = "accuracy.png"
    if layers:
        sqnr = {r["scheme"]: [r["layer_sqnr_db"].get(n, float("nan")) for n in layers]
                for r in quantized}
        report.layer_error_figure(out / "layer_sqnr.png", [_short(n) for n in layers], sqnr)
        figures["Output SQNR of every weight layer (the last is the network's output)"] = (
            "layer_sqnr.png")
    summary = {"title": f"asd eval: {model.name} on {dataset}",
               "subtitle": f"{images} test images; weights quantized with no retraining, "
                           "measured against the float model on the same images",
               "accuracy": rows, "fidelity": rows,
               "layer_sqnr_db": {r["scheme"]: r["layer_sqnr_db"] for r in quantized}}
    return report.write(out, summary, figures)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval", help="accuracy of a model under each quantization scheme, no retraining",
        description="Quantize the model's weights with each scheme and rounding (no "
                    "retraining) and measure, with onnxruntime against the float model on the "
                    "same images: top-1/top-5 accuracy, top-1 agreement with float, output "
                    "SQNR (dB) and softmax KL divergence, and (--layers) the SQNR of every "
                    "weight layer's output. When top-1 saturates, SQNR and KL still tell "
                    "schemes apart. The fp8 schemes quantize all parameters and every feature "
                    "map (nearest rounding only).",
        epilog="examples:\n"
               "  asd eval mnist_lenet\n"
               "  asd eval mnist_resnet18 --schemes float,asd2,int8 --json\n"
               "  asd eval mnist_vgg --schemes asd2,int6 --rounding nearest,gptq --layers\n"
               "  asd eval model.onnx --dataset imagefolder:/data/imagenet/val --size 224",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an .onnx file, or the name of a shipped model "
                                 "(mnist_lenet, digits_cnn, mnist_resnet18, ...)")
    p.add_argument("--dataset", help="mnist5k | digits | imagefolder:DIR (default: the one "
                                     "the shipped model was trained on)")
    p.add_argument("--schemes", default="float,asd2,pot,int8,int6,int4,fp8-e4m3,fp8-e5m2",
                   help="comma-separated schemes (default: %(default)s)")
    p.add_argument("--granularity", choices=["channel", "tensor"], default="channel")
    p.add_argument("--scale", choices=["mse", "max", "pow2"], default="mse",
                   help="scale choice (default: %(default)s)")
    p.add_argument("--rounding", default="nearest", metavar="R[,R...]",
                   help="nearest | bias (bias correction, Nagel et al. 2019) | gptq "
                        "(second-order, Frantar et al. 2022) | gptq+bias; several comma-separated "
                        "(default: %(default)s)")
    p.add_argument("--calib", type=int, default=256, metavar="N",
                   help="bias/gptq: calibration images, the first N of the training split "
                        "(default: %(default)s)")
    p.add_argument("--layers", action="store_true",
                   help="also print the per-layer output SQNR table")
    p.add_argument("--limit", type=int, help="only the first N test images")
    p.add_argument("--size", type=int, help="imagefolder: input size (default 224)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", metavar="DIR",
                   help="also write an HTML report to DIR: accuracy and fidelity per scheme "
                        "and rounding, and a chart of every layer's output SQNR per scheme")
    p.set_defaults(func=cmd_eval)

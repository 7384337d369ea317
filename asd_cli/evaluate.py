"""`asd eval`: retrain-less accuracy of a model under each quantization scheme."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from asd_cli.main import UserError

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
    meta = json.loads(side.read_text()) if side.exists() else {}
    return p, meta


def load_dataset(spec: str | None, meta: dict[str, Any], args: argparse.Namespace) -> Any:
    from asd import datasets

    spec = spec or meta.get("dataset")
    if not spec:
        raise UserError("no --dataset given and the model has no JSON sidecar naming one")
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


def cmd_eval(args: argparse.Namespace) -> int:
    from asd import evaluate, modelio
    from asd_cli import progress

    path, meta = resolve_model(args.model)
    data = load_dataset(args.dataset, meta, args)
    x, y = data.x_test, data.y_test
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    runs = 1 + len([s for s in schemes if s != "float"])  # float always runs first

    with progress.bar("eval", len(x) * runs, quiet=args.json) as bar:
        def step(name: str, k: int) -> None:
            bar.set_description(f"eval {name}", refresh=False)
            bar.update(k)

        try:
            results = evaluate.evaluate(path, x, y, schemes, granularity=args.granularity,
                                        scale=args.scale, progress=step)
        except modelio.ModelError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps({"model": str(path), "dataset": data.name, "images": int(len(x)),
                          "schemes": {r.scheme: r.as_dict() for r in results}}, indent=2))
    else:
        print(f"{path.name} on {data.name} ({len(x)} test images), weights quantized "
              f"per {args.granularity}, scale {args.scale}, no retraining\n")
        print(evaluate.format_table(results))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval", help="accuracy of a model under each quantization scheme, no retraining",
        description="Quantize the model's weights with each scheme (no retraining) and measure "
                    "top-1/top-5 accuracy with onnxruntime. The fp8 schemes quantize all "
                    "parameters and every feature map.",
        epilog="examples:\n"
               "  asd eval mnist_lenet\n"
               "  asd eval mnist_resnet18 --schemes float,asd2,int8 --json\n"
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
    p.add_argument("--limit", type=int, help="only the first N test images")
    p.add_argument("--size", type=int, help="imagefolder: input size (default 224)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

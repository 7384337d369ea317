"""`asd demo`: the main job, end to end on a bundled model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from asd_cli.main import main as asd_main

EXAMPLE = Path(__file__).resolve().parent.parent / "asd" / "data" / "example_model.npz"


def cmd_demo(args: argparse.Namespace) -> int:
    out = args.out
    rc = asd_main(["quantize", str(EXAMPLE), "-o", f"{out}/example_asd.npz"])
    if rc:
        return rc
    extra = ["--json"] if args.json else []
    return asd_main(["eval", args.model, *extra])


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the main job on a bundled model",
                       description="Quantize the bundled example model with ASD and measure "
                                   "the retrain-less accuracy of a shipped model per scheme.")
    p.add_argument("--model", default="mnist_lenet", help="shipped model (default: %(default)s)")
    p.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_demo)

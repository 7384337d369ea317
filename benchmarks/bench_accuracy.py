"""Retrain-less accuracy of every shipped model under every scheme, as one JSON file, measured
as the sweep ``benchmarks/sweeps/accuracy.toml`` (one command, on one machine or a cluster).

For each model in ``asd/data/models`` (or ``--models``): its own test split, weights quantized
per output channel with the MSE-optimal scale, no retraining, every stored bit counted (the
``eval`` measure: the same as ``asd eval MODEL --json``), and the size of the ASD codes with a
4-bit exponent field (E = 4, 10-bit codes: the hardware study's other operating point,
computed here, it needs no data). Then the model compiled for the accelerator at the shipped
configuration (``AccelConfig()``: ASD weights, 8-bit activations calibrated on 64 training
images drawn by seed 0) and its top-1 on the whole test split (the ``run`` measure: every
image through the integer reference, the first one also on the fast emulator and required to
agree bit for bit). The README's and docs/benchmarks.md's accuracy tables are generated from
the output (``python -m benchmarks.tables``).

Every point is a task of ``asd sweep`` stored in a SQLite database as it finishes, so an
interrupted run resumes and a rerun only rebuilds the JSON:

    python benchmarks/bench_accuracy.py                      # embedded Dask, a worker a core
    python benchmarks/bench_accuracy.py --scheduler tcp://HOST:8786   # an existing cluster
    asd sweep benchmarks/sweeps/accuracy.toml --db out/sweep/accuracy.sqlite   # the same points

(writes ``benchmarks/results/accuracy.json``).
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

from asd import modelio, schemes  # noqa: E402
from asd.quantize_model import quantize_model  # noqa: E402
from asd_cli.sweep import runner  # noqa: E402
from asd_cli.sweep import spec as spec_mod  # noqa: E402
from asd_cli.sweep.store import Store  # noqa: E402
from contract.config import AccelConfig  # noqa: E402

MODELS_DIR = ROOT / "asd" / "data" / "models"
SPEC = ROOT / "benchmarks" / "sweeps" / "accuracy.toml"


def sweep_spec(models: list[str] | None, names: list[str] | None) -> spec_mod.Spec:
    """The accuracy spec, its models and eval schemes narrowed to ``models`` / ``names``."""
    sp = spec_mod.load(SPEC)
    if models:
        sp.values["model"] = list(models)
    if names:
        sp.values["scheme"] = [{"name": n} for n in names]
    return sp


def from_rows(rows: list[dict[str, Any]], calib: int) -> dict[str, Any]:
    """accuracy.json's ``models`` from the sweep's records (every one must be ok)."""
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} point(s) failed, e.g. {bad[0]['point']}: "
                         f"{bad[0]['error']} (rerun with --retry-failed)")
    models: dict[str, dict[str, Any]] = {}
    config = AccelConfig()
    for r in rows:
        pt, res = r["point"], r["result"]
        m = models.setdefault(pt["model"], {"dataset": pt["dataset"], "images": res["images"],
                                            "seconds": 0.0, "schemes": {}})
        m["seconds"] += r["seconds"]
        if r["measure"] == "eval":
            m["schemes"][pt["scheme"]["name"]] = {k: v for k, v in res.items()
                                                  if k not in ("float_top1", "images")}
        else:
            m["accelerator"] = {"top1": res["top1"], "cycles_per_image": res["cycles_per_image"],
                                "lanes": config.lanes, "act_bits": config.act_bits,
                                "exp_bits": config.exp_bits, "pe": config.pe,
                                "rounding": pt.get("rounding", "nearest"),
                                "calibration_images": calib, "emulated_images": 1,
                                "bit_exact": True}
    for name, m in models.items():
        e4 = quantize_model(modelio.load(MODELS_DIR / f"{name}.onnx"),
                            schemes.get_scheme("asd2", exp_bits=4))
        m["asd2_exp_bits_4_size"] = {"bits_per_weight": e4.weight_bits_per_weight,
                                     "size_reduction": e4.reduction}
    return models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated (default: the spec's)")
    ap.add_argument("--schemes", help="comma-separated eval schemes (default: the spec's)")
    ap.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    ap.add_argument("--workers", type=int, help="embedded cluster: worker processes")
    ap.add_argument("--db", type=Path, default=ROOT / "out" / "sweep" / "accuracy.sqlite")
    ap.add_argument("-o", "--output", type=Path,
                    default=ROOT / "benchmarks" / "results" / "accuracy.json")
    args = ap.parse_args(argv)
    sp = sweep_spec(args.models.split(",") if args.models else None,
                    args.schemes.split(",") if args.schemes else None)
    version = runner.project_version()
    tasks, inputs = runner.plan(sp, spec_mod.points(sp), version)
    t0 = time.perf_counter()

    def show(t: runner.Task, rec: dict[str, Any], o: runner.Outcome) -> None:
        pt = t.point
        fig = (f"top-1 {rec['result']['top1']:.1f}" if rec["status"] == "ok"
               else rec["error"])
        print(f"[{o.executed}/{o.points - o.skipped}] {pt['measure']} {pt['model']} "
              f"{pt['scheme']['name']}: {fig} ({rec['seconds']:.0f} s)", flush=True)

    with Store(args.db) as store:
        out = runner.execute(tasks, inputs, store, version, scheduler=args.scheduler,
                             workers=args.workers, on_result=show,
                             workdir=args.db.with_suffix(""))
        rows = store.rows([t.key for t in tasks])
    models = from_rows(rows, sp.measures["run"]["calib"])
    for name, rec in models.items():
        top1 = ", ".join(f"{k} {v['top1']:.1f}" for k, v in rec["schemes"].items())
        print(f"{name}: {top1}; accelerator {rec['accelerator']['top1']:.1f}", flush=True)
    doc = {"granularity": sp.measures["eval"]["granularity"], "scale": sp.measures["eval"]["scale"],
           "retraining": False, "python": platform.python_version(), "sweep": str(SPEC.name),
           "models": models}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{out.points} points ({out.skipped} already in {args.db}) in "
          f"{time.perf_counter() - t0:.0f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

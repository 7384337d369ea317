"""``asd sweep``: argument parsing, progress and printing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  asd sweep sweep.toml                        # embedded cluster, one worker per core
  asd sweep sweep.toml --workers 1 --db out/a.sqlite
  asd sweep sweep.toml --scheduler tcp://10.0.0.5:8786   # an existing Dask cluster
  asd sweep sweep.toml --dry-run              # the points, and which are already done
  asd sweep sweep.toml --retry-failed --json  # rerun the failed points, print JSON
  asd sweep --report out/sweep/sweep.sqlite -o out/report   # HTML tables, Pareto plots

a spec (TOML):
  [axes]
  models = ["mnist_lenet"]            # shipped names or .onnx paths
  datasets = ["mnist5k"]              # default: the model's own
  limit = 200                         # the first N test images
  shards = 2                          # the images split in N shards, a point each
  schemes = ["float", "asd2", "int8"]
  roundings = ["nearest", "gptq"]     # eval, run (default: nearest for eval, gptq+bias for run)
  seeds = [0, 1]                      # calibration sample (eval with bias/gptq, run)
  configs = [{}, {lanes = 4, act_bits = 4}]   # accelerator fields over the defaults
  pe = ["shiftadd", "multiplier"]     # run; hwreport also int8, int8_booth, int8_array
  modes = ["pipelined", "carrysave"]  # hwreport
  [measures.eval]                     # asd eval figures: granularity, scale, calib, timeout
  [measures.run]                      # asd compile + asd run on the emulator: calib, timeout
  schemes = ["asd2", {name = "asd", conversion = "csd"}]  # an axis for this measure only
  [measures.hwreport]                 # target ("pe"/"core"), seeds, macs, timeout,
                                      # cells_only, networks (energy per inference)

Each measure runs on the product of the axes it reads (eval: models, datasets, shards,
schemes, roundings, seeds; run: models, datasets, shards, schemes, roundings, configs, pe,
seeds; hwreport: configs, pe, modes).  Every finished point is written at once to the SQLite
database (--db), keyed by a hash of the point, the measure's options (timeout aside), the
asd version and the contents of its model and images: a rerun skips what is done, an
interrupted sweep resumes, a failed point is kept with its error and rerun only with
--retry-failed.  See docs/sweep.md.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a grid of eval/run/hwreport points on Dask, "
                                     "resumable",
                       description="Run every point of a sweep specification as an "
                                   "independent task on Dask distributed (an embedded "
                                   "LocalCluster on 127.0.0.1, or an existing cluster), "
                                   "storing each result in SQLite as it finishes.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC.toml", nargs="?",
                   help="the sweep specification (not needed with --report)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler, e.g. tcp://HOST:8786 (default: start a "
                        "LocalCluster for this command and stop it after)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="embedded cluster: worker processes (default: one per core)")
    p.add_argument("--db", metavar="FILE",
                   help="the result database (default: out/sweep/SPEC.sqlite)")
    p.add_argument("--workdir", metavar="DIR",
                   help="hwreport scratch directory (default: beside the database)")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun the points recorded as failed")
    p.add_argument("--dry-run", action="store_true",
                   help="list the points and which are done; run nothing")
    p.add_argument("--json", action="store_true",
                   help="print the summary and every point's record as one JSON object")
    p.add_argument("--report", metavar="DB",
                   help="run nothing: write the points stored in DB as HTML tables and "
                        "Pareto plots (with --json, print them)")
    p.add_argument("-o", "--output", default="out/sweep/report", metavar="DIR",
                   help="--report: directory for index.html, its figures and results.json "
                        "(default: %(default)s)")
    p.add_argument("--dashboard", nargs="?", const="127.0.0.1:8787", metavar="ADDRESS",
                   help="serve Dask's dashboard (task stream, workers, progress) for the "
                        "embedded cluster at ADDRESS (default %(const)s) and print its link; "
                        "with --scheduler, print the existing cluster's link")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def _label(pt: dict[str, Any]) -> str:
    parts = []
    for k, v in pt.items():
        if k == "measure" or v is None:
            continue
        if k == "scheme":
            v = ",".join([v["name"], *(f"{a}={b}" for a, b in v.items() if a != "name")])
        elif k == "config":
            v = ",".join(f"{a}={b}" for a, b in v.items()) or "default"
        parts.append(f"{k}={v}")
    return " ".join(parts)


HEADLINE = {"eval": ("top1", "agreement", "sqnr_db", "bits_per_weight"),
            "run": ("top1", "cycles_per_image", "image_bytes"),
            "hwreport": ("lut4", "fmax_mhz", "asic_area", "asic_crit_ns", "asic_energy_pj")}


def table(rows: list[dict[str, Any]]) -> str:
    """One line per point: measure, status, headline figures, the point."""
    lines = []
    for r in rows:
        m = r["measure"]
        if r["status"] == "ok":
            figs = " ".join(f"{k}={_num(r['result'].get(k))}" for k in HEADLINE[m])
        else:
            figs = f"error: {r['error']}"
        lines.append(f"{m:<8} {r['status']:<6} {_label(r['point'])}\n         {figs}")
    return "\n".join(lines)


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_sweep(args: argparse.Namespace) -> int:
    from asd_cli import progress
    from asd_cli.main import UserError
    from asd_cli.sweep import runner
    from asd_cli.sweep import spec as spec_mod
    from asd_cli.sweep.store import Store

    if args.report:
        return _report(args)
    if not args.spec:
        raise UserError("give a SPEC.toml to run, or --report DB")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.workers and args.scheduler:
        raise UserError("--workers sizes the embedded cluster; an existing one (--scheduler) "
                        "has its own workers")
    if args.dashboard and not args.scheduler and (why := runner.dashboard_missing()):
        raise UserError(f"--dashboard: {why}")
    sp = spec_mod.load(args.spec)
    pts = spec_mod.points(sp)
    version = runner.project_version()
    tasks, inputs = runner.plan(sp, pts, version)
    db = Path(args.db or Path("out/sweep") / f"{Path(args.spec).stem}.sqlite")
    workdir = args.workdir or str(db.with_suffix("")) + "-work"
    t0 = time.perf_counter()
    with Store(db) as store:
        if args.dry_run:
            todo = {t.key for t in runner.pending(tasks, store, args.retry_failed)}
            for t in tasks:
                print(f"{'todo' if t.key in todo else 'done'} {t.key[:12]} {t.point['measure']:<8} "
                      f"{_label(t.point)}")
            print(f"{len(tasks)} points, {len(todo)} to run")
            return 0
        with progress.bar("sweep", len(runner.pending(tasks, store, args.retry_failed)),
                          quiet=args.quiet or args.json, unit="point") as bar:
            def step(t: runner.Task, rec: dict[str, Any], o: runner.Outcome) -> None:
                bar.set_postfix(ok=o.ok, failed=o.failed, running=o.running, refresh=False)
                bar.update(1)

            def start(o: runner.Outcome) -> None:
                if args.dashboard:
                    print(f"dashboard: {o.dashboard or 'none (the cluster serves none)'}",
                          file=sys.stderr, flush=True)

            out = runner.execute(tasks, inputs, store, version, scheduler=args.scheduler,
                                 workers=args.workers, retry_failed=args.retry_failed,
                                 workdir=workdir, on_result=step,
                                 dashboard=None if args.scheduler else args.dashboard,
                                 on_start=start)
        rows = store.rows([t.key for t in tasks])
    summary = {**out.as_dict(), "seconds": round(time.perf_counter() - t0, 3), "db": str(db),
               "version": version}
    if args.json:
        print(json.dumps({"summary": summary, "results": rows}, indent=1, default=str))
    else:
        print(table(rows))
        print(f"{out.points} points: {out.skipped} already done, {out.executed} run "
              f"({out.ok} ok, {out.failed} failed) in {summary['seconds']:.1f} s; "
              f"results in {db}")
    failed = sum(r["status"] != "ok" for r in rows)
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from asd_cli.main import UserError
    from asd_cli.sweep import report
    from asd_cli.sweep.store import Store

    if not Path(args.report).is_file():
        raise UserError(f"--report {args.report}: no such database")
    with Store(args.report) as store:
        rows = store.rows()
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    path = report.write(rows, args.output, args.report, HEADLINE)
    print(f"{len(rows)} points; wrote {path}")
    return 0

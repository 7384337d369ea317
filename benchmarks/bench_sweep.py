"""Scaling of ``asd sweep`` on a loopback Dask cluster: the same points run serially in this
process (no Dask: the yardstick, as the serial benchmark scripts run them), then on a cluster
of 1 and of 2 worker processes on 127.0.0.1, each from an empty database.  Prints the
overhead of 1 and of 2 workers against serial and the speed-up of 2 workers over 1 (ratios
only; these machines are shared), and writes benchmarks/results/sweep.json (sweep-eval.json
for ``--measure eval``).

The default measure is ``hwreport`` (the issue's goal: the hardware sweep, where every task
is a chain of single-threaded Yosys, nextpnr, Icarus and OpenSTA runs): both PE kinds, four
PE-array modes, one lane, 4-bit activations, one nextpnr seed.  ``--measure eval`` runs eval
points instead (in-process onnxruntime and numpy, which use every core on their own).

    python benchmarks/bench_sweep.py                                  # 8 hwreport points
    python benchmarks/bench_sweep.py --measure eval --limit 1000      # 8 eval points
    python benchmarks/bench_sweep.py --measure eval --limit 20 --schemes float --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("pipelined", "carrysave", "carrysave_direct", "tree")


def _spec(tmp: Path, args: argparse.Namespace) -> Path:
    p = tmp / "bench.toml"
    if args.measure == "eval":
        p.write_text(f'[axes]\nmodels = ["{args.model}"]\nlimit = {args.limit}\n'
                     f"schemes = {json.dumps(args.schemes.split(','))}\n[measures.eval]\n")
    else:
        p.write_text(f"[axes]\nconfigs = [{{lanes = 1, act_bits = 4}}]\n"
                     f'pe = ["shiftadd", "multiplier"]\nmodes = {json.dumps(list(MODES))}\n'
                     f"[measures.hwreport]\nseeds = 1\nmacs = {args.macs}\n")
    return p


def _warm(measure: str) -> None:
    """A worker's imports, loaded before the clock starts: this measures the sweep, not
    start-up (the serial yardstick pays its imports once too, before its first point)."""
    import importlib

    for mod in (("asd.evaluate", "onnxruntime") if measure == "eval"
                else ("accel.hwreport", "asd_cli.hwreport")):
        importlib.import_module(mod)


def best_makespan(seconds: list[float], workers: int) -> float:
    """The shortest wall time ``workers`` workers could finish these points in (each point on
    one worker, no overhead): exhaustive over assignments, fine for the benchmark's few points."""
    best = float("inf")
    for assign in itertools.product(range(workers), repeat=len(seconds)):
        loads = [0.0] * workers
        for w, s in zip(assign, seconds):
            loads[w] += s
        best = min(best, max(loads))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measure", choices=["hwreport", "eval"], default="hwreport")
    ap.add_argument("--model", default="mnist_lenet", help="eval: the model")
    ap.add_argument("--schemes", default="asd2,pot,int8,int6,int4,fp8-e4m3,fp8-e5m2,float",
                    help="eval: the schemes, one point each")
    ap.add_argument("--limit", type=int, default=1000, help="eval: test images per point")
    ap.add_argument("--macs", type=int, default=500,
                    help="hwreport: MACs of the gate-level energy simulation per point")
    ap.add_argument("--out", type=Path, help="the JSON written (default: benchmarks/results/)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = RESULTS / ("sweep.json" if args.measure == "hwreport" else "sweep-eval.json")
    os.environ.setdefault("PYTHONPATH", str(ROOT))

    from distributed import Client, LocalCluster

    from asd_cli.sweep import runner, spec, tasks
    from asd_cli.sweep.store import Store

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sp = spec.load(_spec(tmp, args))
        version = runner.project_version()
        todo, inputs = runner.plan(sp, spec.points(sp), version)
        _warm(args.measure)
        load_before = os.getloadavg()[0]
        walls: dict[str, float] = {}
        busy: dict[str, float] = {}  # the sum of the points' own seconds
        t0 = time.perf_counter()
        busy["serial"] = 0.0
        point_seconds: list[float] = []
        for t in todo:
            rec = tasks.run_point(t.point, t.options, inputs.get(t.model or ""),
                                  inputs.get(t.data or ""), inputs.get(t.pool or ""),
                                  str(tmp / "serial"), t.key)
            assert rec["status"] == "ok", rec
            busy["serial"] += rec["seconds"]
            point_seconds.append(rec["seconds"])
        walls["serial"] = time.perf_counter() - t0
        # The machine's own ceiling for 2 workers: the same points on 2 plain processes (no
        # Dask, no database); what 2 cores give single-threaded tools here, shared caches,
        # memory bandwidth and clock included.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(2, mp_context=ctx, initializer=_warm,
                                 initargs=(args.measure,)) as pool:
            list(pool.map(_warm, [args.measure] * 2))
            t0 = time.perf_counter()
            recs = list(pool.map(tasks.run_point, [t.point for t in todo],
                                 [t.options for t in todo],
                                 [inputs.get(t.model or "") for t in todo],
                                 [inputs.get(t.data or "") for t in todo],
                                 [inputs.get(t.pool or "") for t in todo],
                                 [str(tmp / "pool") for _ in todo], [t.key for t in todo]))
            walls["pool2"] = time.perf_counter() - t0
        assert all(r["status"] == "ok" for r in recs), recs
        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address="127.0.0.1:0", scheduler_port=0,
                              silence_logs=40) as cluster:
                with Client(cluster) as c:
                    c.run(_warm, args.measure)
                secs: list[float] = []
                with Store(tmp / f"w{n}.sqlite") as store:
                    t0 = time.perf_counter()
                    out = runner.execute(todo, inputs, store, version,
                                         scheduler=cluster.scheduler_address,
                                         workdir=tmp / f"work{n}",
                                         on_result=lambda _t, r, _o, s=secs: s.append(r["seconds"]))
                    walls[f"{n}w"] = time.perf_counter() - t0
                busy[f"{n}w"] = sum(secs)
                assert out.ok == len(todo), out
    result: dict[str, Any] = {
        "measure": args.measure, "points": len(todo), "cores": os.cpu_count(),
        **({"model": args.model, "images_per_point": args.limit} if args.measure == "eval"
           else {"grid": "lanes 1, act_bits 4, shiftadd+multiplier x " + ",".join(MODES),
                 "seeds": 1, "macs": args.macs}),
        "serial_seconds_per_point": walls["serial"] / len(todo),
        "overhead_1_worker_vs_serial": walls["1w"] / walls["serial"] - 1.0,
        "overhead_2_workers_vs_serial": walls["2w"] / walls["serial"] - 1.0,
        "speedup_2_vs_1_workers": walls["1w"] / walls["2w"],
        # Wall time of 1 worker beyond its points' own seconds: what Dask itself costs.
        "scheduling_share_1_worker": 1.0 - busy["1w"] / walls["1w"],
        # What 2 workers could gain at best with these points' own durations: unequal points
        # leave one worker idle at the end however well they are scheduled.
        "speedup_2_workers_bound": sum(point_seconds) / best_makespan(point_seconds, 2),
        "speedup_2_plain_processes_vs_serial": walls["serial"] / walls["pool2"],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "note": "ratios only: seconds on a shared machine are not comparable between runs",
    }
    what = (f"{args.model}, {args.limit} images each" if args.measure == "eval"
            else f"{result['grid']}, {args.macs} MACs")
    print(f"{len(todo)} {args.measure} points ({what}); serial "
          f"{result['serial_seconds_per_point']:.1f} s per point")
    print(f"1 worker against serial in-process: "
          f"{100 * result['overhead_1_worker_vs_serial']:+.1f}% "
          f"(scheduling share of its wall time {100 * result['scheduling_share_1_worker']:.1f}%)")
    print(f"2 workers against serial in-process: "
          f"{100 * result['overhead_2_workers_vs_serial']:+.1f}%")
    print(f"2 workers against 1: {result['speedup_2_vs_1_workers']:.2f}x faster (at best "
          f"{result['speedup_2_workers_bound']:.2f}x with these points' durations; 2 plain "
          f"processes without Dask: {result['speedup_2_plain_processes_vs_serial']:.2f}x "
          f"against serial; load average "
          f"{load_before:.2f} before, {result['load_average_after']:.2f} after)")
    from contract.files import write_text_atomic

    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

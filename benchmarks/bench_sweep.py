"""Scaling of ``asd sweep`` on a loopback Dask cluster: the same eval points run serially in
this process (no Dask: the yardstick), then on a cluster of 1 and of 2 worker processes on
127.0.0.1, each from an empty database.  Prints the scheduling overhead (1 worker against
serial) and the speed-up of 2 workers over 1 (ratios only; these machines are shared), and
writes benchmarks/results/sweep.json.

    python benchmarks/bench_sweep.py                          # mnist_lenet, 8 points
    python benchmarks/bench_sweep.py --limit 20 --schemes asd2,int8 --out /tmp/s.json  # tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sweep.json"


def _spec(tmp: Path, model: str, schemes: list[str], limit: int) -> Path:
    p = tmp / "bench.toml"
    p.write_text(f'[axes]\nmodels = ["{model}"]\nlimit = {limit}\n'
                 f"schemes = {json.dumps(schemes)}\n[measures.eval]\n")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mnist_lenet")
    ap.add_argument("--schemes", default="asd2,pot,int8,int6,int4,fp8-e4m3,fp8-e5m2,float")
    ap.add_argument("--limit", type=int, default=1000, help="test images per point")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    os.environ.setdefault("PYTHONPATH", str(ROOT))

    from distributed import LocalCluster

    from asd_cli.sweep import runner, spec, tasks
    from asd_cli.sweep.store import Store

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sp = spec.load(_spec(tmp, args.model, args.schemes.split(","), args.limit))
        version = runner.project_version()
        todo, inputs = runner.plan(sp, spec.points(sp), version)
        t0 = time.perf_counter()
        for t in todo:  # the yardstick: the same task functions, in this process
            rec = tasks.run_point(t.point, t.options, inputs.get(t.model or ""),
                                  inputs.get(t.data or ""), inputs.get(t.pool or ""),
                                  str(tmp), t.key)
            assert rec["status"] == "ok", rec
        serial = time.perf_counter() - t0
        walls: dict[int, float] = {}
        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address="127.0.0.1:0", scheduler_port=0,
                              silence_logs=40) as cluster:
                # Warm the workers' imports first: this measures the sweep, not start-up.
                from distributed import Client

                with Client(cluster) as c:
                    c.run(lambda: __import__("asd.evaluate") and __import__("onnxruntime"))
                with Store(tmp / f"w{n}.sqlite") as store:
                    t0 = time.perf_counter()
                    out = runner.execute(todo, inputs, store, version,
                                         scheduler=cluster.scheduler_address,
                                         workdir=tmp / "work")
                    walls[n] = time.perf_counter() - t0
                assert out.ok == len(todo), out
    result: dict[str, Any] = {
        "model": args.model, "points": len(todo), "images_per_point": args.limit,
        "cores": os.cpu_count(),
        "overhead_1_worker_vs_serial": walls[1] / serial - 1.0,
        "speedup_2_vs_1_workers": walls[1] / walls[2],
        "note": "ratios only: seconds on a shared machine are not comparable between runs",
    }
    print(f"{len(todo)} eval points of {args.model}, {args.limit} images each")
    over = result["overhead_1_worker_vs_serial"]
    print(f"1 worker against serial in-process: {100 * over:+.1f}%")
    print(f"2 workers against 1: {result['speedup_2_vs_1_workers']:.2f}x faster")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

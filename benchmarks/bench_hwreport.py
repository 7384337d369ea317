"""The full hardware sweep: both PE kinds against the int8 multiplier forms and the
decoded-ASD multiplier, PE array (pipelined, carry-save, compressor tree, product stage) and
core, as sweep specs (one per study, ``benchmarks/sweeps/hwreport/STUDY.toml``; a row of the
results is a configuration there, each design one task).

    python benchmarks/bench_hwreport.py                  # every study, embedded Dask
    python benchmarks/bench_hwreport.py --scheduler tcp://HOST:8786   # an existing cluster
    python benchmarks/bench_hwreport.py --studies pe_product --lanes 1 --act-bits 4

Every design is a point of ``asd sweep`` stored in ``out/sweep/hwreport.sqlite`` as it
finishes (``--db``), so an interrupted run resumes and a rerun only rebuilds the JSON; prints
one table per study and writes benchmarks/results/hwreport.json from the database:

* ``pe_pipelined``: the PE array with a product register before the accumulator (equal
  throughput: one MAC per lane per cycle);
* ``pe_carrysave``: the PE array with a block carry-save accumulator (no carry crosses more
  than 4 bits a cycle; the sum is resolved once per output at the readout), the shift-add
  PE's two terms handed over unresolved;
* ``pe_carrysave_direct``: the same without the terms and product registers (one cycle
  from the activation register into the accumulator, for both kinds);
* ``pe_carrysave_drain``: those lanes with a one-register readout (the lanes drain their own
  carries after the last MAC instead of a carry-resolving readout pipeline);
* ``pe_tree``: four MACs a lane per cycle summed with the accumulator in one compressor tree;
* ``pe_product``: the product stage alone (weight/activation registers -> PE -> register);
* ``core``: the whole core (the default 8 lanes do not fit an iCE40 HX8K: Fmax is n/a there,
  area figures are still measured).

Each row holds every kind the study's mode builds (the shift-add PE, the int8 multiplier in
each of its forms, the decoded-ASD multiplier; ``--kinds`` picks some), and each PE-array
row the energy per inference of the spec's networks (``--networks``), from the networks
compiled for the row's configuration on the worker and the row's cell figures.

``--lanes``, ``--act-bits``, ``--exp-bits``, ``--acc-bits`` (``--core-lanes`` for the core)
pick the spec's configurations with those values; a row not in a spec is added by adding
its configuration there.  Only the studies run are replaced in an existing results file;
``--add-rows`` keeps a study's other rows and replaces those of the same lanes, activation
width, exponent field, accumulator width and target; ``--cells-only`` measures just the
standard-cell figures (:mod:`accel.asic`: area, OpenSTA critical path, power on the stream
and on idle cycles) of the chosen rows and puts them over the rows' other figures (from
the database, or from the results file where the database has none): minutes where the
whole flow takes an hour.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from accel import hwreport  # noqa: E402
from accel import kinds as kinds_mod  # noqa: E402
from accel.inference import NetworkCycles  # noqa: E402
from asd_cli.sweep import runner  # noqa: E402
from asd_cli.sweep import spec as spec_mod  # noqa: E402
from asd_cli.sweep.store import Store  # noqa: E402
from contract.config import AccelConfig  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "hwreport.json"
SPECS = ROOT / "benchmarks" / "sweeps" / "hwreport"
STUDIES = ("pe_pipelined", "pe_carrysave", "pe_carrysave_direct", "pe_carrysave_drain",
           "pe_tree", "pe_product", "core")
ROW_FIELDS = ("lanes", "act_bits", "exp_bits", "acc_bits")


def _ints(text: str | None) -> set[int] | None:
    return {int(v) for v in text.split(",") if v.strip()} if text else None


def _row_key(row: dict[str, Any]) -> tuple[str, int, int, int, int]:
    """What a row measured: rows of equal keys replace each other, and sort by it."""
    return row["target"], row["lanes"], row["act_bits"], row["exp_bits"], row["acc_bits"]


def merge_rows(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with ``old``'s rows (and their energy per inference) of other configurations
    kept, sorted by target, lanes, activation width and exponent field; every row records
    the nextpnr seeds it was measured with."""
    fresh = {_row_key(r) for r in new["results"]}
    kept = [{"seeds": old["seeds"], **r} for r in old["results"] if _row_key(r) not in fresh]
    rows = kept + [{**r, "seeds": r.get("seeds", new["seeds"])} for r in new["results"]]
    rows.sort(key=_row_key)
    out = {**new, **hwreport.headline(rows), "results": rows}
    inf_key = ("lanes", "act_bits", "exp_bits")
    done = {tuple(e[k] for k in inf_key) for e in new.get("inference", [])}
    inference = [e for e in old.get("inference", []) if tuple(e[k] for k in inf_key) not in done]
    if inference or "inference" in new:
        out["inference"] = sorted(inference + new.get("inference", []),
                                  key=lambda e: tuple(e[k] for k in inf_key))
    return out


def study_spec(name: str, args: argparse.Namespace) -> spec_mod.Spec:
    """Study ``name``'s spec narrowed and overridden by the command line's options."""
    sp = spec_mod.load(SPECS / f"{name}.toml")
    opts = sp.measures["hwreport"]
    lanes = args.core_lanes if opts["target"] == "core" else args.lanes
    want = dict(zip(ROW_FIELDS, (_ints(lanes), _ints(args.act_bits), _ints(args.exp_bits),
                                 {args.acc_bits} if args.acc_bits else None), strict=True))
    base = AccelConfig().to_dict()
    configs = [c for c in sp.values["config"]
               if all(v is None or {**base, **c}[k] in v for k, v in want.items())]
    if not configs:
        raise SystemExit(f"{name}: no configuration of {sp.path} has those values; add one "
                         "there to measure it")
    sp.values["config"] = configs
    if args.kinds:
        (mode,) = sp.values["mode"]
        try:
            kinds_mod.check_kinds(args.kinds, mode, opts["target"])
        except ValueError as exc:
            raise SystemExit(f"--kinds: {name}: {exc}") from None
        sp.values["pe"] = list(args.kinds)
    for key in ("seeds", "macs"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if args.networks is not None:
        opts["networks"] = [] if args.networks == "none" else args.networks.split(",")
    opts["cells_only"] = args.cells_only
    return sp


def _networks_for(records: list[dict[str, Any]]) -> Any:
    """``config -> [NetworkCycles]`` from the counters the points stored (keyed as
    :func:`asd_cli.hwreport.networks_compiled_once` keys its compilations)."""
    table: dict[str, list[NetworkCycles]] = {}
    for rec in records:
        nets = (rec.get("result") or {}).get("networks")
        if nets:
            table[_net_key(_design_config(rec["point"]))] = [
                NetworkCycles(n["name"], n["cycles"], n["mac_cycles"], n["single_lane_macs"],
                              n["sums"]) for n in nets]

    def networks_for(c: AccelConfig) -> list[NetworkCycles]:
        if _net_key(c) not in table:
            raise SystemExit(f"no network counters stored for {c.to_dict()}: rerun without "
                             "--cells-only, or with --networks none")
        return table[_net_key(c)]

    return networks_for


def _net_key(c: AccelConfig) -> str:
    return c.replace(pe="shiftadd" if c.weights == "asd" else c.pe).to_json()


def _design_config(point: dict[str, Any]) -> AccelConfig:
    kind = kinds_mod.KINDS[point["pe"]]
    return kind.config(AccelConfig.from_dict({**AccelConfig().to_dict(), **point["config"]}))


def build_study(sp: spec_mod.Spec, records: list[dict[str, Any]],
                old: dict[str, Any] | None) -> dict[str, Any]:
    """A study of hwreport.json from its points' records (each the newest full or
    cells-only record of a design; a cells-only record goes over the full one, or over
    ``old``'s figures of that row where the database has no full one)."""
    opts = sp.measures["hwreport"]
    (mode,) = sp.values["mode"]
    base = AccelConfig().to_dict()
    stored = {(_row_key(r)): r for r in (old or {}).get("results", [])}
    rows: dict[tuple[str, int, int, int, int], dict[str, Any]] = {}
    for rec in records:
        pt, cells = rec["point"], rec["cells"]
        cfg = {**base, **pt["config"]}
        row = rows.setdefault((opts["target"], *(cfg[k] for k in ROW_FIELDS)), {
            "lanes": cfg["lanes"], "act_bits": cfg["act_bits"], "acc_bits": cfg["acc_bits"],
            "exp_bits": cfg["exp_bits"], "target": opts["target"], "seeds": opts["seeds"]})
        figures = dict(rec["full"]["result"]) if rec["full"] else None
        if figures is None:  # --cells-only over the results file (a kind new to the row
            prev = stored.get(_row_key(row), {})  # gets its cell figures alone)
            figures = dict(prev.get(pt["pe"], {}))
            row["seeds"] = prev.get("seeds", (old or {}).get("seeds"))
        if cells:
            figures.update(cells["result"])
        figures.pop("networks", None)
        if "layer_macs" in figures:
            row["layer_macs"] = figures.pop("layer_macs")
        row[pt["pe"]] = figures
    out_rows = sorted(rows.values(), key=_row_key)
    for row in out_rows:
        hwreport.update_ratios(row)
    study = hwreport.report_of(out_rows, AccelConfig(), seeds=opts["seeds"], mode=mode)
    if opts["target"] == "pe" and opts["networks"]:
        newest = [r["cells"] or r["full"] for r in records]
        hwreport.add_inference(study, _networks_for(newest), AccelConfig())
    return study


def _newest(full: dict[str, Any] | None, cells: dict[str, Any] | None,
            cells_only: bool) -> dict[str, Any] | None:
    """The cells-only record goes over the full one if asked for, or if it is newer."""
    if cells is None or full is None or cells_only:
        return cells
    return cells if cells["finished"] > full["finished"] else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default=",".join(STUDIES),
                    help=f"which studies to run (default all: {', '.join(STUDIES)})")
    ap.add_argument("--lanes", help="PE-array rows of these lanes only (default: the spec's)")
    ap.add_argument("--act-bits", help="rows of these activation widths only")
    ap.add_argument("--core-lanes", help="core rows of these lanes only")
    ap.add_argument("--exp-bits", help="rows of these exponent fields only")
    ap.add_argument("--acc-bits", type=int, help="rows of this accumulator width only")
    ap.add_argument("--kinds", help=f"kinds to measure ({', '.join(kinds_mod.KINDS)}; default "
                                    "the spec's: every kind the study's mode builds)")
    ap.add_argument("--networks", help="networks for energy per inference (default the "
                                       "spec's; 'none': skip)")
    ap.add_argument("--seeds", type=int, help="nextpnr seeds (default the spec's: 5)")
    ap.add_argument("--macs", type=int, help="MACs simulated for the energy (default 2000)")
    ap.add_argument("--add-rows", action="store_true",
                    help="merge the new rows into each study's existing ones instead of "
                         "replacing the study")
    ap.add_argument("--cells-only", action="store_true",
                    help="standard-cell figures only, over the rows' other figures")
    ap.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    ap.add_argument("--workers", type=int, help="embedded cluster: worker processes")
    ap.add_argument("--retry-failed", action="store_true", help="rerun failed points")
    ap.add_argument("--db", type=Path, default=ROOT / "out" / "sweep" / "hwreport.sqlite",
                    help="the sweep's result database (resumable; default %(default)s)")
    ap.add_argument("--work", type=Path, help="tool scratch directory (default beside --db)")
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT,
                    help="the results file; its other studies are kept (default %(default)s)")
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.studies.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STUDIES))
    if unknown:
        ap.error(f"unknown studies {', '.join(unknown)} (known: {', '.join(STUDIES)})")
    args.kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    version = runner.project_version()
    t0 = time.perf_counter()
    specs = {name: study_spec(name, args) for name in chosen}
    run, plans = [], {}
    for name, sp in specs.items():
        pts = spec_mod.points(sp)
        tasks, _ = runner.plan(sp, pts, version)
        sp.measures["hwreport"] = {**sp.measures["hwreport"], "cells_only": not args.cells_only}
        other, _ = runner.plan(sp, pts, version)
        sp.measures["hwreport"]["cells_only"] = args.cells_only
        full, cells = (other, tasks) if args.cells_only else (tasks, other)
        plans[name] = list(zip(full, cells, strict=True))
        run += tasks

    def show(t: runner.Task, rec: dict[str, Any], o: runner.Outcome) -> None:
        pt = t.point
        fig = f"{rec['result'].get('asic_area')} um^2" if rec["status"] == "ok" \
            else rec["error"]
        print(f"[{o.executed}/{o.points - o.skipped}] {pt['mode']} {pt['pe']} {pt['config']}: "
              f"{fig} ({rec['seconds']:.0f} s)", file=sys.stderr, flush=True)

    out = args.output
    results = json.loads(out.read_text()) if out.exists() else {}
    results.pop("seconds", None)
    with Store(args.db) as store:
        done = runner.execute(run, {}, store, version, scheduler=args.scheduler,
                              workers=args.workers, retry_failed=args.retry_failed,
                              on_result=show, workdir=args.work or args.db.with_suffix(""))
        have = {r["key"]: r for r in store.rows()}
    bad = [have[t.key] for t in run if have.get(t.key, {}).get("status") != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} point(s) failed, e.g. {bad[0]['point']}: "
                         f"{bad[0]['error']} (rerun with --retry-failed)")
    for name, pairs in plans.items():
        ok = {k: v for k, v in have.items() if v["status"] == "ok"}
        records = [{"point": f.point, "full": ok.get(f.key),
                    "cells": _newest(ok.get(f.key), ok.get(c.key), args.cells_only)}
                   for f, c in pairs]
        old = results.get(name)
        study = build_study(specs[name], records, old)
        keep_rows = args.add_rows or args.cells_only
        results[name] = merge_rows(old, study) if keep_rows and old else study
        # Where the rows come from: this study's designs in the database, and the tool time
        # they took when they were measured (a resumed sweep's come from earlier runs).
        mine = [have[f.key] for f, _ in pairs if f.key in have]
        results[name]["swept"] = {"designs": len(mine), "design_seconds": round(
            sum(float(r["seconds"] or 0) for r in mine), 1), "partial": keep_rows}
        print(f"\n## {name}\n\n{hwreport.text_table(study)}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1), **results},
                              indent=1, default=str) + "\n")
    print(f"\n{done.points} designs ({done.skipped} already in {args.db}) in "
          f"{time.perf_counter() - t0:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

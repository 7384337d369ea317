"""The full hardware sweep: both PE kinds, PE array (pipelined, carry-save, compressor tree,
product stage) and core.

    python benchmarks/bench_hwreport.py [--lanes 1,4,8] [--act-bits 4,8] [--core-lanes 1,4]
                                        [--exp-bits 3] [--acc-bits 32]
                                        [--seeds 5] [--macs 2000] [--studies NAME,...]

Prints one table per study and writes benchmarks/results/hwreport.json:

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

``--studies`` runs some of them and replaces just those in an existing results file;
``--add-rows`` keeps a study's other rows and replaces only those of the same lanes,
activation width, exponent field, accumulator width and target (e.g. ``--studies pe_tree
--lanes 1,4 --act-bits 16`` adds the 16-bit rows to the 4- and 8-bit ones);
``--cells-only`` measures just the standard-cell figures (:mod:`accel.asic`: area, OpenSTA
critical path, power on the stream and on idle cycles) of the stored rows of the chosen
studies (those of ``--lanes``, ``--act-bits``, ``--exp-bits`` when given) for ``--kinds``
(default: every kind the study's mode builds: the shift-add PE, the int8 multiplier in each
of its forms, the decoded-ASD multiplier) and adds them to the rows, their other figures
kept (minutes where the whole flow takes an hour).  Every study then gets the energy per
inference of ``--networks`` (:mod:`accel.inference`) for its rows with idle-cycle figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from accel import asic, hwreport
from accel import kinds as kinds_mod
from asd_cli.hwreport import NETWORKS, layer_stream, networks_compiled_once
from contract.config import AccelConfig

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "hwreport.json"
# name -> (target, PE array mode)
STUDIES = {"pe_pipelined": ("pe", "pipelined"), "pe_carrysave": ("pe", "carrysave"),
           "pe_carrysave_direct": ("pe", "carrysave_direct"),
           "pe_carrysave_drain": ("pe", "carrysave_drain"),
           "pe_product": ("pe", "product"), "pe_tree": ("pe", "tree"),
           "core": ("core", "pipelined")}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _row_key(row: dict[str, Any]) -> tuple[str, int, int, int, int]:
    """What a row measured: rows of equal keys replace each other, and sort by it."""
    return row["target"], row["lanes"], row["act_bits"], row["exp_bits"], row["acc_bits"]


def merge_rows(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with ``old``'s rows of other configurations kept, sorted by target, lanes,
    activation width and exponent field; every row records the nextpnr seeds it was
    measured with."""
    fresh = {_row_key(r) for r in new["results"]}
    kept = [{"seeds": old["seeds"], **r} for r in old["results"] if _row_key(r) not in fresh]
    rows = kept + [{**r, "seeds": new["seeds"]} for r in new["results"]]
    rows.sort(key=_row_key)
    return {**new, **hwreport.headline(rows), "results": rows}


def add_cell_figures(study: dict[str, Any], mode: str, work: Path, log: Any,
                     kinds: list[str] | None = None, keep: Any = None) -> None:
    """Measure the standard-cell figures of the rows of ``study`` that ``keep`` accepts (all
    when None) in place, for ``kinds`` (default every kind the mode builds; a kind new to a
    row is added); each row's own lanes, widths, exponent field and accumulator."""
    for row in study["results"]:
        if keep is not None and not keep(row):
            continue
        cfg = AccelConfig(lanes=row["lanes"], act_bits=row["act_bits"],
                          exp_bits=row["exp_bits"], acc_bits=row["acc_bits"])
        names = kinds or list(kinds_mod.kinds_for(mode, row["target"]))
        name = f"{row['target']}-l{row['lanes']}-a{row['act_bits']}-e{row['exp_bits']}-" \
               f"c{row['acc_bits']}"
        streams: dict[str, Any] = {}
        for kind in names:
            k = kinds_mod.KINDS[kind]
            c = k.config(cfg)
            if row["target"] == "pe" and c.weights not in streams:
                streams[c.weights] = layer_stream(c, row["layer_macs"])
            log(f"{name}: standard cells, {kind}")
            row.setdefault(kind, {}).update(hwreport.measure_cells(
                c, row["target"], work / name / kind, stream=streams.get(c.weights),
                mode=mode, log=log, form=k.form))
        hwreport.update_ratios(row)
    study.update(cell_library=asic.LIBRARY, cell_clock_ns=asic.CLOCK_NS,
                 tools=hwreport.tool_versions(), **hwreport.headline(study["results"]))


def add_inference(study: dict[str, Any], networks: list[str], log: Any,
                  cache: dict[str, Any]) -> None:
    """Energy per inference of ``networks`` on every row of ``study`` with idle-cycle
    figures (the networks compiled once per configuration and weight format)."""
    hwreport.add_inference(study, networks_compiled_once(networks, log, cache), AccelConfig())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lanes", help="default 1,4,8 (--cells-only: the stored rows' filter)")
    ap.add_argument("--act-bits", help="default 4,8 (--cells-only: the stored rows' filter)")
    ap.add_argument("--core-lanes", default="1,4")
    ap.add_argument("--exp-bits", help="default the shipped E (--cells-only: a filter)")
    ap.add_argument("--kinds", help=f"kinds to measure ({', '.join(kinds_mod.KINDS)}; default "
                                    "every kind the study's mode builds)")
    ap.add_argument("--networks", default=",".join(NETWORKS),
                    help="networks for energy per inference ('none': skip)")
    ap.add_argument("--acc-bits", type=int, default=AccelConfig().acc_bits)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--macs", type=int, default=2000)
    ap.add_argument("--work", default=str(ROOT / "out" / "bench-hwreport"))
    ap.add_argument("--studies", default=",".join(STUDIES),
                    help=f"which studies to run (default all: {', '.join(STUDIES)})")
    ap.add_argument("--add-rows", action="store_true",
                    help="merge the new rows into each study's existing ones instead of "
                         "replacing the study")
    ap.add_argument("--cells-only", action="store_true",
                    help="add the standard-cell figures to the stored rows of the studies "
                         "(nothing else re-measured)")
    ap.add_argument("-o", "--output", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.studies.split(",") if s.strip()]
    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    networks = [] if args.networks == "none" else [n for n in args.networks.split(",") if n]
    filters = {k: set(_ints(v)) for k, v in (("lanes", args.lanes), ("act_bits", args.act_bits),
                                             ("exp_bits", args.exp_bits)) if v}

    def keep(row: dict[str, Any]) -> bool:
        return all(row[k] in v for k, v in filters.items())

    lanes_arg = args.lanes or "1,4,8"
    acts_arg = args.act_bits or "4,8"
    exps_arg = args.exp_bits or str(AccelConfig().exp_bits)
    compiled: dict[str, Any] = {}
    unknown = sorted(set(chosen) - set(STUDIES))
    if unknown:
        ap.error(f"unknown studies {', '.join(unknown)} (known: {', '.join(STUDIES)})")
    base = AccelConfig(acc_bits=args.acc_bits)
    work = Path(args.work)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    out = Path(args.output)
    studies = json.loads(out.read_text()) if out.exists() else {}
    studies.pop("seconds", None)
    for name in chosen:
        target, mode = STUDIES[name]
        if args.cells_only:
            if name not in studies:
                ap.error(f"--cells-only: no stored study {name} in {out}")
            add_cell_figures(studies[name], mode, work / f"{name}-cells", log, kinds, keep)
            if networks and target == "pe":
                add_inference(studies[name], networks, log, compiled)
            print(f"\n## {name}\n")
            print(hwreport.text_table(studies[name]))
            sys.stdout.flush()
            continue
        lanes = args.core_lanes if target == "core" else lanes_arg
        rep = hwreport.run_sweep(base, _ints(lanes), _ints(acts_arg), (target,),
                                 work / name, seeds=args.seeds, mode=mode,
                                 stream_for=lambda c: layer_stream(c, args.macs), log=log,
                                 exp_bits=_ints(exps_arg), kinds=kinds)
        if networks and target == "pe":
            add_inference(rep, networks, log, compiled)
        hwreport.write_outputs(rep, work / name)
        studies[name] = merge_rows(studies[name], rep) if args.add_rows and name in studies \
            else rep
        print(f"\n## {name}\n")
        print(hwreport.text_table(rep))
        sys.stdout.flush()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1), **studies},
                              indent=1, default=str) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``asd hwreport``: the cost of both PE kinds, measured on the exported RTL.

For every configuration of a sweep (lanes x activation width x exponent field), every
target (``pe``: the PE array of :mod:`accel.designs`; ``core``: the whole core) and both PE
kinds it collects

* iCE40 LUT4, carry and flip-flop counts (``synth_ice40`` of the design alone),
* Fmax from nextpnr-ice40 (median over seeds, the design inside the scan wrapper),
* generic gate count, logic depth (``ltp -noff``) and CMOS transistor count (``abc -g``),
* ``toggle_energy`` (``pe`` target only): the gate-level PE array simulated on the MAC
  stream of a real layer (:mod:`accel.power`) with a unit delay per gate, so glitches
  count; ``toggle_energy_zero_delay`` the same stream with zero-delay gates (no glitches);
  ``glitch_share`` and ``ff_energy_share`` say how much of the first is glitches and how
  much is the flip-flops' (registers and accumulators),
* the same design on standard cells (:mod:`accel.asic`, OSU 0.18 um): ``asic_area`` (um^2),
  ``asic_crit_ns`` (OpenSTA) and, for ``pe``, ``asic_energy_pj`` (Liberty power of the
  netlist simulated on the same stream, clock pins included),

and the ratios shiftadd / multiplier.  :func:`write_outputs` writes ``hwreport.md``,
``hwreport.json`` and ``hwreport.png``.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract.config import AccelConfig

from . import asic, designs, power, synth

KINDS = ("shiftadd", "multiplier")
TARGETS = ("pe", "core")
METRICS = ("lut4", "carry", "ff", "fmax_mhz", "gates", "logic_depth", "transistors",
           "toggle_energy", "toggle_energy_zero_delay", "asic_area", "asic_crit_ns",
           "asic_energy_pj", "asic_energy_pj_zero_delay")
# Higher is better for Fmax; the critical path is 1/Fmax.
LABELS = {"lut4": "iCE40 LUT4", "carry": "iCE40 carry", "ff": "flip-flops",
          "fmax_mhz": "Fmax (MHz)", "crit_ns": "critical path (ns)", "gates": "gates",
          "logic_depth": "logic depth", "transistors": "transistors",
          "toggle_energy": "toggle energy", "toggle_energy_zero_delay": "toggle energy (0-delay)",
          "glitch_share": "energy share: glitches", "ff_energy_share": "energy share: flip-flops",
          "asic_area": "cell area (um^2)", "asic_crit_ns": "cell critical path (ns)",
          "asic_energy_pj": "cell energy (pJ)",
          "asic_energy_pj_zero_delay": "cell energy (0-delay, pJ)",
          "asic_glitch_share": "cell energy share: glitches",
          "asic_ff_energy_share": "cell energy share: flip-flops"}

Stream = tuple[NDArray[np.int64], NDArray[np.int64]]
Log = Callable[[str], None]


def tool_versions() -> dict[str, str]:
    out = {}
    for tool, arg in (("yosys", "-V"), ("nextpnr-ice40", "--version"), ("iverilog", "-V"),
                      ("sta", "-version")):
        try:
            p = subprocess.run([tool, arg], capture_output=True, text=True, timeout=30)
            out[tool] = (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            out[tool] = "missing"
    return out


def measure(config: AccelConfig, target: str, workdir: str | Path, *, seeds: int = 5,
            device: str = synth.DEVICE, stream: Stream | None = None, mode: str = "pipelined",
            timeout: float = 900, log: Log | None = None, form: str = "resolved"
            ) -> dict[str, Any]:
    """All figures of one design (``config.pe`` picks the PE kind, ``config.weights`` the
    weight format, ``form`` how a multiplier hands on its product)."""
    say = log or (lambda s: None)
    wd = Path(workdir)
    srcs, top, wrap = designs.write_design(config, target, wd / "rtl", mode, form)
    coarse = synth.coarse_cells(srcs, top, wd / "coarse", timeout=timeout)
    say(f"{target} {config.pe}: synth_ice40")
    ice = synth.ice40_stats(srcs, top, wd / "ice40", timeout=timeout, write_json=False)
    say(f"{target} {config.pe}: generic ABC mapping")
    gen = synth.generic_stats(srcs, top, wd / "generic", timeout=timeout)
    res: dict[str, Any] = {"lut4": ice.lut4, "carry": ice.carry, "ff": ice.ff,
                           "gates": gen.gates, "logic_depth": gen.depth,
                           "transistors": gen.transistors, "generic_ff": gen.ffs,
                           "mul_cells": coarse.get("$mul", 0),
                           "generic_cells": gen.cells, "ice40_cells": ice.cells}
    say(f"{target} {config.pe}: nextpnr-ice40 {device}, {seeds} seeds")
    wrapped = synth.ice40_stats(srcs + [wrap], designs.WRAPPER_NAME, wd / "pnr",
                                timeout=timeout)
    try:
        fmed, fall = synth.fmax_median(wrapped.json_path, seeds, device=device,
                                       timeout=timeout, progress=lambda s: say(f"  {s}"))
        res["fmax_mhz"], res["fmax_seeds"] = round(fmed, 2), fall
        res["crit_ns"] = round(1000.0 / fmed, 3)
    except synth.ToolMissing:
        raise
    except synth.SynthError as exc:
        if "does not fit" not in str(exc):
            raise
        res["fmax_mhz"], res["crit_ns"] = None, None
        res["fmax_error"] = f"does not fit the iCE40 {device} ({wrapped.lut4} LUT4 with the " \
                            "scan wrapper)"
        say(f"  {res['fmax_error']}")
    if target == "pe" and stream is not None:
        say(f"{target} {config.pe}: gate-level simulation of {len(stream[0])} MACs")
        zero = power.toggle_energy(gen.netlist_v, gen.netlist_json, top, config, stream[0],
                                   stream[1], wd / "power-zero-delay", mode=mode,
                                   unit_delay=False, timeout=timeout)
        pr = power.toggle_energy(gen.netlist_v, gen.netlist_json, top, config, stream[0],
                                 stream[1], wd / "power", mode=mode, timeout=timeout)
        res["toggle_energy"] = pr.toggle_energy
        res["toggles"] = pr.toggles
        res["energy_per_mac"] = round(pr.energy_per_mac, 1)
        res["macs"] = pr.macs
        res["toggle_energy_zero_delay"] = zero.toggle_energy
        res["glitch_share"] = round(1 - zero.toggle_energy / pr.toggle_energy, 3)
        res["ff_energy_share"] = round(pr.ff_share, 3)
    else:
        res["toggle_energy"] = res["toggle_energy_zero_delay"] = None
    res.update(measure_cells(config, target, wd, srcs=srcs, top=top, stream=stream, mode=mode,
                             timeout=timeout, log=say))
    return res


def measure_cells(config: AccelConfig, target: str, workdir: str | Path, *,
                  srcs: Sequence[Path] | None = None, top: str | None = None,
                  stream: Stream | None = None, mode: str = "pipelined", timeout: float = 900,
                  log: Log | None = None, form: str = "resolved") -> dict[str, Any]:
    """The standard-cell figures of one design (:mod:`accel.asic`); the RTL is written to
    ``workdir/rtl`` unless ``srcs`` and ``top`` are given."""
    say = log or (lambda s: None)
    wd = Path(workdir)
    if srcs is None or top is None:
        srcs, top, _ = designs.write_design(config, target, wd / "rtl", mode, form)
    say(f"{target} {config.pe}: standard cells ({asic.LIBRARY}), OpenSTA")
    cells = asic.map_cells(srcs, top, wd / "cells", timeout=timeout)
    crit = asic.critical_path(cells.netlist_v, top, wd / "sta", timeout=timeout)
    res: dict[str, Any] = {"asic_area": cells.area, "asic_ff_area": cells.ff_area,
                           "asic_cells": cells.cells, "asic_crit_ns": crit,
                           "asic_energy_pj": None}
    if target == "pe" and stream is not None:
        say(f"{target} {config.pe}: cell-level simulation of {len(stream[0])} MACs (timed by "
            "OpenSTA's delays, and at zero delay), OpenSTA power")
        en = asic.energy_per_mac(cells.netlist_v, top, config, stream[0], stream[1],
                                 wd / "cell-power", mode=mode,
                                 period_ns=max(asic.CLOCK_NS, 1.5 * crit), timeout=timeout)
        zero = asic.energy_per_mac(cells.netlist_v, top, config, stream[0], stream[1],
                                   wd / "cell-power-zero-delay", mode=mode, timed=False,
                                   timeout=timeout)
        res["asic_energy_pj"] = en.energy_pj
        res["asic_pj_per_mac"] = round(en.pj_per_mac, 3)
        res["asic_ff_energy_share"] = en.ff_share
        res["asic_energy_pj_zero_delay"] = zero.energy_pj
        res["asic_glitch_share"] = round(1 - zero.energy_pj / en.energy_pj, 3)
    return res


def ratios(sa: dict[str, Any], mul: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k in METRICS + ("crit_ns",):
        a, b = sa.get(k), mul.get(k)
        out[k] = round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and b else None
    return out


def run_sweep(base: AccelConfig, lanes: Sequence[int], act_bits: Sequence[int],
              targets: Sequence[str], workdir: str | Path, *, seeds: int = 5,
              device: str = synth.DEVICE,
              stream_for: Callable[[AccelConfig], Stream] | None = None,
              mode: str = "pipelined", timeout: float = 900,
              log: Log | None = None,
              exp_bits: Sequence[int] | None = None) -> dict[str, Any]:
    """Every (lanes, act_bits, exp_bits) x target x PE kind; returns the report dictionary.
    ``exp_bits`` defaults to ``base``'s."""
    synth.require("yosys", "nextpnr-ice40")
    asic.require()
    say = log or (lambda s: None)
    exps = list(exp_bits) if exp_bits else [base.exp_bits]
    rows = []
    wd = Path(workdir)
    total = len(lanes) * len(act_bits) * len(exps) * len(targets)
    step = 0
    t0 = time.perf_counter()
    for nl, ab, e in itertools.product(lanes, act_bits, exps):
        cfg = base.replace(lanes=nl, act_bits=ab, exp_bits=e)
        stream = stream_for(cfg) if stream_for and "pe" in targets else None
        for target in targets:
            step += 1
            say(f"[{step}/{total}] lanes={nl} act_bits={ab} exp_bits={e} target={target} "
                f"({time.perf_counter() - t0:.0f} s)")
            row: dict[str, Any] = {"lanes": nl, "act_bits": ab, "acc_bits": cfg.acc_bits,
                                   "exp_bits": e, "target": target}
            for kind in KINDS:
                c = cfg.replace(pe=kind)
                row[kind] = measure(c, target, wd / f"{target}-l{nl}-a{ab}-e{e}-{kind}",
                                    seeds=seeds, device=device,
                                    stream=stream, mode=mode, timeout=timeout, log=say)
            row["ratio"] = ratios(row["shiftadd"], row["multiplier"])
            if stream is not None and target == "pe":
                row["layer_macs"] = int(len(stream[0]))
            rows.append(row)
    return {
        "device": f"iCE40 {device.upper()}", "seeds": seeds, "pe_array_mode": mode,
        "tools": tool_versions(), "transistors_per_cell": dict(synth.TRANSISTORS),
        "dff_transistors": synth.DFF_TRANSISTORS, "cell_library": asic.LIBRARY,
        "cell_clock_ns": asic.CLOCK_NS, "config": base.to_dict(),
        **headline(rows), "results": rows,
    }


def headline(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report's top-level figures: both kinds' and the ratio of the first row, and which
    configuration that row is."""
    first = rows[0]
    return {"shiftadd": summary(first["shiftadd"]), "multiplier": summary(first["multiplier"]),
            "ratio": first["ratio"],
            "first": {k: first[k] for k in ("lanes", "act_bits", "exp_bits", "target")}}


def summary(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in METRICS}


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return str(v)


TABLE_METRICS = ("lut4", "carry", "ff", "fmax_mhz", "crit_ns", "gates", "logic_depth",
                 "transistors", "toggle_energy", "toggle_energy_zero_delay", "glitch_share",
                 "ff_energy_share", "asic_area", "asic_crit_ns", "asic_energy_pj",
                 "asic_energy_pj_zero_delay", "asic_glitch_share", "asic_ff_energy_share")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in report["results"]:
        for k in TABLE_METRICS:
            sa, mu = r["shiftadd"].get(k), r["multiplier"].get(k)
            if sa is None and mu is None:
                continue
            ratio = r["ratio"].get(k)  # none for the shares: they say why, not how much
            change = "" if ratio is None else f"{(ratio - 1) * 100:+.0f}%"
            out.append([r["target"], str(r["lanes"]), str(r["act_bits"]), str(r["exp_bits"]),
                        LABELS[k], _fmt(sa), _fmt(mu), _fmt(ratio) if k in r["ratio"] else "",
                        change])
    return out


HEADER = ["target", "lanes", "act", "E", "measure", "shiftadd", "multiplier", "ratio", "change"]
# Columns that name the row (left-aligned in the text table).
NAME_COLUMNS = HEADER.index("measure") + 1


def text_table(report: dict[str, Any]) -> str:
    rows = [HEADER] + table_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i < NAME_COLUMNS else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Hardware report: shift-add vs multiplier PEs", "",
             f"Device {report['device']} (nextpnr-ice40, Fmax = median of {report['seeds']} "
             f"seeds); PE array mode: {report['pe_array_mode']}; generic mapping "
             f"`abc -g {synth.ABC_GATES}`; standard cells "
             f"{report.get('cell_library', asic.LIBRARY)} (OpenSTA, power at "
             f"{report.get('cell_clock_ns', asic.CLOCK_NS):g} ns). ratio = shiftadd / "
             "multiplier (below 1: shift-add smaller or faster; for Fmax above 1 is better).",
             "",
             "| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in table_rows(report):
        lines.append("| " + " | ".join(r) + " |")
    lines += ["", "Tools: " + "; ".join(f"{k}: {v}" for k, v in report["tools"].items()), ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("lut4", "ff", "crit_ns", "gates", "logic_depth", "transistors", "toggle_energy",
               "asic_area", "asic_crit_ns", "asic_energy_pj")
    rows = report["results"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics) * max(1, len(rows)) / 2), 4))
    width = 0.8 / max(1, len(rows))
    for j, r in enumerate(rows):
        vals = [r["ratio"].get(m) or 0.0 for m in metrics]
        xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, vals, width,
               label=f"{r['target']} l{r['lanes']} a{r['act_bits']} e{r['exp_bits']}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.5, color="r", lw=0.8, ls="--", label="target (-50%)")
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([LABELS[m] for m in metrics], rotation=20, ha="right")
    ax.set_ylabel("shiftadd / multiplier")
    ax.set_title("Shift-add PE datapath relative to the multiplier datapath")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def write_outputs(report: dict[str, Any], directory: str | Path) -> list[Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    md = d / "hwreport.md"
    md.write_text(markdown(report))
    js = d / "hwreport.json"
    js.write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    return [md, js, plot(report, d / "hwreport.png")]


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(type(o).__name__)


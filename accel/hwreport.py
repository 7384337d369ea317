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

from . import asic, designs, inference, power, synth
from . import kinds as kinds_mod
from .lanes import products_per_cycle

# The kinds a row always has: the shift-add PE and the decoded-ASD multiplier (the int8
# baselines are :data:`accel.kinds.INT8_KINDS`).
KINDS = ("shiftadd", "multiplier")
TARGETS = ("pe", "core")
METRICS = ("lut4", "carry", "ff", "fmax_mhz", "gates", "logic_depth", "transistors",
           "toggle_energy", "toggle_energy_zero_delay", "asic_area", "asic_crit_ns",
           "asic_energy_pj", "asic_energy_pj_zero_delay", "asic_idle_pj_per_cycle")
# Higher is better for Fmax; the critical path is 1/Fmax.
LABELS = {"lut4": "iCE40 LUT4", "carry": "iCE40 carry", "ff": "flip-flops",
          "fmax_mhz": "Fmax (MHz)", "crit_ns": "critical path (ns)", "gates": "gates",
          "logic_depth": "logic depth", "transistors": "transistors",
          "toggle_energy": "toggle energy", "toggle_energy_zero_delay": "toggle energy (0-delay)",
          "glitch_share": "energy share: glitches", "ff_energy_share": "energy share: flip-flops",
          "asic_area": "cell area (um^2)", "asic_crit_ns": "cell critical path (ns)",
          "asic_energy_pj": "cell energy (pJ)",
          "asic_energy_pj_zero_delay": "cell energy (0-delay, pJ)",
          "asic_idle_pj_per_cycle": "cell energy of an idle cycle (pJ)",
          "asic_glitch_share": "cell energy share: glitches",
          "asic_ff_energy_share": "cell energy share: flip-flops"}

Stream = tuple[NDArray[np.int64], NDArray[np.int64]]
# Cycles of zero activations the idle energy is measured on.
IDLE_CYCLES = 200
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


def fresh_hdl_names() -> None:
    """Forget the block names MyHDL has handed out in this process.  MyHDL makes a block's
    name unique against every name used before in the process (a global set), so the n-th
    design elaborated got other net names (``_tree_lanes0_0_1_2``) than the same design
    built first, and nextpnr's placement, hence Fmax, follows names: a design's figures
    depended on what its process had built before (the serial benchmark's study order, a
    sweep worker's earlier points).  Called before each design is written."""
    import myhdl._block as blocks

    blocks._name_set.clear()
    blocks._inst_name_set.clear()


def measure(config: AccelConfig, target: str, workdir: str | Path, *, seeds: int = 5,
            device: str = synth.DEVICE, stream: Stream | None = None, mode: str = "pipelined",
            timeout: float = 900, log: Log | None = None, form: str = "resolved"
            ) -> dict[str, Any]:
    """All figures of one design (``config.pe`` picks the PE kind, ``config.weights`` the
    weight format, ``form`` how a multiplier hands on its product)."""
    say = log or (lambda s: None)
    wd = Path(workdir)
    fresh_hdl_names()
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
        fresh_hdl_names()
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
        res["asic_stream_cycles"] = en.cycles
        res["asic_mac_cycles"] = -(-len(stream[0]) // products_per_cycle(mode))
        # An idle cycle (no MAC: the program loads, requantizes, stores; the drain): a
        # stream of zero activations, after which nothing but the clocks toggles.
        idle_x = np.zeros(IDLE_CYCLES * products_per_cycle(mode), np.int64)
        zero_code = int(config.weight_format.encode(0, config.exp_bits))
        idle = asic.energy_per_mac(cells.netlist_v, top, config, idle_x,
                                   np.full((len(idle_x), config.lanes), zero_code, np.int64),
                                   wd / "cell-power-idle", mode=mode, timed=False,
                                   timeout=timeout)
        res["asic_idle_pj_per_cycle"] = round(idle.energy_pj / idle.cycles, 3)
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
              exp_bits: Sequence[int] | None = None,
              kinds: Sequence[str] | None = None, cells_only: bool = False) -> dict[str, Any]:
    """Every (lanes, act_bits, exp_bits) x target x kind (:data:`accel.kinds.KINDS`;
    default every kind the mode builds); returns the report dictionary.  ``exp_bits``
    defaults to ``base``'s.  ``cells_only``: the standard-cell figures alone (no iCE40, no
    generic gates).  Each weight format runs its own compiled layer (``stream_for`` is
    called with the kind's configuration)."""
    if not cells_only:
        synth.require("yosys", "nextpnr-ice40")
    synth.require("yosys", "iverilog")
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
        streams: dict[str, Stream] = {}
        for target in targets:
            step += 1
            say(f"[{step}/{total}] lanes={nl} act_bits={ab} exp_bits={e} target={target} "
                f"({time.perf_counter() - t0:.0f} s)")
            row: dict[str, Any] = {"lanes": nl, "act_bits": ab, "acc_bits": cfg.acc_bits,
                                   "exp_bits": e, "target": target}
            names = list(kinds) if kinds else list(kinds_mod.kinds_for(mode, target))
            kinds_mod.check_kinds(names, mode, target)
            for name in names:
                kind = kinds_mod.KINDS[name]
                c = kind.config(cfg)
                stream = None
                if stream_for is not None and target == "pe":
                    if c.weights not in streams:
                        streams[c.weights] = stream_for(c)
                    stream = streams[c.weights]
                where = wd / f"{target}-l{nl}-a{ab}-e{e}-{name}"
                if cells_only:
                    row[name] = measure_cells(c, target, where, stream=stream, mode=mode,
                                              timeout=timeout, log=say, form=kind.form)
                else:
                    row[name] = measure(c, target, where, seeds=seeds, device=device,
                                        stream=stream, mode=mode, timeout=timeout, log=say,
                                        form=kind.form)
            if stream_for is not None and target == "pe" and streams:
                row["layer_macs"] = int(len(next(iter(streams.values()))[0]))
            update_ratios(row)
            rows.append(row)
    return report_of(rows, base, seeds=seeds, mode=mode, device=device)


def report_of(rows: list[dict[str, Any]], base: AccelConfig, *, seeds: int, mode: str,
              device: str = synth.DEVICE) -> dict[str, Any]:
    """The report dictionary of measured ``rows`` (also built from a sweep's database by
    benchmarks/bench_hwreport.py)."""
    return {
        "device": f"iCE40 {device.upper()}", "seeds": seeds, "pe_array_mode": mode,
        "tools": tool_versions(), "transistors_per_cell": dict(synth.TRANSISTORS),
        "dff_transistors": synth.DFF_TRANSISTORS, "cell_library": asic.LIBRARY,
        "cell_clock_ns": asic.CLOCK_NS, "config": base.to_dict(),
        **headline(rows), "results": rows,
    }


def update_ratios(row: dict[str, Any]) -> None:
    """``ratio`` (shift-add / the decoded-ASD multiplier), ``int8_best`` (the strongest int8
    form, :func:`accel.kinds.strongest_int8`) and ``ratio_int8`` (shift-add / that form), for
    the kinds ``row`` holds."""
    if "shiftadd" in row and "multiplier" in row:
        row["ratio"] = ratios(row["shiftadd"], row["multiplier"])
    best = kinds_mod.strongest_int8(row)
    if best is not None and "shiftadd" in row:
        row["int8_best"] = best
        row["ratio_int8"] = ratios(row["shiftadd"], row[best])


def headline(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report's top-level figures: each kind's and the ratios of the first row, and
    which configuration that row is."""
    first = rows[0]
    out: dict[str, Any] = {k: summary(first[k]) for k in kinds_mod.KINDS if k in first}
    out.update({k: first[k] for k in ("ratio", "int8_best", "ratio_int8") if k in first})
    out["first"] = {k: first[k] for k in ("lanes", "act_bits", "exp_bits", "target")}
    return out


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
                 "asic_energy_pj_zero_delay", "asic_glitch_share", "asic_ff_energy_share",
                 "asic_idle_pj_per_cycle")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in report["results"]:
        best = r.get("int8_best")
        for k in TABLE_METRICS:
            sa, mu = r["shiftadd"].get(k), r.get("multiplier", {}).get(k)
            i8 = r[best].get(k) if best else None
            if sa is None and mu is None and i8 is None:
                continue
            cells = []
            for key in ("ratio_int8", "ratio"):  # none for the shares: they say why
                ratio = r.get(key, {}).get(k)
                cells.append("" if ratio is None else f"{(ratio - 1) * 100:+.0f}%")
            out.append([r["target"], str(r["lanes"]), str(r["act_bits"]), str(r["exp_bits"]),
                        LABELS[k], _fmt(sa), _fmt(i8) + (f" ({best})" if best else ""),
                        _fmt(mu), *cells])
    return out


HEADER = ["target", "lanes", "act", "E", "measure", "shiftadd", "int8 (strongest form)",
          "multiplier (ASD decoded)", "vs int8", "vs ASD-decoded"]
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
    text = "\n".join(lines)
    inf = report.get("inference")
    if inf:
        text += "\n\n" + inference_text(inf)
    return text


NetworksFor = Callable[[AccelConfig], Sequence[inference.NetworkCycles]]


def add_inference(report: dict[str, Any], networks_for: NetworksFor, base: AccelConfig) -> None:
    """Energy per inference (:mod:`accel.inference`) of every PE-array row and kind with
    idle-cycle figures; ``networks_for(config)`` gives the networks' cycles compiled for a
    row's configuration (and a kind's weight format).  Stored as ``report["inference"]``."""
    mode = report["pe_array_mode"]
    out = []
    for r in report["results"]:
        if r["target"] != "pe" or r["shiftadd"].get("asic_idle_pj_per_cycle") is None:
            continue
        cfg = base.replace(lanes=r["lanes"], act_bits=r["act_bits"], exp_bits=r["exp_bits"],
                           acc_bits=r["acc_bits"])
        present = [k for k in kinds_mod.KINDS if k in r]
        nets = {k: networks_for(kinds_mod.KINDS[k].config(cfg)) for k in present}
        for i, net in enumerate(nets["shiftadd"]):
            entry: dict[str, Any] = {"lanes": r["lanes"], "act_bits": r["act_bits"],
                                     "exp_bits": r["exp_bits"], "network": net.to_dict(),
                                     "int8_best": r.get("int8_best")}
            for k in present:
                entry[k] = inference.per_inference(r[k], nets[k][i], cfg, mode)
            if all(entry.get(k) for k in ("shiftadd", r.get("int8_best") or "-")):
                entry["ratio_int8"] = round(entry["shiftadd"]["energy_uj"]
                                            / entry[r["int8_best"]]["energy_uj"], 3)
            if entry.get("shiftadd") and entry.get("multiplier"):
                entry["ratio"] = round(entry["shiftadd"]["energy_uj"]
                                       / entry["multiplier"]["energy_uj"], 3)
            out.append(entry)
    report["inference"] = out


def inference_text(entries: Sequence[dict[str, Any]]) -> str:
    lines = ["Datapath energy per image (uJ) and images/s at the cell Fmax; memories, control "
             "and the requantization PE not counted:"]
    for e in entries:
        n = e["network"]
        parts = []
        for k in ("shiftadd", e.get("int8_best"), "multiplier"):
            v = e.get(k) if k else None
            if v:
                parts.append(f"{k} {v['energy_uj']:.3g} uJ, {v['images_per_s']:,.0f}/s")
        ratio = e.get("ratio_int8")
        lines.append(f"  {n['name']} ({n['cycles']:,} cycles, {n['mac_cycles']:,} MAC cycles, "
                     f"{e['lanes']} lanes, {e['act_bits']}-bit): " + "; ".join(parts)
                     + (f"; shift-add / int8 {ratio:.3f}" if ratio else ""))
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Hardware report: shift-add PE against the int8 and ASD-decoded multipliers", "",
             f"Device {report['device']} (nextpnr-ice40, Fmax = median of {report['seeds']} "
             f"seeds); PE array mode: {report['pe_array_mode']}; generic mapping "
             f"`abc -g {synth.ABC_GATES}`; standard cells "
             f"{report.get('cell_library', asic.LIBRARY)} (OpenSTA, power at "
             f"{report.get('cell_clock_ns', asic.CLOCK_NS):g} ns). Changes are shift-add "
             "against the strongest int8 form (lowest cell path x area x energy) and against "
             "the multiplier fed the decoded ASD code.",
             "",
             "| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in table_rows(report):
        lines.append("| " + " | ".join(r) + " |")
    if report.get("inference"):
        lines += ["", inference_text(report["inference"])]
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
        vals = [r.get("ratio_int8", r.get("ratio", {})).get(m) or 0.0 for m in metrics]
        xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, vals, width,
               label=f"{r['target']} l{r['lanes']} a{r['act_bits']} e{r['exp_bits']}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.5, color="r", lw=0.8, ls="--", label="target (-50%)")
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([LABELS[m] for m in metrics], rotation=20, ha="right")
    ax.set_ylabel("shiftadd / int8 multiplier (strongest form)")
    ax.set_title("Shift-add PE datapath relative to the int8 multiplier datapath")
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


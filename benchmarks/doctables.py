"""The generated blocks of the docs outside the hardware and speed tables (see
:mod:`benchmarks.tables` for the markers), from ``benchmarks/results/*.json``:

* ``fidelity`` (README): the compiled network against onnxruntime's int8 PTQ
  (``fidelity_compiled.json``, ``bench_fidelity.py``);
* ``rounding``, ``scale-choice``, ``scale-formats``, ``scale-formats-sqnr`` (docs/quantizers.md:
  ``rounding.json`` of ``bench_rounding.py``, ``scales.json`` of ``bench_scales.py``,
  ``scale_formats.json`` of ``python -m zoo.scale_formats``);
* ``hw-operating-points`` (docs/hardware.md: the size cost of each point, ``accuracy.json``);
* ``sweep-scaling`` (docs/sweep.md: ``sweep.json`` and ``sweep-eval.json``);
* ``sweep-hwreport`` (docs/sweep.md: how ``hwreport.json`` was made);
* the blocks of docs/compiler.md, from :mod:`benchmarks.compilertables`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

from benchmarks import compilertables
from benchmarks.tablefmt import dbs, fill, load, names, span, table

# ---- README -----------------------------------------------------------------------------

def fidelity() -> str:
    """How many compiled networks meet the fidelity goal against onnxruntime's own PTQ."""
    f = load("fidelity_compiled")
    nets = f["networks"]
    near = [n for n in nets if n["goal"]["gap_db"] <= f["goal_db"]]
    agree = [n for n in near if n["goal"]["agreement_at_least"]]
    return fill(f"Compiled (`--calib`: GPTQ + bias correction), ASD-2 with int8 activations is "
                f"within {f['goal_db']:g} dB of onnxruntime's int8 PTQ on {len(near)} of "
                f"{len(nets)} networks, with top-1 agreement as high on {len(agree)} "
                "([fidelity.md](docs/fidelity.md)).")


# ---- docs/quantizers.md -----------------------------------------------------------------

def gptq_time() -> str:
    """bench_gptq_time.py's time of the second-order rounding on ResNet-18 at 224."""
    t = load("gptq_time")
    verdict = "under" if t["total_s"] <= t["goal_s"] else "NOT under"
    cpu = t["statistics_cpu_s"] + t["rounding_cpu_s"]
    busiest = max(t["load_average_1min"])
    shipped = " (`asd quantize`'s default)" if t["images"] == 256 else ""
    return fill(f"**Time** (`python benchmarks/bench_gptq_time.py`): `gptq+bias` on ResNet-18 at "
                f"{t['size']}x{t['size']} (`programs.seednets`, {t['weights_m']:.1f} M weights) "
                f"with {t['images']} calibration images{shipped}: "
                f"{t['statistics_s']:.0f} s of layer statistics and {t['rounding_s']:.0f} s of "
                f"GPTQ + bias correction, {t['total_s']:.0f} s in all, {verdict} the issue's "
                f"{t['goal_s']:.0f} s, on this shared {t['cores']}-core machine (1-minute load "
                f"average up to {busiest:.1f}; the process's own CPU time {cpu:.0f} s).")


ROUNDING_COLUMNS = ["asd2/nearest", "asd2/bias", "asd2/gptq", "asd2/gptq+bias", "int6/nearest",
                    "int6/gptq+bias", "int7/nearest", "int8/nearest", "int8/gptq+bias"]


def rounding() -> str:
    """bench_rounding.py's weight-only output SQNR table and what it says about the goals."""
    r = load("rounding")
    models = r["models"]
    first = next(iter(models.values()))

    def db(m: dict[str, Any], key: str) -> float:
        return float(m["points"][key]["sqnr_db"])

    head = ["model", *[f"**{c.replace('/', ' ')}**" if c == "asd2/gptq+bias"
                       else c.replace("/", " ") for c in ROUNDING_COLUMNS],
            "asd2 gptq+bias - int6 nearest (- int7)", "top-1 float / asd2 gptq+bias (agree)"]
    rows = []
    for name, m in models.items():
        best = db(m, "asd2/gptq+bias")
        cells = [f"{db(m, c):.2f}" for c in ROUNDING_COLUMNS]
        cells[3] = f"**{cells[3]}**"
        g = m["points"]["asd2/gptq+bias"]
        rows.append([name, *cells,
                     f"{best - db(m, 'int6/nearest'):+.2f} ({best - db(m, 'int7/nearest'):+.2f})",
                     f"{m['float_top1']:.1f} / {g['top1']:.1f} ({g['agreement']:.1f}%)"])
    n = len(models)
    over6 = {k: db(m, "asd2/gptq+bias") - db(m, "int6/nearest") for k, m in models.items()}
    over6_gptq = [db(m, "asd2/gptq") - db(m, "int6/nearest") for m in models.values()]
    over7 = {k: db(m, "asd2/gptq+bias") - db(m, "int7/nearest") for k, m in models.items()}
    held6 = [k for k, v in over6.items() if v >= 0]
    held7 = [k for k, v in over7.items() if v >= 0]
    missed7 = [f"{k} ({v:+.1f})" for k, v in over7.items() if v < 0]
    vs6 = [db(m, "int6/gptq+bias") - db(m, "asd2/gptq+bias") for m in models.values()]
    agree = min(m["points"]["asd2/gptq+bias"]["agreement"] for m in models.values())
    moved = max(abs(m["points"]["asd2/gptq+bias"]["top1"] - m["float_top1"])
                for m in models.values())
    bullets = [
        "The goal, weight-only ASD-2 with error-compensating rounding at least round-to-nearest "
        "INT6 with the same scale search, "
        + (f"**holds on all {n} networks**" if len(held6) == n
           else f"holds on {len(held6)} of {n} ({names(held6)}), **not** on the others")
        + f": by {dbs(over6.values())} dB with `gptq+bias` ({dbs(over6_gptq)} with `gptq` "
        "alone).",
        f"Stretch goal INT7 (round-to-nearest): reached on {len(held7)} of {n}"
        + (f" ({names(held7)}, by {dbs(over7[k] for k in held7)} dB)" if held7 else "")
        + (f", **not** on {names(missed7)}." if missed7 else "."),
        "The same compensation helps the baselines: "
        + (f"ASD-2 `gptq+bias` stays {dbs(vs6)} dB below INT6 `gptq+bias`." if min(vs6) > 0
           else f"INT6 `gptq+bias` minus ASD-2 `gptq+bias`: {dbs(vs6)} dB."),
        f"Top-1 moves by at most {moved:.1f} points and agreement with float stays >= "
        f"{agree:.1f}%: SQNR and KL are what separate the schemes on these models.",
    ]
    intro = fill(f"Weight-only output SQNR (dB) of the shipped MNIST and digits models "
                 "against the float model, float activations, "
                 f"per-channel mse scales, {first['calibration_images']} calibration images "
                 f"(training split), the first {first['images']} test images, measured as "
                 "`asd eval MODEL --rounding ... --json` does (`python "
                 "benchmarks/bench_rounding.py`):")
    return (intro + "\n\n" + table(head, rows) + "\n\n"
            + "\n".join(textwrap.fill(b, width=96, initial_indent="* ", subsequent_indent="  ",
                                      break_on_hyphens=False) for b in bullets))


def scale_choice() -> str:
    """bench_scales.py: weight SQNR per scheme and scale choice, per channel and per tensor."""
    s = load("scales")
    schemes = s["schemes"]
    head = ["scheme", "per-channel max", "pow2", "**mse**", "per-tensor max", "pow2", "mse"]
    keys = ["channel/max", "channel/pow2", "channel/mse", "tensor/max", "tensor/pow2",
            "tensor/mse"]
    rows = [[label, *[f"**{v[k]['sqnr_db']:.2f}**" if k == "channel/mse"
                      else f"{v[k]['sqnr_db']:.2f}" for k in keys]]
            for label, v in schemes.items()]
    best = [label for label, v in schemes.items()
            if all(v["channel/mse"]["sqnr_db"] >= v[k]["sqnr_db"] for k in keys)]
    cost = [v["channel/mse"]["bits_per_weight"] - v["tensor/mse"]["bits_per_weight"]
            for v in schemes.values()]
    asd = schemes.get("asd K=2 E=3")
    pow2 = ("" if asd is None else
            f" `pow2` is there for hardware that cannot multiply by the scale; it loses "
            f"{asd['channel/mse']['sqnr_db'] - asd['channel/pow2']['sqnr_db']:.1f} dB for ASD "
            "per channel.")
    intro = fill(f"**Default: per-channel `mse`.** On ResNet-18-shaped Laplace weights "
                 f"({s['weights'] / 1e6:.2f} M weights in {s['layers']} layers: "
                 f"`bench_quantize.py`'s generator, channel counts / {s['shrink']}), nearest "
                 "rounding, weight SQNR in dB (`python benchmarks/bench_scales.py`):")
    note = fill(("Per channel, MSE is the best choice for every scheme" if len(best) == len(schemes)
                 else f"Per channel MSE is the best choice for {len(best)} of {len(schemes)} "
                 "schemes") + f", at the cost of one scale per output channel "
                f"({span(cost, '{:.2f}')} bits a weight more than per tensor, as stored in the "
                "default `fp16-pack`), and one extra pass, not a retraining." + pow2)
    return intro + "\n\n" + table(head, rows) + "\n\n" + note


FORMATS = ["fp16-pack", "fp16", "log8", "shared-exp", "pow2"]
BASELINE = "fp16+fp32"  # main's archive: float16 scales, float32 biases


def scale_formats() -> str:
    """The size cut of every scale format (with float16 biases), and main's archive."""
    sizes = load("scale_formats")["sizes"]
    head = ["network", *[f"**`{f}`** cut (bits/w)" if f == "fp16-pack" else f"`{f}` cut (bits/w)"
                         for f in FORMATS], "`fp16` + float32 biases (main's archive)"]
    rows = []
    for name, s in sizes.items():
        cells = [f"{s[f + '+fp16']:.2f}% ({s[f + ' bits/w']:.2f})" for f in FORMATS]
        cells[0] = f"**{cells[0]}**"
        rows.append([name, *cells, f"{s[BASELINE]:.2f}%"])
    return table(head, rows)


def scale_formats_sqnr() -> str:
    """Weight-only output SQNR of every scale format, and what it says about the default."""
    d = load("scale_formats")
    sq, sizes = d["sqnr"], d["sizes"]
    head = ["model", *[f"**`{f}`**" if f == "fp16-pack" else f"`{f}`" for f in FORMATS],
            "`fp16` + float32 biases (main's archive)"]
    rows = [[name, *[f"**{q[f + '+fp16']:.2f}**" if f == "fp16-pack" else f"{q[f + '+fp16']:.2f}"
                     for f in FORMATS], f"{q[BASELINE]:.2f}"] for name, q in sq.items()]

    def loss(fmt: str) -> list[float]:
        return [q["fp16-pack+fp16"] - q[f"{fmt}+fp16"] for q in sq.values()]

    same = all(q["fp16-pack+fp16"] == q["fp16+fp16"] for q in sq.values())
    bias = max(abs(q["fp16+fp16"] - q[BASELINE]) for q in sq.values())
    gain = [s["log8+fp16"] - s["fp16-pack+fp16"] for s in sizes.values()]
    lost8 = [v for v in loss("log8") if v > 0]
    coarse = loss("shared-exp") + loss("pow2")
    floor = min(s["fp16-pack+fp16"] for s in sizes.values())
    note = fill(
        "**Default: `fp16-pack` scales, float16 biases** (`asd quantize` and `asd.evaluate`): "
        + ("the same output SQNR as `fp16` on every network (its values are fp16's, bit for "
           "bit)" if same else "the output SQNR of `fp16` up to rounding")
        + f", at least {floor:.2f}% smaller than float32 on every network above, and float16 "
        + (f"biases cost at most {bias:.2f} dB against float32 ones." if bias >= 0.005 else
           "biases change it by less than 0.01 dB against float32 ones.")
        + f" `log8` would add {span(gain, '{:.2f}')} points of size cut and loses "
        f"{span(lost8, '{:.2f}')} dB of output SQNR "
        f"on {len(lost8)} of {len(sq)} models; `shared-exp` and `pow2` lose "
        + (f"{dbs(coarse)} dB." if min(coarse) >= 0 else
           f"up to {max(coarse):.1f} dB, and gain up to {-min(coarse):.1f} dB on some "
           "networks (weight-only output SQNR is not monotone in the weight error)."))
    return table(head, rows) + "\n\n" + note


# ---- docs/hardware.md -------------------------------------------------------------------

def hw_operating_points() -> str:
    """The size each hardware operating point costs (accuracy.json)."""
    acc = list(load("accuracy")["models"].values())
    e3 = span((100 * m["schemes"]["asd2"]["size_reduction"] for m in acc), "{:.1f}")
    e4 = span((100 * m["asd2_exp_bits_4_size"]["size_reduction"] for m in acc), "{:.1f}")
    int8 = [m["schemes"]["int8"] for m in acc]
    asd2 = [m["schemes"]["asd2"] for m in acc]
    bits = span((s["bits_per_weight"] for s in int8 + asd2), "{:.2f}")
    better = sum(i["top1"] >= a["top1"] for i, a in zip(int8, asd2))
    return fill("The shipped configuration is E = 3 with 8-bit activations and 8 lanes; rows at "
                "16-bit activations or E = 4 are other operating points (E = 4 takes 10-bit "
                f"codes and a smaller size cut, {e4}% against {e3}% on the shipped models: "
                f"[benchmarks.md](benchmarks.md)). int8 weights take as many bits as the shipped "
                f"codes ({bits} bits a weight, scales included, for both) and are as accurate "
                f"or more on {better} of {len(asd2)} shipped models.")


# ---- docs/sweep.md ----------------------------------------------------------------------

def sweep_scaling() -> str:
    """bench_sweep.py's two runs: Dask against serial, 1 and 2 workers."""
    hw, ev = load("sweep"), load("sweep-eval")

    def row(what: str, r: dict[str, Any]) -> list[str]:
        return [f"{r['points']} {what}; {r['serial_seconds_per_point']:.1f} s each)",
                f"{100 * r['overhead_1_worker_vs_serial']:+.1f}%",
                f"{100 * r['overhead_2_workers_vs_serial']:+.0f}%",
                f"{r['speedup_2_vs_1_workers']:.2f}x",
                f"{100 * r['scheduling_share_1_worker']:.1f}%"]

    head = ["points", "1 worker vs serial", "2 workers vs serial", "2 workers vs 1",
            "Dask's share of 1 worker's wall time"]
    grid = (hw["grid"].replace("act_bits", "activation bits").replace(",c", ", c")
            .replace(",t", ", t"))
    rows = [row(f"hwreport designs ({grid}, {hw['seeds']} nextpnr seed, "
                f"{hw['macs']} MACs", hw),
            row(f"eval points ({ev['model']}, {ev['images_per_point']} images", ev)]
    share, serial = hw["scheduling_share_1_worker"], 1 + hw["overhead_2_workers_vs_serial"]
    note = fill(
        "The hardware sweep, the issue's goal, is a chain of single-threaded Yosys, nextpnr, "
        f"Icarus and OpenSTA runs per point: scheduling costs {100 * share:.1f}% of the wall "
        f"time (goal: under 2%, {'met' if share < 0.02 else 'not met'}), and 2 workers finish "
        f"in {100 * serial:.0f}% of the serial time (goal: no slower than serial, "
        f"{'met' if serial <= 1 else 'not met'}). Scaling: 2 workers are "
        f"{hw['speedup_2_vs_1_workers']:.2f}x faster than 1, where these points' durations "
        f"allow {hw['speedup_2_workers_bound']:.2f}x; the same points on 2 plain processes "
        f"without Dask are {hw['speedup_2_plain_processes_vs_serial']:.2f}x faster than serial "
        f"(load average {hw['load_average_before']:.1f} before the run, "
        f"{hw['load_average_after']:.1f} after), so Dask's 2 workers reach "
        f"{100 / (serial * hw['speedup_2_plain_processes_vs_serial']):.0f}% of what two "
        "processes get from this machine's two cores: what is lost to linear is the "
        "machine's, not the scheduler's.")
    return table(head, rows) + "\n\n" + note


def sweep_hwreport() -> str:
    """How hwreport.json was made: its designs through the sweep and their tool time."""
    hw = load("hwreport")
    studies = {k: v for k, v in hw.items() if isinstance(v, dict) and "results" in v}
    swept = {k: v["swept"] for k, v in studies.items()
             if "swept" in v and not v["swept"]["partial"]}
    rest = sorted(set(studies) - set(swept))
    if not swept:
        return fill("No study of `hwreport.json` was written whole from a sweep database.")
    designs = sum(v["designs"] for v in swept.values())
    hours = sum(v["design_seconds"] for v in swept.values()) / 3600
    return fill(
        f"{len(swept)} of the {len(studies)} studies of `hwreport.json` "
        f"({', '.join(f'`{k}`' for k in sorted(swept))}) were written whole from one sweep "
        f"database by `python benchmarks/bench_hwreport.py`: {designs} designs, "
        f"{hours:.1f} hours of tool time (Yosys, nextpnr, Icarus, OpenSTA; other jobs shared "
        "the machine) over resumed runs on 2 local workers."
        + (f" The rows of {', '.join(f'`{k}`' for k in rest)} are from an earlier run of the "
           "same script, before its database was kept." if rest else ""))


GENERATORS: dict[str, Callable[..., str]] = {
    "sweep-hwreport": sweep_hwreport,
    "gptq-time": gptq_time,
    "fidelity": fidelity, "rounding": rounding, "scale-choice": scale_choice,
    "scale-formats": scale_formats, "scale-formats-sqnr": scale_formats_sqnr,
    "hw-operating-points": hw_operating_points, "sweep-scaling": sweep_scaling,
    **compilertables.GENERATORS,
}

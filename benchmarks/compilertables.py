"""The generated blocks of docs/compiler.md (see :mod:`benchmarks.tables` for the markers), from
``benchmarks/results/*.json``; the ``seednets`` table itself is :mod:`benchmarks.tables`'.

* ``requant-search``: the requant-aware scale search against max-abs scales (``compiler.json``
  of ``bench_compiler.py``);
* ``host-transfers``, ``seednets-notes``, ``compile-scale``, ``seednets-small``: the seed
  networks at 224x224 (``compiler_seednets.json``, ``compiler_seednets_small.json`` and the
  baseline ``compiler_before_scale.json``, all of ``bench_compiler.py``);
* ``fidelity-roundings``, ``fidelity-ort``, ``fidelity-layers``: the compiled network against
  float and onnxruntime's int8 PTQ (``fidelity_compiled.json`` of ``bench_fidelity.py``).

Every sentence is built from the saved figures, so a rerun of a benchmark rewrites it; the words
that judge (met, not met, best) are computed too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks import bench_fidelity as bf
from benchmarks.tablefmt import SEEDNET_NAMES as NAMES
from benchmarks.tablefmt import dbs, fill, load, names, span, table

# Issue 21's targets for compiling at 224x224 on the default configuration (not measurements).
GOAL_SECONDS = {"resnet18": 10.0, "alexnet": 60.0}
GOAL_PEAK_BYTES = 4e9  # VGG-16's compile peak
GOAL_BATCH, GOAL_ONE_IMAGE = 3.0, 10.0  # x onnxruntime float, batch of 32 and one image
GiB = 2**30


def _nets(name: str) -> dict[str, dict[str, Any]]:
    """The file's networks in the seed networks' order (a --merge run appends the ones it
    measures)."""
    nets = dict(load(name)["networks"])
    rank = list(NAMES)
    return dict(sorted(nets.items(), key=lambda kv: rank.index(kv[0]) if kv[0] in rank
                       else len(rank)))


def _peak(n: dict[str, Any]) -> float:
    return float(n.get("peak_rss_bytes_during_compile") or n["peak_rss_bytes_after_compile"])


# ---- quantization and transfers ---------------------------------------------------------

def requant_search() -> str:
    """The requant-aware scale search against max-abs scales with a rounded multiplier."""
    r = load("compiler")["requant_search"]
    aware, plain, n = r["requant_aware"], r["max_abs_scales"], r["images"]
    return fill(f"The requant-aware scale search, measured on "
                f"{r['model'].replace('resnet18', 'ResNet-18')} (random weights, "
                f"{n} inputs; `benchmarks/bench_compiler.py`): output error relative RMS "
                f"**{aware['rel_rms_error']:.3f} with the search vs {plain['rel_rms_error']:.3f} "
                "with plain max-abs scales and a rounded `m`**; top-1 agreement with the float "
                f"model {round(aware['top1_agreement'] * n)}/{n} vs "
                f"{round(plain['top1_agreement'] * n)}/{n}.")


def host_transfers() -> str:
    """Transfer against compute cycles of the seed networks, both configurations."""
    nets, small = _nets("compiler_seednets"), _nets("compiler_seednets_small")
    each = [f"{NAMES.get(k, k)} {n['transfer_cycles_per_image'] / 1e6:.1f} M beside "
            f"{n['cycles_per_image'] / 1e6:.1f} M ({n['transfer_bytes_per_image'] / 1e6:.1f} MB)"
            for k, n in nets.items()]
    share = [100 * n["transfer_cycles_per_image"] / n["cycles_per_image"] for n in small.values()]
    return fill("Measured at 224x224 on the default configuration, one word a cycle (the "
                "seed-network run of the benchmark below), transfer cycles beside compute "
                f"cycles per image (bytes moved): {names(each)}; on the small configuration "
                f"(table below) {span(share)}% of the compute cycles.")


# ---- the seed networks ------------------------------------------------------------------

def seednets_notes() -> str:
    """Program bytes over unique, split layers and MAC utilization of the seed networks."""
    nets = _nets("compiler_seednets")
    squeeze = {k: n for k, n in nets.items() if k.startswith("squeezenet")}
    dense = {k: n for k, n in nets.items() if k not in squeeze}
    splits = [f"{NAMES.get(k, k)} {n['split_layers'] or 'none'}" for k, n in nets.items()]

    def util(group: dict[str, dict[str, Any]], key: str = "mac_utilization") -> str:
        return span(100 * n[key] for n in group.values())

    return fill(
        "Program bytes against what they must hold at least once (every weight code, every "
        "channel's parameter words, every tile's instructions; `program_over_unique` in the "
        f"JSON): {span((n['program_over_unique'] for n in nets.values()), '{:.2f}x')}. Layers "
        f"with a split reduction (`split_layers`): {names(splits)}. MAC utilization: the dense "
        f"networks ({names(NAMES.get(k, k) for k in dense)}) keep the lanes {util(dense)}% busy "
        "(the rest: BIAS, REQ, STORE and loop overhead per pixel); SqueezeNet "
        f"{util(squeeze)}% (its 1x1 squeeze convolutions have short reductions, so the "
        "per-pixel overhead weighs more); host transfers at one word a cycle take it to "
        f"{util(nets, 'mac_utilization_end_to_end')}% end to end.") + "\n\n" + speed_goals(nets)


def speed_goals(nets: dict[str, dict[str, Any]]) -> str:
    """Issue 21's speed goals against the table: a batch of 32 at most 3x onnxruntime float
    (ResNet-18, SqueezeNet 1.1), one image on the emulator at most 10x."""
    def verdict(key: str, goal: float, which: list[str]) -> str:
        got = {k: nets[k][key] for k in which if key in nets[k]}
        met = [k for k, v in got.items() if v <= goal]
        # Met within a tenth of the goal: another run on this shared machine may miss it.
        edge = [NAMES.get(k, k) for k in met if got[k] > 0.9 * goal]
        return (", ".join(f"{NAMES.get(k, k)} {v:.1f}x" for k, v in got.items())
                + (": met" if len(met) == len(got) else ": **not met** on any" if not met else
                   f": **not met** on {names(NAMES.get(k, k) for k in got if k not in met)}")
                + (f"; {names(edge)} within a tenth of the goal, at its edge" if edge else ""))

    batch: list[str] = [k for k in ("resnet18", "squeezenet1_1") if k in nets]
    checks = {k: nets[k]["emulator_fast_seconds"] / nets[k]["onnxruntime_batch_seconds"]
              for k in batch if nets[k].get("batch_over_onnxruntime", 0) > GOAL_BATCH}
    floors = [n["gemm_floor_over_onnxruntime"] for n in nets.values()
              if "gemm_floor_over_onnxruntime" in n]
    return fill(
        f"Issue 21's speed goals: `asd run` on a batch of 32 at most {GOAL_BATCH:g}x onnxruntime "
        f"float ({verdict('batch_over_onnxruntime', GOAL_BATCH, batch)}); one image on the "
        f"emulator at most {GOAL_ONE_IMAGE:g}x "
        f"({verdict('emulator_over_onnxruntime', GOAL_ONE_IMAGE, list(nets))})."
        + (f" One image's exact arithmetic alone takes {span(floors, '{:.1f}x')} (*float64 "
           "GEMMs*): the rest of the emulator's time is interpreting each tile's program "
           "(gathering windows, requantizing, storing, setting up each tile's memories)."
           if floors else "")
        + "".join(f" {NAMES.get(k, k)}'s batch checks image 0 on the emulator, which alone "
                  f"takes {check:.1f}x onnxruntime's whole batch." for k, check in checks.items())
        + _product_rates(nets))


def _product_rates(nets: dict[str, dict[str, Any]]) -> str:
    """Which products the batch's layers took, from the rates the benchmark's process timed."""
    rates = next((n["batch_product_rates"] for n in nets.values() if "batch_product_rates" in n),
                 None)
    if rates is None:
        return ""
    g = {k: v / 1e9 for k, v in rates.items()}
    verdict = "lose" if 2 / g["int8"] > 1 / g["float32"] else "win"
    return (f" The batch's layers take onnxruntime's 8-bit products or exact float ones, "
            f"whichever `batchort.rates()` times faster per layer: here {g['int8']:.1f} G "
            f"products/s (u8s8, one digit plane), {g['float32']:.1f} (float32) and "
            f"{g['float64']:.1f} (float64) on one thread, so ASD's two digit planes {verdict} "
            "against float32.")


def compile_scale() -> str:
    """Compile time and peak memory before the work of issue 21 and now, against its goals."""
    before, now = _nets("compiler_before_scale"), _nets("compiler_seednets")
    was = [f"{NAMES.get(k, k)} {n['compile_seconds']:.1f} s and {_peak(n) / GiB:.2f} GiB"
           for k, n in before.items() if k in GOAL_SECONDS]
    times = [f"{NAMES.get(k, k)} {now[k]['compile_seconds']:.1f} s" for k in
             (*GOAL_SECONDS, "vgg16") if k in now]
    vgg = now["vgg16"]
    met = (all(now[k]["compile_seconds"] <= s for k, s in GOAL_SECONDS.items())
           and _peak(vgg) <= GOAL_PEAK_BYTES)
    goals = ", ".join(f"{NAMES[k]} {s:.0f} s" for k, s in GOAL_SECONDS.items())
    return fill(
        "Before (`benchmarks/results/compiler_before_scale.json`, this code before the work "
        "below, measured on an idle machine at the start of the same session): "
        f"{names(was)} (the process's peak; AlexNet and VGG-16 before: [log](compiler-log.md)). "
        f"Now (the table above): {names(times)} ({vgg['compile_cpu_seconds']:.1f} s of CPU), "
        f"VGG-16's compile peak {_peak(vgg) / GiB:.2f} GiB: issue 21's goals ({goals}, "
        f"VGG-16 under {GOAL_PEAK_BYTES / 1e9:.0f} GB) are {'met' if met else '**not met**'}.")


def seednets_small() -> str:
    """The seed networks on the small configuration; rows measured before are marked."""
    nets = _nets("compiler_seednets_small")
    head = ["network (224x224), small", "compile", "emulator / onnxruntime", "program bytes",
            "/ unique", "split layers", "tiles", "cycles per image", "transfer cycles",
            "MAC utilization", "bit-exact"]
    rows, notes = [], []
    for k, n in nets.items():
        label = NAMES.get(k, k) + (" (before)" if "note" in n else "")
        if "note" in n:
            notes.append(f"{label}: {n['note']}.")
        rows.append([label, f"{n['compile_seconds']:.1f} s",
                     f"{n['emulator_over_onnxruntime']:.0f}x",
                     f"{n['program_bytes'] / 1e6:.1f} MB", f"{n['program_over_unique']:.2f}x",
                     str(n["split_layers"]), f"{n['tiles']:,}", f"{n['cycles_per_image']:,}",
                     f"{n['transfer_cycles_per_image']:,}",
                     f"{n['mac_utilization']:.1%}" if "mac_utilization" in n else "-",
                     "yes" if n["bit_exact_with_integer_reference"] else "**no**"])
    return table(head, rows) + ("\n\n" + fill(" ".join(notes)) if notes else "")


# ---- fidelity ---------------------------------------------------------------------------

ROUNDINGS = ["nearest", "bias", "bias q", "gptq", "gptq q", "gptq+bias", "gptq+bias q",
             "gptq+bias c", "gptq+bias c sym", "gptq+bias q sym"]


def _fid() -> list[dict[str, Any]]:
    return list(load("fidelity_compiled")["networks"])


def _images(count: float) -> str:
    n = round(count)
    return f"{n} image" if n == 1 else f"{n} images"


def _db(r: dict[str, Any], label: str) -> float:
    return float(r["rows"][label]["sqnr_db"])


def fidelity_roundings() -> str:
    """Output SQNR of every weight rounding, the mean gain over nearest, and what it says."""
    f = load("fidelity_compiled")
    nets = f["networks"]
    cols = [c for c in ROUNDINGS if all(f"asd2 {c}" in r["rows"] for r in nets)]
    best = bf.BEST.removeprefix("asd2 ")

    def cell(c: str, text: str) -> str:
        return f"**{text}**" if c == best else text

    head = ["network", *[cell(c, c) + (" (before)" if f"asd2 {c}" == bf.PREVIOUS else "")
                         for c in cols]]
    rows = [[r["network"], *[cell(c, f"{_db(r, 'asd2 ' + c):.1f}") for c in cols]]
            for r in nets]
    gains = [sum(_db(r, f"asd2 {c}") - _db(r, "asd2 nearest") for r in nets) / len(nets)
             for c in cols]
    rows.append(["mean gain over nearest", *["" if c == "nearest" else cell(c, f"{g:+.1f}")
                                             for c, g in zip(cols, gains)]])
    sym = bf.BEST + " sym"
    zp = {r["network"]: _db(r, bf.BEST) - _db(r, sym) for r in nets if sym in r["rows"]}
    asd = {r["network"]: {k: _db(r, k) for k in r["rows"] if k.startswith("asd2")} for r in nets}
    tops = {k: max(v.values()) - v[bf.BEST] for k, v in asd.items()}
    behind = [f"{k} by {v:.1f} dB" for k, v in tops.items() if v >= 0.05]
    compile_s = {c: [r["rows"][c]["compile_s"] for r in nets] for c in ("asd2 nearest", bf.BEST)}
    least = sorted(zp, key=zp.__getitem__)[:2]
    zero_points = (f" The zero points alone (`c` against `c sym`) gain {dbs(list(zp.values()))}"
                   f" dB, least on {names(least)};" if zp else "")
    note = fill(
        "(`q`: statistics from the quantized network's inputs, `c`: `compensate`.)"
        + zero_points + f" `compensate` is the best rounding (or within 0.05 dB of it) on "
        f"{len(tops) - len(behind)} of {len(tops)} networks"
        + (f" (behind on {names(behind)})" if behind else "")
        + f". The run took {f['seconds'] / 60:.0f} minutes on this shared 2-core machine; "
        f"compiling with the default took {span(compile_s[bf.BEST])} s per network (other jobs "
        f"shared the machine) against {span(compile_s['asd2 nearest'], '{:.1f}')} s for "
        "nearest.")
    return table(head, rows) + "\n\n" + note


def fidelity_ort() -> str:
    """SQNR and agreement beside onnxruntime's static int8, and the goal network by network."""
    f = load("fidelity_compiled")
    nets = f["networks"]
    gap = {r["network"]: r["goal"]["gap_db"] for r in nets}
    near = [k for k, v in gap.items() if v <= f["goal_db"]]
    better = [k for k, v in gap.items() if v <= 0]
    low = min(gap, key=lambda k: -gap[k])
    high = min(gap, key=lambda k: gap[k])

    def strong(r: dict[str, Any]) -> float:
        return max(_db(r, k) for k in bf.ORT_ROWS)

    prev = {r["network"]: strong(r) - _db(r, bf.PREVIOUS) for r in nets}
    kernels = [_db(r, bf.ORT_ROWS[0]) - _db(r, bf.ORT_ROWS[1]) for r in nets]
    missed = []
    for r in nets:
        if r["goal"]["agreement_at_least"]:
            continue
        mine = r["rows"][bf.BEST]
        ours, base, n = (mine["agreement"], r["rows"][r["goal"]["baseline"]]["agreement"],
                         r["test_images"])
        ties = ("" if "tied" not in mine else
                f"; of ours, {mine['tied']} {'is a tie' if mine['tied'] == 1 else 'are ties'} "
                "of the largest 8-bit output code, where argmax takes the first class")
        if mine.get("closest"):
            ties += (f", and every one is among the {mine['closest']} test images whose float "
                     "top-2 margin is smallest")
        gl, int8 = r["goal"], r["rows"].get("int8 gptq+bias c")
        if "agreement_mcnemar_p" in gl:
            ties += (f"; only ours agrees on {gl['agrees_only_ours']}, only onnxruntime on "
                     f"{gl['agrees_only_baseline']}: exact McNemar p = "
                     f"{gl['agreement_mcnemar_p']:.2g}")
        if int8:
            ties += f"; with int8 weights through the same compiler {int8['agreement']:.1f}%"
        missed.append(f"**{r['network']}** ({ours:.1f}% against {base:.1f}%: "
                      f"{_images((100 - ours) * n / 100)} of {n} against "
                      f"{round((100 - base) * n / 100)}{ties})")
    int8 = {r["network"]: _db(r, "int8 gptq+bias c") for r in nets if "int8 gptq+bias c"
            in r["rows"]}
    intro = fill(
        f"`{bf.ORT_ROWS[1]}` is the same file fused into onnxruntime's integer kernels on this "
        f"CPU ({'VNNI' if f['cpu_flags_vnni'] else 'no VNNI'}: "
        + (f"{span(kernels)} dB worse than" if max(kernels) >= 0.05 else "the same figures as")
        + " the same model run as written, not used as the baseline). Each cell: SQNR / top-1 "
        f"agreement with float. The goal: the default ASD-2 compile within {f['goal_db']:g} dB "
        "of the stronger onnxruntime row and top-1 agreement at least as high.")
    note = fill(
        f"**The {f['goal_db']:g} dB goal is met on {len(near)} of {len(nets)} networks** (from "
        f"{gap[low]:.1f} dB below `{bf.ORT_ROWS[0]}` on {low} to {-gap[high]:.1f} dB "
        f"{'above' if gap[high] <= 0 else 'below'} it on {high}; the compile that was the "
        f"default before the zero points, `{bf.PREVIOUS}`, within {f['goal_db']:g} dB on "
        f"{sum(v <= f['goal_db'] for v in prev.values())} of {len(nets)}, up to "
        f"{max(prev.values()):.1f} dB below), and equal or better on {len(better)}"
        + (f" ({names(better)})" if better else "") + ". Top-1 agreement is at least "
        f"onnxruntime's on {len(nets) - len(missed)} of {len(nets)}"
        + (f"; not met on {names(missed)}" if missed else "") + "."
        + (" A p-value is the chance of a split at least that uneven between two equally good "
           "models: above 0.05 the difference is within chance." if any(
               "agreement_mcnemar_p" in r["goal"] for r in nets) else "")
        + (f" With int8 weights through the same compiler the networks reach {dbs(int8.values())}"
           " dB (`int8 gptq+bias c`)." if int8 else ""))
    return intro + "\n\n" + bf.markdown(nets) + "\n\n" + note


def fidelity_layers() -> str:
    """Per weight layer: where the accelerator's own steps lose more than the weights."""
    layers = [(r["network"], lay) for r in _fid() for lay in r.get("layers", [])]
    lose = sorted(((n, lay) for n, lay in layers if lay["accel_steps_db"] < lay["weights_db"]),
                  key=lambda nl: nl[1]["accel_steps_db"] - nl[1]["weights_db"])
    worst = [f"{n} {lay['layer']} {lay['accel_steps_db']:.1f} dB against "
             f"{lay['weights_db']:.1f} dB for its weights" for n, lay in lose[:3]]
    if not layers:
        return "Not measured in the saved run (`bench_fidelity.py --layers` measures it)."
    return fill(
        "With the zero points the accelerator's steps lose more than the weights on "
        f"{len(lose)} of {len(layers)} layers; the largest such losses: {names(worst)}.")


GENERATORS: dict[str, Callable[..., str]] = {
    "requant-search": requant_search, "host-transfers": host_transfers,
    "seednets-notes": seednets_notes, "compile-scale": compile_scale,
    "seednets-small": seednets_small, "fidelity-roundings": fidelity_roundings,
    "fidelity-ort": fidelity_ort, "fidelity-layers": fidelity_layers,
}

"""The results tables of README.md and docs/*.md, generated from ``benchmarks/results/*.json``.

Every figure the README and the docs quote from a measurement lives between two markers::

    <!-- generated: NAME [ARG] -->
    ...written by this module...
    <!-- end generated -->

and is rewritten from the JSON the benchmarks saved, so a document cannot drift from its
measurements.  ``tests/test_docs.py`` fails when a block is stale.

    python -m benchmarks.tables            rewrite the blocks in place
    python -m benchmarks.tables --check    exit 1 naming every stale block

Blocks (NAME): ``accuracy``, ``hw-headline``, ``speed`` (README); the hardware blocks of
:mod:`benchmarks.hwtables` (docs/hardware.md); ``seednets`` (docs/compiler.md); ``quantize``
(docs/quantizers.md); ``backends`` (docs/rtl.md); the blocks of :mod:`benchmarks.doctables`
(README's ``fidelity``, docs/quantizers.md, docs/hardware.md, docs/sweep.md).
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

from benchmarks import doctables, hwtables
from benchmarks.tablefmt import (  # noqa: F401  (re-exported)
    RESULTS,
    SEEDNET_NAMES,
    load,
    pct,
    span,
    table,
)

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- generated: ([\w-]+)(?: ([\w-]+))? -->\n)(.*?)(<!-- end generated -->)",
                   re.S)



# ---- accuracy and speed -----------------------------------------------------------------

ACC_SCHEMES = {"short": ["float", "asd2", "pot", "int8", "fp8-e4m3"],
               "full": ["float", "asd2", "pot", "int8", "int6", "int4", "fp8-e4m3", "fp8-e5m2"]}


def accuracy(which: str = "short") -> str:
    """Top-1 (%) per model and scheme, and the size of the ASD model against float32."""
    models = load("accuracy")["models"]
    names = ACC_SCHEMES[which]
    full = which == "full"
    head = ["model", *[f"**{s}**" if s == "asd2" else s for s in names], "asd2 size",
            *(["asd2 size at E = 4"] if full else []), "accelerator"]
    rows = []
    for name, m in models.items():
        s = m["schemes"]
        sizes = [s["asd2"]] + ([m["asd2_exp_bits_4_size"]] if full else [])
        rows.append([name, *[f"**{s[k]['top1']:.1f}**" if k == "asd2" else f"{s[k]['top1']:.1f}"
                             for k in names],
                     *[f"{-100 * a['size_reduction']:.1f}% ({a['bits_per_weight']:.2f} bits)"
                       for a in sizes],
                     f"{m['accelerator']['top1']:.1f}"])
    hw = next(iter(models.values()))["accelerator"]
    drop = max(m["schemes"]["asd2"]["drop_vs_float"] for m in models.values())
    cut = min(m["schemes"]["asd2"]["size_reduction"] for m in models.values())
    int8 = sum(m["schemes"]["int8"]["top1"] >= m["schemes"]["asd2"]["top1"]
               for m in models.values())
    images = {m["dataset"]: m["images"] for m in models.values()}
    note = textwrap.fill(
        "Test images: " + ", ".join(f"{n:,} ({d})" for d, n in sorted(images.items())) + ". "
        f"Accelerator: asd2 weights ({hw.get('rounding', 'nearest')}, "
        f"{hw['calibration_images']} calibration images), {hw['act_bits']}-bit activations, "
        f"{hw['lanes']} lanes (shipped), bit-exact with the emulator. "
        f"asd2 is within {drop:.1f} points of float on every model and at least {cut:.1%} "
        f"smaller; int8 is as accurate or more on {int8} of {len(models)} models: ASD's case "
        "is the datapath, not accuracy per stored bit.", width=96, break_on_hyphens=False)
    return table(head, rows) + "\n\n" + note


def speed() -> str:
    emu, be, qz = load("emulator"), load("backends")["backends"], load("quantize")
    nets = load("compiler_seednets")["networks"]
    rtl = ", ".join(f"{k} {be[k]['cycles_per_second'] / 1e3:,.1f}k"
                    for k in ("verilator", "icarus", "ghdl", "myhdl"))
    rows = [
        [f"emulator (fast) / numpy float32 im2col, ResNet-18 {emu['layer'].split(', stride')[0]}",
         f"{emu['fast_over_numpy_median']:.1f}x slower, "
         + ("bit-exact" if emu["fast_matches_integer_reference"] else "NOT bit-exact")],
        ["RTL simulation, cycles per second", rtl],
        [f"ASD codes / `np.abs`, {qz['weights'] / 1e6:.1f} M weights: nearest, MSE scale search",
         f"{qz['nearest_over_abs']:.1f}x, {qz['mse_over_abs']:.1f}x"],
        ["emulator / onnxruntime float, seed networks at 224x224",
         f"{span(n['emulator_over_onnxruntime'] for n in nets.values())}x, "
         + ("all bit-exact" if all(n["bit_exact_with_integer_reference"]
                                   for n in nets.values()) else "NOT all bit-exact")],
    ]
    return table(["measured", "figure"], rows)


def quantize() -> str:
    """The saved run of bench_quantize.py against its targets."""
    q = load("quantize")
    t = q["targets"]
    rows = [
        ["nearest ASD codes at fixed per-channel scales / `np.abs`",
         f"{q['nearest_over_abs']:.1f}x", f"<= {t['nearest_over_abs']:.0f}x"],
        [f"per-channel MSE scale search ({q['mse_candidates']} candidates) / `np.abs`",
         f"{q['mse_over_abs']:.1f}x", f"<= {t['mse_over_abs']:.0f}x"],
        ["peak extra memory, nearest / MSE search, in weights",
         f"{q['nearest_peak_extra_over_weights']:.2f}x / {q['mse_peak_extra_over_weights']:.2f}x",
         f"<= {t['peak_extra_over_weights']:.0f}x"],
        ["a Python loop per weight / vectorized, nearest / MSE search",
         f"{q['python_over_vectorized_nearest']:.0f}x / {q['python_over_vectorized_mse']:.0f}x",
         "-"],
    ]
    return (f"{q['weights'] / 1e6:.2f} M weights in {q['layers']} layers, best of "
            f"{q['repeat']}, numpy {q['numpy']}:\n\n"
            + table(["measured", "figure", "target"], rows))


def backends() -> str:
    """The saved run of bench_backends.py: simulated cycles per second of every backend."""
    b = load("backends")
    rows = [[k, f"{v['cycles_per_second']:,.0f}", f"{v['slowdown_vs_emu_fast']:,.1f}x"]
            for k, v in b["backends"].items()]
    return (f"`{b['program']}`, {b['cycles']:,} cycles, {b['config']['lanes']} lanes:\n\n"
            + table(["backend", "cycles per second", "slower than emu-fast"], rows))




def seednets() -> str:
    nets = load("compiler_seednets")["networks"]
    head = ["network (224x224)", "compile", "compile peak", "emulator", "onnxruntime float",
            "ratio", "float64 GEMMs", "program bytes", "/ unique", "cycles per image",
            "MAC utilization"]

    def peak(n: dict) -> str:
        b = n.get("peak_rss_bytes_during_compile") or n["peak_rss_bytes_after_compile"]
        return f"{b / 2**30:.2f} GiB"

    order = sorted(nets.items(), key=lambda kv: list(SEEDNET_NAMES).index(kv[0])
                   if kv[0] in SEEDNET_NAMES else 99)
    rows = [[SEEDNET_NAMES.get(k, k), f"{n['compile_seconds']:.1f} s", peak(n),
             f"{n['emulator_fast_seconds']:.3g} s", f"{n['onnxruntime_float_seconds']:.3f} s",
             f"{n['emulator_over_onnxruntime']:.0f}x",
             f"{n['gemm_floor_seconds']:.3f} s ({n['gemm_floor_over_onnxruntime']:.1f}x)"
             if "gemm_floor_seconds" in n else "-", f"{n['program_bytes'] / 1e6:.1f} MB",
             f"{n['program_over_unique']:.2f}x", f"{n['cycles_per_image']:,}",
             f"{n['mac_utilization']:.1%} ({n['mac_utilization_end_to_end']:.1%})"
             if "mac_utilization" in n else "-"]
            for k, n in order]
    batch = [[SEEDNET_NAMES.get(k, k), str(n["batch_size"]), f"{n['batch_seconds']:.2f} s",
              f"{n['onnxruntime_batch_seconds']:.3f} s", f"{n['batch_over_onnxruntime']:.1f}x",
              str(n["batch_threads"]), "yes" if n["batch_bit_exact"] else "NO"]
             for k, n in order if "batch_seconds" in n]
    older = [SEEDNET_NAMES.get(k, k) for k, n in order
             if "emulator_fast_seconds_first_run" not in n]
    rounds = {n.get("one_image_rounds", 3) for _, n in order}
    note = ("\n\n*emulator*: `asd run` on one image, best of "
            f"{'/'.join(map(str, sorted(rounds)))} runs taken in alternation "
            "with onnxruntime's (first runs, which also parse every distinct program's loop "
            "nests: "
            + ", ".join(f"{SEEDNET_NAMES.get(k, k)} {n['emulator_fast_seconds_first_run']:.2f} s"
                        for k, n in order if "emulator_fast_seconds_first_run" in n) + ")"
            + (f"; {', '.join(older)}: an earlier run that timed one emulator run"
               if older else "") + ". *float64 GEMMs*: the exact arithmetic alone of that "
            "image, every convolution and dense layer as one float64 product on operands made "
            "beforehand, BLAS on its own threads, best of three (`gemm_floor`; in brackets "
            "against onnxruntime): what an emulator of the programs cannot go below."
            + _machine_note(n for _, n in order)
            if len(older) < len(order) else "")
    if not batch:
        return table(head, rows) + note
    batch_rounds = sorted({n.get("batch_rounds", 3) for _, n in order if "batch_seconds" in n})
    return (table(head, rows) + note + "\n\n`asd run` on a batch (the integer semantics for every "
            "image, image 0 on the emulator and checked against them) beside onnxruntime float "
            "on the same images and threads, in the same run, best of "
            f"{'/'.join(map(str, batch_rounds))} alternated runs each; *bit-exact*: every "
            "image's output "
            "equals the literal integer definition:\n\n"
            + table(["network (224x224)", "batch", "asd run", "onnxruntime float", "ratio",
                     "threads", "bit-exact"], batch))


def _machine_note(nets: Iterable[dict]) -> str:
    """The machine of the rows (when they record it): onnxruntime's kernels, and so every
    ratio, depend on its vector extensions."""
    seen = {(m.get("cpu"), m.get("cpu_isa"), m.get("cores"))
            for m in (n.get("machine", {}) for n in nets) if m.get("cpu_isa")}
    if len(seen) != 1:
        return ""
    cpu, isa, cores = seen.pop()
    return (f" Machine: {cpu}, {isa}, {cores} cores; onnxruntime's kernels use the widest "
            "vector extension there is, so every ratio depends on the machine.")


hw_headline = hwtables.hw_headline
GENERATORS: dict[str, Callable[..., str]] = {
    "accuracy": accuracy, "speed": speed, "seednets": seednets, "quantize": quantize,
    "backends": backends, **hwtables.GENERATORS, **doctables.GENERATORS,
}


# ---- rewriting the documents ------------------------------------------------------------

def render(text: str, where: str = "") -> str:
    """``text`` with every generated block rewritten; an unknown block name is an error."""

    def one(m: re.Match[str]) -> str:
        name, arg = m.group(2), m.group(3)
        if name not in GENERATORS:
            raise ValueError(f"{where}: unknown generated block {name!r} "
                             f"(known: {', '.join(GENERATORS)})")
        body = GENERATORS[name](*([arg] if arg else []))
        return f"{m.group(1)}{body}\n{m.group(5)}"

    return BLOCK.sub(one, text)


def stale(paths: Iterable[Path] = DOCUMENTS) -> list[str]:
    """The documents whose generated blocks differ from the results, by path."""
    return [_name(p) for p in paths if render(p.read_text(), str(p)) != p.read_text()]


def _name(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if any block is stale")
    ap.add_argument("files", nargs="*", type=Path, help="documents (default: README, docs/)")
    args = ap.parse_args(argv)
    paths = [p.resolve() for p in args.files] or DOCUMENTS
    if args.check:
        bad = stale(paths)
        for name in bad:
            print(f"{name} is stale: run python -m benchmarks.tables", file=sys.stderr)
        return 1 if bad else 0
    for p in paths:
        old = p.read_text()
        new = render(old, str(p))
        if new != old:
            p.write_text(new)
            print(f"wrote {_name(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

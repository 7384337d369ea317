"""``asd compile`` and ``asd run``: an ONNX CNN to accelerator programs, and running them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from asd.rounding import ROUNDINGS
from contract.backend import BACKENDS, GOLDEN, Backend, get_backend
from contract.errors import AsdError
from programs.quantize import ACT_ZERO_POINTS, ROUNDING_INPUTS

COMPILE_EPILOG = """\
examples:
  asd compile model.onnx --config accel.toml -o build/ --calib calib.npy
  asd compile model.onnx -o build/ --scheme asd --conversion csd --percentile 99.99
  asd compile model.onnx -o build/ --calib calib.npy --rounding nearest

what is written: OUTDIR/manifest.json (layers, shapes, scales, tiles, sizes, expected
cycles), OUTDIR/tiles/*.bin (one program image per tile), OUTDIR/tiles/*.s (listings),
OUTDIR/qnet.json + qnet.npz (the quantized network) and OUTDIR/model.onnx.
Without --calib the activation scales come from 4 standard-normal images: give real data.
Weight rounding (--rounding): with --calib the default is gptq+bias on the quantized network's
own inputs, each layer's weights first undoing the error in them (--rounding-inputs compensate;
measured best: benchmarks/bench_fidelity.py, docs/compiler.md); without --calib nearest.
Feature maps that are non-negative by construction (ReLU, Clip(0, hi), pooling of them) use
the zero point -128: all 256 int8 codes (--act-zero-point auto, the default; none: symmetric).
"""

RUN_EPILOG = """\
examples:
  asd run build/ --input x.npy --output y.npy
  asd run build/ --input x.npy --backend icarus --json
  asd run build/ --input x.npy --trace        per-layer comparison with both references

On the emulator a batch runs vectorized: image 0 (every image with --emulate all) runs on the
emulator tile by tile and must match the integer semantics bit for bit, which then give the
other images.  RTL backends run every tile of every image.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile an ONNX CNN to accelerator programs",
                       description="Import an ONNX CNN, quantize it (weights by an asd scheme, "
                       "activations int8 by calibration) and lower every layer to program "
                       "images that fit the accelerator configuration.",
                       epilog=COMPILE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--config", metavar="CFG", help="accelerator configuration (.toml/.json); "
                   "default: the built-in one")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("--calib", metavar="X.npy", help="calibration inputs, float N x C x H x W")
    p.add_argument("--scheme", default="asd", help="weight scheme from asd's registry "
                   "(default: asd; the hardware holds asd with <=2 digits and pot)")
    p.add_argument("--conversion", choices=["nearest", "csd"], help="asd: rounding")
    p.add_argument("--percentile", type=float, metavar="P",
                   help="activation range: P-th percentile of |x| instead of the max")
    p.add_argument("--no-requant-search", action="store_true",
                   help="plain max-abs weight scales with a rounded requant multiplier "
                   "(for comparison; default is the exact requant-aware scale search)")
    p.add_argument("--rounding", choices=ROUNDINGS, help="weights onto the grid at the fixed "
                   "per-channel scales: nearest, or error-compensating from the calibration "
                   "images (bias correction, GPTQ second-order rounding, both); default "
                   "gptq+bias with --calib, nearest without")
    p.add_argument("--rounding-inputs", choices=ROUNDING_INPUTS, default="compensate",
                   help="whose layer inputs give each layer's Hessian and mean: the float "
                   "network's, the quantized network's own int8 activations, or those with "
                   "the weights first undoing the error in them (compensate, the default)")
    p.add_argument("--act-zero-point", choices=ACT_ZERO_POINTS, default="auto",
                   help="auto (default): non-negative feature maps stored with the zero point "
                   "act_min, all 2^act_bits codes, and the network's signed logits with the "
                   "zero point of their calibration range [min, max]; none: every feature map "
                   "symmetric")
    p.add_argument("--input-size", metavar="HxW", help="override the model's input H x W")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a compiled network on a batch",
                       description="Run a compiled network layer by layer on a batch and "
                       "print cycles per layer and totals.", epilog=RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("outdir", metavar="OUTDIR")
    r.add_argument("--input", required=True, metavar="X.npy", help="float32 N x C x H x W")
    r.add_argument("--output", metavar="Y.npy",
                   help="dequantized float32 outputs, N first (.npy, under exactly this name)")
    r.add_argument("--backend", default=GOLDEN, choices=BACKENDS)
    r.add_argument("--emulate", default="first", choices=["first", "all"],
                   help="emu: which images run on the emulator (default: first)")
    r.add_argument("--step", action="store_true", help="emu: step mode instead of fast mode")
    r.add_argument("--json", action="store_true", help="machine-readable report")
    r.add_argument("--trace", action="store_true", help="compare every layer with the integer "
                   "and float references; name the first that diverges")
    r.add_argument("--tol", type=float, default=0.25,
                   help="--trace: relative float error that counts as diverging (default 0.25)")
    r.set_defaults(func=cmd_run)


def _user_error(msg: str) -> Exception:
    from asd_cli.main import UserError

    return UserError(msg)


def _load_npy(path: str, what: str) -> np.ndarray:
    """A real, finite numeric array from an .npy file (no pickles): complex, boolean or
    structured arrays and NaN/Inf would be silently cast or propagate into garbage."""
    try:
        arr = np.load(path)
    except (OSError, ValueError) as exc:  # numpy's ValueError: not an .npy file, or pickled
        raise _user_error(f"{what} {path}: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        found = f"dtype {arr.dtype}" if isinstance(arr, np.ndarray) else "an .npz archive"
        raise _user_error(f"{what} {path}: expected a real integer or float array, found "
                          f"{found}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise _user_error(f"{what} {path}: expected finite values, found "
                          f"{arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return arr


def cmd_compile(args: argparse.Namespace) -> int:
    from contract.config import AccelConfig, ConfigError
    from programs.manifest import compile_model
    from programs.quantize import weight_rounding

    try:
        config = AccelConfig.load(args.config) if args.config else AccelConfig()
    except ConfigError as exc:
        raise _user_error(str(exc)) from None
    if args.percentile is not None and not 0 < args.percentile <= 100:
        raise _user_error(f"--percentile {args.percentile}: expected 0 < P <= 100")
    calib = _load_npy(args.calib, "calibration") if args.calib else None
    hw = None
    if args.input_size:
        try:
            h, w = (int(v) for v in args.input_size.lower().split("x"))
            hw = (h, w)
        except ValueError:
            raise _user_error(f"--input-size {args.input_size}: expected HxW") from None
    opts: dict[str, Any] = {}
    if args.conversion:
        opts["conversion"] = args.conversion
    if not Path(args.model).exists():
        raise _user_error(f"{args.model}: no such file")
    # The stand-in images say nothing about real inputs: nothing to compensate errors on.
    rounding = args.rounding or ("gptq+bias" if calib is not None else "nearest")
    if rounding != "nearest" and calib is None:
        raise _user_error(f"--rounding {rounding} needs calibration images (--calib)")
    try:
        with weight_rounding(rounding, args.rounding_inputs) as rnd:
            comp = compile_model(args.model, config, calib, scheme=args.scheme,
                                 scheme_options=opts, percentile=args.percentile,
                                 requant_aware=not args.no_requant_search, input_hw=hw,
                                 act_zero_point=args.act_zero_point)
    except AsdError as exc:  # a model or calibration the compiler refuses; anything else is a bug
        raise _user_error(str(exc)) from None
    comp.info["rounding"] = {"method": rounding, "inputs": args.rounding_inputs,
                             "notes": rnd.notes}
    for note in rnd.notes:
        print(f"asd compile: note: {note}", file=sys.stderr)
    try:
        comp.write(args.output)
    except AsdError as exc:  # the output directory cannot be written; the previous one survives
        raise _user_error(str(exc)) from None
    man = comp.manifest()
    from programs.partition import format_partition, partition

    split = partition(comp.qnet.graph, comp.layers, comp.config)
    if args.json:
        print(json.dumps({"outdir": args.output, "totals": man["totals"], "partition": split,
                          "layers": [{k: e[k] for k in ("name", "op", "out_shape", "cycles")}
                                     | {"tiles": len(e["tiles"])} for e in man["layers"]]}))
        return 0
    print(f"{'layer':<28} {'op':<8} {'output':<16} {'tiles':>5} {'cycles':>12}")
    for e in man["layers"]:
        shape = "x".join(map(str, e["out_shape"]))
        print(f"{e['name'][:28]:<28} {e['op']:<8} {shape:<16} {len(e['tiles']):>5} "
              f"{e['cycles']:>12}")
    t = man["totals"]
    print(f"total: {t['tiles']} images, {t['image_bytes']} bytes, {t['text_words']} "
          f"instructions, {t['weight_words']} weight words, {t['cycles']} cycles per image")
    print("\n".join(format_partition(split)))
    print(f"wrote {args.output}/manifest.json")
    return 0


def _save_output(path: str, output: np.ndarray) -> None:
    """Replace ``path`` (exactly the name given: numpy would add ``.npy``) in one step."""
    from contract.files import atomic_file

    try:
        with atomic_file(path) as fh:
            np.save(fh, output)
    except AsdError as exc:  # the previous file is intact; the message names the path
        raise _user_error(str(exc)) from None


def _open_backend(name: str, step: bool) -> Backend:
    """The emulator in fast mode unless ``--step``, or a simulator by name."""
    return get_backend(name, fast=not step) if name == GOLDEN else get_backend(name)


def cmd_run(args: argparse.Namespace) -> int:
    from programs import runtime
    from programs.manifest import Compiled

    try:
        comp = Compiled.load(args.outdir)
    except (AsdError, OSError) as exc:
        raise _user_error(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise _user_error(f"{args.outdir}: a file of the compiled network is not JSON "
                          f"({exc})") from None
    x = _load_npy(args.input, "input")
    try:
        backend = _open_backend(args.backend, args.step)
        rep = runtime.run(comp, x, backend, batched=args.backend == GOLDEN,
                          emulate=args.emulate, trace=args.trace, float_tol=args.tol)
    except runtime.DivergenceError as exc:
        print(f"asd run: {exc}", file=sys.stderr)
        return 1
    except AsdError as exc:  # the input's shape, a simulator missing or timing out
        raise _user_error(str(exc)) from None
    if args.output:
        _save_output(args.output, rep.output.astype(np.float32))
    if args.json:
        print(json.dumps(rep.as_dict()))
    else:
        print(f"{'layer':<28} {'op':<8} {'cycles':>12}" + ("   int-diff  float-err(rel)"
                                                            if args.trace else ""))
        for r in rep.layers:
            line = f"{r.name[:28]:<28} {r.op:<8} {r.cycles:>12}"
            if args.trace:
                fe = ("" if r.float_rel_err is None
                      else f"{r.float_max_err:.4g} ({r.float_rel_err:.3f})")
                line += f"   {r.int_max_diff:>8}  {fe}"
            if r.host_words:
                line += f"   host: {r.host_elements} elements, {r.host_words} words"
            print(line)
        print(f"total: {rep.cycles_per_image} cycles per image, {rep.cycles_per_image * rep.batch}"
              f" for the batch of {rep.batch} ({args.backend}, {rep.seconds:.2f} s)")
        d = rep.as_dict()
        print(f"MAC utilization (MACs / (lanes x cycles)): {d['mac_utilization']:.1%} of the "
              f"compute cycles, {d['mac_utilization_end_to_end']:.1%} end to end "
              f"({d['macs_per_image']} MACs per image)")
        print(f"host transfers: {d['transfer_words_per_image']} words "
              f"({d['transfer_bytes_per_image']} bytes), {rep.transfer_cycles_per_image} cycles "
              f"per image at {comp.config.host_words_per_cycle} word(s) a cycle; end to end "
              f"{d['end_to_end_cycles_per_image']} cycles per image")
        if d["host_elements_per_image"]:
            print(f"host ops: {d['host_elements_per_image']} elements ("
                  f"{d['host_macs_per_image']} feature-map products), {d['host_words_per_image']}"
                  f" words read and written, {d['host_cycles_per_image']} cycles per image at "
                  f"{comp.config.host_words_per_cycle} word(s) a cycle (host compute time not "
                  "counted)")
        if args.trace:
            print("integer: " + (f"first divergence at layer {rep.first_int_divergence}"
                                 if rep.first_int_divergence else "bit-exact in every layer"))
            print("float: " + (f"first layer beyond relative error {args.tol}: "
                               f"{rep.first_float_divergence}" if rep.first_float_divergence
                               else f"every layer within relative error {args.tol}"))
    return 1 if rep.first_int_divergence else 0

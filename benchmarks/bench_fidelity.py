"""Fidelity of the compiled network beside onnxruntime's own static int8 quantization.

For every network, on the same calibration images (the first ``--calib`` training images) and
the same test images (the first ``--test`` test images), side by side in one run:

* the network compiled for the shipped accelerator (ASD-2 weights, int8 activations) with every
  weight rounding of ``asd compile --rounding`` (nearest; bias correction, GPTQ, both; each
  with the layer statistics from the float network's or the quantized network's own inputs),
  non-negative feature maps with the zero point -128 (``--act-zero-point auto``, the default);
  and, labelled ``sym``, with every feature map symmetric (``--act-zero-point none``, the
  accelerator's feature maps before the zero point: ``asd2 gptq+bias q sym`` was the default);
* the same network with int8 and int6 weights through the same compiler (WMEM format
  ``int8``), nearest and the default rounding;
* onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights, int8 activations, min-max
  calibration on the same images), run two ways: the QDQ graph as written (graph optimizations
  off: float arithmetic between QuantizeLinear/DequantizeLinear, i.e. exactly the quantization
  quantize_static chose) and fused into onnxruntime's integer kernels on this CPU; and, as a
  diagnostic, with symmetric activations (zero point 0, like the accelerator's feature maps).

Every compiled network runs through ``programs.runtime`` (batch integer semantics, image 0 on
the emulator, required bit-exact).  Measures: output SQNR (dB) of the logits against float
onnxruntime, top-1 agreement with float (and how many of the images that disagree have a tie
at their largest output), top-1 against the labels; for the goal, the images only the default
compile or only onnxruntime agree with float on, and the exact McNemar p-value of that split.
``--layers`` adds, for the default rounding, each weight layer's SQNR against the float network
split into what the weights lose (float network with the compiled weights) and what the
accelerator's own steps lose (integer network against that).

    python benchmarks/bench_fidelity.py [--networks NAME,...|all] [--calib 256] [--test 1000]
                                        [--all-roundings] [--layers] [--out FILE]
                                        [--markdown]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from asd import datasets, fidelity
from contract.config import AccelConfig
from programs import reference, runtime
from programs.manifest import Compiled, compile_model
from programs.quantize import weight_rounding

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "asd" / "data" / "models"
OUT = ROOT / "benchmarks" / "results" / "fidelity_compiled.json"
NETWORKS = tuple(sorted(p.stem for p in MODELS.glob("*.onnx")))
DEFAULT_ROUNDING = ("gptq+bias", "compensate")  # what asd compile --calib uses
INT8 = AccelConfig(weights="int8", pe="multiplier")
GOAL_DB = 3.0  # compiled ASD-2 within 3 dB of onnxruntime's static int8 PTQ

# label -> (configuration, scheme, scheme options, rounding, statistics from, zero points)
VARIANTS: dict[str, tuple[AccelConfig, str, dict[str, Any], str, str, str]] = {
    "asd2 nearest": (AccelConfig(), "asd", {}, "nearest", "float", "auto"),
    "asd2 bias": (AccelConfig(), "asd", {}, "bias", "float", "auto"),
    "asd2 bias q": (AccelConfig(), "asd", {}, "bias", "quantized", "auto"),
    "asd2 gptq": (AccelConfig(), "asd", {}, "gptq", "float", "auto"),
    "asd2 gptq q": (AccelConfig(), "asd", {}, "gptq", "quantized", "auto"),
    "asd2 gptq+bias": (AccelConfig(), "asd", {}, "gptq+bias", "float", "auto"),
    "asd2 gptq+bias q": (AccelConfig(), "asd", {}, "gptq+bias", "quantized", "auto"),
    "asd2 gptq+bias c": (AccelConfig(), "asd", {}, "gptq+bias", "compensate", "auto"),
    "asd2 gptq+bias q sym": (AccelConfig(), "asd", {}, "gptq+bias", "quantized", "none"),
    "asd2 gptq+bias c sym": (AccelConfig(), "asd", {}, "gptq+bias", "compensate", "none"),
    "int8 nearest": (INT8, "int", {"bits": 8}, "nearest", "float", "auto"),
    "int8 gptq+bias c": (INT8, "int", {"bits": 8}, "gptq+bias", "compensate", "auto"),
    "int6 nearest": (INT8, "int", {"bits": 6}, "nearest", "float", "auto"),
    "int6 gptq+bias c": (INT8, "int", {"bits": 6}, "gptq+bias", "compensate", "auto"),
}
BEST = "asd2 gptq+bias c"  # the default rounding's row
PREVIOUS = "asd2 gptq+bias q sym"  # the default before zero points and compensate
# Rows only --all-roundings measures (the default run keeps under ~10 minutes here).
EXTRA = ("asd2 bias", "asd2 bias q", "asd2 gptq", "asd2 gptq q", "asd2 gptq+bias c sym")
ORT_ROWS = ("ort qdq", "ort int8 kernels")  # quantize_static's defaults: the goal's baseline
# Diagnostic: symmetric activations (zero point 0, as the accelerator's int8 feature maps).
ORT_SYMMETRIC = "ort qdq symmetric"


def measures(ref: np.ndarray, out: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """SQNR, agreement and top-1; ``tied``: the images that disagree with float while their
    largest output is not unique (equal 8-bit codes: argmax takes the first class, so the
    disagreement is the output's step, not a wrong ranking); ``closest``: every disagreement
    is among this many images whose float top-2 margin is the smallest (0: none)."""
    out = out.reshape(len(ref), -1)
    wrong = np.argmax(out, axis=1) != np.argmax(ref, axis=1)
    tied = (out == out.max(axis=1, keepdims=True)).sum(axis=1) > 1
    top2 = np.sort(ref, axis=1)[:, -2:]
    rank = np.argsort(np.argsort(top2[:, 1] - top2[:, 0], kind="stable"), kind="stable")
    return {"sqnr_db": round(fidelity.sqnr_db(ref, out), 2),
            "agreement": round(fidelity.agreement(ref, out), 2),
            "top1": round(float(100 * np.mean(np.argmax(out, axis=1) == y)), 2),
            "tied": int(np.sum(wrong & tied)),
            "closest": int(rank[wrong].max()) + 1 if wrong.any() else 0}


def compiled_variant(path: Path,
                     variant: tuple[AccelConfig, str, dict[str, Any], str, str, str],
                     calib: np.ndarray) -> tuple[Compiled, list[str], float]:
    config, scheme, opts, method, inputs, zero_point = variant
    t0 = time.perf_counter()
    with weight_rounding(method, inputs) as rnd:
        comp = compile_model(path, config, calib, scheme=scheme, scheme_options=dict(opts),
                             act_zero_point=zero_point)
    return comp, rnd.notes, time.perf_counter() - t0


def ort_static(path: Path, calib: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of onnxruntime's static int8 QDQ model: as written and with integer kernels."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.batches = iter([{name: calib[i:i + 16]} for i in range(0, len(calib), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    sess0 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess0.get_inputs()[0].name
    outs = {}
    runs = [(ORT_ROWS[0], False, ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
            (ORT_ROWS[1], False, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
            (ORT_SYMMETRIC, True, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)]
    with tempfile.TemporaryDirectory() as d:
        for label, symmetric, level in runs:
            q = Path(d) / f"int8{'_sym' if symmetric else ''}.onnx"
            if not q.exists():
                quantize_static(str(path), str(q), Reader(name), quant_format=QuantFormat.QDQ,
                                per_channel=True, weight_type=QuantType.QInt8,
                                activation_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"ActivationSymmetric": symmetric})
            opts = ort.SessionOptions()
            opts.graph_optimization_level = level
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(q), opts, providers=["CPUExecutionProvider"])
            outs[label] = sess.run(None, {name: x})[0]
    return outs


def layer_losses(comp: Compiled, x: np.ndarray) -> list[dict[str, Any]]:
    """Per weight layer: SQNR of the integer network, of the float network with the compiled
    (effective) weights, and of the integer network against that one, all in dB."""
    q = comp.qnet
    g = q.graph
    unit = float(q.unit_int)
    layers = []
    for lay in g.layers:
        ql = q.qlayers[lay.name]
        if lay.op == "conv":
            assert ql.w_int is not None and ql.s_w is not None and ql.bias_int is not None
            s_x = q.scales[lay.inputs[0]]
            w = ql.w_int * (ql.s_w / unit)[:, None, None, None]
            # The integer bias less what it holds for the zero points, at the float scale.
            bias = (ql.bias_int - reference.zero_offset(q, lay)) * s_x * ql.s_w / unit
            lay = dataclasses.replace(lay, weight=w, bias=bias)
        layers.append(lay)
    gq = dataclasses.replace(g, layers=layers)
    f = reference.float_forward(g, x)
    fq = reference.float_forward(gq, x)
    iv = reference.int_forward(q, x)
    rows = []
    for lay in g.layers:
        if lay.op not in ("conv", "avgpool", "add"):
            continue
        t = lay.output
        di = reference.dequantize(q, t, iv[t])
        rows.append({"layer": lay.name, "op": lay.op,
                     "integer_db": round(fidelity.sqnr_db(f[t], di), 2),
                     "weights_db": round(fidelity.sqnr_db(f[t], fq[t]), 2),
                     "accel_steps_db": round(fidelity.sqnr_db(fq[t], di), 2)})
    return rows


def bench_network(name: str, n_calib: int, n_test: int, layers: bool,
                  labels: tuple[str, ...]) -> dict[str, Any]:
    path = MODELS / f"{name}.onnx"
    meta = json.loads(path.with_suffix(".json").read_text())
    ds = datasets.load(meta["dataset"])
    calib = ds.x_train[:n_calib].astype(np.float32)
    x, y = ds.x_test[:n_test].astype(np.float32), ds.y_test[:n_test]
    ref = next(iter(reference.onnx_forward(path, x).values())).reshape(len(x), -1)
    rows: dict[str, Any] = {"float": measures(ref, ref, y)}
    notes: dict[str, list[str]] = {}
    best: Compiled | None = None
    outs: dict[str, np.ndarray] = {}  # the goal's rows, for the paired agreement test
    for label, variant in VARIANTS.items():
        if label not in labels:
            continue
        comp, note, seconds = compiled_variant(path, variant, calib)
        rep = runtime.run(comp, x)  # image 0 on the emulator, bit-exact or DivergenceError
        rows[label] = measures(ref, rep.output, y) | {"compile_s": round(seconds, 2),
                                                       "emulator_bit_exact": True}
        if note:
            notes[label] = note
        if label == BEST:
            best, outs[label] = comp, rep.output.reshape(len(x), -1)
    for label, out in ort_static(path, calib, x).items():
        rows[label] = measures(ref, out, y)
        outs[label] = out.reshape(len(x), -1)
    strong = max(ORT_ROWS, key=lambda k: rows[k]["sqnr_db"])
    gap = rows[strong]["sqnr_db"] - rows[BEST]["sqnr_db"]
    only_ours, only_base, p = fidelity.agreement_difference(ref, outs[BEST], outs[strong])
    result: dict[str, Any] = {
        "network": name, "dataset": meta["dataset"], "calib_images": len(calib),
        "test_images": len(x), "rows": rows, "notes": notes,
        "goal": {"baseline": strong, "gap_db": round(gap, 2), "within_3db": gap <= GOAL_DB,
                 "agreement_at_least": rows[BEST]["agreement"] >= rows[strong]["agreement"],
                 "agrees_only_ours": only_ours, "agrees_only_baseline": only_base,
                 "agreement_mcnemar_p": round(p, 4)}}
    if layers and best is not None:
        result["layers"] = layer_losses(best, x[:min(len(x), 200)])
    return result


def goal_text(r: dict[str, Any]) -> str:
    """Met or not met, with the gap to the stronger onnxruntime row and why."""
    gl, rows = r["goal"], r["rows"]
    why = []
    if not gl["within_3db"]:
        why.append(f"{gl['gap_db']:.1f} dB below")
    if not gl["agreement_at_least"]:
        base = rows[gl["baseline"]]["agreement"]
        why.append(f"agreement {rows[BEST]['agreement']:.1f} < {base:.1f}"
                   + (f", McNemar p = {gl['agreement_mcnemar_p']:.2g}"
                      if "agreement_mcnemar_p" in gl else ""))
    head = f"{-gl['gap_db']:+.1f} dB"
    return f"met ({head})" if not why else f"**not met** ({head}; {', '.join(why)})"


def markdown(results: list[dict[str, Any]]) -> str:
    cols = ["asd2 nearest", PREVIOUS, BEST, "int8 nearest", "int8 gptq+bias c",
            "int6 nearest", "int6 gptq+bias c", *ORT_ROWS, ORT_SYMMETRIC]
    cols = [c for c in cols if all(c in r["rows"] for r in results)]
    lines = ["| network | " + " | ".join(cols) + " | goal (3 dB, agreement) |",
             "|---" * (len(cols) + 2) + "|"]
    for r in results:
        cells = [f"{r['rows'][c]['sqnr_db']:.1f} dB / {r['rows'][c]['agreement']:.1f}%"
                 for c in cols]
        lines.append(f"| {r['network']} | " + " | ".join(cells) + f" | {goal_text(r)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="networks: " + ", ".join(NETWORKS) + " (default: all)."
                                 " SqueezeNet 1.1 of programs/seednets.py has random weights"
                                 " (no trained ones here), so its SQNR would mean nothing:"
                                 " it is not measured.")
    ap.add_argument("--networks", default="all", help="comma-separated, or all")
    ap.add_argument("--calib", type=int, default=256,
                    help="calibration images, at most the training split's (default 256)")
    ap.add_argument("--test", type=int, default=1000,
                    help="test images, at most the split's (default 1000: the whole MNIST "
                         "test split, so a top-1 agreement step is 0.1 point, not 0.2)")
    ap.add_argument("--all-roundings", action="store_true",
                    help="also ASD-2 with bias correction alone and GPTQ alone, each from the "
                    "float and the quantized network's inputs, and the default with "
                    "--act-zero-point none (5 more compiles a network)")
    ap.add_argument("--variants", metavar="LABEL,...",
                    help="only these compiled rows, and always the default rounding's "
                    f"({BEST}); default: every row but --all-roundings' ones")
    ap.add_argument("--layers", action="store_true",
                    help="per-layer split of the default rounding's loss: weights vs "
                    "the accelerator's own steps")
    ap.add_argument("--out", type=Path, default=OUT, help=f"JSON (default {OUT.name})")
    ap.add_argument("--markdown", action="store_true", help="also print the docs table")
    args = ap.parse_args(argv)
    names = NETWORKS if args.networks == "all" else tuple(args.networks.split(","))
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        ap.error(f"unknown network(s) {', '.join(unknown)}; known: {', '.join(NETWORKS)}")
    labels = tuple(k for k in VARIANTS if args.all_roundings or k not in EXTRA)
    if args.variants:
        labels = tuple(dict.fromkeys([*args.variants.split(","), BEST]))  # the goal's row
        if set(labels) - set(VARIANTS):
            ap.error(f"unknown variant(s); known: {', '.join(VARIANTS)}")
    t0 = time.perf_counter()
    results = []
    for name in names:
        r = bench_network(name, args.calib, args.test, args.layers, labels)
        results.append(r)
        print(f"{name} ({r['calib_images']} calibration, {r['test_images']} test images): "
              "SQNR dB / agreement % / top-1 %")
        print(f"  {'float':<18} top-1 {r['rows']['float']['top1']:.1f}")
        for k in [k for k in (*VARIANTS, *ORT_ROWS, ORT_SYMMETRIC) if k in r["rows"]]:
            m = r["rows"][k]
            print(f"  {k:<18} {m['sqnr_db']:6.2f} {m['agreement']:6.1f} {m['top1']:6.1f}")
        print(f"  goal (within {GOAL_DB:g} dB of {r['goal']['baseline']}, agreement at least "
              f"as high): {goal_text(r).replace('**', '')}")
        for row in r.get("layers", []):
            print(f"    {row['layer'][:30]:<30} {row['op']:<8} integer {row['integer_db']:6.2f}"
                  f"  weights {row['weights_db']:6.2f}  accel steps {row['accel_steps_db']:6.2f}")
        for label, note in r["notes"].items():
            print(f"  note ({label}): {note[0]}" + (f" (+{len(note) - 1} more)"
                                                   if len(note) > 1 else ""))
    doc = {"benchmark": "fidelity_compiled", "machine": platform.machine(),
           "cpu_flags_vnni": _has_vnni(), "seconds": round(time.perf_counter() - t0, 1),
           "default_rounding": "/".join(DEFAULT_ROUNDING), "goal_db": GOAL_DB,
           "networks": results,
           "not_measured": {"squeezenet1_1 (programs/seednets.py)": "random weights, no "
                            "trained ones in the repository: SQNR would mean nothing"}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    if args.markdown:
        print(markdown(results))
    print(f"wrote {args.out} ({doc['seconds']} s)")
    return 0


def _has_vnni() -> bool | None:
    try:
        return "vnni" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())

"""``asd hwreport``: synthesize both PE kinds and report area, speed and a power proxy."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from asd_cli.main import UserError

# accel.lanes.MODES (not imported here: MyHDL is slow to load for --help).
PE_ARRAY_MODES = ("pipelined", "direct", "product", "carrysave", "carrysave_direct",
                  "carrysave_drain", "tree")

EPILOG = """\
examples:
  asd hwreport                                   # default config, PE array and core, 5 seeds
  asd hwreport --lanes 1,4,8 --act-bits 4,8,16   # the sweep (activations 2..16 bits)
  asd hwreport --target pe --mode carrysave      # carry-save accumulators: the short path
  asd hwreport --target pe --mode carrysave --lanes 4 --act-bits 16  # -54% critical path
  asd hwreport --target pe --mode carrysave_direct --lanes 8 --act-bits 16
                        # no product register: flip-flops equal, lowest power proxy
  asd hwreport --target pe --mode carrysave_drain --lanes 4 --act-bits 16 --exp-bits 4 \
               --config a40.toml  # lanes drain their own carries: one readout register
  asd hwreport --target pe --mode tree --lanes 2 # 4 MACs a lane a cycle, one adder tree
  asd hwreport --target pe --mode tree --lanes 1 --act-bits 16 --exp-bits 3,4 --config a40.toml
                        # 8 or 16 digit positions; a40.toml holds "acc_bits = 40"
                        # (E=4 at 16 bits needs 33 or more)
  asd hwreport --target pe --lanes 2 --act-bits 4 --seeds 1 --json

For each configuration, target (pe: the PE array with weight, product and accumulator
registers; core: the whole core) and PE kind (shiftadd, multiplier): iCE40 LUT4 / carry /
flip-flops (yosys synth_ice40), Fmax (nextpnr-ice40 --hx8k, median over the seeds), generic
gates, logic depth and CMOS transistors (yosys abc -g), and, for the PE array, the toggle
energy of its gate-level netlist simulated on the MACs of a real layer (the second
convolution of the bundled digits CNN, quantized to ASD, on a real digit), with a unit
delay per gate so glitches count, and again with zero-delay gates.  The same designs
are also mapped onto real standard cells (OSU 0.18 um, the Liberty file of Debian's
qflow-tech-osu018): cell area, OpenSTA's critical path and, for the PE array, the Liberty
power of the cell netlist simulated on the same MACs with OpenSTA's delay of every cell
(SDF; glitches count, clock pins included), and again at zero delay.  Ratios are
shiftadd / multiplier.  Writes hwreport.md, hwreport.json and hwreport.png to -o DIR.
Needs yosys, nextpnr-ice40, iverilog, OpenSTA and the cell library: sudo apt-get install
yosys nextpnr-ice40 fpga-icestorm iverilog opensta qflow-tech-osu018."""


def register(sub: Any) -> None:
    p = sub.add_parser("hwreport", help="synthesize both PE kinds: area, Fmax, power proxy",
                       description="Synthesize the exported RTL for both PE kinds with Yosys "
                                   "and nextpnr-ice40, and onto standard cells with OpenSTA, "
                                   "and report them side by side.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="CFG",
                   help="accelerator configuration (.toml or .json; default: the defaults)")
    p.add_argument("--lanes", metavar="N,N", help="lane counts to sweep (default: config's)")
    p.add_argument("--act-bits", metavar="B,B",
                   help="activation widths to sweep (default: config's)")
    p.add_argument("--exp-bits", metavar="E,E",
                   help="ASD exponent fields to sweep, 1..4 (2^E digit positions; default: "
                        "config's); a wider field needs a wider accumulator (acc_bits in "
                        "--config)")
    p.add_argument("--seeds", type=int, default=5, help="nextpnr seeds per design (default 5)")
    p.add_argument("--target", choices=("pe", "core", "both"), default="both",
                   help="PE array, whole core, or both (default)")
    p.add_argument("--mode", choices=PE_ARRAY_MODES, default="pipelined",
                   help="PE array: product register before the accumulator (default), "
                        "the core lane's single-cycle MAC (direct), the product stage alone "
                        "(product), a carry-save accumulator resolved once per output "
                        "(carrysave), the same without the product register "
                        "(carrysave_direct), the same with lanes that drain their own "
                        "carries before a one-register readout (carrysave_drain), or four "
                        "MACs a lane per cycle summed with the accumulator in one compressor "
                        "tree and one adder (tree)")
    p.add_argument("--macs", type=int, default=2000,
                   help="MACs of the layer simulated for the power proxy (default 2000)")
    p.add_argument("--timeout", type=float, default=900,
                   help="seconds allowed for each tool run (default 900)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-o", "--output", default="out/hwreport", metavar="DIR",
                   help="directory for hwreport.md/.json/.png (default out/hwreport)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_hwreport)


def _int_list(text: str | None, default: int, what: str) -> list[int]:
    if not text:
        return [default]
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not vals:
        raise UserError(f"{what}: no values in {text!r}")
    return vals


def layer_stream(config: Any, macs: int) -> tuple[np.ndarray, np.ndarray]:
    """The MAC stream of a real layer for ``config``: conv2 of the bundled digits CNN,
    quantized to ``config``'s weight format (ASD codes, or int8 integers), on the feature map
    conv1 computes from the first test digit."""
    from importlib import resources

    from accel import power
    from contract import weights as wformats
    from programs import kernels
    from programs.manifest import compile_model

    # The stream does not depend on memory depths or the PE kind (both run the same images):
    # build the layer with room for all of it.
    big = config.replace(pe=wformats.get(config.weights).pe_kinds[0], wmem_depth=1 << 16,
                         amem_depth=1 << 16, bmem_depth=1 << 10, imem_depth=1 << 12,
                         loop_depth=4)
    model = resources.files("asd") / "data" / "models" / "digits_cnn.onnx"
    comp = compile_model(str(model), big)
    convs = [q for q in comp.qnet.qlayers.values() if q.w_int is not None]
    q1, q2 = convs[0], convs[1]
    digit = _first_digit()
    x0 = np.round(digit / 16.0 * config.act_max).astype(np.int64)[:, :, None]

    def arr(v: Any) -> np.ndarray:
        return np.asarray(v, np.int64)

    def hwc(q: Any) -> np.ndarray:
        return np.asarray(q.w_int, np.int64).transpose(2, 3, 1, 0)

    x1 = kernels.conv2d_reference(x0, hwc(q1), arr(q1.bias_int), arr(q1.mult), arr(q1.shift),
                                  pad=1,
                                  relu=True, acc_bits=config.acc_bits,
                                  act_bits=config.act_bits)
    k = kernels.conv2d(x1, hwc(q2), arr(q2.bias_int), arr(q2.mult), arr(q2.shift), pad=1,
                       relu=True,
                       config=big)
    return power.mac_stream(k.image, None, limit=macs)


def _first_digit() -> np.ndarray:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UserError(f"the power proxy's layer needs scikit-learn ({exc}): "
                        "pip install -e '.[data]'") from None
    return np.asarray(load_digits().images[0], np.float64)


def cmd_hwreport(args: argparse.Namespace) -> int:
    from contract.config import AccelConfig, ConfigError

    try:
        base = AccelConfig.load(args.config) if args.config else AccelConfig()
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    lanes = _int_list(args.lanes, base.lanes, "--lanes")
    acts = _int_list(args.act_bits, base.act_bits, "--act-bits")
    exps = _int_list(args.exp_bits, base.exp_bits, "--exp-bits")
    for nl, ab, e in itertools.product(lanes, acts, exps):
        try:
            base.replace(lanes=nl, act_bits=ab, exp_bits=e)
        except ConfigError as exc:
            hint = "; set acc_bits in --config" if "acc_bits" in str(exc) else ""
            raise UserError(f"{exc} (lanes {nl}, act_bits {ab}, exp_bits {e}{hint})") from None
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    try:
        from accel import hwreport, synth
    except ImportError as exc:
        raise UserError(f"hwreport needs MyHDL ({exc}): pip install -e '.[hw]'") from None
    targets = ("pe", "core") if args.target == "both" else (args.target,)
    quiet = args.quiet

    def log(msg: str) -> None:
        if not quiet:
            print(f"hwreport: {msg}", file=sys.stderr, flush=True)

    out = Path(args.output)
    try:
        synth.require("yosys", "nextpnr-ice40", "iverilog")
        report = hwreport.run_sweep(
            base, lanes, acts, targets, out / "work", seeds=args.seeds,
            stream_for=lambda c: layer_stream(c, args.macs), mode=args.mode,
            timeout=args.timeout, log=log, exp_bits=exps)
    except synth.ToolMissing as exc:
        raise UserError(str(exc)) from None
    except synth.SynthError as exc:
        raise UserError(f"synthesis failed: {exc}") from None
    files = hwreport.write_outputs(report, out)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(hwreport.text_table(report))
        print()
        for f in files:
            print(f"wrote {f}")
    return 0

"""``asd hwreport``: synthesize both PE kinds and report area, speed and a power proxy."""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from asd_cli.main import UserError
from contract.backend import DEFAULT_LIMITS, Backend, Limits, RunResult
from contract.image import Image

# accel.lanes.MODES and accel.kinds.KINDS (not imported here: MyHDL is slow to load for
# --help).
PE_ARRAY_MODES = ("pipelined", "direct", "product", "carrysave", "carrysave_direct",
                  "carrysave_drain", "tree")
KIND_NAMES = ("shiftadd", "multiplier", "int8", "int8_booth", "int8_array")
# The networks energy per inference is given for: the demo's and ResNet-18 (224x224).
NETWORKS = ("mnist_lenet", "resnet18")

EPILOG = """\
examples:
  asd hwreport                  # the shipped point: E=3, 8-bit activations, 8 lanes,
                                # carry-save lanes that drain their own carries, every kind
  asd hwreport --cells-only     # the same on standard cells alone (minutes, not an hour)
  asd hwreport --mode carrysave --lanes 4,8      # carry-save with a readout pipeline
  asd hwreport --mode tree --lanes 2             # 4 MACs a lane a cycle, one adder tree
  asd hwreport --act-bits 16 --lanes 4           # another operating point (not shipped)
  asd hwreport --act-bits 16 --exp-bits 4 --config a40.toml  # E=4: 10-bit codes, 68.6%
                        # size cut; a40.toml holds "acc_bits = 40" (33 or more needed)
  asd hwreport --mode pipelined --kinds shiftadd,int8 --target both  # PE array and core
  asd hwreport --lanes 2 --act-bits 4 --seeds 1 --networks none --json

For each configuration, target (pe: the PE array with weight, product and accumulator
registers; core: the whole core) and kind -- shiftadd (the shift-add PE, ASD codes); int8,
int8_booth, int8_array (a multiplier fed plain 8-bit weights, its product resolved or, in
the carry-save and tree modes, its Booth or plain partial products unresolved into the same
accumulator); multiplier (fed the ASD code decoded to an integer) -- on standard cells (OSU
0.18 um, Debian's qflow-tech-osu018): cell area, OpenSTA's critical path and, for the PE
array, the Liberty power of the cell netlist simulated on the MACs of the shipped network
(the demo's mnist_lenet compiled for each weight format with its zero points, its busiest
tile on the first test image) with OpenSTA's
delay of every cell (glitches count, clock pins included), at zero delay, and on idle
cycles; unless --cells-only also iCE40 LUT4 / carry / flip-flops, Fmax (nextpnr-ice40
--hx8k, median over the seeds), generic gates, logic depth, transistors and a toggle-energy
proxy.  The baseline is the int8 form with the lowest cell path x area x energy.  Energy
per inference: the --networks compiled for each row's configuration, their emulator cycle
counts costed at the measured energy of a MAC cycle and of an idle cycle (drain cycles
counted), images/s at the cell Fmax; memories and control not counted.  Writes
hwreport.md, hwreport.json and hwreport.png to -o DIR.  Needs yosys, iverilog, OpenSTA and
the cell library (and nextpnr-ice40 without --cells-only): sudo apt-get install yosys
nextpnr-ice40 fpga-icestorm iverilog opensta qflow-tech-osu018."""


def register(sub: Any) -> None:
    p = sub.add_parser("hwreport",
                       help="the shift-add PE against int8 and ASD-decoded multipliers: "
                            "area, path, energy per inference",
                       description="Synthesize the exported RTL of the shift-add PE array "
                                   "and of its multiplier baselines onto standard cells "
                                   "(OpenSTA) and iCE40, and report them side by side.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="CFG",
                   help="accelerator configuration (.toml or .json; default: the shipped "
                        "one); its pe and weights fields are left to --kinds")
    p.add_argument("--lanes", metavar="N,N", help="lane counts to sweep (default: config's)")
    p.add_argument("--act-bits", metavar="B,B",
                   help="activation widths to sweep (default: config's)")
    p.add_argument("--exp-bits", metavar="E,E",
                   help="ASD exponent fields to sweep, 1..4 (2^E digit positions; default: "
                        "config's); a wider field needs a wider accumulator (acc_bits in "
                        "--config)")
    p.add_argument("--seeds", type=int, default=5, help="nextpnr seeds per design (default 5)")
    p.add_argument("--target", choices=("pe", "core", "both"), default="pe",
                   help="PE array (default), whole core, or both")
    p.add_argument("--mode", choices=PE_ARRAY_MODES, default="carrysave_drain",
                   help="PE array: carry-save lanes that drain their own carries before a "
                        "one-register readout (carrysave_drain, default), the same with a "
                        "carry-resolving readout pipeline (carrysave_direct) and a terms "
                        "register (carrysave), a product register before a carry-propagate "
                        "accumulator (pipelined), the core lane's single-cycle MAC (direct), "
                        "the product stage alone (product), or four MACs a lane per cycle "
                        "summed in one compressor tree (tree)")
    p.add_argument("--kinds", metavar="K,K",
                   help=f"kinds to build ({', '.join(KIND_NAMES)}; default: all the mode "
                        "builds)")
    p.add_argument("--cells-only", action="store_true",
                   help="standard-cell figures only (no iCE40, no generic gates)")
    p.add_argument("--networks", default=",".join(NETWORKS), metavar="NAME,NAME",
                   help="networks to give energy per inference for (shipped model names or "
                        "resnet18; 'none': skip; default: %(default)s)")
    p.add_argument("--macs", type=int, default=2000,
                   help="MACs of the layer simulated for the energy (default 2000)")
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


# The E int8 programs are compiled at when a row's E is wider: an int8 multiplier has no E
# (only the requantization codes do), and the compiler refuses int8 weights at E = 4 (its
# weight codes come out wider than 8 bits).
INT8_COMPILE_EXP_BITS = 3


def compilable(config: Any) -> Any:
    """``config``, with int8 weights at an E the compiler takes (see above)."""
    if config.weights == "int8" and config.exp_bits > INT8_COMPILE_EXP_BITS:
        return config.replace(exp_bits=INT8_COMPILE_EXP_BITS)
    return config


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
    big = compilable(config).replace(pe=wformats.get(config.weights).pe_kinds[0],
                                     wmem_depth=1 << 16, amem_depth=1 << 16,
                                     bmem_depth=1 << 10, imem_depth=1 << 12, loop_depth=4)
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


# The network whose stream costs every design: the demo's, as it ships.
SHIPPED_STREAM_NETWORK = "mnist_lenet"


class _BusiestTile:
    """The emulator, keeping the tile image with the most MACs."""

    def __init__(self) -> None:
        from contract.backend import get_backend

        self.inner = get_backend("emu", fast=True)
        self.best: Any = None
        self.macs = 0

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def run(self, image: Any, limits: Any = None) -> Any:
        from accel.inference import MAC_OPS
        from contract.backend import DEFAULT_LIMITS

        result = self.inner.run(image, limits or DEFAULT_LIMITS)
        macs = sum(int(result.counters["ops"].get(op, 0)) for op in MAC_OPS)
        if macs > self.macs:
            self.best, self.macs = image, macs
        return result


def shipped_stream(config: Any, macs: int) -> tuple[np.ndarray, np.ndarray]:
    """The MAC stream ``asd hwreport`` costs a design on: the demo's network as it ships
    (mnist_lenet compiled for ``config`` with 64 calibration images, as the README's demo
    does), run on the first test image; the tile with the most MACs (a conv2 tile), its first
    ``macs`` MACs.  Its feature maps carry the compiler's zero points, so a ReLU's zero is the
    most negative code, as the shipped accelerator's PEs see it.  (:func:`layer_stream`'s
    digits layer, computed without the zero points, gives far sparser activations.)"""
    from contract import weights as wformats

    c = compilable(config).replace(pe=wformats.get(config.weights).pe_kinds[0])
    x, w = _shipped_stream(c, macs)
    return x.copy(), w.copy()


@functools.lru_cache(maxsize=8)
def _shipped_stream(c: Any, macs: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shipped_stream` for a compilable configuration, compiled once per process for
    the kinds and modes that share it (a sweep worker runs many such points)."""
    from importlib import resources

    from accel import power
    from asd import datasets
    from programs import runtime
    from programs.manifest import compile_model

    data = datasets.load("mnist5k")
    model = resources.files("asd") / "data" / "models" / f"{SHIPPED_STREAM_NETWORK}.onnx"
    comp = compile_model(str(model), c, calib=data.x_train[:64])
    rec = _BusiestTile()
    runtime.run(comp, data.x_test[:1], rec)
    if rec.best is None:
        raise RuntimeError(f"{SHIPPED_STREAM_NETWORK} ran no MAC")
    return power.mac_stream(rec.best, c, limit=macs)


def _first_digit() -> np.ndarray:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UserError(f"the power proxy's layer needs scikit-learn ({exc}): "
                        "pip install -e '.[data]'") from None
    return np.asarray(load_digits().images[0], np.float64)


def _write_outputs(hwreport: Any, report: dict[str, Any], out: Path) -> list[Path]:
    """The report files, written into a private directory beside them and renamed into place
    once all were written: a failure while writing leaves the previous report files as they
    were and no partial ones."""
    import os
    import shutil
    import tempfile

    from contract.files import OutputError, new_file_mode

    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".hwreport.new-", dir=out))
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the report here ({exc.strerror})") from None
    try:
        written = hwreport.write_outputs(report, staging)
        for f in written:
            os.chmod(f, new_file_mode())
            os.replace(f, out / f.name)
    except OSError as exc:
        raise OutputError(f"{out}: writing the report failed ({exc.strerror or exc}); the "
                          "previous report files are unchanged") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / f.name for f in written]


def network_cycles(name: str, config: Any) -> Any:
    """One image of network ``name`` (a shipped model, or ``resnet18``: the seed network at
    224x224 with enlarged WMEM, as benchmarks/bench_compiler.py compiles it) compiled for
    ``config``: its cycles and operations from the emulator's counters (programs have no
    data-dependent timing, so a zero image gives them)."""
    from accel.inference import NetworkCycles
    from asd_cli.evaluate import resolve_model
    from contract.backend import get_backend
    from programs import runtime, seednets
    from programs.manifest import compile_model

    calib = None
    config = compilable(config)
    if name == "resnet18":
        model: Any = seednets.build("resnet18")
        config = config.replace(wmem_depth=max(config.wmem_depth, 32768))
        calib = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
        label = "ResNet-18 (224x224)"
    else:
        model, _ = resolve_model(name)
        label = name
    comp = compile_model(model if name == "resnet18" else str(model), config, calib)
    counting = _CountingBackend(get_backend("emu", fast=True))
    runtime.run(comp, np.zeros((1, *comp.qnet.graph.input_shape), np.float32), counting)
    return NetworkCycles.from_counters(label, counting.cycles, counting.ops,
                                       counting.shift_adds, config.lanes)


def networks_compiled_once(networks: list[str], log: Any, cache: dict[str, Any]) -> Any:
    """``config -> [network_cycles(n, config) for n in networks]``, compiled once per
    configuration and weight format (the PE kind of the ASD format does not change a program)
    and kept in ``cache``."""
    def networks_for(c: Any) -> list[Any]:
        key = c.replace(pe="shiftadd" if c.weights == "asd" else c.pe).to_json()
        if key not in cache:
            log(f"compiling {', '.join(networks)}: {c.weights} weights, {c.lanes} lanes, "
                f"{c.act_bits}-bit activations, E = {c.exp_bits}")
            cache[key] = [network_cycles(n, c) for n in networks]
        return list(cache[key])

    return networks_for


# The saved hardware sweep `asd demo` quotes datapath energy from (a source checkout).
RESULTS_JSON = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "hwreport.json"
DEMO_MODE = "carrysave_drain"


def measured_energy_per_image(model: str, config: Any) -> dict[str, Any] | None:
    """Datapath energy per image of ``model`` on the ``carrysave_drain`` PE arrays measured at
    ``config``'s point (lanes, activation width, E) in the saved sweep, for the shift-add PE
    and the strongest int8 form, each on the network compiled for its weight format; None
    when the sweep is not here or did not measure that point."""
    if not RESULTS_JSON.exists():
        return None
    from accel import inference

    rows = json.loads(RESULTS_JSON.read_text()).get(f"pe_{DEMO_MODE}", {}).get("results", [])
    for r in rows:
        if (r["lanes"], r["act_bits"], r["exp_bits"], r["acc_bits"]) == \
                (config.lanes, config.act_bits, config.exp_bits, config.acc_bits) and \
                r.get("int8_best") and r["shiftadd"].get("asic_idle_pj_per_cycle"):
            best = r["int8_best"]
            asd = config.replace(pe="shiftadd", weights="asd")
            int8 = config.replace(pe="multiplier", weights="int8")
            return {"int8_form": best, "mode": DEMO_MODE,
                    "shiftadd": inference.per_inference(r["shiftadd"],
                                                        network_cycles(model, asd), asd,
                                                        DEMO_MODE),
                    "int8": inference.per_inference(r[best], network_cycles(model, int8), int8,
                                                    DEMO_MODE)}
    return None


class _CountingBackend:
    """The emulator, summing the counters of every tile it runs."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.cycles = 0
        self.shift_adds = 0
        self.ops: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    def run(self, image: Image, limits: Limits = DEFAULT_LIMITS) -> RunResult:
        result = self.inner.run(image, limits)
        self.cycles += result.cycles
        self.shift_adds += int(result.counters["shift_adds"])
        for op, n in result.counters["ops"].items():
            self.ops[op] = self.ops.get(op, 0) + int(n)
        return result


def cmd_hwreport(args: argparse.Namespace) -> int:
    from contract.config import AccelConfig, ConfigError

    try:
        base = AccelConfig.load(args.config) if args.config else AccelConfig()
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if base.pe != "shiftadd" or base.weights != "asd":
        raise UserError(f"--config: pe = {base.pe!r}, weights = {base.weights!r}: hwreport "
                        "builds every kind itself (--kinds); give a configuration with the "
                        "defaults pe = 'shiftadd', weights = 'asd'")
    lanes = _int_list(args.lanes, base.lanes, "--lanes")
    acts = _int_list(args.act_bits, base.act_bits, "--act-bits")
    exps = _int_list(args.exp_bits, base.exp_bits, "--exp-bits")
    targets = ("pe", "core") if args.target == "both" else (args.target,)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    for k in kinds or ():
        if k not in KIND_NAMES:
            raise UserError(f"--kinds: unknown kind {k!r} (known: {', '.join(KIND_NAMES)})")
    for nl, ab, e in itertools.product(lanes, acts, exps):
        try:
            cfg = base.replace(lanes=nl, act_bits=ab, exp_bits=e)
        except ConfigError as exc:
            hint = "; set acc_bits in --config" if "acc_bits" in str(exc) else ""
            raise UserError(f"{exc} (lanes {nl}, act_bits {ab}, exp_bits {e}{hint})") from None
        if any(k.startswith("int8") for k in kinds or ("int8",)):
            try:
                cfg.replace(pe="multiplier", weights="int8")
            except ConfigError as exc:
                raise UserError(f"{exc} (the int8 baseline at lanes {nl}, act_bits {ab}, "
                                f"exp_bits {e})") from None
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    networks = [] if args.networks.strip() == "none" else \
        [n.strip() for n in args.networks.split(",") if n.strip()]
    try:
        from accel import hwreport, synth
        from accel import kinds as kinds_mod
    except ImportError as exc:
        raise UserError(f"hwreport needs MyHDL ({exc}): pip install -e '.[hw]'") from None
    for target in targets:
        try:
            kinds_mod.check_kinds(kinds or list(kinds_mod.kinds_for(args.mode, target)),
                                  args.mode, target)
        except ValueError as exc:
            raise UserError(f"--kinds: {exc}") from None
    quiet = args.quiet

    def log(msg: str) -> None:
        if not quiet:
            print(f"hwreport: {msg}", file=sys.stderr, flush=True)

    out = Path(args.output)
    try:  # before hours of synthesis: an output folder that cannot be made is said now
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output directory ({exc.strerror})") from None
    try:
        report = hwreport.run_sweep(
            base, lanes, acts, targets, out / "work", seeds=args.seeds,
            stream_for=lambda c: shipped_stream(c, args.macs), mode=args.mode,
            timeout=args.timeout, log=log, exp_bits=exps, kinds=kinds,
            cells_only=args.cells_only)
    except synth.ToolMissing as exc:
        raise UserError(str(exc)) from None
    except synth.SynthError as exc:
        raise UserError(f"synthesis failed: {exc}") from None
    if networks and "pe" in targets:
        hwreport.add_inference(report, networks_compiled_once(networks, log, {}), base)
    files = _write_outputs(hwreport, report, out)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(hwreport.text_table(report))
        print()
        for f in files:
            print(f"wrote {f}")
    return 0

"""Where the energy goes, per block, at the shipped point, and whether -50% is reachable.

    python benchmarks/bench_energy.py [--lanes 8] [--macs 2000] [-o FILE]

Three PE arrays in ``carrysave_drain`` (E = 3, 8-bit activations), mapped onto the OSU
0.18 um cells and simulated, timed by OpenSTA's delays, on the stream of the real layer
``asd hwreport`` uses (:func:`asd_cli.hwreport.layer_stream`: conv2 of the digits CNN on
the first digit, each weight format its own compiled layer):

* ``shiftadd``: the shipped shift-add array;
* ``int8_booth``: the strongest int8 baseline (Booth partial products, unresolved);
* ``floor``: the shift-add array with its PE replaced by the activation itself
  (:data:`accel.pe_array.FLOOR_FORM`: no multiply at all; synthesis drops the unread weight
  registers), i.e. the registers, full-adder row, block accumulators, drain and readout that
  any PE needs.  It is fed the codes of weight 1, so the emulator check holds.

Each design's energy a MAC cycle (the stream's tail of idle cycles taken out, as
:func:`accel.inference.per_inference` does) is split into the clock (an idle cycle: 200
cycles of zero activations), the flip-flops' data toggles and the logic (OpenSTA's
sequential and combinational groups, each less its idle part).  The PE (the product path:
weight registers, shifters or partial products and their rows) is the design less the
floor.  With ``--lanes`` 4 or 8 the energy per image of mnist_lenet follows from the
emulator counters stored in hwreport.json.  Writes benchmarks/results/energy_blocks.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from accel import asic, designs, inference, pe_array
from accel.hwreport import IDLE_CYCLES
from asd_cli.hwreport import SHIPPED_STREAM_NETWORK as NETWORK
from asd_cli.hwreport import layer_stream, shipped_stream
from contract.config import AccelConfig

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "energy_blocks.json"
HWREPORT = ROOT / "benchmarks" / "results" / "hwreport.json"
MODE = "carrysave_drain"
# design -> (pe, weights, form)
DESIGNS = {"shiftadd": ("shiftadd", "asd", "resolved"),
           "int8_booth": ("multiplier", "int8", "booth"),
           "floor": ("shiftadd", "asd", pe_array.FLOOR_FORM)}
TARGET = 0.5


STREAMS = {"digits_conv2": layer_stream, NETWORK: shipped_stream}


def measure(name: str, base: AccelConfig, macs: int, work: Path,
            streams: Sequence[str]) -> dict[str, Any]:
    pe, weights, form = DESIGNS[name]
    c = base.replace(pe=pe, weights=weights)
    wd = work / name
    srcs, top, _ = designs.write_design(c, "pe", wd / "rtl", MODE, form)
    cells = asic.map_cells(srcs, top, wd / "cells")
    crit = asic.critical_path(cells.netlist_v, top, wd / "sta")
    zero = int(c.weight_format.encode(0, c.exp_bits))
    idle_x = np.zeros(IDLE_CYCLES, np.int64)
    idle = asic.energy_per_mac(cells.netlist_v, top, c, idle_x,
                               np.full((IDLE_CYCLES, c.lanes), zero, np.int64),
                               wd / "idle", mode=MODE, timed=False)
    idle_pj = idle.energy_pj / idle.cycles
    ffs = sum(n for cell, n in cells.cells.items() if asic.is_flip_flop(cell))
    out: dict[str, Any] = {"area_um2": cells.area, "ff_area_um2": cells.ff_area,
                           "flip_flops": ffs, "crit_ns": crit,
                           "pj_per_idle_cycle": round(idle_pj, 3)}
    for s in streams:
        # The floor's stream is the ASD one (same activations as the shift-add array's).
        sc = base if name == "floor" else c
        out[s] = on_stream(name, c, STREAMS[s](sc, macs), cells.netlist_v, top, crit,
                           wd / s, idle, idle_pj)
    return out


def on_stream(name: str, c: AccelConfig, stream: tuple[NDArray[np.int64], NDArray[np.int64]],
              netlist: Path, top: str, crit: float, wd: Path, idle: asic.EnergyResult,
              idle_pj: float) -> dict[str, Any]:
    x, codes = stream
    if name == "floor":  # its product is x: the check needs a weight of 1 in every lane
        codes = np.full_like(codes, int(c.weight_format.encode(1, c.exp_bits)))
    en = asic.energy_per_mac(netlist, top, c, x, codes, wd, mode=MODE,
                             period_ns=max(asic.CLOCK_NS, 1.5 * crit))
    mac_pj = (en.energy_pj - (en.cycles - len(x)) * idle_pj) / len(x)
    idle_ff = idle.ff_share * idle_pj
    blocks = {"clock": round(idle_pj, 2),
              "ff_data": round(en.ff_share * mac_pj - idle_ff, 2),
              "logic": round((1 - en.ff_share) * mac_pj - (idle_pj - idle_ff), 2)}
    # The same stream at zero delay: each net switches at most once a cycle, what a design
    # whose paths were all balanced or registered (no glitches) would draw, on both sides.
    flat = asic.energy_per_mac(netlist, top, c, x, codes, wd / "zero-delay", mode=MODE,
                               timed=False)
    return {"pj_per_mac_cycle": round(mac_pj, 2), "blocks_pj": blocks,
            "pj_per_mac_cycle_zero_delay": round(
                (flat.energy_pj - (flat.cycles - len(x)) * idle_pj) / len(x), 2),
            "zero_activations": round(float(np.mean(x == 0)), 4),
            "min_activations": round(float(np.mean(x == c.act_min)), 4)}


def network_cycles(lanes: int) -> inference.NetworkCycles | None:
    """mnist_lenet's counters at ``lanes`` as ``asd hwreport`` stored them (None: no row)."""
    study = json.loads(HWREPORT.read_text())["pe_" + MODE]
    for e in study.get("inference", []):
        if (e["lanes"], e["act_bits"], e["exp_bits"]) == (lanes, 8, 3) and \
                e["network"]["name"] == NETWORK:
            n = e["network"]
            return inference.NetworkCycles(n["name"], n["cycles"], n["mac_cycles"],
                                           n["single_lane_macs"], n["sums"])
    return None


def analyse(d: dict[str, dict[str, Any]], config: AccelConfig, stream: str) -> dict[str, Any]:
    """On ``stream``: the PE parts, the ratios and what the shift-add PE would have to fall
    to for the target."""
    def mac(name: str) -> float:
        return float(d[name][stream]["pj_per_mac_cycle"])

    floor, sa, b = mac("floor"), mac("shiftadd"), mac("int8_booth")
    s_pe, b_pe = sa - floor, b - floor
    out: dict[str, Any] = {
        "pe_pj": {"shiftadd": round(s_pe, 2), "int8_booth": round(b_pe, 2)},
        "ratio_mac_cycle": round(sa / b, 3), "floor_ratio_mac_cycle": round(floor / b, 3),
        "pe_ratio": round(s_pe / b_pe, 3),
        # (F + s) / b <= TARGET  <=>  s <= TARGET * b - F  (b: the whole int8 array)
        "shiftadd_pe_needed_pj": round(TARGET * b - floor, 2)}
    # Techniques applied to both kinds alike, each from the measured figures: no glitches
    # (the zero-delay energy), and idle cycles clock-gated to nothing (per image below).
    z = {k: float(d[k][stream]["pj_per_mac_cycle_zero_delay"]) for k in d}
    out["no_glitches"] = {
        "ratio_mac_cycle": round(z["shiftadd"] / z["int8_booth"], 3),
        "pe_ratio": round((z["shiftadd"] - z["floor"]) / (z["int8_booth"] - z["floor"]), 3)}
    net = network_cycles(config.lanes)
    if net is not None:
        out["per_image"] = {"network": NETWORK}
        for label, gated in (("as_built", False), ("idle_clock_gated", True)):
            per = {}
            for name, m in d.items():
                # One MAC cycle with no idle tail: per_inference takes it as measured.
                figs = {"asic_idle_pj_per_cycle": 0.0 if gated else m["pj_per_idle_cycle"],
                        "asic_energy_pj": m[stream]["pj_per_mac_cycle"],
                        "asic_stream_cycles": 1, "asic_mac_cycles": 1,
                        "asic_crit_ns": m["crit_ns"]}
                per[name] = inference.per_inference(figs, net, config, MODE)
            bu = per["int8_booth"]["energy_uj"]
            out["per_image"][label] = {
                "energy_uj": {k: v["energy_uj"] for k, v in per.items()},
                "ratio": round(per["shiftadd"]["energy_uj"] / bu, 3),
                "floor_ratio": round(per["floor"]["energy_uj"] / bu, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--macs", type=int, default=2000)
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench_energy")
    args = ap.parse_args(argv)
    if args.lanes < 1 or args.macs < 1:
        ap.error("--lanes and --macs must be positive")
    asic.require()
    config = AccelConfig(lanes=args.lanes, act_bits=8, exp_bits=3)
    t0 = time.time()
    d = {}
    for name in DESIGNS:
        print(f"{name}: cells, OpenSTA, {args.macs} MACs of each stream ...", file=sys.stderr)
        d[name] = measure(name, config, args.macs, args.work, list(STREAMS))
    res = {"mode": MODE, "lanes": args.lanes, "act_bits": 8, "exp_bits": 3,
           "layer_macs": args.macs, "cell_library": asic.LIBRARY, "designs": d,
           "streams": {s: analyse(d, config, s) for s in STREAMS},
           "seconds": round(time.time() - t0)}
    for s in STREAMS:
        print(f"stream {s}:\n{'design':12} {'pJ/MAC cycle':>13} {'clock':>8} {'FF data':>8} "
              f"{'logic':>8} {'zero x':>7}")
        for name, m in d.items():
            b = m[s]["blocks_pj"]
            print(f"{name:12} {m[s]['pj_per_mac_cycle']:13.1f} {b['clock']:8.1f} "
                  f"{b['ff_data']:8.1f} {b['logic']:8.1f} {m[s]['zero_activations']:7.1%}")
        print(json.dumps(res["streams"][s], indent=1))
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A toggle-based power proxy: switching activity of the gate-level PE array on a real layer.

1. :func:`mac_stream` runs a program image on the golden emulator in step mode and records,
   for every MAC, the broadcast activation and the lanes' weight codes.
2. :func:`toggle_energy` drives the generic gate-level netlist of the PE array
   (:func:`accel.synth.generic_stats`, Yosys's ``simcells.v`` models, by default with one
   time unit of delay per gate so that glitches show: :func:`unit_delay_cells`) with that
   stream under Icarus, one MAC per lane and cycle (four in mode ``tree``: the MACs in
   stream order, :func:`accel.pe_array.cycle_words`), dumps a VCD of every net, and counts
   the toggles of each net bit.  Each toggle is weighted by the transistor count of the cell
   driving the net (:data:`accel.synth.TRANSISTORS`: switched capacitance grows with the
   size of the gate that switches); nets driven from the primary inputs count nothing.  The sum is
   ``toggle_energy`` (transistor-toggles); divided by the MACs it is the energy per MAC.
3. After the stream the testbench reads every lane's accumulator back and the run is
   refused unless they equal the emulator's sums of products (the last products for the
   product-stage array), so the netlist simulated is
   known to compute the layer.

:func:`simulate_toggles` (steps 2 and 3 without the weighting) also drives the standard-cell
netlists of :mod:`accel.asic`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import semantics
from contract.config import AccelConfig
from contract.errors import AsdError
from contract.image import Image
from emu.emulator import Machine

from . import synth

SIMCELLS_CANDIDATES = ("/usr/share/yosys/simcells.v", "/usr/local/share/yosys/simcells.v")


class PowerError(RuntimeError, AsdError):
    """The power simulation could not run or did not reproduce the emulator."""


def mac_stream(image: Image, config: AccelConfig | None = None,
               limit: int | None = None) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(x, codes)``: per MAC of the program, the activation and the ``lanes`` codes."""
    mach = Machine(image, config)
    xs: list[int] = []
    ws: list[NDArray[np.int64]] = []
    while not mach.halted:
        ins = mach.prog.instrs[mach.pc]
        if ins.is_dot_step:
            f = mach.prog.fields[mach.pc]
            xs.append(int(mach.amem[mach.regs[f[ins.pointer("AMEM").register]]]))
            ws.append(mach.wmem[mach.regs[f[ins.pointer("WMEM").register]]].copy())
            if limit is not None and len(xs) >= limit:
                break
        mach.step()
    if not xs:
        raise PowerError("the program executes no MAC")
    return np.asarray(xs, np.int64), np.asarray(ws, np.int64).reshape(len(xs), -1)


def simcells() -> Path:
    for p in SIMCELLS_CANDIDATES:
        if Path(p).exists():
            return Path(p)
    found = shutil.which("yosys-config")
    if found:
        out = subprocess.run([found, "--datdir"], capture_output=True, text=True, timeout=30)
        dat = Path(out.stdout.strip()) / "simcells.v"
        if dat.exists():
            return dat
    raise synth.ToolMissing(f"yosys's simcells.v not found; install with: {synth.INSTALL}")


def unit_delay_cells(directory: str | Path) -> Path:
    """A copy of ``simcells.v`` in ``directory`` whose combinational cells switch one time
    unit after their inputs (``assign #1``): then a gate whose inputs arrive at different
    depths switches more than once a cycle, and those glitches are counted as the silicon
    would pay for them.  Zero-delay cells switch at most once a cycle and hide them."""
    text = simcells().read_text()
    delayed, count = re.subn(r"(?m)^assign Y = ", "assign #1 Y = ", text)
    if count == 0:
        raise PowerError(f"{simcells()}: no 'assign Y = ' cell to delay")
    out = Path(directory) / "simcells_unit_delay.v"
    out.write_text(delayed)
    return out


# Cycles the VCD runs on after the last stream word (the pipeline drains into the
# accumulators), before the readout.
DRAIN_CYCLES = 3


def _testbench(config: AccelConfig, top: str, n: int, lanes: int, sel_bits: int,
               hold: bool, latency: int, half_period: int = 5, products: int = 1,
               dump_depth: int = 0, sdf: Path | None = None) -> str:
    """``n`` cycles of ``{w_in, x_in}`` words from ``stream.hex``, ``products`` MACs a lane
    each; the VCD holds ``dump_depth`` levels of the design (0: all); ``sdf``: the delays
    annotated on the design's cells."""
    c = config
    after = "load = 1;" if hold else "x_in = 0; w_in = 0; load = 0;"
    annotate = f'$sdf_annotate("{sdf.resolve()}", dut);' if sdf else ""
    wbits = c.lanes * products * c.weight_bits
    xbits = products * c.act_bits
    return f"""`timescale 1ns/1ns
module tb_power;
reg clk = 0;
reg rst = 1;
reg load = 1;
reg [{xbits - 1}:0] x_in = 0;
reg [{wbits - 1}:0] w_in = 0;
reg [{sel_bits - 1}:0] sel = 0;
wire [{c.acc_bits - 1}:0] acc_out;
reg [{wbits + xbits - 1}:0] stim [0:{n - 1}];
integer i;
{top} dut(.clk(clk), .rst(rst), .x_in(x_in), .w_in(w_in), .load(load), .sel(sel),
          .acc_out(acc_out));
always #{half_period} clk = ~clk;
initial begin
    {annotate}
    $readmemh("stream.hex", stim);
    @(negedge clk); @(negedge clk); rst = 0;
    $dumpfile("power.vcd");
    $dumpvars({dump_depth}, dut);
    for (i = 0; i < {n}; i = i + 1) begin
        {{w_in, x_in}} = stim[i];
        @(negedge clk);
    end
    {after}
    repeat ({DRAIN_CYCLES}) @(negedge clk);
    $dumpoff;
    for (i = 0; i < {lanes}; i = i + 1) begin
        sel = i;
        repeat ({latency + 1}) @(negedge clk);
        $display("PWR-ACC %0d %h", i, acc_out);
    end
    $display("PWR-END");
    $finish;
end
endmodule
"""


@dataclass
class PowerResult:
    toggle_energy: int  # transistor-weighted toggles over the stream
    toggles: int  # unweighted net-bit toggles
    macs: int
    by_cell: dict[str, int]  # weighted toggles per driving cell type

    @property
    def energy_per_mac(self) -> float:
        return self.toggle_energy / self.macs

    @property
    def ff_share(self) -> float:
        """The flip-flops' part of the toggle energy (the rest is the logic's)."""
        ff = sum(e for cell, e in self.by_cell.items() if synth.is_ff(cell))
        return ff / self.toggle_energy if self.toggle_energy else 0.0


def _cell_weight(cell_type: str) -> int:
    return synth.transistors_of({cell_type: 1})


def parse_vcd_toggles(path: str | Path) -> dict[str, list[int]]:
    """Per VCD variable name, toggles of each bit (LSB first), counting changes after the
    first value of each variable."""
    names: dict[str, tuple[str, int]] = {}
    counts: dict[str, list[int]] = {}
    last: dict[str, str] = {}
    with open(path) as fh:
        in_header = True
        for line in fh:
            if in_header:
                if line.startswith("$var"):
                    parts = line.split()
                    width, code, name = int(parts[2]), parts[3], parts[4]
                    if code not in names:
                        names[code] = (name, width)
                        counts[code] = [0] * width
                elif line.startswith("$enddefinitions"):
                    in_header = False
                continue
            if not line or line[0] in "#$":
                continue
            ch = line[0]
            if ch in "01xzXZ":
                code, val = line[1:].strip(), ch
            elif ch in "bB":
                v, code = line[1:].split()
                val = v
            else:
                continue
            if code not in names:
                continue
            width = names[code][1]
            val = val.rjust(width, "0" if val[0] in "01" else val[0])[-width:]
            prev = last.get(code)
            last[code] = val
            if prev is None:
                continue
            cnt = counts[code]
            for k in range(width):
                a, b = prev[width - 1 - k], val[width - 1 - k]
                if a != b and a in "01" and b in "01":
                    cnt[k] += 1
    return {names[c][0]: v for c, v in counts.items()}


def simulate_toggles(netlist_v: str | Path, cell_models: Sequence[str | Path], top: str,
                     config: AccelConfig, x: NDArray[np.int64], codes: NDArray[np.int64],
                     workdir: str | Path, *, mode: str = "pipelined", half_period: int = 5,
                     dump_depth: int = 0, sdf: str | Path | None = None,
                     timeout: float = 600) -> tuple[dict[str, list[int]], int]:
    """Drive a gate-level PE array netlist with the ``(x, codes)`` stream under Icarus, check
    its accumulators against the emulator, and return the toggles of every VCD variable
    (:func:`parse_vcd_toggles`) and the number of clock cycles the VCD covers (the stream and
    :data:`DRAIN_CYCLES`).

    ``sdf``: a delay file for the netlist's cells (their Verilog models' ``specify`` paths,
    which Icarus then honours: ``-gspecify``; ``-Tmax`` takes the file's ``(min::max)``
    triples at their maximum).  Every cell then switches after its own delay, inertially
    (a pulse shorter than the delay is swallowed), so the VCD holds the glitches the silicon
    makes; ``half_period`` (ns) must leave the slowest path time to settle, which the check
    against the emulator enforces."""
    synth.require("iverilog", "vvp")
    c = config
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    from .lanes import products_per_cycle, readout_latency
    from .pe_array import cycle_words, sel_bits

    k = products_per_cycle(mode)
    words = cycle_words(c, mode, x, codes)
    xbits = k * c.act_bits
    (wd / "stream.hex").write_text("".join(f"{(ww << xbits) | xw:x}\n" for xw, ww in words))
    (wd / "tb_power.v").write_text(_testbench(c, top, len(words), c.lanes, sel_bits(c.lanes),
                                                mode == "product", readout_latency(c, mode),
                                                half_period, k, dump_depth,
                                                None if sdf is None else Path(sdf)))
    timing = ["-gspecify", "-Tmax"] if sdf is not None else []
    build = ["iverilog", "-g2005", *timing, "-o", "power.vvp", "tb_power.v",
             str(Path(netlist_v).resolve()), *(str(m) for m in cell_models)]
    try:
        p = subprocess.run(build, cwd=wd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PowerError(f"iverilog timed out after {timeout:.0f} s") from None
    if p.returncode != 0:
        raise PowerError(f"iverilog failed:\n{(p.stdout + p.stderr)[-2000:]}")
    try:
        p = subprocess.run(["vvp", "-n", "power.vvp"], cwd=wd, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PowerError(f"vvp timed out after {timeout:.0f} s") from None
    out = p.stdout
    if "PWR-END" not in out:
        raise PowerError(f"power simulation did not finish:\n{(out + p.stderr)[-2000:]}")
    sdf_errors = [line for line in out.splitlines() if "SDF ERROR" in line]
    if sdf_errors:  # a delay left unannotated would quietly be the model's own
        raise PowerError(f"{len(sdf_errors)} SDF annotation errors, e.g.:\n"
                         + "\n".join(sdf_errors[:3]))
    got = {int(m.group(1)): int(m.group(2), 16)
           for m in re.finditer(r"PWR-ACC (\d+) ([0-9a-fA-FxzXZ]+)", out)
           if all(ch in "0123456789abcdefABCDEF" for ch in m.group(2))}
    prods = semantics.product(x[:, None], codes, c.weights, c.exp_bits)
    # Accumulating modes hold the sum of the products; the product stage the last product.
    want = semantics.wrap(prods[-1] if mode == "product" else prods.sum(axis=0), c.acc_bits)
    for lane in range(c.lanes):
        have = got.get(lane)
        if have is None or semantics.wrap(have, c.acc_bits) != int(want[lane]):
            raise PowerError(f"gate-level netlist disagrees with the emulator on lane {lane}: "
                             f"{have} vs {int(want[lane]) & ((1 << c.acc_bits) - 1)}")
    return parse_vcd_toggles(wd / "power.vcd"), len(words) + DRAIN_CYCLES


def toggle_energy(netlist_v: str | Path, netlist_json: str | Path, top: str,
                  config: AccelConfig, x: NDArray[np.int64], codes: NDArray[np.int64],
                  workdir: str | Path, *, mode: str = "pipelined", unit_delay: bool = True,
                  timeout: float = 600) -> PowerResult:
    """Simulate the gate-level PE array on the ``(x, codes)`` stream; see the module doc.
    ``unit_delay``: every gate takes one time unit (glitches counted); otherwise zero."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    n = len(x)
    net = synth.load_netlist(netlist_json, top)
    cells = unit_delay_cells(wd) if unit_delay else simcells()
    # Unit delays: the clock waits out the deepest path of the netlist (its cell count
    # bounds the depth) so every cycle settles before the next edge.
    half = len(net["cells"]) + 5 if unit_delay else 5
    toggles, _ = simulate_toggles(netlist_v, [cells], top, config, x, codes, wd, mode=mode,
                                  half_period=half, timeout=timeout)

    driver: dict[int, str] = {}
    for cell in net["cells"].values():
        for port, direction in cell["port_directions"].items():
            if direction == "output":
                for b in cell["connections"][port]:
                    if isinstance(b, int):
                        driver[b] = cell["type"]
    seen: set[int] = set()
    energy, total = 0, 0
    by_cell: dict[str, int] = {}
    weights: dict[str, int] = {}
    for name, per_bit in toggles.items():
        info = net["netnames"].get(name)
        if info is None or len(info["bits"]) != len(per_bit):
            continue
        for b, t in zip(info["bits"], per_bit):
            if not isinstance(b, int) or b in seen or b not in driver:
                continue
            seen.add(b)
            ct = driver[b]
            if ct not in weights:
                weights[ct] = _cell_weight(ct)
            total += t
            energy += t * weights[ct]
            by_cell[ct] = by_cell.get(ct, 0) + t * weights[ct]
    if total == 0:
        raise PowerError("no toggles recorded: the VCD names did not match the netlist")
    (wd / "power.json").write_text(json.dumps({"toggle_energy": energy, "toggles": total,
                                               "macs": n, "by_cell": by_cell}, indent=1))
    return PowerResult(energy, total, n, by_cell)


def stream_summary(x: NDArray[np.int64], codes: NDArray[np.int64]) -> dict[str, Any]:
    return {"macs": int(len(x)), "lanes": int(codes.shape[1]),
            "zero_activations": float(np.mean(x == 0))}

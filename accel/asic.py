"""Standard-cell figures: the PE array on a real CMOS cell library instead of an FPGA.

The published claim (critical path, area, power against the multiplier datapath) is an ASIC
one, so besides iCE40 and the generic gate counts :mod:`accel.hwreport` maps each design onto
the OSU 0.18 um standard cells that Debian ships with qflow (``qflow-tech-osu018``: a
Liberty file with area, delay and power tables, and Verilog models of the cells) and reads:

* :func:`map_cells` -- Yosys ``synth -flatten; dfflibmap; abc -D -constr`` (delay-oriented
  mapping; ABC buffers high-fanout nets and sizes gates, driven by a ``BUFX2`` into a
  0.02 pF load) and ``stat -liberty``: area in the library's unit (um^2) and cell counts;
* :func:`critical_path` -- OpenSTA on that netlist: the longest register-to-register path
  in ns (every input and output constrained to the clock, the reset excluded), from the
  Liberty delay tables with the loads the netlist gives (no wires: before placement);
* :func:`energy_per_mac` -- the netlist simulated under Icarus on the layer's MAC stream
  (:func:`accel.power.simulate_toggles`, the cells' own Verilog models, the accumulators
  checked against the emulator), every net's toggles per clock cycle given to OpenSTA as
  its activity, and ``report_power`` (Liberty internal and switching power, clock pins
  included, at one clock for both kinds): picojoules per MAC.  By default the simulation is
  timed: every cell switches after the delay OpenSTA computes for it with the loads of the
  netlist (:func:`write_sdf`, annotated on the models), so a net whose inputs arrive at
  different times glitches as it would in silicon and its glitches are paid for -- the
  method of gate-level power sign-off.  ``timed=False`` simulates at zero delay (each net
  switches at most once a cycle: the glitch-free floor).

Every run has a timeout and is judged by what it prints.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from contract.config import AccelConfig

from . import power, synth

INSTALL = "sudo apt-get install qflow-tech-osu018 opensta"
LIBRARY_DIRS = ("/usr/share/qflow/tech/osu018", "/usr/local/share/qflow/tech/osu018")
LIBRARY = "OSU 0.18 um (qflow osu018_stdcells, typical corner, 1.8 V)"
# The clock every figure is taken at: STA reports the path against it, and power is read
# at it for both kinds (energy per MAC does not depend on it, leakage aside).
CLOCK_NS = 10.0
# ABC's delay target (ps): below what either kind reaches, so it maps for speed.
ABC_DELAY_PS = 1000


class AsicError(synth.SynthError):
    """A standard-cell run failed; the message quotes the tool's output."""


def library() -> tuple[Path, Path]:
    """``(liberty, verilog models)`` of the cell library."""
    for d in LIBRARY_DIRS:
        lib, models = Path(d) / "osu018_stdcells.lib", Path(d) / "osu018_stdcells.v"
        if lib.exists() and models.exists():
            return lib, models
    raise synth.ToolMissing(f"the OSU 0.18 um cell library was not found in "
                            f"{', '.join(LIBRARY_DIRS)}; install with: {INSTALL}")


def require() -> None:
    """Raise :class:`accel.synth.ToolMissing` unless OpenSTA and the cell library are here."""
    library()
    if shutil.which("sta") is None:
        raise synth.ToolMissing(f"sta (OpenSTA) not found on PATH; install with: {INSTALL}")


@dataclass
class CellResult:
    area: float  # the library's area unit (um^2)
    ff_area: float
    cells: dict[str, int]
    netlist_v: Path

    @property
    def ffs(self) -> int:
        return sum(n for c, n in self.cells.items() if is_flip_flop(c))


def is_flip_flop(cell: str) -> bool:
    """The library's flip-flops (``DFFPOSX1``, ``DFFNEGX1``, ``DFFSR``)."""
    return cell.startswith("DFF")


def parse_area(text: str) -> float:
    m = re.search(r"Chip area for (?:module|top module) '?\\?\S*?'?:\s*([\d.]+)", text)
    if not m:
        raise AsicError(f"no chip area in Yosys's stat -liberty:\n{synth._tail(text)}")
    return float(m.group(1))


def cell_areas(liberty: Path) -> dict[str, float]:
    text = liberty.read_text()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"cell\s*\((\w+)\)\s*\{[^{}]*?\barea\s*:\s*([\d.]+)", text)}


def map_cells(sources: Sequence[Path], top: str, workdir: str | Path, *,
              timeout: float = 600) -> CellResult:
    """Map ``top`` onto the cell library; area, cells and the netlist (Verilog)."""
    lib, _ = library()
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    constr = wd / "abc.constr"
    constr.write_text("set_driving_cell BUFX2\nset_load 0.02\n")
    nv = wd / f"{top}.cells.v"
    script = (f"read_liberty -lib {lib}; {synth._read_cmd(sources)}; "
              f"synth -flatten -top {top}; dfflibmap -liberty {lib}; "
              f"abc -D {ABC_DELAY_PS} -constr {constr.resolve()} -liberty {lib}; opt_clean; "
              f"tee -o cells.txt stat -liberty {lib}; "
              # OpenSTA's Verilog reader takes no concatenation on the left of an assign.
              "splitnets; opt_clean -purge; rename -hide w:* c:*; rename -enumerate; "
              f"write_verilog -noattr -noexpr -simple-lhs {nv.name}")
    synth.run_tool(["yosys", "-q", "-p", script], wd, timeout, f"{top}.cells")
    text = (wd / "cells.txt").read_text()
    cells = synth.parse_stat(text)
    unknown = re.findall(r"Area for cell type \\?(\S+) is unknown", text)
    if unknown:
        raise AsicError(f"cells without an area in {lib.name}: {', '.join(unknown)}")
    areas = cell_areas(lib)
    ff_area = sum(n * areas.get(c, 0.0) for c, n in cells.items() if is_flip_flop(c))
    return CellResult(parse_area(text), ff_area, cells, nv)


def _sta_header(netlist_v: Path, top: str) -> str:
    lib, _ = library()
    others = "[delete_from_list [all_inputs] [get_ports clk]]"
    return (f"read_liberty {lib}\nread_verilog {netlist_v.resolve()}\nlink_design {top}\n"
            f"create_clock -name clk -period {CLOCK_NS:g} [get_ports clk]\n"
            f"set_input_delay 0 -clock clk {others}\n"
            "set_output_delay 0 -clock clk [all_outputs]\n"
            "set_false_path -from [get_ports rst]\n")


def _run_sta(script: str, workdir: Path, what: str, timeout: float) -> str:
    path = workdir / f"{what}.tcl"
    path.write_text(script + "exit\n")
    out = synth.run_tool(["sta", "-no_splash", "-exit", path.name], workdir, timeout, what)
    if re.search(r"(?m)^Error", out):
        raise AsicError(f"{what}: OpenSTA reported an error:\n{synth._tail(out)}")
    return out


def critical_path(netlist_v: str | Path, top: str, workdir: str | Path, *,
                  timeout: float = 600) -> float:
    """The longest register-to-register path (ns) including the capturing flip-flop's
    setup time: the clock period the design could run at."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    out = _run_sta(_sta_header(Path(netlist_v), top)
                   + "report_checks -path_delay max -digits 3\n", wd, f"{top}.sta", timeout)
    m = re.search(r"(-?[\d.]+)\s+slack \((?:MET|VIOLATED)\)", out)
    if not m:
        raise AsicError(f"no slack in OpenSTA's report:\n{synth._tail(out)}")
    return round(CLOCK_NS - float(m.group(1)), 3)


def write_sdf(netlist_v: str | Path, top: str, workdir: str | Path, *,
              timeout: float = 600) -> Path:
    """The netlist's cell delays (OpenSTA ``write_sdf``: each cell arc from the Liberty
    tables at the slew and load it sees) as ``workdir/top.sdf``."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    out = wd / f"{top}.sdf"
    _run_sta(_sta_header(Path(netlist_v), top) + f"write_sdf -divider . {out.name}\n", wd,
             f"{top}.sdf", timeout)
    if not out.exists() or "IOPATH" not in out.read_text():
        raise AsicError(f"OpenSTA wrote no cell delays to {out}")
    return out


@dataclass
class EnergyResult:
    energy_pj: float  # over the whole stream
    ff_share: float  # the sequential cells' part (clock pins included)
    power_mw: float  # at CLOCK_NS
    cycles: int  # that the simulation covered
    macs: int

    @property
    def pj_per_mac(self) -> float:
        return self.energy_pj / self.macs


def _bit_names(toggles: dict[str, list[int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, per_bit in toggles.items():
        if len(per_bit) == 1:
            out[name] = per_bit[0]
        else:
            for k, t in enumerate(per_bit):
                out[f"{name}[{k}]"] = t
    return out


def parse_power(text: str) -> tuple[float, float]:
    """``(total W, sequential W)`` from OpenSTA's ``report_power``."""
    def row(label: str) -> float:
        m = re.search(rf"(?m)^{label}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
        if not m:
            raise AsicError(f"no '{label}' row in OpenSTA's power report:\n"
                            f"{synth._tail(text)}")
        return float(m.group(4))
    return row("Total"), row("Sequential")


def energy_per_mac(netlist_v: str | Path, top: str, config: AccelConfig,
                   x: NDArray[np.int64], codes: NDArray[np.int64], workdir: str | Path, *,
                   mode: str = "pipelined", timed: bool = True, period_ns: float = CLOCK_NS,
                   timeout: float = 600) -> EnergyResult:
    """Liberty power of the netlist on the MAC stream; see the module doc.  ``period_ns``:
    the simulated clock (timed: longer than the critical path; the energy per cycle does not
    depend on it)."""
    _, models = library()
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    sdf = write_sdf(netlist_v, top, wd, timeout=timeout) if timed else None
    toggles, span = power.simulate_toggles(netlist_v, [models], top, config, x, codes, wd,
                                           mode=mode, dump_depth=1, sdf=sdf,
                                           half_period=math.ceil(period_ns / 2),
                                           timeout=timeout)
    declared = set(re.findall(r"(?m)^\s*(?:wire|input|output)\s+(?:\[[\d:]+\]\s+)?(\S+);",
                              Path(netlist_v).read_text()))
    unseen = sorted(declared - set(toggles))
    if len(unseen) > len(declared) // 100:  # the power would be read at default activity
        raise AsicError(f"{len(unseen)} of the netlist's {len(declared)} nets are not in the "
                        f"VCD (e.g. {', '.join(unseen[:3])})")
    nets = _bit_names({n: t for n, t in toggles.items() if n in declared})
    # OpenSTA 2.0's set_power_activity -pins is broken (it calls an undefined command), so
    # every pin of a net gets the net's toggles per clock cycle through the command beneath.
    lines = [f"act {{{name}}} {t / span:.6g}" for name, t in sorted(nets.items())
             if name not in ("clk", "rst")]
    if not lines:
        raise AsicError("no net toggles recorded: the VCD names did not match the netlist")
    lines.insert(0, "proc act {net a} { foreach p [get_pins -of_objects [get_nets $net]] "
                    "{ sta::set_power_pin_activity $p $a 0.5 } }")
    out = _run_sta(_sta_header(Path(netlist_v), top) + "\n".join(lines)
                   + "\nreport_power -digits 6\n", wd, f"{top}.power", timeout)
    total, seq = parse_power(out)
    if total <= 0:
        raise AsicError(f"OpenSTA reported no power:\n{synth._tail(out)}")
    pj = total * CLOCK_NS * span * 1e3  # W x ns -> pJ
    return EnergyResult(round(pj, 1), round(seq / total, 3), round(total * 1e3, 4), span,
                        len(x))

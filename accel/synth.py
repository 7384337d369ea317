"""Synthesis flows: Yosys (iCE40 and generic ABC mapping) and nextpnr-ice40.

Every external run has a wall-clock timeout and is judged by parsing what it prints or
writes, never by its exit status alone:

* :func:`ice40_stats` -- ``synth_ice40`` and ``stat``: LUT4, carry and flip-flop counts; also
  writes the JSON netlist that nextpnr places;
* :func:`generic_stats` -- ``synth -flatten; abc -g <simple gates>`` (optionally ``-D`` for
  delay-oriented mapping), ``stat`` and ``ltp -noff``: gate counts per type, the longest
  combinational path in gates (logic depth) and a CMOS transistor count; also writes the
  gate-level netlist (Verilog and JSON) that :mod:`accel.power` simulates;
* :func:`nextpnr_fmax` / :func:`fmax_median` -- place and route on an iCE40 (``hx8k`` by
  default) and read "Max frequency for clock" from the timing report.

A missing tool raises :class:`ToolMissing` with the install command.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.errors import AsdError

INSTALL = "sudo apt-get install yosys nextpnr-ice40 fpga-icestorm"
DEVICE = "hx8k"
PACKAGE = {"hx8k": "ct256", "hx1k": "tq144", "up5k": "sg48", "lp8k": "cm81"}

# Generic gate library given to ABC and the transistor count of each cell in static CMOS.
ABC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"
# Static CMOS: INV 2, NAND2/NOR2 4, AND2/OR2 6 (NAND/NOR + INV), ANDNOT/ORNOT 6 (an inverter
# on one input of a NOR/NAND), XOR2/XNOR2 8 (the 8-transistor pass-gate/inverter form; a
# fully static complementary XOR is 12), MUX2 12 (transmission-gate mux with its select
# inverter and an output buffer), D flip-flop 24 (master-slave with an output inverter;
# reset/enable variants add the gating they need).
TRANSISTORS = {
    "$_NOT_": 2, "$_BUF_": 4,
    "$_NAND_": 4, "$_NOR_": 4, "$_AND_": 6, "$_OR_": 6, "$_ANDNOT_": 6, "$_ORNOT_": 6,
    "$_XOR_": 8, "$_XNOR_": 8, "$_MUX_": 12, "$_NMUX_": 12,
    "$_AOI3_": 6, "$_OAI3_": 6, "$_AOI4_": 8, "$_OAI4_": 8,
}
DFF_TRANSISTORS = 24
DFF_EXTRA = {"R": 4, "S": 4, "E": 8}  # per reset/set input, per enable (a feedback mux)


class SynthError(RuntimeError, AsdError):
    """A synthesis or place-and-route run failed; the message quotes the tool's output."""


class ToolMissing(SynthError):
    """Yosys or nextpnr-ice40 is not installed."""


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise ToolMissing(f"{', '.join(missing)} not found on PATH; install with: {INSTALL}")


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_tool(cmd: Sequence[str], cwd: str | Path, timeout: float, what: str) -> str:
    """Run ``cmd`` in ``cwd`` with a timeout; returns stdout+stderr."""
    require(cmd[0])
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{what}: {cmd[0]} timed out after {timeout:.0f} s") from None
    out = proc.stdout + proc.stderr
    (Path(cwd) / f"{what}.log").write_text(out)
    if proc.returncode != 0 or "ERROR:" in out:
        raise SynthError(f"{what}: {cmd[0]} failed (status {proc.returncode}):\n{_tail(out)}")
    return out


# ---------------------------------------------------------------------------------------------
# Parsing


_STAT_CELL = re.compile(r"^\s+(\$?[\w$]+)\s+(\d+)\s*$")


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts of the *last* ``stat`` report in ``text`` (the flattened top)."""
    start = text.rfind("Number of cells:")
    if start < 0:
        raise SynthError("no 'Number of cells' in the yosys stat output")
    cells: dict[str, int] = {}
    m = re.match(r"Number of cells:\s+(\d+)", text[start:])
    total = int(m.group(1)) if m else -1
    for line in text[start:].splitlines()[1:]:
        if not line.strip():
            if cells:
                break
            continue
        mm = _STAT_CELL.match(line)
        if not mm:
            break
        cells[mm.group(1)] = int(mm.group(2))
    if total >= 0 and sum(cells.values()) != total:
        raise SynthError(f"stat: cell counts {sum(cells.values())} != total {total}")
    return cells


def parse_ltp(text: str) -> int:
    """Length of the longest topological path from ``ltp -noff``."""
    found = re.findall(r"Longest topological path in \S+ \(length=(\d+)\)", text)
    if not found:
        raise SynthError("no 'Longest topological path' in the yosys ltp output")
    return int(found[-1])


_FMAX = re.compile(r"Max frequency for clock\s+'?([^':]+)'?:\s+([\d.]+)\s+MHz")


def parse_fmax(text: str) -> float:
    """The final (post-route) "Max frequency for clock" of nextpnr's log."""
    found = _FMAX.findall(text)
    if not found:
        raise SynthError(f"no 'Max frequency for clock' in the nextpnr output:\n{_tail(text)}")
    return float(found[-1][1])


def transistors_of(cells: dict[str, int]) -> int:
    """CMOS transistor count of a generic (``abc -g``) netlist's cells."""
    total = 0
    for name, n in cells.items():
        if name in TRANSISTORS:
            total += n * TRANSISTORS[name]
        elif is_ff(name):
            # $_DFF_P_, $_DFFE_PP_, $_DFF_PP0_ (async reset), $_SDFF_PP0_ (sync reset),
            # $_SDFFE_PP0P_ ...: a flip-flop plus the gating its controls need.
            kind, _, pol = name.strip("$_").partition("_")
            extra = DFF_EXTRA["E"] if "E" in kind else 0
            if kind.startswith("S") or len(pol) >= 3 or "SR" in kind:
                extra += DFF_EXTRA["R"]
            total += n * (DFF_TRANSISTORS + extra)
        else:
            raise SynthError(f"no transistor count for generic cell {name}")
    return total


def is_ff(cell: str) -> bool:
    return "DFF" in cell or "DLATCH" in cell


# ---------------------------------------------------------------------------------------------
# Flows


def _read_cmd(sources: Sequence[Path]) -> str:
    return "; ".join(f"read_verilog {Path(s).resolve()}" for s in sources)


@dataclass
class Ice40Result:
    cells: dict[str, int]
    json_path: Path

    @property
    def lut4(self) -> int:
        return self.cells.get("SB_LUT4", 0)

    @property
    def carry(self) -> int:
        return self.cells.get("SB_CARRY", 0)

    @property
    def ff(self) -> int:
        return sum(n for c, n in self.cells.items() if c.startswith("SB_DFF"))


def ice40_stats(sources: Sequence[Path], top: str, workdir: str | Path, *,
                timeout: float = 600, write_json: bool = True) -> Ice40Result:
    """``synth_ice40`` of ``top``: cell counts (and ``top.ice40.json`` for nextpnr)."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    js = wd / f"{top}.ice40.json"
    script = f"{_read_cmd(sources)}; synth_ice40 -top {top}"
    if write_json:
        script += f" -json {js.name}"
    script += "; stat"
    out = run_tool(["yosys", "-q", "-p", script.replace("stat", "tee -o stat.txt stat")],
                   wd, timeout, f"{top}.ice40")
    del out
    cells = parse_stat((wd / "stat.txt").read_text())
    if write_json and not js.exists():
        raise SynthError(f"synth_ice40 wrote no {js}")
    return Ice40Result(cells, js)


@dataclass
class GenericResult:
    cells: dict[str, int]
    depth: int
    netlist_v: Path
    netlist_json: Path
    gates: int = field(init=False)
    transistors: int = field(init=False)
    ffs: int = field(init=False)

    def __post_init__(self) -> None:
        self.ffs = sum(n for c, n in self.cells.items() if is_ff(c))
        self.gates = sum(n for c, n in self.cells.items() if not is_ff(c))
        self.transistors = transistors_of(self.cells)


def generic_stats(sources: Sequence[Path], top: str, workdir: str | Path, *,
                  delay: float | None = None, timeout: float = 600) -> GenericResult:
    """Technology-independent mapping with ABC onto simple 2-input gates and muxes.

    ``delay`` (ps, ABC's unit delay being 1) turns on delay-oriented mapping (``abc -D``).
    """
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    abc = f"abc -g {ABC_GATES}" + (f" -D {delay:g}" if delay else "")
    nv, nj = wd / f"{top}.gates.v", wd / f"{top}.gates.json"
    script = (f"{_read_cmd(sources)}; synth -flatten -top {top}; {abc}; opt_clean; "
              "tee -o stat.txt stat; tee -o ltp.txt ltp -noff; "
              # Same short public names in both netlists, so a VCD of the Verilog maps onto
              # the JSON's cells (ports keep their names).
              "rename -hide w:* c:*; rename -enumerate; "
              f"write_verilog -noattr -noexpr {nv.name}; write_json {nj.name}")
    run_tool(["yosys", "-q", "-p", script], wd, timeout, f"{top}.generic")
    cells = parse_stat((wd / "stat.txt").read_text())
    depth = parse_ltp((wd / "ltp.txt").read_text())
    return GenericResult(cells, depth, nv, nj)


def coarse_cells(sources: Sequence[Path], top: str, workdir: str | Path, *,
                 timeout: float = 600) -> dict[str, int]:
    """Word-level cells after ``proc; opt`` (``$mul``, ``$add``, ``$shl`` ...): shows whether
    a design contains a multiplier before any mapping."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    script = (f"{_read_cmd(sources)}; hierarchy -top {top}; proc; flatten; opt; wreduce; "
              "tee -o coarse.txt stat")
    run_tool(["yosys", "-q", "-p", script], wd, timeout, f"{top}.coarse")
    return parse_stat((wd / "coarse.txt").read_text())


def _over_capacity(log: str) -> bool:
    """Whether nextpnr failed because the design needs more cells than the device has: its
    utilization lines say so (``ICESTORM_LC: 9327/ 7680``), or the placer could not spread the
    cells (``Failed to expand region``, as nextpnr-ice40 0.4 reports an overfull device)."""
    for used, avail in re.findall(r"ICESTORM_LC:\s*(\d+)\s*/\s*(\d+)", log):
        if int(used) > int(avail):
            return True
    text = log.lower()
    return ("unable to place" in text or "too many" in text or "failed to expand region" in text
            or "fit" in text)


def nextpnr_fmax(netlist_json: str | Path, *, seed: int = 1, device: str = DEVICE,
                 timeout: float = 600, workdir: str | Path | None = None) -> float:
    """Post-route Fmax (MHz) of the design's clock on an iCE40 ``device``."""
    js = Path(netlist_json).resolve()
    wd = Path(workdir) if workdir else js.parent
    cmd = ["nextpnr-ice40", f"--{device}", "--package", PACKAGE.get(device, "ct256"),
           "--json", str(js), "--seed", str(seed), "--pcf-allow-unconstrained",
           "--freq", "12"]
    try:
        out = run_tool(cmd, wd, timeout, f"{js.stem}.nextpnr.s{seed}")
    except SynthError as exc:
        msg = str(exc)
        if _over_capacity(msg):
            raise SynthError(f"design does not fit the iCE40 {device}: {msg}") from None
        raise
    return parse_fmax(out)


def fmax_median(netlist_json: str | Path, seeds: int = 5, *, device: str = DEVICE,
                timeout: float = 600, progress: Any = None) -> tuple[float, list[float]]:
    """Median Fmax over seeds ``1..seeds`` and the per-seed values."""
    vals = []
    for s in range(1, seeds + 1):
        vals.append(nextpnr_fmax(netlist_json, seed=s, device=device, timeout=timeout))
        if progress:
            progress(f"seed {s}: {vals[-1]:.1f} MHz")
    return statistics.median(vals), vals


def load_netlist(netlist_json: str | Path, top: str) -> dict[str, Any]:
    data = json.loads(Path(netlist_json).read_text())
    try:
        return dict(data["modules"][top])
    except KeyError:
        raise SynthError(f"{netlist_json}: no module {top}") from None

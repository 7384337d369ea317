"""Builds ``myhdl.vpi``, the Icarus side of MyHDL co-simulation, from the C sources that ship
in the MyHDL wheel (``share/myhdl/cosimulation/icarus/``), with ``iverilog-vpi``."""

from __future__ import annotations

import hashlib
import shutil
import sys
from importlib import metadata
from pathlib import Path

from contract.backend import BackendError, SimulatorMissing

from .sims import common

VPI_SOURCES = ("myhdl.c", "myhdl_table.c")
_REL = Path("share") / "myhdl" / "cosimulation" / "icarus"


def source_dir() -> Path:
    """The directory holding the MyHDL wheel's Icarus VPI sources."""
    candidates = [Path(sys.prefix) / _REL, Path(sys.base_prefix) / _REL]
    try:
        dist = metadata.distribution("myhdl")
        for f in dist.files or []:
            if f.name == "myhdl.c" and "icarus" in str(f):
                candidates.insert(0, Path(str(dist.locate_file(f))).resolve().parent)
    except metadata.PackageNotFoundError:
        raise SimulatorMissing("MyHDL is not installed: pip install myhdl==0.11.52 (or "
                               "pip install -e '.[hw]')") from None
    for c in candidates:
        if all((c / s).exists() for s in VPI_SOURCES):
            return c
    raise SimulatorMissing("the MyHDL wheel's co-simulation sources (myhdl.c, myhdl_table.c) "
                           "were not found under share/myhdl/cosimulation/icarus; reinstall "
                           "MyHDL with pip install --force-reinstall myhdl==0.11.52")


def require_icarus() -> None:
    missing = [t for t in ("iverilog", "vvp", "iverilog-vpi") if shutil.which(t) is None]
    if missing:
        raise SimulatorMissing(f"Icarus Verilog is not installed ({', '.join(missing)} not on "
                               "PATH): sudo apt-get install iverilog")


def build_vpi(timeout: float = 120.0) -> Path:
    """Path of a ``myhdl.vpi`` built once per source version and cached."""
    require_icarus()
    src = source_dir()
    digest = hashlib.sha256(
        b"".join((src / s).read_bytes() for s in VPI_SOURCES)).hexdigest()[:16]

    def builder(d: Path) -> None:
        for s in VPI_SOURCES:
            shutil.copy2(src / s, d / s)
        try:
            out = common.run_guarded(["iverilog-vpi", *VPI_SOURCES], d, timeout,
                                     "building myhdl.vpi")
        except FileNotFoundError:
            raise SimulatorMissing("iverilog-vpi not found: sudo apt-get install "
                                   "iverilog") from None
        common.check_build(out, (d / "myhdl.vpi").exists(),
                           "building myhdl.vpi with iverilog-vpi (needs a C compiler: sudo "
                           "apt-get install gcc)")

    return common.cached_build(f"vpi-{digest}", builder) / "myhdl.vpi"


def main() -> int:
    try:
        print(build_vpi())
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())



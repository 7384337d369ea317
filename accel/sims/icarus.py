"""The ``icarus`` backend: converted Verilog in Icarus, co-simulated with MyHDL through the
``myhdl.vpi`` built from the MyHDL wheel's sources.  Compiled once per configuration; each image
is loaded at run time from ``$readmemh`` files, so no recompilation per program."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from contract.config import AccelConfig
from contract.image import Image

from .. import export, vpi
from ..result import BackendResult
from . import common


def build(config: AccelConfig, timeout: float = 300.0) -> Path:
    vpi.require_icarus()

    def builder(d: Path) -> None:
        export.convert(config, "verilog", d)
        export.write_testbench(config, "verilog", d)
        out = common.run_guarded(
            ["iverilog", "-g2005", "-DMYHDL_COSIM", "-o", "tb.vvp", f"{export.CORE_NAME}.v",
             f"{export.TB_NAME}.v"], d, timeout, "iverilog")
        common.check_build(out, (d / "tb.vvp").exists(), "iverilog compiling the core")

    return common.cached_build(common.build_key(config, "icarus"), builder)


def run(image: Image, config: AccelConfig, max_cycles: int, timeout: float) -> BackendResult:
    t0 = time.monotonic()
    lib = vpi.build_vpi()
    d = build(config)
    with tempfile.TemporaryDirectory(prefix="asd-icarus-") as tmp:
        run_dir = Path(tmp)
        export.write_image(image, run_dir)
        out = common.run_guarded(
            [sys.executable, "-m", "accel.sims.icarus_cosim", str(d / "tb.vvp"), str(lib),
             str(max_cycles)], run_dir, timeout, "icarus co-simulation",
            env=common.child_env())
    cycles, acc, regs, amem = common.parse_output(out, config, "icarus")
    return BackendResult("icarus", config, amem, cycles, acc, regs, dict(image.regions),
                         time.monotonic() - t0)

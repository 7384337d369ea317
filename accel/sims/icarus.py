"""The ``icarus`` backend: converted Verilog in Icarus, co-simulated with MyHDL through the
``myhdl.vpi`` built from the MyHDL wheel's sources.  Compiled once per configuration; each image
is loaded at run time from ``$readmemh`` files, so no recompilation per program."""

from __future__ import annotations

import sys
from pathlib import Path

from contract.backend import Limits
from contract.config import AccelConfig
from contract.image import Image

from .. import export, vpi
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


class IcarusBackend(common.SimulatorBackend):
    name = "icarus"

    def simulate(self, image: Image, limits: Limits) -> common.FinalState:
        lib = vpi.build_vpi()
        d = build(image.config)
        out = common.run_on_image_files(
            image, self.name,
            [sys.executable, "-m", "accel.sims.icarus_cosim", str(d / "tb.vvp"), str(lib),
             str(limits.max_cycles), str(len(image.text))], limits.timeout, "icarus co-simulation",
            env=common.child_env())
        return common.parse_output(out, image.config, self.name)

"""The ``ghdl`` backend: the converted VHDL and the VHDL testbench in GHDL (VHDL-2008).
Analysed once per configuration; each run reads the image's hex files from its own directory.
GHDL's exit status is ignored: the printed result decides."""

from __future__ import annotations

import shutil
from pathlib import Path

from contract.backend import Limits, SimulatorMissing
from contract.config import AccelConfig
from contract.image import Image

from .. import export
from . import common

_STD = "--std=08"


def require_ghdl() -> str:
    exe = shutil.which("ghdl")
    if exe is None:
        raise SimulatorMissing("GHDL is not installed (ghdl not on PATH): "
                               "sudo apt-get install ghdl")
    return exe


def build(config: AccelConfig, timeout: float = 300.0) -> Path:
    ghdl = require_ghdl()

    def builder(d: Path) -> None:
        files = [p.name for p in export.convert(config, "vhdl", d)]
        files.append(export.write_testbench(config, "vhdl", d).name)
        out = common.run_guarded([ghdl, "-a", _STD, "--workdir=.", *files], d, timeout,
                                 "ghdl analysis")
        out += common.run_guarded([ghdl, "-e", _STD, "--workdir=.", export.TB_NAME], d,
                                  timeout, "ghdl elaboration")
        common.check_build(out, "error" not in out.lower() and any(d.glob("*.cf")),
                           "GHDL analysing/elaborating the core")

    return common.cached_build(common.build_key(config, "ghdl"), builder)


class GhdlBackend(common.SimulatorBackend):
    name = "ghdl"

    def simulate(self, image: Image, limits: Limits) -> common.FinalState:
        ghdl = require_ghdl()
        d = build(image.config)
        out = common.run_on_image_files(
            image, self.name,
            [ghdl, "-r", _STD, f"--workdir={d}", export.TB_NAME,
             f"-gmax_cycles={min(limits.max_cycles, 2**31 - 1)}",
             f"-gtext_words={len(image.text)}", "--ieee-asserts=disable-at-0"],
            limits.timeout, "ghdl simulation")
        return common.parse_output(out, image.config, self.name)

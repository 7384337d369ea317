"""One interface to every way of running a program image: ``run(image, backend)``.

``emu`` is the golden emulator (:func:`emu.emulator.run`); ``myhdl`` simulates the MyHDL core
in Python; ``icarus`` co-simulates the converted Verilog in Icarus through MyHDL's VPI;
``ghdl`` runs the converted VHDL; ``verilator`` compiles the converted Verilog.  Each returns a
:class:`BackendResult` with the final AMEM (signed, full depth), the cycle count from reset
release to the HALT cycle inclusive (the emulator's ``counters["cycles"]``), the accumulators
and the address registers.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from contract.config import AccelConfig
from contract.image import Image

from .result import BackendError, BackendResult, BackendTimeout, SimulatorMissing

BACKENDS = ("emu", "myhdl", "icarus", "ghdl", "verilator")
RTL_BACKENDS = ("myhdl", "icarus", "ghdl", "verilator")
DEFAULT_MAX_CYCLES = 10_000_000
DEFAULT_TIMEOUT = 600.0


def _driver(backend: str) -> Any:
    # Imported lazily: the myhdl backend must not need a C compiler, nor icarus MyHDL's
    # simulator state, and a missing simulator should only matter to the backend that uses it.
    modules = {"myhdl": "myhdl_sim", "icarus": "icarus", "ghdl": "ghdl",
               "verilator": "verilator"}
    if backend not in modules:
        raise ValueError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    try:
        mod = importlib.import_module(f"accel.sims.{modules[backend]}")
    except ModuleNotFoundError as exc:
        if exc.name == "myhdl":
            raise SimulatorMissing("MyHDL is not installed: pip install myhdl==0.11.52 (or "
                                   "pip install -e '.[hw]')") from None
        raise
    return mod


def run(image: Image, backend: str = "myhdl", *, config: AccelConfig | None = None,
        max_cycles: int = DEFAULT_MAX_CYCLES, timeout: float = DEFAULT_TIMEOUT) -> BackendResult:
    """Run ``image`` to HALT on ``backend``.

    ``config`` (default: the image's own) may change only the PE kind: an image built for
    another configuration is refused with :class:`contract.image.ImageError`.  Raises
    :class:`SimulatorMissing` when the simulator is not installed, :class:`BackendTimeout`
    after ``timeout`` seconds or ``max_cycles`` cycles, :class:`BackendError` otherwise.
    """
    if config is not None:
        image.check_config(config)
    cfg = config or image.config
    if backend == "emu":
        from emu import emulator

        t0 = time.monotonic()
        r = emulator.run(image, cfg, max_cycles=max_cycles)
        return BackendResult("emu", cfg, r.amem, r.cycles, r.acc, list(r.regs),
                             dict(image.regions), time.monotonic() - t0)
    mod = _driver(backend)
    result: BackendResult = mod.run(image, cfg, max_cycles, timeout)
    return result


__all__ = ["BACKENDS", "RTL_BACKENDS", "BackendError", "BackendResult", "BackendTimeout",
           "SimulatorMissing", "run"]

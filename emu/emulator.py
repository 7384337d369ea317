"""The golden emulator's entry point: :func:`run` in step mode or fast mode.

Step mode (:mod:`emu.machine`) executes one instruction at a time and is the definition every
other backend is held to.  Fast mode (:mod:`emu.fast`) executes loop nests as numpy array
operations and must give the same memories, registers and counters.

Timing model: every instruction takes one cycle, except those whose table row says ``n``
cycles (one lane served per cycle).  LOOP takes one cycle; the jump back at the end of a
body takes none.  HALT's cycle is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from contract.backend import DEFAULT_MAX_CYCLES, RunResult
from contract.config import AccelConfig
from contract.image import Image, ImageError

from .fast import run_fast
from .machine import (
    Decoded,
    EmulatorError,
    Machine,
    cycle_limit_fault,
    new_counters,
    predecode,
)


def run(image: Image, config: AccelConfig | None = None, *, fast: bool = False,
        trace: bool = False, max_cycles: int = DEFAULT_MAX_CYCLES,
        on_trace: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Run an image to HALT.  Raises :class:`EmulatorError` (or ImageError for a foreign image).

    ``on_trace`` streams the trace: each entry is passed to it as it is made and none is kept
    (the result's ``trace`` is None), so a long run's trace costs no memory and the entries
    before a fault have already been seen."""
    if fast and not trace and on_trace is None:
        return run_fast(image, config, max_cycles=max_cycles)
    mach = Machine(image, config)
    log: list[dict[str, Any]] | None = [] if trace or on_trace else None
    sink = log.append if on_trace is None and log is not None else on_trace
    while not mach.halted:
        if mach.counters["cycles"] >= max_cycles:
            raise cycle_limit_fault(mach, max_cycles)
        if log is not None:
            before = (list(mach.regs), mach.acc.copy(), mach.counters["amem_writes"])
            pc, cyc = mach.pc, mach.counters["cycles"]
            mach.step()
            entry: dict[str, Any] = {"cycle": cyc, "pc": pc, "instr": mach.prog.texts[pc]}
            regs = {f"r{i}": v for i, (o, v) in enumerate(zip(before[0], mach.regs)) if o != v}
            if regs:
                entry["regs"] = regs
            if not np.array_equal(before[1], mach.acc):
                entry["acc"] = mach.acc.tolist()
            if mach.counters["amem_writes"] != before[2]:
                entry["stored"] = int(mach.counters["amem_writes"] - before[2])
            assert sink is not None
            sink(entry)
        else:
            mach.step()
    return mach.result(None if on_trace else log)


__all__ = ["EmulatorError", "ImageError", "Machine", "RunResult", "run", "DEFAULT_MAX_CYCLES",
           "Decoded", "cycle_limit_fault", "new_counters", "predecode"]

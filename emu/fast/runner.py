"""Step mode with loop nests replaced by batches wherever they provably match it."""

from __future__ import annotations

from typing import Any

from contract.backend import DEFAULT_MAX_CYCLES, RunResult
from contract.config import AccelConfig
from contract.image import Image

from ..machine import Machine, cycle_limit_fault
from .batch import Batch
from .nest import GiveUp, parsed
from .state import Lanes

# Dynamic instructions per batch: bounds the recorded addresses (memory) of one batch.
MAX_DYNAMIC = 1 << 24


class FastRunner:
    """Drives a machine, batching the loop nests it reaches."""

    def __init__(self, mach: Machine):
        self.mach = mach
        self.tables: dict[str, Any] = {}
        self.text_key = mach.image.text.tobytes()

    def try_loop(self, max_cycles: int) -> bool:
        """Execute the LOOP at pc (count > 0) in batches; False if step mode must do it."""
        mach = self.mach
        c = mach.config
        enclosing = mach.loops[-1][1] if mach.loops else None
        node = parsed(mach.prog, self.text_key, c.lanes, c.loop_depth, mach.pc, enclosing,
                      len(mach.loops))
        if node is None:
            return False
        remaining, first = node.count, True
        per_batch = max(1, MAX_DYNAMIC // max(1, node.dynamic))
        while remaining:
            avail = max_cycles - mach.counters["cycles"] - (1 if first else 0)
            k = min(remaining, avail // node.cycles, per_batch)
            if k <= 0:
                break
            batch = Batch(mach, self.tables)
            s = Lanes.of(mach)
            try:
                with batch.resources:
                    batch.loop(node, s, k, first)
                if not batch.memory_is_order_free():
                    raise GiveUp
            except GiveUp:
                break
            batch.commit(s)
            remaining -= k
            first = False
        if first:
            return False
        if remaining:
            # As if step mode had run the LOOP and node.count - remaining iterations.
            mach.loops.append([node.pc + 1, node.end, remaining])
            mach.pc = node.pc + 1
        else:
            mach.pc = node.end + 1
        return True


def run_fast(image: Image, config: AccelConfig | None = None, *,
             max_cycles: int = DEFAULT_MAX_CYCLES) -> RunResult:
    """Run an image to HALT with loops batched; same result and errors as step mode."""
    mach = Machine(image, config)
    runner = FastRunner(mach)
    prog = mach.prog
    while not mach.halted:
        if mach.counters["cycles"] >= max_cycles:
            raise cycle_limit_fault(mach, max_cycles)
        pc = mach.pc
        if (0 <= pc < len(prog.instrs) and prog.instrs[pc].flow == "loop"
                and prog.fields[pc]["count"] > 0 and runner.try_loop(max_cycles)):
            continue
        mach.step()
    return mach.result(None)

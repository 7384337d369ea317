"""Child process of the ``icarus`` backend: MyHDL drives the clock and reset of the converted
Verilog running in Icarus through ``myhdl.vpi`` and stops when the testbench has printed its
result.  It runs in its own process because MyHDL keeps one global co-simulation and because
the parent must be able to kill a hung ``vvp`` together with it.

Usage: ``python -m accel.sims.icarus_cosim VVP_FILE VPI_FILE MAX_CYCLES TEXT_WORDS`` in the run
directory.
"""

from __future__ import annotations

import sys
from typing import Any

from myhdl import Cosimulation, ResetSignal, Signal, Simulation, StopSimulation, instance

from accel.sims.clocking import clock, reset_pulse


def main(argv: list[str]) -> int:
    vvp, vpi, max_cycles, text_words = argv[0], argv[1], int(argv[2]), int(argv[3])
    clk = Signal(bool(0))
    rst = ResetSignal(1, active=1, isasync=False)
    tb_done = Signal(bool(0))
    cosim = Cosimulation(f"vvp -n -m {vpi} {vvp} +max_cycles={max_cycles} "
                         f"+text_words={text_words}", clk=clk, rst=rst,
                         tb_done=tb_done)

    @instance
    def control() -> Any:
        yield from reset_pulse(clk, rst)
        yield tb_done.posedge
        raise StopSimulation()

    Simulation(cosim, clock(clk), control).run(quiet=1)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

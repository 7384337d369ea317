"""The PE-array design simulated in MyHDL on a MAC stream, for the test modules that check
it (a test module never imports another)."""

from __future__ import annotations

import numpy as np
from myhdl import Simulation, StopSimulation, always, block, delay, instance

from accel import lanes, pe_array
from accel.hdl import fast_elaboration
from contract import semantics
from contract.config import AccelConfig


def simulate(c: AccelConfig, mode: str, x: np.ndarray, codes: np.ndarray,
             form: str = "resolved") -> list[int]:
    """Stream the MACs in (``lanes.products_per_cycle`` a cycle), then read every lane's
    accumulator."""
    sig = pe_array.pe_array_signals(c, mode)
    with fast_elaboration():
        dut = pe_array.pe_array(**sig, config=c, mode=mode, form=form)
    got: list[int] = []
    hold = mode == "product"  # the product stage keeps showing the last product

    @block
    def bench():
        @always(delay(5))
        def clock():
            sig["clk"].next = not sig["clk"]

        @instance
        def stimulus():
            sig["rst"].next = 1
            for _ in range(2):
                yield sig["clk"].negedge
            sig["rst"].next = 0
            sig["load"].next = 1
            for xw, ww in pe_array.cycle_words(c, mode, x, codes):
                sig["x_in"].next = xw
                sig["w_in"].next = ww
                yield sig["clk"].negedge
            if not hold:
                sig["x_in"].next = 0
                sig["w_in"].next = 0
                sig["load"].next = 0
            for _ in range(3):
                yield sig["clk"].negedge
            for lane in range(c.lanes):
                sig["sel"].next = lane
                for _ in range(lanes.readout_latency(c, mode) + 1):
                    yield sig["clk"].negedge
                got.append(semantics.wrap(int(sig["acc_out"].val), c.acc_bits))
            raise StopSimulation

        return clock, stimulus

    Simulation(dut, bench()).run(quiet=1)
    return got

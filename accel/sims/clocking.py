"""The clock and reset every MyHDL-driven testbench gives the core: a 10-unit clock, and reset
held for two falling edges (the converted testbenches do the same in HDL)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from myhdl import block, delay, instance


@block
def clock(clk: Any) -> Any:
    """A block toggling ``clk`` every 5 time units."""

    @instance
    def tick() -> Any:
        while True:
            yield delay(5)
            clk.next = not clk

    return tick


def reset_pulse(clk: Any, rst: Any) -> Generator[Any, None, None]:
    """Drive ``rst`` for two falling edges of ``clk``; ``yield from`` it in a testbench."""
    rst.next = 1
    yield clk.negedge
    yield clk.negedge
    rst.next = 0

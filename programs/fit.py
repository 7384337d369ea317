"""What a tile must fit, and the one way the planner makes it fit.

A tile's program and data must respect the ISA's field ranges (loop counts, the STORE
post-increment that steps over an output pixel) and the configuration's memory depths.  Code
generation and memory layout check them and raise :class:`DoesNotFit`; the planner then splits
the work into more, smaller groups with :func:`fit_in_groups`, down to one item per group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from contract import isa
from contract.config import AccelConfig

# ISA limits the generated code must respect.
STORE_INC_MAX = isa.STORE_INC_MAX  # from the table's field ranges
LOOP_MAX = isa.LOOP_COUNT_MAX

T = TypeVar("T")


class DoesNotFit(Exception):
    """This tiling choice does not fit; the planner tries a smaller one."""


def check_loop_counts(*counts: int) -> None:
    for n in counts:
        if not 1 <= n <= LOOP_MAX:
            raise DoesNotFit(f"a loop of {n} iterations exceeds LOOP's 16-bit count")


def check_memories(cfg: AccelConfig, text_words: int, weight_words: int, param_words: int
                   ) -> None:
    if text_words > cfg.imem_depth:
        raise DoesNotFit(f"program of {text_words} words exceeds imem_depth {cfg.imem_depth}")
    if weight_words > cfg.wmem_depth:
        raise DoesNotFit(f"{weight_words} weight words exceed wmem_depth {cfg.wmem_depth}")
    if param_words > cfg.bmem_depth:
        raise DoesNotFit(f"{param_words} parameter words exceed bmem_depth {cfg.bmem_depth}")


def pieces(cfg: AccelConfig) -> int:
    """Elements of ``act_bits`` that hold one accumulator exactly (SPILL/FILL)."""
    return -(-cfg.acc_bits // cfg.act_bits)


def plan_reduction(kh: int, kw: int, cig: int, wp: int, ow: int, sx: int, cog: int,
                   cfg: AccelConfig) -> tuple[int, int, str]:
    """Input channels per reduction chunk and output columns per tile of a dense convolution
    group, or ``(0, 0, why)`` when not even one channel of one output pixel fits.

    The whole reduction over whole rows when one block's weights fit WMEM and one output row
    with its input rows fits AMEM.  Otherwise the reduction is split into input-channel
    chunks whose partial sums are spilled exactly (``pieces`` elements an accumulator, in and
    out): as many channels as WMEM and one AMEM row allow; and when a row of even one channel
    does not fit, the row is split into column groups too, as wide as the chunk allows.
    """
    n1 = min(cfg.lanes, cog)
    if kh * kw * cig <= cfg.wmem_depth and kh * wp * cig + ow * n1 <= cfg.amem_depth:
        return cig, ow, ""
    if kh * kw > cfg.wmem_depth:
        return 0, 0, (f"one input channel of the {kh}x{kw} kernel needs {kh * kw} weight "
                      f"words, wmem_depth is {cfg.wmem_depth}")
    p = pieces(cfg)
    spills = 2 * n1 * p  # partial sums in and out, per output pixel

    def columns(cc: int) -> int:
        """Most output columns a tile of ``cc`` channels holds: whole padded rows, or ``w``
        columns reading (w-1)*sx + kw input columns."""
        if kh * wp * cc + ow * spills <= cfg.amem_depth:
            return ow
        return max(0, min(ow - 1, (cfg.amem_depth - kh * (kw - sx) * cc)
                          // (kh * sx * cc + spills)))

    # The fewest tiles (chunks x column groups); on a tie, the fewest chunks (spills).
    best = (0, 0)
    for cc in range(min(cig, cfg.wmem_depth // (kh * kw)), 0, -1):
        cols = columns(cc)
        if cols and (not best[0] or -(-cig // cc) * -(-ow // cols)
                     < -(-cig // best[0]) * -(-ow // best[1])):
            best = (cc, cols)
    if best[0]:
        return best[0], best[1], ""
    need = kh * kw + spills
    return 0, 0, (f"one output pixel of one block needs {need} AMEM elements (a {kh}x{kw} "
                  f"window of one channel, partial sums in and out of {n1}x{p}), amem_depth "
                  f"is {cfg.amem_depth}")


def balanced_groups(n: int, most: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of ``n`` items in as few groups of at most ``most`` as possible, their
    sizes as equal as possible (the last may be smaller)."""
    count = math.ceil(n / most)
    size = math.ceil(n / count)
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def fit_in_groups(n: int, most: int, build: Callable[[int, int], list[T]],
                  refuse: Callable[[str], Exception]) -> list[T]:
    """``build(start, stop)`` over balanced groups of the ``n`` items, at most ``most`` per
    group, concatenated.  While a group does not fit, the group size halves; when a group of
    one item does not fit, nothing will, and ``refuse`` turns the reason into the error."""
    per_group = most
    while True:
        try:
            return [part for start, stop in balanced_groups(n, per_group)
                    for part in build(start, stop)]
        except DoesNotFit as exc:
            if per_group == 1:
                raise refuse(str(exc)) from None
            per_group = max(1, per_group // 2)

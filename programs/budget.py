"""How much memory compiling a graph will take, checked before anything is allocated.

The compiler's calibration runs the float network over a batch of inputs and keeps every
tensor and every pre-activation (float64) to choose scales; a convolution also unfolds its
input windows into one matrix.  The graph's declared shapes fix all of it, so a model (or an
``--input-size``) that would need more than the budget is refused up front with the tensor to
blame, instead of swapping for minutes and dying at 5.8 GB as a 1x1x4000x4000 input did.
"""

from __future__ import annotations

import math

from contract.errors import AsdError

from .graph import Graph

DEFAULT_MEMORY_BUDGET = 4 << 30  # bytes; every shipped model needs a few MB
FLOAT_BYTES = 8  # the float reference computes in float64


class MemoryBudgetError(ValueError, AsdError):
    """A graph whose declared tensor sizes need more memory than the budget; names the
    largest tensor."""


def _window_elements(graph: Graph) -> int:
    """Elements of the largest unfolded window matrix one convolution group builds."""
    most = 0
    for lay in graph.layers:
        if lay.op == "conv" and lay.weight is not None:
            _, oh, ow = graph.shapes[lay.output]
            _, cig, kh, kw = lay.weight.shape
            most = max(most, oh * ow * kh * kw * cig)
    return most


def calibration_bytes(graph: Graph, batch: int) -> int:
    """Peak bytes of calibrating ``graph`` on ``batch`` inputs: every tensor, every layer's
    pre-activation and the largest unfolded window matrix, per input."""
    tensors = sum(math.prod(s) for s in graph.shapes.values())
    pre = sum(math.prod(graph.shapes[lay.output]) for lay in graph.layers)
    return FLOAT_BYTES * batch * (tensors + pre + _window_elements(graph))


def check_memory_budget(graph: Graph, batch: int, budget: int = DEFAULT_MEMORY_BUDGET
                        ) -> None:
    """Refuse ``graph`` when calibrating it on ``batch`` inputs would exceed ``budget`` bytes."""
    need = calibration_bytes(graph, batch)
    if need <= budget:
        return
    name, shape = max(graph.shapes.items(), key=lambda kv: math.prod(kv[1]))
    c, h, w = graph.input_shape
    raise MemoryBudgetError(
        f"input '{graph.input}' of {c}x{h}x{w}: expected at most {budget / 2**30:.3g} GiB to "
        f"compile ({batch} calibration inputs), found {need / 2**30:.3g} GiB needed (largest "
        f"tensor '{name}' {'x'.join(map(str, shape))}); use a smaller --input-size")

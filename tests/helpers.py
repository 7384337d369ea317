"""Assertions that several test modules share (a test module never imports another)."""

from __future__ import annotations

import numpy as np

from emu.emulator import RunResult


def assert_same(a: RunResult | str, b: RunResult | str) -> None:
    """Two emulator outcomes are equal: the same fault message, or the same final state,
    counters and named regions."""
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    assert a.counters == b.counters
    assert a.regs == b.regs
    assert a.regions == b.regions
    for name in ("amem", "acc", "weights", "products"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name

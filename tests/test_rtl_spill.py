"""SPILL and FILL, the two instructions of reduction tiling, at their edges: accumulators at
the ends of their range, an acc_bits that act_bits does not divide (the top piece is short),
fewer lanes served than the core has, and a FILL into a non-zero accumulator (the shifted-out
bits wrap).  Step mode, fast mode and the RTL (``--backend``) agree, and a spill restored
(VLD of the top piece, then FILLs) is the accumulator it saved."""

from __future__ import annotations

import numpy as np
import pytest

from contract.backend import get_backend
from contract.config import AccelConfig
from contract.image import Image
from emu import emulator
from emu.asm import assemble
from programs.fit import pieces

CONFIGS = {
    "8-of-32": AccelConfig(lanes=4, act_bits=8, acc_bits=32, imem_depth=128, wmem_depth=16,
                           bmem_depth=16, amem_depth=256),
    "5-of-17": AccelConfig(lanes=3, act_bits=5, acc_bits=17, exp_bits=1, imem_depth=128,
                           wmem_depth=16, bmem_depth=16, amem_depth=256),
}


def spill_program(cfg: AccelConfig) -> Image:
    """BMEM word 0 into A, spilled to 64.. (all lanes), restored, spilled again at 128 with one
    lane fewer, then FILL on top of what is left (wrapping), stored at 192."""
    p, n = pieces(cfg), cfg.lanes
    restore = [f"    VLD r1, {n}, {-n}"] + [f"    FILL r1, {n}, {-n}"] * (p - 1)
    src = "\n".join([
        "    SETI r3, 0", "    SETI r2, 64", "    BIAS r3, 0",
        *[f"    SPILL r2, {n}, {n}"] * p,
        f"    SETI r1, {64 + (p - 1) * n}", *restore,
        "    SETI r2, 128", *[f"    SPILL r2, {n - 1}, {n - 1}"] * (p - 1),
        "    SETI r1, 64", f"    FILL r1, {n}, 0",
        "    SETI r2, 192", f"    STORE r2, {n}, 0", "    HALT"]) + "\n"
    top = 1 << (cfg.acc_bits - 1)
    params = np.array([[top - 1, -top, -1, 12345 % top][:cfg.lanes]], np.int64)
    text = assemble(src, cfg, "<spill>").text
    return Image(cfg, text, np.zeros((0, cfg.lanes), np.int64), params, np.zeros(0, np.int64),
                 0, {"output": (64, 192 - 64 + cfg.lanes)})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_spill_restores_exactly_in_step_and_fast_mode(name: str) -> None:
    cfg = CONFIGS[name]
    img = spill_program(cfg)
    step, fast = emulator.run(img), emulator.run(img, fast=True)
    assert np.array_equal(step.amem, fast.amem) and np.array_equal(step.acc, fast.acc)
    p, n = pieces(cfg), cfg.lanes
    saved = step.amem[64: 64 + p * n].reshape(p, n)
    low = saved[:-1] & ((1 << cfg.act_bits) - 1)
    value = saved[-1] * (1 << (cfg.act_bits * (p - 1))) + sum(
        low[j] << (cfg.act_bits * j) for j in range(p - 1))
    assert value.tolist() == img.params[0].tolist()


@pytest.mark.rtl
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_spill_and_fill_on_rtl(backend: str, name: str) -> None:
    img = spill_program(CONFIGS[name])
    golden = emulator.run(img)
    got = get_backend(backend).run(img)
    assert np.array_equal(got.amem[: len(golden.amem)], golden.amem)
    assert np.array_equal(got.acc, golden.acc) and got.cycles == golden.cycles

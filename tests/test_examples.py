"""The hand-written example programs, checked against numpy and run in both modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract import hwcode
from contract.image import Image
from contract.semantics import req_fields
from emu.asm import assemble_file
from emu.emulator import RunResult, run
from programs import kernels

EXAMPLES = Path(__file__).resolve().parents[1] / "programs" / "examples"


def _run_both(img: Image) -> RunResult:
    step, fast = run(img), run(img, fast=True)
    assert step.counters == fast.counters and step.regs == fast.regs
    assert np.array_equal(step.amem, fast.amem) and np.array_equal(step.acc, fast.acc)
    return step


def _req(img: Image, word: int) -> tuple[np.ndarray, np.ndarray]:
    code, shift = req_fields(img.params[word], img.config.code_bits)
    return hwcode.to_int(code, img.config.exp_bits), shift


def _region(img: Image, name: str) -> np.ndarray:
    base, n = img.regions[name]
    return img.initial_memories()["amem"][base: base + n]


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES.glob("*.s")} >= {"dot.s", "conv3x3.s", "maxpool.s"}


def test_dot_product() -> None:
    img = assemble_file(EXAMPLES / "dot.s")
    x = _region(img, "input")
    w = hwcode.to_int(img.weights[: len(x)], img.config.exp_bits)
    mult, shift = _req(img, 0)
    want = kernels.requant_reference(x @ w, mult, shift, img.config.act_bits, relu=False)
    got = _run_both(img).region()
    assert np.array_equal(got, want)
    assert len(set(got.tolist())) == img.config.lanes  # nothing saturated alike


def test_conv3x3_with_relu_and_requantization() -> None:
    img = assemble_file(EXAMPLES / "conv3x3.s")
    lanes = img.config.lanes
    xp = _region(img, "input").reshape(6, 6, 2)
    w = hwcode.to_int(img.weights, img.config.exp_bits).reshape(3, 3, 2, lanes)
    mult, shift = _req(img, 1)
    want = kernels.conv2d_reference(xp[1:-1, 1:-1], w, img.params[0], mult, shift, pad=1,
                                    relu=True, acc_bits=img.config.acc_bits,
                                    act_bits=img.config.act_bits)
    # numpy's own float convolution agrees before requantization, as a second opinion.
    cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(0, 1))
    acc = np.einsum("hwcyx,yxcl->hwl", cols, w) + img.params[0]
    t = acc * mult
    ref2 = np.maximum(np.clip(np.floor(t / 2.0 ** shift + 0.5), -128, 127), 0)
    assert np.array_equal(want, ref2.astype(np.int64))
    got = _run_both(img).region().reshape(4, 4, lanes)
    assert np.array_equal(got, want)
    assert 0 < np.count_nonzero(got) < got.size and np.count_nonzero(got == 127) < got.size // 8


def test_maxpool() -> None:
    img = assemble_file(EXAMPLES / "maxpool.s")
    x = _region(img, "input").reshape(4, 4, 4)
    want = x.reshape(2, 2, 2, 2, 4).max(axis=(1, 3))
    assert np.array_equal(_run_both(img).region().reshape(2, 2, 4), want)


@pytest.mark.parametrize("name", ["dot.s", "conv3x3.s", "maxpool.s"])
def test_examples_assemble_with_no_errors_and_halt(name: str) -> None:
    res = _run_both(assemble_file(EXAMPLES / name))
    assert res.counters["ops"]["HALT"] == 1

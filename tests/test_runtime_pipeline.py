"""A batch on the emulator runs its emulated image on a thread beside the integer semantics
(programs.runtime._Pipeline): same outputs and figures as emulating every image, and a
divergence still stops the run naming the first layer that differs."""

from __future__ import annotations

import numpy as np
import pytest

from contract.backend import DEFAULT_LIMITS, GOLDEN, Limits, RunResult, get_backend
from contract.config import AccelConfig
from contract.image import Image
from programs import runtime, seednets
from programs.manifest import Compiled, compile_model


@pytest.fixture(scope="module")
def small() -> tuple[Compiled, np.ndarray]:
    model = seednets.build("resnet18", width=0.0625, size=32, classes=10, seed=3)
    x = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    return compile_model(model, AccelConfig(), x), x


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_pipelined_batch_equals_emulating_every_image(small: tuple[Compiled, np.ndarray]
                                                      ) -> None:
    comp, x = small
    before = _blas_threads()
    fast = runtime.run(comp, x)
    every = runtime.run(comp, x, batched=False)
    assert _blas_threads() == before
    assert np.array_equal(fast.output_int, every.output_int)
    for ll, a, b in zip(comp.layers, fast.layers, every.layers, strict=True):
        assert (a.name, a.cycles, a.mac_utilization) == (b.name, b.cycles, b.mac_utilization)
        if not ll.host:
            assert (a.emulated_images, b.emulated_images) == (1, len(x))
    assert fast.cycles_per_image == every.cycles_per_image > 0


def test_a_divergence_on_the_emulator_thread_names_the_layer(
        small: tuple[Compiled, np.ndarray]) -> None:
    comp, x = small
    emu = get_backend("emu", fast=True)
    victim = next(ll for ll in comp.layers[3:] if ll.tiles)
    target = victim.tiles[0].image.text.tobytes()

    class Broken:
        """The emulator under its own name (so the run pipelines), one tile's output off."""

        name = GOLDEN

        def run(self, image: Image, limits: Limits = DEFAULT_LIMITS) -> RunResult:
            result = emu.run(image, limits)
            if image.text.tobytes() == target:
                result.amem = result.amem.copy()
                result.amem[victim.tiles[0].out_base] += 1
            return result

    # Layers of one shape share their program text: the first such layer is where it shows.
    first = next(ll for ll in comp.layers if any(t.image.text.tobytes() == target
                                                  for t in ll.tiles))
    before = _blas_threads()
    with pytest.raises(runtime.DivergenceError, match=rf"layer {first.name} "):
        runtime.run(comp, x, Broken())  # type: ignore[arg-type]
    assert _blas_threads() == before

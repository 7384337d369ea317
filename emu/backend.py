"""The golden emulator as a :class:`contract.backend.Backend` (registered as ``emu``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from contract.backend import DEFAULT_LIMITS, Limits, RunResult
from contract.image import Image

from . import emulator
from .fast import Bands, run_fast_many


class EmulatorBackend:
    """Step mode (the definition every backend is held to) or, with ``fast``, loops run as
    array operations with the same results and counters.  ``trace`` records every
    instruction and implies step mode.  The emulator has no wall clock: ``limits.timeout`` does
    not apply, its cycle limit stops a program that never halts."""

    name = "emu"

    def __init__(self, fast: bool = False, trace: bool = False,
                 on_trace: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.fast, self.trace, self.on_trace = fast, trace, on_trace

    def run(self, image: Image, limits: Limits = DEFAULT_LIMITS) -> RunResult:
        t0 = time.monotonic()
        result = emulator.run(image, fast=self.fast, trace=self.trace,
                              max_cycles=limits.max_cycles, on_trace=self.on_trace)
        result.wall_seconds = time.monotonic() - t0
        return result

    # run_many takes a tile's input bands apart from its image (programs.runtime asks).
    places_bands = True

    def run_many(self, images: list[Image], limits: Limits = DEFAULT_LIMITS,
                 bands: list[Bands] | None = None) -> list[RunResult]:
        """``[run(im.with_bands(b)) for im, b in zip(images, bands)]`` (``bands``: none by
        default); in fast mode the images that share a program text run in lockstep, their
        bands placed in the stacked AMEM (:func:`emu.fast.run_fast_many`), each result's
        ``wall_seconds`` then being an equal share of the whole call."""
        if not self.fast or self.trace or self.on_trace is not None:
            if bands is not None:
                images = [im.with_bands(b) for im, b in zip(images, bands, strict=True)]
            return [self.run(im, limits) for im in images]
        t0 = time.monotonic()
        results = run_fast_many(images, max_cycles=limits.max_cycles, bands=bands)
        share = (time.monotonic() - t0) / max(1, len(results))
        for r in results:
            r.wall_seconds = share
        return results


__all__ = ["EmulatorBackend"]

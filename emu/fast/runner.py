"""Step mode with loop nests replaced by batches wherever they provably match it.

Several images with one program text may run together (:func:`run_fast_many`): control flow,
registers, addresses, counters and faults never depend on data, so their machines take the
same steps and the same batches, and one batch carries every image's data on a leading axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contract.backend import DEFAULT_MAX_CYCLES, RunResult
from contract.blas import one_blas_thread
from contract.config import AccelConfig
from contract.image import Image

from ..machine import cycle_limit_fault
from . import plan
from .batch import Batch
from .nest import GiveUp, parsed
from .state import I64, Bands, Lanes, Tiles

# Dynamic instructions per batch: bounds the recorded addresses (memory) of one batch.
MAX_DYNAMIC = 1 << 24
# Bytes of stacked memories (AMEM, WMEM, BMEM) one lockstep group may hold.
MAX_GROUP_BYTES = 1 << 26


class FastRunner:
    """Drives machines with one text in lockstep, batching the loop nests they reach.

    The first machine (the leader) is always current in its control state (registers, pc,
    loops, counters); the others follow it only when step mode is about to touch data, and
    at the end.  After a batch the lane registers (A, W, P) of every machine are kept
    stacked, (tiles, 1, lanes), not written back machine by machine: a layer of a thousand
    tiles would otherwise pay a thousand Python updates per batch."""

    def __init__(self, images: list[Image], config: AccelConfig | None = None,
                 bands: list[Bands] | None = None):
        self.tiles = Tiles(images, config, bands)
        self.mach = self.tiles.mach
        self.tables: dict[str, Any] = {}
        self.text_key = self.mach.image.text.tobytes()
        self.stacked: tuple[I64, I64, I64] | None = None  # lane registers, when not in machines
        self.behind = False  # the followers' control state lags the leader's

    def lanes(self) -> Lanes:
        """Every machine's state as one instance: the leader's registers, stacked lanes."""
        if self.stacked is None:
            return Lanes.of(self.tiles)
        return Lanes(np.array([self.mach.regs], np.int64), *self.stacked)

    def try_loop(self, max_cycles: int) -> bool:
        """Execute the LOOP at pc (count > 0) in batches; False if step mode must do it."""
        mach = self.mach
        c = mach.config
        enclosing = mach.loops[-1][1] if mach.loops else None
        node = parsed(mach.prog, self.text_key, c.lanes, c.loop_depth, mach.pc, enclosing,
                      len(mach.loops))
        if node is None:
            return False
        remaining, first = node.count, True
        per_batch = max(1, MAX_DYNAMIC // max(1, node.dynamic))
        while remaining:
            avail = max_cycles - mach.counters["cycles"] - (1 if first else 0)
            k = min(remaining, avail // node.cycles, per_batch)
            if k <= 0:
                break
            start = (self.text_key, c, node.pc, enclosing, len(mach.loops), tuple(mach.regs),
                     k, first, len(self.tiles))
            batch = Batch(self.tiles, self.tables, plan.start(start))
            s = self.lanes()
            try:
                with batch.resources:
                    batch.loop(node, s, k, first)
                if not batch.rec.take("order", batch.memory_is_order_free):
                    raise GiveUp
            except GiveUp:
                break
            batch.commit(s)
            plan.keep(start, batch.rec, batch.cnt)
            self.stacked = (s.acc, s.w, s.p)
            self.behind = len(self.tiles) > 1
            remaining -= k
            first = False
        if first:
            return False
        if remaining:
            # As if step mode had run the LOOP and node.count - remaining iterations.
            mach.loops.append([node.pc + 1, node.end, remaining])
            mach.pc = node.pc + 1
        else:
            mach.pc = node.end + 1
        return True

    def sync(self) -> None:
        """Bring every machine up to date: the leader's control state (registers, pc, loops,
        counters) to the followers, and the stacked lane registers to their machines."""
        mach, machs = self.mach, self.tiles.machs
        if self.behind:
            for m in machs[1:]:
                m.regs = list(mach.regs)
                m.pc, m.halted = mach.pc, mach.halted
                m.loops = [list(top) for top in mach.loops]
                m.counters = copy_counters(mach.counters)
            self.behind = False
        if self.stacked is not None:
            acc, w, p = self.stacked
            for t, m in enumerate(machs):
                m.acc, m.w, m.p = acc[t, 0].copy(), w[t, 0].copy(), p[t, 0].copy()
            self.stacked = None

    def run(self, max_cycles: int) -> list[RunResult]:
        """Every machine to HALT; the first one's fault (every machine's: they are in lockstep)."""
        mach, many = self.mach, len(self.tiles) > 1
        prog = mach.prog
        while not mach.halted:
            if mach.counters["cycles"] >= max_cycles:
                raise cycle_limit_fault(mach, max_cycles)
            pc = mach.pc
            ins = prog.instrs[pc] if 0 <= pc < len(prog.instrs) else None
            if ins is not None and not ins.pointers and not ins.lane_state:
                # Registers and control only (SETI, ADDI, NOP, LOOP, HALT): the same in every
                # machine, so the leader's step stands for all until data is touched.
                if (ins.flow == "loop" and prog.fields[pc]["count"] > 0
                        and self.try_loop(max_cycles)):
                    continue
                mach.step()
                self.behind = many
                continue
            self.sync()
            self.tiles.before_step(mach)
            for m in self.tiles.machs:
                m.step()
        if self.tiles.followers_made:
            self.sync()
            return [m.result(None) for m in self.tiles.machs]
        return self.results()

    def results(self) -> list[RunResult]:
        """Every tile's result at HALT while only the first machine exists: the others' are
        its control state and counters with their own memories and lanes."""
        mach, tiles = self.mach, self.tiles
        lanes = self.stacked
        self.stacked = None
        if lanes is not None:
            mach.acc, mach.w, mach.p = (v[0, 0].copy() for v in lanes)
        out = [mach.result(None)]
        # One copy of each stacked lane register, each result a row of it.
        t = len(tiles)
        acc, w, p = ([v[:, 0].copy() for v in lanes] if lanes is not None
                     else [np.zeros((t, mach.config.lanes), np.int64) for _ in range(3)])
        for i in range(1, t):
            out.append(RunResult("emu", mach.config, tiles.amem[i], acc[i], list(mach.regs),
                                 copy_counters(mach.counters), dict(tiles.images[i].regions),
                                 weights=w[i], products=p[i]))
        return out


def copy_counters(counters: dict[str, Any]) -> dict[str, Any]:
    """A machine's counters, its only nested dict (``ops``) copied too."""
    return dict(counters, ops=dict(counters["ops"]))


def run_fast(image: Image, config: AccelConfig | None = None, *,
             max_cycles: int = DEFAULT_MAX_CYCLES) -> RunResult:
    """Run an image to HALT with loops batched; same result and errors as step mode."""
    return FastRunner([image], config).run(max_cycles)[0]


def run_fast_many(images: list[Image], config: AccelConfig | None = None, *,
                  max_cycles: int = DEFAULT_MAX_CYCLES, bands: list[Bands] | None = None
                  ) -> list[RunResult]:
    """``[run_fast(im) for im in images]``, with the images that share a program text and
    configuration run in lockstep (a layer's tiles: one batch per loop nest for all of them
    instead of one per tile).  Raises the error the first failing image would raise alone.

    ``bands``: per image, activations laid over its own as :meth:`Image.with_bands` lays
    them, placed straight into the stacked AMEM (a layer's tiles: the host's input bands,
    never copied into an image of their own); a band that several images place (one array
    at one base) is placed once for all of them, and tells that their AMEM there is equal."""
    out: list[RunResult | None] = [None] * len(images)
    groups: dict[tuple[bytes, AccelConfig], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault((im.text.tobytes(), im.config), []).append(i)
    # A fault is data-independent, so every image of a group would raise it; run the groups
    # in the order of their first image so the first faulting image's error is the one raised.
    # BLAS on one thread for the whole run: the batches' products are small (see
    # contract.blas), and entering the limit once costs less than once a batch.
    with one_blas_thread():
        for idx in groups.values():
            c = images[idx[0]].config
            # Bytes a tile's stacked memories take: AMEM and WMEM in their narrow types, BMEM
            # up to the longest parameters (see Tiles).
            rows = max(len(images[i].params) for i in idx) + 1
            per = (c.amem_depth * np.dtype(c.act_storage).itemsize
                   + c.wmem_depth * c.lanes * max(images[i].weights.itemsize for i in idx)
                   + 8 * min(rows, c.bmem_depth) * c.lanes)
            size = max(1, MAX_GROUP_BYTES // per)
            for j in range(0, len(idx), size):
                part = idx[j: j + size]
                results = FastRunner([images[i] for i in part], config,
                                     None if bands is None else [bands[i] for i in part]
                                     ).run(max_cycles)
                for i, r in zip(part, results):
                    out[i] = r
    return [r for r in out if r is not None]

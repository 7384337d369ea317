"""Images with one program text run in lockstep (emu.fast.run_fast_many, the runtime's tiles):
each result is step mode's for that image alone, and a fault is the one the first failing image
raises alone; the runtime's tile levels never let a tile see a partial sum before it is written."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.config import AccelConfig
from contract.image import Image, ImageError, as_activations
from emu.asm import assemble
from emu.emulator import EmulatorError, RunResult, run
from emu.fast import run_fast_many
from emu.fast.batch import Batch
from emu.fast.products import same_rows
from emu.fast.state import Tiles
from programs import kernels
from programs.lower import LoweredLayer, Tile, TileInput
from programs.runtime import tile_levels
from tests.helpers import assert_same
from tests.profiles import scaled_examples
from tests.strategies import programs_and_configs


def _step(img: Image, max_cycles: int) -> RunResult | str:
    try:
        return run(img, fast=False, max_cycles=max_cycles)
    except EmulatorError as exc:
        return str(exc)


def _many(imgs: list[Image], max_cycles: int) -> list[RunResult | str]:
    try:
        return list(run_fast_many(imgs, max_cycles=max_cycles))
    except EmulatorError as exc:
        return [str(exc)]


def _variant(img: Image, rng: np.random.Generator) -> Image:
    """The same program and memory sizes with other data, and a region of its own."""
    c = img.config
    half = min(1 << (c.acc_bits - 1), 1 << 20)
    return Image(c, img.text, rng.integers(0, 1 << c.weight_bits, img.weights.shape),
                 rng.integers(-half, half, img.params.shape),
                 rng.integers(c.act_min, c.act_max + 1, img.acts.shape), img.acts_base,
                 {**img.regions, "mine": (int(rng.integers(0, c.amem_depth)), 1)})


def _expect(step: list[RunResult | str], got: list[RunResult | str]) -> None:
    faults = [s for s in step if isinstance(s, str)]
    if faults:
        assert got == [faults[0]]
        return
    assert len(got) == len(step)
    for a, b in zip(step, got):
        assert_same(a, b)


@settings(max_examples=scaled_examples(120), suppress_health_check=[HealthCheck.too_slow])
@given(programs_and_configs(wild=True), st.integers(2, 4), st.integers(0, 2**32 - 1),
       st.sampled_from([50, 400, 100_000]), st.sampled_from([50, 400, 100_000]))
def test_lockstep_images_equal_step_mode_each(case, n, seed, max_cycles, again_cycles) -> None:  # type: ignore[no-untyped-def]
    _, img = case
    rng = np.random.default_rng(seed)
    # Some images repeat another's data (the channel blocks of one row band share AMEM), or
    # only its activations array, with weights and parameters of their own: equal AMEM
    # until the first store (emu.fast.state.Tiles.placed_classes), different after it.
    imgs = [img] + [_variant(img, rng) for _ in range(n - 1)]
    imgs.append(imgs[-1] if seed % 2 else _variant(img, rng))
    if seed % 3 == 0:
        imgs.append(_variant(img, rng).with_acts_of(imgs[-1]))
    _expect([_step(im, max_cycles) for im in imgs], _many(imgs, max_cycles))
    # Again with other data: the batches that start alike replay what the first run worked
    # out from the registers alone (emu.fast.plan; under another cycle limit, some batches
    # hold fewer iterations), and each result is still step mode's.
    again = [_variant(img, rng) for _ in imgs]
    _expect([_step(im, again_cycles) for im in again], _many(again, again_cycles))


def _conv(seed: int, x: np.ndarray | None = None, co: int = 8) -> kernels.Kernel:
    rng = np.random.default_rng(seed)
    c = AccelConfig(lanes=4)
    x = rng.integers(c.act_min, c.act_max + 1, (6, 6, 5)) if x is None else x
    w = kernels.random_weights((3, 3, x.shape[-1], co), c.exp_bits, rng)
    return kernels.conv2d(x, w, rng.integers(-500, 500, co),
                          kernels.random_weights((co,), c.exp_bits, rng),
                          rng.integers(0, 12, co), pad=1, config=c)


def _all_on_the_product_path(monkeypatch, ks: list[kernels.Kernel]) -> None:  # type: ignore[no-untyped-def]
    """The kernels' images in lockstep: every fused run of loops on the matrix-product path,
    each result step mode's for its image alone and the kernel's expected output."""
    took: list[bool] = []
    group = Batch.group

    def spy(batch, g, s):  # type: ignore[no-untyped-def]
        ok = group(batch, g, s)
        took.append(ok)
        return ok

    monkeypatch.setattr(Batch, "group", spy)
    got = run_fast_many([k.image for k in ks])
    assert took and all(took)
    for k, r in zip(ks, got):
        assert_same(_step(k.image, 10**7), r)
        assert np.array_equal(r.region(), k.expected)


def test_convolution_tiles_share_windows_and_stay_exact(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Tiles of one convolution: two share their input (one product of shared windows by both
    weight blocks), one has its own; all three fused on the product path, each exact."""
    shared = np.random.default_rng(99).integers(-128, 128, (6, 6, 5))
    ks = [_conv(1, shared), _conv(2, shared), _conv(3)]
    classes: list[int] = []
    group = Batch.group

    def spy(batch, g, s):  # type: ignore[no-untyped-def]
        ok = group(batch, g, s)
        classes.append(len(same_rows(batch.amem0[:, :180])) if ok else -1)
        return ok

    monkeypatch.setattr(Batch, "group", spy)
    got = run_fast_many([k.image for k in ks])
    assert classes and all(c == 2 for c in classes)
    for k, r in zip(ks, got):
        assert_same(_step(k.image, 10**7), r)
        assert np.array_equal(r.region(), k.expected)


def test_many_tiles_keep_the_product_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Twelve tiles of one text whose windows take the bound for one tile's gather: still one
    matrix product (the windows are gathered per class of equal regions, not per tile); VGG-16's
    3x3 layers, 83 tiles to a group, fell back to instruction steps under a bound per tile."""
    import emu.fast.products as products

    shared = np.random.default_rng(7).integers(-128, 128, (6, 6, 5))
    ks = [_conv(10 + i, shared if i % 3 else None) for i in range(12)]
    # 36 windows of 45 terms: 1620 <= 8 * 1024, where 12 tiles' worth (19440) is not; the
    # weights' integers, 12 tiles x 2 blocks x 45 terms x 4 lanes = 4320, fit too.
    monkeypatch.setattr(products, "MAX_INSTANCES", 1024)
    _all_on_the_product_path(monkeypatch, ks)


@pytest.mark.parametrize("tight_rows", [0, 10**9])
def test_tiles_decoded_in_blocks_stay_exact(monkeypatch, tight_rows) -> None:  # type: ignore[no-untyped-def]
    """The weights' integers decoded one tile at a time (a class of tiles with equal windows
    spread over several blocks), under the tight bound (column sums of |w|) or the loose one
    (max|x| max|w| length: 720 terms of 8-bit data by 192 pass 2^24, so float64), exact."""
    import emu.fast.products as products

    rng = np.random.default_rng(5)
    shared = rng.integers(-128, 128, (4, 4, 80))
    ks = [_conv(20 + i, shared if i % 2 else rng.integers(-128, 128, (4, 4, 80)), co=4)
          for i in range(5)]
    monkeypatch.setattr(products, "TILE_BLOCK_BYTES", 1)
    monkeypatch.setattr(products, "TIGHT_BOUND_ROWS", tight_rows)
    _all_on_the_product_path(monkeypatch, ks)


def test_same_rows_classes() -> None:
    rows = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]])
    got = {rep: m.tolist() for rep, m in same_rows(rows)}
    assert got == {0: [0, 2], 1: [1, 4], 3: [3]}


def test_same_rows_exact_when_fingerprints_collide(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every fingerprint equal, or rows that differ only outside the sampled columns: the
    classes stay exact."""
    import emu.fast.products as products

    rows = np.random.default_rng(5).integers(-3, 3, (40, 3))
    want: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(rows.tolist()):
        want.setdefault(tuple(r), []).append(i)
    monkeypatch.setattr(products, "_fingerprints",
                        lambda region, rows, every=False: np.zeros(len(rows), np.int64))
    got = same_rows(rows)
    assert [m.tolist() for _, m in got] == sorted(want.values())
    assert [rep for rep, _ in got] == sorted(v[0] for v in want.values())
    monkeypatch.undo()
    monkeypatch.setattr(products, "FINGERPRINT_COLUMNS", 2)
    wide = np.zeros((5, 10), np.int64)
    wide[1, 3] = wide[3, 3] = 1  # the sample reads columns 0, 5 only
    wide[4, 7] = 2
    assert [m.tolist() for _, m in same_rows(wide)] == [[0, 2], [1, 3], [4]]
    # Fifty rows alike where sampled and all different: bucketed again by every column, so
    # each row is compared with another about once, not with every class found before it.
    alike = np.zeros((50, 10), np.int64)
    alike[:, 3] = np.arange(50)
    calls: list[int] = []
    equal = np.array_equal
    monkeypatch.setattr(np, "array_equal", lambda a, b: calls.append(1) or equal(a, b))
    assert [m.tolist() for _, m in same_rows(alike)] == [[i] for i in range(50)]
    assert len(calls) <= 2 * 50


def _tile(out: str, box: tuple[int, int], reads: list[tuple[str, tuple[int, int]]]) -> Tile:
    return Tile(image=None, source="", inputs=[TileInput(t, (0, 1), ch, 0) for t, ch in reads],  # type: ignore[arg-type]
                out_rows=(0, 1), out_channels=box, out_base=0, cycles=0, out_tensor=out)


@pytest.mark.parametrize("tiles, levels", [
    # Writers of disjoint partial boxes, then their readers: two levels.
    ([_tile("p", (0, 4), [("x", (0, 8))]), _tile("", (0, 4), [("x", (0, 8)), ("p", (0, 4))]),
      _tile("p", (4, 8), [("x", (0, 8))]), _tile("", (4, 8), [("x", (0, 8)), ("p", (4, 8))])],
     [[0, 2], [1, 3]]),
    # One partial box reused: the second writer waits for the first reader's level, and the
    # second reader comes after it.
    ([_tile("p", (0, 4), [("x", (0, 8))]), _tile("", (0, 4), [("p", (0, 4))]),
      _tile("p", (0, 4), [("x", (0, 8))]), _tile("", (4, 8), [("p", (0, 4))])],
     [[0], [1, 2], [3]]),
])
def test_tile_levels_respect_every_hazard(tiles, levels) -> None:  # type: ignore[no-untyped-def]
    ll = LoweredLayer.__new__(LoweredLayer)
    ll.tiles = tiles
    index = {id(t): i for i, t in enumerate(tiles)}  # tiles 0 and 2 are equal, not the same
    assert [[index[id(t)] for t in lv] for lv in tile_levels(ll)] == levels


@settings(max_examples=scaled_examples(60))
@given(st.integers(1, 5), st.integers(1, 40), st.data())
def test_stack_gathers_and_stores_equal_fancy_indexing(t, depth, data) -> None:  # type: ignore[no-untyped-def]
    """The batch's gathers from and stores to a (tiles, depth) stack (np.take and a put at
    flat indices, for speed) are numpy's fancy indexing, on contiguous stacks, strided views,
    index arrays of any shape, one ascending run, one range in another order and scattered
    distinct addresses."""
    from emu.fast.state import cols, put_cols

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    stack = rng.integers(-1000, 1000, (t, depth, 3))
    idx = np.asarray(data.draw(st.lists(st.integers(0, depth - 1), max_size=12)), np.int64)
    for s in (stack, stack[:, :, 1], stack[:, ::-1, 0]):
        assert np.array_equal(cols(s, idx), s[:, idx])
        assert np.array_equal(cols(s, idx.reshape(-1, 1)), s[:, idx.reshape(-1, 1)])
    flat = stack[:, :, 0].copy()
    lo = data.draw(st.integers(0, depth - 1))
    run = np.arange(lo, data.draw(st.integers(lo, depth)))
    shuffled = rng.permutation(run)
    scattered = rng.permutation(depth)[: data.draw(st.integers(0, depth))]
    for where in (run, shuffled, scattered):
        vals = rng.integers(-1000, 1000, (t, len(where)))
        got, want = flat.copy(), flat.copy()
        put_cols(got, where, vals)
        want[:, where] = vals
        assert np.array_equal(got, want)


def _bands(imgs: list[Image], rng: np.random.Generator) -> list[list[tuple[int, np.ndarray]]]:
    """Up to three bands an image from a pool of arrays (int8 and int64, 1-D and 3-D), some
    placed by several images at one base, some by one image, some over others."""
    c = imgs[0].config
    pool = []
    for _ in range(4):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 6)))
        arr = rng.integers(c.act_min, c.act_max + 1, shape)
        arr = arr.astype(c.act_storage) if rng.random() < 0.5 else arr
        arr = arr.reshape(-1) if rng.random() < 0.3 else arr[:, :, ::2]  # a strided view too
        pool.append((int(rng.integers(0, c.amem_depth - arr.size + 1)), arr))
    return [[pool[int(k)] for k in rng.integers(0, len(pool), int(rng.integers(0, 4)))]
            for _ in imgs]


@settings(max_examples=scaled_examples(80), suppress_health_check=[HealthCheck.too_slow])
@given(programs_and_configs(wild=True), st.integers(2, 4), st.integers(0, 2**32 - 1),
       st.sampled_from([50, 400, 100_000]))
def test_lockstep_images_with_bands_equal_step_mode_each(case, n, seed, max_cycles) -> None:  # type: ignore[no-untyped-def]
    """Bands given apart from the images (run_fast_many(bands=...), as the runtime gives a
    layer's input bands), shared by some images: each result is step mode's on that image
    with its bands laid over its activations (Image.with_bands)."""
    _, img = case
    rng = np.random.default_rng(seed)
    imgs = [img] + [_variant(img, rng) for _ in range(n - 1)]
    bands = _bands(imgs, rng)
    want = [_step(im.with_bands(b), max_cycles) for im, b in zip(imgs, bands)]
    try:
        got: list[RunResult | str] = list(run_fast_many(imgs, max_cycles=max_cycles,
                                                        bands=bands))
    except EmulatorError as exc:
        got = [str(exc)]
    _expect(want, got)


def _product_at(base: int, label: str) -> str:
    """A product of 18 activations from AMEM ``base`` (three runs of six, two apart) by the
    weights from WMEM 0, in a LOOP of its own (one batch)."""
    return (f"LOOP 1, {label}\nCLR\nSETI r0, 0\nSETI r1, {base}\n"
            + "".join(f"LOOP 6, {label}{i}\nMAC r0, 1, r1, 1\n{label}{i}: ADDI r1, r1, 2\n"
                      for i in range(3)) + f"{label}: NOP\n")


def test_tiles_placing_one_band_are_one_class_where_it_lies(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Three tiles: two place one band at 0 and bands of their own at 100, the third its own
    at both.  The product over 0.. sees tiles 0 and 1 as one class by placement; the one over
    100.. sees every tile apart (taking the first tile's activations there for all would give
    the others its sums).  Each result is step mode's."""
    c = AccelConfig(lanes=4)
    src = (_product_at(0, "a") + "SETI r2, 300\nSTORE r2, 4, 4\n" + _product_at(100, "b")
           + "SETI r2, 310\nSTORE r2, 4, 4\nHALT\n")
    text = assemble(src, c).text
    rng = np.random.default_rng(4)
    imgs = [Image(c, text, rng.integers(0, 1 << c.weight_bits, (20, 4))) for _ in range(3)]

    def band() -> np.ndarray:
        return rng.integers(c.act_min, c.act_max + 1, (2, 9)).astype(c.act_storage)

    shared = band()
    bands = [[(0, shared), (100, band())], [(0, shared), (100, band())],
             [(0, band()), (100, band())]]
    asked: list[list[list[int]] | None] = []
    placed = Tiles.placed_classes

    def spy(tiles, lo, hi):  # type: ignore[no-untyped-def]
        got = placed(tiles, lo, hi)
        asked.append(None if got is None else [m.tolist() for m in got])
        return got

    monkeypatch.setattr(Tiles, "placed_classes", spy)
    got = run_fast_many(imgs, bands=bands)
    assert asked == [[[0, 1], [2]], None]
    for img, b, r in zip(imgs, bands, got):
        assert_same(_step(img.with_bands(b), 10**7), r)


def test_tiles_sharing_weight_arrays_decode_each_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Four tiles over two weight arrays (views of one memory, as a layer's row bands hold
    their channel blocks'), two to a class of equal activations, the second class in the
    other order: each array is decoded once, and each tile's result is still step mode's
    (its own weights, not its class neighbour's nor the first class's order)."""
    from emu.fast.products import Products

    c = AccelConfig(lanes=4)
    text = assemble(_product_at(0, "a") + "SETI r2, 300\nSTORE r2, 4, 4\nHALT\n", c).text
    rng = np.random.default_rng(6)
    memory = rng.integers(0, 1 << c.weight_bits, (40, 4)).astype(np.uint8)
    first, second = memory[:20], memory[20:]
    imgs = [Image(c, text, w) for w in (first, second, second[:], first[:])]
    x, y = (rng.integers(c.act_min, c.act_max + 1, 24).astype(np.int8) for _ in range(2))
    bands = [[(0, x)], [(0, x)], [(0, y)], [(0, y)]]
    decoded: list[int] = []
    distinct = Products.distinct_weight_ints

    def spy(self, *args):  # type: ignore[no-untyped-def]
        got = distinct(self, *args)
        decoded.append(got[0].shape[1])
        return got

    monkeypatch.setattr(Products, "distinct_weight_ints", spy)
    got = run_fast_many(imgs, bands=bands)
    assert decoded == [2]
    for img, b, r in zip(imgs, bands, got):
        assert_same(_step(img.with_bands(b), 10**7), r)


def test_lockstep_groups_are_cut_by_the_bytes_their_memories_take(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A group holds as many tiles as MAX_GROUP_BYTES allows at what their stacks take: AMEM
    and WMEM in their narrow types (a byte a word here), BMEM to the longest parameters.
    Five tiles at two tiles' bytes run as three groups, each result step mode's."""
    import emu.fast.runner as runner

    c = AccelConfig(lanes=4)
    text = assemble(_product_at(0, "a") + "SETI r2, 300\nSTORE r2, 4, 4\nHALT\n", c).text
    rng = np.random.default_rng(8)
    imgs = [Image(c, text, rng.integers(0, 1 << c.weight_bits, (20, 4)).astype(np.uint8),
                  rng.integers(-9, 9, (3, 4)), rng.integers(c.act_min, c.act_max + 1, 24))
            for _ in range(5)]
    per = c.amem_depth + c.wmem_depth * c.lanes + 8 * 4 * c.lanes
    monkeypatch.setattr(runner, "MAX_GROUP_BYTES", 2 * per)
    groups: list[int] = []
    made = runner.FastRunner.__init__

    def spy(self, images, *args):  # type: ignore[no-untyped-def]
        groups.append(len(images))
        made(self, images, *args)

    monkeypatch.setattr(runner.FastRunner, "__init__", spy)
    got = run_fast_many(imgs)
    assert groups == [2, 2, 1]
    for img, r in zip(imgs, got):
        assert_same(_step(img, 10**7), r)


def test_bands_outside_amem_or_the_activation_range_are_refused() -> None:
    """A band is checked as an image's activations are, whichever way it is placed."""
    c = AccelConfig(lanes=4)
    img = Image(c, assemble("HALT\n", c).text)
    wide = np.array([[1, 2], [3, c.act_max + 1]])
    for bands, match in [([(0, wide)], "must fit 8 signed bits"),
                         ([(c.amem_depth - 1, np.zeros(2, np.int8))], "exceed amem_depth"),
                         ([(-1, np.zeros(1, np.int8))], "exceed amem_depth"),
                         ([(0, np.zeros(2))], "must be integers")]:
        with pytest.raises(ImageError, match=match):
            img.with_bands(bands)
        with pytest.raises(ImageError, match=match):
            run_fast_many([img, img], bands=[[], bands])
    assert np.array_equal(as_activations(wide - 1, c), (wide - 1).astype(np.int8))
    with pytest.raises(ImageError, match="must fit 8 signed bits"):
        as_activations(wide, c)


@pytest.mark.parametrize("store_in_a_loop", [True, False])
def test_tiles_placed_alike_differ_after_a_store(monkeypatch, store_in_a_loop) -> None:  # type: ignore[no-untyped-def]
    """Two tiles place one activations array (equal AMEM, known without a look: Tiles.
    placed_classes) but hold different weights; a store of their different sums into the
    region a later product reads makes them differ, whether a batch commits it or step mode
    runs it.  Each tile's result is still its own, step mode's."""
    c = AccelConfig(lanes=4)
    product = ("CLR\nSETI r0, 0\nSETI r1, 0\n"
               + "".join(f"LOOP 6, k{{p}}{i}\nMAC r0, 1, r1, 1\nk{{p}}{i}: ADDI r1, r1, 2\n"
                         for i in range(3)))
    store = "LOOP 1, s\nSTORE r2, 4, 4\ns: NOP\n" if store_in_a_loop else "STORE r2, 4, 4\n"
    src = ("SETI r2, 1\nLOOP 1, a\n" + product.format(p="a") + "a: NOP\n" + store
           + "LOOP 1, b\n" + product.format(p="b") + "SETI r3, 200\nSTORE r3, 4, 4\nb: NOP\n"
           + "HALT\n")
    rng = np.random.default_rng(3)
    text = assemble(src, c).text
    acts = rng.integers(-128, 128, 40)
    first = Image(c, text, rng.integers(0, 1 << c.weight_bits, (20, 4)), np.zeros((0, 4)),
                  acts, 0, {})
    second = Image(c, text, rng.integers(0, 1 << c.weight_bits, (20, 4)),
                   np.zeros((0, 4))).with_acts_of(first)
    asked: list[bool] = []
    placed = Tiles.placed_classes

    def spy(tiles, lo, hi):  # type: ignore[no-untyped-def]
        got = placed(tiles, lo, hi)
        asked.append(got is not None)
        return got

    monkeypatch.setattr(Tiles, "placed_classes", spy)
    got = run_fast_many([first, second])
    assert asked == [True, False]  # equal by placement before the store, not after
    for img, r in zip((first, second), got):
        assert_same(_step(img, 10**7), r)


def test_a_second_run_replays_the_address_work_and_stays_exact(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A layer's tiles run again with other activations and weights take back what the first
    run worked out from registers alone (every batch replays, none works addresses out), and
    every result is still step mode's and the kernel's expected output; a replay that is
    handed another site's value fails loudly instead of computing with it."""
    from emu.fast import plan

    plan.clear()
    first = [_conv(s) for s in (1, 2)]
    _all_on_the_product_path(monkeypatch, first)
    made: list[bool] = []
    start = plan.start

    def spy(key):  # type: ignore[no-untyped-def]
        rec = start(key)
        made.append(rec.replaying)
        return rec

    monkeypatch.setattr(plan, "start", spy)
    worked_out: list[int] = []
    group_plan = Batch.group_plan
    monkeypatch.setattr(Batch, "group_plan",
                        lambda b, g, r: worked_out.append(1) or group_plan(b, g, r))
    _all_on_the_product_path(monkeypatch, [_conv(s) for s in (3, 4)])
    assert made and all(made)
    assert not worked_out
    # The recorded values are read-only: a consumer writing one in place fails on the first run.
    rec = plan.start(next(iter(plan._PLANS)))
    arrays = [part for _, value in rec.values if isinstance(value, tuple)
              for part in value if isinstance(part, np.ndarray)]
    assert arrays and not any(a.flags.writeable for a in arrays)
    site, value = rec.values[0]
    other = plan.Recording([("elsewhere", value), *rec.values[1:]], rec.counters)
    with pytest.raises(AssertionError, match="address work depends on data"):
        other.take(site, lambda: None)
    plan.clear()

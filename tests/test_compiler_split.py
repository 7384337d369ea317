"""Reduction tiling: a convolution whose block of weights exceeds WMEM, or whose rows exceed
AMEM, is split into input-channel chunks that spill and restore full-width partial sums (SPILL,
FILL) and, when a row of one chunk is still too wide, into output column groups.  The result
is the integer reference's, bit for bit, in step and fast mode and after a manifest round
trip; what can never fit is refused with the field to raise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contract.backend import get_backend
from contract.config import AccelConfig
from programs import reference, runtime, workload
from programs.fit import pieces, plan_reduction
from programs.manifest import Compiled, compile_model
from tests.zoo_onnx import SPLIT_CONFIG as CONFIG
from tests.zoo_onnx import SPLIT_SPEC as SPEC
from tests.zoo_onnx import chain_model


@pytest.fixture(scope="module")
def compiled() -> tuple[Compiled, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((2, 16, 12, 12)).astype(np.float32)
    return compile_model(chain_model(SPEC), CONFIG, x), x


def test_the_plan_splits_the_reduction_and_the_rows(compiled: tuple[Compiled, np.ndarray]
                                                    ) -> None:
    comp, _ = compiled
    conv, head = [ll for ll in comp.layers if ll.op == "conv"]
    assert conv.partial_channels == 6 * pieces(CONFIG) and head.partial_channels
    assert any(t.out_cols for t in conv.tiles)
    assert all(t.out_tensor == conv.partial_name for t in conv.tiles if t.out_channels[1] > 6)


@pytest.mark.parametrize("fast", [True, False])
def test_split_layers_equal_the_integer_reference(compiled: tuple[Compiled, np.ndarray],
                                                  fast: bool) -> None:
    comp, x = compiled
    rep = runtime.run(comp, x, get_backend("emu", fast=fast), batched=False, trace=True)
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    assert rep.cycles_per_image == sum(ll.cycles for ll in comp.layers)


def test_a_written_split_network_runs_identically(compiled: tuple[Compiled, np.ndarray],
                                                  tmp_path: Path) -> None:
    comp, x = compiled
    out = comp.write(tmp_path / "out")
    again = Compiled.load(out)
    a, b = runtime.run(comp, x), runtime.run(again, x)
    # Weights stored once: the row bands and column groups of a chunk load one block.
    man = json.loads((out / "manifest.json").read_text())
    # Weights and parameters stored once: the row bands and column groups of a chunk load
    # them from the first tile's image.
    for part in ("weights", "params"):
        loads = [t[part] for e in man["layers"] for t in e["tiles"] if part in t]
        assert loads and len(set(loads)) < len(loads)
        assert all(src.startswith("tiles/") for src in loads)
    on_disk = sum(f.stat().st_size for f in (out / "tiles").glob("*.bin"))
    assert man["totals"]["image_bytes"] == on_disk
    assert man["totals"]["stored_weight_words"] < man["totals"]["weight_words"]
    assert man["totals"]["stored_param_words"] < man["totals"]["param_words"]
    # What each tile runs is the compiled image, bit for bit.
    assert [t.image.to_bytes() for ll in again.layers for t in ll.tiles] == \
        [t.image.to_bytes() for ll in comp.layers for t in ll.tiles]
    assert np.array_equal(a.output_int, b.output_int)
    assert [t.out_cols for ll in again.layers for t in ll.tiles] == \
        [t.out_cols for ll in comp.layers for t in ll.tiles]


def test_each_tile_holds_its_own_listing_assembled(compiled: tuple[Compiled, np.ndarray]
                                                   ) -> None:
    """Programs are assembled once per distinct code (layout.Programs): every tile's text and
    cycles are still those of its own listing."""
    from contract import isa
    from emu.asm import assemble

    comp, _ = compiled
    tiles = [t for ll in comp.layers for t in ll.tiles]
    assert len({t.source for t in tiles}) > len({t.image.text.tobytes() for t in tiles})
    for t in tiles:
        text = assemble(t.source, comp.config).text
        assert np.array_equal(t.image.text, text)
        assert t.cycles == isa.static_cycles(text)


def test_a_version_1_directory_still_loads(compiled: tuple[Compiled, np.ndarray],
                                          tmp_path: Path) -> None:
    """Version 1 kept shared weights in HALT images under blocks/ and every tile's parameters
    in its own image: such a directory loads to the same images."""
    from contract import isa
    from contract.image import Image

    comp, _ = compiled
    out = comp.write(tmp_path / "v1")
    man = json.loads((out / "manifest.json").read_text())
    (out / "blocks").mkdir()
    halt = np.array([isa.encode(isa.HALT.mnemonic)], np.int64)
    for e in man["layers"]:
        for t in e["tiles"]:
            img = Image.load(out / t["image"])
            if "params" in t:
                img = Image(img.config, img.text, img.weights,
                            Image.load(out / t.pop("params")).params, img.acts, img.acts_base,
                            img.regions)
                img.write(out / t["image"])
            if "weights" in t:
                block = "blocks/" + Path(t["weights"]).name
                Image(img.config, halt, Image.load(out / t["weights"]).weights).write(out / block)
                t["weights"] = block
    man["version"] = 1
    (out / "manifest.json").write_text(json.dumps(man))
    again = Compiled.load(out)
    assert [t.image.to_bytes() for ll in again.layers for t in ll.tiles] == \
        [t.image.to_bytes() for ll in comp.layers for t in ll.tiles]


@pytest.mark.parametrize("memories,want", [
    (dict(wmem_depth=8192, amem_depth=65536), (512, 14, "")),     # fits whole
    (dict(wmem_depth=4096, amem_depth=65536), (455, 14, "")),     # the default: 2 chunks
    (dict(wmem_depth=512, amem_depth=65536), (56, 14, "")),       # chunks, whole rows
    (dict(wmem_depth=512, amem_depth=512), (32, 2, "")),          # chunks and column groups
    (dict(wmem_depth=8, amem_depth=65536), (0, 0, "3x3 kernel needs 9 weight words")),
    (dict(wmem_depth=512, amem_depth=64), (0, 0, "needs 73 AMEM elements")),
])
def test_plan_reduction(memories: dict, want: tuple[int, int, str]) -> None:
    """ResNet-18's 3x3x512 convolution at 14x14 (padded width 16), 8 lanes."""
    cfg = AccelConfig(**memories)
    got = plan_reduction(3, 3, 512, 16, 14, 1, 512, cfg)
    assert got[:2] == want[:2] and want[2] in got[2]


def test_host_transfers_are_counted(compiled: tuple[Compiled, np.ndarray]) -> None:
    """Every tile's program, parameters and bands move; a chunk's weights move once for all
    its row bands and column groups (tiles run chunk by chunk); cycles at the bandwidth."""
    comp, x = compiled
    rep = runtime.run(comp, x[:1])
    conv = comp.layers[0]
    moved = workload.layer_transfers(conv, comp.config)
    assert rep.layers[0].transfer_words == moved.load_words + moved.store_words
    blocks = {t.image.weights.tobytes(): len(t.image.weights) for t in conv.tiles}
    rest = sum(len(t.image.text) + len(t.image.params) + t.out_base + len(t.image.acts)
               for t in conv.tiles)
    assert moved.load_words == sum(blocks.values()) + rest
    assert moved.store_words == sum(
        (t.out_rows[1] - t.out_rows[0]) * (t.out_cols[1] - t.out_cols[0] if t.out_cols else 6)
        * (t.out_channels[1] - t.out_channels[0]) for t in conv.tiles)
    wide = workload.layer_transfers(conv, comp.config.replace(host_words_per_cycle=4))
    assert wide.cycles == -(-(moved.load_words + moved.store_words) // 4)
    d = rep.as_dict()
    assert d["end_to_end_cycles_per_image"] == d["cycles_per_image"] + sum(
        r.transfer_cycles for r in rep.layers) > d["cycles_per_image"]

"""MAC utilization: a layer's MACs counted from its weights and output shape, set against
lanes x cycles by `asd run --json` (programs.runtime) and never above 1."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from asd_cli.main import main as asd_main
from contract.config import AccelConfig
from programs import runtime
from programs.manifest import compile_model

MODEL = Path(__file__).parent.parent / "asd" / "data" / "models" / "mnist_resnet18.onnx"


def test_macs_and_utilization_per_layer_and_network() -> None:
    comp = compile_model(MODEL, AccelConfig(), None)
    g = comp.qnet.graph
    x = np.random.default_rng(0).standard_normal((2, *g.input_shape)).astype(np.float32)
    rep = runtime.run(comp, x)
    lanes = comp.config.lanes
    by_name = {lay.name: lay for lay in g.layers}
    for r in rep.layers:
        lay = by_name[r.name]
        c, oh, ow = g.shapes[lay.output]
        if lay.op == "conv":
            assert lay.weight is not None
            want = lay.weight.size * oh * ow  # every weight once per output pixel
        elif lay.op == "add":
            want = 2 * c * oh * ow
        elif lay.op == "avgpool":
            want = c * oh * ow * lay.kernel[0] * lay.kernel[1]
        else:
            want = 0
        assert r.macs == want, r.name
        if r.cycles:
            assert 0 <= r.mac_utilization <= 1
            assert r.mac_utilization == r.macs / (lanes * r.cycles)
    d = rep.as_dict()
    macs = sum(r.macs for r in rep.layers)
    assert d["macs_per_image"] == macs > 0
    assert d["mac_utilization"] == macs / (lanes * rep.cycles_per_image)
    assert 0 < d["mac_utilization_end_to_end"] < d["mac_utilization"] <= 1


def test_layer_transfers_kept_per_configuration_and_tiles_share_their_bands() -> None:
    """Every run asks for a layer's transfers: they are derived once per configuration and
    given as a copy.  The channel blocks of one row band place the same band at the same
    address: their images share one array of activations, built once."""
    from programs import workload

    comp = compile_model(MODEL, AccelConfig(lanes=2), None)
    ll = next(ll for ll in comp.layers
              if len(ll.tiles) > 1 and ll.op == "conv" and not ll.partial_channels)
    first = workload.layer_transfers(ll, comp.config)
    first.cycles += 1  # a caller's copy
    again = workload.layer_transfers(ll, comp.config)
    assert again == workload._transfers(ll, comp.config) != first
    wide = comp.config.replace(host_words_per_cycle=4)
    assert workload.layer_transfers(ll, wide).cycles == -(-(again.load_words
                                                           + again.store_words) // 4)
    g = comp.qnet.graph
    x = np.random.default_rng(2).integers(-5, 5, (1, *g.shapes[ll.inputs[0]][1:],
                                                  g.shapes[ll.inputs[0]][0]))
    padded = {t: runtime._pad(x, ll.pads, ll.pad_value)[0] for t in ll.inputs}
    placed: dict = {}  # type: ignore[type-arg]
    imgs = [runtime.tile_amem(tile, padded, placed) for tile in ll.tiles]
    for tile, img in zip(ll.tiles, imgs):
        alone = runtime.tile_amem(tile, padded)
        assert np.array_equal(img.acts, alone.acts)
        assert not np.shares_memory(img.acts, alone.acts)
    keys = [(tuple((i.base, i.tensor, i.rows, i.cols, i.channels) for i in tile.inputs),
             tile.image.acts_base, tile.image.acts.tobytes()) for tile in ll.tiles]
    assert len(placed) == len(set(keys)) < len(ll.tiles)
    for i, j in itertools.combinations(range(len(keys)), 2):
        assert np.shares_memory(imgs[i].acts, imgs[j].acts) == (keys[i] == keys[j])


def test_asd_run_json_reports_utilization(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert asd_main(["compile", str(MODEL), "-o", str(out)]) == 0
    x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert asd_main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert 0 < d["mac_utilization"] <= 1
    assert all("mac_utilization" in layer for layer in d["layers"])

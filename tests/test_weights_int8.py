"""The weight-format table (contract.weights) and the int8 format end to end on the emulator:
configuration errors, image refusal, emulator step == fast, compiled networks bit-exact against
the integer reference.  The default ('asd') must serialize exactly as before the field."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from contract import hwcode, semantics
from contract import weights as wformats
from contract.config import AccelConfig, ConfigError
from contract.image import Image, ImageError
from emu import emulator
from emu.asm import assemble
from programs import reference, runtime
from programs.manifest import Compiled, compile_model
from tests.rtl_cases import COMPILED_NET_SPEC as SPEC
from tests.strategies import programs_and_configs, small_configs
from tests.zoo_onnx import chain_model

INT8 = AccelConfig(pe="multiplier", weights="int8")


def test_int8_table() -> None:
    f = wformats.get("int8")
    codes = np.arange(256)
    ints = f.to_int(codes, 3)
    assert ints.min() == -128 and ints.max() == 127 and len(set(ints.tolist())) == 256
    assert np.array_equal(f.encode(ints, 3), codes)
    assert f.code_bits(1) == f.code_bits(4) == 8 and f.unit(3) == 1 and f.max_abs(3) == 128
    assert f.product_bits(8, 3) == 16
    with pytest.raises(ValueError, match="128 does not fit int8"):
        f.encode([1, 128], 3)
    with pytest.raises(KeyError, match="known: asd, int8"):
        wformats.get("int4")


@pytest.mark.parametrize("exp_bits", [1, 2, 3, 4])
def test_asd_row_is_hwcode(exp_bits: int) -> None:
    f = wformats.get("asd")
    codes = np.arange(1 << hwcode.code_bits(exp_bits))
    assert f.code_bits(exp_bits) == hwcode.code_bits(exp_bits)
    assert np.array_equal(f.to_int(codes, exp_bits), hwcode.to_int(codes, exp_bits))
    assert f.unit(exp_bits) == 1 << (hwcode.window(exp_bits) - 1)
    assert f.max_abs(exp_bits) == int(np.abs(hwcode.to_int(codes, exp_bits)).max())
    x = np.arange(-8, 8)[:, None]
    assert np.array_equal(semantics.product(x, codes[None, :], "asd", exp_bits),
                          x * hwcode.to_int(codes, exp_bits)[None, :])


def test_int8_product_is_exact() -> None:
    x = np.array([-128, -1, 0, 1, 127])[:, None]
    codes = np.arange(256)[None, :]
    want = x * wformats.get("int8").to_int(codes, 3)
    assert np.array_equal(semantics.product(x, codes, "int8", 3), want)


def test_default_serializes_as_before() -> None:
    c = AccelConfig()
    d = dataclasses.asdict(c)
    # Fields added later stay out of a default configuration's files and hash.
    assert d.pop("weights") == "asd" and d.pop("host_words_per_cycle") == 1
    assert c.to_dict() == d
    for quiet in ("weights", "host_words_per_cycle"):
        assert quiet not in c.to_json() and quiet not in c.to_toml()
    d.pop("pe")
    want = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).digest()[:8]
    assert c.semantic_hash() == want
    assert AccelConfig.from_dict({"weights": "asd"}) == c


def test_int8_round_trip() -> None:
    assert json.loads(INT8.to_json())["weights"] == "int8"
    assert AccelConfig.from_dict(json.loads(INT8.to_json())) == INT8
    assert INT8.semantic_hash() != INT8.replace(weights="asd").semantic_hash()
    assert INT8.weight_bits == 8 and INT8.replace(exp_bits=4).weight_bits == 8
    assert INT8.replace(exp_bits=4).code_bits == 10  # REQ/ACT codes stay two-digit


def test_int8_with_shiftadd_names_both_fields() -> None:
    with pytest.raises(ConfigError, match="'weights' = 'int8'.*'pe' = 'shiftadd'"):
        AccelConfig(weights="int8")
    with pytest.raises(ConfigError, match="config field 'weights' = 'int4'"):
        AccelConfig(weights="int4", pe="multiplier")
    with pytest.raises(ConfigError, match="acc_bits.*int8 weights needs 16 bits"):
        AccelConfig(weights="int8", pe="multiplier", act_bits=8, acc_bits=15, exp_bits=1)


SRC = """
.wint 0 -128 127 -1 0
.amem 0 -128 127 3
        SETI r2, 0
        SETI r4, 100
        MAC r1, 1, r2, 1
        MAC r1, 0, r2, 1
        HALT
"""


def test_image_refuses_other_format() -> None:
    cfg = AccelConfig(lanes=4, pe="multiplier", weights="int8")
    img = assemble(SRC, cfg)
    assert img.weights[0].tolist() == [128, 127, 255, 0]
    back = Image.from_bytes(img.to_bytes())
    assert back.config == cfg and np.array_equal(back.weights, img.weights)
    with pytest.raises(ImageError, match="weights: image int8 vs asd"):
        img.check_config(cfg.replace(weights="asd"))
    asd_img = assemble(SRC.replace("-128 127 -1 0", "-8 7 -1 0"), cfg.replace(pe="shiftadd",
                                                                              weights="asd"))
    with pytest.raises(ImageError, match="weights: image asd vs int8"):
        asd_img.check_config(cfg)
    acc = emulator.run(img).acc.tolist()
    assert acc == [-128 * -128, -128 * 127, -128 * -1, 0]  # word 1 is zeros


@settings(max_examples=40)
@given(programs_and_configs())
def test_fast_equals_step_both_formats(ci: tuple[AccelConfig, Image]) -> None:
    config, image = ci
    try:
        step = emulator.run(image, max_cycles=50_000)
    except emulator.EmulatorError:
        return
    fast = emulator.run(image, fast=True, max_cycles=50_000)
    assert np.array_equal(step.amem, fast.amem) and step.cycles == fast.cycles
    assert step.acc.tolist() == fast.acc.tolist()


@given(small_configs())
def test_strategy_draws_consistent_configs(c: AccelConfig) -> None:
    assert c.pe in c.weight_format.pe_kinds


def test_small_network_int8_bit_exact() -> None:
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    cfg = AccelConfig(lanes=4, amem_depth=256, wmem_depth=64, bmem_depth=16, imem_depth=128,
                      pe="multiplier", weights="int8")
    comp = compile_model(chain_model(SPEC), cfg, x)
    assert comp.qnet.scheme == "int"
    conv = next(q for q in comp.qnet.qlayers.values() if q.w_int is not None)
    assert conv.w_int is not None and 63 < np.abs(conv.w_int).max() <= 127  # 8 bits in use
    rep = runtime.run(comp, x, batched=False, trace=True)
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name


def test_cli_compiles_shipped_model_int8(tmp_path: Path) -> None:
    # `asd compile --config int8.toml` on a shipped model; `asd run --trace` is bit-exact.
    from asd_cli.main import main

    model = Path(__file__).resolve().parent.parent / "asd" / "data" / "models" / "digits_cnn.onnx"
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.random((4, 1, 8, 8)).astype(np.float32))
    np.save(tmp_path / "x.npy", rng.random((2, 1, 8, 8)).astype(np.float32))
    (tmp_path / "int8.toml").write_text('[accelerator]\npe = "multiplier"\nweights = "int8"\n')
    assert main(["compile", str(model), "--config", str(tmp_path / "int8.toml"), "-o",
                 str(tmp_path / "out"), "--calib", str(tmp_path / "calib.npy")]) == 0
    comp = Compiled.load(tmp_path / "out")
    assert comp.qnet.config.weights == "int8"
    x = np.load(tmp_path / "x.npy")
    rep = runtime.run(comp, x, emulate="all", trace=True)
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name


def test_hand_kernel_int8_weights() -> None:
    from programs import kernels

    c = AccelConfig(lanes=4, pe="multiplier", weights="int8")
    rng = np.random.default_rng(0)
    x, w = rng.integers(-128, 128, (5, 5, 3)), rng.integers(-128, 128, (3, 3, 3, 6))
    k = kernels.conv2d(x, w, rng.integers(-500, 500, 6), np.full(6, 3), np.full(6, 10), pad=1,
                       config=c)
    for fast in (False, True):
        assert np.array_equal(emulator.run(k.image, fast=fast).region("output"), k.expected)

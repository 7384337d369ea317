"""Scale formats: stored fields decode to the scales the codes were computed with, every stored
bit is counted, old archives still load, float16 biases, and the size goal on MobileNets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asd import packing, scale_formats
from asd.quantize_model import load_codes, load_scales, store_bias
from asd.schemes import get_scheme
from asd_cli.main import main
from contract.errors import AsdError

VARIABLE_WIDTH = {"fp16-pack", "shared-exp", "pow2"}  # their field width is a counted byte


def _weights(seed=0, shape=(40, 3, 3, 3)):
    rng = np.random.default_rng(seed)
    spread = np.exp2(rng.uniform(-6, 3, (shape[0],) + (1,) * (len(shape) - 1)))
    return (rng.laplace(size=shape) * spread).astype(np.float32)


@pytest.mark.parametrize("fmt", list(scale_formats.FORMATS))
def test_stored_fields_are_counted_and_decode(fmt):
    w = _weights()
    res = get_scheme("asd2").quantize(w, scale_format=fmt)
    st = res.stored_scales
    assert st is not None and st.fmt == fmt
    stored = sum(8 * a.nbytes for a in st.arrays.values()) + (8 if fmt in VARIABLE_WIDTH else 0)
    assert res.size.scales_bits == st.bits == stored
    # the codes decode, at the decoded scales, to the dequantized weights
    assert np.array_equal(res.scale.astype(np.float16).astype(np.float32), res.scale)
    v = get_scheme("asd2").decode(res.codes)
    assert np.array_equal((v * res.scale_broadcast()).astype(np.float32), res.dequant)


def test_fp16_pack_is_fp16_in_fewer_bits():
    w = _weights(1, (64, 8, 3, 3))
    a = get_scheme("asd2").quantize(w, scale_format="fp16")
    b = get_scheme("asd2").quantize(w, scale_format="fp16-pack")
    assert np.array_equal(a.dequant, b.dequant) and np.array_equal(a.scale, b.scale)
    assert b.size.scales_bits < a.size.scales_bits == 16 * 64
    s = scale_formats.fp16(np.exp2(np.random.default_rng(0).uniform(-24, 15, 500)))
    st = scale_formats.get("fp16-pack").encode(s)
    codes = packing.unpack(st.arrays[".scale_codes"], st.width, s.size)
    assert np.array_equal(scale_formats.Fp16Pack.decode(int(st.arrays[".scale_exp"][0]), codes), s)


@pytest.mark.parametrize("fmt", ["log8", "shared-exp", "pow2"])
def test_narrow_formats_hold_their_grid(fmt):
    res = get_scheme("int8").quantize(_weights(2), scale_format=fmt)
    s = res.scale.astype(np.float64)
    if fmt == "log8":
        i = np.log2(s.max() / s) * scale_formats.LOG_STEPS
        assert np.allclose(i, np.rint(i), atol=0.05) and i.max() <= 255
    else:
        k = np.log2(s.max() / s)
        assert np.allclose(k, np.rint(k), atol=1e-3)
        if fmt == "pow2":
            assert np.allclose(np.log2(s), np.rint(np.log2(s)), atol=1e-3)


@pytest.mark.parametrize("fmt", list(scale_formats.FORMATS))
def test_archive_round_trip(tmp_path, fmt):
    np.savez(tmp_path / "m.npz", conv=_weights(3), fc=_weights(4, (10, 30)),
             bias=np.linspace(-2, 2, 40).astype(np.float32))
    out = tmp_path / "q.npz"
    assert main(["quantize", str(tmp_path / "m.npz"), "-o", str(out), "-q",
                 "--scale-format", fmt]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["format_version"] == 2 and meta["scale_format"] == fmt
    with np.load(out) as z:
        for name, t in meta["tensors"].items():
            s = load_scales(z, meta, name)
            assert np.array_equal(s, z[name + ".scale"].astype(np.float32))
            v = get_scheme("asd").decode(load_codes(z, meta, name))
            s_b = s.reshape((-1,) + (1,) * (v.ndim - 1))  # channels on axis 0 in .npz
            assert np.array_equal((v * s_b).astype(np.float32), z[name])
            counted = t["size"]["scales_bits"]
            fields = [k for k in z.files if k.startswith(name + ".scale_") or
                      (fmt == "fp16" and k == name + ".scale")]
            assert counted == sum(8 * z[k].nbytes for k in fields) + (
                8 if fmt in VARIABLE_WIDTH else 0)
        assert z["bias"].dtype == np.float16


def test_old_archives_load_and_unknown_versions_are_refused():
    s = np.float16([0.5, 0.25])
    meta = {"format_version": 1, "tensors": {"w": {"shape": [2, 3], "code_bits": 8,
                                                   "scale_count": 2}}}
    z = {"w.scale": s, "w.codes": np.zeros(6, np.uint8)}
    assert np.array_equal(load_scales(z, meta, "w"), s.astype(np.float32))
    assert load_codes(z, meta, "w").shape == (2, 3)
    meta["format_version"] = 7
    with pytest.raises(AsdError, match="format_version 7"):
        load_scales(z, meta, "w")


def test_bias_storage():
    b = np.float32([1.5, -3e-3, 0.0, 1e4])
    assert store_bias(b, "fp16").dtype == np.float16
    assert store_bias(b, "fp32").dtype == np.float32
    assert store_bias(np.float32([1e5]), "fp16").dtype == np.float32  # overflows float16
    assert store_bias(np.float32([1e-9]), "fp16").dtype == np.float32  # flushes to zero
    with pytest.raises(ValueError):
        store_bias(b, "int8")


def test_mobilenets_keep_the_size_cut(tmp_path):
    # The goal on the depthwise-heavy nets at 224 (random weights: size does not
    # depend on them), with the default formats and every stored bit counted.
    onnx = pytest.importorskip("onnx")
    from programs import seednets

    for name in seednets.MOBILENETS:
        path = tmp_path / f"{name}.onnx"
        onnx.save(seednets.build(name), str(path))
        out = tmp_path / f"{name}.npz"
        assert main(["quantize", str(path), "-o", str(out), "-q", "--rounding", "nearest"]) == 0
        assert json.loads(out.with_suffix(".json").read_text())["reduction"] >= 0.73

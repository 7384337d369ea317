"""`asd quantize`: the table, the stored codes decode to the stored floats, clean failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asd.quantize_model import load_codes
from asd.rounding import SCALE_RATIOS
from asd.schemes import get_scheme
from asd_cli.main import main


def _model(path, seed=0, **extra):
    rng = np.random.default_rng(seed)
    arrays = {
        "conv.weight": rng.laplace(0, 0.1, (8, 4, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(8).astype(np.float32),
        "fc.weight": rng.standard_normal((5, 72)).astype(np.float32),
        "steps": np.arange(3),
    }
    arrays.update(extra)
    np.savez(path, **arrays)
    return arrays


def _check_decodes(out, scheme_name, options):
    meta = json.loads(out.with_suffix(".json").read_text())
    sch = get_scheme(scheme_name, **options)
    with np.load(out) as z:
        for name, t in meta["tensors"].items():
            codes = load_codes(z, meta, name)
            scale = z[name + ".scale"]
            shape = [1] * len(t["shape"])
            if meta["granularity"] == "channel":
                shape[t["channel_axis"]] = -1
            v = sch.decode(codes)
            assert z[name].dtype == np.float32 and scale.dtype == np.float16
            assert np.array_equal((v * scale.reshape(shape)).astype(np.float32), z[name])
            assert z[name + ".codes"].dtype == np.uint8
        assert z["conv.bias"].dtype == np.float16 and "steps" in z.files  # --bias-format fp16
    return meta


@pytest.mark.parametrize(
    "argv, name, options",
    [
        ([], "asd", {"digits": 2, "exp_bits": 3, "conversion": "nearest"}),
        (["--conversion", "csd", "--scale", "max"], "asd",
         {"digits": 2, "exp_bits": 3, "conversion": "csd"}),
        (["--digits", "3", "--granularity", "tensor"], "asd",
         {"digits": 3, "exp_bits": 3, "conversion": "nearest"}),
        (["--scheme", "pot", "--scale", "pow2"], "pot", {"exp_bits": 3}),
        (["--scheme", "int", "--bits", "4"], "int", {"bits": 4}),
        (["--scheme", "fp", "--fp-format", "e5m2", "--scale", "max"], "fp", {"format": "e5m2"}),
        (["--scheme", "shiftcnn", "--terms", "2"], "shiftcnn", {"terms": 2, "exp_bits": 3}),
    ],
)
def test_quantize_random_npz_decodes(tmp_path, capsys, argv, name, options):
    src = tmp_path / "m.npz"
    arrays = _model(src)
    out = tmp_path / "q.npz"
    assert main(["quantize", str(src), "-o", str(out), *argv]) == 0
    text = capsys.readouterr().out
    assert "conv.weight" in text and "SQNR" in text and "smaller" in text
    meta = _check_decodes(out, name, options)
    assert meta["scheme"] == {"scheme": name, **options}
    n = arrays["conv.weight"].size + arrays["fc.weight"].size
    code_bits = meta["tensors"]["fc.weight"]["code_bits"]
    assert meta["float32_bits"] == 32 * (n + 8) + 8 * arrays["steps"].nbytes
    assert meta["total_bits"] > n * code_bits  # scales and biases are counted too


def test_default_is_8_bit_hardware_code_with_table(tmp_path, capsys):
    src = tmp_path / "m.npz"
    _model(src)
    out = tmp_path / "q.npz"
    assert main(["quantize", str(src), "-o", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["tensors"]["conv.weight"]["code_bits"] == 8
    assert meta["granularity"] == "channel" and meta["scale_method"] == "mse"
    assert 0.70 < meta["reduction"] < 0.76
    table = capsys.readouterr().out.splitlines()
    row = next(line for line in table if line.startswith("conv.weight"))
    assert "8x4x3x3" in row


def _assert_fails(tmp_path, capsys, argv, needle):
    out = tmp_path / "q.npz"
    with pytest.raises(SystemExit) if argv and argv[0] == "argparse" else _nullctx():
        code = main(["quantize", *[a for a in argv if a != "argparse"], "-o", str(out)])
        assert code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) >= 1
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_missing_file(tmp_path, capsys):
    _assert_fails(tmp_path, capsys, [str(tmp_path / "nope.npz")], "nope.npz: no such file")


def test_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    _assert_fails(tmp_path, capsys, [str(bad)], "bad.npz: not a readable .npz")


def test_corrupt_onnx(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe garbage")
    _assert_fails(tmp_path, capsys, [str(bad)], "bad.onnx: not a readable ONNX model")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_tensor(tmp_path, capsys, value):
    src = tmp_path / "m.npz"
    w = np.ones((3, 3), np.float32)
    w[1, 2] = value
    _model(src, **{"bad.weight": w})
    _assert_fails(tmp_path, capsys, [str(src)], "'bad.weight' holds NaN or Inf")


def test_empty_tensor(tmp_path, capsys):
    src = tmp_path / "m.npz"
    _model(src, **{"empty.weight": np.zeros((0, 3), np.float32)})
    _assert_fails(tmp_path, capsys, [str(src)], "'empty.weight' is empty")


def test_unknown_scheme_and_bad_options(tmp_path, capsys):
    src = tmp_path / "m.npz"
    _model(src)
    _assert_fails(tmp_path, capsys, ["argparse", str(src), "--scheme", "bogus"], "invalid choice")
    _assert_fails(tmp_path, capsys, [str(src), "--scheme", "int", "--bits", "1"], "int bits")
    _assert_fails(tmp_path, capsys, [str(src), "--scheme", "fp", "--fp-format", "x9"],
                  "unknown float format")


def test_onnx_model_weights_biases_and_axes(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    conv_w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    conv_b = rng.standard_normal(4).astype(np.float32)
    gemm_w = rng.standard_normal((36, 5)).astype(np.float32)  # transB=0: channels on axis 1
    shape = np.array([1, 36], dtype=np.int64)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "cw", "cb"], ["y"]),
            helper.make_node("Reshape", ["y", "shape"], ["f"]),
            helper.make_node("Gemm", ["f", "gw"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(conv_w, "cw"), numpy_helper.from_array(conv_b, "cb"),
         numpy_helper.from_array(gemm_w, "gw"), numpy_helper.from_array(shape, "shape")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    out = tmp_path / "q.npz"
    assert main(["quantize", str(path), "-o", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert set(meta["tensors"]) == {"cw", "gw"}
    assert meta["tensors"]["gw"]["channel_axis"] == 1
    assert meta["tensors"]["gw"]["scale_count"] == 5
    assert set(meta["biases"]) == {"cb"} and set(meta["others"]) == {"shape"}
    with np.load(out) as z:
        sch = get_scheme("asd")
        v = sch.decode(load_codes(z, meta, "gw"))
        assert np.array_equal((v * z["gw.scale"][None, :]).astype(np.float32), z["gw"])


def test_rounding_gptq_on_a_shipped_model(tmp_path, capsys):
    out = tmp_path / "d.npz"
    model = "asd/data/models/digits_cnn.onnx"
    assert main(["quantize", model, "-o", str(out), "--rounding", "gptq", "--calib", "32"]) == 0
    text = capsys.readouterr().out
    assert "gptq rounding" in text and "calibrated on 32 images" in text
    assert "rank-deficient" in text  # 32 images, wider inputs: damped, and said
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["rounding"] == "gptq" and meta["notes"]
    near = tmp_path / "n.npz"
    assert main(["quantize", model, "-o", str(near), "-q", "--rounding", "nearest"]) == 0
    with np.load(out) as a, np.load(near) as b:
        # each channel's scale: the searched one or one of GPTQ's other candidates (a ratio
        # of it, in float16); different codes
        w = [k for k in a.files if k.endswith(".scale")]
        ratios = np.array(SCALE_RATIOS)
        for k in w:
            r = a[k].astype(np.float64) / b[k].astype(np.float64)
            assert np.all(np.min(np.abs(r[..., None] - ratios), axis=-1) < 2e-3), k
        assert any(not np.array_equal(a[k[:-6] + ".codes"], b[k[:-6] + ".codes"]) for k in w)


def test_default_rounding_follows_the_calibration_data(tmp_path, capsys):
    # A shipped model names its data set: gptq+bias (the best measured); an ONNX file without
    # one falls back to nearest and says so.
    out = tmp_path / "d.npz"
    model = "asd/data/models/digits_cnn.onnx"
    assert main(["quantize", model, "-o", str(out), "--calib", "16", "-q"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["rounding"] == "gptq+bias"
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(open(model, "rb").read())
    assert main(["quantize", str(bare), "-o", str(out)]) == 0
    assert "rounding: nearest (no calibration data known" in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["rounding"] == "nearest"

"""Retrain-less evaluation: metrics, the fp8 feature-map rewrite, size accounting, the CLI."""

import json

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from asd import evaluate
from asd_cli.main import main


def tiny_model(path, seed=0):
    """input 1x4x4 -> Conv 3x3 (2 ch) -> Relu -> Flatten -> Gemm (3 classes)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    b = rng.normal(size=2).astype(np.float32)
    g = rng.normal(size=(3, 8)).astype(np.float32)
    gb = rng.normal(size=3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "gb"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (g, "g"), (gb, "gb"))])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return w, b, g, gb


def numpy_forward(x, w, b, g, gb, q=lambda a: a):
    x = q(x)
    n = x.shape[0]
    out = np.zeros((n, 2, 2, 2), np.float32)
    for i in range(2):
        for j in range(2):
            patch = x[:, :, i:i + 3, j:j + 3].reshape(n, -1)
            out[:, :, i, j] = patch @ w.reshape(2, -1).T + b
    out = q(out)
    r = q(np.maximum(out, 0))
    f = q(r.reshape(n, -1))
    return q(f @ g.T + gb)


def test_topk_accuracy():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 0])
    assert evaluate.topk_accuracy(logits, labels, 1) == pytest.approx(100 / 3)
    assert evaluate.topk_accuracy(logits, labels, 2) == pytest.approx(200 / 3)
    assert evaluate.topk_accuracy(logits, labels, 3) == 100.0


def test_fp8_mode_quantizes_every_feature_map(tmp_path):
    path = tmp_path / "tiny.onnx"
    w, b, g, gb = tiny_model(path)
    proto = onnx.load(path)
    x = (np.random.default_rng(1).normal(size=(16, 1, 4, 4)) * 3).astype(np.float32)
    for scheme, dt in (("fp8-e4m3", ml_dtypes.float8_e4m3fn), ("fp8-e5m2", ml_dtypes.float8_e5m2)):
        def q(a, dt=dt):
            lim = float(ml_dtypes.finfo(dt).max)
            return np.clip(a, -lim, lim).astype(dt).astype(np.float32)

        rewritten = evaluate._with_fp8_feature_maps(proto, evaluate.FP8_TYPES[scheme])
        got = evaluate.Runner(rewritten)(x)
        want = numpy_forward(x, w, b, g, gb, q)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        plain = evaluate.Runner(proto)(x)
        assert not np.allclose(plain, got)  # the rewrite really changed the values


def test_evaluate_accounts_every_bit(tmp_path):
    path = tmp_path / "tiny.onnx"
    w, b, g, gb = tiny_model(path)
    x = np.random.default_rng(2).normal(size=(32, 1, 4, 4)).astype(np.float32)
    y = np.argmax(numpy_forward(x, w, b, g, gb), axis=1)
    # float16 scales and float32 biases (the default formats' bits: tests/test_scale_formats.py)
    res = {r.scheme: r for r in evaluate.evaluate(path, x, y, ["asd2", "int4", "fp8-e4m3"],
                                                  scale_format="fp16", bias_format="fp32")}
    assert res["float"].top1 == 100.0 and res["float"].top5 is None  # 3 classes: no top-5
    n_w, n_b = w.size + g.size, b.size + gb.size
    # asd2: 8-bit codes, one float16 scale per output channel (2 + 3), float32 biases
    assert res["asd2"].size_bytes == (8 * n_w + 16 * 5 + 32 * n_b) / 8
    assert res["int4"].size_bytes == ((4 * 18 + 7) // 8 * 8 + (4 * 24 + 7) // 8 * 8
                                      + 16 * 5 + 32 * n_b) / 8
    assert res["fp8-e4m3"].size_bytes == (8 * n_w + 16 * 5 + 8 * n_b) / 8
    for r in res.values():
        assert r.drop_vs_float == pytest.approx(res["float"].top1 - r.top1)
        assert r.size_reduction == pytest.approx(1 - r.size_bytes / res["float"].size_bytes)


def test_eval_command_json(capsys):
    assert main(["eval", "digits_cnn", "--schemes", "float,asd2,pot,int8", "--limit", "120",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 120
    for s in ("float", "asd2", "pot", "int8"):
        r = out["schemes"][s]
        assert set(r) >= {"top1", "top5", "bits_per_weight", "size_reduction", "drop_vs_float"}
    assert out["schemes"]["asd2"]["size_reduction"] > 0.73
    assert out["schemes"]["pot"]["bits_per_weight"] < out["schemes"]["asd2"]["bits_per_weight"]


def test_eval_report_charts_every_layer_per_scheme(capsys, tmp_path):
    rep = tmp_path / "rep"
    assert main(["eval", "digits_cnn", "--schemes", "float,asd2,int6", "--rounding",
                 "nearest,bias", "--limit", "60", "--calib", "32", "--json",
                 "--report", str(rep)]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((rep / "summary.json").read_text())
    charted = summary["layer_sqnr_db"]
    assert set(charted) == {"asd2", "asd2/bias", "int6", "int6/bias"}
    assert charted["asd2/bias"] == out["schemes"]["asd2/bias"]["layer_sqnr_db"]
    assert len(charted["asd2"]) >= 3 and "logits" in charted["asd2"]
    page = (rep / "index.html").read_text()
    assert "Fidelity against the float model" in page and "int6/bias" in page
    assert f"{out['schemes']['asd2']['sqnr_db']:.2f}" in page
    assert (rep / "layer_sqnr.png").stat().st_size > 5000


def test_eval_command_errors(capsys, tmp_path):
    assert main(["eval", "no_such_model"]) == 2
    assert "shipped models" in capsys.readouterr().err
    assert main(["eval", "digits_cnn", "--schemes", "asd7x"]) == 2
    assert "unknown scheme" in capsys.readouterr().err


def test_fidelity_measures():
    from asd import fidelity

    ref = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    assert fidelity.sqnr_db(ref, ref) == float("inf")
    noisy = ref + 0.1
    want = 10 * np.log10(np.sum(ref**2) / (6 * 0.01))
    assert fidelity.sqnr_db(ref, noisy) == pytest.approx(want)
    assert fidelity.softmax_kl(ref, noisy) == pytest.approx(0.0, abs=1e-12)  # shift-invariant
    assert fidelity.softmax_kl(ref, ref[:, ::-1]) > 0.1
    assert fidelity.agreement(ref, np.array([[0.0, 3.0, 0.0], [0.0, 1.0, 0.0]])) == 50.0


def test_agreement_difference_is_an_exact_mcnemar_test():
    from asd import fidelity

    ref = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3, 0, 1]]
    a, b = ref.copy(), ref.copy()
    a[[0, 1], :] = np.eye(4)[[3, 3]]  # a misses images 0 and 1
    b[2, :] = np.eye(4)[0]            # b misses image 2
    b[1, :] = np.eye(4)[0]            # and image 1, with a: concordant, not counted
    only_a, only_b, p = fidelity.agreement_difference(ref, a, b)
    assert (only_a, only_b) == (1, 1) and p == 1.0
    # 0 against 2 discordant images: p = 2 * 1/4; 0 against 10: 2 / 1024
    assert fidelity.agreement_difference(ref, a, ref) == (0, 2, 0.5)
    worse = ref.copy()
    worse[:, :] = np.roll(ref, 1, axis=1)
    assert fidelity.agreement_difference(ref, worse, ref) == (0, 10, 2 / 1024)
    assert fidelity.agreement_difference(ref, ref, ref) == (0, 0, 1.0)


def test_eval_reports_fidelity_per_rounding(tmp_path):
    path = tmp_path / "tiny.onnx"
    w, b, g, gb = tiny_model(path)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 1, 4, 4)).astype(np.float32)
    y = np.argmax(numpy_forward(x, w, b, g, gb), axis=1)
    res = evaluate.evaluate(path, x, y, ["pot"], roundings=["nearest", "gptq"],
                            calib_x=rng.normal(size=(64, 1, 4, 4)).astype(np.float32))
    by = {(r.scheme, r.rounding): r for r in res}
    near, gq = by[("pot", "nearest")], by[("pot", "gptq")]
    # one-digit powers of two are coarse: the output differs, measurably, per layer too
    assert near.sqnr_db is not None and 0 < near.sqnr_db < 40
    assert set(near.layer_sqnr_db) == {"c", "logits"}
    assert near.layer_sqnr_db["logits"] == pytest.approx(near.sqnr_db)
    assert near.kl > 0 and 0 <= near.agreement <= 100
    assert gq.sqnr_db is not None and gq.sqnr_db != near.sqnr_db
    with pytest.raises(evaluate.modelio.ModelError, match="calibration"):
        evaluate.evaluate(path, x, y, ["pot"], roundings=["gptq"])

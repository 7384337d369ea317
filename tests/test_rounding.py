"""Error-compensating rounding: GPTQ-style second-order rounding and bias correction."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from asd import modelio, rounding
from asd.quantize_model import quantize_model
from asd.schemes import get_scheme
from asd_cli.main import main


def _layer(seed, rows=16, cols=48, n=400):
    rng = np.random.default_rng(seed)
    # Correlated inputs (what makes compensation pay): a random mixing of a few factors.
    x = rng.normal(size=(n, 8)) @ rng.normal(size=(8, cols)) + 0.3 * rng.normal(size=(n, cols))
    w = rng.laplace(size=(rows, cols)) * 0.1
    return x, w


def _gptq_matrix(scheme, w, h):
    s = scheme._scales(w.astype(np.float64), "mse")
    u = rounding.inverse_factor(h)

    def rc(c, c0, c1):
        return scheme._values(c, s) * s[:, None].astype(np.float64)

    target, _ = rounding.gptq(w, u, rc)
    return scheme.quantize(target, "channel", "mse", 0, fixed_scale=s).dequant.astype(np.float64), \
        scheme.quantize(w, "channel", "mse", 0, fixed_scale=s).dequant.astype(np.float64)


@pytest.mark.parametrize("name", ["asd2", "int6", "pot"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gptq_lowers_the_layer_output_error(name, seed):
    x, w = _layer(seed)
    q, near = _gptq_matrix(get_scheme(name), w, x.T @ x)
    err_gptq = np.sum((x @ (q - w).T) ** 2)
    err_near = np.sum((x @ (near - w).T) ** 2)
    assert err_gptq < 0.8 * err_near
    # every value is still on the codebook at the fixed scales (re-rounding changes nothing)
    sch = get_scheme(name)
    s = sch._scales(w.astype(np.float64), "mse")
    again = sch.quantize(q, "channel", "mse", 0, fixed_scale=s).dequant
    assert np.allclose(again, q, rtol=0, atol=1e-6)


def test_gptq_accounts_each_rows_output_error():
    """The per-row loss gptq returns is the rounded rows' output error under the damped H."""
    x, w = _layer(4)
    h = x.T @ x
    sch = get_scheme("asd2")
    s = sch._scales(w.astype(np.float64), "mse")

    def rc(c, c0, c1):
        return sch._values(c, s) * s[:, None].astype(np.float64)

    target, loss = rounding.gptq(w, rounding.inverse_factor(h), rc)
    e = sch._values(target, s) * s[:, None].astype(np.float64) - w
    hd = h + rounding.DAMP * np.mean(np.diag(h)) * np.eye(len(h))
    assert np.allclose(loss, np.einsum("ij,jk,ik->i", e, hd, e), rtol=1e-8)


def test_gptq_with_uncorrelated_inputs_is_nearest():
    # A diagonal Hessian couples no columns: nothing to compensate.
    _, w = _layer(3)
    h = np.diag(np.linspace(1, 4, w.shape[1]))
    q, near = _gptq_matrix(get_scheme("asd2"), w, h)
    assert np.array_equal(q, near)


@pytest.mark.parametrize("name", ["asd2", "int6"])
@pytest.mark.parametrize("seed", [0, 1])
def test_gptq_keeps_per_row_the_scale_with_the_least_output_error(name, seed):
    """gptq_layer at several scales per row: each row's result is the GPTQ result at the
    scale it reports (as if that scale alone had been given), and its output error is the
    least of the candidates', so never above the searched scale's alone."""
    x, w = _layer(seed)
    sch = get_scheme(name)
    st = rounding.LayerStats("Gemm", 1, (x.T @ x)[None], x.mean(0)[None], len(x))
    s = sch._scales(w.astype(np.float64), "mse").astype(np.float64)
    cands = [s] + [s * r for r in rounding.SCALE_RATIOS[1:]]

    def round_at(c, sr):
        return sch._values(c, sr.astype(np.float32)) * sr.astype(np.float32)[:, None]

    hd = x.T @ x + rounding.DAMP * np.mean(np.sum(x * x, axis=0)) * np.eye(w.shape[1])

    def out_err(target, sr):  # under the damped H, the account gptq keeps
        e = round_at(target, sr) - w
        return np.einsum("ij,jk,ik->i", e, hd, e)

    target, choice = rounding.gptq_layer(w, st, round_at, cands)
    chosen = np.choose(choice, cands)
    errs = np.array([out_err(rounding.gptq_layer(w, st, round_at, [c])[0], c) for c in cands])
    assert np.allclose(out_err(target, chosen), errs.min(axis=0), rtol=1e-9)
    assert np.array_equal(choice, errs.argmin(axis=0))
    assert np.all(out_err(target, chosen) <= errs[0]) and np.any(choice > 0)


def _model(path, with_bias=True):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    g = rng.normal(size=(3, 4 * 3 * 3)).astype(np.float32)
    gb = rng.normal(size=3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1],
                              strides=[2, 2], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "gb"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (g, "g"), (gb, "gb"))])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return w, b


def test_calibration_im2col_reproduces_the_convolution(tmp_path):
    path = tmp_path / "t.onnx"
    w, b = _model(path)
    x = np.random.default_rng(1).normal(size=(5, 2, 6, 6)).astype(np.float32)
    patches = rounding.im2col(x.astype(np.float64), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1)
    m = onnx.load(str(path))
    m.graph.output.append(onnx.ValueInfoProto(name="c"))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    c = sess.run(["c"], {"input": x})[0]  # (5, 4, 3, 3)
    got = (patches[0] @ w.reshape(4, -1).T + b).reshape(5, 3, 3, 4).transpose(0, 3, 1, 2)
    assert np.allclose(got, c, atol=1e-4)
    cal = rounding.collect_stats(path, x, batch=2)
    st = cal.layers["w"]
    assert st.rows == 5 * 9 and st.bias == "b"
    assert np.allclose(st.hessian[0], patches[0].T @ patches[0])
    assert np.allclose(st.mean[0], patches[0].mean(axis=0))


@pytest.mark.parametrize("how", ["bias", "gptq+bias"])
def test_bias_correction_removes_the_mean_output_shift(tmp_path, how):
    path = tmp_path / "t.onnx"
    w, b = _model(path)
    x = np.random.default_rng(2).normal(size=(20, 2, 6, 6)).astype(np.float32)
    cal = rounding.collect_stats(path, x)
    # float32 biases: the correction itself; the default float16 storage adds its rounding
    qm = quantize_model(modelio.load(path), get_scheme("pot"), rounding=how, calibration=cal,
                        bias_format="fp32")
    patches = rounding.im2col(x.astype(np.float64), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1)[0]
    wq = qm.results["w"].dequant.reshape(4, -1)
    shift_before = (patches @ (wq - w.reshape(4, -1)).T).mean(axis=0)
    shift_after = shift_before + (qm.biases["b"] - b)
    assert np.abs(shift_before).max() > 1e-3
    assert np.abs(shift_after).max() < 1e-5
    q16 = quantize_model(modelio.load(path), get_scheme("pot"), rounding=how, calibration=cal)
    assert q16.biases["b"].dtype == np.float16
    assert np.array_equal(q16.biases["b"], qm.biases["b"].astype(np.float16))


def test_small_calibration_is_damped_and_said(tmp_path, capsys):
    path = tmp_path / "t.onnx"
    _model(path)
    x = np.random.default_rng(3).normal(size=(2, 2, 6, 6)).astype(np.float32)  # 2 rows, 36 cols
    cal = rounding.collect_stats(path, x)
    qm = quantize_model(modelio.load(path), get_scheme("asd2"), rounding="gptq", calibration=cal)
    assert any("g: 2 calibration rows for 36 inputs" in n for n in qm.notes)
    assert np.all(np.isfinite(qm.results["g"].dequant))


def test_nan_calibration_is_an_error_and_nothing_is_written(tmp_path):
    path = tmp_path / "t.onnx"
    _model(path)
    x = np.zeros((2, 2, 6, 6), np.float32)
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(modelio.ModelError, match="calibration images"):
        rounding.collect_stats(path, x)
    out = tmp_path / "o.npz"
    # an npz model cannot be calibrated: a clear error, no output
    np.savez(tmp_path / "m.npz", w=np.ones((3, 4), np.float32))
    assert main(["quantize", str(tmp_path / "m.npz"), "-o", str(out), "--rounding", "gptq"]) != 0
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_rounding_needs_calibration(tmp_path):
    path = tmp_path / "t.onnx"
    _model(path)
    with pytest.raises(modelio.ModelError, match="calibration"):
        quantize_model(modelio.load(path), get_scheme("asd2"), rounding="gptq")
    with pytest.raises(modelio.ModelError, match="unknown rounding"):
        quantize_model(modelio.load(path), get_scheme("asd2"), rounding="best")


def test_grouped_strided_im2col_matches_a_direct_extraction():
    # the (kh, kw, c) patches and col_order give each group's columns in the weight's order
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 7, 5))  # NCHW, 3 channels per group
    k, s, p, d, g = (3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2
    got = rounding.im2col(x, k, s, p, d, g)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    oh = (7 + p[0] + p[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (5 + p[1] + p[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    want = np.array([[xp[n, gi * 3:(gi + 1) * 3, r * s[0]:r * s[0] + d[0] * (k[0] - 1) + 1:d[0],
                         c * s[1]:c * s[1] + d[1] * (k[1] - 1) + 1:d[1]].ravel()
                      for n in range(2) for r in range(oh) for c in range(ow)]
                     for gi in range(g)])
    assert got.shape == want.shape and np.array_equal(got, want)


def test_float32_statistics_agree_with_float64():
    # more rows than one float32 product takes, so the chunked sum is exercised
    rng = np.random.default_rng(5)
    r = (rng.normal(size=(1, rounding.ROWS_F32 * 2 + 7, 24)) + 1.0).astype(np.float32)
    a, b = rounding.LayerStats.empty("Gemm", 1, 24), rounding.LayerStats.empty("Gemm", 1, 24)
    a.add(r)
    b.add(r.astype(np.float64))  # the same values, float64 products
    assert a.rows == b.rows == r.shape[1]
    assert np.allclose(a.hessian, b.hessian, rtol=1e-5) and np.allclose(a.mean, b.mean)
    assert not np.array_equal(a.hessian, b.hessian)  # float32 products were taken

"""Host ops (issue 24): the integer semantics of programs.hostops, the importer's mapping of
HardSigmoid/HardSwish/Mul/Div/Sigmoid/Resize, MobileNetV3-style and FPN-detector networks
compiled and run bit-exact on the emulator against the integer reference and within the
float error bounds, the partition report, and the refusal of what neither side runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from asd import fidelity
from asd_cli.main import main
from contract.config import AccelConfig
from programs import hostops, partition, reference, runtime, seednets
from programs.manifest import Compiled, compile_model
from programs.onnx_import import ImportError_, import_model
from tests.host_models import tiny_host_model


# Integer semantics -----------------------------------------------------------------------------
def test_fixed_point_factor_is_within_its_precision() -> None:
    for f in (1e-6, 3.7e-3, 1 / 127, 0.5, 1.0, 1.999, 77.3):
        m, sh = hostops.fixed_point(f)
        assert 1 << (hostops.MULT_BITS - 1) <= m < 1 << hostops.MULT_BITS
        assert abs(m / 2.0 ** sh / f - 1) <= 2.0 ** -hostops.MULT_BITS
    with pytest.raises(hostops.HostOpError):
        hostops.fixed_point(0.0)


def test_shift_rounds_half_up_and_mul_saturates() -> None:
    v = np.array([-6, -5, -3, -2, 2, 3, 5, 6])
    assert hostops.rshift_half_up(v, 2).tolist() == [-1, -1, -1, 0, 1, 1, 1, 2]
    a = np.array([[100, -100, 3]])
    got = hostops.mul_int(a, np.array([[127, 127, -5]]), 1 << 14, 14, 8)
    assert got.tolist() == [[127, -128, -15]]


def test_sigmoid_table_is_the_rounded_sigmoid() -> None:
    s_x, s_y = 0.05, 1 / 127
    t = hostops.lookup_table(hostops.sigmoid, s_x, s_y, 8)
    q = np.arange(-128, 128)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() <= 127
    assert np.abs(t * s_y - 1 / (1 + np.exp(-q * s_x))).max() <= 0.5 * s_y + 1e-12
    assert np.array_equal(hostops.lookup(q, t, 8), t)


def _resize_model(h: int, w: int, attrs: dict[str, Any], scales: list[float] | None,
                  sizes: list[int] | None) -> Any:
    ins = ["x", "", numpy_helper.from_array(np.array(scales or [], np.float32), "sc").name]
    inits = [numpy_helper.from_array(np.array(scales or [], np.float32), "sc")]
    if sizes is not None:
        ins = ["x", "", "", "sz"]
        inits = [numpy_helper.from_array(np.array(sizes, np.int64), "sz")]
    node = helper.make_node("Resize", ins, ["y"], name="rs", mode="nearest", **attrs)
    g = helper.make_graph([node], "r", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2, h, w])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("attrs,scales,sizes", [
    ({}, [1, 1, 2, 2], None),
    ({"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     [1, 1, 2, 3], None),
    ({"coordinate_transformation_mode": "align_corners"}, None, [1, 2, 7, 4]),
    ({"nearest_mode": "round_prefer_ceil"}, [1, 1, 1.5, 0.5], None),
    ({"coordinate_transformation_mode": "pytorch_half_pixel", "nearest_mode": "ceil"},
     None, [1, 2, 9, 1]),
])
def test_nearest_resize_indices_match_onnxruntime(attrs: dict[str, Any],
                                                  scales: list[float] | None,
                                                  sizes: list[int] | None) -> None:
    m = _resize_model(4, 6, attrs, scales, sizes)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 6)).astype(np.float32)
    want = next(iter(reference.onnx_forward(m, x).values()))
    lay = import_model(m).layers[0]
    got = hostops.float_op(lay, [reference.nchw_to_nhwc(x)]).transpose(0, 3, 1, 2)
    assert np.array_equal(got, want)


# Import -----------------------------------------------------------------------------------------
def test_host_and_affine_ops_import_exactly_in_float() -> None:
    m = tiny_host_model()
    g = import_model(m)
    ops = [lay.name if lay.name == "se_conv" else lay.op for lay in g.layers]
    # Both hard-swishes are host tables; the HardSigmoid of se_conv folds into it; Div
    # becomes a depthwise conv (its producer is a host mul) and the constant Add its bias.
    assert ops == ["conv", "hardswish", "hardswish", "avgpool", "se_conv", "mul", "conv",
                   "resize", "sigmoid"]
    assert g.layers[2].params == {"alpha": pytest.approx(0.2), "beta": 0.5, "hi": 1.0}
    assert g.layer("se_conv").act == "clip" and g.layer("se_conv").act_hi == 1.0
    x = np.random.default_rng(1).standard_normal((3, 3, 6, 6)).astype(np.float32)
    want = next(iter(reference.onnx_forward(m, x).values()))
    got = reference.to_user(reference.float_forward(g, x)[g.output], g)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _run_bit_exact(model: Any, x: np.ndarray) -> tuple[Compiled, runtime.RunReport]:
    comp = compile_model(model, AccelConfig(), x)
    rep = runtime.run(comp, x, emulate="all", trace=True)
    assert rep.first_int_divergence is None
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    vals, errs = reference.error_bounds(comp.qnet, x)
    out = comp.qnet.graph.output
    got = reference.dequantize(comp.qnet, out, ints[out])
    assert np.all(np.abs(got - vals[out]) <= errs[out] + 1e-9)
    return comp, rep


@pytest.mark.parametrize("name,size,width", [("mobilenet_v3_small", 32, 0.25),
                                             ("tiny_fpn_detector", 32, 0.25),
                                             ("tiny_host_ops", 6, 1.0)])
def test_network_with_host_ops_runs_bit_exact_within_float_bounds(name: str, size: int,
                                                                  width: float) -> None:
    m = (tiny_host_model() if name == "tiny_host_ops"
         else seednets.build(name, size=size, width=width, classes=10))
    x = np.random.default_rng(2).standard_normal((3, 3, size, size)).astype(np.float32)
    comp, rep = _run_bit_exact(m, x)
    want = next(iter(reference.onnx_forward(m, x).values()))
    assert rep.output.shape == want.shape
    assert fidelity.sqnr_db(want, rep.output) > 8.0
    host = [r for r in rep.layers if r.op in hostops.HOST_COMPUTE_OPS]
    assert host and all(r.host_elements > 0 and r.host_words > r.host_elements for r in host)
    split = partition.partition(comp.qnet.graph, comp.layers, comp.config)
    muls = sum(r.host_elements for r in rep.layers if r.op == "mul")
    assert split["host"]["macs"] == muls == rep.as_dict()["host_macs_per_image"]
    assert split["host"]["words"] == rep.as_dict()["host_words_per_image"]
    assert split["accelerator"]["words"] == rep.as_dict()["transfer_words_per_image"]


@pytest.mark.parametrize("attrs,groups", [
    ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, 1),
    ({"strides": [2, 3], "pads": [0, 1, 2, 0]}, 1),
    ({"strides": [1, 1], "pads": [1, 1, 1, 1]}, 1),
    ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]}, 2)])
def test_conv_transpose_is_zeros_on_the_host_and_a_conv_on_the_accelerator(
        attrs: dict[str, Any], groups: int) -> None:
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 6 // groups, 3, 3)).astype(np.float32) * 0.4
    inits = [numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b")]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", group=groups,
                            **attrs)
    g = helper.make_graph([node], "ct", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 4, 5, 5])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 6, "H", "W"])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    want = next(iter(reference.onnx_forward(m, x).values()))
    graph = import_model(m)
    assert [lay.op for lay in graph.layers] == (["resize", "conv"] if attrs["strides"] != [1, 1]
                                                 else ["conv"])
    got = reference.to_user(reference.float_forward(graph, x)[graph.output], graph)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    _, rep = _run_bit_exact(m, x)
    assert fidelity.sqnr_db(want, rep.output) > 25


def test_sub_of_a_constant_is_an_affine_conv_and_of_two_maps_refused() -> None:
    rng = np.random.default_rng(5)
    k = numpy_helper.from_array(rng.standard_normal((1, 3, 1, 1)).astype(np.float32), "k")
    nodes = [helper.make_node("Sub", ["x", "k"], ["a"], name="x_minus_k"),
             helper.make_node("Sub", ["k", "a"], ["y"], name="k_minus_a")]
    g = helper.make_graph(nodes, "sub", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 3, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 3, 4, 4])], [k])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    graph = import_model(m)
    assert [lay.op for lay in graph.layers] == ["conv"]  # the second folds into the first
    got = reference.to_user(reference.float_forward(graph, x)[graph.output], graph)
    np.testing.assert_allclose(got, next(iter(reference.onnx_forward(m, x).values())),
                               rtol=1e-6, atol=1e-6)
    m.graph.node[1].input[0] = "x"
    with pytest.raises(ImportError_, match="node 'k_minus_a' \\(Sub\\): only a constant"):
        import_model(m)


# CLI: partition printed, saved network reloads, bad input refused --------------------------------
def test_compile_prints_the_partition_and_run_counts_host_ops(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(seednets.build("tiny_fpn_detector", size=32, width=0.25, classes=2),
              tmp_path / "det.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "det.onnx"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "host" in text and "concat x1, resize x2, sigmoid x1" in text
    assert "MACs on the accelerator: 100.00%" in text
    assert main(["compile", str(tmp_path / "det.onnx"), "-o", str(out), "--json"]) == 0
    split = json.loads(capsys.readouterr().out)["partition"]
    assert split["host"]["ops"] == {"resize": 2, "concat": 1, "sigmoid": 1}
    assert split["accelerator"]["macs"] > 0 and split["mac_share"] == 1.0
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["host_elements_per_image"] == split["host"]["elements"]
    assert rep["host_cycles_per_image"] == split["host"]["cycles"]
    # The reloaded network (sigmoid table, resize indices from qnet.npz/json) is the same one.
    comp = compile_model(tmp_path / "det.onnx", AccelConfig(), None)
    again = runtime.run(Compiled.load(out), x)
    assert np.array_equal(again.output_int, reference.int_forward(
        comp.qnet, x)[comp.qnet.graph.output])


@pytest.mark.parametrize("node,needle", [
    (helper.make_node("Resize", ["c", "", "sc"], ["y"], name="up", mode="linear"),
     "node 'up' (Resize): mode 'linear' is not supported; nearest supported: Resize "
     "mode=nearest"),
    (helper.make_node("Div", ["c", "c"], ["y"], name="dv"),
     "node 'dv' (Div): division by a feature map is not supported"),
    (helper.make_node("Tanh", ["c"], ["y"], name="th"),
     "node 'th' (Tanh): not supported; nearest supported: Clip (min 0); Sigmoid (host)"),
    (helper.make_node("ConvTranspose", ["c", "w"], ["y"], name="ct", output_shape=[16, 16]),
     "node 'ct' (ConvTranspose): output_shape is not supported; give pads and output_padding"),
])
def test_what_neither_side_runs_is_refused_before_quantization(
        node: Any, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import programs.manifest

    def never(*_a: Any, **_k: Any) -> None:
        raise AssertionError("quantization ran on a model the compiler refuses")

    monkeypatch.setattr(programs.manifest, "quantize", never)
    inits = [numpy_helper.from_array(np.full((2, 2, 3, 3), 0.1, np.float32), "w"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")]
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), node],
        "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
              tmp_path / "bad.onnx")
    with pytest.raises(ImportError_):
        import_model(tmp_path / "bad.onnx")
    capsys.readouterr()
    assert main(["compile", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "out")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

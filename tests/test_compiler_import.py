"""ONNX import: fusions are exact in float, unsupported ops and attributes are errors that
name the node, the op and what is supported."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from contract.config import AccelConfig
from programs import reference
from programs.lower import LowerError, lower
from programs.onnx_import import ImportError_, import_model
from programs.quantize import QuantizeError, quantize, snap_mult, two_digit_ints
from tests.zoo_onnx import Net, chain_model


def _single(op: str, **attrs: object) -> object:
    net = Net(2, 6, 6, 0)
    y = net.node(op, ["x"], (2, 6, 6), **attrs)
    return net.model(y)


def test_unsupported_op_names_node_op_and_supported_list() -> None:
    with pytest.raises(ImportError_) as exc:
        import_model(_single("Tanh"))
    msg = str(exc.value)
    assert "tanh" in msg and "(Tanh)" in msg and "supported ops" in msg and "Conv" in msg


@pytest.mark.parametrize("op,attrs,needle", [
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, "dilations"),
    ("AveragePool", {"kernel_shape": [2, 2], "ceil_mode": 1}, "ceil_mode"),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, "count_include_pad"),
])
def test_unsupported_attribute(op: str, attrs: dict, needle: str) -> None:
    with pytest.raises(ImportError_, match=needle):
        import_model(_single(op, **attrs))


def test_clip_other_than_relu6_is_refused() -> None:
    net = Net(2, 4, 4, 0)
    y = net.node("Clip", ["x", net.const(np.array(-1.0)), net.const(np.array(1.0))], (2, 4, 4))
    with pytest.raises(ImportError_, match="min=0"):
        import_model(net.model(y))


def test_opset_older_than_the_converter_reads_is_refused() -> None:
    # Opsets 7..12 are converted on loading (tests/test_onnx_import_fold.py); 6 is not.
    m = chain_model({"c": 1, "h": 4, "w": 4, "seed": 0, "steps": [("act", {"act": "relu"})]})
    m.opset_import[0].version = 6
    with pytest.raises(ImportError_, match="opset 6; opsets 7 and later"):
        import_model(m)


def test_fusions_are_exact_in_float() -> None:
    spec = {"c": 3, "h": 7, "w": 7, "seed": 5, "steps": [
        ("conv", {"co": 4, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": False, "bn": True,
                  "groups": "dense", "act": "relu"}),
        ("act", {"act": "prelu"}), ("matmul", {"co": 3})]}
    m = chain_model(spec)
    g = import_model(m)
    # BN and ReLU fused into the conv; PReLU alone becomes a depthwise identity conv; MatMul
    # with its bias Add becomes one conv over the whole map (Flatten absorbed).
    assert [lay.op for lay in g.layers] == ["conv", "conv", "conv"]
    assert g.layers[0].act == "relu" and g.layers[1].depthwise and g.layers[2].kernel == (7, 7)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7)).astype(np.float32)
    ours = reference.to_user(reference.float_forward(g, x)[g.output], g)
    theirs = next(iter(reference.onnx_forward(m, x).values()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_softmax_only_last() -> None:
    net = Net(2, 1, 1, 0)
    s = net.node("Softmax", ["x"], (2, 1, 1), axis=1)
    y = net.node("Relu", [s], (2, 1, 1))
    with pytest.raises(ImportError_, match="last layer"):
        import_model(net.model(y))


def test_snap_mult_is_two_digit_and_floor_never_exceeds() -> None:
    t = np.geomspace(1e-6, 3.0, 200)
    m, sh = snap_mult(t, 3, "floor")
    assert set(m.tolist()) <= set(two_digit_ints(3).tolist())
    v = m / np.exp2(sh)
    assert np.all(v <= t * (1 + 1e-12)) and np.all(v >= t * 0.83)
    m2, sh2 = snap_mult(t, 3)
    assert np.all(np.abs(m2 / np.exp2(sh2) / t - 1) <= 0.1)


def test_requant_aware_scales_make_every_multiplier_exact() -> None:
    spec = {"c": 3, "h": 6, "w": 6, "seed": 2, "steps": [
        ("conv", {"co": 6, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True, "bn": False,
                  "groups": "dense", "act": "relu"}), ("gap", {})]}
    g = import_model(chain_model(spec))
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 6))
    cfg = AccelConfig()
    q = quantize(g, cfg, x)
    conv = q.qlayers[g.layers[0].name]
    assert conv.exact and conv.s_w is not None
    # M_c = s_x * s_w[c] / (2^(W-1) s_y) is exactly the two-digit m / 2^sh the hardware uses.
    want = q.scales[g.input] * conv.s_w / (128 * q.scales[g.layers[0].output])
    np.testing.assert_allclose(conv.mult_float(), want, rtol=1e-12)
    plain = quantize(g, cfg, x, requant_aware=False).qlayers[g.layers[0].name]
    assert not plain.exact


def test_scheme_the_hardware_cannot_hold_is_an_error() -> None:
    g = import_model(chain_model({"c": 2, "h": 4, "w": 4, "seed": 0, "steps": [
        ("conv", {"co": 2, "k": 1, "s": 1, "pads": [0] * 4, "bias": True, "bn": False,
                  "groups": "dense", "act": "none"})]}))
    with pytest.raises(QuantizeError,
                       match=r"'int8'.*asd weights \(E=3\) cannot hold.*usable: asd"):
        quantize(g, AccelConfig(), np.ones((1, 2, 4, 4)), scheme="int8")


def test_layer_that_never_fits_says_which_memory() -> None:
    g = import_model(chain_model({"c": 64, "h": 4, "w": 4, "seed": 0, "steps": [
        ("conv", {"co": 8, "k": 3, "s": 1, "pads": [1] * 4, "bias": True, "bn": False,
                  "groups": "dense", "act": "none"})]}))
    # 3x3x64 = 576 weight words a block: split into reduction chunks, not refused ...
    assert any(ll.partial_channels for ll in lower(quantize(g, AccelConfig(wmem_depth=256),
                                                            np.ones((1, 64, 4, 4)))))
    # ... but one input channel's 3x3 kernel must fit WMEM, and one output pixel of it (its
    # window and 8 lanes of partial sums in and out, 4 pieces each) AMEM.
    q = quantize(g, AccelConfig(wmem_depth=8), np.ones((1, 64, 4, 4)))
    with pytest.raises(LowerError, match=r"3x3 kernel needs 9 weight words, wmem_depth is 8"):
        lower(q)
    q2 = quantize(g, AccelConfig(amem_depth=64), np.ones((1, 64, 4, 4)))
    with pytest.raises(LowerError, match="needs 73 AMEM elements.*amem_depth is 64"):
        lower(q2)


def test_missing_input_shape_is_reported() -> None:
    net = Net(2, 4, 4, 0)
    y = net.node("Relu", ["x"], (2, 4, 4))
    m = net.model(y)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(ImportError_, match="symbolic"):
        import_model(m)
    assert import_model(m, (5, 5)).input_shape == (2, 5, 5)


def test_ir_shapes_match_onnx_shape_inference() -> None:
    """Shapes computed by the IR match onnx shape inference of the same model."""
    from onnx import shape_inference

    spec = {"c": 3, "h": 9, "w": 8, "seed": 1, "steps": [
        ("maxpool", {"k": 3, "s": 2, "pads": [0, 1, 1, 0], "ceil": True}),
        ("conv", {"co": 4, "k": 2, "s": 2, "pads": [1, 0, 0, 1], "bias": True, "bn": False,
                  "groups": "dense", "act": "none"})]}
    m = chain_model(spec)
    g = import_model(m)
    inferred = shape_inference.infer_shapes(m)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:]
            for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for lay in g.layers:
        assert list(g.shapes[lay.output]) == dims[lay.output], lay.name
    assert TensorProto.FLOAT and helper  # the builders above use both


def test_ceil_mode_window_in_end_padding_is_refused() -> None:
    net = Net(1, 4, 3, 0)
    y = net.node("MaxPool", ["x"], (1, 3, 2), kernel_shape=[2, 2], strides=[2, 2],
                 pads=[0, 0, 1, 0], ceil_mode=1)
    with pytest.raises(ImportError_, match="ambiguous"):
        import_model(net.model(y))

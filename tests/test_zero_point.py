"""Zero points of non-negative feature maps (``act_zero_point="auto"``): the emulator equals the
integer reference bit for bit, the dequantized output lies within the float bound, the cycles
are those of the symmetric compile, and only allow-listed layers ever see a zero point."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.backend import get_backend
from contract.config import AccelConfig
from programs import reference, runtime
from programs.graph import Graph, Layer
from programs.manifest import compile_model
from programs.qnet import QNet
from programs.quantize import QuantizeError, _Groups, zero_points
from programs.zero_points import output_zero_point
from tests.profiles import scaled_examples
from tests.strategies import compiler_configs, layer_chains
from tests.zoo_onnx import chain_model

# A padded ReLU conv first, so the chain's input and first feature map are non-negative.
_RELU_CONV = ("conv", {"co": 4, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True,
                       "bn": False, "groups": "dense", "act": "relu"})


def _compile_and_check(spec: dict, config: AccelConfig, x: np.ndarray) -> tuple:
    model = chain_model(spec)
    comp = compile_model(model, config, x, act_zero_point="auto")
    q = comp.qnet
    rep = runtime.run(comp, x, get_backend("emu", fast=True), batched=False, trace=True)
    ints = reference.int_forward(q, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    vals, errs = reference.error_bounds(q, x)
    out = q.graph.output
    fl = reference.to_user(vals[out], q.graph)
    bound = reference.to_user(errs[out], q.graph)
    slack = 1e-6 * max(1.0, float(np.abs(fl).max()))
    assert np.all(np.abs(rep.output - fl) <= bound + slack)
    return comp, rep


@settings(max_examples=scaled_examples(40), suppress_health_check=[HealthCheck.too_slow])
@given(layer_chains(max_steps=2), compiler_configs)
def test_zero_point_chain_bit_exact_and_within_bound(spec: dict, cfg: dict) -> None:
    spec = {**spec, "steps": [_RELU_CONV, *spec["steps"]]}
    x = np.random.default_rng(spec["seed"]).uniform(0, 1, (2, spec["c"], spec["h"], spec["w"]))
    config = AccelConfig(**cfg)
    try:
        comp, rep = _compile_and_check(spec, config, x.astype(np.float32))
    except Exception as exc:  # only a true capacity limit may stop compilation
        from programs.lower import LowerError
        if isinstance(exc, LowerError):
            return
        raise
    q = comp.qnet
    # The input (calibrated >= 0) and the ReLU conv's output carry the zero point, so the
    # padded border of that conv (and any later padded layer) holds act_min.
    assert q.zero(q.graph.input) == config.act_min
    first = q.graph.layers[0]
    assert comp.layers[0].pad_value == config.act_min
    readers = {lay.op for lay in q.graph.consumers(first.output)}
    if readers <= {"conv", "maxpool", "avgpool", "add", "concat", "flatten", "softmax"}:
        assert q.zero(first.output) == config.act_min
        assert not q.qlayers[first.name].relu  # the saturation at act_min is the ReLU
    # Same programs' timing as the symmetric compile.
    sym = compile_model(chain_model(spec), config, x.astype(np.float32), act_zero_point="none")
    assert not sym.qnet.zero_points
    assert [ll.cycles for ll in sym.layers] == [ll.cycles for ll in comp.layers]


@pytest.mark.parametrize("tail", [
    [("residual", {"act": "relu"}), ("maxpool", {"k": 2, "s": 2, "pads": [0, 1, 0, 1],
                                                 "ceil": False}), ("gap", {})],
    [("concat", {"c1": 3, "c2": 2}), ("avgpool", {"k": 2, "s": 1, "pads": [0] * 4,
                                                  "ceil": False}), ("gemm", {"co": 5})],
    [("residual", {"act": "leaky"}), ("gemm", {"co": 4}), ("softmax", {})],
])
def test_zero_point_padding_residual_pooling(tail: list) -> None:
    """Padding, residual adds (ReLU, and leaky: a zero-point input into a symmetric output),
    pooling, concatenation and heads, on the emulator in step mode too."""
    spec = {"c": 3, "h": 6, "w": 6, "seed": 7, "steps": [_RELU_CONV, *tail]}
    x = np.random.default_rng(3).uniform(0, 1, (3, 3, 6, 6)).astype(np.float32)
    comp, rep = _compile_and_check(spec, AccelConfig(lanes=4), x)
    q = comp.qnet
    assert sum(1 for z in q.zero_points.values() if z) >= 2
    # The add / average pool that read or write a zero point start from a BIAS word.
    for lay in q.graph.layers:
        if lay.op in ("add", "avgpool") and any(q.zero(t) for t in (*lay.inputs, lay.output)):
            assert q.qlayers[lay.name].bias_int is not None
            assert "BIAS" in comp.layers[q.graph.layers.index(lay)].tiles[0].source
    step = runtime.run(comp, x[:1], get_backend("emu", fast=False), batched=False)
    assert np.array_equal(step.output_int, rep.output_int[:1])


def test_zero_point_improves_a_relu_network() -> None:
    """The reason for zero points: a ReLU network's output error shrinks (measured on one
    fixed random network; ``none`` is the symmetric compile of the same calibration)."""
    spec = {"c": 3, "h": 8, "w": 8, "seed": 11,
            "steps": [_RELU_CONV, ("residual", {"act": "relu"}), ("gemm", {"co": 10})]}
    rng = np.random.default_rng(5)
    calib = rng.uniform(0, 1, (64, 3, 8, 8)).astype(np.float32)
    x = rng.uniform(0, 1, (64, 3, 8, 8)).astype(np.float32)
    model = chain_model(spec)
    ref = next(iter(reference.onnx_forward(model, x).values()))
    err = {}
    for mode in ("auto", "none"):
        comp = compile_model(model, AccelConfig(), calib, act_zero_point=mode)
        err[mode] = float(np.mean((runtime.run(comp, x).output - ref) ** 2))
    assert err["auto"] < err["none"]


def _relu_graph(reader: str) -> Graph:
    w = np.ones((2, 1, 1, 1))
    conv = Layer("c", "conv", ["x"], "y", weight=w, bias=np.zeros(2), act="relu")
    second = Layer("r", "conv", ["y"], "z", weight=np.ones((2, 2, 1, 1)), bias=np.zeros(2))
    g = Graph("x", (1, 3, 3), "z", [conv, second])
    second.op = reader  # a reader the allow-list does not know (e.g. a new host op)
    return g


def test_zero_points_only_for_allow_listed_readers() -> None:
    groups = _Groups()
    assert zero_points(_relu_graph("conv"), groups, -128, False) == {"y": -128}
    assert zero_points(_relu_graph("mul"), groups, -128, False) == {}
    assert zero_points(_relu_graph("conv"), groups, -128, True) == {"x": -128, "y": -128}
    assert zero_points(_relu_graph("conv"), groups, -128, True, "none") == {}
    with pytest.raises(QuantizeError, match="act_zero_point"):
        zero_points(_relu_graph("conv"), groups, -128, False, "always")


@given(st.sampled_from(["auto", "none"]))
@settings(max_examples=2)
def test_zero_points_saved_with_the_network(tmp_path_factory: pytest.TempPathFactory,
                                            mode: str) -> None:
    spec = {"c": 2, "h": 4, "w": 4, "seed": 1, "steps": [_RELU_CONV, ("gemm", {"co": 3})]}
    x = np.random.default_rng(0).uniform(0, 1, (4, 2, 4, 4)).astype(np.float32)
    comp = compile_model(chain_model(spec), AccelConfig(), x, act_zero_point=mode)
    d = tmp_path_factory.mktemp("qnet")
    comp.qnet.save(d)
    back = QNet.load(d)
    assert back.zero_points == comp.qnet.zero_points
    assert bool(back.zero_points) == (mode == "auto")
    assert np.array_equal(reference.int_forward(back, x)[back.graph.output],
                          reference.int_forward(comp.qnet, x)[back.graph.output])


def _head_graph(reader: str = "softmax", act: str = "none") -> Graph:
    """conv -> flatten -> a reader: the logits ``z`` (one scale with ``y``) are read by it."""
    conv = Layer("c", "conv", ["x"], "y", weight=np.ones((3, 2, 1, 1)), bias=np.zeros(3),
                 act=act)
    flat = Layer("f", "flatten", ["y"], "z")
    head = Layer("s", "softmax", ["z"], "p")
    g = Graph("x", (2, 1, 1), "p", [conv, flat, head])
    head.op = reader
    return g


def test_output_zero_point_spreads_the_logits_over_every_code() -> None:
    g = _head_graph()
    groups = _Groups()
    groups.union("y", "z")
    z, s = output_zero_point(g, groups, -2.0, 8.2, 8, {}) or (0, 0.0)
    assert s == pytest.approx(10.2 / 255)
    assert (-128 - z) * s == pytest.approx(-2.0, abs=s / 2)  # act_min is lo, act_max is hi
    assert (127 - z) * s == pytest.approx(8.2, abs=s / 2)
    # A range on one side of 0 still holds 0 (z at an end of the codes).
    assert output_zero_point(g, groups, 1.0, 3.0, 8, {}) == (-128, pytest.approx(3 / 255))
    assert output_zero_point(g, groups, -3.0, -1.0, 8, {}) == (127, pytest.approx(3 / 255))
    assert output_zero_point(g, groups, -2.0, 8.2, 8, {}, "none") is None
    assert output_zero_point(g, groups, -2.0, 8.2, 8, {"z": -128}) is None  # has one already
    assert output_zero_point(g, groups, 0.0, 0.0, 8, {}) is None
    # ACT's slope works on codes around 0.
    assert output_zero_point(_head_graph(act="leaky"), groups, -2.0, 8.2, 8, {}) is None
    # Logits that are not the network's output (a host op the allow-list does not know).
    assert output_zero_point(_head_graph("mul"), groups, -2.0, 8.2, 8, {}) is None


@pytest.mark.parametrize("tail", [[("gemm", {"co": 5})],
                                  [("gemm", {"co": 4}), ("softmax", {})],
                                  [("gap", {})]])
def test_signed_output_zero_point_bit_exact_and_finer(tail: list) -> None:
    """The signed network output (a fully connected head, its softmax, a global average pool
    of a symmetric map) gets the zero point of its range: bit-exact on the emulator, within
    the float bound, the output step finer than the symmetric compile's, the same cycles."""
    conv = ("conv", {**_RELU_CONV[1], "act": "none"})
    spec = {"c": 3, "h": 6, "w": 6, "seed": 5, "steps": [conv, *tail]}
    x = np.random.default_rng(9).uniform(0, 1, (8, 3, 6, 6)).astype(np.float32)
    comp, _ = _compile_and_check(spec, AccelConfig(lanes=4), x)
    q = comp.qnet
    out = q.graph.output
    if q.graph.producer(out).op == "softmax":
        out = q.graph.producer(out).inputs[0]
    assert q.zero(out) != 0
    sym = compile_model(chain_model(spec), AccelConfig(lanes=4), x, act_zero_point="none")
    assert q.scales[out] < sym.qnet.scales[out]
    assert [ll.cycles for ll in sym.layers] == [ll.cycles for ll in comp.layers]


def _one_conv(w: np.ndarray, bias: np.ndarray, relu: bool):  # type: ignore[no-untyped-def]
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    co, ci, kh, kw = w.shape
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c" if relu else "y"],
                              pads=[kh // 2, kw // 2] * 2)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", ci, 1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", co, 1, 3])],
        [numpy_helper.from_array(w.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("w0, w1, bias, relu", [
    (1.0, 1e30, 0.0, False),  # kept from the ONNX fuzzer
    (1e-6, 1.0, 0.1, True),  # a folded batch norm with gamma near 0: tiny weights, a bias
    (1e-9, 1.0, 0.1, True),
])
def test_tiny_channels_keep_bias_and_zero_point_in_reach(w0: float, w1: float, bias: float,
                                                         relu: bool) -> None:
    """A channel whose weights are tiny beside the output's step or its own bias got so fine
    an accumulator unit that the bias (or the zero point's term, the int64 cast of an
    infinity making it -2^63 without a word) left acc_bits.  Its scale is floored now: the
    network compiles, bit-exact, every bias under 2^(acc_bits - 3), the output within the
    error bound."""
    w = np.array([w0, w1]).reshape(2, 1, 1, 1)
    model = _one_conv(w, np.full(2, bias), relu)
    x = np.random.default_rng(0).random((2, 1, 1, 3)).astype(np.float32)
    net = compile_model(model, AccelConfig(), x)
    q = net.qnet
    ql = next(iter(q.qlayers.values()))
    assert np.all(np.abs(ql.bias_int) < 1 << (q.config.acc_bits - 3))
    rep = runtime.run(net, x)  # raises unless the emulator equals the integer reference
    vals, errs = reference.error_bounds(q, x)
    out = q.graph.output
    fl = reference.to_user(vals[out], q.graph)
    assert np.all(np.abs(rep.output - fl) <= reference.to_user(errs[out], q.graph)
                  + 1e-6 * max(1.0, float(np.abs(fl).max())))

"""Whole networks: the shipped zoo models at their input size and the seed papers' networks
(programs.seednets) at reduced size compile and run on the emulator bit-exact with the integer
reference, and close to onnxruntime's float output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_compiler
from contract.config import AccelConfig
from programs import reference, runtime, seednets
from programs.manifest import compile_model
from programs.onnx_import import import_model

MODELS = sorted((Path(__file__).parent.parent / "asd" / "data" / "models").glob("*.onnx"))


def _run_exact(model: object, x: np.ndarray, config: AccelConfig) -> runtime.RunReport:
    comp = compile_model(model, config, x)
    rep = runtime.run(comp, x, emulate="all", trace=True)
    assert rep.first_int_divergence is None
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    return rep


def test_zoo_models_exist() -> None:
    assert len(MODELS) >= 3


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_zoo_model_bit_exact(path: Path) -> None:
    g = import_model(path)
    x = np.random.default_rng(0).uniform(0, 1, (2, *g.input_shape)).astype(np.float32)
    rep = _run_exact(str(path), x, AccelConfig())
    want = next(iter(reference.onnx_forward(path, x).values()))
    rel = np.abs(rep.output - want).max() / np.abs(want).max()
    assert rel < 0.25


@pytest.mark.parametrize("name,size,width", [
    ("alexnet", 67, 0.0625), ("vgg16", 32, 0.0625), ("resnet18", 32, 0.125),
    ("squeezenet1_0", 40, 0.125), ("squeezenet1_1", 40, 0.125)])
def test_seed_network_bit_exact(name: str, size: int, width: float) -> None:
    m = seednets.build(name, width=width, size=size, classes=10)
    x = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    # A small AMEM forces row-band and channel-group tiling through real networks.
    rep = _run_exact(m, x, AccelConfig(amem_depth=4096))
    want = next(iter(reference.onnx_forward(m, x).values()))
    assert rep.output.shape == want.shape
    assert np.abs(rep.output - want).max() / np.abs(want).max() < 0.35


def test_full_width_alexnet_reports_what_never_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reduction too long for WMEM is split (the 9216-input FC fits 4096 words), but one
    input channel of conv1's 11x11 kernel must fit: refused before quantization starts."""
    from programs import manifest
    from programs.lower import LowerError

    def no_quantization(*args: object, **kwargs: object) -> None:
        raise AssertionError("quantization started before the refusal")

    monkeypatch.setattr(manifest, "quantize", no_quantization)
    m = seednets.build("alexnet", width=1.0, size=224, classes=10)
    with pytest.raises(LowerError, match=r"conv.*11x11 kernel needs 121 weight words, "
                                         r"wmem_depth is 64.*wmem_depth=64"):
        compile_model(m, AccelConfig(wmem_depth=64), np.zeros((1, 3, 224, 224), np.float32))


def test_benchmark_runs_small(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    assert bench_compiler.main(["--size", "32", "--width", "0.0625", "--compare-size", "16",
                                "--compare-width", "0.0625", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["bit_exact_with_integer_reference"] is True
    assert res["cycles_per_image"] > 0 and res["program_bytes"] > 0
    assert res["emulator_over_onnxruntime"] > 0
    assert set(res["requant_search"]) >= {"requant_aware", "max_abs_scales"}
    # asd run's batch path beside onnxruntime, every image checked against the definition.
    assert res["batch_size"] == 32 and res["batch_bit_exact"] is True
    assert res["batch_over_onnxruntime"] > 0 and res["batch_threads"] >= 1
    assert res["gemm_floor_macs"] > 0 and res["gemm_floor_over_onnxruntime"] > 0


def test_gemm_floor_counts_every_product_of_the_graph() -> None:
    """The benchmark's float64 floor: one product per convolution group and dense layer, with
    the MACs the layers have (Gemm's B either way round)."""
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, shape: tuple[int, ...]) -> object:
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=2),
             helper.make_node("Flatten", ["c2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3"], ["g"], transB=1),
             helper.make_node("Gemm", ["g", "w4"], ["y"])]
    graph = helper.make_graph(
        nodes, "floor", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [init("w1", (4, 3, 3, 3)), init("w2", (4, 2, 3, 3)), init("w3", (10, 256)),
         init("w4", (10, 5))])
    floor = bench_compiler.gemm_floor(helper.make_model(graph), rounds=1)
    assert floor["gemm_floor_products"] == 1 + 2 + 1 + 1
    assert floor["gemm_floor_macs"] == 64 * 27 * 4 + 2 * 64 * 18 * 2 + 256 * 10 + 10 * 5
    assert floor["gemm_floor_seconds"] > 0

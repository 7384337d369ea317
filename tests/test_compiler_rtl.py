"""A small compiled network on the RTL (the simulator chosen with ``--backend``): every
layer's output is the integer reference's and the cycles are the emulator's."""

from __future__ import annotations

import numpy as np
import pytest

from contract.backend import get_backend
from contract.config import AccelConfig
from programs import reference, runtime
from programs.manifest import compile_model
from tests.rtl_cases import COMPILED_NET_SPEC
from tests.zoo_onnx import chain_model

pytestmark = pytest.mark.rtl

SPEC = COMPILED_NET_SPEC


# Reduction tiling: with 16 WMEM words the 3x3 convolution over 3 channels and the 4x4 head
# over 5 run one input channel per chunk, spilling and restoring partial sums (SPILL, FILL).
SPLIT_SPEC = {"c": 3, "h": 4, "w": 4, "seed": 1, "steps": [
    ("conv", {"co": 5, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True, "bn": False,
              "groups": "dense", "act": "relu"}), ("gemm", {"co": 3})]}
# Zero points (non-negative input, ReLU maps): padded borders hold act_min, the average pool
# and the add start from a BIAS word.
ZERO_POINT_SPEC = {"c": 2, "h": 4, "w": 4, "seed": 2, "steps": [
    ("conv", {"co": 3, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True, "bn": False,
              "groups": "dense", "act": "relu"}), ("residual", {"act": "relu"}),
    ("avgpool", {"k": 2, "s": 2, "pads": [0, 0, 0, 0], "ceil": False}), ("gemm", {"co": 3})]}
CONFIGS = {"tiled": (SPEC, dict(wmem_depth=64)), "split": (SPLIT_SPEC, dict(wmem_depth=16)),
           "zero_point": (ZERO_POINT_SPEC, dict(wmem_depth=64))}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_small_network_on_rtl(backend: str, case: str) -> None:
    spec, memories = CONFIGS[case]
    rng = np.random.default_rng(0)
    x = (rng.uniform(0, 1, (1, spec["c"], 4, 4)) if case == "zero_point"
         else rng.standard_normal((1, spec["c"], 4, 4))).astype(np.float32)
    cfg = AccelConfig(lanes=4, amem_depth=256, bmem_depth=16, imem_depth=128, **memories)
    comp = compile_model(chain_model(spec), cfg, x)
    assert any(ll.partial_channels for ll in comp.layers) == (case == "split")
    if case == "zero_point":
        assert comp.qnet.zero(comp.qnet.graph.input) == cfg.act_min
        assert sum("BIAS" in t.source for ll in comp.layers if ll.op in ("add", "avgpool")
                   for t in ll.tiles) >= 2
    rep = runtime.run(comp, x, get_backend(backend), batched=False, trace=True)
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    assert rep.cycles_per_image == sum(ll.cycles for ll in comp.layers)

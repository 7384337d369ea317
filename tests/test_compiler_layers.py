"""Random small layers and layer chains, compiled and run: the emulator equals the integer
reference exactly, and the dequantized output lies within the bound the scales imply of the
float output (which itself matches onnxruntime)."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contract.backend import get_backend
from contract.config import AccelConfig
from programs import reference, runtime
from programs.lower import LowerError
from programs.manifest import compile_model
from tests.profiles import scaled_examples
from tests.strategies import compiler_configs, layer_chains
from tests.zoo_onnx import chain_model


def _check(spec: dict, cfg: dict, emulate_all: bool = True) -> None:
    model = chain_model(spec)
    config = AccelConfig(**cfg)
    rng = np.random.default_rng(spec["seed"])
    x = rng.standard_normal((2, spec["c"], spec["h"], spec["w"])).astype(np.float32)
    try:
        comp = compile_model(model, config, x)
    except LowerError as exc:
        # Only a true capacity limit may stop compilation: the numbers it quotes must say so.
        m = re.search(r"needs (\d+) .*?(amem|wmem)_depth is (\d+)", str(exc))
        assert m is not None and int(m.group(1)) > int(m.group(3)), str(exc)
        return
    q = comp.qnet
    rep = runtime.run(comp, x, get_backend("emu", fast=True), batched=False, trace=True)
    ints = reference.int_forward(q, x)
    # Every layer of every image: the emulator result is the integer reference's.
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    assert rep.first_int_divergence is None
    # Cycles of the run equal the static count in the manifest.
    assert rep.cycles_per_image == sum(ll.cycles for ll in comp.layers)
    # Float model in numpy == onnxruntime, and the dequantized result within its bound.
    onnx_out = next(iter(reference.onnx_forward(model, x).values()))
    vals, errs = reference.error_bounds(q, x)
    out = q.graph.output
    fl = reference.to_user(vals[out], q.graph)
    np.testing.assert_allclose(fl, onnx_out, rtol=1e-4, atol=1e-4 * max(1, np.abs(fl).max()))
    bound = reference.to_user(errs[out], q.graph)
    err = np.abs(rep.output - fl)
    slack = 1e-6 * max(1.0, float(np.abs(fl).max()))
    assert np.all(err <= bound + slack), (err - bound).max()


# Found by CI: an average pool or an add carrying a PReLU gave every channel the first one's
# slope (their parameters were one shared block).  The second needs several BMEM groups.
_PRELU = ("act", {"act": "prelu"})
_AVGPOOL = ("avgpool", {"k": 2, "s": 2, "pads": [0, 0, 0, 0], "ceil": False})
_SMALL = dict(amem_depth=512, wmem_depth=256, bmem_depth=16)


@settings(max_examples=scaled_examples(60), suppress_health_check=[HealthCheck.too_slow])
@given(layer_chains(), compiler_configs)
@example(spec={"c": 2, "h": 3, "w": 3, "seed": 0, "steps": [_AVGPOOL, _PRELU]},
         cfg=dict(lanes=1, loop_depth=3, **_SMALL))
@example(spec={"c": 12, "h": 3, "w": 3, "seed": 2,
               "steps": [("residual", {"act": "none"}), _PRELU]},
         cfg=dict(lanes=1, loop_depth=4, **_SMALL))
def test_chain_emulator_equals_integer_reference_and_float_bound(spec: dict, cfg: dict) -> None:
    _check(spec, cfg)


@settings(max_examples=scaled_examples(15), suppress_health_check=[HealthCheck.too_slow])
@given(layer_chains(max_steps=1), st.sampled_from([dict(lanes=4), dict(lanes=8),
                                                   dict(lanes=4, wmem_depth=16)]))
def test_single_layer_step_mode(spec: dict, cfg: dict) -> None:
    """Step mode (the definition) agrees too, on single layers."""
    model = chain_model(spec)
    x = np.random.default_rng(1).standard_normal((1, spec["c"], spec["h"], spec["w"]))
    try:
        comp = compile_model(model, AccelConfig(**cfg), x)
    except LowerError as exc:  # a head's whole-map kernel beyond 16 WMEM words: a true limit
        m = re.search(r"needs (\d+) .*?wmem_depth is (\d+)", str(exc))
        assert m is not None and int(m.group(1)) > int(m.group(2)), str(exc)
        return
    rep = runtime.run(comp, x, get_backend("emu", fast=False), batched=False)
    want = reference.int_forward(comp.qnet, x)[comp.qnet.graph.output]
    assert np.array_equal(rep.output_int, want)

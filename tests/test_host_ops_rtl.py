"""A small network with host ops (hard-swish tables, a squeeze-excitation product, a nearest
resize, a sigmoid) on the RTL chosen with ``--backend``: every layer's output is the integer
reference's, host layers included, and the cycles are the emulator's."""

from __future__ import annotations

import numpy as np
import pytest

from contract.backend import get_backend
from contract.config import AccelConfig
from programs import hostops, reference, runtime
from programs.manifest import compile_model
from tests.host_models import tiny_host_model

pytestmark = pytest.mark.rtl


def test_host_op_network_on_rtl(backend: str) -> None:
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    cfg = AccelConfig(lanes=4, amem_depth=512, wmem_depth=64, bmem_depth=16, imem_depth=128)
    comp = compile_model(tiny_host_model(), cfg, x)
    assert {ll.op for ll in comp.layers if ll.host} >= set(hostops.HOST_COMPUTE_OPS)
    rep = runtime.run(comp, x, get_backend(backend), batched=False, trace=True)
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    assert rep.cycles_per_image == sum(ll.cycles for ll in comp.layers)

"""int8 weights on the RTL (the simulator chosen with ``--backend``): the multiplier PE takes
the 8-bit WMEM value straight into its W register.  Every instruction with the int8 extremes,
W before any LOADW (0, not a two-digit code's 2), and a compiled network, bit for bit against
the emulator and the integer reference.  Random programs with int8 weights run in
tests/test_rtl_backends.py (the strategies draw the weight format)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from contract.backend import Limits, for_config, get_backend
from contract.config import AccelConfig
from emu import emulator
from emu.asm import assemble
from programs import reference, runtime
from programs.manifest import compile_model
from tests.rtl_cases import CFG_INT8, EDGES, assert_rtl_matches
from tests.rtl_cases import COMPILED_NET_SPEC as SPEC
from tests.zoo_onnx import chain_model

pytestmark = pytest.mark.rtl

# The shared edge program with int8 weights: the extremes -128 and 127 in every lane.
EDGES_INT8 = EDGES.replace(".wint 0 3 -5 8 -12", ".wint 0 -128 127 -1 100").replace(
    ".wint 2 16 -16 12 -12", ".wint 2 127 -128 -128 127")


def _check(src: str, backend: str) -> None:
    image = assemble(src, CFG_INT8, "<int8>")
    golden = emulator.run(image)
    assert_rtl_matches(get_backend(backend).run(for_config(image, CFG_INT8), Limits(timeout=300)),
                golden)


def test_every_instruction_int8(backend: str) -> None:
    _check(EDGES_INT8, backend)


def test_int8_weights_before_any_loadw(backend: str) -> None:
    src = """
.amem 0 5 -7 31 -32
        SETI r2, 0
        SETI r4, 100
        VMAC r2, 4, 0
        SHIFTADD r2, 0
        ACC
        STORE r4, 4, 0
        HALT
"""
    assert emulator.run(assemble(src, CFG_INT8)).acc.tolist() == [0, 0, 0, 0]
    _check(src, backend)


def test_small_network_int8_on_rtl(backend: str) -> None:
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4)).astype(np.float32)
    cfg = AccelConfig(lanes=4, amem_depth=256, wmem_depth=64, bmem_depth=16, imem_depth=128,
                      pe="multiplier", weights="int8")
    comp = compile_model(chain_model(SPEC), cfg, x)
    rep = runtime.run(comp, x, get_backend(backend), batched=False, trace=True)
    ints = reference.int_forward(comp.qnet, x)
    for ll in comp.layers:
        assert np.array_equal(rep.tensors[ll.output], ints[ll.output]), ll.name
    assert rep.cycles_per_image == sum(ll.cycles for ll in comp.layers)


@pytest.mark.parametrize("hdl", ["verilog", "vhdl"])
def test_export_int8(backend: str, tmp_path: Path, hdl: str) -> None:
    # W is an 8-bit register loaded straight from WMEM; the testbench (built-in demo program,
    # whose weights must fit int8 at E = 4 too) passes on the simulator that runs it.
    from accel import export

    out = tmp_path / hdl
    export.export(CFG_INT8, hdl, out)
    text = next(p for p in out.iterdir() if p.name.startswith("asd_core")).read_text()
    # (MyHDL numbers instance names per process: lane0_, lane32_, lane0_0_, ...)
    pattern = (r"reg signed \[7:0\] lane\w*_wreg" if hdl == "verilog" else
               r"signal lane\w*_wreg: signed \(7 downto 0\)")
    assert len(re.findall(pattern, text)) == CFG_INT8.lanes
    if (hdl, backend) in (("verilog", "icarus"), ("vhdl", "ghdl")):
        proc = subprocess.run(["sh", "run.sh"], cwd=out, capture_output=True, text=True,
                              timeout=300)
        assert "ASD-CHECK PASS" in proc.stdout + proc.stderr, proc.stdout[-2000:]

"""The backend registry and protocol in contract.backend, without any simulator."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from contract.backend import (
    BACKENDS,
    GOLDEN,
    RTL_BACKENDS,
    BackendRequestError,
    Limits,
    SimulatorMissing,
    for_config,
    get_backend,
)
from contract.errors import AsdError
from contract.image import ImageError
from emu import emulator
from emu.asm import assemble

PROGRAM = """.amem 0 1 2 3 4
.region output 8 4
        SETI r1, 0
        SETI r2, 8
        VLD r1, 4, 4
        STORE r2, 4, 4
        HALT
"""


def test_names_and_unknown_name() -> None:
    assert BACKENDS == (GOLDEN, *RTL_BACKENDS) and GOLDEN == "emu"
    with pytest.raises(BackendRequestError, match="unknown backend 'nope' .*emu, myhdl"):
        get_backend("nope")
    assert issubclass(BackendRequestError, ValueError) and issubclass(SimulatorMissing, AsdError)


def test_contract_imports_no_implementation() -> None:
    # The registry resolves names lazily: importing contract pulls in none of the packages
    # that implement backends.
    code = ("import sys, contract.backend; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'emu', 'accel', 'programs'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("fast", [False, True])
def test_emulator_backend_is_the_emulator(fast: bool) -> None:
    image = assemble(PROGRAM)
    backend = get_backend("emu", fast=fast)
    result = backend.run(image)
    golden = emulator.run(image)
    assert backend.name == result.backend == "emu"
    assert result.counters == golden.counters and result.cycles == golden.cycles
    assert result.region("output").tolist() == [1, 2, 3, 4]
    assert result.wall_seconds >= 0 and result.weights is not None


def test_limits() -> None:
    spin = assemble("LOOP 65535, a\nLOOP 65535, b\nNOP\nb: NOP\na: HALT\n")
    with pytest.raises(emulator.EmulatorError, match="cycle limit 50 reached"):
        get_backend("emu").run(spin, Limits(max_cycles=50))
    for bad in ({"max_cycles": 0}, {"timeout": 0.0}):
        with pytest.raises(BackendRequestError):
            Limits(**bad)


def test_for_config_changes_only_the_pe_kind() -> None:
    image = assemble(PROGRAM)
    other = for_config(image, image.config.replace(pe="multiplier"))
    assert other.config.pe == "multiplier" and np.array_equal(other.text, image.text)
    with pytest.raises(ImageError, match="another accelerator configuration"):
        for_config(image, image.config.replace(lanes=4))


def test_missing_python_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "myhdl", None)
    monkeypatch.delitem(sys.modules, "accel.sims.myhdl_sim", raising=False)
    with pytest.raises(SimulatorMissing, match="pip install myhdl"):
        get_backend("myhdl")

"""Every program fault the emulator names, on every RTL backend: the core halts on the faulting
instruction and the backend raises the same :class:`contract.faults.ProgramFault` (kind, pc,
instruction and message) as the emulator, with none of the instruction's effects."""

from __future__ import annotations

import numpy as np
import pytest

from contract.backend import Limits, get_backend
from contract.faults import Fault, ProgramFault
from contract.image import Image
from emu import emulator
from emu.asm import assemble
from tests.rtl_cases import CFG_A

pytestmark = pytest.mark.rtl

C = CFG_A  # lanes 4, depths: WMEM 64, BMEM 16, AMEM 256, loop_depth 3

# One program per fault kind; each faults on its last instruction before HALT.
PROGRAMS: dict[Fault, str] = {
    Fault.PAST_TEXT: "NOP\nNOP\n",
    Fault.LANES: f"VLD r1, {C.lanes + 1}, 0\nHALT\n",
    Fault.WMEM: f"SETI r2, {C.wmem_depth}\nLOADW r2, 0\nHALT\n",
    Fault.BMEM: f"SETI r4, {C.bmem_depth}\nBIAS r4, 0\nHALT\n",
    # Three lanes from the last word but one: the span leaves AMEM, the start does not.
    Fault.AMEM: f"SETI r1, {C.amem_depth - 2}\nVLD r1, 3, 0\nHALT\n",
    Fault.LOOP_LENGTH: "LOOP 2, 0\nNOP\nHALT\n",
    Fault.LOOP_PAST_TEXT: "LOOP 2, 5\nNOP\nHALT\n",
    Fault.LOOP_OUTER: "LOOP 2, 2\nLOOP 2, 2\nNOP\nNOP\nHALT\n",
    Fault.LOOP_SAME_END: "LOOP 2, 3\nLOOP 2, 2\nNOP\nNOP\nHALT\n",
    Fault.LOOP_DEPTH: "LOOP 2, 8\nLOOP 2, 6\nLOOP 2, 4\nLOOP 2, 2\nNOP\nNOP\nNOP\nNOP\nNOP\n"
                      "HALT\n",
}


def test_every_kind_has_a_program() -> None:
    assert set(PROGRAMS) == set(Fault) - {Fault.NONE}


@pytest.mark.parametrize("kind", sorted(PROGRAMS), ids=lambda k: k.name)
def test_fault_as_the_emulator_names_it(backend: str, kind: Fault) -> None:
    image = assemble(PROGRAMS[kind], C, kind.name)
    with pytest.raises(ProgramFault) as golden:
        emulator.run(image)
    assert golden.value.kind == kind
    with pytest.raises(ProgramFault) as rtl:
        get_backend(backend).run(image, Limits(max_cycles=10_000, timeout=120))
    assert rtl.value.kind == kind
    assert (rtl.value.pc, rtl.value.instr, str(rtl.value)) == \
        (golden.value.pc, golden.value.instr, str(golden.value))


def test_faulting_store_writes_nothing(backend: str) -> None:
    # A STORE whose span leaves AMEM faults before writing its first, in-range word.
    src = f"SETI r3, {C.amem_depth - 1}\nCLR\nSTORE r3, 2, 0\nHALT\n"
    image = assemble(src, C, "store")
    amem = np.arange(C.amem_depth, dtype=np.int64) % 7 + 1
    image = Image(C, image.text, image.weights, image.params, amem, 0, dict(image.regions))
    from accel.sims import common

    be = get_backend(backend)
    assert isinstance(be, common.SimulatorBackend)
    state = be.simulate(image, Limits(max_cycles=10_000, timeout=120))
    assert state.fault is not None and state.fault[0] == Fault.AMEM
    assert state.amem.tolist() == amem.tolist()

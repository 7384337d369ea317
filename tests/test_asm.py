"""Assembler and disassembler: round trips, errors naming file:line:col."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from contract import isa
from contract.config import AccelConfig
from contract.image import Image
from emu.asm import AsmError, assemble, assemble_file, disassemble, format_instr
from tests.profiles import scaled_examples
from tests.strategies import programs_and_configs


@settings(max_examples=scaled_examples(80), suppress_health_check=[HealthCheck.too_slow])
@given(programs_and_configs(wild=True))
def test_asm_of_disasm_rebuilds_the_same_bytes(case: tuple[AccelConfig, Image]) -> None:
    _, img = case
    text = disassemble(img)
    again = assemble(text, source="<disasm>")
    assert again.to_bytes() == img.to_bytes()
    # And the code alone: the same words.
    code_only = assemble(disassemble(img, data=False), source="<code>")
    assert np.array_equal(code_only.text, img.text)


def test_every_instruction_formats_and_reassembles() -> None:
    for ins in isa.INSTRUCTIONS:
        values = {f.name: (f.hi if f.name != "len" else 1) for f in ins.fields}
        word = isa.encode(ins.mnemonic, **values)
        src = format_instr(word) + "\nNOP\nHALT\n"
        assert int(assemble(src).text[0]) == word, ins.mnemonic


def test_labels_and_data_directives() -> None:
    img = assemble("""
.config lanes=2
        SETI r1, 4
        LOOP 3, end     ; body is one MAC
        MAC r0, 1, r1, 1
end:    HALT
.wint 0 128 -64
.req 0 128 3 64 2
.bmem 1 -5 7
.amem 4 1 2 3
.region output 10 2
""")
    assert img.config.lanes == 2
    ins, vals = isa.decode(int(img.text[1]))
    assert ins.mnemonic == "LOOP" and vals == {"count": 3, "len": 1}
    assert img.acts_base == 4 and img.acts.tolist() == [1, 2, 3]
    assert img.params[1].tolist() == [-5, 7]
    assert img.regions == {"output": (10, 2)}


@pytest.mark.parametrize("src, line, col, msg", [
    ("NOP\n  FOO r1\n", 2, 3, "unknown instruction 'FOO'"),
    ("SETI r9, 1\n", 1, 6, "expected a register"),
    ("SETI r1, 70000\n", 1, 10, "out of range"),
    ("SETI r1\n", 1, 1, "takes 2 operand"),
    ("LOOP 2, nowhere\nNOP\n", 1, 9, "unknown label 'nowhere'"),
    ("a: NOP\na: NOP\n", 2, 1, "label 'a' defined twice"),
    ("NOP\n.wint 0 3 5 7\n", 2, 1, "multiple of 8"),
    (".wint 0 11 0 0 0 0 0 0 0\n", 1, 7, "not a sum of two signed powers"),
    (".bogus 1\n", 1, 1, "unknown directive"),
    ("ADDI r1, r2, x\n", 1, 14, "expected an integer"),
])
def test_errors_name_file_line_and_column(src: str, line: int, col: int, msg: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(src, source="prog.s")
    err = info.value
    assert (err.line, err.col) == (line, col), str(err)
    assert msg in str(err)
    assert str(err).startswith(f"prog.s:{line}:{col}: ")


def test_assemble_file_reports_unreadable_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AsmError, match="cannot read"):
        assemble_file(tmp_path / "missing.s")

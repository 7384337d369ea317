"""The ISA table: encode/decode of every instruction, decoding random words, the generated doc."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import isa
from emu import isadoc
from tests.profiles import scaled_examples


def test_table_is_consistent() -> None:
    assert len(isa.BY_OPCODE) == len(isa.INSTRUCTIONS) == len(isa.BY_MNEMONIC)
    for ins in isa.INSTRUCTIONS:
        assert ins.used_bits <= isa.WORD_BITS
        assert ins.cycles == "1" or "n" in {f.name for f in ins.fields}


@st.composite
def instructions(draw: st.DrawFn) -> tuple[str, dict[str, int]]:
    ins = draw(st.sampled_from(isa.INSTRUCTIONS))
    return ins.mnemonic, {f.name: draw(st.integers(f.lo, f.hi)) for f in ins.fields}


@settings(max_examples=scaled_examples(300))
@given(instructions())
def test_encode_decode_round_trip(instr: tuple[str, dict[str, int]]) -> None:
    m, values = instr
    word = isa.encode(m, **values)
    assert 0 <= word < 1 << 32
    ins, back = isa.decode(word)
    assert ins.mnemonic == m and back == values


@settings(max_examples=scaled_examples(300))
@given(st.integers(0, (1 << 32) - 1))
def test_random_words_decode_or_raise_decode_error(word: int) -> None:
    try:
        ins, values = isa.decode(word)
    except isa.DecodeError as exc:
        assert "opcode" in str(exc) or "reserved" in str(exc)
        return
    assert isa.encode(ins.mnemonic, **values) == word


def test_every_opcode_has_a_distinct_word() -> None:
    words = {isa.encode(i.mnemonic, **{f.name: f.lo for f in i.fields}) >> 27
             for i in isa.INSTRUCTIONS}
    assert words == {i.opcode for i in isa.INSTRUCTIONS}


@pytest.mark.parametrize("bad", [{"rd": 8, "imm": 0}, {"rd": 0, "imm": 1 << 16},
                                 {"rd": 0, "imm": -1}, {"rd": 0, "imm": 0, "x": 1}])
def test_encode_refuses_bad_operands(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        isa.encode("SETI", **bad)


def test_unknown_opcode_and_reserved_bits() -> None:
    with pytest.raises(isa.DecodeError, match="unknown opcode 31"):
        isa.decode(31 << 27)
    with pytest.raises(isa.DecodeError, match="reserved"):
        isa.decode(isa.encode("HALT") | 1)


def test_isa_doc_is_up_to_date() -> None:
    assert isadoc.DOC_PATH.read_text() == isadoc.generate(), \
        "docs/isa.md is stale: run python -m emu.isadoc"


def test_isa_doc_documents_every_instruction() -> None:
    text = isadoc.generate()
    for ins in isa.INSTRUCTIONS:
        section = text.split(f"### {ins.mnemonic}\n", 1)[1].split("\n### ", 1)[0]
        for part in ("**Format**", "**Action**", "**Notes**", "**Cycles**"):
            assert part in section, (ins.mnemonic, part)
        assert ins.action in section
    for heading in ("## Machine state", "## Integer semantics", "## Timing model"):
        assert heading in text


def test_isadoc_check_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "isa.md"
    assert isadoc.main(["--output", str(out), "--check"]) == 1
    assert isadoc.main(["--output", str(out)]) == 0
    assert isadoc.main(["--output", str(out), "--check"]) == 0


def test_lowering_limits_come_from_field_widths() -> None:
    """The compiler's limits are the table's field ranges: a 12-bit signed STORE increment,
    a 16-bit LOOP count and a 10-bit LOOP body length."""
    assert isa.STORE_INC_MAX == (1 << 11) - 1
    assert isa.LOOP_COUNT_MAX == (1 << 16) - 1
    assert isa.LOOP_LEN_MAX == (1 << 10) - 1


def test_roles_give_register_effects_and_traffic() -> None:
    mac = isa.BY_MNEMONIC["MAC"]
    f = {"rw": 3, "iw": -2, "rx": 3, "ix": 5}
    assert isa.register_effects(mac, f) == ((3, 3, -2), (3, 3, 5))  # rw == rx: both apply
    assert isa.traffic(mac, f, lanes=4) == {"wmem_reads": 1, "amem_reads": 1, "shift_adds": 4}
    store = isa.BY_MNEMONIC["STORE"]
    g = {"rx": 2, "n": 3, "inc": 8}
    assert isa.register_effects(store, g) == ((2, 2, 8),)
    assert isa.traffic(store, g, lanes=8) == {"amem_writes": 3}
    assert isa.cycles_of(store, g) == 3
    seti = isa.BY_MNEMONIC["SETI"]
    assert isa.register_effects(seti, {"rd": 1, "imm": 7}) == ((1, -1, 7),)
    assert seti.writes == {"R"} and not seti.reads


def test_timing_model_names_the_multi_cycle_rows() -> None:
    multi = [i.mnemonic for i in isa.INSTRUCTIONS if i.cycles == "n"]
    assert multi and all(m in isa.timing_model() for m in multi)

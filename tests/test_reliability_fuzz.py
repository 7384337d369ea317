"""Fuzzing the entry points that read user files: every input gives a correct result or the
project's typed error (:class:`contract.errors.AsdError`), never anything else.

Four property classes, a few hundred cases each in CI and FUZZ_EXAMPLES (10,000) each under
``tox -e fuzz`` (tests/profiles.py): mutated assembler sources, mutated configuration files,
mutated program images, and random emulator programs (step and fast mode must agree, faults
included)."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.config import AccelConfig, ConfigError
from contract.errors import AsdError
from contract.image import Image, ImageError
from emu import emulator
from emu.asm import AsmError, assemble, disassemble
from tests.helpers import assert_same
from tests.profiles import fuzz_examples
from tests.strategies import programs_and_configs, small_configs

SETTINGS = {"suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}

# What a careless or hostile source holds: every mnemonic and directive, signs, huge and
# over-long numbers, stray punctuation, non-ASCII text.
TOKENS = ["MAC", "VMAC", "LOOP", "HALT", "STORE", "LOADW", "SETI", "REQ", "ACT", "CLR", "NOP",
          ".wmem", ".wint", ".bmem", ".amem", ".req", ".region", ".config", "lanes=4",
          "r0", "r7", "r99", "-1", "0", "1", "65535", "-2147483649", "9" * 5000, "0x1f",
          ",", ":", "lbl:", "lbl", ";", "#", "\n", " ", "\t", "\u00e9", "\x00", "=", "1e3"]


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few deletions, insertions of tokens, duplications and replacements."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(chars)))
        kind = draw(st.sampled_from(["delete", "insert", "duplicate", "replace"]))
        if kind == "delete":
            del chars[pos:pos + draw(st.integers(1, 12))]
        elif kind == "insert":
            chars[pos:pos] = list(draw(st.sampled_from(TOKENS)) + draw(st.sampled_from(" ,\n")))
        elif kind == "duplicate":
            chars[pos:pos] = chars[pos:pos + draw(st.integers(1, 40))]
        elif chars:
            chars[min(pos, len(chars) - 1)] = draw(st.characters(max_codepoint=0x2FF))
    return "".join(chars)


@settings(max_examples=fuzz_examples(300), **SETTINGS)  # type: ignore[arg-type]
@given(programs_and_configs(wild=True), st.data())
def test_mutated_sources_assemble_or_name_the_line(case, data) -> None:  # type: ignore[no-untyped-def]
    config, image = case
    source = data.draw(mutated_text(disassemble(image)))
    try:
        got = assemble(source, config, "fuzz.s")
    except AsmError as exc:
        assert str(exc).startswith("fuzz.s")
        return
    # What it accepted is a well-formed image: it survives its own round trip.
    assert Image.from_bytes(got.to_bytes()).to_bytes() == got.to_bytes()


@pytest.fixture(scope="module")
def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="asd-fuzz-"))


@settings(max_examples=fuzz_examples(300), **SETTINGS)  # type: ignore[arg-type]
@given(small_configs(), st.sampled_from([".toml", ".json"]), st.data())
def test_mutated_configuration_files_load_or_raise_config_error(
        scratch: Path, config: AccelConfig, suffix: str, data: st.DataObject) -> None:
    text = config.to_json() if suffix == ".json" else config.to_toml()
    raw = data.draw(st.one_of(mutated_text(text).map(str.encode), st.binary(max_size=200)))
    path = scratch / f"cfg{suffix}"
    path.write_bytes(raw)
    try:
        loaded = AccelConfig.load(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
        return
    again = scratch / f"again{suffix}"
    loaded.save(again)
    assert AccelConfig.load(again) == loaded


def _with_crc(blob: bytes) -> bytes:
    return blob + struct.pack("<I", zlib.crc32(blob))


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid image's bytes flipped, truncated, extended or spliced; the CRC is recomputed
    for most, so the mutation reaches the section parser and the decoder."""
    _, image = draw(programs_and_configs(wild=True))
    blob = bytearray(image.to_bytes()[:-4])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "insert"]))
        pos = draw(st.integers(0, max(0, len(blob) - 1)))
        if kind in ("flip", "byte") and not blob:
            continue
        if kind == "flip":
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            blob[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del blob[pos:]
        else:
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return _with_crc(bytes(blob)) if draw(st.integers(0, 9)) else bytes(blob) + b"\0\0\0\0"


@settings(max_examples=fuzz_examples(200), **SETTINGS)  # type: ignore[arg-type]
@given(mutated_images())
def test_mutated_images_load_and_run_or_raise_typed_errors(blob: bytes) -> None:
    try:
        image = Image.from_bytes(blob, "fuzz.bin")
    except ImageError as exc:
        assert str(exc).startswith("fuzz.bin")
        return
    try:
        emulator.run(image, max_cycles=2_000)
    except AsdError:
        pass


def _outcome(image: Image, fast: bool) -> emulator.RunResult | str:
    try:
        return emulator.run(image, fast=fast, max_cycles=3_000)
    except AsdError as exc:
        return str(exc)


@settings(max_examples=fuzz_examples(200), **SETTINGS)  # type: ignore[arg-type]
@given(programs_and_configs(wild=True))
def test_random_programs_give_the_same_result_or_fault_in_both_modes(case) -> None:  # type: ignore[no-untyped-def]
    _, image = case
    assert_same(_outcome(image, False), _outcome(image, True))

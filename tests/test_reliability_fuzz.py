"""Fuzzing the entry points that read user files: every input gives a correct result or the
project's typed error (:class:`contract.errors.AsdError`), never anything else.

Five property classes, a few hundred cases each in CI (forty ONNX models, each a compile) and
FUZZ_EXAMPLES (10,000) each under ``tox -e fuzz`` (tests/profiles.py): mutated assembler
sources, mutated configuration files, mutated program images, random emulator programs (step
and fast mode must agree, faults included) and mutated ONNX graphs (attributes, shapes,
NaN/Inf/huge weights, opsets; a model accepted must run bit-exact against the integer
reference)."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
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
        event("refused: AsmError")
        assert str(exc).startswith("fuzz.s")
        return
    event("accepted")
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
        event("refused: ConfigError")
        assert str(exc).startswith(str(path))
        return
    event("accepted")
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
        event("refused: ImageError")
        assert str(exc).startswith("fuzz.bin")
        return
    try:
        emulator.run(image, max_cycles=2_000)
        event("loaded and ran to HALT")
    except AsdError as exc:
        event(f"loaded, run refused: {type(exc).__name__}")


def _outcome(image: Image, fast: bool) -> emulator.RunResult | str:
    try:
        return emulator.run(image, fast=fast, max_cycles=3_000)
    except AsdError as exc:
        return str(exc)


@settings(max_examples=fuzz_examples(200), **SETTINGS)  # type: ignore[arg-type]
@given(programs_and_configs(wild=True))
def test_random_programs_give_the_same_result_or_fault_in_both_modes(case) -> None:  # type: ignore[no-untyped-def]
    _, image = case
    step = _outcome(image, False)
    event("fault" if isinstance(step, str) else "HALT")
    assert_same(step, _outcome(image, True))


# Attribute values a careless exporter or a hostile user writes: zero, negative, fractional,
# huge, the wrong length.
WILD_INTS = st.sampled_from([1, 1, 2, 2, 3, 0, -1, 7, 1 << 31])
WILD_LISTS = st.lists(WILD_INTS, min_size=1, max_size=5)


@st.composite
def mutated_onnx_models(draw: st.DrawFn) -> tuple[object, np.ndarray]:
    """A Conv (and sometimes a pool after it) with wild attributes, weight shapes, values
    (NaN, Inf, huge) and opset; the calibration images to compile it with."""
    from onnx import TensorProto, helper, numpy_helper

    c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(3, 7))
    co, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    # Listed more than once: most draws well-formed, so that accepted models are common too.
    good = (co, c, k, k)
    wshape = draw(st.sampled_from([good, good, good, (co, c + 1, k, k), (co, c, k),
                                   (co, c, k, 9)]))
    weight = draw(st.sampled_from([0.1, -0.5, 3.0, 0.25, 1e30, np.nan, np.inf])) * np.ones(wshape)
    weight.flat[0] = draw(st.floats(-2, 2, allow_nan=False))
    attrs: dict[str, Any] = {}
    for name in draw(st.sets(st.sampled_from(["strides", "pads", "group", "kernel_shape",
                                               "dilations", "auto_pad"]), max_size=2)):
        if name == "group":
            attrs[name] = draw(WILD_INTS)
        elif name == "auto_pad":
            attrs[name] = draw(st.sampled_from(["SAME_UPPER", "VALID", "NOTSET", "bogus"]))
        else:
            sane = {"pads": [[0] * 4, [1] * 4], "kernel_shape": [[k, k]]}.get(name, [[1, 1],
                                                                                    [2, 2]])
            attrs[name] = draw(st.one_of(st.sampled_from(sane), WILD_LISTS))
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv1", **attrs)]
    out = "y"
    if draw(st.booleans()):
        pool = draw(st.sampled_from(["MaxPool", "AveragePool"]))
        nodes.append(helper.make_node(pool, ["y"], ["z"], name="pool1",
                                      kernel_shape=draw(WILD_LISTS), strides=draw(WILD_LISTS)))
        out = "z"
    graph = helper.make_graph(
        nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight.astype(np.float32), "W"),
         numpy_helper.from_array(np.zeros(co, np.float32), "B")])
    opset = draw(st.sampled_from([13, 13, 13, 17, 11, 999]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    calib = np.random.default_rng(0).random((2, c, h, w)).astype(np.float32)
    return model, calib


@settings(max_examples=fuzz_examples(40), **SETTINGS)  # type: ignore[arg-type]
@given(mutated_onnx_models())
def test_mutated_onnx_models_compile_and_run_bit_exact_or_raise_typed_errors(case) -> None:  # type: ignore[no-untyped-def]
    from programs import runtime
    from programs.manifest import compile_model

    model, calib = case
    try:
        compiled = compile_model(model, AccelConfig(), calib)
    except AsdError as exc:
        event(f"refused: {type(exc).__name__}")
        assert "\n" not in str(exc)
        return
    event("accepted, run bit-exact")
    # Accepted: the emulator must agree bit for bit with the integer reference (run raises
    # DivergenceError otherwise, which is not an accepted outcome here).
    rep = runtime.run(compiled, calib[:1], emulate="all")
    assert rep.first_int_divergence is None

"""The program image: round trip, typed errors for every kind of bad input."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.config import AccelConfig
from contract.image import IMAGE_VERSION, Image, ImageError
from emu.emulator import EmulatorError, predecode
from tests.profiles import scaled_examples
from tests.strategies import programs_and_configs


def _image() -> Image:
    c = AccelConfig(lanes=2, amem_depth=256)
    return Image(c, np.array([1 << 27]), np.array([[3, 5]]), np.array([[-7, 9]]),
                 np.array([1, -2, 3]), 10, {"output": (100, 4)})


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip_and_readmemh(tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = _image()
    back = Image.from_bytes(img.to_bytes())
    assert back.to_bytes() == img.to_bytes()
    assert back.regions == {"output": (100, 4)} and back.acts_base == 10
    # Weight codes come back in their stored width (8 bits here), as compiled images hold them.
    assert back.weights.dtype == np.uint8 and np.array_equal(back.weights, img.weights)
    files = img.readmemh(tmp_path)
    assert len(files["amem"].read_text().split()) == 256
    assert files["wmem"].read_text().split()[0] == f"{(5 << 8) | 3:04x}"


@pytest.mark.parametrize("mutate, msg", [
    (lambda b: b"XXXX" + b[4:], "wrong magic"),
    (lambda b: _with_crc(b[:4] + struct.pack("<H", IMAGE_VERSION + 1) + b[6:-4]), "version"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "CRC32"),
    (lambda b: b[:20], "CRC32|too short"),
    (lambda b: b[:5], "too short"),
    (lambda b: _with_crc(b[:8] + bytes(8) + b[16:-4]), "configuration hash"),
])
def test_bad_images_raise_image_error(mutate, msg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageError, match=msg):
        Image.from_bytes(mutate(_image().to_bytes()))


def test_with_acts_equals_a_new_image_and_checks_the_acts() -> None:
    img = _image()
    other = img.with_acts(np.array([4, 5, -6, 7]), 3)
    assert other.to_bytes() == Image(img.config, img.text, img.weights, img.params,
                                     np.array([4, 5, -6, 7]), 3, img.regions).to_bytes()
    assert img.acts.tolist() == [1, -2, 3] and img.acts_base == 10  # the original kept
    with pytest.raises(ImageError, match="activations must fit 8 signed bits"):
        img.with_acts(np.array([1, 128]))
    with pytest.raises(ImageError, match="exceed amem_depth 256"):
        img.with_acts(np.zeros(10, np.int64), 250)


def test_acts_in_the_storage_type_stay_narrow_and_are_still_checked() -> None:
    """Activations given in the configuration's storage type are kept in it (the runtime's
    tiles place int8), give the same bytes and memories as int64, and a range narrower than
    the type (act_bits 5 in int8) is still checked."""
    img = _image()
    narrow = img.with_acts(np.array([4, 5, -6, 7], np.int8), 3)
    wide = img.with_acts(np.array([4, 5, -6, 7]), 3)
    assert narrow.acts.dtype == np.int8 and wide.acts.dtype == np.int64
    assert narrow.to_bytes() == wide.to_bytes()
    assert np.array_equal(narrow.initial_memories()["amem"], wide.initial_memories()["amem"])
    assert Image.from_bytes(narrow.to_bytes()).acts.tolist() == [4, 5, -6, 7]
    assert img.with_acts(np.array([1, 2], np.int16)).acts.dtype == np.int64
    five = img.config.replace(act_bits=5)
    with pytest.raises(ImageError, match="activations must fit 5 signed bits"):
        Image(five, img.text, img.weights, img.params, np.array([1, 16], np.int8))


def test_with_acts_of_shares_another_images_activations() -> None:
    img = _image()
    donor = Image(img.config, np.array([2 << 27]), np.array([[1, 1]]), np.array([[0, 0]]),
                  np.array([9, -9]), 40, {})
    got = img.with_acts_of(donor)
    assert got.to_bytes() == img.with_acts(donor.acts, 40).to_bytes()
    assert got.acts is donor.acts and got.text is img.text and got.regions == img.regions
    assert img.acts.tolist() == [1, -2, 3] and img.acts_base == 10  # the original kept
    foreign = Image(img.config.replace(amem_depth=64), donor.text, donor.weights,
                    donor.params, donor.acts, 40, {})
    with pytest.raises(ImageError, match="another accelerator configuration"):
        img.with_acts_of(foreign)


def test_foreign_configuration_is_refused() -> None:
    img = _image()
    with pytest.raises(ImageError, match="lanes: image 2 vs 4"):
        img.check_config(img.config.replace(lanes=4))


def test_unknown_opcode_is_an_emulator_error_naming_the_pc() -> None:
    img = Image(AccelConfig(), np.array([0, 31 << 27]))
    with pytest.raises(EmulatorError, match=r"^pc 1 \(0xf8000000\): unknown opcode 31"):
        predecode(img)


@settings(max_examples=scaled_examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_image_error(blob: bytes) -> None:
    with pytest.raises(ImageError):
        Image.from_bytes(blob)


@settings(max_examples=scaled_examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(programs_and_configs(wild=True), st.data())
def test_corrupted_images_with_valid_crc_only_raise_typed_errors(case, data) -> None:  # type: ignore[no-untyped-def]
    """Mutations past the CRC check reach the section parser, JSON and the decoder."""
    _, img = case
    blob = bytearray(img.to_bytes()[:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        loaded = Image.from_bytes(_with_crc(bytes(blob)))
    except ImageError:
        return
    try:
        predecode(loaded)
    except EmulatorError as exc:
        assert exc.pc is not None


def test_non_table_regions_are_image_errors() -> None:
    img = _image()
    blob = img.to_bytes()[:-4]
    meta_at = blob.index(b'{"regions"')
    bad = blob[:meta_at] + b'{"regions": [1, 2, 3, 4, 5, 6, 7]}'[: len(blob) - meta_at]
    bad = bad.ljust(len(blob), b" ")
    with pytest.raises(ImageError):
        Image.from_bytes(_with_crc(bad))

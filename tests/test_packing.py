"""Packing codes into bytes: layout, round trip, bitstring agreement, size accounting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from asd import packing
from tests.strategies import codes_with_width


@given(codes_with_width())
def test_round_trip_and_bitstring_agreement(cw):
    codes, bits = cw
    data = packing.pack(codes, bits)
    assert data.dtype == np.uint8 and data.size == packing.packed_size(codes.size, bits)
    assert np.array_equal(data, packing.pack_bitstring(codes, bits))
    assert np.array_equal(packing.unpack(data, bits, codes.size), codes)


def test_layout_is_msb_first_and_padded_with_zeros():
    # 3-bit codes 0b101, 0b011, 0b111 -> 101 011 11|1 0000000
    assert packing.pack([5, 3, 7], 3).tolist() == [0b10101111, 0b10000000]
    assert packing.pack([0x12, 0x34], 8).tolist() == [0x12, 0x34]
    assert packing.pack([0x1234], 16).tolist() == [0x12, 0x34]


def test_bad_codes_and_lengths_are_rejected():
    with pytest.raises(ValueError):
        packing.pack([8], 3)
    with pytest.raises(ValueError):
        packing.pack([-1], 3)
    with pytest.raises(ValueError):
        packing.unpack(np.zeros(3, np.uint8), 3, 3)


def test_size_report_counts_codes_padding_scales_and_biases():
    r = packing.SizeReport(count=10, code_bits=3, scale_count=2, extra_bits=64)
    assert r.payload_bits == 32  # 30 bits padded to 4 bytes
    assert r.total_bits == 32 + 2 * 16 + 64  # scales are float16
    assert r.bits_per_weight == pytest.approx((32 + 32) / 10)


def test_size_report_counts_a_scale_header():
    # a packed scale format: per-channel fields of 13 bits plus the tensor's header and padding
    r = packing.SizeReport(count=9, code_bits=8, scale_count=3, scale_bits=13,
                           scale_header_bits=16 + 1)
    assert r.scales_bits == 3 * 13 + 17
    assert r.total_bits == 72 + 56 and r.as_dict()["scales_bits"] == 56
    assert r.bits_per_weight == pytest.approx((72 + 56) / 9)

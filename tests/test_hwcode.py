"""The two-digit hardware weight code and the shift-add product built on it."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from contract import hwcode
from contract.semantics import round_shift, shift_add, wrap


def test_every_code_decodes_and_canonical_code_round_trips():
    for e in (1, 2, 3, 4):
        codes = np.arange(1 << hwcode.code_bits(e))
        values = hwcode.to_int(codes, e)
        uniq = np.unique(values)
        assert np.array_equal(hwcode.to_int(hwcode.encode(uniq, e), e), uniq)
        # Values are sums of two signed powers of two inside the window (+-2^W the one beyond).
        top = hwcode.window(e) - 1
        assert np.abs(uniq).max() == 1 << (top + 1)


def test_encode_rejects_three_digit_values():
    import pytest

    with pytest.raises(ValueError, match="11"):
        hwcode.encode(np.array([0, 11]), 3)  # 11 = 8 + 2 + 1 needs three digits


@given(st.integers(-(1 << 7), (1 << 7) - 1), st.integers(0, 255))
def test_shift_add_is_exact_product(x, code):
    assert int(shift_add(x, code, 3)) == x * int(hwcode.to_int(code, 3))


@given(st.integers(-(1 << 40), 1 << 40), st.integers(0, 40))
def test_round_shift_rounds_half_up(t, s):
    got = int(round_shift(t, s))
    exact = t / (1 << s)
    assert got == int(np.floor(exact + 0.5)) or (s == 0 and got == t)


@given(st.integers(-(1 << 50), 1 << 50), st.integers(2, 40))
def test_wrap_keeps_low_bits(v, bits):
    w = wrap(v, bits)
    assert -(1 << (bits - 1)) <= w < (1 << (bits - 1))
    assert (w - v) % (1 << bits) == 0

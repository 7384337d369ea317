"""CSD: non-adjacent, minimal weight, equal to the csdigit package (test-only dependency)."""

from __future__ import annotations

import functools

import csdigit.csd as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asd import csd
from tests.strategies import fixed_point_ints


@given(st.lists(fixed_point_ints, min_size=1, max_size=20))
def test_digits_are_non_adjacent_and_exact(ns):
    d = csd.csd_digits(ns)
    assert np.array_equal(csd.from_digits(d), np.asarray(ns))
    nz = d != 0
    assert not np.any(nz[..., 1:] & nz[..., :-1])
    assert set(np.unique(d)) <= {-1, 0, 1}


@given(fixed_point_ints)
def test_integer_csd_equals_csdigit(n):
    assert csd.to_string(n) == ref.to_csd_i(n)


@given(st.integers(-(1 << 30), 1 << 30), st.integers(1, 12))
def test_fixed_point_csd_equals_csdigit(n, places):
    x = n / 2.0**places
    # csdigit starts fractions below one at the 1/2 digit, so for 2/3 < |x| < 1 (whose CSD
    # begins with a digit at 2**0) it returns adjacent non-zeros ('0.++' for 0.75): not a CSD.
    if 2 / 3 < abs(x) < 1:
        assert csd.to_string(n, places).startswith(("+.", "-."))
        return
    assert csd.to_string(n, places) == ref.to_csd(x, places)
    assert csd.from_digits(csd.csd_fixed(x, places)) == n


@functools.cache
def _min_weight_table(limit: int) -> dict[int, int]:
    # Breadth-first over sums of signed powers of two: fewest digits of any signed-digit form.
    powers = [1 << i for i in range(limit.bit_length() + 2)]
    best = {0: 0}
    frontier = {0}
    depth = 0
    while frontier:
        depth += 1
        nxt = set()
        for v in frontier:
            for p in powers:
                for w in (v + p, v - p):
                    if abs(w) <= 4 * limit and w not in best:
                        best[w] = depth
                        nxt.add(w)
        frontier = nxt if depth < 6 else set()
    return best


@given(st.integers(-300, 300))
def test_csd_has_minimal_weight(n):
    table = _min_weight_table(300)
    assert int(csd.nonzero_digits(n)) == table[n]


def test_fixed_point_rounds_ties_away_from_zero():
    assert csd.to_fixed([0.5, -0.5, 1.5, -1.5, 0.25], 0).tolist() == [1, -1, 2, -2, 0]
    with pytest.raises(ValueError):
        csd.to_fixed([np.nan], 3)


def test_csdigit_gap_below_one_is_real():
    # The reason for the carve-out above: our CSD of 0.75 is 1 - 1/4, csdigit's is 1/2 + 1/4.
    assert csd.to_string(3, 2) == "+.0-"
    assert ref.to_csd(0.75, 2) == "0.++"


def test_popcount_matches_python():
    v = np.array([0, 1, 255, (1 << 60) + 5, 12345678901])
    assert csd.popcount(v).tolist() == [bin(int(x)).count("1") for x in v]

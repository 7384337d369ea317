"""The compiler's fitting helper and the static cycle count its tiles carry."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import isa
from emu.asm import assemble_file
from emu.emulator import run
from programs.fit import DoesNotFit, balanced_groups, fit_in_groups

EXAMPLES = Path(__file__).resolve().parents[1] / "programs" / "examples"


@given(st.integers(1, 500), st.integers(1, 64))
def test_balanced_groups_cover_items_in_fewest_even_groups(n: int, most: int) -> None:
    groups = balanced_groups(n, most)
    assert groups[0][0] == 0 and groups[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(groups, groups[1:]))
    sizes = [stop - start for start, stop in groups]
    assert max(sizes) <= most and len(groups) == -(-n // most)
    assert all(s == sizes[0] for s in sizes[:-1]) and 0 < sizes[-1] <= sizes[0]


def test_fit_in_groups_halves_the_group_size_until_every_group_fits() -> None:
    tried: list[int] = []

    def build(start: int, stop: int) -> list[tuple[int, int]]:
        tried.append(stop - start)
        if stop - start > 5:
            raise DoesNotFit("too big")
        return [(start, stop)]

    parts = fit_in_groups(20, 16, build, ValueError)
    assert parts == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20)]
    assert tried == [10, 7, 4, 4, 4, 4, 4]  # at most 16: two 10s; 8: three 7s; 4: five 4s


def test_fit_in_groups_refuses_when_one_item_does_not_fit() -> None:
    def build(start: int, stop: int) -> list[int]:
        raise DoesNotFit(f"items {start}..{stop} need more")

    with pytest.raises(ValueError, match="items 0..1 need more"):
        fit_in_groups(5, 4, build, ValueError)


@pytest.mark.parametrize("name", ["dot", "conv3x3", "maxpool"])
def test_static_cycles_equal_the_emulator_count(name: str) -> None:
    img = assemble_file(EXAMPLES / f"{name}.s")
    assert isa.static_cycles(img.text) == run(img).counters["cycles"]

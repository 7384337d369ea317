"""The designs ``asd hwreport`` compares, one row each: the shift-add PE and its baselines.

* ``shiftadd``: the shift-add PE fed ASD codes (what this project builds);
* ``int8``, ``int8_booth``, ``int8_array``: a multiplier fed plain 8-bit weights (the format
  a user would pick at equal accuracy; its W register holds the 8 bits, no decoder), with
  its product resolved, or, where the shift-add side keeps its sums unresolved (carry-save
  and tree modes), as Booth radix-4 or plain partial products summed by the same
  accumulator (:mod:`accel.pairs`).  The strongest of them per row
  (:func:`strongest_int8`) is *the* baseline;
* ``multiplier``: a multiplier fed the ASD code decoded to an integer at load (a
  ``2^E + 2``-bit W register and a ROM per lane): the second, weaker baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.config import AccelConfig

from .lanes import lane_mode


@dataclass(frozen=True)
class Kind:
    name: str
    pe: str
    weights: str
    form: str
    label: str

    def config(self, base: AccelConfig) -> AccelConfig:
        return base.replace(pe=self.pe, weights=self.weights)


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("shiftadd", "shiftadd", "asd", "resolved", "shift-add PE, ASD codes"),
    Kind("multiplier", "multiplier", "asd", "resolved",
         "multiplier fed the ASD code decoded to an integer"),
    Kind("int8", "multiplier", "int8", "resolved", "int8 multiplier, resolved product"),
    Kind("int8_booth", "multiplier", "int8", "booth",
         "int8 multiplier, Booth radix-4 partial products unresolved"),
    Kind("int8_array", "multiplier", "int8", "array",
         "int8 multiplier, plain partial-product array unresolved"),
)}
INT8_KINDS = ("int8", "int8_booth", "int8_array")


def kinds_for(mode: str, target: str = "pe") -> tuple[str, ...]:
    """The kinds a mode builds: partial-product forms only where sums stay unresolved."""
    if target == "core":  # the core's lanes resolve their products
        return ("shiftadd", "multiplier", "int8")
    spec = lane_mode(mode)
    if spec.carry_save or spec.tree:
        return tuple(KINDS)
    return tuple(k for k, v in KINDS.items() if v.form == "resolved")


def check_kinds(names: list[str], mode: str, target: str) -> None:
    """Refuse a kind the mode does not build, naming those it does."""
    allowed = kinds_for(mode, target)
    for n in names:
        if n not in KINDS:
            raise ValueError(f"unknown PE kind {n!r} (known: {', '.join(KINDS)})")
        if n not in allowed:
            where = "the core" if target == "core" else f"mode {mode!r}"
            raise ValueError(f"kind {n!r} keeps partial products unresolved, which {where} "
                             f"does not (it builds: {', '.join(allowed)})")


def cost(m: Mapping[str, Any]) -> float | None:
    """The figure a user would pick a baseline by: cell critical path x area x energy (the
    energy left out where none was simulated, e.g. the core)."""
    path, area, energy = m.get("asic_crit_ns"), m.get("asic_area"), m.get("asic_energy_pj")
    if path is None or area is None:
        return None
    return float(path * area * (energy if energy is not None else 1.0))


def strongest_int8(row: Mapping[str, Any]) -> str | None:
    """The int8 form of ``row`` with the lowest :func:`cost` (None: no int8 measured)."""
    have = [(cost(row[k]), k) for k in INT8_KINDS if k in row and cost(row[k]) is not None]
    return min(have)[1] if have else None

"""Energy per inference of a compiled network on one PE-array design.

The emulator's counters of one image give its cycles, the cycles that do a MAC in every
lane (``MAC``, ``SHIFTADD``), the products of ``VMAC`` (one lane served a cycle: depthwise
layers, pooling, residual adds; the ``shift_adds`` counter less those of the other
instructions) and the sums (``BIAS``, ``CLR``: each starts one sum in every lane).  On a PE
array of mode ``m``:

* a MAC cycle costs the energy per cycle measured on the layer's stream (cell netlist, timed
  by OpenSTA's delays, clock pins included); in mode ``tree`` a lane does
  :data:`accel.lanes.TREE_PRODUCTS` MACs a cycle, so there are that many times fewer; a VMAC
  cycle costs an idle cycle plus one lane's share of what a MAC cycle adds to it;
* every other cycle of the program (loads, requantization, pooling, stores, loop control),
  and in mode ``carrysave_drain`` the zero-product cycles each sum needs before it is read
  (:func:`accel.lanes.readout_latency`), costs the energy of an idle cycle of the same
  netlist (its clocks and registers, measured on a stream of zero activations);
* images per second are at the design's own cell Fmax (1 / its critical path).

Not counted: the memories (WMEM, AMEM, BMEM reads and writes), the core's control and
requantization PE, wires (the netlists are before placement).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import isa
from contract.config import AccelConfig

from .lanes import products_per_cycle, readout_latency

# The instruction classes, from the ISA table's columns (no mnemonic is named here): a product
# in every lane (shift-adds that set a product register, all lanes at once); a product in one
# lane served a cycle (VMAC); a shift-add per lane besides the products (the requantization
# PE); an accumulation (re)started in every lane.
MAC_OPS = tuple(i.mnemonic for i in isa.INSTRUCTIONS
                if i.shift_adds and "P" in i.writes and not i.serves_lanes)
SINGLE_OPS = tuple(i.mnemonic for i in isa.INSTRUCTIONS if i.shift_adds and i.serves_lanes)
LANE_OPS = tuple(i.mnemonic for i in isa.INSTRUCTIONS if i.shift_adds and "P" not in i.writes)
SUM_OPS = tuple(i.mnemonic for i in isa.INSTRUCTIONS
                if i.access("A") == "sets" and not i.serves_lanes)


@dataclass(frozen=True)
class NetworkCycles:
    """One image of a compiled network, from the emulator's counters."""

    name: str
    cycles: int
    mac_cycles: int  # a MAC in every lane
    single_products: int  # VMAC: a MAC in one lane
    sums: int

    @classmethod
    def from_counters(cls, name: str, cycles: int, ops: Mapping[str, int], shift_adds: int,
                      lanes: int) -> NetworkCycles:
        full = sum(int(ops.get(o, 0)) for o in MAC_OPS)
        single = int(shift_adds) - lanes * (full + sum(int(ops.get(o, 0)) for o in LANE_OPS))
        if single < 0 or (single and not any(ops.get(o) for o in SINGLE_OPS)):
            raise ValueError(f"{name}: {shift_adds} shift-adds do not match the operations "
                             f"counted with {lanes} lanes")
        return cls(name, int(cycles), full, single, sum(int(ops.get(o, 0)) for o in SUM_OPS))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cycles": self.cycles, "mac_cycles": self.mac_cycles,
                "single_lane_macs": self.single_products, "sums": self.sums}


def per_inference(figures: Mapping[str, Any], net: NetworkCycles, config: AccelConfig,
                  mode: str) -> dict[str, Any] | None:
    """Datapath energy (uJ) and images per second of ``net`` on the design whose cell
    figures are ``figures`` (None when the design has no idle-cycle energy measured)."""
    keys = ("asic_idle_pj_per_cycle", "asic_energy_pj", "asic_stream_cycles",
            "asic_mac_cycles", "asic_crit_ns")
    if any(figures.get(k) is None for k in keys):
        return None
    idle, stream, span, words, crit = (float(figures[k]) for k in keys)
    mac_pj = (stream - (span - words) * idle) / words  # the stream's tail cycles are idle
    mac_cycles = math.ceil(net.mac_cycles / products_per_cycle(mode))
    drain = net.sums * readout_latency(config, mode) if mode == "carrysave_drain" else 0
    cycles = net.cycles - net.mac_cycles + mac_cycles + drain
    busy = mac_cycles + net.single_products / config.lanes  # in whole MAC cycles
    energy_pj = cycles * idle + busy * (mac_pj - idle)
    return {"cycles": cycles, "mac_cycles": mac_cycles, "drain_cycles": drain,
            "pj_per_mac_cycle": round(mac_pj, 2), "pj_per_idle_cycle": round(idle, 2),
            "energy_uj": round(energy_pj / 1e6, 3),
            "mac_energy_share": round(busy * mac_pj / energy_pj, 3),
            "fmax_mhz": round(1000.0 / crit, 1),
            "images_per_s": float(f"{1e9 / (crit * cycles):.4g}")}

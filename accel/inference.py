"""Energy per inference of a compiled network on one PE-array design.

The emulator's counters of one image give its cycles, the cycles that do MACs (``MAC`` and
``SHIFTADD``: one product per lane) and the sums (``BIAS``, ``CLR``: each starts one sum in
every lane).  On a PE array of mode ``m``:

* MAC cycles cost the energy per cycle measured on the layer's stream (cell netlist, timed
  by OpenSTA's delays, clock pins included); in mode ``tree`` a lane does
  :data:`accel.lanes.TREE_PRODUCTS` MACs a cycle, so there are that many times fewer;
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

from contract.config import AccelConfig

from .lanes import products_per_cycle, readout_latency

MAC_OPS = ("MAC", "SHIFTADD")
SUM_OPS = ("BIAS", "CLR")


@dataclass(frozen=True)
class NetworkCycles:
    """One image of a compiled network, from the emulator's counters."""

    name: str
    cycles: int
    mac_cycles: int
    sums: int

    @classmethod
    def from_counters(cls, name: str, cycles: int, ops: Mapping[str, int]) -> NetworkCycles:
        if ops.get("VMAC", 0):  # one lane a cycle: neither a full MAC cycle nor an idle one
            raise ValueError(f"{name}: VMAC cycles are not modelled")
        return cls(name, int(cycles), sum(int(ops.get(o, 0)) for o in MAC_OPS),
                   sum(int(ops.get(o, 0)) for o in SUM_OPS))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cycles": self.cycles, "mac_cycles": self.mac_cycles,
                "sums": self.sums}


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
    energy_pj = mac_cycles * mac_pj + (cycles - mac_cycles) * idle
    return {"cycles": cycles, "mac_cycles": mac_cycles, "drain_cycles": drain,
            "pj_per_mac_cycle": round(mac_pj, 2), "pj_per_idle_cycle": round(idle, 2),
            "energy_uj": round(energy_pj / 1e6, 3),
            "mac_energy_share": round(mac_cycles * mac_pj / energy_pj, 3),
            "fmax_mhz": round(1000.0 / crit, 1),
            "images_per_s": round(1e9 / (crit * cycles), 1)}

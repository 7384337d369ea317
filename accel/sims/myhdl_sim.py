"""The ``myhdl`` backend: the core in MyHDL's own simulator, memories as Python lists."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from myhdl import StopSimulation, always, block, delay, instance

from contract import isa
from contract.backend import BackendTimeout, Limits
from contract.config import AccelConfig
from contract.image import Image

from .. import core as core_mod
from ..hdl import fast_elaboration
from . import common
from .clocking import clock, reset_pulse


def packed_memories(image: Image, config: AccelConfig) -> dict[str, list[int]]:
    """Memory words as the core's ports see them: lane 0 in the least significant bits."""
    mems = image.initial_memories()
    lane_bits = {"wmem": config.weight_bits, "bmem": config.acc_bits}
    out: dict[str, list[int]] = {}
    for name, mem in mems.items():
        if name in lane_bits:
            b = lane_bits[name]
            m = (1 << b) - 1
            out[name] = [sum((int(v) & m) << (i * b) for i, v in enumerate(row))
                         for row in mem.tolist()]
        else:
            bits = 32 if name == "imem" else config.act_bits
            out[name] = [int(v) & ((1 << bits) - 1) for v in mem.tolist()]
    return out


@block
def _bench(config: AccelConfig, ports: dict[str, Any], mems: dict[str, list[int]],
           max_cycles: int, deadline: float, out: dict[str, Any]) -> Any:
    p = ports
    dut = core_mod.core(**p, config=config)
    clk, rst = p["clk"], p["rst"]
    imem, wmem, bmem, amem = mems["imem"], mems["wmem"], mems["bmem"], mems["amem"]
    wtick = p["amem_we"].__class__(bool(0))  # toggled after a write so the read port refreshes

    @always(clk.posedge)
    def mem_write() -> None:
        if p["amem_we"]:
            amem[int(p["amem_addr"])] = int(p["amem_wdata"])
            wtick.next = not wtick

    @instance
    def mem_read() -> Any:
        while True:
            p["imem_data"].next = imem[int(p["imem_addr"])]
            p["wmem_data"].next = wmem[int(p["wmem_addr"])]
            p["bmem_data"].next = bmem[int(p["bmem_addr"])]
            p["amem_rdata"].next = amem[int(p["amem_addr"])]
            yield p["imem_addr"], p["wmem_addr"], p["bmem_addr"], p["amem_addr"], wtick

    @instance
    def control() -> Any:
        p["text_len"].next = len(mems["imem_text"])
        yield from reset_pulse(clk, rst)
        n = 0
        while True:
            yield clk.posedge
            if p["halted"]:
                break
            n += 1
            if n & 1023 == 0 and time.monotonic() > deadline:
                out["error"] = BackendTimeout(f"myhdl: wall-clock timeout after {n} cycles")
                raise StopSimulation()
            if int(p["cycles"]) >= max_cycles:
                out["error"] = BackendTimeout(
                    f"myhdl: cycle limit {max_cycles} reached without HALT")
                raise StopSimulation()
        out["cycles"] = int(p["cycles"])
        if int(p["fault"]):
            out["fault"] = (int(p["fault"]), int(p["imem_addr"]), int(p["fault_arg"]))
        acc = []
        for i in range(config.lanes):
            p["dbg_sel"].next = i
            yield delay(1)
            acc.append(int(p["dbg_acc"]))
        regs = []
        for i in range(isa.NUM_REGS):
            p["dbg_sel"].next = i
            yield delay(1)
            regs.append(int(p["dbg_reg"]))
        out["acc"], out["regs"] = acc, regs
        raise StopSimulation()

    return dut, mem_write, mem_read, clock(clk), control


class MyhdlBackend(common.SimulatorBackend):
    name = "myhdl"

    def simulate(self, image: Image, limits: Limits) -> common.FinalState:
        config = image.config
        mems = packed_memories(image, config)
        mems["imem_text"] = [int(w) for w in image.text]
        ports = core_mod.make_ports(config)
        out: dict[str, Any] = {}
        with fast_elaboration():
            bench = _bench(config, ports, mems, limits.max_cycles,
                           time.monotonic() + limits.timeout, out)
        bench.run_sim(quiet=1)
        bench.quit_sim()
        if "error" in out:
            raise out["error"]
        return common.FinalState(
            out["cycles"], common.to_signed(out["acc"], config.acc_bits), out["regs"],
            common.to_signed(np.array(mems["amem"], np.int64), config.act_bits),
            out.get("fault"))

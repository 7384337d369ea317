"""The designs ``asd hwreport`` synthesizes, as Verilog files in a directory.

* ``pe``: the PE array alone -- the lanes' PEs of :mod:`accel.pe` exactly as the core
  instantiates them, with the activation broadcast from one register, each lane's weight
  register (the code for ``shiftadd``; for ``multiplier`` the integer decoded when it is
  loaded, as in the core), a product register and the accumulator.  The product register
  splits the product from the accumulate (one MAC per lane per cycle either way: equal
  throughput), so the critical path of each PE kind is that of its own product stage unless
  the accumulate stage, identical for both, is longer.  ``mode="direct"`` drops the product
  register (the core lane's single-cycle MAC); ``mode="product"`` keeps only the product
  stage (the accumulator register just holds the last product, no adder): the PE alone.
  One lane's accumulator is read out through a registered mux (``sel``), so the pin count
  does not grow with the lanes.
* ``core``: the whole core of :mod:`accel.core` as :mod:`accel.export` converts it.

For place and route every design is wrapped in :func:`scan_wrapper`: all its inputs come
from flip-flops and all its outputs go into flip-flops of one scan chain, so only five pins
are used and every path of the design is a register-to-register path.  Area figures are
taken from the design alone (without the wrapper).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from myhdl import Signal, always_comb, always_seq, block, intbv

from asd import hwcode
from emu.config import AccelConfig

from . import core as core_mod
from . import pe as pe_mod

PE_ARRAY_NAME = "asd_pe_array"
WRAPPER_NAME = "asd_synth_top"
MODES = ("pipelined", "direct", "product")


def _signed(bits: int) -> Signal:
    return Signal(intbv(0, min=-(1 << (bits - 1)), max=1 << (bits - 1)))


def _unsigned(bits: int) -> Signal:
    return Signal(intbv(0)[bits:])


def sel_bits(lanes: int) -> int:
    return max(1, (lanes - 1).bit_length())


def pe_array_ports(config: AccelConfig) -> dict[str, tuple[int, str]]:
    """``name -> (width, 'in'|'out')`` of the PE array (width 0: one-bit)."""
    c = config
    return {"clk": (0, "in"), "rst": (0, "in"), "x_in": (c.act_bits, "in"),
            "w_in": (c.lanes * c.code_bits, "in"), "load": (0, "in"),
            "sel": (sel_bits(c.lanes), "in"), "acc_out": (c.acc_bits, "out")}


@block
def pe_array(clk: Any, rst: Any, x_in: Any, w_in: Any, load: Any, sel: Any, acc_out: Any,
             config: AccelConfig, mode: str = "pipelined") -> Any:
    """``lanes`` PEs sharing one activation; see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"unknown PE array mode {mode!r} ({', '.join(MODES)})")
    c = config
    pw = c.act_bits + c.window + 1
    acc_bits = c.acc_bits
    insts: list[Any] = []
    xreg = _signed(c.act_bits)

    @always_seq(clk.posedge, reset=rst)
    def x_reg() -> None:
        xreg.next = x_in.signed()

    insts.append(x_reg)
    accs = []
    for i in range(c.lanes):
        wl = _unsigned(c.code_bits)
        insts.append(core_mod.slice_bits(w_in, i * c.code_bits, c.code_bits, wl))
        if c.pe == "multiplier":
            wbits = c.window + 2
            wload = _signed(wbits)
            wreg = Signal(intbv(int(hwcode.to_int(0, c.exp_bits)), min=-(1 << (wbits - 1)),
                                max=1 << (wbits - 1)))
            insts.append(pe_mod.decode_code(wl, wload, c.exp_bits))
        else:
            wload = wl
            wreg = _unsigned(c.code_bits)
        prod = _signed(pw)
        insts.append(pe_mod.pe(xreg, wreg, prod, c.pe, c.act_bits, c.exp_bits))
        acc = _signed(acc_bits)
        accs.append(acc)
        insts.append(_lane_regs(clk, rst, load, wload, wreg, prod, acc, acc_bits, mode))
    asel = _signed(acc_bits)
    insts.append(core_mod.mux_chain(sel, tuple(range(c.lanes)), accs, asel))

    @always_seq(clk.posedge, reset=rst)
    def out_reg() -> None:
        acc_out.next = asel[acc_bits:]

    insts.append(out_reg)
    return insts


@block
def _lane_regs(clk: Any, rst: Any, load: Any, wload: Any, wreg: Any, prod: Any, acc: Any,
               acc_bits: int, mode: str) -> Any:
    preg = Signal(prod.val)
    asum = _signed(acc_bits + 1)
    src = prod if mode == "direct" else preg
    accumulate = mode != "product"

    @always_comb
    def add() -> None:
        if accumulate:
            asum.next = acc + src
        else:
            asum.next = src

    @always_seq(clk.posedge, reset=rst)
    def regs() -> None:
        if load:
            wreg.next = wload
        preg.next = prod
        acc.next = asum[acc_bits:].signed()

    return add, regs


def pe_array_signals(config: AccelConfig) -> dict[str, Any]:
    return core_mod.signals_for({name: w for name, (w, _) in pe_array_ports(config).items()})


def convert_pe_array(config: AccelConfig, directory: str | Path,
                     mode: str = "pipelined") -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with core_mod.fast_elaboration():
        inst = pe_array(**pe_array_signals(config), config=config, mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inst.convert(hdl="Verilog", path=str(d), name=PE_ARRAY_NAME, initial_values=True,
                     no_testbench=True)
    return d / f"{PE_ARRAY_NAME}.v"


def core_ports(config: AccelConfig) -> dict[str, tuple[int, str]]:
    return {n: (w, "in" if n in core_mod.PORT_INPUTS else "out")
            for n, w in core_mod.port_widths(config).items()}


def convert_core(config: AccelConfig, directory: str | Path) -> Path:
    from .export import CORE_NAME, convert

    convert(config, "verilog", directory)
    return Path(directory) / f"{CORE_NAME}.v"


def scan_wrapper(top: str, ports: dict[str, tuple[int, str]]) -> str:
    """Verilog of a wrapper that feeds every input of ``top`` from, and captures every
    output into, one scan chain (pins: clk, rst, si, se, so)."""
    ins = [(n, max(w, 1)) for n, (w, d) in ports.items() if d == "in" and n not in ("clk", "rst")]
    outs = [(n, max(w, 1)) for n, (w, d) in ports.items() if d == "out"]
    nin = sum(w for _, w in ins)
    nout = sum(w for _, w in outs)
    lines = [f"// Scan wrapper for place and route of {top} (generated by accel.designs).",
             f"module {WRAPPER_NAME}(input clk, input rst, input si, input se, output so);",
             f"reg [{nin - 1}:0] sin = 0;", f"reg [{nout - 1}:0] sout = 0;",
             f"wire [{nout - 1}:0] dout;"]
    conns = [".clk(clk)", ".rst(rst)"]
    lo = 0
    for n, w in ins:
        conns.append(f".{n}(sin[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for n, w in outs:
        conns.append(f".{n}(dout[{lo + w - 1}:{lo}])")
        lo += w
    shift_in = f"{{sin[{nin - 2}:0], si}}" if nin > 1 else "si"
    shift_out = f"{{sout[{nout - 2}:0], sin[{nin - 1}]}}" if nout > 1 else f"sin[{nin - 1}]"
    lines += [f"{top} dut({', '.join(conns)});",
              "always @(posedge clk) begin",
              f"    if (se) begin sin <= {shift_in}; sout <= {shift_out}; end",
              "    else sout <= dout;",
              "end",
              f"assign so = sout[{nout - 1}];",
              "endmodule", ""]
    return "\n".join(lines)


def write_design(config: AccelConfig, target: str, directory: str | Path,
                 mode: str = "pipelined") -> tuple[list[Path], str, Path]:
    """Convert ``target`` (``pe`` or ``core``) for ``config`` into ``directory``; returns
    ``(sources, top module name, wrapper file)``."""
    d = Path(directory)
    if target == "pe":
        src = convert_pe_array(config, d, mode)
        top, ports = PE_ARRAY_NAME, pe_array_ports(config)
    elif target == "core":
        src = convert_core(config, d)
        top, ports = core_mod_name(), core_ports(config)
    else:
        raise ValueError(f"unknown target {target!r} (pe or core)")
    wrap = d / f"{WRAPPER_NAME}.v"
    wrap.write_text(scan_wrapper(top, ports))
    return [src], top, wrap


def core_mod_name() -> str:
    from .export import CORE_NAME

    return CORE_NAME

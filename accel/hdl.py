"""HDL primitives every design builds on: signal constructors, muxes, slices, sign
extension, small registers, and the fast-elaboration context.

Block function names and their local signal names become net names in the converted
Verilog/VHDL; renaming them renames nets (so some keep a leading underscore).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Iterator
from typing import Any

from myhdl import ResetSignal, Signal, always_comb, always_seq, block, intbv


def unsigned(bits: int, val: int = 0) -> Signal:
    return Signal(intbv(val)[bits:])


def signed(bits: int) -> Signal:
    return Signal(intbv(0, min=-(1 << (bits - 1)), max=1 << (bits - 1)))


def signals_for(widths: dict[str, int]) -> dict[str, Any]:
    """Fresh port signals by name: ``rst`` a synchronous reset, width 0 a bool, else unsigned."""
    out: dict[str, Any] = {}
    for name, w in widths.items():
        if name == "rst":
            out[name] = ResetSignal(1, active=1, isasync=False)
        elif w == 0:
            out[name] = Signal(bool(0))
        else:
            out[name] = unsigned(w)
    return out


# ---------------------------------------------------------------------------------------------
# Small convertible building blocks


@block
def mux_chain(sel: Any, keys: tuple[int, ...], inputs: list[Any], out: Any) -> Any:
    """``out = inputs[j]`` where ``sel == keys[j]`` (the first input otherwise).

    Built as a chain of two-way muxes on plain signals: MyHDL would turn an indexed list of
    signals into an HDL memory, which clashes with driving each element from its own lane.
    """
    insts = []
    prev = inputs[0]
    for j in range(1, len(inputs)):
        nxt = out if j == len(inputs) - 1 else Signal(out.val)
        insts.append(mux2(sel, keys[j], inputs[j], prev, nxt))
        prev = nxt
    if len(inputs) == 1:
        insts.append(copy_sig(inputs[0], out))
    return insts


@block
def mux2(sel: Any, key: int, a: Any, b: Any, y: Any) -> Any:
    @always_comb
    def pick() -> None:
        if sel == key:
            y.next = a
        else:
            y.next = b

    return pick


@block
def rom(addr: Any, content: tuple[int, ...], dout: Any) -> Any:
    """``dout = content[addr]``: a tuple of ints indexed by a signal, which MyHDL converts to
    a ``case`` statement in Verilog and VHDL (``content`` covers every value of ``addr``)."""
    if len(content) != 1 << len(addr):
        raise ValueError(f"a ROM on a {len(addr)}-bit address needs {1 << len(addr)} entries, "
                         f"not {len(content)}")

    @always_comb
    def rom_read() -> None:
        dout.next = content[int(addr)]

    return rom_read


@block
def copy_sig(a: Any, y: Any) -> Any:
    @always_comb
    def cp() -> None:
        y.next = a

    return cp


@block
def slice_bits(word: Any, lo: int, width: int, y: Any) -> Any:
    @always_comb
    def cut() -> None:
        y.next = word[lo + width:lo]

    return cut


@block
def slice_signed(word: Any, lo: int, width: int, y: Any) -> Any:
    @always_comb
    def cut() -> None:
        y.next = word[lo + width:lo].signed()

    return cut


@block
def mux_tree(sel: Any, inputs: list[Any], out: Any) -> Any:
    """``out = inputs[sel]`` as a balanced tree of two-way muxes, one level per bit of
    ``sel`` (a chain of ``sel == k`` compares would put every lane in series)."""
    level = list(inputs)
    insts: list[Any] = []
    bit = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level), 2):
            if j + 1 == len(level):
                nxt.append(level[j])
                continue
            y = out if len(level) == 2 else Signal(out.val)
            insts.append(_mux_bit(sel, bit, level[j + 1], level[j], y))
            nxt.append(y)
        level = nxt
        bit += 1
    if len(inputs) == 1:
        insts.append(copy_sig(inputs[0], out))
    return insts


@block
def _mux_bit(sel: Any, bit: int, one: Any, zero: Any, y: Any) -> Any:
    @always_comb
    def pick() -> None:
        if sel[bit]:
            y.next = one
        else:
            y.next = zero

    return pick


@block
def _slice_reg(clk: Any, rst: Any, word: Any, lo: int, w: int, y: Any) -> Any:
    """``y <- word[lo + w : lo]`` (a bit when ``y`` is a bool)."""
    if w == 1 and isinstance(y.val, bool):

        @always_seq(clk.posedge, reset=rst)
        def bit() -> None:
            y.next = word[lo]

        return bit

    @always_seq(clk.posedge, reset=rst)
    def part() -> None:
        y.next = word[lo + w:lo]

    return part


@block
def sign_extend(a: Any, y: Any) -> Any:
    """``y`` (unsigned, wider) = the two's complement bits of signed ``a``."""
    wide = signed(len(y))

    @always_comb
    def widen() -> None:
        wide.next = a

    @always_comb
    def bits() -> None:
        y.next = wide[len(y):]

    return widen, bits


@block
def _delay(d: Any, q: Any, clk: Any, rst: Any) -> Any:
    @always_seq(clk.posedge, reset=rst)
    def hold() -> None:
        q.next = d

    return hold


@block
def _either(a: Any, b: Any, y: Any) -> Any:
    @always_comb
    def orr() -> None:
        y.next = a or b

    return orr


@block
def _negated(a: Any, y: Any) -> Any:
    @always_comb
    def inv() -> None:
        y.next = not a

    return inv


# ---------------------------------------------------------------------------------------------
# Fast elaboration


_ELAB_LOCK = threading.Lock()


def _frames(context: int = 1) -> list[tuple[Any, str, int, str, None, None]]:
    """``inspect.stack()`` without reading source files: (frame, file, line, function) only."""
    out = []
    f: Any = sys._getframe(1)
    while f is not None:
        code = f.f_code
        out.append((f, code.co_filename, f.f_lineno, code.co_name, None, None))
        f = f.f_back
    return out


@contextlib.contextmanager
def fast_elaboration() -> Iterator[None]:
    """Elaborate MyHDL blocks without ``inspect.stack()``'s source lookups.

    MyHDL calls ``inspect.stack()`` for every block and generator, and it reads source context
    for every frame up the stack: under pytest and Hypothesis (deep stacks) elaborating the
    core took ten seconds.  MyHDL only uses the frame objects and function names from it.
    """
    with _ELAB_LOCK:
        saved = inspect.stack
        inspect.stack = _frames  # type: ignore[assignment]
        try:
            yield
        finally:
            inspect.stack = saved

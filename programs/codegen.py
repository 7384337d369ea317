"""Code generation: the assembly source of one tile's program.

Every generator walks a tile's padded, channel-innermost (HWC) input band in AMEM and writes
its output band after it (the placement is :mod:`programs.layout`'s).  Output rows and pixels
are hardware LOOPs, as are the output-channel blocks (when ``loop_depth`` allows) and the
contiguous ``kx*C + ci`` run of MACs of each kernel row, so a program does not grow with the
spatial size.  Register use, common to the generators: r0 weight pointer (WMEM), r1 input
pointer, r2 output pointer, r3 parameter pointer (BMEM), r4 constant or second input, r5 the
block's first weight word, r6 the block's first output element, r7 the block's first input
channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contract.config import AccelConfig

from .fit import check_loop_counts


def s16(v: int) -> int:
    """An address step as ADDI's signed immediate: registers wrap modulo 2^16."""
    v &= 0xFFFF
    return v - 0x10000 if v >= 0x8000 else v


@dataclass
class WindowGeometry:
    """Geometry of one tile's window walk over a padded HWC band."""

    c: int        # channels per input pixel in AMEM (the band's slice)
    wp: int       # padded width
    kh: int
    kw: int
    sy: int
    sx: int
    oh: int       # output rows in the tile
    ow: int

    def kernel_rows(self, per_row: int) -> list[tuple[int, int]]:
        """``(count, step after)`` per MAC/vector run: one per kernel row, or a single run when
        the kernel spans the padded width (its rows are then contiguous)."""
        c, wp, kw = self.c, self.wp, self.kw
        last_step = self.sx * c - ((self.kh - 1) * wp * c + kw * c)
        if kw == wp:
            return [(self.kh * per_row, last_step)]
        return [(per_row, (wp - kw) * c) for _ in range(self.kh - 1)] + [(per_row, last_step)]

    @property
    def row_step(self) -> int:
        return self.sy * self.wp * self.c - self.ow * self.sx * self.c


def _blocks(nblocks: int, rem: int, lanes: int, cfg: AccelConfig,
            body: Callable[[int, str], list[str]]) -> list[str]:
    """The per-block code, as a hardware loop over full blocks when loop levels allow."""
    nfull = nblocks - (1 if rem else 0)
    out: list[str] = []
    if nfull > 1 and cfg.loop_depth >= 4:
        out += [f"    LOOP {nfull}, blocks_end", *body(lanes, "full"), "blocks_end:"]
    else:
        for b in range(nfull):
            out += body(lanes, f"b{b}")
    if rem:
        out += body(rem, "tail")
    return out


def _finish(relu: bool, act: bool, n: int, cout: int, params_back: int) -> list[str]:
    """REQ (+ACT) and STORE of one output pixel; ``params_back`` rewinds the parameter pointer
    to this block's first word (1 after a BIAS, which advanced it by one; 0 after a CLR)."""
    if act:
        lines = [f"      REQ r3, 1, {int(relu)}", f"      ACT r3, {-params_back - 1}"]
    else:
        lines = [f"      REQ r3, {-params_back}, {int(relu)}"]
    return lines + [f"      STORE r2, {n}, {cout}"]


@dataclass(frozen=True)
class Chunk:
    """A tile's place in a reduction split over input-channel chunks (reduction tiling).

    The first chunk starts from the bias, the others from the partial sums the previous chunk
    spilled (``restore_base``: their AMEM address); every chunk but the last spills its sums
    exactly, ``pieces`` elements of ``act_bits`` per lane (:func:`pieces`), where the last
    requantizes and stores.  Per output pixel the partial sums of a tile's ``cout`` channels
    are ``cout * pieces`` elements, block by block, each block piece by piece (low first).
    """

    first: bool = True
    last: bool = True
    pieces: int = 1
    restore_base: int = 0

    @property
    def alone(self) -> bool:
        return self.first and self.last

    def param_columns(self) -> tuple[bool, bool]:
        """(bias, requant [+ slope]) words the chunk's program reads, per block."""
        return self.first, self.last


def partial_step(cout: int, n: int, pieces: int) -> int:
    """The last FILL's post-increment: from a block's piece 0 of one pixel to its top piece
    at the next pixel (``cout`` channels of ``pieces`` elements per pixel, ``n`` lanes)."""
    return cout * pieces + (pieces - 1) * n


def conv_source(g: WindowGeometry, nblocks: int, rem: int, cout: int, out_base: int, relu: bool,
                act: bool, cfg: AccelConfig, title: str, chunk: Chunk | None = None) -> str:
    """Dense convolution: per output pixel, BIAS (or the restored partial sums), one MAC run
    per kernel row over the contiguous ``kx*C + ci`` elements, then REQ (+ACT) and STORE of
    the block's lanes (or SPILL of the partial sums)."""
    runs = g.kernel_rows(g.kw * g.c)
    check_loop_counts(g.oh, g.ow, *(n for n, _ in runs))
    wpb = g.kh * g.kw * g.c
    chunk = chunk or Chunk()
    p = chunk.pieces
    bias, req = chunk.param_columns()
    pwords = int(bias) + (2 if act else 1) * int(req)
    out_step = cfg.lanes * (1 if chunk.last else p)

    def body(n: int, tag: str) -> list[str]:
        lines = ["    SETI r1, 0", "    ADDI r2, r6, 0"]
        if not chunk.first:
            lines += [f"    ADDI r4, r7, {(p - 1) * n}"]
        lines += [f"    LOOP {g.oh}, rows_{tag}", f"    LOOP {g.ow}, px_{tag}"]
        if chunk.first:
            lines += [f"      BIAS r3, {int(req)}"]
        else:
            lines += [f"      VLD r4, {n}, {-n}"]
            lines += [f"      FILL r4, {n}, {-n if j < p - 2 else partial_step(cout, n, p)}"
                      for j in range(p - 1)]
        lines += ["      ADDI r0, r5, 0"]
        for i, (cnt, step) in enumerate(runs):
            lines += [f"      LOOP {cnt}, mac_{tag}_{i}", "      MAC r0, 1, r1, 1",
                      f"mac_{tag}_{i}:", f"      ADDI r1, r1, {s16(step)}"]
        if chunk.last:
            lines += _finish(relu, act, n, cout, int(bias))
        else:
            last_inc = cout * p - (p - 1) * n  # to the next pixel's piece 0
            lines += [f"      SPILL r2, {n}, {n if j < p - 1 else last_inc}" for j in range(p)]
        lines += [f"px_{tag}:", f"    ADDI r1, r1, {s16(g.row_step)}", f"rows_{tag}:",
                  f"    ADDI r5, r5, {s16(wpb)}"]
        if pwords:
            lines += [f"    ADDI r3, r3, {pwords}"]
        lines += [f"    ADDI r6, r6, {out_step}"]
        if not chunk.first:
            lines += [f"    ADDI r7, r7, {cfg.lanes * p}"]
        return lines

    head = [f"; {title}",
            f"; input band {g.oh}x{g.ow} outputs from a {g.wp}-wide padded HWC map of {g.c} "
            f"channels, kernel {g.kh}x{g.kw}, stride {g.sy}x{g.sx}",
            "    SETI r5, 0", "    SETI r3, 0", f"    SETI r6, {out_base}"]
    if not chunk.first:
        head += [f"    SETI r7, {chunk.restore_base}"]
    return "\n".join(head + _blocks(nblocks, rem, cfg.lanes, cfg, body) + ["    HALT"]) + "\n"


def vector_source(mode: str, g: WindowGeometry, nblocks: int, rem: int, cout: int, out_base: int,
                  relu: bool, act: bool, const_base: int, cfg: AccelConfig, title: str,
                  params_step: int = 0, biased: bool = False) -> str:
    """Per-lane (channel) operations: ``dw`` depthwise conv (LOADW per tap, VMAC), ``avg``
    average pool (VMAC with weight 1.0), ``max`` max pool (VLD of the minimum, VMAX).
    ``params_step``: parameter words per block of ``avg`` (0: every block reads the same);
    ``biased``: ``avg`` starts from a BIAS word (zero points) instead of CLR, same cycles."""
    runs = g.kernel_rows(g.kw)
    check_loop_counts(g.oh, g.ow, *(n for n, _ in runs))
    pwords = (3 if act else 2) if mode == "dw" else params_step

    def body(n: int, tag: str) -> list[str]:
        lines = ["    ADDI r1, r7, 0", "    ADDI r2, r6, 0", f"    LOOP {g.oh}, rows_{tag}",
                 f"    LOOP {g.ow}, px_{tag}"]
        if mode == "dw":
            lines += ["      BIAS r3, 1", "      ADDI r0, r5, 0"]
        elif mode == "avg":
            lines += ["      BIAS r3, 1" if biased else "      CLR"]
        else:
            lines += [f"      VLD r4, {n}, 0"]
        for i, (cnt, step) in enumerate(runs):
            lines += [f"      LOOP {cnt}, tap_{tag}_{i}"]
            if mode == "dw":
                lines += ["      LOADW r0, 1"]
            lines += [f"      {'VMAX' if mode == 'max' else 'VMAC'} r1, {n}, {g.c}",
                      f"tap_{tag}_{i}:", f"      ADDI r1, r1, {s16(step)}"]
        if mode == "max":
            lines += [f"      STORE r2, {n}, {cout}"]
        else:
            lines += _finish(relu, act, n, cout, 1 if mode == "dw" or biased else 0)
        lines += [f"px_{tag}:", f"    ADDI r1, r1, {s16(g.row_step)}", f"rows_{tag}:",
                  f"    ADDI r7, r7, {cfg.lanes}", f"    ADDI r6, r6, {cfg.lanes}"]
        if mode == "dw":
            lines += [f"    ADDI r5, r5, {g.kh * g.kw}"]
        if pwords:
            lines += [f"    ADDI r3, r3, {pwords}"]
        return lines

    head = [f"; {title}",
            f"; {g.oh}x{g.ow} outputs from a {g.wp}-wide padded HWC map of {g.c} channels, "
            f"window {g.kh}x{g.kw}, stride {g.sy}x{g.sx}",
            "    SETI r7, 0", "    SETI r5, 0", "    SETI r3, 0", f"    SETI r6, {out_base}",
            f"    SETI r4, {const_base}"]
    if mode == "avg":
        head += ["    SETI r0, 0", "    LOADW r0, 0          ; weight 1.0 in every lane"]
    return "\n".join(head + _blocks(nblocks, rem, cfg.lanes, cfg, body) + ["    HALT"]) + "\n"


def add_source(npix: int, c: int, b_base: int, nblocks: int, rem: int, out_base: int,
               relu: bool, act: bool, cfg: AccelConfig, title: str, params_step: int = 0,
               biased: bool = False) -> str:
    """Residual add: two VMACs with the inputs' scale codes, then REQ (+ACT);
    ``params_step``: parameter words per block (0: every block reads the same); ``biased``:
    the sum starts from a BIAS word (zero points) instead of CLR, same cycles."""
    check_loop_counts(npix)

    def body(n: int, tag: str) -> list[str]:
        lines = ["    ADDI r1, r7, 0", f"    ADDI r4, r7, {s16(b_base)}", "    ADDI r2, r6, 0",
                 f"    LOOP {npix}, px_{tag}", "      BIAS r3, 1" if biased else "      CLR",
                 "      LOADW r0, 1",
                 f"      VMAC r1, {n}, {c}", "      LOADW r0, -1", f"      VMAC r4, {n}, {c}"]
        lines += _finish(relu, act, n, c, int(biased))
        lines += [f"px_{tag}:", f"    ADDI r7, r7, {cfg.lanes}", f"    ADDI r6, r6, {cfg.lanes}"]
        if params_step:
            lines += [f"    ADDI r3, r3, {params_step}"]
        return lines

    head = [f"; {title}", f"; {npix} pixels of {c} channels: a at 0, b at {b_base}",
            "    SETI r7, 0", "    SETI r0, 0", "    SETI r3, 0", f"    SETI r6, {out_base}"]
    return "\n".join(head + _blocks(nblocks, rem, cfg.lanes, cfg, body) + ["    HALT"]) + "\n"

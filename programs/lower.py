"""Lowering: every layer of a quantized network becomes one or more *tiles*, each a complete
program image (text, weights, parameters) for one accelerator configuration.

Memory model of a tile.  The host places the tile's input band(s) in AMEM from address 0,
channel-innermost (HWC) and already padded (the border holds zero, or the minimum activation
for max pooling: padding is never computed by the hardware); the program writes its output
band after them; the host collects it.  Layers pass through the host anyway because a whole
feature map of a real network does not fit one AMEM, so tiling is the normal case:

* output row bands, sized so input band + output band fit ``amem_depth``;
* output-channel block groups, sized so the group's weights fit ``wmem_depth``, its
  parameters ``bmem_depth`` and its program ``imem_depth``;
* grouped convolutions: one dense convolution per group on its channel slice.

A layer that cannot fit even as one block of ``lanes`` channels and one output row is an error
that says which memory is too small and by how much.

Programs do not grow with the spatial size: output rows and pixels are hardware LOOPs, as are
the output-channel blocks (when ``loop_depth`` allows) and the contiguous ``kx*C + ci`` run of
MACs of each kernel row.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import hwcode
from contract.config import AccelConfig
from contract.errors import AsdError
from contract.image import Image
from contract.timing import static_cycles
from emu.asm import assemble

from .graph import Graph, Layer
from .qnet import QLayer, QNet

I64 = NDArray[np.int64]
STORE_INC_MAX = (1 << 11) - 1  # STORE's 12-bit signed post-increment
LOOP_MAX = (1 << 16) - 1


class LowerError(ValueError, AsdError):
    """A layer that can never fit the configuration; names the layer and the memory."""


@dataclass
class TileInput:
    tensor: str
    rows: tuple[int, int]      # rows of the padded input, [r0, r1)
    channels: tuple[int, int]  # channel slice [c0, c1)
    base: int


@dataclass
class Tile:
    image: Image
    source: str
    inputs: list[TileInput]
    out_rows: tuple[int, int]
    out_channels: tuple[int, int]
    out_base: int
    cycles: int


@dataclass
class LoweredLayer:
    """A layer's tiles (none for a host layer) and how its inputs are padded."""

    name: str
    op: str
    inputs: list[str]
    output: str
    out_shape: tuple[int, int, int]
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    tiles: list[Tile] = field(default_factory=list)

    @property
    def cycles(self) -> int:
        return sum(t.cycles for t in self.tiles)

    @property
    def host(self) -> bool:
        return not self.tiles


def s16(v: int) -> int:
    """An address step as ADDI's signed immediate: registers wrap modulo 2^16."""
    v &= 0xFFFF
    return v - 0x10000 if v >= 0x8000 else v


# Program sources -----------------------------------------------------------------------------
@dataclass
class _Geom:
    """Geometry of one tile's window walk over a padded HWC band."""

    c: int        # channels per input pixel in AMEM (the band's slice)
    wp: int       # padded width
    kh: int
    kw: int
    sy: int
    sx: int
    oh: int       # output rows in the tile
    ow: int

    def kernel_rows(self, per_row: int, last: str = "") -> list[tuple[int, int]]:
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


def _check_counts(*counts: int) -> None:
    for n in counts:
        if not 1 <= n <= LOOP_MAX:
            raise _NoFit(f"a loop of {n} iterations exceeds LOOP's 16-bit count")


class _NoFit(Exception):
    """This tiling choice does not fit; the planner tries a smaller one."""


def _blocks(nblocks: int, rem: int, lanes: int, cfg: AccelConfig, body: Any) -> list[str]:
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


def _finish(req_mode: str, relu: bool, act: bool, n: int, cout: int, params_back: int
            ) -> list[str]:
    """REQ (+ACT) and STORE of one output pixel; ``params_back`` rewinds the parameter pointer
    to this block's first word (BIAS advanced it by one when ``req_mode == 'bias'``)."""
    if act:
        lines = [f"      REQ r3, 1, {int(relu)}", f"      ACT r3, {-params_back - 1}"]
    else:
        lines = [f"      REQ r3, {-params_back}, {int(relu)}"]
    return lines + [f"      STORE r2, {n}, {cout}"]


def conv_source(g: _Geom, nblocks: int, rem: int, cout: int, out_base: int, relu: bool,
                act: bool, cfg: AccelConfig, title: str) -> str:
    """Dense convolution: per output pixel, BIAS, one MAC run per kernel row over the
    contiguous ``kx*C + ci`` elements, REQ (+ACT), STORE of the block's lanes."""
    runs = g.kernel_rows(g.kw * g.c)
    _check_counts(g.oh, g.ow, *(n for n, _ in runs))
    wpb = g.kh * g.kw * g.c
    pwords = 3 if act else 2

    def body(n: int, tag: str) -> list[str]:
        lines = ["    SETI r1, 0", "    ADDI r2, r6, 0", f"    LOOP {g.oh}, rows_{tag}",
                 f"    LOOP {g.ow}, px_{tag}", "      BIAS r3, 1", "      ADDI r0, r5, 0"]
        for i, (cnt, step) in enumerate(runs):
            lines += [f"      LOOP {cnt}, mac_{tag}_{i}", "      MAC r0, 1, r1, 1",
                      f"mac_{tag}_{i}:", f"      ADDI r1, r1, {s16(step)}"]
        lines += _finish("bias", relu, act, n, cout, 1)
        lines += [f"px_{tag}:", f"    ADDI r1, r1, {s16(g.row_step)}", f"rows_{tag}:",
                  f"    ADDI r5, r5, {s16(wpb)}", f"    ADDI r3, r3, {pwords}",
                  f"    ADDI r6, r6, {cfg.lanes}"]
        return lines

    head = [f"; {title}",
            f"; input band {g.oh}x{g.ow} outputs from a {g.wp}-wide padded HWC map of {g.c} "
            f"channels, kernel {g.kh}x{g.kw}, stride {g.sy}x{g.sx}",
            "    SETI r5, 0", "    SETI r3, 0", f"    SETI r6, {out_base}"]
    return "\n".join(head + _blocks(nblocks, rem, cfg.lanes, cfg, body) + ["    HALT"]) + "\n"


def vector_source(mode: str, g: _Geom, nblocks: int, rem: int, cout: int, out_base: int,
                  relu: bool, act: bool, const_base: int, cfg: AccelConfig, title: str,
                  params_step: int = 0) -> str:
    """Per-lane (channel) operations: ``dw`` depthwise conv (LOADW per tap, VMAC), ``avg``
    average pool (VMAC with weight 1.0), ``max`` max pool (VLD of the minimum, VMAX).
    ``params_step``: parameter words per block of ``avg`` (0: every block reads the same)."""
    runs = g.kernel_rows(g.kw)
    _check_counts(g.oh, g.ow, *(n for n, _ in runs))
    pwords = (3 if act else 2) if mode == "dw" else params_step

    def body(n: int, tag: str) -> list[str]:
        lines = ["    ADDI r1, r7, 0", "    ADDI r2, r6, 0", f"    LOOP {g.oh}, rows_{tag}",
                 f"    LOOP {g.ow}, px_{tag}"]
        if mode == "dw":
            lines += ["      BIAS r3, 1", "      ADDI r0, r5, 0"]
        elif mode == "avg":
            lines += ["      CLR"]
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
            lines += _finish("bias" if mode == "dw" else "clr", relu, act, n, cout,
                             1 if mode == "dw" else 0)
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
               relu: bool, act: bool, cfg: AccelConfig, title: str, params_step: int = 0) -> str:
    """Residual add: two VMACs with the inputs' scale codes, then REQ (+ACT);
    ``params_step``: parameter words per block (0: every block reads the same)."""
    _check_counts(npix)

    def body(n: int, tag: str) -> list[str]:
        lines = ["    ADDI r1, r7, 0", f"    ADDI r4, r7, {s16(b_base)}", "    ADDI r2, r6, 0",
                 f"    LOOP {npix}, px_{tag}", "      CLR", "      LOADW r0, 1",
                 f"      VMAC r1, {n}, {c}", "      LOADW r0, -1", f"      VMAC r4, {n}, {c}"]
        lines += _finish("clr", relu, act, n, c, 0)
        lines += [f"px_{tag}:", f"    ADDI r7, r7, {cfg.lanes}", f"    ADDI r6, r6, {cfg.lanes}"]
        if params_step:
            lines += [f"    ADDI r3, r3, {params_step}"]
        return lines

    head = [f"; {title}", f"; {npix} pixels of {c} channels: a at 0, b at {b_base}",
            "    SETI r7, 0", "    SETI r0, 0", "    SETI r3, 0", f"    SETI r6, {out_base}"]
    return "\n".join(head + _blocks(nblocks, rem, cfg.lanes, cfg, body) + ["    HALT"]) + "\n"


# Memory contents -----------------------------------------------------------------------------
def _lane_words(per_channel: I64, nblocks: int, lanes: int, fill: int) -> I64:
    """Per-channel values ``(..., C)`` laid out as ``(nblocks, ..., lanes)`` words."""
    c = per_channel.shape[-1]
    padded = np.full(per_channel.shape[:-1] + (nblocks * lanes,), fill, np.int64)
    padded[..., :c] = per_channel
    return padded.reshape(per_channel.shape[:-1] + (nblocks, lanes))


def _param_words(ql: QLayer, ch: slice, nblocks: int, cfg: AccelConfig,
                 bias: bool) -> I64:
    """BMEM words per block: [bias,] requant [, slope]."""
    one = int(hwcode.encode(np.array(1), cfg.exp_bits))
    cols = []
    if bias:
        assert ql.bias_int is not None
        cols.append(_lane_words(ql.bias_int[ch], nblocks, cfg.lanes, 0))
    cols.append(_lane_words(ql.req_params[ch], nblocks, cfg.lanes, one))
    sp = ql.slope_params
    if sp is not None:
        cols.append(_lane_words(sp[ch], nblocks, cfg.lanes, one))
    return np.stack(cols, axis=1).reshape(-1, cfg.lanes)


def _shares_params(ql: QLayer) -> bool:
    """Whether all the layer's channels have the same requant and slope words (true of an
    average pool or an add unless a PReLU gives each channel its own slope: their scales
    are per tensor)."""
    return all(np.all(v == v[0]) for v in (ql.req_params, ql.slope_params) if v is not None)


def _unbiased_params(ql: QLayer, ch: slice, nblocks: int, cfg: AccelConfig) -> tuple[I64, int]:
    """BMEM words of a layer without bias (average pool, add) for channels ``ch``, and the
    words the parameter pointer steps per block: one set that every block reads when the
    channels share them, else one set per block."""
    if _shares_params(ql):
        one = _param_words(ql, slice(0, 1), 1, cfg, bias=False)[:, :1]
        return one.repeat(cfg.lanes, axis=1), 0
    words = _param_words(ql, ch, nblocks, cfg, bias=False)
    return words, len(words) // nblocks


def _image(source: str, cfg: AccelConfig, weights: I64, params: I64, acts: I64,
           acts_base: int, regions: dict[str, tuple[int, int]]) -> Image:
    text = assemble(source, cfg, "<lower>").text
    if len(text) > cfg.imem_depth:
        raise _NoFit(f"program of {len(text)} words exceeds imem_depth {cfg.imem_depth}")
    if len(weights) > cfg.wmem_depth:
        raise _NoFit(f"{len(weights)} weight words exceed wmem_depth {cfg.wmem_depth}")
    if len(params) > cfg.bmem_depth:
        raise _NoFit(f"{len(params)} parameter words exceed bmem_depth {cfg.bmem_depth}")
    return Image(cfg, text, weights, params, acts, acts_base, regions)


# Planning ------------------------------------------------------------------------------------
def _rows_fit(avail: int, in_row: int, out_row: int, kh: int, sy: int, oh: int) -> int:
    """Most output rows whose input band ((r-1)*sy + kh rows) and output band fit ``avail``."""
    room = avail - (kh - sy) * in_row
    per = sy * in_row + out_row
    return max(0, min(oh, room // per)) if room > 0 else 0


def _bands(oh: int, r: int) -> list[tuple[int, int]]:
    nb = math.ceil(oh / r)
    r = math.ceil(oh / nb)
    return [(o, min(o + r, oh)) for o in range(0, oh, r)]


def _split(n: int, k: int) -> list[tuple[int, int]]:
    """``n`` items in balanced groups of at most ``k``."""
    ng = math.ceil(n / k)
    k = math.ceil(n / ng)
    return [(i, min(i + k, n)) for i in range(0, n, k)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:48]


class Lowerer:
    def __init__(self, qnet: QNet) -> None:
        self.q = qnet
        self.cfg = qnet.config

    def never(self, lay: Layer, why: str) -> LowerError:
        c = self.cfg
        return LowerError(
            f"layer {lay.name} ({lay.op}) can never fit this accelerator: {why} (config: "
            f"lanes={c.lanes}, amem_depth={c.amem_depth}, wmem_depth={c.wmem_depth}, "
            f"bmem_depth={c.bmem_depth}, imem_depth={c.imem_depth})")

    def lower(self) -> list[LoweredLayer]:
        out = []
        for lay in self.q.graph.layers:
            ll = LoweredLayer(lay.name, lay.op, list(lay.inputs), lay.output,
                              self.q.graph.shapes[lay.output], lay.pads)
            if lay.op == "conv":
                if lay.depthwise:
                    self.lower_vector(lay, ll, "dw")
                else:
                    self.lower_conv(lay, ll)
            elif lay.op == "maxpool":
                ll.pad_value = self.cfg.act_min
                self.lower_vector(lay, ll, "max")
            elif lay.op == "avgpool":
                self.lower_vector(lay, ll, "avg")
            elif lay.op == "add":
                self.lower_add(lay, ll)
            out.append(ll)
        return out

    def _geom(self, lay: Layer, c: int, o0: int, o1: int) -> _Geom:
        _, _, w = self.q.graph.shapes[lay.inputs[0]]
        t, l, b, r = lay.pads
        _, _, ow = self.q.graph.shapes[lay.output]
        return _Geom(c, w + l + r, lay.kernel[0], lay.kernel[1], lay.stride[0], lay.stride[1],
                     o1 - o0, ow)

    def lower_conv(self, lay: Layer, ll: LoweredLayer) -> None:
        cfg, q = self.cfg, self.q
        ql = q.qlayers[lay.name]
        assert ql.w_int is not None
        co, cig, kh, kw = ql.w_int.shape
        cog = co // lay.groups
        act = ql.slope_ints is not None
        pwords = 3 if act else 2
        wpb = kh * kw * cig
        oh = q.graph.shapes[lay.output][1]
        if wpb > cfg.wmem_depth:
            raise self.never(lay, f"one block needs {wpb} weight words ({kh}x{kw}x{cig}), "
                             f"wmem_depth is {cfg.wmem_depth}")
        nblk = math.ceil(cog / cfg.lanes)
        max_blocks = min(nblk, cfg.wmem_depth // wpb, cfg.bmem_depth // pwords,
                         max(1, STORE_INC_MAX // cfg.lanes))
        zero = int(hwcode.encode(np.array(0), cfg.exp_bits))
        codes = ql.w_codes
        for g in range(lay.groups):
            ci = (g * cig, (g + 1) * cig)
            gb = max_blocks
            while True:
                groups = _split(nblk, gb)
                try:
                    tiles = []
                    for b0, b1 in groups:
                        k0 = g * cog + b0 * cfg.lanes
                        k1 = min(g * cog + b1 * cfg.lanes, (g + 1) * cog)
                        tiles += self._conv_tiles(lay, ql, codes, ci, (k0, k1), oh, act, zero)
                    break
                except _NoFit as exc:
                    if gb == 1:
                        raise self.never(lay, str(exc)) from None
                    gb = max(1, gb // 2)
            ll.tiles += tiles

    def _conv_tiles(self, lay: Layer, ql: QLayer, codes: I64, ci: tuple[int, int],
                    ko: tuple[int, int], oh: int, act: bool, zero: int) -> list[Tile]:
        cfg = self.cfg
        c = ci[1] - ci[0]
        cout = ko[1] - ko[0]
        g = self._geom(lay, c, 0, oh)
        r = _rows_fit(cfg.amem_depth, g.wp * c, g.ow * cout, g.kh, g.sy, oh)
        if r < 1:
            need = g.kh * g.wp * c + g.ow * cout
            raise _NoFit(f"one output row needs {need} AMEM elements ({g.kh} input rows of "
                         f"{g.wp}x{c} plus {g.ow}x{cout} outputs), amem_depth is "
                         f"{cfg.amem_depth}")
        nblocks = math.ceil(cout / cfg.lanes)
        rem = cout % cfg.lanes
        wt = codes[ko[0]:ko[1]].transpose(2, 3, 1, 0)  # (KH, KW, C, Cout)
        words = _lane_words(wt, nblocks, cfg.lanes, zero)  # (KH, KW, C, nb, L)
        words = words.transpose(3, 0, 1, 2, 4).reshape(-1, cfg.lanes)
        params = _param_words(ql, slice(*ko), nblocks, cfg, bias=True)
        tiles = []
        for o0, o1 in _bands(oh, r):
            gg = self._geom(lay, c, o0, o1)
            rows = (o0 * g.sy, (o1 - 1) * g.sy + g.kh)
            in_len = (rows[1] - rows[0]) * g.wp * c
            out_len = (o1 - o0) * g.ow * cout
            title = (f"{lay.name}: conv rows {o0}..{o1 - 1}, output channels "
                     f"{ko[0]}..{ko[1] - 1}, input channels {ci[0]}..{ci[1] - 1}")
            src = conv_source(gg, nblocks, rem, cout, in_len, ql.relu, act, cfg, title)
            img = _image(src, cfg, words, params, np.zeros(0, np.int64), 0,
                         {"input": (0, in_len), "output": (in_len, out_len)})
            tiles.append(Tile(img, src, [TileInput(lay.inputs[0], rows, ci, 0)], (o0, o1), ko,
                              in_len, static_cycles(img.text)))
        return tiles

    def lower_vector(self, lay: Layer, ll: LoweredLayer, mode: str) -> None:
        cfg, q = self.cfg, self.q
        ql = q.qlayers[lay.name]
        cin, _, _ = q.graph.shapes[lay.inputs[0]]
        oh = q.graph.shapes[lay.output][1]
        act = ql.slope_ints is not None
        kh, kw = lay.kernel
        per_block_w = kh * kw if mode == "dw" else 0
        pwords = (3 if act else 2) if mode == "dw" else 0
        if mode == "avg" and not _shares_params(ql):
            pwords = 2 if act else 1  # requant [, slope] per block
        lanes = cfg.lanes
        const_len = lanes if mode == "max" else 0
        nblk = math.ceil(cin / lanes)
        limits = [nblk, max(1, STORE_INC_MAX // lanes)]
        if per_block_w:
            limits.append(cfg.wmem_depth // per_block_w)
        if pwords:
            limits.append(cfg.bmem_depth // pwords)
        gb = min(limits)
        if gb < 1:
            raise self.never(lay, f"one block of {lanes} channels needs {per_block_w} weight "
                             f"words and {pwords} parameter words")
        while True:
            try:
                tiles = []
                for b0, b1 in _split(nblk, gb):
                    ch = (b0 * lanes, min(b1 * lanes, cin))
                    tiles += self._vector_tiles(lay, ql, mode, ch, oh, act, const_len)
                break
            except _NoFit as exc:
                if gb == 1:
                    raise self.never(lay, str(exc)) from None
                gb = max(1, gb // 2)
        ll.tiles = tiles

    def _vector_tiles(self, lay: Layer, ql: QLayer, mode: str, ch: tuple[int, int], oh: int,
                      act: bool, const_len: int) -> list[Tile]:
        cfg = self.cfg
        c = ch[1] - ch[0]
        g = self._geom(lay, c, 0, oh)
        r = _rows_fit(cfg.amem_depth - const_len, g.wp * c, g.ow * c, g.kh, g.sy, oh)
        if r < 1:
            raise _NoFit(f"one output row needs {g.kh * g.wp * c + g.ow * c + const_len} AMEM "
                         f"elements, amem_depth is {cfg.amem_depth}")
        nblocks = math.ceil(c / cfg.lanes)
        rem = c % cfg.lanes
        sl = slice(*ch)
        params_step = 0
        if mode == "dw":
            assert ql.w_int is not None
            wt = ql.w_codes[sl, 0].transpose(1, 2, 0)  # (KH, KW, C)
            zero = int(hwcode.encode(np.array(0), cfg.exp_bits))
            words = _lane_words(wt, nblocks, cfg.lanes, zero).transpose(2, 0, 1, 3)
            weights = words.reshape(-1, cfg.lanes)
            params = _param_words(ql, sl, nblocks, cfg, bias=True)
        elif mode == "avg":
            weights = np.full((1, cfg.lanes), self.q.unit_code, np.int64)
            params, params_step = _unbiased_params(ql, sl, nblocks, cfg)
        else:
            weights = np.zeros((0, cfg.lanes), np.int64)
            params = np.zeros((0, cfg.lanes), np.int64)
        tiles = []
        for o0, o1 in _bands(oh, r):
            gg = self._geom(lay, c, o0, o1)
            rows = (o0 * g.sy, (o1 - 1) * g.sy + g.kh)
            in_len = (rows[1] - rows[0]) * g.wp * c
            out_len = (o1 - o0) * g.ow * c
            const_base = in_len + out_len
            title = f"{lay.name}: {mode} rows {o0}..{o1 - 1}, channels {ch[0]}..{ch[1] - 1}"
            src = vector_source(mode, gg, nblocks, rem, c, in_len, ql.relu, act, const_base,
                                cfg, title, params_step)
            acts = np.full(const_len, cfg.act_min, np.int64)
            img = _image(src, cfg, weights, params, acts, const_base if const_len else 0,
                         {"input": (0, in_len), "output": (in_len, out_len)})
            tiles.append(Tile(img, src, [TileInput(lay.inputs[0], rows, ch, 0)], (o0, o1), ch,
                              in_len, static_cycles(img.text)))
        return tiles

    def lower_add(self, lay: Layer, ll: LoweredLayer) -> None:
        cfg, q = self.cfg, self.q
        ql = q.qlayers[lay.name]
        assert ql.add_codes is not None
        cin, h, w = q.graph.shapes[lay.output]
        act = ql.slope_ints is not None
        lanes = cfg.lanes
        weights = np.array([[ql.add_codes[0]] * lanes, [ql.add_codes[1]] * lanes], np.int64)
        nblk = math.ceil(cin / lanes)
        gb = min(nblk, max(1, STORE_INC_MAX // lanes))
        if not _shares_params(ql):  # requant [, slope] per block
            gb = min(gb, max(1, cfg.bmem_depth // (2 if act else 1)))
        while True:
            groups = _split(nblk, gb)
            c = min(groups[0][1] * lanes, cin) - groups[0][0] * lanes
            r = min(h, cfg.amem_depth // (3 * w * c))
            if r >= 1:
                break
            if gb == 1:
                raise self.never(lay, f"one row of {w}x{c} needs {3 * w * c} AMEM elements for "
                                 f"both inputs and the output, amem_depth is {cfg.amem_depth}")
            gb = max(1, gb // 2)
        for b0, b1 in groups:
            ch = (b0 * lanes, min(b1 * lanes, cin))
            c = ch[1] - ch[0]
            nblocks = math.ceil(c / lanes)
            params, params_step = _unbiased_params(ql, slice(*ch), nblocks, cfg)
            for o0, o1 in _bands(h, min(h, cfg.amem_depth // (3 * w * c))):
                n = (o1 - o0) * w * c
                title = f"{lay.name}: add rows {o0}..{o1 - 1}, channels {ch[0]}..{ch[1] - 1}"
                src = add_source((o1 - o0) * w, c, n, nblocks, c % lanes, 2 * n, ql.relu, act,
                                 cfg, title, params_step)
                img = _image(src, cfg, weights, params, np.zeros(0, np.int64), 0,
                             {"input": (0, 2 * n), "output": (2 * n, n)})
                ins = [TileInput(lay.inputs[0], (o0, o1), ch, 0),
                       TileInput(lay.inputs[1], (o0, o1), ch, n)]
                ll.tiles.append(Tile(img, src, ins, (o0, o1), ch, 2 * n,
                                     static_cycles(img.text)))


def check_fits(graph: Graph, cfg: AccelConfig) -> None:
    """The checks that need only shapes, run before the (costly) quantization: one block of
    weights in WMEM, and one output row of one channel block with its input rows in AMEM."""
    def never(lay: Layer, why: str) -> LowerError:
        return LowerError(
            f"layer {lay.name} ({lay.op}) can never fit this accelerator: {why} (config: "
            f"lanes={cfg.lanes}, amem_depth={cfg.amem_depth}, wmem_depth={cfg.wmem_depth})")

    for lay in graph.layers:
        if lay.op not in ("conv", "maxpool", "avgpool", "add"):
            continue
        c, h, w = graph.shapes[lay.inputs[0]]
        ow = graph.shapes[lay.output][2]
        kh, kw = lay.kernel
        wp = w + lay.pads[1] + lay.pads[3]
        if lay.op == "conv" and not lay.depthwise:
            assert lay.weight is not None
            cig = lay.weight.shape[1]
            if kh * kw * cig > cfg.wmem_depth:
                raise never(lay, f"one block needs {kh * kw * cig} weight words "
                            f"({kh}x{kw}x{cig}), wmem_depth is {cfg.wmem_depth}")
            need = kh * wp * cig + ow * min(cfg.lanes, lay.weight.shape[0])
        elif lay.op == "add":
            need = 3 * w * min(cfg.lanes, c)
        else:
            need = kh * wp * min(cfg.lanes, c) + ow * min(cfg.lanes, c)
        if need > cfg.amem_depth:
            raise never(lay, f"one output row of one block needs {need} AMEM elements, "
                        f"amem_depth is {cfg.amem_depth}")


def lower(qnet: QNet) -> list[LoweredLayer]:
    """Tiles for every layer of ``qnet``; raises :class:`LowerError` for one that never fits."""
    return Lowerer(qnet).lower()


def tile_filename(index: int, layer: str, tile: int) -> str:
    return f"{index:03d}_{_safe(layer)}_{tile:03d}"

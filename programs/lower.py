"""Planning: every layer of a quantized network becomes one or more *tiles*, each a complete
program image (text, weights, parameters) for one accelerator configuration.

Layers pass through the host anyway because a whole feature map of a real network does not fit
one AMEM, so tiling is the normal case:

* output row bands, sized so input band + output band fit ``amem_depth``;
* output-channel block groups, sized so the group's weights fit ``wmem_depth``, its
  parameters ``bmem_depth`` and its program ``imem_depth``;
* grouped convolutions: one dense convolution per group on its channel slice;
* reduction chunks: a dense convolution whose block of weights exceeds ``wmem_depth`` (or
  whose rows exceed ``amem_depth``) runs over input-channel chunks, one tile each, that save
  and restore full-width partial sums (SPILL, FILL; :func:`programs.fit.plan_reduction`), and
  over output column groups when a row of one chunk is still too wide.

A layer that cannot fit even as one block of ``lanes`` channels, one input channel and one
output pixel is an error that says which memory is too small and by how much.  A tile's
program comes from :mod:`programs.codegen`, its memory contents from :mod:`programs.layout`,
its expected cycles from :mod:`contract.isa`; block groups shrink until they fit by
:func:`programs.fit.fit_in_groups`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract.config import AccelConfig
from contract.errors import AsdError
from contract.image import Image

from .codegen import Chunk, WindowGeometry, add_source, conv_source, vector_source
from .fit import (
    STORE_INC_MAX,
    DoesNotFit,
    balanced_groups,
    fit_in_groups,
    pieces,
    plan_reduction,
)
from .graph import Graph, Layer
from .layout import (
    Codes,
    ParamValues,
    Programs,
    band_regions,
    broadcast_words,
    chunk_param_words,
    conv_weight_words,
    depthwise_weight_words,
    param_words,
    params_per_block,
    tile_image,
    vector_params,
    weight_codes,
)
from .levels import tile_levels
from .qnet import QLayer, QNet

I64 = NDArray[np.int64]


class LowerError(ValueError, AsdError):
    """A layer that can never fit the configuration; names the layer and the memory."""


@dataclass
class TileInput:
    tensor: str
    rows: tuple[int, int]      # rows of the padded input, [r0, r1)
    channels: tuple[int, int]  # channel slice [c0, c1)
    base: int
    cols: tuple[int, int] | None = None  # columns of the padded input [x0, x1); None: all


@dataclass
class Tile:
    image: Image
    source: str
    inputs: list[TileInput]
    out_rows: tuple[int, int]
    out_channels: tuple[int, int]
    out_base: int
    cycles: int
    out_tensor: str = ""  # "" for the layer's output, else its partial sums (reduction tiling)
    out_cols: tuple[int, int] | None = None  # output columns [x0, x1); None: all

    @functools.cached_property
    def placement(self) -> tuple[Any, ...]:
        """What the tile's initial AMEM is made of (its input bands, where they go, its own
        constants): tiles with equal placements start from equal AMEM on one image."""
        img = self.image
        return (tuple((ti.base, ti.tensor, ti.rows, ti.cols, ti.channels) for ti in self.inputs),
                img.acts_base, img.acts.tobytes())


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
    partial_channels: int = 0  # elements per pixel of the spilled partial sums, if any
    # What is derived from the tiles alone, by key (programs.workload's transfers per
    # configuration): tiles are not changed once lowered, and every run asks again.
    derived: dict[object, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def partial_name(self) -> str:
        return f"{self.output}#partial"

    @property
    def cycles(self) -> int:
        return sum(t.cycles for t in self.tiles)

    @property
    def host(self) -> bool:
        return not self.tiles

    @functools.cached_property
    def levels(self) -> list[list[int]]:
        """The tiles (indices) in levels whose images can all be built before any of their
        outputs is written (:func:`programs.levels.tile_levels`): what a backend that runs
        many tiles at once (the fast emulator) needs."""
        return tile_levels(self.tiles)


def _never(lay: Layer, why: str, cfg: AccelConfig, memories: tuple[str, ...]) -> LowerError:
    listed = ", ".join(f"{name}={getattr(cfg, name)}" for name in ("lanes", *memories))
    return LowerError(f"layer {lay.name} ({lay.op}) can never fit this accelerator: {why} "
                      f"(config: {listed})")


def _rows_fit(avail: int, in_row: int, out_row: int, kh: int, sy: int, oh: int) -> int:
    """Most output rows whose input band ((r-1)*sy + kh rows) and output band fit ``avail``."""
    room = avail - (kh - sy) * in_row
    per = sy * in_row + out_row
    return max(0, min(oh, room // per)) if room > 0 else 0


class Lowerer:
    """The tiles of one quantized network, layer by layer: one method per kind of layer
    chooses its tiling, each ``_*_tiles`` builds the tiles of one block group."""

    def __init__(self, qnet: QNet) -> None:
        self.q = qnet
        self.cfg = qnet.config
        self.programs = Programs(qnet.config)

    def never(self, lay: Layer, why: str) -> LowerError:
        return _never(lay, why, self.cfg, ("amem_depth", "wmem_depth", "bmem_depth",
                                           "imem_depth"))

    def lower(self) -> list[LoweredLayer]:
        out = []
        for lay in self.q.graph.layers:
            # The padded border holds the input's zero point (a real 0).
            ll = LoweredLayer(lay.name, lay.op, list(lay.inputs), lay.output,
                              self.q.graph.shapes[lay.output], lay.pads,
                              self.q.zero(lay.inputs[0]) if lay.inputs else 0)
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

    def _geom(self, lay: Layer, c: int, o0: int, o1: int) -> WindowGeometry:
        _, _, w = self.q.graph.shapes[lay.inputs[0]]
        t, l, b, r = lay.pads
        _, _, ow = self.q.graph.shapes[lay.output]
        return WindowGeometry(c, w + l + r, lay.kernel[0], lay.kernel[1], lay.stride[0],
                              lay.stride[1], o1 - o0, ow)

    def _most_blocks(self, lay: Layer, nblk: int, weight_words: int, param_words: int,
                     spilled: int = 1) -> int:
        """Most channel blocks one tile may take: its STORE (or SPILL/FILL, ``spilled``
        pieces a channel) steps over all their channels, and their weights and parameters
        (words per block) must fit WMEM and BMEM."""
        cfg = self.cfg
        step_room = STORE_INC_MAX - (spilled - 1) * cfg.lanes
        limits = [nblk, max(1, step_room // (spilled * cfg.lanes))]
        if weight_words:
            limits.append(cfg.wmem_depth // weight_words)
        if param_words:
            limits.append(cfg.bmem_depth // param_words)
        most = min(limits)
        if most < 1:
            raise self.never(lay, f"one block of {cfg.lanes} channels needs {weight_words} "
                             f"weight words and {param_words} parameter words")
        return most

    def _fit_blocks(self, lay: Layer, nblk: int, most: int,
                    build: Callable[[int, int], list[Tile]]) -> list[Tile]:
        return fit_in_groups(nblk, most, build, lambda why: self.never(lay, why))

    def lower_conv(self, lay: Layer, ll: LoweredLayer) -> None:
        cfg, q = self.cfg, self.q
        ql = q.qlayers[lay.name]
        assert ql.w_int is not None
        co, cig, kh, kw = ql.w_int.shape
        cog = co // lay.groups
        _, oh, ow = q.graph.shapes[lay.output]
        wp = q.graph.shapes[lay.inputs[0]][2] + lay.pads[1] + lay.pads[3]
        per_chunk, per_tile, why = plan_reduction(kh, kw, cig, wp, ow, lay.stride[1], cog, cfg)
        if not per_chunk:
            raise self.never(lay, why)
        chunks = balanced_groups(cig, per_chunk)
        columns = balanced_groups(ow, per_tile)
        spilled = pieces(cfg) if len(chunks) > 1 else 1
        if spilled > 1:
            ll.partial_channels = co * spilled
        nblk = math.ceil(cog / cfg.lanes)
        widest = max(c1 - c0 for c0, c1 in chunks)
        pv = ParamValues.of(ql)
        most = self._most_blocks(lay, nblk, kh * kw * widest, params_per_block(pv, bias=True),
                                 spilled)
        codes = weight_codes(ql.w_int, cfg)

        def group_tiles(g: int) -> list[Tile]:
            """The tiles of convolution group ``g``: its input channels, its output blocks."""
            def build(b0: int, b1: int) -> list[Tile]:
                k0 = g * cog + b0 * cfg.lanes
                k1 = min(g * cog + b1 * cfg.lanes, (g + 1) * cog)
                return self._conv_tiles(lay, ll, ql, pv, codes, g * cig, chunks, columns,
                                        (k0, k1), oh)
            return self._fit_blocks(lay, nblk, most, build)

        for g in range(lay.groups):
            ll.tiles += group_tiles(g)

    def _conv_tiles(self, lay: Layer, ll: LoweredLayer, ql: QLayer, pv: ParamValues,
                    codes: Codes, ci0: int,
                    chunks: list[tuple[int, int]], columns: list[tuple[int, int]],
                    ko: tuple[int, int], oh: int) -> list[Tile]:
        """Tiles of output channels ``ko``: per reduction chunk (input channels ``ci0 + c0 ..
        ci0 + c1`` of the group), in order, one per row band and output column group, each
        chunk but the last spilling its partial sums for the next to restore."""
        cfg = self.cfg
        act = ql.slope_ints is not None
        cout = ko[1] - ko[0]
        p = pieces(cfg) if len(chunks) > 1 else 1
        widest = max(c1 - c0 for c0, c1 in chunks)
        full = self._geom(lay, widest, 0, oh)
        kh, kw, sy, sx = full.kh, full.kw, full.sy, full.sx

        def band(c: int, rows: int, x0: int, x1: int) -> WindowGeometry:
            """The window walk over padded columns ``x0*sx ..`` of output columns x0..x1-1."""
            return WindowGeometry(c, (x1 - x0 - 1) * sx + kw, kh, kw, sy, sx, rows, x1 - x0)

        most_cols = max(x1 - x0 for x0, x1 in columns)
        # Whole rows read the whole padded width (right padding a window may never reach too).
        g = full if len(columns) == 1 else band(widest, oh, 0, most_cols)
        out_row = g.ow * cout * (2 * p if p > 1 else 1)
        r = _rows_fit(cfg.amem_depth, g.wp * widest, out_row, kh, sy, oh)
        if r < 1:
            need = kh * g.wp * widest + out_row
            raise DoesNotFit(f"one output row needs {need} AMEM elements ({kh} input rows of "
                             f"{g.wp}x{widest} plus {out_row} outputs or partial sums), "
                             f"amem_depth is {cfg.amem_depth}")
        nblocks = math.ceil(cout / cfg.lanes)
        rem = cout % cfg.lanes
        data = []
        for j, (c0, c1) in enumerate(chunks):
            first, last = j == 0, j == len(chunks) - 1
            data.append((conv_weight_words(codes[ko[0]:ko[1], c0:c1], nblocks, cfg),
                         chunk_param_words(pv, slice(*ko), nblocks, cfg, first, last)))
        whole = len(columns) == 1
        tiles = []
        # Chunk by chunk over every band, so each chunk's weights are loaded once (the host
        # keeps the partial sums of the whole map between chunks).
        for j, (c0, c1) in enumerate(chunks):
            first, last = j == 0, j == len(chunks) - 1
            for o0, o1 in balanced_groups(oh, r):
                rows = (o0 * sy, (o1 - 1) * sy + kh)
                for x0, x1 in columns:
                    cols = None if whole else (x0 * sx, (x1 - 1) * sx + kw)
                    npx = (o1 - o0) * (x1 - x0)
                    gg = band(c1 - c0, o1 - o0, x0, x1) if cols else self._geom(
                        lay, c1 - c0, o0, o1)
                    in_len = (rows[1] - rows[0]) * gg.wp * gg.c
                    restore = 0 if first else npx * cout * p
                    out_len = npx * cout * (1 if last else p)
                    ci = (ci0 + c0, ci0 + c1)
                    title = (f"{lay.name}: conv rows {o0}..{o1 - 1}, output channels "
                             f"{ko[0]}..{ko[1] - 1}, input channels {ci[0]}..{ci[1] - 1}")
                    if cols:
                        title += f", output columns {x0}..{x1 - 1}"
                    if len(chunks) > 1:
                        title += f" (reduction chunk {j + 1} of {len(chunks)})"
                    src = conv_source(gg, nblocks, rem, cout, in_len + restore, ql.relu, act,
                                      cfg, title, Chunk(first, last, p, in_len))
                    regions = band_regions(in_len + restore, out_len)
                    inputs = [TileInput(lay.inputs[0], rows, ci, 0, cols)]
                    if restore:
                        regions["partial"] = (in_len, restore)
                        inputs.append(TileInput(ll.partial_name, (o0, o1),
                                                (ko[0] * p, ko[1] * p), in_len,
                                                None if whole else (x0, x1)))
                    img, cycles = tile_image(self.programs, src, *data[j],
                                             np.zeros(0, np.int64), 0, regions)
                    out_ch = ko if last else (ko[0] * p, ko[1] * p)
                    tiles.append(Tile(img, src, inputs, (o0, o1), out_ch, in_len + restore,
                                      cycles, "" if last else ll.partial_name,
                                      None if whole else (x0, x1)))
        return tiles

    def lower_vector(self, lay: Layer, ll: LoweredLayer, mode: str) -> None:
        cfg, q = self.cfg, self.q
        ql = q.qlayers[lay.name]
        cin, _, _ = q.graph.shapes[lay.inputs[0]]
        oh = q.graph.shapes[lay.output][1]
        kh, kw = lay.kernel
        lanes = cfg.lanes
        weight_words = kh * kw if mode == "dw" else 0
        # A max pool reads no parameters (and has none).
        pv = ParamValues.of(ql) if mode != "max" else ParamValues(None, np.zeros(0, np.int64),
                                                                  None)
        if mode == "dw":
            own_params = params_per_block(pv, bias=True)
        elif mode == "avg":
            own_params = params_per_block(pv, bias=pv.bias_int is not None, shared=True)
        else:
            own_params = 0  # a max pool reads no parameters
        const_len = lanes if mode == "max" else 0
        nblk = math.ceil(cin / lanes)
        most = self._most_blocks(lay, nblk, weight_words, own_params)

        def build(b0: int, b1: int) -> list[Tile]:
            ch = (b0 * lanes, min(b1 * lanes, cin))
            return self._vector_tiles(lay, ql, pv, mode, ch, oh, const_len)

        ll.tiles = self._fit_blocks(lay, nblk, most, build)

    def _vector_tiles(self, lay: Layer, ql: QLayer, pv: ParamValues, mode: str,
                      ch: tuple[int, int], oh: int, const_len: int) -> list[Tile]:
        cfg = self.cfg
        act = ql.slope_ints is not None
        c = ch[1] - ch[0]
        g = self._geom(lay, c, 0, oh)
        r = _rows_fit(cfg.amem_depth - const_len, g.wp * c, g.ow * c, g.kh, g.sy, oh)
        if r < 1:
            raise DoesNotFit(f"one output row needs {g.kh * g.wp * c + g.ow * c + const_len} "
                             f"AMEM elements, amem_depth is {cfg.amem_depth}")
        nblocks = math.ceil(c / cfg.lanes)
        rem = c % cfg.lanes
        sl = slice(*ch)
        params_step = 0
        if mode == "dw":
            assert ql.w_int is not None
            weights = depthwise_weight_words(weight_codes(ql.w_int[sl, 0], cfg), nblocks, cfg)
            params = param_words(pv, sl, nblocks, cfg, bias=True)
        elif mode == "avg":
            weights = broadcast_words([self.q.unit_code], cfg.lanes)
            params, params_step = vector_params(pv, sl, nblocks, cfg)
        else:
            weights = np.zeros((0, cfg.lanes), np.int64)
            params = np.zeros((0, cfg.lanes), np.int64)
        tiles = []
        for o0, o1 in balanced_groups(oh, r):
            gg = self._geom(lay, c, o0, o1)
            rows = (o0 * g.sy, (o1 - 1) * g.sy + g.kh)
            in_len = (rows[1] - rows[0]) * g.wp * c
            out_len = (o1 - o0) * g.ow * c
            const_base = in_len + out_len
            title = f"{lay.name}: {mode} rows {o0}..{o1 - 1}, channels {ch[0]}..{ch[1] - 1}"
            src = vector_source(mode, gg, nblocks, rem, c, in_len, ql.relu, act, const_base,
                                cfg, title, params_step, ql.bias_int is not None)
            acts = np.full(const_len, cfg.act_min, np.int64)
            img, cycles = tile_image(self.programs, src, weights, params, acts,
                                     const_base if const_len else 0,
                                     band_regions(in_len, out_len))
            tiles.append(Tile(img, src, [TileInput(lay.inputs[0], rows, ch, 0)], (o0, o1), ch,
                              in_len, cycles))
        return tiles

    def lower_add(self, lay: Layer, ll: LoweredLayer) -> None:
        cfg, q = self.cfg, self.q
        ql = q.qlayers[lay.name]
        assert ql.add_codes is not None
        cin, h, w = q.graph.shapes[lay.output]
        lanes = cfg.lanes
        weights = broadcast_words(list(ql.add_codes), lanes)
        nblk = math.ceil(cin / lanes)
        pv = ParamValues.of(ql)
        most = self._most_blocks(lay, nblk, 0, params_per_block(pv, pv.bias_int is not None,
                                                                shared=True))

        def build(b0: int, b1: int) -> list[Tile]:
            return self._add_tiles(lay, ql, pv, weights, (b0 * lanes, min(b1 * lanes, cin)),
                                   h, w)

        ll.tiles = self._fit_blocks(lay, nblk, most, build)

    def _add_tiles(self, lay: Layer, ql: QLayer, pv: ParamValues, weights: I64,
                   ch: tuple[int, int], h: int, w: int) -> list[Tile]:
        """Tiles of channels ``ch``: both inputs and the output of a row band share AMEM."""
        cfg = self.cfg
        c = ch[1] - ch[0]
        rows = min(h, cfg.amem_depth // (3 * w * c))
        if rows < 1:
            raise DoesNotFit(f"one row of {w}x{c} needs {3 * w * c} AMEM elements for both "
                             f"inputs and the output, amem_depth is {cfg.amem_depth}")
        nblocks = math.ceil(c / cfg.lanes)
        params, params_step = vector_params(pv, slice(*ch), nblocks, cfg)
        tiles = []
        for o0, o1 in balanced_groups(h, rows):
            n = (o1 - o0) * w * c
            title = f"{lay.name}: add rows {o0}..{o1 - 1}, channels {ch[0]}..{ch[1] - 1}"
            src = add_source((o1 - o0) * w, c, n, nblocks, c % cfg.lanes, 2 * n, ql.relu,
                             ql.slope_ints is not None, cfg, title, params_step,
                             ql.bias_int is not None)
            img, cycles = tile_image(self.programs, src, weights, params,
                                     np.zeros(0, np.int64), 0, band_regions(2 * n, n))
            ins = [TileInput(lay.inputs[0], (o0, o1), ch, 0),
                   TileInput(lay.inputs[1], (o0, o1), ch, n)]
            tiles.append(Tile(img, src, ins, (o0, o1), ch, 2 * n, cycles))
        return tiles


def check_fits(graph: Graph, cfg: AccelConfig) -> None:
    """The checks that need only shapes, run before the (costly) quantization: one input
    channel of a kernel in WMEM, and one output row of one channel block with its input rows
    (one channel of them when the reduction is split) in AMEM."""
    def never(lay: Layer, why: str) -> LowerError:
        return _never(lay, why, cfg, ("amem_depth", "wmem_depth"))

    for lay in graph.layers:
        if lay.op not in ("conv", "maxpool", "avgpool", "add"):
            continue
        c, h, w = graph.shapes[lay.inputs[0]]
        ow = graph.shapes[lay.output][2]
        kh, kw = lay.kernel
        wp = w + lay.pads[1] + lay.pads[3]
        if lay.op == "conv" and not lay.depthwise:
            assert lay.weight is not None
            co, cig = lay.weight.shape[:2]
            per_chunk, _, why = plan_reduction(kh, kw, cig, wp, ow, lay.stride[1],
                                               co // lay.groups, cfg)
            if not per_chunk:
                raise never(lay, why)
            continue
        if lay.op == "conv" and kh * kw > cfg.wmem_depth:  # depthwise: a block's taps
            raise never(lay, f"one block of the {kh}x{kw} depthwise kernel needs {kh * kw} "
                        f"weight words, wmem_depth is {cfg.wmem_depth}")
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

"""Memory layout: what each memory of a tile holds, and where.

* AMEM: the host places the tile's input band(s) from address 0, channel-innermost (HWC) and
  already padded (the border holds zero, or the minimum activation for max pooling: padding is
  never computed by the hardware); the program writes its output band right after them, and a
  max pool's constant vector follows the output.  The host collects the output band.
* WMEM: one word per ``lanes`` output channels (a *block*), lane ``l`` holding channel
  ``block*lanes + l``; a block's words follow its program's walk (``(ky, kx, ci)`` for a dense
  convolution, ``(ky, kx)`` for a depthwise one); unused lanes of the last block hold the code of 0.
* BMEM: per block ``[bias,] requant [, slope]`` words, or one set every block reads when all
  channels share them (average pool, add: a bias only with zero points); unused lanes hold
  bias 0 and the code of 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contract import hwcode, isa
from contract.config import AccelConfig
from contract.image import Image
from emu.asm import AsmError, assemble

from .fit import check_memories
from .qnet import QLayer

I64 = NDArray[np.int64]
Codes = NDArray[np.integer]  # weight codes, in int64 or a narrower unsigned type
IMEM_DEPTH_MAX = 1 << 16  # the configuration's limit (contract.config)
Regions = dict[str, tuple[int, int]]


def lane_words(per_channel: NDArray[np.integer], nblocks: int, lanes: int, fill: int,
               dtype: type[np.integer] = np.int64) -> I64:
    """Per-channel values ``(..., C)`` laid out as ``(nblocks, ..., lanes)`` words."""
    c = per_channel.shape[-1]
    padded = np.full(per_channel.shape[:-1] + (nblocks * lanes,), fill, dtype)
    padded[..., :c] = per_channel
    return padded.reshape(per_channel.shape[:-1] + (nblocks, lanes))


def _zero_code(cfg: AccelConfig) -> int:
    return int(hwcode.encode(np.array(0), cfg.exp_bits))


def weight_codes(w_int: I64, cfg: AccelConfig) -> Codes:
    """WMEM codes of integer weights in the configuration's weight format, in the narrowest
    unsigned type: by a table from every integer a code holds to its canonical code (the
    format's own ``encode`` of each once), a chunk at a time, so a 100 M weight layer costs
    its codes and no whole-tensor int64 temporaries.  A value no code holds raises the
    format's ``ValueError`` naming it."""
    fmt, e = cfg.weight_format, cfg.exp_bits
    bits = fmt.code_bits(e)
    held = np.unique(fmt.to_int(np.arange(1 << bits), e))
    top = int(np.abs(held).max())
    # Index v + top + 1; the two ends stand for every value beyond the codes' range.
    table = np.full(2 * top + 3, -1, np.int64)
    table[held + top + 1] = fmt.encode(held, e)
    dtype = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32
    flat = np.ascontiguousarray(w_int).reshape(-1)
    out = np.empty(flat.shape, dtype)
    step = 1 << 20
    for i in range(0, flat.size, step):
        v = flat[i: i + step]
        got = table[np.clip(v, -top - 1, top + 1) + (top + 1)]
        if np.any(got < 0):
            fmt.encode(v[got < 0], e)  # raises, naming the first value
            raise AssertionError("a weight the code table lacks was encoded")
        out[i: i + step] = got
    return out.reshape(np.shape(w_int))


def conv_weight_words(codes: Codes, nblocks: int, cfg: AccelConfig) -> Codes:
    """WMEM words of a dense convolution's output channels ``codes`` ``(Cout, C, KH, KW)``:
    block by block, each in ``(ky, kx, ci)`` order, in the codes' type."""
    wt = codes.transpose(2, 3, 1, 0)  # (KH, KW, C, Cout)
    words = lane_words(wt, nblocks, cfg.lanes, _zero_code(cfg), codes.dtype.type)
    return words.transpose(3, 0, 1, 2, 4).reshape(-1, cfg.lanes)


def depthwise_weight_words(codes: Codes, nblocks: int, cfg: AccelConfig) -> Codes:
    """WMEM words of a depthwise convolution's channels ``codes`` ``(C, KH, KW)``: block by
    block, each in ``(ky, kx)`` order, in the codes' type."""
    wt = codes.transpose(1, 2, 0)  # (KH, KW, C)
    words = lane_words(wt, nblocks, cfg.lanes, _zero_code(cfg), codes.dtype.type)
    words = words.transpose(2, 0, 1, 3)
    return words.reshape(-1, cfg.lanes)


def broadcast_words(codes: list[int], lanes: int) -> I64:
    """One word per code, the same code in every lane (average pool's 1.0, add's scales)."""
    return np.array([[code] * lanes for code in codes], np.int64).reshape(-1, lanes)


@dataclass(frozen=True)
class ParamValues:
    """A layer's BMEM values per channel, encoded once (:class:`QLayer` encodes them on every
    read, and a layer of 4096 channels is read once per tile group)."""

    bias_int: I64 | None
    req_params: I64
    slope_params: I64 | None

    @classmethod
    def of(cls, ql: QLayer) -> ParamValues:
        return cls(ql.bias_int, ql.req_params, ql.slope_params)


def param_words(pv: ParamValues, ch: slice, nblocks: int, cfg: AccelConfig, bias: bool) -> I64:
    """BMEM words per block: [bias,] requant [, slope]."""
    one = int(hwcode.encode(np.array(1), cfg.exp_bits))
    cols = []
    if bias:
        assert pv.bias_int is not None
        cols.append(lane_words(pv.bias_int[ch], nblocks, cfg.lanes, 0))
    cols.append(lane_words(pv.req_params[ch], nblocks, cfg.lanes, one))
    sp = pv.slope_params
    if sp is not None:
        cols.append(lane_words(sp[ch], nblocks, cfg.lanes, one))
    return np.stack(cols, axis=1).reshape(-1, cfg.lanes)


def chunk_param_words(pv: ParamValues, ch: slice, nblocks: int, cfg: AccelConfig, first: bool,
                      last: bool) -> I64:
    """BMEM words per block of one reduction chunk: the bias for the first (it starts the
    sums), requant [, slope] for the last (it finishes them), none between."""
    if last:
        return param_words(pv, ch, nblocks, cfg, bias=first)
    if first:
        assert pv.bias_int is not None
        return lane_words(pv.bias_int[ch], nblocks, cfg.lanes, 0).reshape(-1, cfg.lanes)
    return np.zeros((0, cfg.lanes), np.int64)


def shares_params(pv: ParamValues) -> bool:
    """Whether all the layer's channels have the same [bias,] requant and slope words (true of
    an average pool or an add unless a PReLU gives each channel its own slope: their scales
    and zero points are per tensor)."""
    return all(np.all(v == v[0]) for v in (pv.bias_int, pv.req_params, pv.slope_params)
               if v is not None)


def params_per_block(pv: ParamValues, bias: bool, shared: bool = False) -> int:
    """BMEM words each block needs of its own, ``[bias,] requant [, slope]``: none for a layer
    whose channels share one set when its program reads a shared set (``shared``: average
    pool, add; ``bias=False`` implies it)."""
    if (shared or not bias) and shares_params(pv):
        return 0
    return int(bias) + 1 + int(pv.slope_params is not None)


def vector_params(pv: ParamValues, ch: slice, nblocks: int, cfg: AccelConfig
                  ) -> tuple[I64, int]:
    """BMEM words of an average pool or add for channels ``ch`` (with a bias word where zero
    points gave it one), and the words the parameter pointer steps per block: one set that
    every block reads when the channels share them, else one set per block."""
    bias = pv.bias_int is not None
    if shares_params(pv):
        one = param_words(pv, slice(0, 1), 1, cfg, bias=bias)[:, :1]
        return one.repeat(cfg.lanes, axis=1), 0
    words = param_words(pv, ch, nblocks, cfg, bias=bias)
    return words, len(words) // nblocks


def band_regions(in_len: int, out_len: int) -> Regions:
    """The AMEM regions of a tile: its input band(s) from 0, its output right after."""
    return {"input": (0, in_len), "output": (in_len, out_len)}


class Programs:
    """Assembled programs and their static cycles, by code: a layer's row bands and channel
    groups mostly differ in their comment lines only (the title), so each distinct program
    is assembled and timed once."""

    def __init__(self, cfg: AccelConfig) -> None:
        self.cfg = cfg
        self._known: dict[str, tuple[I64, int]] = {}

    def assemble(self, source: str) -> tuple[I64, int]:
        """``(text, cycles)`` of ``source``; the text is the caller's own copy.  Raises
        :class:`programs.fit.DoesNotFit` for a program longer than IMEM."""
        key = "\n".join(line for line in source.splitlines() if not line.startswith(";"))
        hit = self._known.get(key)
        if hit is None:
            text = _assemble(source, self.cfg)
            hit = self._known[key] = (text, isa.static_cycles(text))
        return hit[0].copy(), hit[1]


def _assemble(source: str, cfg: AccelConfig) -> I64:
    try:
        return assemble(source, cfg, "<lower>").text
    except AsmError:
        # The assembler refuses a program longer than IMEM before the size check below could
        # tell the planner to shrink the tile: measure it against the largest IMEM instead.
        roomy = dataclasses.replace(cfg, imem_depth=IMEM_DEPTH_MAX)
        text = assemble(source, roomy, "<lower>").text
        if len(text) <= cfg.imem_depth:
            raise
        check_memories(cfg, len(text), 0, 0)  # raises DoesNotFit
        raise


def tile_image(programs: Programs, source: str, weights: Codes, params: I64, acts: I64,
               acts_base: int, regions: Regions) -> tuple[Image, int]:
    """The program image of one tile and its static cycles; raises
    :class:`programs.fit.DoesNotFit` when its program, weights or parameters exceed their
    memory."""
    cfg = programs.cfg
    text, cycles = programs.assemble(source)
    check_memories(cfg, len(text), len(weights), len(params))
    return Image(cfg, text, weights, params, acts, acts_base, regions), cycles

"""Small program generators: the seed of the compiler.

Each generator returns a :class:`Kernel`: the assembly text of the code (readable, commented,
with ``.region`` directives but no bulk data), the :class:`contract.image.Image` with the data
attached, and the numpy integer reference of the ``output`` region.  The references are written
here independently of the emulator (plain integer numpy), so emulator == reference is a real
check of both.

Layouts: feature maps are channel-innermost (HWC) in AMEM; a convolution's input is stored
already padded.  Output channels are processed in blocks of ``lanes`` (one lane per output
channel); the weights of block ``b`` are the WMEM words ``b*K*K*Cin ..`` in (ky, kx, ci) order,
lane ``l`` holding output channel ``b*lanes + l``.  BMEM holds the biases of all blocks, then
the requantization parameters of all blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contract import hwcode
from contract.config import AccelConfig
from contract.image import Image
from contract.semantics import req_param
from emu.asm import assemble

I64 = NDArray[np.int64]


@dataclass
class Kernel:
    """A generated program: its code as text, the runnable image and the expected output."""

    source: str
    image: Image
    expected: I64  # the 'output' region, flat, as the emulator leaves it in AMEM

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.expected.shape)


def _imm(value: int, bits: int, what: str) -> int:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not lo <= value <= hi:
        raise ValueError(f"{what} = {value} does not fit a {bits}-bit signed immediate; "
                         "the layer is too large for one program")
    return value


def _build(code: str, config: AccelConfig, weights: I64, params: I64, acts: I64,
           acts_base: int, regions: dict[str, tuple[int, int]]) -> Image:
    text = assemble(code, config, "<kernel>").text
    return Image(config, text, weights, params, acts, acts_base, regions)


# Integer references ---------------------------------------------------------------------
def wrap(v: I64, bits: int) -> I64:
    half = 1 << (bits - 1)
    return ((v + half) & ((1 << bits) - 1)) - half


def requant_reference(acc: I64, mult: I64, shift: I64, act_bits: int, relu: bool) -> I64:
    """Multiply by the integer multiplier, round half up, shift, saturate, optional ReLU."""
    t = np.asarray(acc, np.int64) * np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    y = np.clip((t + half) >> shift, -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1)
    return np.maximum(y, 0) if relu else y


def _matmul_exact(a: I64, b: I64) -> I64:
    """Integer matrix product; float64 BLAS when every partial sum is below 2^53."""
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound < 1 << 53:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


def conv2d_reference(x: I64, w: I64, bias: I64, mult: I64, shift: I64, *, stride: int = 1,
                     pad: int = 0, relu: bool = True, acc_bits: int = 32,
                     act_bits: int = 8) -> I64:
    """(Ho, Wo, Cout) output of an HWC convolution with weights (K, K, Cin, Cout)."""
    k = w.shape[0]
    xp = np.pad(np.asarray(x, np.int64), ((pad, pad), (pad, pad), (0, 0)))
    ho = (xp.shape[0] - k) // stride + 1
    wo = (xp.shape[1] - k) // stride + 1
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(0, 1))
    cols = cols[::stride, ::stride][:ho, :wo]  # (ho, wo, cin, ky, kx)
    cols = np.ascontiguousarray(cols.transpose(0, 1, 3, 4, 2)).reshape(ho * wo, -1)
    acc = wrap(_matmul_exact(cols, np.asarray(w, np.int64).reshape(-1, w.shape[3]))
               + np.asarray(bias, np.int64), acc_bits)
    return requant_reference(acc, mult, shift, act_bits, relu).reshape(ho, wo, -1)


def maxpool_reference(x: I64, k: int, stride: int) -> I64:
    win = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.int64), (k, k), axis=(0, 1))
    return win[::stride, ::stride].max(axis=(3, 4))


# Generators -------------------------------------------------------------------------------
def dot(x: I64, w: I64, mult: int = 1, shift: int = 0,
        config: AccelConfig | None = None) -> Kernel:
    """``lanes`` dot products of one vector: out[l] = req(sum_i x[i] * w[i, l])."""
    c = config or AccelConfig()
    x = np.asarray(x, np.int64).reshape(-1)
    w = np.asarray(w, np.int64).reshape(len(x), c.lanes)
    n, out = len(x), len(x)
    code = f"""\
; {c.lanes} dot products of length {n}: sum x[i] * w[i, lane], then requantize
    SETI r0, 0              ; weight word of x[0]
    SETI r1, 0              ; x[0] in AMEM
    SETI r2, 0              ; requantization parameters: BMEM word 0
    SETI r3, {out}          ; output after the input
    CLR
    LOOP {n}, done
    MAC r0, 1, r1, 1        ; one word of weights per element, all lanes at once
done:
    REQ r2, 0, 0
    STORE r3, {c.lanes}, 0
    HALT
.region input 0 {n}
.region output {out} {c.lanes}
"""
    params = np.array([[req_param(int(hwcode.encode(mult, c.exp_bits)), shift, c.code_bits)]
                       * c.lanes], np.int64)
    img = _build(code, c, c.weight_format.encode(w, c.exp_bits), params, x, 0,
                 {"input": (0, n), "output": (out, c.lanes)})
    acc = wrap(x @ w, c.acc_bits)
    return Kernel(code, img, requant_reference(acc, np.asarray(mult), np.asarray(shift),
                                               c.act_bits, False))


def conv2d(x: I64, w: I64, bias: I64, mult: I64, shift: I64, *, stride: int = 1, pad: int = 0,
           relu: bool = True, config: AccelConfig | None = None, in_base: int = 0,
           out_base: int | None = None) -> Kernel:
    """A KxK convolution over an HWC input, bias, requantization and optional ReLU.

    ``w`` is (K, K, Cin, Cout) integer weights (two-digit values), ``bias`` (Cout,) in the
    accumulator scale, ``mult``/``shift`` (Cout,) the requantization per output channel.
    Four loop levels: output-channel block, output row, output pixel, and one MAC loop per
    kernel row (a kernel row of all input channels is contiguous in HWC).
    """
    c = config or AccelConfig()
    if c.loop_depth < 4:
        raise ValueError("conv2d needs loop_depth >= 4")
    x = np.asarray(x, np.int64)
    w = np.asarray(w, np.int64)
    h, wd, cin = x.shape
    k, cout = w.shape[0], w.shape[3]
    hp, wp = h + 2 * pad, wd + 2 * pad
    ho, wo = (hp - k) // stride + 1, (wp - k) // stride + 1
    lanes = c.lanes
    nfull, rem = divmod(cout, lanes)
    nblocks = nfull + (1 if rem else 0)
    kkc = k * k * cin
    if out_base is None:
        out_base = in_base + hp * wp * cin
    step_ky = _imm((wp - k) * cin, 16, "kernel row step")
    step_px = _imm(stride * cin - (k - 1) * wp * cin - k * cin, 16, "pixel step")
    step_row = _imm(stride * wp * cin - wo * stride * cin, 16, "row step")

    def block(n: int, indent: str) -> list[str]:
        lines = [f"{indent}SETI r1, {in_base}          ; window of output pixel (0, 0)",
                 f"{indent}ADDI r2, r6, 0          ; this block's first output channel",
                 f"{indent}LOOP {ho}, rows_end_{{b}}"]
        lines += [f"{indent}  LOOP {wo}, px_end_{{b}}",
                  f"{indent}    BIAS r3, 0",
                  f"{indent}    ADDI r0, r5, 0        ; weights of this block"]
        for ky in range(k):
            step = step_ky if ky < k - 1 else step_px
            what = "next kernel row" if ky < k - 1 else "next pixel's window"
            lines += [f"{indent}    LOOP {k * cin}, ky_end_{{b}}_{ky}",
                      f"{indent}      MAC r0, 1, r1, 1    ; kernel row {ky}: {k} pixels x "
                      f"{cin} channels",
                      f"ky_end_{{b}}_{ky}:",
                      f"{indent}    ADDI r1, r1, {step}    ; {what}"]
        lines += [f"{indent}    REQ r4, 0, {int(relu)}",
                  f"{indent}    STORE r2, {n}, {cout}    ; {n} channels of one output pixel",
                  "px_end_{b}:",
                  f"{indent}  ADDI r1, r1, {step_row}    ; next output row's window",
                  "rows_end_{b}:",
                  f"{indent}ADDI r5, r5, {kkc}",
                  f"{indent}ADDI r3, r3, 1",
                  f"{indent}ADDI r4, r4, 1",
                  f"{indent}ADDI r6, r6, {lanes}"]
        return lines

    code = [f"; {k}x{k} convolution, stride {stride}: ({h}+2*{pad})x({wd}+2*{pad})x{cin} -> "
            f"{ho}x{wo}x{cout}, {lanes} output channels per block",
            "    SETI r5, 0              ; weight word of block 0",
            "    SETI r3, 0              ; biases: BMEM words 0..",
            f"    SETI r4, {nblocks}              ; requantization: BMEM words {nblocks}..",
            f"    SETI r6, {out_base}          ; output channel 0 of pixel (0, 0)"]
    if nfull:
        code += [f"    LOOP {nfull}, blocks_end"]
        code += [ln.format(b="full") for ln in block(lanes, "      ")]
        code += ["blocks_end:"]
    if rem:
        code += [ln.format(b="tail") for ln in block(rem, "    ")]
    code += ["    HALT",
             f".region input {in_base} {hp * wp * cin}",
             f".region output {out_base} {ho * wo * cout}"]
    source = "\n".join(code) + "\n"

    wpad = np.zeros((k, k, cin, nblocks * lanes), np.int64)
    wpad[..., :cout] = w
    words = wpad.reshape(kkc, nblocks, lanes).transpose(1, 0, 2).reshape(-1, lanes)
    pad_c = nblocks * lanes - cout
    biases = np.pad(np.asarray(bias, np.int64), (0, pad_c)).reshape(nblocks, lanes)
    mult_codes = hwcode.encode(np.pad(np.asarray(mult, np.int64), (0, pad_c)), c.exp_bits)
    shifts = np.pad(np.asarray(shift, np.int64), (0, pad_c))
    req = (mult_codes | (shifts << c.code_bits)).reshape(nblocks, lanes)
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    img = _build(source, c, c.weight_format.encode(words, c.exp_bits),
                 np.concatenate([biases, req]),
                 xp.reshape(-1), in_base,
                 {"input": (in_base, hp * wp * cin), "output": (out_base, ho * wo * cout)})
    ref = conv2d_reference(x, w, bias, mult, shift, stride=stride, pad=pad, relu=relu,
                           acc_bits=c.acc_bits, act_bits=c.act_bits)
    return Kernel(source, img, ref.reshape(-1))


def maxpool(x: I64, k: int = 2, stride: int = 2, *, config: AccelConfig | None = None,
            in_base: int = 0, out_base: int | None = None) -> Kernel:
    """KxK max pooling of an HWC input (no padding), ``lanes`` channels at a time."""
    c = config or AccelConfig()
    x = np.asarray(x, np.int64)
    h, wd, ch = x.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    lanes = c.lanes
    nfull, rem = divmod(ch, lanes)
    if out_base is None:
        out_base = in_base + h * wd * ch
    step_kr = _imm((wd - k) * ch, 16, "window row step")
    step_px = _imm(stride * ch - (k - 1) * wd * ch - k * ch, 16, "pixel step")
    step_row = _imm(stride * wd * ch - wo * stride * ch, 16, "row step")

    def block(n: int, indent: str, b: str) -> list[str]:
        lines = [f"{indent}ADDI r1, r5, 0          ; window of output pixel (0, 0)",
                 f"{indent}ADDI r2, r6, 0",
                 f"{indent}LOOP {ho}, rows_end_{b}",
                 f"{indent}  LOOP {wo}, px_end_{b}"]
        for ky in range(k):
            for kx in range(k):
                op = "VLD " if ky == kx == 0 else "VMAX"
                lines.append(f"{indent}    {op} r1, {n}, {ch}     ; window ({ky}, {kx})")
            step = step_kr if ky < k - 1 else step_px
            lines.append(f"{indent}    ADDI r1, r1, {step}")
        lines += [f"{indent}    STORE r2, {n}, {ch}",
                  f"px_end_{b}:",
                  f"{indent}  ADDI r1, r1, {step_row}",
                  f"rows_end_{b}:",
                  f"{indent}ADDI r5, r5, {lanes}",
                  f"{indent}ADDI r6, r6, {lanes}"]
        return lines

    code = [f"; {k}x{k} max pool, stride {stride}: {h}x{wd}x{ch} -> {ho}x{wo}x{ch}",
            f"    SETI r5, {in_base}          ; channel block 0 of the input",
            f"    SETI r6, {out_base}"]
    if nfull:
        code += [f"    LOOP {nfull}, blocks_end"] + block(lanes, "      ", "full")
        code += ["blocks_end:"]
    if rem:
        code += block(rem, "    ", "tail")
    code += ["    HALT",
             f".region input {in_base} {h * wd * ch}",
             f".region output {out_base} {ho * wo * ch}"]
    source = "\n".join(code) + "\n"
    img = _build(source, c, np.zeros((0, lanes), np.int64), np.zeros((0, lanes), np.int64),
                 x.reshape(-1), in_base,
                 {"input": (in_base, h * wd * ch), "output": (out_base, ho * wo * ch)})
    return Kernel(source, img, maxpool_reference(x, k, stride).reshape(-1))


def random_weights(shape: tuple[int, ...], exp_bits: int, rng: np.random.Generator) -> I64:
    """Random integer weights that are two-digit values (what the quantizer produces)."""
    codes = rng.integers(0, 1 << hwcode.code_bits(exp_bits), size=shape)
    return hwcode.to_int(codes, exp_bits).astype(np.int64)


__all__ = ["Kernel", "dot", "conv2d", "maxpool", "conv2d_reference", "maxpool_reference",
           "requant_reference", "random_weights"]

"""Emulator speed on ResNet-18's first 3x3 layer (64 -> 64 channels, 56x56, stride 1, pad 1).

Measured side by side in one process:

* fast mode running the program that programs/kernels.py generates for the layer, checked
  bit for bit against the numpy integer reference;
* a numpy float32 im2col + matmul of the same layer (the yardstick: fast mode should be
  within 10x of it), timed in the same run as fast mode: best and median of each side;
* step mode on a slice (one output row of one channel block), its shift-adds per second, and
  the whole layer's step time extrapolated from them.

The layer does not fit one program: its padded input (58*58*64) alone exceeds the 2^16 words
of AMEM that 16-bit address registers can reach.  So it runs in bands of output rows, each a
separate program and image (the input rows it needs, with the halo, plus its output rows),
the way a compiler would tile it.  Building the images is not timed; running them is.

    python benchmarks/bench_emulator.py                  # the real layer, lanes 8
    python benchmarks/bench_emulator.py --lanes 16
    python benchmarks/bench_emulator.py --size 6 --channels 8 --out /tmp/x.json   # tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contract.config import AccelConfig  # noqa: E402
from emu.emulator import run  # noqa: E402
from programs import kernels  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "emulator.json"


def _times(fn: Any, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def im2col_f32(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The float32 yardstick: pad, im2col, one matmul."""
    k = w.shape[0]
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(0, 1))
    cols = np.ascontiguousarray(cols.transpose(0, 1, 3, 4, 2)).reshape(-1, k * k * x.shape[2])
    return cols @ w.reshape(-1, w.shape[3])


def band_rows(size: int, cin: int, cout: int, amem_depth: int) -> int:
    """Most output rows whose input rows (with the 2-row halo) and outputs fit AMEM."""
    wp = size + 2
    rows = (amem_depth - 2 * wp * cin) // (wp * cin + size * cout)
    if rows < 1:
        raise SystemExit(f"one output row of this layer does not fit amem_depth {amem_depth}")
    return min(rows, size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--size", type=int, default=56, help="input height and width")
    ap.add_argument("--channels", type=int, default=64, help="input and output channels")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    size, ch, lanes = args.size, args.channels, args.lanes
    rng = np.random.default_rng(2020)

    kkc = 9 * ch
    nblocks = -(-ch // lanes)
    wdepth = 1 << max(1, (nblocks * kkc - 1).bit_length())
    config = AccelConfig(lanes=lanes, wmem_depth=max(wdepth, 2))
    x = rng.integers(-128, 128, (size, size, ch))
    w = kernels.random_weights((3, 3, ch, ch), config.exp_bits, rng)
    bias = rng.integers(-2000, 2000, ch)
    mult = kernels.random_weights((ch,), config.exp_bits, rng)
    shift = np.full(ch, 13)

    ref = kernels.conv2d_reference(x, w, bias, mult, shift, pad=1, relu=True,
                                   acc_bits=config.acc_bits, act_bits=config.act_bits)
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    rows = band_rows(size, ch, ch, config.amem_depth)
    bands = []
    for r0 in range(0, size, rows):
        r1 = min(size, r0 + rows)
        bands.append(kernels.conv2d(xp[r0: r1 + 2], w, bias, mult, shift, pad=0, relu=True,
                                    config=config))

    outs: list[np.ndarray] = []
    counters: dict[str, Any] = {}

    def fast_all() -> None:
        outs.clear()
        counters.clear()
        for k in bands:
            res = run(k.image, fast=True)
            outs.append(res.region().copy())
            for key in ("cycles", "shift_adds", "instructions"):
                counters[key] = counters.get(key, 0) + res.counters[key]

    # Side by side in one process, in two rounds of (numpy block, fast block) so that both
    # sides sample the machine's load at two times; the best and the median of each side are
    # reported.  Blocks rather than strict turns: after the yardstick's multithreaded product,
    # OpenBLAS's worker threads keep spinning for a while and slow whatever runs next.
    xf, wf = x.astype(np.float32), w.astype(np.float32)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    fast_all()  # first run: parses the program text (cached for the other bands and runs)
    np_times: list[float] = []
    fast_times: list[float] = []
    for _ in range(2):
        np_times += _times(lambda: im2col_f32(xf, wf), args.repeats)
        fast_times += _times(fast_all, args.repeats)
    t_np, t_fast = min(np_times), min(fast_times)
    med_np, med_fast = float(np.median(np_times)), float(np.median(fast_times))
    got = np.concatenate(outs).reshape(ref.shape)
    exact = bool(np.array_equal(got, ref))

    # Step mode on one output row of one channel block; shift-adds scale with the work.
    slice_k = kernels.conv2d(xp[0:3], w[..., :lanes], bias[:lanes], mult[:lanes],
                             shift[:lanes], pad=0, relu=True, config=config)
    t0 = time.perf_counter()
    step_res = run(slice_k.image)
    t_step_slice = time.perf_counter() - t0
    step_ok = bool(np.array_equal(step_res.region(), slice_k.expected))
    step_rate = step_res.counters["shift_adds"] / t_step_slice
    t_step_layer = counters["shift_adds"] / step_rate

    result = {
        "layer": f"conv3x3 {ch}->{ch}, {size}x{size}, stride 1, pad 1",
        "lanes": lanes,
        "config": config.to_dict(),
        "bands": len(bands),
        "rows_per_band": rows,
        "fast_seconds": t_fast,
        "numpy_f32_im2col_seconds": t_np,
        "fast_over_numpy": t_fast / t_np,
        "within_10x": t_fast / t_np <= 10,
        "fast_seconds_median": med_fast,
        "numpy_f32_im2col_seconds_median": med_np,
        "fast_over_numpy_median": med_fast / med_np,
        "repeats": args.repeats,
        "load_average_1min": load,
        "fast_matches_integer_reference": exact,
        "cycles": counters["cycles"],
        "instructions": counters["instructions"],
        "shift_adds": counters["shift_adds"],
        "fast_shift_adds_per_s": counters["shift_adds"] / t_fast,
        "step_slice_seconds": t_step_slice,
        "step_slice_shift_adds": step_res.counters["shift_adds"],
        "step_slice_matches_reference": step_ok,
        "step_shift_adds_per_s": step_rate,
        "step_layer_seconds_extrapolated": t_step_layer,
        "fast_over_step_speedup": t_step_layer / t_fast,
    }
    print(f"layer            {result['layer']}, lanes {lanes}")
    print(f"tiling           {len(bands)} programs of {rows} output rows (AMEM holds 2^16 "
          "words: the padded input does not fit one image)")
    print(f"numpy f32 im2col {t_np * 1e3:9.2f} ms   best of {len(np_times)}, median "
          f"{med_np * 1e3:.2f} ms (1-min load average {load:.1f})")
    print(f"fast mode        {t_fast * 1e3:9.2f} ms   best of {len(fast_times)}, median "
          f"{med_fast * 1e3:.2f} ms, {result['fast_shift_adds_per_s'] / 1e6:.0f} M shift-adds/s, "
          f"output == integer reference: {exact}")
    print(f"side by side     fast / numpy = {t_fast / t_np:.1f}x best, "
          f"{med_fast / med_np:.1f}x median "
          f"({'within' if result['within_10x'] else 'NOT within'} 10x)")
    print(f"step mode        {step_rate / 1e3:9.1f} k shift-adds/s on a slice "
          f"({step_res.counters['shift_adds']} shift-adds in {t_step_slice:.2f} s, "
          f"== reference: {step_ok}); whole layer extrapolated {t_step_layer:.0f} s, "
          f"fast mode is {t_step_layer / t_fast:.0f}x faster")
    print(f"counters         {counters['cycles']} cycles, {counters['instructions']} "
          f"instructions, {counters['shift_adds']} shift-adds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved            {args.out}")
    return 0 if exact and step_ok else 1


if __name__ == "__main__":
    sys.exit(main())

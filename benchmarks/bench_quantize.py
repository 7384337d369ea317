"""Speed and memory of ASD quantization on ResNet-18-sized weights (11.7 M float32).

Measured side by side in one run, each the best of ``--repeat`` runs:

* ``np.abs`` over all the weights: the yardstick;
* nearest ASD (K=2, E=3) codes at fixed per-channel scales   (target: <= 3x np.abs);
* per-channel MSE-optimal scale search as ``asd quantize`` runs it (73 coarse candidates, two
  fine windows of 33, two least-squares polish steps)            (target: <= 30x np.abs);
* peak extra memory of each, by tracemalloc                 (target: <= 4x the weights);
* the same two done per weight in a Python loop, timed on a sample and extrapolated.

Prints the figures and writes them as JSON (default ``benchmarks/results/quantize.json``).
Run: ``python benchmarks/bench_quantize.py`` (``--shrink 16`` for a quick small run).
"""

from __future__ import annotations

import argparse
import bisect
import json
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asd import scales  # noqa: E402
from asd.asdq import AsdFormat  # noqa: E402
from asd.schemes import get_scheme  # noqa: E402


def resnet18_shapes(shrink: int = 1) -> list[tuple[int, ...]]:
    """Conv and FC weight shapes of ResNet-18, channel counts divided by ``shrink``."""

    def c(n: int) -> int:
        return max(1, n // shrink)

    shapes: list[tuple[int, ...]] = [(c(64), 3, 7, 7)]
    cin = 64
    for cout in (64, 128, 256, 512):
        for block in range(2):
            first = block == 0
            shapes.append((c(cout), c(cin if first else cout), 3, 3))
            shapes.append((c(cout), c(cout), 3, 3))
            if first and cin != cout:
                shapes.append((c(cout), c(cin), 1, 1))
        cin = cout
    shapes.append((c(1000), c(512)))
    return shapes


def make_weights(shapes, seed=0):
    rng = np.random.default_rng(seed)
    total = sum(int(np.prod(s)) for s in shapes)
    buf = np.empty(total, dtype=np.float32)
    layers = []
    off = 0
    for s in shapes:
        n = int(np.prod(s))
        fan_in = n // s[0]
        spread = rng.uniform(0.5, 2.0, (s[0], 1)) * np.sqrt(1.0 / fan_in)
        buf[off : off + n] = (rng.laplace(size=(s[0], fan_in)) * spread).reshape(-1)
        layers.append(buf[off : off + n].reshape(s[0], -1))
        off += n
    return buf, layers


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_extra(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def python_loop_nearest(sample, scale, fmt):
    """Per-weight Python: scale, binary search the midpoints, pick the code."""
    mids = [float(m) / 2 ** (fmt.frac_bits + 1) for m in fmt.codebook.mid2]
    table = fmt.code_table.tolist()
    m = fmt.codebook.m
    out = []
    for w in sample.tolist():
        x = w / scale
        i = bisect.bisect_right(mids, abs(x))
        out.append(table[(i if x >= 0 else -i) + m])
    return out


def python_loop_mse(sample, maxabs, fmt, alphas):
    """Per-weight Python error for every candidate scale, then the best candidate."""
    mids = [float(m) / 2 ** (fmt.frac_bits + 1) for m in fmt.codebook.mid2]
    levels = fmt.codebook.positive_values().tolist()
    errs = []
    for a in alphas.tolist():
        s = maxabs * a / fmt.vmax
        e = 0.0
        for w in sample.tolist():
            x = abs(w) / s
            q = levels[bisect.bisect_right(mids, x)] * s
            e += (abs(w) - q) ** 2
        errs.append(e)
    return min(range(len(errs)), key=errs.__getitem__)


def run(shrink=1, repeat=5, sample=20000, out=None, quiet=False):
    fmt = AsdFormat(2, 3)
    shapes = resnet18_shapes(shrink)
    buf, layers = make_weights(shapes)
    n = buf.size
    fixed = [scales.scale_max(w, fmt.vmax) for w in layers]
    table = fmt.code_table

    def nearest_all():
        return [fmt.codebook.map(w, s, table) for w, s in zip(layers, fixed, strict=True)]

    scheme = get_scheme("asd2")

    def mse_all():
        return [scheme._scales(w, "mse") for w in layers]

    nearest_all()  # warm the tables
    t_abs = t_near = t_mse = float("inf")
    # Interleaved, so machine noise hits all three alike.
    for _ in range(repeat):
        t_abs = min(t_abs, best_time(lambda: np.abs(buf), 1))
        t_near = min(t_near, best_time(nearest_all, 1))
        t_mse = min(t_mse, best_time(mse_all, 1))
    mem_near = peak_extra(nearest_all)
    mem_mse = peak_extra(mse_all)

    k = min(sample, layers[-1].size)
    smp = layers[-1].reshape(-1)[:k]
    t0 = time.perf_counter()
    python_loop_nearest(smp, float(fixed[-1][0]), fmt)
    py_near = (time.perf_counter() - t0) / k * n
    k2 = max(1, k // 8)
    t0 = time.perf_counter()
    python_loop_mse(smp[:k2], float(np.abs(smp[:k2]).max()), fmt, scales.mse_ratios())
    py_mse = (time.perf_counter() - t0) / k2 * n

    res = {
        "weights": int(n),
        "layers": len(shapes),
        "repeat": repeat,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "abs_s": t_abs,
        "nearest_s": t_near,
        "mse_search_s": t_mse,
        "mse_candidates": int(scales.mse_ratios().size),
        "nearest_over_abs": t_near / t_abs,
        "mse_over_abs": t_mse / t_abs,
        "nearest_peak_extra_over_weights": mem_near / buf.nbytes,
        "mse_peak_extra_over_weights": mem_mse / buf.nbytes,
        "python_loop_nearest_s_extrapolated": py_near,
        "python_loop_mse_s_extrapolated": py_mse,
        "python_loop_sample": int(k),
        "python_over_vectorized_nearest": py_near / t_near,
        "python_over_vectorized_mse": py_mse / t_mse,
        "targets": {"nearest_over_abs": 3.0, "mse_over_abs": 30.0, "peak_extra_over_weights": 4.0},
    }
    if not quiet:
        mb = buf.nbytes / 2**20
        print(f"{n:,} float32 weights ({mb:.1f} MiB) in {len(shapes)} ResNet-18 layers, "
              f"best of {repeat}")
        print(f"  np.abs                         {1e3 * t_abs:9.1f} ms   1.0x")
        print(f"  nearest ASD, fixed scales      {1e3 * t_near:9.1f} ms  {t_near / t_abs:4.1f}x "
              f"(target 3x)   peak extra {mem_near / buf.nbytes:.2f}x weights")
        print(f"  MSE scale search, {res['mse_candidates']} cands    {1e3 * t_mse:9.1f} ms "
              f"{t_mse / t_abs:5.1f}x (target 30x)  peak extra {mem_mse / buf.nbytes:.2f}x weights")
        print(f"  Python loop, nearest (sample {k:,}, extrapolated) {py_near:8.1f} s = "
              f"{py_near / t_near:,.0f}x the vectorized")
        print(f"  Python loop, MSE search (sample {k2:,}, extrapolated) {py_mse:8.1f} s = "
              f"{py_mse / t_mse:,.0f}x the vectorized")
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        if not quiet:
            print(f"wrote {out}")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shrink", type=int, default=1, help="divide channel counts by this")
    p.add_argument("--repeat", type=int, default=9,
                   help="best of this many interleaved runs (the machine is noisy)")
    p.add_argument("--sample", type=int, default=20000, help="weights in the Python-loop sample")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quantize.json"))
    a = p.parse_args(argv)
    run(a.shrink, a.repeat, a.sample, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

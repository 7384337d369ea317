"""Simulated cycles per second of every RTL backend on one program, beside the emulator.

The program is programs/examples/conv3x3.s (a 3x3 convolution, 2 -> 4 channels, 4x4 output,
with bias, requantization and ReLU) scaled up by running the whole convolution ``--repeat``
times inside an outer hardware loop.  Each backend runs it once to build (convert, compile:
not timed) and then once timed; the emulator's fast mode runs it beside them, and the table
gives each backend's slowdown against it.  Every run's AMEM and cycle count are checked
against the emulator's.

    python benchmarks/bench_backends.py [--repeat 20] [--backends myhdl,icarus,ghdl,verilator]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from contract.backend import RTL_BACKENDS, Backend, Limits, get_backend
from contract.image import Image
from emu import emulator
from emu.asm import assemble

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "programs" / "examples" / "conv3x3.s"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "backends.json"
# The exported testbench prints every AMEM word; the default 64 Ki words would make printing,
# not simulating, the cost measured for the external simulators.
BENCH_DEPTHS = {"amem_depth": 1024, "imem_depth": 256, "wmem_depth": 256, "bmem_depth": 16}


def scaled_conv(repeat: int) -> Image:
    """conv3x3.s with its whole body run ``repeat`` times by one more hardware loop."""
    src = EXAMPLE.read_text()
    lines = src.splitlines()
    first = next(i for i, ln in enumerate(lines) if re.match(r"\s*SETI\b", ln))
    last = next(i for i, ln in enumerate(lines) if re.search(r"\bHALT\b", ln))
    halt = lines[last]
    label = re.match(r"\s*(\w+:)?", halt)
    prefix = label.group(1) if label and label.group(1) else ""
    # The outer body must not end on the instruction that ends the rows loop, so a NOP
    # (carrying HALT's label, which marks the end of that loop) closes it.
    lines[last] = f"{prefix} NOP\nrepeat_end: HALT"
    lines.insert(first, f"        LOOP {repeat}, repeat_end")
    probe = assemble(src, source=str(EXAMPLE))
    config = probe.config.replace(**BENCH_DEPTHS)
    return assemble("\n".join(lines), config, f"{EXAMPLE.name} x{repeat}")


# The rows besides the simulators: the emulator in each mode.
EMULATOR_ROWS = {"emu-fast": {"fast": True}, "emu-step": {"fast": False}}


def open_row(row: str) -> Backend:
    if row in EMULATOR_ROWS:
        return get_backend("emu", **EMULATOR_ROWS[row])
    return get_backend(row)


def measure(image: Image, backend: Backend, timeout: float) -> dict[str, Any]:
    """A first run (building and caching a simulator's design, warming the emulator's caches)
    and a timed second one."""
    limits = Limits(timeout=timeout)
    t0 = time.perf_counter()
    backend.run(image, limits)
    first = time.perf_counter() - t0
    res = backend.run(image, limits)
    return {"cycles": res.cycles, "seconds": res.wall_seconds, "first_run_seconds": first,
            "amem": res.amem}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20, help="times the convolution runs")
    ap.add_argument("--backends", default=",".join(RTL_BACKENDS),
                    help="comma-separated RTL backends to measure")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    args = ap.parse_args(argv)
    names = [b for b in args.backends.split(",") if b]
    for b in names:
        if b not in RTL_BACKENDS:
            ap.error(f"unknown backend {b!r} (one of {', '.join(RTL_BACKENDS)})")
    image = scaled_conv(args.repeat)
    golden = emulator.run(image)
    rows: dict[str, dict[str, Any]] = {}
    for b in [*EMULATOR_ROWS, *names]:
        m = measure(image, open_row(b), args.timeout)
        if m["cycles"] != golden.cycles or not np.array_equal(m["amem"], golden.amem):
            print(f"{b}: result differs from the emulator's", file=sys.stderr)
            return 1
        m.pop("amem")
        m["cycles_per_second"] = m["cycles"] / m["seconds"]
        rows[b] = m
    fast = rows["emu-fast"]["cycles_per_second"]
    for m in rows.values():
        m["slowdown_vs_emu_fast"] = fast / m["cycles_per_second"]
    print(f"{EXAMPLE.name} x{args.repeat}: {golden.cycles} cycles, lanes {image.config.lanes}")
    print(f"{'backend':<10} {'seconds':>9} {'cycles/s':>12} {'emu-fast / backend':>19}")
    for b, m in rows.items():
        print(f"{b:<10} {m['seconds']:>9.3f} {m['cycles_per_second']:>12.0f} "
              f"{m['slowdown_vs_emu_fast']:>18.1f}x")
    result = {
        "program": f"{EXAMPLE.name} x{args.repeat}",
        "cycles": golden.cycles,
        "config": image.config.to_dict(),
        "backends": rows,
        "note": "seconds exclude building (conversion, compilation), which the first run "
                "pays and later runs reuse; myhdl's include elaboration; external "
                "simulators' include process start and printing the result memory",
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Write asd/data/example_model.npz: a tiny seeded conv net's weights for `asd demo`.

Weights are drawn like a trained net's (He-scaled, heavy-tailed Laplace), so quantization
errors look realistic; the file stays well under 50 KB.  Re-running gives identical bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SHAPES = {
    "conv1.weight": (8, 3, 3, 3),
    "conv1.bias": (8,),
    "conv2.weight": (16, 8, 3, 3),
    "conv2.bias": (16,),
    "conv3.weight": (16, 16, 3, 3),
    "conv3.bias": (16,),
    "fc.weight": (10, 64),
    "fc.bias": (10,),
}


def make(seed: int = 2020) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in SHAPES.items():
        if len(shape) == 1:
            out[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            b = np.sqrt(2.0 / fan_in) / np.sqrt(2.0)  # Laplace scale with He variance
            out[name] = rng.laplace(0.0, b, shape).astype(np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parents[1]
    path = Path(args[0]) if args else root / "asd" / "data" / "example_model.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **make())
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The quantized network: per layer the integer parameters the accelerator and the integer
reference use (:class:`QLayer`), the network with its tensor scales and zero points
(:class:`QNet`: ``real = scale * (q - zero_point)``), and their persistence in a compiled
output directory.  Produced by :mod:`programs.quantize`, read by the
integer reference, the lowering and the runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import hwcode
from contract.config import AccelConfig
from contract.errors import AsdError
from contract.isa import REQ_SHIFT_MAX
from contract.semantics import req_param

from .graph import Graph, Layer

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class QuantizeError(ValueError, AsdError):
    """A network that cannot be quantized for this accelerator; names the layer."""


@dataclass
class QLayer:
    """Integer parameters of one layer (per output channel where it applies)."""

    layer: Layer
    w_int: I64 | None = None        # conv: (Co, Ci/g, KH, KW), values of the weight code
    s_w: F64 | None = None          # conv: per-channel weight scale
    bias_int: I64 | None = None     # conv (Co,), accumulator scale; avgpool/add: only with
    #                                 zero points (their offsets), else None (no BIAS word)
    mult: I64 | None = None         # (C,) two-digit requant multiplier m
    shift: I64 | None = None        # (C,) requant shift
    relu: bool = False
    slope_ints: I64 | None = None   # (C,) two-digit slope * 2^(W-1) for ACT
    add_ints: tuple[int, int] | None = None  # add: the two inputs' two-digit weights
    exact: bool = True              # requantization factor exactly as the float math wants
    table: I64 | None = None        # host sigmoid: output of every int input (programs.hostops)
    config: AccelConfig = field(default_factory=AccelConfig)

    @property
    def req_params(self) -> I64:
        assert self.mult is not None and self.shift is not None
        c = self.config
        codes = hwcode.encode(self.mult, c.exp_bits)
        shift = np.asarray(self.shift, np.int64)
        if len(shift) and not (0 <= shift.min() and shift.max() <= REQ_SHIFT_MAX):
            bad = shift[(shift < 0) | (shift > REQ_SHIFT_MAX)][0]
            req_param(0, int(bad), c.code_bits)  # raises, naming the shift
        # req_param's word for every channel at once (a layer of 4096 channels is read once
        # per tile).
        return np.asarray(codes, np.int64) | (shift << c.code_bits)

    @property
    def slope_params(self) -> I64 | None:
        if self.slope_ints is None:
            return None
        return np.asarray(hwcode.encode(self.slope_ints, self.config.exp_bits), np.int64)

    @property
    def w_codes(self) -> I64:
        """WMEM codes of ``w_int`` in the configuration's weight format."""
        assert self.w_int is not None
        return self.config.weight_format.encode(self.w_int, self.config.exp_bits)

    @property
    def add_codes(self) -> tuple[int, int] | None:
        if self.add_ints is None:
            return None
        c = self.config
        a, b = c.weight_format.encode(np.array(self.add_ints), c.exp_bits)
        return int(a), int(b)

    def mult_float(self) -> F64:
        assert self.mult is not None and self.shift is not None
        return self.mult / np.exp2(self.shift.astype(np.float64))


@dataclass
class QNet:
    graph: Graph
    config: AccelConfig
    scales: dict[str, float]
    qlayers: dict[str, QLayer]
    scheme: str = "asd"
    calibration: str = "maxabs"
    requant_aware: bool = True
    # Per tensor the integer that stands for 0.0 (absent: 0, symmetric).  Non-zero only where
    # programs.quantize proved the tensor non-negative and every reader handles it.
    zero_points: dict[str, int] = field(default_factory=dict)

    def zero(self, tensor: str) -> int:
        """The tensor's zero point: ``real = scales[tensor] * (q - zero(tensor))``."""
        return int(self.zero_points.get(tensor, 0))

    @property
    def unit_int(self) -> int:
        """The weight integer of 1.0 (average pooling)."""
        return self.config.weight_format.unit(self.config.exp_bits)

    @property
    def unit_code(self) -> int:
        c = self.config
        return int(c.weight_format.encode(np.array(self.unit_int), c.exp_bits))

    # Persistence: the manifest's layer list plus one npz of arrays --------------------------
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        arrays: dict[str, NDArray] = {}
        layers: list[dict[str, Any]] = []
        for lay in self.graph.layers:
            ql = self.qlayers[lay.name]
            i = len(layers)
            for key in ("weight", "bias", "slope"):
                v = getattr(lay, key)
                if v is not None:
                    arrays[f"{i}/{key}"] = v
            for key in ("w_int", "s_w", "bias_int", "mult", "shift", "slope_ints", "table"):
                v = getattr(ql, key)
                if v is not None:
                    arrays[f"{i}/q_{key}"] = v
            layers.append({"layer": lay.attrs(), "relu": ql.relu, "exact": ql.exact,
                           "add_ints": list(ql.add_ints) if ql.add_ints else None})
        meta = {"input": self.graph.input, "input_shape": list(self.graph.input_shape),
                "output": self.graph.output, "output_dims": self.graph.output_dims,
                "config": self.config.to_dict(), "scales": self.scales, "layers": layers,
                "scheme": self.scheme, "calibration": self.calibration,
                "requant_aware": self.requant_aware, "zero_points": self.zero_points}
        (d / "qnet.json").write_text(json.dumps(meta, indent=1))
        # Uncompressed, integers in the narrowest type that holds them (load widens them back
        # to int64): ResNet-18's zip compression took 29 s of a 38 s write for a third off
        # the size, and the weight codes barely compress.
        np.savez(d / "qnet.npz", **{k: narrow(v) for k, v in arrays.items()})  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: str | Path) -> QNet:
        d = Path(directory)
        meta = json.loads((d / "qnet.json").read_text())
        config = AccelConfig.from_dict(meta["config"])
        with np.load(d / "qnet.npz") as z:
            arrays = {k: z[k].astype(np.int64) if z[k].dtype.kind in "iu" else z[k]
                      for k in z.files}
        layers, qlayers = [], {}
        for i, entry in enumerate(meta["layers"]):
            mine = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/")[0] == str(i)}
            lay = Layer.from_attrs(entry["layer"], {k: v for k, v in mine.items()
                                                    if not k.startswith("q_")})
            q = {k[2:]: v for k, v in mine.items() if k.startswith("q_")}
            layers.append(lay)
            qlayers[lay.name] = QLayer(lay, relu=bool(entry["relu"]), exact=bool(entry["exact"]),
                                       add_ints=tuple(entry["add_ints"]) if entry["add_ints"]
                                       else None, config=config, **q)
        graph = Graph(meta["input"], tuple(meta["input_shape"]), meta["output"], layers,
                      int(meta["output_dims"]))
        return cls(graph, config, {k: float(v) for k, v in meta["scales"].items()}, qlayers,
                   meta["scheme"], meta["calibration"], bool(meta["requant_aware"]),
                   {k: int(v) for k, v in meta.get("zero_points", {}).items()})


def narrow(v: NDArray, symmetric: bool = False) -> NDArray:
    """An integer array in the narrowest signed type holding its values (others as given);
    ``symmetric``: their negations too (``np.abs`` of the result does not wrap)."""
    a = np.asarray(v)
    if a.dtype.kind not in "iu" or not a.size:
        return a
    lo, hi = int(a.min()), int(a.max())
    if symmetric:
        lo, hi = min(lo, -hi), max(hi, -lo)
    for t in (np.int8, np.int16, np.int32):
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return a.astype(t)
    return a

"""Model-level quantization: every weight tensor through one scheme, a per-tensor table, and
an output archive that holds exactly the bits the accounting counts.

Output ``OUT.npz``, for every weight tensor ``NAME``: ``NAME`` (dequantized float32),
``NAME.codes`` (packed codes, uint8, layout in :mod:`asd.packing`), ``NAME.scale`` (the decoded
scales, float16, one per tensor or per output channel) and the scale format's stored fields
(:mod:`asd.scale_formats`; for ``fp16`` that is ``NAME.scale`` itself).  Biases are stored under
their own names as float16 (``bias_format="fp16"``, the default: a tensor float16 cannot hold
stays float32) or float32; other arrays unchanged.  ``OUT.json`` records the scheme, options,
formats and per-tensor sizes (format version 2; version 1 files are fp16 scales and float32
biases).  The dequantized ``NAME`` and, for formats other than fp16, ``NAME.scale`` are
conveniences derived from the counted fields; everything else is counted bit for bit.
Both files are written to temporaries and renamed into place, so a failure leaves neither.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asd import modelio, packing, scale_formats, scales
from asd import rounding as rounding_
from asd.schemes import QuantResult, Scheme
from contract.files import new_file_mode

FORMAT_VERSION = 2
BIAS_FORMATS = ("fp16", "fp32")
DEFAULT_BIAS_FORMAT = "fp16"


def store_bias(b: np.ndarray, bias_format: str) -> np.ndarray:
    """A bias as stored: float16 when ``bias_format`` is fp16 and every value fits (finite and
    not flushed to zero where it was not zero), else float32."""
    if bias_format not in BIAS_FORMATS:
        raise ValueError(f"unknown bias format {bias_format!r}; use one of {BIAS_FORMATS}")
    b32 = np.asarray(b, np.float32)
    if bias_format == "fp16":
        with np.errstate(over="ignore"):
            h = b32.astype(np.float16)
        if np.all(np.isfinite(h)) and not np.any((h == 0) & (b32 != 0)):
            return h
    return b32


@dataclass
class TensorReport:
    name: str
    shape: tuple[int, ...]
    bits_per_weight: float
    rel_l2: float
    sqnr_db: float
    size: packing.SizeReport


@dataclass
class QuantizedModel:
    source: str
    scheme: Scheme
    granularity: str
    scale_method: str
    rounding: str = "nearest"
    scale_format: str = scale_formats.DEFAULT
    bias_format: str = DEFAULT_BIAS_FORMAT
    notes: list[str] = field(default_factory=list)
    results: dict[str, QuantResult] = field(default_factory=dict)
    reports: list[TensorReport] = field(default_factory=list)
    biases: dict[str, np.ndarray] = field(default_factory=dict)
    others: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def float32_bits(self) -> int:
        w = sum(r.size.count for r in self.reports)
        b = sum(a.size for a in self.biases.values())
        return 32 * (w + b) + sum(8 * a.nbytes for a in self.others.values())

    @property
    def bias_bits(self) -> int:
        """Stored bits of the biases (float16 or float32 each, as :func:`store_bias` keeps)."""
        return sum(8 * a.nbytes for a in self.biases.values())

    @property
    def total_bits(self) -> int:
        return (sum(r.size.total_bits for r in self.reports) + self.bias_bits
                + sum(8 * a.nbytes for a in self.others.values()))

    @property
    def weight_bits_per_weight(self) -> float:
        n = sum(r.size.count for r in self.reports)
        return sum(r.size.payload_bits + r.size.scales_bits for r in self.reports) / n

    @property
    def reduction(self) -> float:
        """Fraction of the all-float32 size saved."""
        return 1.0 - self.total_bits / self.float32_bits


def error_stats(w: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """Relative L2 error and SQNR (dB) of ``q`` against ``w`` (exact: 0 and +inf)."""
    w64 = w.astype(np.float64).reshape(-1)
    d = q.astype(np.float64).reshape(-1) - w64
    num = float(np.dot(d, d))
    den = float(np.dot(w64, w64))
    if num == 0.0:
        return 0.0, math.inf
    if den == 0.0:
        return math.inf, -math.inf
    return math.sqrt(num / den), 10.0 * math.log10(den / num)


def _round_one(
    name: str, w: np.ndarray, axis: int, scheme: Scheme, granularity: str, scale: str,
    rounding: str, cal: rounding_.Calibration | None, notes: list[str],
    scale_format: str = scale_formats.DEFAULT,
) -> tuple[QuantResult, np.ndarray | None]:
    """One tensor through ``rounding``; also the bias shift to subtract (``bias`` rounding)."""
    if rounding == "nearest":
        return scheme.quantize(w, granularity, scale, axis, scale_format=scale_format), None
    if cal is None:
        raise ValueError(f"rounding {rounding!r} needs calibration data")
    wm = rounding_.weight_matrix(w, axis)
    st = rounding_.check_calibration(cal, name, wm.shape[1] * 1)
    cols = st.hessian.shape[-1]
    if st.rows < cols and rounding.startswith("gptq"):
        notes.append(f"{name}: {st.rows} calibration rows for {cols} inputs: the Hessian is "
                     f"rank-deficient; damped by {rounding_.DAMP} of its mean diagonal")
    stored = scheme.stored_scales(scales.rows(w, granularity, axis), scale, scale_format)
    if rounding == "bias":
        res = scheme.quantize(w, granularity, scale, axis, fixed_scale=stored)
    else:
        target, stored = _gptq_target(w, wm, axis, stored, st, scheme, granularity)
        res = scheme.quantize(target, granularity, scale, axis, fixed_scale=stored)
    if not rounding.endswith("bias"):
        return res, None
    if st.bias is None:
        notes.append(f"{name}: no bias to correct")
        return res, None
    return res, rounding_.bias_shift(rounding_.weight_matrix(res.dequant, axis) - wm, st)


def _gptq_target(w: np.ndarray, wm: np.ndarray, axis: int, stored: scale_formats.StoredScales,
                 st: rounding_.LayerStats, scheme: Scheme, granularity: str
                 ) -> tuple[np.ndarray, scale_formats.StoredScales]:
    """The GPTQ-compensated weights (rounding them at the returned scales gives the GPTQ
    result), by the compiler's own :func:`asd.rounding.gptq_layer` (act-order, group by
    group).  Per channel, in a format that stores each channel's float16 scale on its own
    (``fp16``, ``fp16-pack``), the scale is chosen among :data:`asd.rounding.SCALE_RATIOS`
    times the searched one by the output error GPTQ leaves; otherwise it stays."""
    s = np.broadcast_to(stored.scale.astype(np.float64), (wm.shape[0],))
    ratios = (rounding_.SCALE_RATIOS if granularity == "channel"
              and stored.fmt in ("fp16", "fp16-pack") else (1.0,))
    cands = [s] + [scale_formats.fp16(s * r).astype(np.float64) for r in ratios[1:]]

    def round_at(c: np.ndarray, sr: np.ndarray) -> np.ndarray:
        s32 = sr.astype(np.float32)
        return scheme._values(c, s32) * s32[:, None].astype(np.float64)

    target, choice = rounding_.gptq_layer(wm, st, round_at, cands)
    if len(cands) > 1:
        stored = scale_formats.get(stored.fmt).encode(
            np.choose(choice, cands).reshape(stored.scale.shape))
    return rounding_.from_matrix(target, w.shape, axis), stored


def quantize_model(
    model: modelio.Model, scheme: Scheme, granularity: str = "channel", scale: str = "mse",
    rounding: str = "nearest", calibration: rounding_.Calibration | None = None, *,
    scale_format: str = scale_formats.DEFAULT, bias_format: str = DEFAULT_BIAS_FORMAT,
) -> QuantizedModel:
    """Every weight tensor through ``scheme``; ``rounding`` other than ``nearest`` needs the
    ``calibration`` of :func:`asd.rounding.collect_stats` (and corrects biases for ``bias``).
    Scales are stored in ``scale_format``, biases in ``bias_format`` (``qm.biases`` holds the
    stored values: what the quantized model computes with)."""
    if rounding not in rounding_.ROUNDINGS:
        raise modelio.ModelError(
            f"unknown rounding {rounding!r}; use one of {', '.join(rounding_.ROUNDINGS)}")
    try:
        scale_formats.get(scale_format)
        store_bias(np.zeros(1), bias_format)
    except ValueError as exc:
        raise modelio.ModelError(str(exc)) from None
    qm = QuantizedModel(model.path, scheme, granularity, scale, rounding=rounding,
                        scale_format=scale_format, bias_format=bias_format)
    qm.biases = {k: v.astype(np.float32) for k, v in model.biases.items()}
    for name, w in model.weights.items():
        try:
            res, shift = _round_one(name, w, model.channel_axis.get(name, 0), scheme,
                                    granularity, scale, rounding, calibration, qm.notes,
                                    scale_format)
        except (ValueError, np.linalg.LinAlgError, modelio.ModelError) as exc:
            raise modelio.ModelError(f"{model.path}: tensor {name!r}: {exc}") from None
        if shift is not None and calibration is not None:
            bname = calibration.layers[name].bias
            assert bname is not None
            qm.biases[bname] = (qm.biases[bname] - shift).astype(np.float32)
        rel, sqnr = error_stats(w, res.dequant)
        qm.results[name] = res
        qm.reports.append(
            TensorReport(name, tuple(w.shape), res.size.bits_per_weight, rel, sqnr, res.size)
        )
    qm.biases = {k: store_bias(v, bias_format) for k, v in qm.biases.items()}
    qm.others = dict(model.others)
    return qm


def format_table(qm: QuantizedModel) -> str:
    rows = [("tensor", "shape", "bits/w", "rel L2", "SQNR dB")]
    for r in qm.reports:
        rows.append((
            r.name,
            "x".join(map(str, r.shape)) or "scalar",
            f"{r.bits_per_weight:.3f}",
            f"{r.rel_l2:.4f}",
            f"{r.sqnr_db:.2f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    spec = ", ".join(f"{k}={v}" for k, v in qm.scheme.spec().items() if k != "scheme")
    lines.append("")
    lines.append(
        f"scheme {qm.scheme.name}({spec}), {qm.granularity} scales by {qm.scale_method} "
        f"stored as {qm.scale_format}, {qm.bias_format} biases, "
        f"{qm.rounding} rounding: "
        f"{qm.weight_bits_per_weight:.3f} bits/weight with scales; "
        f"total {qm.total_bits / 8:,.0f} B vs float32 {qm.float32_bits / 8:,.0f} B "
        f"({100 * qm.reduction:.1f}% smaller)"
    )
    lines += [f"note: {n}" for n in qm.notes]
    return "\n".join(lines)


def sidecar(qm: QuantizedModel) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "source": qm.source,
        "scheme": qm.scheme.spec(),
        "granularity": qm.granularity,
        "scale_method": qm.scale_method,
        "scale_format": qm.scale_format,
        "bias_format": qm.bias_format,
        "rounding": qm.rounding,
        "notes": qm.notes,
        "tensors": {
            r.name: {
                "shape": list(r.shape),
                "code_bits": qm.results[r.name].code_bits,
                "channel_axis": qm.results[r.name].channel_axis,
                "scale_count": r.size.scale_count,
                "scale_bits": r.size.scale_bits,
                "rel_l2": r.rel_l2,
                "sqnr_db": r.sqnr_db if math.isfinite(r.sqnr_db) else None,
                "size": r.size.as_dict(),
            }
            for r in qm.reports
        },
        "biases": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "bits": 8 * v.nbytes}
                   for k, v in qm.biases.items()},
        "others": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "bits": 8 * v.nbytes}
                   for k, v in qm.others.items()},
        "total_bits": qm.total_bits,
        "float32_bits": qm.float32_bits,
        "reduction": qm.reduction,
        "weight_bits_per_weight": qm.weight_bits_per_weight,
    }


def save(qm: QuantizedModel, out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (.npz) and its ``.json`` sidecar atomically; returns both paths."""
    out = Path(out)
    if out.suffix.lower() != ".npz":
        out = out.with_name(out.name + ".npz")
    side = out.with_suffix(".json")
    arrays: dict[str, np.ndarray] = {}
    for name, res in qm.results.items():
        arrays[name] = res.dequant
        arrays[name + ".codes"] = res.packed()
        arrays[name + ".scale"] = res.scale.astype(np.float16)  # exact: decoded scales are fp16
        if res.stored_scales is not None:
            arrays.update({name + k: v for k, v in res.stored_scales.arrays.items()})
    for name, arr in {**qm.biases, **qm.others}.items():
        if name in arrays:
            raise modelio.ModelError(f"{qm.source}: array name {name!r} collides with an output")
        arrays[name] = arr
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_npz = tmp_json = backup = None
    try:
        fd, tmp_npz = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=out.parent)
        os.chmod(tmp_npz, new_file_mode())  # mkstemp's 0600 is not what a user expects
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        fd, tmp_json = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=out.parent)
        os.chmod(tmp_json, new_file_mode())
        with os.fdopen(fd, "w") as fh:
            json.dump(sidecar(qm), fh, indent=2)
            fh.write("\n")
        if out.exists():  # kept (a hard link: no copy) until the pair is in place
            backup = tempfile.mktemp(prefix=".old-", suffix=".npz", dir=out.parent)
            os.link(out, backup)
        os.replace(tmp_npz, out)
        tmp_npz = None
        try:
            os.replace(tmp_json, side)
        except OSError:
            # The new archive without its sidecar is a partial output: the old pair returns.
            if backup is not None:
                os.replace(backup, out)
                backup = None
            else:
                out.unlink(missing_ok=True)
            raise
        tmp_json = None
    finally:
        for t in (tmp_npz, tmp_json, backup):
            if t is not None and os.path.exists(t):
                os.unlink(t)
    return out, side


def check_version(meta: dict[str, Any], where: str = "sidecar") -> None:
    """Refuse a sidecar this version cannot read (versions 1 and 2 are read)."""
    v = meta.get("format_version")
    if v not in (1, FORMAT_VERSION):
        raise modelio.ModelError(f"{where}: format_version {v!r} is not one this asd reads "
                                 f"(1 or {FORMAT_VERSION}); re-run asd quantize")


def load_scales(npz: Any, meta: dict[str, Any], name: str) -> np.ndarray:
    """Decoded scales of tensor ``name`` from its stored fields (float32 holding float16
    values); version 1 files and fp16 keep them in ``NAME.scale``."""
    check_version(meta)
    fmt = meta.get("scale_format", "fp16")
    t = meta["tensors"][name]
    if fmt == "fp16":
        return np.asarray(npz[name + ".scale"], np.float32)
    count = int(t["scale_count"])
    if fmt == "fp16-pack":
        codes = packing.unpack(npz[name + ".scale_codes"], int(t["scale_bits"]), count)
        return scale_formats.Fp16Pack.decode(int(npz[name + ".scale_exp"][0]), codes)
    if fmt == "log8":
        base = float(npz[name + ".scale_base"][0])
        return scale_formats.Log8.value(base, npz[name + ".scale_codes"].astype(np.int64))
    if fmt in ("shared-exp", "pow2"):
        w = int(t["scale_bits"])
        k = (packing.unpack(npz[name + ".scale_codes"], w, count) if w
             else np.zeros(count, np.int64))
        top = (float(npz[name + ".scale_base"][0]) if fmt == "shared-exp"
               else 2.0 ** int(npz[name + ".scale_exp"][0]))
        return scale_formats.fp16(top * np.exp2(-k.astype(np.float64)))
    raise modelio.ModelError(f"tensor {name!r}: unknown scale format {fmt!r}")


def load_codes(npz: Any, meta: dict[str, Any], name: str) -> np.ndarray:
    """Unpacked codes of tensor ``name`` from an opened output archive and its sidecar."""
    check_version(meta)
    t = meta["tensors"][name]
    count = int(np.prod(t["shape"], dtype=np.int64))
    return packing.unpack(npz[name + ".codes"], t["code_bits"], count).reshape(t["shape"])

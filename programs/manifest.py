"""The compiler driver and its output directory.

``compile_model`` runs import -> quantization -> lowering.  :class:`Compiled` writes::

    OUTDIR/manifest.json      layers, shapes, scales, tiles, sizes, expected cycles
    OUTDIR/qnet.json, .npz    the quantized network (the integer reference needs it)
    OUTDIR/model.onnx         the float model (the float reference for --trace)
    OUTDIR/tiles/NNN_LAYER_TTT.bin   one program image per tile
    OUTDIR/tiles/NNN_LAYER_TTT.s     its assembly listing (code; data lives in the .bin)

and :meth:`Compiled.load` reads it back, checking every image against the manifest.  The
manifest's ``files`` lists what the compiler wrote; :meth:`Compiled.write` builds the directory
beside OUTDIR and swaps it in (:class:`contract.files.DirectoryBuilder`), so a failure leaves
the previous output whole and files the previous manifest does not list are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract.config import AccelConfig
from contract.errors import AsdError
from contract.files import DirectoryBuilder
from contract.image import Image

from . import lower as lw
from .budget import DEFAULT_MEMORY_BUDGET, check_memory_budget
from .onnx_import import import_model
from .qnet import QNet
from .quantize import QuantizeError, quantize, weight_rounding

# 2: a tile's weights and parameters may come from another tile's image (1: weights from a
# block file); both are read.
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)


class ManifestError(ValueError, AsdError):
    """A directory that holds no compiled network this version reads."""


def tile_filename(index: int, layer: str, tile: int) -> str:
    """``NNN_LAYER_TTT``: layer index, the layer's name made safe for a file name, tile."""
    return f"{index:03d}_{_safe(layer)}_{tile:03d}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:48]


@dataclass
class Compiled:
    qnet: QNet
    layers: list[lw.LoweredLayer]
    model_path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> AccelConfig:
        return self.qnet.config

    def stored(self) -> list[list[tuple[Image, dict[str, str]]]]:
        """What the output directory holds: per layer, per tile, its stored image and where
        its weights and parameters come from when another image holds them
        (``{"weights": "tiles/...bin", "params": ...}``, empty when its own image does).

        Weights (or parameters) that several tiles load - a channel group's or a reduction
        chunk's, over every row band and column group - are stored once, in the first of
        those tiles; the later tiles' images hold none and name that image instead."""
        holders: dict[str, dict[bytes, str]] = {"weights": {}, "params": {}}
        known: dict[tuple[int, Any, Any, str], bytes] = {}
        empty = np.zeros((0, self.config.lanes), np.int64)
        out: list[list[tuple[Image, dict[str, str]]]] = []
        for i, ll in enumerate(self.layers):
            mine = []
            for j, t in enumerate(ll.tiles):
                path = f"tiles/{tile_filename(i, ll.name, j)}.bin"
                img, sources = t.image, {}
                for part, key in (("weights", _weights_key(img, known)),
                                  ("params", _params_key(img))):
                    if not key:
                        continue
                    if key in holders[part]:
                        sources[part] = holders[part][key]
                    else:
                        holders[part][key] = path
                if sources:
                    img = dataclasses.replace(
                        img, weights=empty if "weights" in sources else img.weights,
                        params=empty if "params" in sources else img.params)
                mine.append((img, sources))
            out.append(mine)
        return out

    def totals(self, stored: list[list[tuple[Image, dict[str, str]]]] | None = None
               ) -> dict[str, int]:
        tiles = [t for ll in self.layers for t in ll.tiles]
        images = [img for row in (stored or self.stored()) for img, _ in row]
        return {
            "tiles": len(tiles),
            "text_words": sum(len(t.image.text) for t in tiles),
            "weight_words": sum(len(t.image.weights) for t in tiles),
            "stored_weight_words": sum(len(img.weights) for img in images),
            "param_words": sum(len(t.image.params) for t in tiles),
            "stored_param_words": sum(len(img.params) for img in images),
            "image_bytes": sum(len(img.to_bytes()) for img in images),
            "cycles": sum(t.cycles for t in tiles),
        }

    def manifest(self) -> dict[str, Any]:
        """The manifest, naming the weight block each tile loads as :meth:`stored` decides."""
        q = self.qnet
        g = q.graph
        kept = self.stored()
        stored = [[sources for _, sources in row] for row in kept]
        layers = []
        for i, ll in enumerate(self.layers):
            ql = q.qlayers[ll.name]
            lay = ql.layer
            entry: dict[str, Any] = {
                "index": i, "name": ll.name, "op": ll.op, "onnx_nodes": lay.onnx_nodes,
                "inputs": ll.inputs, "output": ll.output,
                "in_shapes": [list(g.shapes[t]) for t in ll.inputs],
                "out_shape": list(ll.out_shape), "act": lay.act,
                "scales": {"inputs": [q.scales[t] for t in ll.inputs],
                           "output": q.scales.get(ll.output)},
                "zero_points": {"inputs": [q.zero(t) for t in ll.inputs],
                                "output": q.zero(ll.output)},
                "pads": list(ll.pads), "pad_value": ll.pad_value, "host": ll.host,
                "requant_exact": ql.exact, "cycles": ll.cycles,
            }
            if lay.op in ("conv", "maxpool", "avgpool"):
                entry.update(kernel=list(lay.kernel), stride=list(lay.stride), groups=lay.groups)
            tiles = []
            for j, (t, sources) in enumerate(zip(ll.tiles, stored[i])):
                name = tile_filename(i, ll.name, j)
                tiles.append({
                    "image": f"tiles/{name}.bin", "listing": f"tiles/{name}.s",
                    "inputs": [{"tensor": ti.tensor, "rows": list(ti.rows),
                                "channels": list(ti.channels), "base": ti.base,
                                **({"cols": list(ti.cols)} if ti.cols else {})}
                               for ti in t.inputs],
                    "out_rows": list(t.out_rows), "out_channels": list(t.out_channels),
                    "out_base": t.out_base, "cycles": t.cycles,
                    "text_words": len(t.image.text), "weight_words": len(t.image.weights),
                    "param_words": len(t.image.params),
                })
                tiles[-1].update(sources)
                if t.out_tensor:
                    tiles[-1]["out_tensor"] = t.out_tensor
                if t.out_cols:
                    tiles[-1]["out_cols"] = list(t.out_cols)
            entry["tiles"] = tiles
            if ll.partial_channels:
                entry["partial_channels"] = ll.partial_channels
            layers.append(entry)
        return {"version": MANIFEST_VERSION, "config": self.config.to_dict(),
                "input": g.input, "input_shape": list(g.input_shape), "output": g.output,
                "output_dims": g.output_dims, "scheme": q.scheme, "calibration": q.calibration,
                "requant_aware": q.requant_aware, "layers": layers, "totals": self.totals(kept),
                **self.info}

    def write(self, outdir: str | Path) -> Path:
        """Write the compiled network to ``outdir`` in one step: it is built beside and swapped
        in at the end, so a failure leaves the previous output whole (and raises
        :class:`contract.files.OutputError`).  Files in ``outdir`` that the previous manifest
        does not list as its own are kept; a new file that would overwrite one is refused."""
        d = Path(outdir)
        with DirectoryBuilder(d, owned_files(d), keystone="manifest.json") as out:
            new = out.staging
            (new / "tiles").mkdir()
            owned = ["manifest.json", "qnet.json", "qnet.npz"]
            images = self.stored()
            for i, ll in enumerate(self.layers):
                for j, (t, (img, _)) in enumerate(zip(ll.tiles, images[i])):
                    name = tile_filename(i, ll.name, j)
                    (new / "tiles" / f"{name}.bin").write_bytes(img.to_bytes())
                    (new / "tiles" / f"{name}.s").write_text(t.source)
                    owned += [f"tiles/{name}.bin", f"tiles/{name}.s"]
            self.qnet.save(new)
            # A model compiled from inside the output directory is the user's: left in place.
            if self.model_path is not None and (self.model_path.resolve()
                                                != (d / "model.onnx").resolve()):
                shutil.copyfile(self.model_path, new / "model.onnx")
                owned.append("model.onnx")
            man = self.manifest()
            man["files"] = sorted(owned)
            (new / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
        return d

    @classmethod
    def load(cls, outdir: str | Path) -> Compiled:
        d = Path(outdir)
        try:
            man = json.loads((d / "manifest.json").read_text())
        except OSError as exc:
            raise ManifestError(f"{d}: no compiled network here ({exc.strerror})") from None
        if man.get("version") not in READABLE_VERSIONS:
            raise ManifestError(f"{d}: manifest version {man.get('version')}, this tool reads "
                                f"{', '.join(map(str, READABLE_VERSIONS))}")
        qnet = QNet.load(d)
        layers = []
        loaded: dict[str, Image] = {}  # by file: where a later tile's weights/params come from
        for entry in man["layers"]:
            ll = lw.LoweredLayer(entry["name"], entry["op"], entry["inputs"], entry["output"],
                                 tuple(entry["out_shape"]),  # type: ignore[arg-type]
                                 tuple(entry["pads"]),  # type: ignore[arg-type]
                                 int(entry["pad_value"]),
                                 partial_channels=int(entry.get("partial_channels", 0)))
            for t in entry["tiles"]:
                img = _load_image(d, t["image"], loaded, qnet.config)
                # Weights and parameters stored once, in another image (version 1: weights
                # in a block file): what the host loads into WMEM and BMEM.
                if "weights" in t or "params" in t:
                    img = dataclasses.replace(
                        img, weights=_load_image(d, t["weights"], loaded, qnet.config).weights
                        if "weights" in t else img.weights,
                        params=_load_image(d, t["params"], loaded, qnet.config).params
                        if "params" in t else img.params)
                src_path = d / t["listing"]
                ll.tiles.append(lw.Tile(
                    img, src_path.read_text() if src_path.exists() else "",
                    [lw.TileInput(ti["tensor"], tuple(ti["rows"]),  # type: ignore[arg-type]
                                  tuple(ti["channels"]), int(ti["base"]),  # type: ignore[arg-type]
                                  _span(ti.get("cols")))
                     for ti in t["inputs"]],
                    tuple(t["out_rows"]), tuple(t["out_channels"]),  # type: ignore[arg-type]
                    int(t["out_base"]), int(t["cycles"]), str(t.get("out_tensor", "")),
                    _span(t.get("out_cols"))))
            layers.append(ll)
        model = d / "model.onnx"
        return cls(qnet, layers, model if model.exists() else None)


def _weights_key(image: Image, known: dict[tuple[int, Any, Any, str], bytes] | None = None
                 ) -> bytes:
    """Identity of an image's weights (a digest of their values, whatever their integer type;
    empty for none).  ``known``: digests by array memory, so that the row bands sharing one
    array (a tile group's weights) are hashed once while those arrays are alive."""
    w = image.weights
    if not len(w):
        return b""
    where = (w.__array_interface__["data"][0], w.shape, w.strides, w.dtype.str)
    if known is not None and where in known:
        return known[where]
    values = w if w.dtype == np.uint8 else w.astype(np.uint8) if (
        w.min() >= 0 and w.max() < 256) else w.astype(np.int64)
    key = (hashlib.sha256(np.ascontiguousarray(values).data).digest() + str(w.shape).encode()
           + values.dtype.str.encode())
    if known is not None:
        known[where] = key
    return key


def _params_key(image: Image) -> bytes:
    """Identity of an image's parameter words (empty for none)."""
    p = image.params
    return p.astype("<i8").tobytes() + str(p.shape).encode() if len(p) else b""


def _load_image(d: Path, name: str, loaded: dict[str, Image], config: AccelConfig) -> Image:
    """The image file ``name`` of a compiled directory, each file read once."""
    if name not in loaded:
        loaded[name] = Image.load(d / name)
        loaded[name].check_config(config)
    return loaded[name]


def _span(pair: Any) -> tuple[int, int] | None:
    """A manifest's optional ``[start, stop)`` (columns of a tile), or None for all."""
    return None if pair is None else (int(pair[0]), int(pair[1]))


DEFAULT_CALIBRATION_INPUTS = 4

# What every compiled directory holds besides its tiles (a manifest from before the "files"
# list owns these and the tiles it lists).
_FIXED_FILES = ("manifest.json", "qnet.json", "qnet.npz", "model.onnx")


def owned_files(outdir: Path) -> list[str]:
    """The files of ``outdir`` a previous compile wrote (relative paths), from its manifest;
    none when there is no readable manifest, so nothing there is ever deleted."""
    try:
        man = json.loads((outdir / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(man, dict):
        return []
    files = man.get("files")
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        return list(files)
    listed = [t.get(key) for e in man.get("layers", []) if isinstance(e, dict)
              for t in e.get("tiles", []) if isinstance(t, dict) for key in ("image", "listing")]
    return [*_FIXED_FILES, *(f for f in listed if isinstance(f, str))]


def default_calibration(shape: tuple[int, int, int], n: int = DEFAULT_CALIBRATION_INPUTS,
                        seed: int = 0) -> NDArray:
    """Stand-in calibration when none is given: standard normal images (real data is better)."""
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def compile_model(model: str | Path | Any, config: AccelConfig, calib: NDArray | None = None,
                  *, scheme: str = "asd", scheme_options: dict[str, Any] | None = None,
                  percentile: float | None = None,
                  requant_aware: bool = True, input_hw: tuple[int, int] | None = None,
                  memory_budget: int = DEFAULT_MEMORY_BUDGET, rounding: str | None = None,
                  rounding_inputs: str = "compensate", act_zero_point: str = "auto") -> Compiled:
    """ONNX model (path or ModelProto) -> quantized, lowered network.  A graph whose
    calibration would need more than ``memory_budget`` bytes is refused before allocating
    (:class:`programs.budget.MemoryBudgetError`).  ``rounding`` (one of
    ``asd.rounding.ROUNDINGS``, with the Hessian's ``rounding_inputs``) rounds the weights as
    ``asd compile --rounding`` does; None keeps what :func:`weight_rounding` set, else
    nearest.  ``act_zero_point``: ``auto`` stores non-negative feature maps with the zero
    point ``act_min`` (all 2^act_bits codes) and the signed logits with the one of their
    calibration range, ``none`` keeps every one symmetric (:mod:`programs.zero_points`)."""
    t0 = time.perf_counter()
    graph = import_model(model, input_hw)
    lw.check_fits(graph, config)
    t1 = time.perf_counter()
    if calib is not None:
        calib = np.asarray(calib, np.float32)
        if calib.ndim != 4 or tuple(calib.shape[1:]) != graph.input_shape:
            raise QuantizeError(f"calibration data of shape {calib.shape}; the model takes "
                                f"N x {' x '.join(map(str, graph.input_shape))}")
        if not np.all(np.isfinite(calib)):
            raise QuantizeError("calibration data: expected finite values, found NaN or Inf")
    check_memory_budget(graph, DEFAULT_CALIBRATION_INPUTS if calib is None else len(calib),
                        memory_budget)
    if calib is None:
        calib = default_calibration(graph.input_shape)
    with contextlib.ExitStack() as stack:
        if rounding is not None:
            stack.enter_context(weight_rounding(rounding, rounding_inputs))
        qnet = quantize(graph, config, calib, scheme=scheme, scheme_options=scheme_options,
                        percentile=percentile, requant_aware=requant_aware,
                        act_zero_point=act_zero_point)
    t2 = time.perf_counter()
    layers = lw.lower(qnet)
    t3 = time.perf_counter()
    path = Path(model) if isinstance(model, (str, Path)) else None
    info = {"compile_seconds": {"import": t1 - t0, "quantize": t2 - t1, "lower": t3 - t2},
            "calibration_inputs": int(calib.shape[0])}
    return Compiled(qnet, layers, path, info)

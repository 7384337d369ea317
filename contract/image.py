"""The program image: one versioned binary container that every backend loads.

Layout (little endian)::

    magic   4s   b"ASDI"
    version u16  IMAGE_VERSION
    nsect   u16  number of sections
    cfghash 8s   AccelConfig.semantic_hash() of the configuration it was built for
    then per section:
        kind u8 | elem_bytes u8 | signed u8 | reserved u8 | base u32 | count u32 | data
    crc32   u32  over every byte before it

Sections: ``config`` (UTF-8 JSON of the configuration), ``text`` (u32 instruction words),
``weights`` (count = words * lanes codes), ``params`` (count = words * lanes BMEM entries),
``acts`` (initial AMEM elements at ``base``) and ``meta`` (UTF-8 JSON: named regions such as
``output`` and ``input``, each ``[base, length]``).  :func:`write` and :func:`load` are the only
writer and loader; :func:`readmemh` writes the same bits for HDL testbenches.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .config import AccelConfig, ConfigError
from .errors import AsdError
from .files import write_bytes_atomic, write_text_atomic

MAGIC = b"ASDI"
IMAGE_VERSION = 1
_HEAD = struct.Struct("<4sHH8s")
_SECT = struct.Struct("<BBBBII")
SECTION_KINDS = {"config": 1, "text": 2, "weights": 3, "params": 4, "acts": 5, "meta": 6}
_KIND_NAMES = {v: k for k, v in SECTION_KINDS.items()}


# A bound on the bytes read from one image file (/dev/zero must not hang the reader).
MAX_IMAGE_BYTES = 256 << 20


class ImageError(ValueError, AsdError):
    """An image that cannot be loaded, or one built for another configuration."""


def region_of(amem: NDArray[np.signedinteger[Any]], regions: dict[str, tuple[int, int]],
              name: str = "output") -> NDArray[np.signedinteger[Any]]:
    """The AMEM range an image names (every backend's result uses this)."""
    if name not in regions:
        raise KeyError(f"image names no region '{name}' (it has: "
                       f"{', '.join(sorted(regions)) or 'none'})")
    base, length = regions[name]
    return amem[base: base + length]


def _elem_bytes(bits: int) -> int:
    return 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8


@dataclass
class Image:
    """A program with its memory contents, for one configuration.

    ``weights`` is (words, lanes) codes, int64 or kept in the unsigned type they come in
    (a compiled VGG-16 holds 138 M of them; every memory built from them is int64);
    ``params`` (words, lanes) signed BMEM entries;
    ``acts`` the initial AMEM elements placed from ``acts_base``, int64 or kept in the
    configuration's activation storage type when they come in it (``act_storage``: a layer's
    tiles are placed as int8, an eighth of the bytes to zero, fill and copy);
    ``regions`` names AMEM ranges.
    """

    config: AccelConfig
    text: NDArray[np.int64]
    weights: NDArray[np.integer] = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    params: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    acts: NDArray[np.signedinteger[Any]] = field(default_factory=lambda: np.zeros(0, np.int64))
    acts_base: int = 0
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.config
        self.text = np.asarray(self.text, dtype=np.int64).reshape(-1)
        w = np.asarray(self.weights)
        if not (w.dtype.kind == "u" and w.dtype.itemsize <= 4):
            w = w.astype(np.int64, copy=False)
        self.weights = w.reshape(-1, c.lanes)
        self.params = np.asarray(self.params, dtype=np.int64).reshape(-1, c.lanes)
        self.acts = _acts_array(self.acts, c)
        self.regions = {k: (int(v[0]), int(v[1])) for k, v in self.regions.items()}
        self.validate()

    def validate(self) -> None:
        """Check that everything fits the configuration; raises :class:`ImageError`."""
        c = self.config
        checks = [
            (len(self.text) <= c.imem_depth, f"text has {len(self.text)} words, imem_depth is "
             f"{c.imem_depth}"),
            (len(self.weights) <= c.wmem_depth, f"weights have {len(self.weights)} words, "
             f"wmem_depth is {c.wmem_depth}"),
            (len(self.params) <= c.bmem_depth, f"params have {len(self.params)} words, "
             f"bmem_depth is {c.bmem_depth}"),
            (bool(np.all((self.text >= 0) & (self.text < 1 << 32))), "text words must be u32"),
            (bool(np.all((self.weights >= 0) & (self.weights < 1 << c.weight_bits))),
             f"weight codes must fit {c.weight_bits} bits"),
            (bool(np.all((self.params >= -(1 << (c.acc_bits - 1)))
                         & (self.params < 1 << (c.acc_bits - 1)))),
             f"params must fit {c.acc_bits} signed bits"),
        ]
        for name, (base, length) in self.regions.items():
            checks.append((0 <= base and length >= 0 and base + length <= c.amem_depth,
                           f"region '{name}' {base}+{length} exceeds amem_depth {c.amem_depth}"))
        for ok, msg in checks:
            if not ok:
                raise ImageError(msg)
        _check_acts(self.acts, self.acts_base, c)

    def with_acts(self, acts: NDArray[np.integer], acts_base: int = 0) -> Image:
        """This image with other initial activations (a tile's inputs placed), checked as the
        constructor checks them; the text, weights and parameters, checked when this image was
        made, are shared rather than checked again."""
        a = _acts_array(acts, self.config)
        _check_acts(a, acts_base, self.config)
        return self._with_checked_acts(a, int(acts_base))

    def with_bands(self, bands: Sequence[tuple[int, NDArray[np.integer]]]) -> Image:
        """This image with ``bands`` laid over its initial activations, in order: each
        array's elements (C order) from its base address (a tile's input bands, placed by
        the host), in the activation storage type, each checked as the constructor checks
        activations.  The fast emulator also takes such bands as they are and places them
        in its stacked AMEM itself (:func:`emu.fast.run_fast_many`)."""
        c = self.config
        end = self.acts_base + len(self.acts)
        for base, band in bands:
            check_band(base, band, c)
            end = max(end, base + band.size)
        acts = np.zeros(end, c.act_storage)
        acts[self.acts_base: self.acts_base + len(self.acts)] = self.acts
        for base, band in bands:  # one strided copy (a band's reshape(-1) copies it first)
            acts[base: base + band.size].reshape(band.shape)[...] = band
        return self._with_checked_acts(acts, 0)

    def with_acts_of(self, other: Image) -> Image:
        """This image with the initial activations of ``other``, an image for the same
        configuration (so they were checked as this one's would be, and are shared, not
        copied): the tiles of a layer that place one band at one address."""
        if other.config is not self.config and other.config != self.config:
            raise ImageError("activations of an image for another accelerator configuration")
        return self._with_checked_acts(other.acts, other.acts_base)

    def _with_checked_acts(self, acts: NDArray[np.signedinteger[Any]], acts_base: int) -> Image:
        # No __post_init__ (nothing else to convert or check), nor copy.copy's pickling
        # protocol (ten times slower, and a layer may have thousands of tiles).
        out = object.__new__(Image)
        out.__dict__.update(self.__dict__)
        out.acts, out.acts_base = acts, acts_base
        return out

    def check_config(self, config: AccelConfig) -> None:
        """Refuse to run on a configuration other than the one the image was built for."""
        if config.semantic_hash() != self.config.semantic_hash():
            # Every field but the PE kind, the weight format too (named even at its default).
            mine, theirs = dataclasses.asdict(self.config), dataclasses.asdict(config)
            diff = [k for k, v in mine.items() if k != "pe" and theirs[k] != v]
            raise ImageError(
                "image was built for another accelerator configuration ("
                + ", ".join(f"{k}: image {getattr(self.config, k)} vs {getattr(config, k)}"
                            for k in diff) + ")")

    # Memories at power-on, as flat arrays of their full depth.
    def initial_memories(self) -> dict[str, NDArray[np.int64]]:
        c = self.config
        imem = np.zeros(c.imem_depth, np.int64)
        imem[: len(self.text)] = self.text
        wmem = np.zeros((c.wmem_depth, c.lanes), np.int64)
        wmem[: len(self.weights)] = self.weights
        bmem = np.zeros((c.bmem_depth, c.lanes), np.int64)
        bmem[: len(self.params)] = self.params
        amem = np.zeros(c.amem_depth, np.int64)
        amem[self.acts_base: self.acts_base + len(self.acts)] = self.acts
        return {"imem": imem, "wmem": wmem, "bmem": bmem, "amem": amem}

    # Serialization ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        c = self.config
        sections: list[tuple[str, int, bool, int, NDArray[np.integer] | bytes]] = [
            ("config", 1, False, 0, c.to_json().encode()),
            ("text", 4, False, 0, self.text),
            ("weights", _elem_bytes(c.weight_bits), False, 0, self.weights.reshape(-1)),
            ("params", _elem_bytes(c.acc_bits), True, 0, self.params.reshape(-1)),
            ("acts", _elem_bytes(c.act_bits), True, self.acts_base, self.acts),
            ("meta", 1, False, 0, json.dumps({"regions": self.regions}, sort_keys=True).encode()),
        ]
        out = bytearray(_HEAD.pack(MAGIC, IMAGE_VERSION, len(sections), c.semantic_hash()))
        for name, eb, signed, base, data in sections:
            if isinstance(data, bytes):
                raw = data
            else:
                raw = data.astype(f"<{'i' if signed else 'u'}{eb}").tobytes()
            out += _SECT.pack(SECTION_KINDS[name], eb, int(signed), 0, base, len(raw) // eb)
            out += raw
        out += struct.pack("<I", zlib.crc32(out))
        return bytes(out)

    def write(self, path: str | Path) -> None:
        """Replace ``path`` with the image in one step: a failure leaves the previous file
        (raises :class:`contract.files.OutputError`, an ``OSError`` naming the path)."""
        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, blob: bytes, source: str = "image") -> Image:
        def bad(msg: str) -> ImageError:
            return ImageError(f"{source}: {msg}")

        if len(blob) < _HEAD.size + 4:
            raise bad(f"too short to be a program image ({len(blob)} bytes)")
        magic, version, nsect, cfghash = _HEAD.unpack_from(blob, 0)
        if magic != MAGIC:
            raise bad(f"wrong magic {magic!r}, expected {MAGIC!r} (not a program image)")
        if version != IMAGE_VERSION:
            raise bad(f"image version {version}, this tool reads version {IMAGE_VERSION}")
        (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
        if zlib.crc32(blob[:-4]) != crc:
            raise bad("CRC32 mismatch: the image is corrupt or truncated")
        pos = _HEAD.size
        found: dict[str, Any] = {}
        bases: dict[str, int] = {}
        for _ in range(nsect):
            if pos + _SECT.size > len(blob) - 4:
                raise bad("section table runs past the end")
            kind, eb, signed, _res, base, count = _SECT.unpack_from(blob, pos)
            pos += _SECT.size
            name = _KIND_NAMES.get(kind)
            if name is None or eb not in (1, 2, 4, 8):
                raise bad(f"unknown section kind {kind} or element size {eb}")
            end = pos + eb * count
            if end > len(blob) - 4:
                raise bad(f"section '{name}' runs past the end")
            raw = blob[pos:end]
            pos = end
            if name in ("config", "meta"):
                found[name] = raw
            else:
                arr = np.frombuffer(raw, dtype=f"<{'i' if signed else 'u'}{eb}")
                # Weight codes stay narrow (unsigned, as a compiled network holds them): the
                # emulator stacks WMEM in their type; int64 was 8x the bytes of 8-bit codes.
                found[name] = arr.astype(arr.dtype.newbyteorder("=") if name == "weights"
                                         and not signed and eb <= 4 else np.int64)
                bases[name] = base
        if pos != len(blob) - 4:
            raise bad("trailing bytes after the last section")
        for need in SECTION_KINDS:
            if need not in found:
                raise bad(f"missing section '{need}'")
        try:
            config = AccelConfig.from_dict(json.loads(found["config"].decode()), source)
            meta = json.loads(found["meta"].decode())
            regions = meta.get("regions", {})
            if not isinstance(regions, dict):
                raise TypeError(f"regions must be a table, not {type(regions).__name__}")
        except (ValueError, ConfigError, TypeError, AttributeError, RecursionError) as exc:
            raise bad(f"bad config or meta section: {exc}") from None
        if config.semantic_hash() != cfghash:
            raise bad("configuration hash does not match the embedded configuration")
        lanes = config.lanes
        if len(found["weights"]) % lanes or len(found["params"]) % lanes:
            raise bad(f"weights/params are not whole words of {lanes} lanes")
        try:
            return cls(config, found["text"], found["weights"].reshape(-1, lanes),
                       found["params"].reshape(-1, lanes), found["acts"], bases["acts"],
                       regions)
        except (ImageError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise bad(str(exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> Image:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                blob = fh.read(MAX_IMAGE_BYTES + 1)
        except OSError as exc:
            raise ImageError(f"{p}: cannot read image: {exc.strerror}") from None
        if len(blob) > MAX_IMAGE_BYTES:
            raise ImageError(f"{p}: image too large: expected at most {MAX_IMAGE_BYTES} bytes, "
                             "found more")
        return cls.from_bytes(blob, str(p))

    # HDL testbenches ------------------------------------------------------------------------
    def readmemh(self, directory: str | Path) -> dict[str, Path]:
        """Write ``imem.hex``, ``wmem.hex``, ``bmem.hex`` and ``amem.hex`` (full depth, one word
        per line; a lane-wide word has lane 0 in its least significant bits)."""
        c = self.config
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        mems = self.initial_memories()
        widths = {"imem": 32, "wmem": c.lanes * c.weight_bits, "bmem": c.lanes * c.acc_bits,
                  "amem": c.act_bits}
        lane_bits = {"wmem": c.weight_bits, "bmem": c.acc_bits}
        out = {}
        for name, mem in mems.items():
            digits = (widths[name] + 3) // 4
            lines = []
            if name in lane_bits:
                b = lane_bits[name]
                m = (1 << b) - 1
                for row in mem.tolist():
                    w = 0
                    for i, v in enumerate(row):
                        w |= (v & m) << (i * b)
                    lines.append(f"{w:0{digits}x}")
            else:
                m = (1 << widths[name]) - 1
                lines = [f"{v & m:0{digits}x}" for v in mem.tolist()]
            path = d / f"{name}.hex"
            write_text_atomic(path, "\n".join(lines) + "\n")
            out[name] = path
        return out


def _acts_array(acts: Any, c: AccelConfig) -> NDArray[np.signedinteger[Any]]:
    """Initial activations, flat: kept in the activation storage type if they come in it,
    else as int64."""
    a = np.asarray(acts)
    if a.dtype != c.act_storage:  # dtype.name took 4 us, a tenth of placing a tile's inputs
        a = a.astype(np.int64, copy=False)
    return a.reshape(-1)


@functools.lru_cache(maxsize=64)
def _holds_only(dtype: np.dtype[Any], lo: int, hi: int) -> bool:
    """Whether every value of the integer ``dtype`` lies in lo..hi."""
    kind = np.iinfo(dtype)
    return bool(kind.min >= lo and kind.max <= hi)


def as_activations(x: NDArray[np.integer], c: AccelConfig) -> NDArray[np.integer]:
    """``x`` (any shape) in the activation storage type, checked to fit the activation range
    (no pass over it when its type holds nothing else); raises :class:`ImageError`."""
    if x.dtype.kind not in "iu":
        raise ImageError(f"activations must be integers, not {x.dtype}")
    if x.dtype == c.act_storage:
        return x
    if not _holds_only(x.dtype, c.act_min, c.act_max) and x.size and (
            int(x.min()) < c.act_min or int(x.max()) > c.act_max):
        raise ImageError(f"activations must fit {c.act_bits} signed bits")
    return x.astype(c.act_storage)


def check_band(base: int, band: NDArray[np.integer], c: AccelConfig) -> None:
    """Activations (any shape) that may be placed at AMEM ``base`` (:meth:`Image.with_bands`):
    inside AMEM and the activation range; raises :class:`ImageError`."""
    if band.dtype.kind not in "iu":
        raise ImageError(f"activations must be integers, not {band.dtype}")
    _check_acts(band, base, c, band.size)


def _check_acts(acts: NDArray[np.integer], base: int, c: AccelConfig,
                size: int | None = None) -> None:
    """The initial activations fit AMEM from ``base`` and the activation range (which a
    storage type no wider than the range holds by itself: no pass over them then)."""
    n = len(acts) if size is None else size
    if not (0 <= base and base + n <= c.amem_depth):
        raise ImageError(f"activations {base}..{base + n} exceed amem_depth {c.amem_depth}")
    if _holds_only(acts.dtype, c.act_min, c.act_max):
        return
    if n and (int(acts.min()) < c.act_min or int(acts.max()) > c.act_max):
        raise ImageError(f"activations must fit {c.act_bits} signed bits")

"""The accelerator configuration: one frozen dataclass read by the emulator, the RTL and the
compiler alike, serializable to TOML and JSON.

Validation names the bad field.  The configuration hash stored in program images is the SHA-256
of the canonical JSON, so an image built for one configuration is refused by another.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomli_w

from . import hwcode
from . import weights as wformats
from .errors import AsdError
from .files import write_text_atomic

PE_KINDS = ("shiftadd", "multiplier")
_STR_FIELDS = ("pe", "weights")


class ConfigError(ValueError, AsdError):
    """A configuration that cannot be built; the message names the field."""


# Fields left out of the serialized form at these defaults (configurations from before they
# existed keep their hash and image bytes).
_QUIET_DEFAULTS: dict[str, Any] = {"weights": wformats.DEFAULT, "host_words_per_cycle": 1}

# A configuration is a few hundred bytes; more is refused unread (/dev/zero, a wrong file).
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of one accelerator instance.

    lanes          processing elements; each lane owns one output channel of a block
    act_bits       activation (feature map) width, two's complement
    acc_bits       accumulator width, two's complement, wraps on overflow
    exp_bits       ASD exponent field width E: digits 2^0 .. 2^-(2^E - 1); code = 2(1+E) bits
    imem_depth     instruction words (32 bits each)
    wmem_depth     weight words (one code per lane)
    bmem_depth     parameter words (one acc_bits value per lane: biases, requant and slopes)
    amem_depth     activation memory, one act_bits element per address
    loop_depth     hardware loop nesting levels
    pe             'shiftadd' (two shifted terms per weight) or 'multiplier' (same datapath with
                   a multiplier); the results are identical, only the hardware differs
    weights        WMEM weight format (:mod:`contract.weights`): 'asd' (two-digit codes, the
                   default) or 'int8' (plain 8-bit integers, PE kind 'multiplier' only).  Left
                   out of the serialized form at its default, so 'asd' configurations keep
                   their hash and image bytes
    host_words_per_cycle  memory words the host moves per cycle between tiles (an IMEM, WMEM
                   or BMEM word, or an AMEM element): the bandwidth transfer cycles are
                   counted at.  It changes no result: left out of the semantic hash, and of
                   the serialized form at its default
    """

    lanes: int = 8
    act_bits: int = 8
    acc_bits: int = 32
    exp_bits: int = 3
    imem_depth: int = 1024
    wmem_depth: int = 4096
    bmem_depth: int = 256
    amem_depth: int = 65536
    loop_depth: int = 4
    pe: str = "shiftadd"
    weights: str = wformats.DEFAULT
    host_words_per_cycle: int = 1

    def __post_init__(self) -> None:
        def need(cond: bool, field: str, what: str) -> None:
            if not cond:
                raise ConfigError(f"config field '{field}' = {getattr(self, field)!r}: {what}")

        for f in fields(self):
            if f.name not in _STR_FIELDS:
                v = getattr(self, f.name)
                need(isinstance(v, int) and not isinstance(v, bool), f.name, "must be an integer")
        need(1 <= self.lanes <= 32, "lanes", "must be 1..32")
        need(2 <= self.act_bits <= 16, "act_bits", "must be 2..16")
        need(1 <= self.exp_bits <= 4, "exp_bits", "must be 1..4")
        need(isinstance(self.weights, str) and self.weights in wformats.FORMATS, "weights",
             f"must be one of {', '.join(wformats.FORMATS)}")
        need(self.pe in PE_KINDS, "pe", f"must be one of {', '.join(PE_KINDS)}")
        fmt = wformats.FORMATS[self.weights]
        if self.pe not in fmt.pe_kinds:
            raise ConfigError(f"config field 'weights' = {self.weights!r} needs field 'pe' in "
                              f"{', '.join(fmt.pe_kinds)}, not 'pe' = {self.pe!r}")
        pbits = fmt.product_bits(self.act_bits, self.exp_bits)
        need(
            pbits <= self.acc_bits <= 40,
            "acc_bits",
            f"must be {pbits}..40 (a product of {self.weights} weights needs {pbits} bits)"
            if self.weights != "asd" else
            f"must be {pbits}..40 (a product needs act_bits + 2^exp_bits + 1 bits)",
        )
        for name, limit in (("imem_depth", 1 << 16), ("wmem_depth", 1 << 16),
                            ("bmem_depth", 1 << 16), ("amem_depth", 1 << 16)):
            v = getattr(self, name)
            need(2 <= v <= limit and v & (v - 1) == 0, name, f"must be a power of two, 2..{limit}")
        need(1 <= self.loop_depth <= 8, "loop_depth", "must be 1..8")
        need(1 <= self.host_words_per_cycle <= 1024, "host_words_per_cycle", "must be 1..1024")

    # Derived quantities -------------------------------------------------------------------
    @property
    def window(self) -> int:
        """ASD digit positions, 2^exp_bits."""
        return hwcode.window(self.exp_bits)

    @property
    def code_bits(self) -> int:
        """Bits of a two-digit code (REQ/ACT parameters; WMEM words too with 'asd')."""
        return hwcode.code_bits(self.exp_bits)

    @property
    def weight_format(self) -> wformats.WeightFormat:
        return wformats.FORMATS[self.weights]

    @property
    def weight_bits(self) -> int:
        """Bits of one lane's weight code in WMEM."""
        return self.weight_format.code_bits(self.exp_bits)

    @property
    def act_min(self) -> int:
        return -(1 << (self.act_bits - 1))

    @property
    def act_max(self) -> int:
        return (1 << (self.act_bits - 1)) - 1

    @property
    def act_storage(self) -> str:
        """The narrowest integer type holding every activation (a numpy type name)."""
        return "int8" if self.act_bits <= 8 else "int16"

    # Serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The serialized fields; ``weights`` only when not the default (hash and image
        bytes of 'asd' configurations are those from before the field existed)."""
        d = dataclasses.asdict(self)
        for name, default in _QUIET_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        return tomli_w.dumps({"accelerator": self.to_dict()})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> AccelConfig:
        if "accelerator" in data and isinstance(data["accelerator"], dict):
            data = data["accelerator"]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown config field '{unknown[0]}' (known: {', '.join(sorted(known))})"
            )
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> AccelConfig:
        """Read a configuration from a .toml or .json file."""
        p = Path(path)
        try:
            with p.open("rb") as fh:
                raw = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read configuration: {exc.strerror}") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: configuration too large: expected at most "
                              f"{MAX_CONFIG_BYTES} bytes, found more")
        try:
            text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
            if p.suffix == ".json":
                data = json.loads(text)
            else:
                data = tomllib.loads(text)
        except ValueError as exc:  # bad syntax, non-UTF-8 bytes, an integer over the digit limit
            raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a table of config fields")
        return cls.from_dict(data, str(p))

    def save(self, path: str | Path) -> None:
        p = Path(path)
        write_text_atomic(p, self.to_json() + "\n" if p.suffix == ".json" else self.to_toml())

    def replace(self, **changes: Any) -> AccelConfig:
        return dataclasses.replace(self, **changes)

    def semantic_hash(self) -> bytes:
        """8 bytes identifying everything that changes what a program computes or where it
        may address.  The PE kind is left out: both kinds run the same images bit for bit.
        The weight format is in (through :meth:`to_dict`, so only when it is not 'asd');
        the host bandwidth is out (it only prices transfers)."""
        return _semantic_hash(self)


@functools.lru_cache(maxsize=64)
def _semantic_hash(c: AccelConfig) -> bytes:
    # Once per configuration: every image read or checked asks (ResNet-18's 877 tiles asked
    # 2631 times, 0.3 s of a one-image asd run, mostly dataclasses.asdict).
    d = c.to_dict()
    d.pop("pe")
    d.pop("host_words_per_cycle", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).digest()[:8]

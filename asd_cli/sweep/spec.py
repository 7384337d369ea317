"""The sweep specification (TOML): parsing, validation before any task starts, and expansion
into points.  Every refusal is one :class:`SpecError` naming the file, the line and the key.

A point is a plain JSON-able dictionary: ``measure`` plus the axis values that measure reads
(:data:`MEASURE_AXES`); points that differ only in axes a measure ignores are one point.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.errors import AsdError

# asd_cli.hwreport.PE_ARRAY_MODES, repeated so parsing a spec does not load argparse modules.
PE_ARRAY_MODES = ("pipelined", "direct", "product", "carrysave", "carrysave_direct",
                  "carrysave_drain", "tree")

# Which axes each measure reads, in the order they appear in a point.
MEASURE_AXES: dict[str, tuple[str, ...]] = {
    "eval": ("model", "dataset", "shard", "scheme", "rounding", "seed"),
    "run": ("model", "dataset", "shard", "scheme", "rounding", "config", "pe", "seed"),
    "hwreport": ("config", "pe", "mode"),
}

# The weight rounding where the spec names none: each command's own (asd eval: nearest; asd
# compile, which the run measure always gives calibration images: gptq+bias).
DEFAULT_ROUNDING = {"eval": "nearest", "run": "gptq+bias"}

# Options of each measure with their defaults; a spec may set only these.
MEASURE_OPTIONS: dict[str, dict[str, Any]] = {
    "eval": {"granularity": "channel", "scale": "mse", "calib": 256, "timeout": 3600.0},
    "run": {"calib": 64, "timeout": 3600.0},
    "hwreport": {"target": "pe", "seeds": 1, "macs": 2000, "timeout": 900.0,
                 "cells_only": False, "networks": []},
}
# accel.kinds.KINDS: the designs hwreport compares (the run measure takes the first two, the
# PE kinds; the int8 forms are multipliers fed int8 weights), repeated for the same reason.
DESIGN_KINDS = ("shiftadd", "multiplier", "int8", "int8_booth", "int8_array")

AXES = ("models", "datasets", "limit", "shards", "schemes", "roundings", "configs", "pe",
        "modes", "seeds")
# An axis of the spec -> its name in a point.  A measure's table may give any of these that
# the measure reads, overriding [axes] for that measure only.
POINT_NAMES = {"models": "model", "datasets": "dataset", "schemes": "scheme",
               "roundings": "rounding", "configs": "config", "pe": "pe", "modes": "mode",
               "seeds": "seed"}


class SpecError(ValueError, AsdError):
    """A sweep specification that cannot run; the message names the line and key."""


@dataclass
class Spec:
    path: Path
    limit: int | None
    shards: int
    values: dict[str, list[Any]]  # point axis name -> values; a scheme is {"name", **options}
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # per measure


def _line_of(text: str, key: str) -> int | None:
    """The first line that assigns ``key`` (or opens table ``key``), 1-based, looked for
    after the header of the table that holds it (``[axes]``, ``[measures.NAME]``)."""
    parts = key.split("[")[0].split(".")
    leaf, table = parts[-1], ".".join(parts[:-1])
    lines = text.splitlines()
    start = 0
    if table:
        head = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
        start = next((i for i, line in enumerate(lines) if head.match(line)), 0)
    pat = re.compile(rf"^\s*(\[+\s*[\w.]*\b{re.escape(leaf)}\s*\]+|\"?{re.escape(leaf)}\"?\s*=)")
    for i in range(start, len(lines)):
        if pat.match(lines[i]):
            return i + 1
    return None


class _Checker:
    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def fail(self, key: str, msg: str) -> SpecError:
        line = _line_of(self.text, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return SpecError(f"{where}: {key}: {msg}")

    def list_of(self, table: dict[str, Any], key: str, kind: type | tuple[type, ...],
                default: list[Any]) -> list[Any]:
        if key.split(".")[-1] not in table:
            return default
        v = table[key.split(".")[-1]]
        if not isinstance(v, list):
            v = [v]
        if not v:
            raise self.fail(key, "an empty list: give at least one value")
        for i, item in enumerate(v):
            if not isinstance(item, kind) or isinstance(item, bool):
                raise self.fail(f"{key}[{i}]", f"expected {_kind_name(kind)}, got {item!r}")
        return v


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "dict": "a table"}.get(
        k.__name__, k.__name__) for k in kinds)


def load(path: str | Path) -> Spec:
    """Read and validate a spec; raises :class:`SpecError` before anything runs."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"{p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: not valid TOML: {exc}") from None
    return parse(data, p, text)


def parse(data: dict[str, Any], path: Path, text: str = "") -> Spec:
    ck = _Checker(path, text)
    for key in data:
        if key not in ("axes", "measures"):
            raise ck.fail(key, "unknown table (a spec has [axes] and [measures.NAME])")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise ck.fail("axes", "expected a table")
    for key in axes:
        if key not in AXES:
            raise ck.fail(f"axes.{key}", f"unknown axis (known: {', '.join(AXES)})")
    measures, raw_overrides = _measures(ck, data.get("measures"))
    needs_model = bool({"eval", "run"} & set(measures))
    if needs_model and "models" not in axes:
        raise ck.fail("axes.models", "eval and run need at least one model")
    limit = axes.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                              or limit < 1):
        raise ck.fail("axes.limit", f"expected a positive integer, got {limit!r}")
    shards = axes.get("shards", 1)
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ck.fail("axes.shards", f"expected a positive integer, got {shards!r}")
    evals_base = "eval" in measures and "schemes" not in raw_overrides.get("eval", {})
    values = _axis_values(ck, axes, "axes", evals_base)
    if not needs_model:
        values["model"] = ["-"]
    overrides = {m: _axis_values(ck, table, f"measures.{m}", m == "eval", only=set(table))
                 for m, table in raw_overrides.items()}
    if "run" in measures:
        from contract.config import PE_KINDS

        where = "measures.run.pe" if "pe" in overrides.get("run", {}) else "axes.pe"
        run_pe = overrides.get("run", {}).get("pe", values["pe"])
        for i, k in enumerate(run_pe):
            if k not in PE_KINDS:
                raise ck.fail(f"{where}[{i}]", f"{k!r} is a design hwreport compares; the run "
                                               f"measure takes {' or '.join(PE_KINDS)} (give "
                                               "[measures.run] its own pe)")
    return Spec(path=path, limit=limit, shards=shards, values=values, measures=measures,
                overrides=overrides)


def _axis_values(ck: _Checker, table: dict[str, Any], prefix: str, for_eval: bool,
                 only: set[str] | None = None) -> dict[str, list[Any]]:
    """The axes of ``table`` (``[axes]`` or a measure's overrides), checked, by point name."""
    from asd.datasets import NAMES
    from asd.rounding import ROUNDINGS
    from contract.config import PE_KINDS

    def axis(name: str, kind: type | tuple[type, ...], default: list[Any],
             known: tuple[str, ...] | None = None) -> None:
        if only is not None and name not in only:
            return
        vals = ck.list_of(table, f"{prefix}.{name}", kind, default)
        for i, v in enumerate(vals):
            if known is not None and v is not None and v not in known:
                raise ck.fail(f"{prefix}.{name}[{i}]",
                              f"unknown value {v!r} (known: {', '.join(known)})")
        out[POINT_NAMES[name]] = vals

    out: dict[str, list[Any]] = {}
    axis("models", str, ["-"])
    axis("datasets", str, [None])
    axis("roundings", str, [None], ROUNDINGS)  # None: the measure's DEFAULT_ROUNDING
    axis("pe", str, ["shiftadd"], (*PE_KINDS, *(k for k in DESIGN_KINDS if k not in PE_KINDS)))
    axis("modes", str, ["pipelined"], PE_ARRAY_MODES)
    axis("seeds", int, [0])
    for i, d in enumerate(out.get("dataset", [])):
        if d is not None and d not in NAMES and not d.startswith("imagefolder:"):
            raise ck.fail(f"{prefix}.datasets[{i}]",
                          f"unknown dataset {d!r} (known: {', '.join(NAMES)})")
    if only is None or "schemes" in only:
        out["scheme"] = _schemes(ck, table, f"{prefix}.schemes", for_eval)
    if only is None or "configs" in only:
        out["config"] = _configs(ck, table, f"{prefix}.configs")
    return out


def _measures(ck: _Checker, table: Any) -> tuple[dict[str, dict[str, Any]],
                                                 dict[str, dict[str, Any]]]:
    if not isinstance(table, dict) or not table:
        raise ck.fail("measures", "name at least one measure: [measures.eval], [measures.run] "
                                  "or [measures.hwreport]")
    out, overrides = {}, {}
    for name, opts in table.items():
        if name not in MEASURE_OPTIONS:
            raise ck.fail(f"measures.{name}",
                          f"unknown measure (known: {', '.join(MEASURE_OPTIONS)})")
        if not isinstance(opts, dict):
            raise ck.fail(f"measures.{name}", "expected a table of options ([measures.NAME])")
        defaults = MEASURE_OPTIONS[name]
        reads = {a for a, n in POINT_NAMES.items() if n in MEASURE_AXES[name]}
        overrides[name] = {k: v for k, v in opts.items() if k in reads}
        if not overrides[name]:
            del overrides[name]
        opts = {k: v for k, v in opts.items() if k not in reads}
        for key, v in opts.items():
            if key not in defaults:
                raise ck.fail(f"measures.{name}.{key}",
                              f"unknown option (known: {', '.join([*defaults, *sorted(reads)])})")
            want = type(defaults[key])
            ok = isinstance(v, want) or (want is float and isinstance(v, int))
            if not ok or (isinstance(v, bool) and want is not bool):
                raise ck.fail(f"measures.{name}.{key}",
                              f"expected {_kind_name(want)}, got {v!r}")
        out[name] = {**defaults, **opts}
    ev = out.get("eval", {})
    if ev and ev["granularity"] not in ("channel", "tensor"):
        raise ck.fail("measures.eval.granularity", "use channel or tensor")
    if ev and ev["scale"] not in ("mse", "max", "pow2"):
        raise ck.fail("measures.eval.scale", "use mse, max or pow2")
    hw = out.get("hwreport", {})
    if hw and hw["target"] not in ("pe", "core"):
        raise ck.fail("measures.hwreport.target", "use pe or core")
    for i, n in enumerate(hw.get("networks", [])):
        if not isinstance(n, str) or not _network_known(n):
            raise ck.fail(f"measures.hwreport.networks[{i}]",
                          f"unknown network {n!r} (a shipped model name or resnet18)")
    for name, opts in out.items():
        least = 0 if name in ("eval", "run") else 1
        if opts["timeout"] < least:
            raise ck.fail(f"measures.{name}.timeout",
                          "seconds, 0 for none" if least == 0 else "seconds, at least 1")
    return out, overrides


def _network_known(name: str) -> bool:
    from asd_cli.evaluate import MODELS_DIR

    return name == "resnet18" or (MODELS_DIR / f"{name}.onnx").exists()


def _schemes(ck: _Checker, table: dict[str, Any], key0: str, for_eval: bool) -> list[dict]:
    from asd.schemes import get_scheme

    raw = ck.list_of(table, key0, (str, dict), ["asd2"])
    out = []
    for i, s in enumerate(raw):
        key = f"{key0}[{i}]"
        d = {"name": s} if isinstance(s, str) else dict(s)
        name = d.get("name")
        if not isinstance(name, str):
            raise ck.fail(key, "a scheme with options is a table with a 'name' key")
        opts = {k: v for k, v in d.items() if k != "name"}
        if name != "float":
            try:
                get_scheme(name, **opts)
            except ValueError as exc:
                raise ck.fail(key, str(exc)) from None
        if opts and for_eval:
            raise ck.fail(key, "scheme options reach the run measure only; asd eval takes "
                               "registry names (asd, asd2, int8, ...)")
        out.append(d)
    return out


def _configs(ck: _Checker, table: dict[str, Any], key: str) -> list[dict[str, Any]]:
    from contract.config import AccelConfig, ConfigError

    raw = ck.list_of(table, key, dict, [{}])
    for i, c in enumerate(raw):
        try:
            AccelConfig.from_dict({**AccelConfig().to_dict(), **c}, "fields")
        except ConfigError as exc:
            raise ck.fail(f"{key}[{i}]", str(exc).removeprefix("fields: ")) from None
    return raw


def _builds(mode: str, target: str) -> tuple[str, ...]:
    from accel.kinds import kinds_for

    return kinds_for(mode, target)


def points(spec: Spec) -> list[dict[str, Any]]:
    """The product of the axes, per measure, each distinct point once, in spec order."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for measure in spec.measures:
        values = {**spec.values, "shard": list(range(spec.shards)),
                  **spec.overrides.get(measure, {})}
        names = MEASURE_AXES[measure]
        opts = spec.measures[measure]
        for combo in itertools.product(*(values[n] for n in names)):
            pt = {"measure": measure, **dict(zip(names, combo, strict=True))}
            if "rounding" in pt and pt["rounding"] is None:
                pt["rounding"] = DEFAULT_ROUNDING[measure]
            if measure == "run" and pt["scheme"]["name"] == "float":
                continue  # the accelerator holds no float weights
            if measure == "hwreport" and pt["pe"] not in _builds(pt["mode"], opts["target"]):
                continue  # a partial-product int8 form where the mode resolves its sums
            if measure == "eval" and pt["scheme"]["name"] in ("float", "fp8-e4m3", "fp8-e5m2"):
                pt["rounding"] = "nearest"  # as asd eval: these take one rounding only
            if measure == "eval" and pt["rounding"] == "nearest":
                pt["seed"] = 0  # nearest rounding takes no calibration sample
            ident = repr(sorted(pt.items()))
            if ident not in seen:
                seen.add(ident)
                out.append(pt)
    return out

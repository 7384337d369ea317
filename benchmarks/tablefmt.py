"""Formatting shared by the generated tables (:mod:`benchmarks.tables`,
:mod:`benchmarks.hwtables`): the saved results, percent changes, spans and Markdown tables."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> Any:
    return json.loads((RESULTS / f"{name}.json").read_text())


def pct(ratio: float | None, bold_at: float | None = None) -> str:
    """A shift-add / multiplier ratio as a change in percent; bold when it meets ``bold_at``."""
    if ratio is None:
        return "n/a"
    text = f"{(ratio - 1) * 100:+.0f}%".replace("+0%", "0%").replace("-0%", "0%")
    return f"**{text}**" if bold_at is not None and ratio <= bold_at else text


def span(values: Iterable[float], fmt: str = "{:.0f}") -> str:
    """``a..b`` (or ``a``) of the values, in ``fmt``."""
    vs = sorted(values)
    lo, hi = fmt.format(vs[0]), fmt.format(vs[-1])
    return lo if lo == hi else f"{lo}..{hi}"


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def fill(text: str) -> str:
    """A generated paragraph, wrapped like the hand-written prose around it."""
    return textwrap.fill(text, width=96, break_on_hyphens=False)


def dbs(values: Iterable[float]) -> str:
    """A span of dB figures, one decimal."""
    return span(values, "{:.1f}")


def names(items: Iterable[str]) -> str:
    """``a, b and c``."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


# The seed networks' display names, in the order the tables list them.
SEEDNET_NAMES = {"resnet18": "ResNet-18", "alexnet": "AlexNet", "vgg16": "VGG-16",
                 "squeezenet1_0": "SqueezeNet 1.0", "squeezenet1_1": "SqueezeNet 1.1"}

"""The HTML report of a demo or study run: PNG figures (matplotlib, Agg) and tables.

Figures: accuracy per scheme; per-layer quantization error (SQNR) per scheme; weight
histograms with the ASD levels drawn over them; cycles per layer.  Everything it draws comes in
as plain data, so the report can be rebuilt from the JSON summary written beside it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from contract.files import write_text_atomic


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_figure(path: Path, accuracy: list[dict[str, Any]]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [a["scheme"] for a in accuracy]
    top1 = [a["top1"] for a in accuracy]
    colors = ["#888888" if n == "float" else "#1f77b4" if n.startswith("asd") else "#ff7f0e"
              for n in names]
    bars = ax.bar(names, top1, color=colors)
    lo = max(0.0, min(top1) - 3)
    ax.set_ylim(lo, 100)
    ax.set_ylabel("top-1 %")
    for b, a in zip(bars, accuracy):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{a['top1']:.1f}\n"
                f"{a['bits_per_weight']:.1f}b", ha="center", va="bottom", fontsize=7)
    ax.set_title("Accuracy per scheme, no retraining (label: top-1, bits per weight)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def layer_error_figure(path: Path, layers: list[str], sqnr: dict[str, list[float]]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(sqnr), 1)
    x = np.arange(len(layers))
    for i, (scheme, vals) in enumerate(sqnr.items()):
        ax.bar(x + i * width, vals, width, label=scheme)
    ax.set_xticks(x + width * (len(sqnr) - 1) / 2)
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("SQNR dB (higher is better)")
    ax.set_title("Per-layer weight quantization error", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def histogram_figure(path: Path, panels: list[dict[str, Any]]) -> None:
    """Each panel: name, weights (1-D, divided by their channel's scale), levels (the ASD
    values, same units)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3), squeeze=False)
    for ax, p in zip(axes[0], panels):
        w = np.asarray(p["weights"])
        ax.hist(w, bins=120, color="#9ecae1")
        for lv in p["levels"]:
            ax.axvline(lv, color="#d62728", lw=0.5, alpha=0.6)
        ax.set_title(f"{p['name']} (w / scale)", fontsize=8)
        ax.set_xlim(-1.6, 1.6)
        ax.tick_params(labelsize=7)
    fig.suptitle("Weight histograms with the two-digit ASD levels (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cycles_figure(path: Path, layers: list[str], cycles: list[int]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(layers, cycles, color="#2ca02c")
    ax.set_ylabel("cycles per image")
    ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.set_title(f"Accelerator cycles per layer (total {sum(cycles):,} per image)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in columns)
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key)
            cells.append(f"<td>{'-' if v is None else html.escape(format(v, fmt))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write(out_dir: str | Path, summary: dict[str, Any], figures: dict[str, str]) -> Path:
    """Write ``index.html`` and ``summary.json`` into out_dir, each replaced in one step;
    figures maps title -> PNG name."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    write_text_atomic(d / "summary.json", json.dumps(summary, indent=2, default=float))
    acc_rows = summary.get("accuracy", [])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(summary.get('title', 'ASD report'))}</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}"
        ".ok{color:#2a7}.bad{color:#c22}</style></head><body>",
        f"<h1>{html.escape(summary.get('title', 'ASD report'))}</h1>",
        f"<p>{html.escape(summary.get('subtitle', ''))}</p>",
    ]
    checks = summary.get("checks", [])
    if checks:
        parts.append("<h2>Checks</h2><ul>")
        for c in checks:
            cls = "ok" if c.get("ok") else "bad"
            parts.append(f"<li class='{cls}'>{html.escape(c['text'])}</li>")
        parts.append("</ul>")
    if acc_rows:
        parts.append("<h2>Accuracy per scheme</h2>")
        parts.append(_table(acc_rows, [
            ("scheme", "scheme", ""), ("top1", "top-1 %", ".2f"), ("top5", "top-5 %", ".2f"),
            ("bits_per_weight", "bits/weight", ".2f"),
            ("size_reduction", "size reduction", ".1%"), ("drop_vs_float", "drop", "+.2f"),
            ("feature_maps", "feature maps", "")]))
    fid_rows = summary.get("fidelity", [])
    if fid_rows:
        parts.append("<h2>Fidelity against the float model</h2>")
        parts.append(_table(fid_rows, [
            ("scheme", "scheme", ""), ("agreement", "top-1 agreement %", ".2f"),
            ("sqnr_db", "output SQNR dB", ".2f"), ("kl", "softmax KL", ".2e")]))
    for key, title in (("layers", "Layers on the accelerator"),):
        rows = summary.get(key)
        if rows:
            parts.append(f"<h2>{title}</h2>")
            parts.append(_table(rows, [("name", "layer", ""), ("op", "op", ""),
                                       ("cycles", "cycles/image", ",d")]))
    for title, png in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(png)}' "
                     f"alt='{html.escape(title)}'>")
    parts.append("</body></html>")
    path = d / "index.html"
    write_text_atomic(path, "\n".join(parts))
    return path

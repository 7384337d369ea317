"""``asd sweep --report DB``: the stored points as HTML tables and Pareto plots.

Plots (matplotlib, Agg), each point a dot, the Pareto front joined by a line:
accuracy and output SQNR against bits per weight (eval points); energy of the simulated
MACs against area, energy per inference of each network a point was costed on against area,
and critical path against area (standard-cell figures of hwreport points).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.files import write_text_atomic

# (measure, x, y, higher y is better, title)
PLOTS = (
    ("eval", "bits_per_weight", "top1", True, "top-1 accuracy (%) against bits per weight"),
    ("eval", "bits_per_weight", "sqnr_db", True, "output SQNR (dB) against bits per weight"),
    ("hwreport", "asic_area", "asic_energy_pj", False,
     "energy of the simulated MACs (pJ, standard cells) against area"),
    ("hwreport", "asic_area", "asic_crit_ns", False,
     "critical path (ns, standard cells) against area"),
)


def pareto(xy: Sequence[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (x lower is better), by x."""
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(range(len(xy)), key=lambda i: (xy[i][0], sign * xy[i][1]))
    front: list[int] = []
    best = float("inf")
    for i in order:
        if sign * xy[i][1] < best:
            front.append(i)
            best = sign * xy[i][1]
    return front


def label(pt: dict[str, Any]) -> str:
    """A short name of a point: the values of its axes."""
    parts = []
    for k in ("model", "scheme", "rounding", "config", "pe", "mode", "shard", "seed"):
        v = pt.get(k)
        if isinstance(v, dict):
            v = ",".join(f"{a}={b}" for a, b in v.items() if a != "name") if k == "config" \
                else ",".join([str(v["name"]), *(f"{a}={b}" for a, b in v.items()
                                                  if a != "name")])
        if v not in (None, "", "nearest") and not (k in ("shard", "seed") and v == 0):
            parts.append(str(v))
    return "/".join(parts) or "default"


def _figure(path: Path, rows: list[dict[str, Any]], x: str, y: str, higher: bool,
            title: str) -> bool:
    rows = [r for r in rows
            if r["result"].get(x) is not None and r["result"].get(y) is not None]
    pts = [(r["result"][x], r["result"][y], label(r["point"])) for r in rows]
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    # One front per model (eval) or per PE kind (hwreport): fronts across them mean little.
    groups: dict[str, list[tuple[float, float, str]]] = {}
    for (px, py, name), r in zip(pts, rows, strict=True):
        g = str(r["point"].get("model") or r["point"].get("pe") or "")
        groups.setdefault(g, []).append((px, py, name))
    for g, gp in groups.items():
        front = pareto([(p[0], p[1]) for p in gp], higher)
        dots = ax.scatter([p[0] for p in gp], [p[1] for p in gp], s=14, alpha=0.5)
        ax.plot([gp[i][0] for i in front], [gp[i][1] for i in front], "o-",
                color=dots.get_facecolor()[0], label=g, alpha=1.0)
        for i in front:
            ax.annotate(gp[i][2], (gp[i][0], gp[i][1]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if len(groups) > 1:
        ax.legend(fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _inference_plots(rows: list[dict[str, Any]]
                     ) -> tuple[list[tuple[str, str, str, bool, str]], list[dict[str, Any]]]:
    """Energy per inference against area, one plot per network the hwreport points were
    costed on, and the rows to draw them from: copies in which each point's per-network
    energy is a result key of its own (``energy_uj:NETWORK``), so :func:`_figure` reads it like
    any other figure."""
    names: list[str] = []
    drawn = []
    for r in rows:
        nets = r["result"].get("networks") if r.get("result") else None
        if r["measure"] == "hwreport" and r["status"] == "ok" and nets:
            r = {**r, "result": dict(r["result"])}
            for net in nets:
                if net.get("inference"):
                    r["result"][f"energy_uj:{net['name']}"] = net["inference"]["energy_uj"]
                    if net["name"] not in names:
                        names.append(net["name"])
        drawn.append(r)
    return [("hwreport", "asic_area", f"energy_uj:{n}", False,
             f"energy per inference of {n} (uJ, datapath, standard cells) against area")
            for n in names], drawn


def _table(rows: list[dict[str, Any]], keys: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ("point", "status", *keys))
    body = []
    for r in rows:
        res = r["result"] or {}
        cells = [label(r["point"]), r["status"]]
        if r["status"] == "ok":
            cells += [f"{v:.4g}" if isinstance(v := res.get(k), float) else
                      ("-" if v is None else str(v)) for k in keys]
        else:
            cells += [r["error"] or ""]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write(rows: list[dict[str, Any]], out_dir: str | Path, source: str,
          headline: Mapping[str, Sequence[str]]) -> Path:
    """``index.html``, its PNG figures and ``results.json`` (every row) in ``out_dir``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>asd sweep</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
             "font-size:13px}img{max-width:100%}</style></head><body>",
             f"<h1>asd sweep: {html.escape(source)}</h1>",
             f"<p>{len(rows)} points, {sum(r['status'] != 'ok' for r in rows)} failed.</p>"]
    per_network, drawn = _inference_plots(rows)
    for n, (measure, x, y, higher, title) in enumerate([*PLOTS, *per_network]):
        ok = [r for r in drawn if r["measure"] == measure and r["status"] == "ok"]
        if _figure(d / f"pareto{n}.png", ok, x, y, higher, title):
            parts.append(f"<h2>{html.escape(title)}</h2><img src='pareto{n}.png'>")
    for measure, keys in headline.items():
        mine = [r for r in rows if r["measure"] == measure]
        if mine:
            parts += [f"<h2>{measure}</h2>", _table(mine, keys)]
    parts.append("</body></html>")
    write_text_atomic(d / "results.json", json.dumps(rows, indent=1, default=str))
    write_text_atomic(d / "index.html", "\n".join(parts))
    return d / "index.html"

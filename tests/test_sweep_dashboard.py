"""``asd sweep --dashboard``: Dask's own dashboard for the embedded cluster, on request only."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from asd_cli.main import main
from asd_cli.sweep import runner, spec
from asd_cli.sweep.store import Store
from tests.sweep_specs import TINY

pytest.importorskip("distributed")

SPEC = TINY.replace("[measures.run]\ncalib = 8\n", "")  # the two eval points


def _run(tmp_path: Path, **kw: Any) -> runner.Outcome:
    p = tmp_path / "s.toml"
    p.write_text(SPEC)
    sp = spec.load(p)
    version = runner.project_version()
    tasks, inputs = runner.plan(sp, spec.points(sp), version)
    with Store(tmp_path / "s.sqlite") as store:
        return runner.execute(tasks, inputs, store, version, workers=1,
                              workdir=tmp_path / "work", **kw)


def test_the_embedded_cluster_serves_the_dashboard_while_it_runs(tmp_path: Path) -> None:
    pages: list[tuple[int, bytes]] = []

    def fetch(o: runner.Outcome) -> None:
        assert o.dashboard is not None
        with urllib.request.urlopen(o.dashboard, timeout=30) as r:  # noqa: S310 (loopback)
            pages.append((r.status, r.read()))

    out = _run(tmp_path, dashboard="127.0.0.1:0", on_start=fetch)
    assert out.ok == 2
    assert out.dashboard is not None and out.dashboard.startswith("http://127.0.0.1:")
    (status, body), = pages
    assert status == 200 and b"Dask" in body, body[:200]


def test_no_dashboard_unless_asked(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out.ok == 2 and out.dashboard is None


def test_dashboard_without_bokeh_is_a_clean_error(tmp_path: Path, monkeypatch: Any,
                                                  capsys: Any) -> None:
    monkeypatch.setattr(runner, "dashboard_missing", lambda: "bokeh is not installed")
    p = tmp_path / "s.toml"
    p.write_text(SPEC)
    db = tmp_path / "s.sqlite"
    assert main(["sweep", str(p), "--db", str(db), "--dashboard"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--dashboard: bokeh is not installed" in err, err
    assert not db.exists()

"""``asd sweep``: spec errors, the result store, and sweeps on a real Dask cluster (a scheduler
and two worker processes on 127.0.0.1) that store, skip, resume and retry."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asd_cli.main import main
from asd_cli.sweep import report, runner, spec
from asd_cli.sweep.store import Store, StoreError
from tests.sweep_specs import TINY

distributed = pytest.importorskip("distributed")



@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A real cluster on loopback: a scheduler and two single-threaded worker processes."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       scheduler_port=0, silence_logs=40)
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _sweep(tmp_path: Path, text: str, address: str, **kw: Any) -> tuple[runner.Outcome, Path]:
    p = tmp_path / "s.toml"
    p.write_text(text)
    sp = spec.load(p)
    version = runner.project_version()
    tasks, inputs = runner.plan(sp, spec.points(sp), version)
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        out = runner.execute(tasks, inputs, store, version, scheduler=address,
                             workdir=tmp_path / "work", **kw)
    return out, db


def _rows(db: Path) -> list[dict[str, Any]]:
    with Store(db) as store:
        return store.rows()


def test_sweep_stores_skips_and_retries(tmp_path: Path, scheduler: str) -> None:
    out, db = _sweep(tmp_path, TINY, scheduler)
    assert (out.points, out.executed, out.ok, out.failed, out.workers) == (4, 4, 3, 1, 2)
    rows = {(r["measure"], r["point"]["scheme"]["name"]): r for r in _rows(db)}
    assert len(rows) == 4
    # The hardware's two-digit code holds no int8 weights: a failure recorded with its error.
    assert rows[("run", "int8")]["status"] == "failed"
    assert "QuantizeError" in rows[("run", "int8")]["error"]
    assert rows[("run", "asd2")]["result"]["cycles_per_image"] > 0
    assert rows[("run", "asd2")]["point"]["rounding"] == "gptq+bias"  # asd compile's default
    # The same figures as the single command (asd eval mnist_lenet --limit 20).
    from asd import datasets, evaluate
    from asd_cli.evaluate import resolve_model

    d = datasets.load("mnist5k")
    direct = evaluate.evaluate(resolve_model("mnist_lenet")[0], d.x_test[:20], d.y_test[:20],
                               ["asd2", "int8"])
    for r in direct[1:]:
        got = rows[("eval", r.scheme)]["result"]
        assert (got["top1"], got["sqnr_db"], got["bits_per_weight"]) == (
            r.top1, r.sqnr_db, r.bits_per_weight)
    # And the run point as asd compile --calib (its default rounding) + asd run.
    from asd_cli.sweep.tasks import calibration
    from contract.config import AccelConfig
    from programs import manifest, runtime

    calib = calibration({"x": d.x_test[:20]}, {"x": d.x_train}, 8, 0)
    comp = manifest.compile_model(resolve_model("mnist_lenet")[0], AccelConfig(), calib,
                                  rounding="gptq+bias")
    rep = runtime.run(comp, d.x_test[:20])
    got = rows[("run", "asd2")]["result"]
    assert (got["top1"], got["cycles_per_image"]) == (
        100.0 * float(np.mean(rep.output.argmax(axis=1) == d.y_test[:20])), rep.cycles_per_image)

    again, _ = _sweep(tmp_path, TINY, scheduler)
    assert (again.skipped, again.executed) == (4, 0)
    retried, _ = _sweep(tmp_path, TINY, scheduler, retry_failed=True)
    assert (retried.skipped, retried.executed, retried.failed) == (3, 1, 1)
    assert len(_rows(db)) == 4
    assert main(["sweep", "--report", str(db), "-o", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "mnist_lenet/asd2" in page and "QuantizeError" in page
    assert (tmp_path / "rep" / "pareto0.png").stat().st_size > 1000
    assert len(json.loads((tmp_path / "rep" / "results.json").read_text())) == 4


def test_a_point_past_its_timeout_is_stopped_and_retried(tmp_path: Path,
                                                         scheduler: str) -> None:
    # Far below a Python start-up: every eval point is stopped and recorded as failed.
    text = TINY.replace("[measures.run]\ncalib = 8\n", "").replace(
        "[measures.eval]\n", "[measures.eval]\ntimeout = 0.001\n")
    out, db = _sweep(tmp_path, text, scheduler)
    assert (out.executed, out.ok, out.failed) == (2, 0, 2)
    for r in _rows(db):
        assert r["status"] == "failed" and "measures.eval.timeout" in r["error"], r
        assert r["seconds"] < 60
    # The timeout is not part of a point's key: a longer one retries the same two points.
    retried, _ = _sweep(tmp_path, TINY.replace("[measures.run]\ncalib = 8\n", ""), scheduler,
                        retry_failed=True)
    assert (retried.skipped, retried.executed, retried.ok) == (0, 2, 2)
    rows = _rows(db)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)


def test_interrupted_sweep_resumes(tmp_path: Path, scheduler: str) -> None:
    text = TINY.replace("[measures.run]\ncalib = 8\n", "")

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path, text, scheduler, on_result=interrupt)
    assert len(_rows(tmp_path / "s.sqlite")) == 1  # the first result was stored before it
    out, db = _sweep(tmp_path, text, scheduler)
    assert (out.skipped, out.executed, out.ok) == (1, 1, 1)
    keys = [r["key"] for r in _rows(db)]
    assert len(keys) == len(set(keys)) == 2


def test_cli_json_and_dry_run(tmp_path: Path, scheduler: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "one.toml"
    p.write_text('[axes]\nmodels = ["mnist_lenet"]\nlimit = 10\nschemes = ["float"]\n'
                 "[measures.eval]\n")
    db = str(tmp_path / "one.sqlite")
    assert main(["sweep", str(p), "--db", db, "--dry-run"]) == 0
    assert "1 points, 1 to run" in capsys.readouterr().out
    assert main(["sweep", str(p), "--db", db, "--scheduler", scheduler, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["executed"] == 1
    assert doc["results"][0]["result"]["top1"] == doc["results"][0]["result"]["float_top1"]


@pytest.mark.parametrize(("text", "where"), [
    ('[axes]\nmodels = ["mnist_lenet"]\nschemes = ["asd9"]\n[measures.eval]\n',
     ":3: axes.schemes[0]: unknown scheme 'asd9'"),
    ('[axes]\nlanes = [4]\n[measures.hwreport]\n', ":2: axes.lanes: unknown axis"),
    ('[axes]\nconfigs = [{lanes = 99}]\n[measures.hwreport]\n',
     ":2: axes.configs[0]: config field 'lanes' = 99"),
    ('[axes]\nmodels = ["mnist_lenet"]\n[measures.eval]\nscale = "abs"\n',
     ":4: measures.eval.scale: use mse"),
    ('[axes]\nmodels = ["mnist_lenet"]\n[measures.synth]\n', ":3: measures.synth: unknown"),
    ('[axes]\nroundings = ["up"]\nmodels = ["mnist_lenet"]\n[measures.eval]\n',
     ":2: axes.roundings[0]: unknown value 'up'"),
    ('[axes]\nmodels = ["mnist_lenet"]\n[measures.run]\ntimeout = -5\n',
     ":4: measures.run.timeout: seconds, 0 for none"),
    ('[axes]\n[measures.hwreport]\ntimeout = 0\n',
     ":3: measures.hwreport.timeout: seconds, at least 1"),
])
def test_bad_spec_is_one_line_naming_the_key(tmp_path: Path, text: str, where: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    assert main(["sweep", str(p), "--db", str(tmp_path / "x.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and where in err, err
    assert not (tmp_path / "x.sqlite").exists()


def test_points_follow_the_axes_each_measure_reads(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[axes]\nmodels = ["mnist_lenet"]\nschemes = ["float", "asd2"]\n'
                 'roundings = ["nearest", "gptq"]\nconfigs = [{}, {lanes = 4}]\n'
                 'pe = ["shiftadd", "multiplier"]\nmodes = ["pipelined", "tree"]\n'
                 "[measures.eval]\n[measures.run]\n[measures.hwreport]\n")
    pts = spec.points(spec.load(p))
    count = {m: sum(q["measure"] == m for q in pts) for m in ("eval", "run", "hwreport")}
    # eval: float once, asd2 x 2 roundings; run: asd2 x 2 roundings x 2 configs x 2 PE kinds;
    # hwreport: 8.
    assert count == {"eval": 3, "run": 8, "hwreport": 8}


def test_each_measure_defaults_to_its_commands_rounding(tmp_path: Path) -> None:
    """No roundings axis: eval rounds as ``asd eval`` does (nearest), run as ``asd compile``
    with calibration images does (gptq+bias); a measure's own axis overrides it."""
    p = tmp_path / "s.toml"
    p.write_text('[axes]\nmodels = ["mnist_lenet"]\nschemes = ["asd2"]\n'
                 "[measures.eval]\n[measures.run]\n")
    got = {q["measure"]: q["rounding"] for q in spec.points(spec.load(p))}
    assert got == {"eval": "nearest", "run": "gptq+bias"}
    p.write_text(p.read_text() + 'roundings = ["nearest", "bias"]\n')
    pts = spec.points(spec.load(p))
    assert sorted(q["rounding"] for q in pts if q["measure"] == "run") == ["bias", "nearest"]
    assert [q["rounding"] for q in pts if q["measure"] == "eval"] == ["nearest"]


def test_foreign_or_corrupt_database_is_refused_untouched(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    for f in (junk, other):
        before = f.read_bytes()
        with pytest.raises(StoreError, match="not a sweep database"):
            Store(f)
        assert f.read_bytes() == before


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(Path(sys.executable).parent / "dask"), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _scheduler_address(path: Path, timeout: float) -> str:
    """The address in ``dask scheduler``'s file once the file holds all of it: the scheduler
    creates the file before it writes it, so an existing file may still be empty (CI read
    '' once)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(json.loads(path.read_text())["address"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_scheduler_address_waits_for_the_whole_file(tmp_path: Path) -> None:
    f = tmp_path / "scheduler.json"
    f.write_text("")
    with pytest.raises(json.JSONDecodeError):
        _scheduler_address(f, timeout=0.2)
    f.write_text('{"address": "tcp://127.0.0.1:1"}')
    assert _scheduler_address(f, timeout=0.2) == "tcp://127.0.0.1:1"


def test_sweep_survives_a_killed_worker(tmp_path: Path) -> None:
    """``dask scheduler`` and two ``dask worker`` processes on loopback; one worker is killed
    when the first result arrives; every point is still stored exactly once."""
    sched_file = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--dashboard-address", "127.0.0.1:0",
                     "--scheduler-file", str(sched_file)])]
    try:
        address = _scheduler_address(sched_file, timeout=30)
        assert address.startswith("tcp://127.0.0.1:")
        procs += [_start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                          "--no-nanny", "--no-dashboard",
                          "--dashboard-address", "127.0.0.1:0"]) for _ in range(2)]
        with distributed.Client(address, timeout="20s") as c:
            c.wait_for_workers(2, timeout=30)
        import psutil

        listening = {c.laddr.ip for p in procs for c in psutil.Process(p.pid).net_connections()
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}, listening

        def kill_one(t: Any, rec: Any, out: runner.Outcome) -> None:
            if out.executed == 1:
                procs[1].send_signal(signal.SIGKILL)

        text = TINY.replace('"asd2", "int8"', '"asd2", "int8", "int6", "pot"').replace(
            "[measures.run]\ncalib = 8\n", "")
        out, db = _sweep(tmp_path, text, address, on_result=kill_one)
        assert procs[1].wait(timeout=10) == -signal.SIGKILL
        rows = _rows(db)
        assert (out.points, out.executed, len(rows)) == (4, 4, 4)
        assert len({r["key"] for r in rows}) == 4
        assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)


# The CLI in a child process that sends itself SIGINT once its first result is stored: the
# signal lands at a known point, where polling the database from outside raced the sweep.
# SIGINT's default handler is put back first: a child inherits an ignored SIGINT (a suite
# started in the background, as `nohup ... &` does) and Python then installs none, so the
# sweep ran to the end and exited 0.
_INTERRUPT_AFTER_FIRST = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from asd_cli.main import main
from asd_cli.sweep import runner
execute = runner.execute
def first_then_sigint(*args, on_result=None, **kw):
    def step(t, rec, out):
        if on_result:
            on_result(t, rec, out)
        if out.executed == 1:
            os.kill(os.getpid(), signal.SIGINT)
    return execute(*args, on_result=step, **kw)
runner.execute = first_then_sigint
sys.exit(main(sys.argv[1:]))
"""


def test_sigint_on_the_embedded_cluster_then_resume(tmp_path: Path, scheduler: str) -> None:
    """``asd sweep`` with its own LocalCluster, interrupted by SIGINT once a result is stored:
    exit 130, the stored result kept; the rerun computes only the rest."""
    total = 8
    text = TINY.replace('"asd2", "int8"', '"asd2", "int8", "int6", "pot"').replace(
        "[measures.run]\ncalib = 8\n", "").replace("limit = 20", "limit = 20\nshards = 2")
    (tmp_path / "s.toml").write_text(text)
    db = tmp_path / "s.sqlite"
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_AFTER_FIRST, "sweep",
                           str(tmp_path / "s.toml"), "--workers", "1", "--db", str(db)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode == 130, err
    assert "asd sweep: interrupted" in err
    stored = len(_rows(db))
    assert 1 <= stored < total
    out, _ = _sweep(tmp_path, text, scheduler)
    assert (out.points, out.skipped, out.executed) == (total, stored, total - stored)
    assert len(_rows(db)) == total


def test_benchmark_specs_parse() -> None:
    root = Path(__file__).resolve().parent.parent
    pts = spec.points(spec.load(root / "benchmarks" / "sweeps" / "accuracy.toml"))
    assert len(pts) == 6 * 8 + 6
    # The hardware studies (tests/test_sweep_hwreport.py checks them against hwreport.json).
    hw = [q for p in sorted((root / "benchmarks" / "sweeps" / "hwreport").glob("*.toml"))
          for q in spec.points(spec.load(p))]
    assert len(hw) == 244 and {q["measure"] for q in hw} == {"hwreport"}


@pytest.mark.synth
def test_hwreport_measure_on_the_smallest_design(tmp_path: Path, scheduler: str) -> None:
    """One PE array (1 lane, 4-bit activations) through Yosys, nextpnr and OpenSTA on a
    worker: about 10 s."""
    out, db = _sweep(tmp_path, '[axes]\nconfigs = [{lanes = 1, act_bits = 4}]\n'
                               '[measures.hwreport]\nseeds = 1\nmacs = 200\ntimeout = 300\n',
                     scheduler)
    (row,) = _rows(db)
    assert row["status"] == "ok", row["error"]
    assert row["result"]["lut4"] > 0 and row["result"]["asic_crit_ns"] > 0
    # Its scratch (netlists, waveforms) is gone once the figures are in.
    assert (tmp_path / "work").is_dir() and not (tmp_path / "work" / row["key"][:16]).exists()


def test_pareto_front() -> None:
    xy = [(8.0, 90.0), (4.0, 85.0), (4.0, 80.0), (2.0, 60.0), (8.0, 95.0), (6.0, 84.0)]
    assert report.pareto(xy, higher_is_better=True) == [3, 1, 4]
    assert report.pareto([(1.0, 5.0), (2.0, 3.0), (3.0, 4.0)], higher_is_better=False) == [0, 1]


def test_the_report_plots_energy_per_inference_per_network(tmp_path: Path) -> None:
    """hwreport points costed on networks get one energy-per-inference plot per network;
    results.json keeps the rows as stored."""
    def row(pe: str, area: float, uj: dict[str, float]) -> dict[str, object]:
        nets = [{"name": n, "cycles": 10, "inference": {"energy_uj": e}} for n, e in uj.items()]
        return {"measure": "hwreport", "status": "ok", "error": None, "point": {"pe": pe},
                "result": {"asic_area": area, "asic_crit_ns": 2.0, "networks": nets}}

    rows = [row("shiftadd", 100.0, {"netA": 5.0, "netB": 9.0}),
            row("int8_booth", 140.0, {"netA": 7.0}), row("multiplier", 90.0, {"netA": 6.0})]
    page = report.write(rows, tmp_path, "t", {"hwreport": ["asic_area"]}).read_text()
    assert "energy per inference of netA" in page and "energy per inference of netB" in page
    n_fixed = len(report.PLOTS)
    for n in (n_fixed, n_fixed + 1):
        assert (tmp_path / f"pareto{n}.png").stat().st_size > 1000
    stored = json.loads((tmp_path / "results.json").read_text())
    assert all(set(r["result"]) == {"asic_area", "asic_crit_ns", "networks"} for r in stored)


def test_a_measure_overrides_an_axis(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[axes]\nmodels = ["mnist_lenet"]\nschemes = ["float", "int8", "asd2"]\n'
                 '[measures.eval]\n[measures.run]\nschemes = ["asd2", {name = "asd", '
                 'conversion = "csd"}]\nconfigs = [{}, {lanes = 4}]\n')
    pts = spec.points(spec.load(p))
    ev = [q["scheme"]["name"] for q in pts if q["measure"] == "eval"]
    run = [(q["scheme"].get("conversion"), q["config"]) for q in pts if q["measure"] == "run"]
    assert ev == ["float", "int8", "asd2"] and len(run) == 4
    p.write_text('[axes]\nmodels = ["mnist_lenet"]\n[measures.eval]\n\n'
                 '[measures.run]\nschemes = ["asd2", "int9"]\n')
    with pytest.raises(spec.SpecError, match=r":6: measures.run.schemes\[1\]: unknown scheme"):
        spec.load(p)


def test_the_documented_spec_is_valid(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "sweep.md").read_text()
    (tmp_path / "doc.toml").write_text(doc.split("```toml\n")[1].split("```")[0])
    assert len(spec.points(spec.load(tmp_path / "doc.toml"))) == 20 + 32 + 8


def test_scaling_benchmark_runs(tmp_path: Path) -> None:
    from benchmarks import bench_sweep

    out = tmp_path / "sweep.json"
    assert bench_sweep.main(["--measure", "eval", "--limit", "10", "--schemes", "float",
                             "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["points"] == 1 and res["measure"] == "eval"
    assert 0.0 <= res["scheduling_share_1_worker"] < 1.0 and res["speedup_2_vs_1_workers"] > 0
    # One point: no second worker can help, whatever the machine.
    assert res["speedup_2_workers_bound"] == 1.0 and res["speedup_2_plain_processes_vs_serial"] > 0


def test_each_input_is_scattered_once(tmp_path: Path) -> None:
    """Two shards and three schemes: one model, one calibration pool and two shards to send,
    and a key per point that changes with the images."""
    p = tmp_path / "s.toml"
    p.write_text(TINY.replace("limit = 20", "limit = 20\nshards = 2"))
    sp = spec.load(p)
    tasks, inputs = runner.plan(sp, spec.points(sp), "1")
    assert sorted(i.split("-")[0] for i in inputs) == ["data", "data", "model", "pool"]
    assert len({t.key for t in tasks}) == len(tasks) == 8
    p.write_text(TINY.replace("limit = 20", "limit = 21\nshards = 2"))
    sp = spec.load(p)
    assert not {t.key for t in runner.plan(sp, spec.points(sp), "1")[0]} & {t.key for t in tasks}

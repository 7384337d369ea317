"""The client side of a sweep: inputs loaded and hashed once, task keys, the Dask cluster
(embedded ``LocalCluster`` or an existing scheduler), results written as they arrive."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asd_cli.sweep.spec import Spec
from asd_cli.sweep.store import Store


def project_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("asd-accel")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Task:
    key: str
    point: dict[str, Any]
    options: dict[str, Any]
    model: str | None  # ids in the inputs table, each scattered once
    data: str | None   # the shard's test images and labels
    pool: str | None   # the dataset's training split: calibration images are drawn from it


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _model(name: str, spec_dir: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    from asd_cli.evaluate import resolve_model

    local = spec_dir / name
    path, meta = resolve_model(str(local) if local.suffix == ".onnx" and local.exists()
                               else name)
    blob = path.read_bytes()
    sha = _sha(blob)
    return sha, {"name": path.stem, "sha": sha, "bytes": blob}, meta


def _shards(name: str, limit: int | None,
            shards: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The training split (the calibration pool) and the test images split in shards."""
    from asd import datasets
    from asd_cli.main import UserError

    kw = {"limit": limit} if name.startswith("imagefolder:") and limit else {}
    try:
        d = datasets.load(name, **kw)
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        raise UserError(f"dataset {name}: {exc}") from None
    x, y = d.x_test[:limit] if limit else d.x_test, d.y_test[:limit] if limit else d.y_test
    pool = np.ascontiguousarray(d.x_train)
    pool_blob = {"name": name, "x": pool, "sha": _sha(pool.tobytes())}
    out = []
    for xs, ys in zip(np.array_split(x, shards), np.array_split(y, shards), strict=True):
        xs, ys = np.ascontiguousarray(xs), np.ascontiguousarray(ys)
        out.append({"name": name, "x": xs, "y": ys, "sha": _sha(xs.tobytes(), ys.tobytes())})
    return pool_blob, out


def plan(spec: Spec, points: list[dict[str, Any]],
         version: str) -> tuple[list[Task], dict[str, dict[str, Any]]]:
    """Every point as a task with its key, and the inputs (models, dataset shards) by id.
    The key hashes the point, the measure's options, the version and the inputs' contents."""
    inputs: dict[str, dict[str, Any]] = {}
    models: dict[str, tuple[str, dict[str, Any]]] = {}
    shard_ids: dict[tuple[str, int | None], tuple[str, list[str]]] = {}
    tasks = []
    for pt in points:
        model_id = data_id = pool_id = None
        pt = dict(pt)
        if pt["measure"] in ("eval", "run"):
            if pt["model"] not in models:
                sha, blob, meta = _model(pt["model"], spec.path.parent)
                models[pt["model"]] = (sha, meta)
                inputs[f"model-{sha}"] = blob
            sha, meta = models[pt["model"]]
            model_id = f"model-{sha}"
            ds = pt["dataset"] or meta.get("dataset")
            if not ds:
                from asd_cli.main import UserError

                raise UserError(f"{spec.path}: axes.datasets: model {pt['model']} names no "
                                f"dataset in a JSON sidecar; give axes.datasets")
            pt["dataset"] = ds
            if (ds, spec.limit) not in shard_ids:
                pool, blobs = _shards(ds, spec.limit, spec.shards)
                inputs[f"pool-{pool['sha']}"] = pool
                for blob in blobs:
                    inputs[f"data-{blob['sha']}"] = blob
                shard_ids[(ds, spec.limit)] = (f"pool-{pool['sha']}",
                                               [f"data-{b['sha']}" for b in blobs])
            pool_id, ids = shard_ids[(ds, spec.limit)]
            data_id = ids[pt["shard"]]
        opts = spec.measures[pt["measure"]]
        # A timeout changes no figure: rerunning with a longer one reuses the points done.
        figures = {k: v for k, v in opts.items() if k != "timeout"}
        key = _sha(json.dumps({"point": pt, "options": figures, "version": version,
                               "model": model_id, "data": data_id, "pool": pool_id},
                              sort_keys=True).encode())
        tasks.append(Task(key, pt, opts, model_id, data_id, pool_id))
    return tasks, inputs


@dataclass
class Outcome:
    points: int
    skipped: int = 0
    executed: int = 0
    ok: int = 0
    failed: int = 0
    workers: int = 0
    slots: int = 0    # worker threads: tasks that can run at once
    queued: int = 0   # submitted, not yet finished
    dashboard: str | None = None  # the cluster's dashboard, where it has one

    @property
    def running(self) -> int:
        return min(self.slots, self.queued)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("slots", "queued", "dashboard")}


def pending(tasks: list[Task], store: Store, retry_failed: bool) -> list[Task]:
    """The tasks still to run: not recorded, or recorded as failed and ``retry_failed``."""
    done = store.status()
    out, seen = [], set()
    for t in tasks:
        st = done.get(t.key)
        if t.key not in seen and (st is None or (st == "failed" and retry_failed)):
            out.append(t)
            seen.add(t.key)
    return out


def dashboard_missing() -> str | None:
    """Why the embedded cluster cannot serve Dask's dashboard (None: it can)."""
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        return ("Dask's dashboard needs bokeh, which is not installed (pip install -e "
                "'.[sweep]' installs it)")
    return None


def _dashboard_link(client: Any) -> str | None:
    try:
        return str(client.dashboard_link) if client.dashboard_link else None
    except (KeyError, AttributeError):  # a scheduler started without a dashboard
        return None


def _cluster(scheduler: str | None, workers: int | None, dashboard: str | None = None
             ) -> tuple[Any, Any]:
    """The client, and the embedded cluster it owns (None for an existing one); the embedded
    cluster serves the dashboard at ``dashboard`` only when asked (none by default)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return None, Client(scheduler, timeout="20s")
        except OSError as exc:
            from asd_cli.main import UserError

            raise UserError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, host="127.0.0.1", dashboard_address=dashboard,
                           scheduler_port=0, silence_logs=40)
    return cluster, Client(cluster)


def execute(tasks: list[Task], inputs: dict[str, dict[str, Any]], store: Store, version: str,
            *, scheduler: str | None = None, workers: int | None = None,
            retry_failed: bool = False, workdir: str | Path = "out/sweep/work",
            on_result: Callable[[Task, dict[str, Any], Outcome], None] | None = None,
            dashboard: str | None = None,
            on_start: Callable[[Outcome], None] | None = None) -> Outcome:
    """Run what is not done yet on Dask; each result is written to ``store`` as it arrives.
    ``on_result`` sees every record after it is stored (progress; a test may interrupt);
    ``on_start`` sees the outcome once the cluster is up (its workers and dashboard link).
    ``dashboard``: the embedded cluster's dashboard address (e.g. ``127.0.0.1:8787``)."""
    from distributed import as_completed

    from asd_cli.sweep import tasks as task_fns

    todo = pending(tasks, store, retry_failed)
    out = Outcome(points=len({t.key for t in tasks}))
    out.skipped = out.points - len(todo)
    if not todo:
        return out
    cluster, client = _cluster(scheduler, workers, dashboard)
    futures: list[Any] = []
    try:
        info = client.scheduler_info().get("workers", {})
        out.workers = len(info)
        out.slots = sum(int(w.get("nthreads", 1)) for w in info.values())
        out.queued = len(todo)
        if dashboard or scheduler:
            out.dashboard = _dashboard_link(client)
        if on_start:
            on_start(out)
        needed = sorted({i for t in todo for i in (t.model, t.data, t.pool) if i})
        # Each model and shard goes to every worker once (not once per task); a copy on
        # every worker also survives the loss of one.
        scattered = (client.scatter([inputs[i] for i in needed], hash=False, broadcast=True)
                     if needed else [])
        refs = dict(zip(needed, scattered, strict=True))
        wd = str(Path(workdir).resolve())
        by_key = {}
        for t in todo:
            f = client.submit(task_fns.run_point, t.point, t.options, refs.get(t.model or ""),
                              refs.get(t.data or ""), refs.get(t.pool or ""), wd, t.key,
                              pure=False,
                              key=f"asd-sweep-{t.key[:24]}")
            by_key[f.key] = t
            futures.append(f)
        for f in as_completed(futures):
            t = by_key[f.key]
            try:
                rec = f.result()
            except Exception as exc:  # the task never returned: its worker died, KilledWorker
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            store.put(t.key, t.point, rec, version)
            out.executed += 1
            out.queued -= 1
            out.ok += rec["status"] == "ok"
            out.failed += rec["status"] != "ok"
            if on_result:
                on_result(t, rec, out)
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
    return out

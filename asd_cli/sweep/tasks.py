"""The work of one point, run on a Dask worker: the figures of ``asd eval``, of ``asd compile``
+ ``asd run`` (emulator), or of ``asd hwreport`` for one design.

Each function takes the point, the measure's options and the inputs the client scattered
once (a model as bytes, a dataset shard as arrays), and returns a JSON-able dictionary of
figures.  :func:`run_point` wraps them: it never raises for a deliberate error
(:class:`contract.errors.AsdError`), a bug in one point or a point past its timeout; it
returns a record with status ``failed`` and the error's one line, so one bad point does not
stop the sweep.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from contract.errors import AsdError


def model_file(model: dict[str, Any]) -> Path:
    """The scattered model's bytes as a file on this worker, written once per content hash."""
    d = Path(tempfile.gettempdir()) / f"asd-sweep-{os.getuid()}"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{model['sha'][:16]}.onnx"
    if not p.exists() or hashlib.sha256(p.read_bytes()).hexdigest() != model["sha"]:
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(model["bytes"])
        tmp.replace(p)
    return p


def calibration(data: dict[str, Any], pool: dict[str, Any], n: int, seed: int) -> np.ndarray:
    """``n`` calibration images drawn by ``seed`` from the training split (or, without one,
    the first ``n`` test images, as ``asd eval`` does)."""
    xs = pool["x"]
    if not len(xs):
        return np.asarray(data["x"][:n])
    idx = np.random.default_rng(seed).choice(len(xs), min(n, len(xs)), replace=False)
    return np.asarray(xs[np.sort(idx)])


def measure_eval(point: dict[str, Any], opts: dict[str, Any], model: dict[str, Any],
                 data: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
    from asd import evaluate

    name, rnd = point["scheme"]["name"], point["rounding"]
    calib = calibration(data, pool, opts["calib"], point["seed"]) if rnd != "nearest" else None
    res = evaluate.evaluate(model_file(model), data["x"], data["y"], [name],
                            granularity=opts["granularity"], scale=opts["scale"],
                            roundings=[rnd], calib_x=calib)
    out = res[-1].as_dict()
    out["float_top1"] = res[0].top1
    out["images"] = int(len(data["x"]))
    return out


def _config(point: dict[str, Any]) -> Any:
    from contract.config import AccelConfig

    return AccelConfig.from_dict({**AccelConfig().to_dict(), **point["config"],
                                  "pe": point["pe"]})


def measure_run(point: dict[str, Any], opts: dict[str, Any], model: dict[str, Any],
                data: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
    from programs import runtime
    from programs.manifest import compile_model

    scheme = dict(point["scheme"])
    name = scheme.pop("name")
    calib = calibration(data, pool, opts["calib"], point["seed"])
    t0 = time.perf_counter()
    comp = compile_model(str(model_file(model)), _config(point), calib, scheme=name,
                         scheme_options=scheme, rounding=point["rounding"])
    t1 = time.perf_counter()
    rep = runtime.run(comp, data["x"], batched=True)
    y = np.asarray(data["y"])
    pred = rep.output.reshape(len(y), -1).argmax(axis=1)
    return {"top1": float(100.0 * np.mean(pred == y)), "images": int(len(y)),
            "cycles_per_image": rep.cycles_per_image, **comp.totals(),
            "compile_seconds": t1 - t0, "run_seconds": rep.seconds,
            "first_int_divergence": rep.first_int_divergence}


# Networks compiled on this worker, by configuration and weight format
# (asd_cli.hwreport.networks_compiled_once): the points of one configuration in several modes
# and kinds compile them once per worker, not once per point.
_NETWORKS: dict[str, Any] = {}


def measure_hwreport(point: dict[str, Any], opts: dict[str, Any], workdir: str,
                     key: str) -> dict[str, Any]:
    """One design of ``asd hwreport`` (``point["pe"]`` names a kind of
    :data:`accel.kinds.KINDS`: its PE, weight format and product form): the figures of
    :func:`accel.hwreport.measure`, or with ``cells_only`` those of
    :func:`accel.hwreport.measure_cells`; ``layer_macs`` (the length of the simulated
    stream) and, for a PE array with idle-cycle figures and ``networks``, each network's
    cycles compiled for this design's configuration and the energy per inference and images per
    second they give on it (:func:`accel.inference.per_inference`)."""
    from accel import asic, hwreport, inference, synth
    from accel.kinds import KINDS
    from asd_cli.hwreport import networks_compiled_once, shipped_stream

    synth.require("yosys", "iverilog", *(() if opts["cells_only"] else ("nextpnr-ice40",)))
    asic.require()
    kind = KINDS[point["pe"]]
    cfg = kind.config(_config({**point, "pe": kind.pe}))
    stream = shipped_stream(cfg, opts["macs"]) if opts["target"] == "pe" else None
    where = Path(workdir) / key[:16]
    # Every tool run keeps its own timeout (opts["timeout"] seconds), on this worker.
    if opts["cells_only"]:
        res = hwreport.measure_cells(cfg, opts["target"], where, stream=stream,
                                     mode=point["mode"], timeout=opts["timeout"], form=kind.form)
    else:
        res = hwreport.measure(cfg, opts["target"], where, seeds=opts["seeds"], stream=stream,
                               mode=point["mode"], timeout=opts["timeout"], form=kind.form)
    if stream is not None:
        res["layer_macs"] = int(len(stream[0]))
        if opts["networks"] and res.get("asic_idle_pj_per_cycle") is not None:
            nets = networks_compiled_once(list(opts["networks"]), lambda s: None, _NETWORKS)
            # Each network's cycles, and its energy per inference on this design.
            res["networks"] = [{**n.to_dict(), "inference": inference.per_inference(
                res, n, cfg, point["mode"])} for n in nets(cfg)]
    # The figures are the result; the netlists, waveforms and logs (about 150 MB a PE
    # array) would fill a disk over a sweep: kept only for a point that failed (raised).
    shutil.rmtree(where, ignore_errors=True)
    return res


def measure_here(point: dict[str, Any], opts: dict[str, Any], model: dict[str, Any] | None,
                 data: dict[str, Any] | None, pool: dict[str, Any] | None, workdir: str,
                 key: str) -> dict[str, Any]:
    """One point measured in this process: ``{"status": "ok", "result"}`` or ``{"status":
    "failed", "error"}``."""
    try:
        m = point["measure"]
        if m == "eval":
            assert model is not None and data is not None and pool is not None
            return {"status": "ok", "result": measure_eval(point, opts, model, data, pool)}
        if m == "run":
            assert model is not None and data is not None and pool is not None
            return {"status": "ok", "result": measure_run(point, opts, model, data, pool)}
        return {"status": "ok", "result": measure_hwreport(point, opts, workdir, key)}
    except AsdError as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a bug in one point: keep its place in the traceback
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc} "
                                             f"({Path(where.filename).name}:{where.lineno})"}


def run_point(point: dict[str, Any], opts: dict[str, Any], model: dict[str, Any] | None,
              data: dict[str, Any] | None, pool: dict[str, Any] | None, workdir: str,
              key: str) -> dict[str, Any]:
    """One point's figures as a record: ``{"status", "result" | "error", "seconds",
    "worker"}``.  An eval or run point with a ``timeout`` runs in a child process that is
    stopped at the timeout (:mod:`asd_cli.sweep.child`); hwreport's tools time out each run."""
    from asd_cli.sweep import child

    t0 = time.perf_counter()
    job: dict[str, Any] = {"point": point, "opts": opts, "model": model, "data": data,
                           "pool": pool, "workdir": workdir, "key": key}
    timeout = float(opts.get("timeout") or 0) if point["measure"] in ("eval", "run") else 0.0
    rec = (child.run(f"{__name__}:measure_here", job, timeout) if timeout > 0
           else measure_here(**job))
    rec["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    rec["seconds"] = time.perf_counter() - t0
    return rec

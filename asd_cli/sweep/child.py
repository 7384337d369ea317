"""One eval or run point in a process of its own, so that its measure's ``timeout`` can stop
it: Dask runs a task in a worker thread, and a Python thread cannot be interrupted.  The
worker pickles the function to call (``module:name``, so this module imports none of the
sweep's) and its arguments to a file, starts ``python -m asd_cli.sweep.child IN OUT`` and
reads the record back from ``OUT``; past the timeout it kills the process and
records the point as failed (retried with ``--retry-failed``).  A crash of the point (out of
memory, a segfault in a native library) then costs this process, never the worker."""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]


def run(target: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The record ``target(**job)`` returns (``target`` as ``module:name``, e.g.
    ``asd_cli.sweep.tasks:measure_here``) run in a child process, or a failed record when it
    passes ``timeout`` seconds or dies."""
    with tempfile.TemporaryDirectory(prefix="asd-point-") as d:
        src, dst = Path(d) / "job.pickle", Path(d) / "record.pickle"
        with open(src, "wb") as f:
            pickle.dump((target, job), f, protocol=pickle.HIGHEST_PROTOCOL)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.run([sys.executable, "-m", "asd_cli.sweep.child", str(src),
                                   str(dst)], env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            measure = job["point"]["measure"]
            return {"status": "failed",
                    "error": f"TimeoutError: the point ran past its {timeout:g} s "
                             f"(measures.{measure}.timeout) and was stopped"}
        if not dst.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"status": "failed",
                    "error": f"ChildProcessError: the point's process ended with code "
                             f"{proc.returncode} and no record ({last})"}
        with open(dst, "rb") as f:
            rec: dict[str, Any] = pickle.load(f)
        return rec


def main(argv: list[str]) -> int:
    src, dst = Path(argv[0]), Path(argv[1])
    with open(src, "rb") as f:
        target, job = pickle.load(f)
    module, name = target.split(":")
    rec = getattr(importlib.import_module(module), name)(**job)
    tmp = dst.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(rec, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

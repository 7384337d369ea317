"""``asd sweep``: design-space sweeps as independent tasks on Dask distributed.

Modules (this package lives under ``asd_cli`` because its tasks join ``asd``, ``programs`` and
``accel``, which only the command layer may import together: DESIGN.md section 3):

- :mod:`.spec`     the TOML specification: validation (errors name line and key) and expansion
                   into points, per measure, over the axes that measure reads
- :mod:`.store`    the SQLite result store (WAL, one writer: the client), keyed by input hash
- :mod:`.tasks`    the work of one point, run on a worker (eval, compile + run, hwreport)
- :mod:`.runner`   the client: inputs hashed and scattered once, the cluster, results stored
                   as they finish
- :mod:`.command`  argument parsing, progress and printing

Dask is imported only when a sweep runs, so ``asd --help`` stays fast.
"""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from asd_cli.sweep.command import register as _register

    _register(sub)

"""One BLAS thread for small matrix products.

The quantizers' MSE search and the emulator's fast mode both run many small products; for
those, BLAS worker threads cost more than they give (waking them takes a scheduler slice on a
busy machine, and after a call they spin against the rest of the work).  Measured on loaded
2 cores: the MSE search 5-8x faster, the fast-mode products of benchmarks/bench_emulator.py
64 ms -> 11 ms.  Uses threadpoolctl when installed; results never depend on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_BLAS: list[list[Any]] = []  # threadpoolctl's BLAS library controllers, found on first use


def _blas_libs() -> list[Any]:
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append([lib for lib in ThreadpoolController().lib_controllers
                          if lib.user_api == "blas"])
        except Exception:  # pragma: no cover - threadpoolctl missing or unusable
            _BLAS.append([])
    return _BLAS[0]


# How deep each thread is inside one_blas_thread blocks.
_DEPTH = threading.local()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block (process-wide), restored after.  Inside
    another block of the same thread it costs a counter (the fast emulator's batches each
    enter one: asking BLAS its thread count took 30 us a batch).  OpenBLAS takes a new count
    only from the thread that loaded it: other threads' blocks change nothing there."""
    depth = getattr(_DEPTH, "n", 0)
    if depth:
        _DEPTH.n = depth + 1
        try:
            yield
        finally:
            _DEPTH.n = depth
        return
    libs = _blas_libs()
    before = [lib.get_num_threads() for lib in libs]
    for lib, n in zip(libs, before, strict=True):
        if n and n > 1:
            lib.set_num_threads(1)
    _DEPTH.n = 1
    try:
        yield
    finally:
        _DEPTH.n = 0
        for lib, n in zip(libs, before, strict=True):
            if n and n > 1:
                lib.set_num_threads(n)


def ort_threads() -> int:
    """onnxruntime's intra-op thread count: ``OMP_NUM_THREADS`` when set (0 = its default, one
    per core).  onnxruntime ignores that variable on its own, so a Dask worker (which sets it
    to its share of the cores) would otherwise start a thread per core in every worker."""
    import os

    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0

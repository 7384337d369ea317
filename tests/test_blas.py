"""contract.blas: one BLAS thread inside the blocks, the machine's count back after them."""

from __future__ import annotations

import numpy as np
import pytest

from contract import blas


def _threads() -> list[int]:
    return [lib.get_num_threads() for lib in blas._blas_libs()]


def test_nested_blocks_restore_the_count_only_at_the_outermost_end(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    libs = blas._blas_libs()
    if not libs:
        pytest.fail("threadpoolctl finds no BLAS: the suite's environment lacks it")
    before = _threads()
    asked: list[int] = []
    for lib in libs:
        lib.set_num_threads(2)
        get = lib.get_num_threads
        monkeypatch.setattr(lib, "get_num_threads", lambda get=get: asked.append(1) or get())
    try:
        with blas.one_blas_thread():
            assert _threads() == [1] * len(libs)
            asked.clear()
            for _ in range(3):
                with blas.one_blas_thread():
                    assert _threads() == [1] * len(libs)
                assert _threads() == [1] * len(libs)  # a nested block's end restores nothing
            assert len(asked) == 6 * len(libs)  # only the test's own questions
        assert _threads() == [2] * len(libs)
    finally:
        monkeypatch.undo()
        for lib, n in zip(libs, before):
            lib.set_num_threads(n)

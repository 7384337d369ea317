"""The CLI's progress bars (tqdm): rate and time left on a terminal, quiet elsewhere."""

from __future__ import annotations

import io
import sys

import pytest

from asd_cli import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rate_and_time_left_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with progress.bar("eval", 10) as b:
        b.update(4)
        b.refresh()
        shown = term.getvalue()
    assert "eval" in shown and "4/10" in shown and "image/s" in shown and "<" in shown


def test_quiet_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with progress.bar("eval", 10) as b:
        b.update(10)
    assert capsys.readouterr().err == ""


def test_quiet_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with progress.bar("emulator", 3, quiet=True) as b:
        b.update(3)
    assert term.getvalue() == ""

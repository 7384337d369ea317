"""A small progress bar on stderr for long loops (quiet when stderr is not a terminal
unless forced), so that long runs show they are alive without cluttering logs."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, enabled: bool | None = None, width: int = 28):
        self.label, self.total, self.done, self.width = label, max(total, 1), 0, width
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            frac = self.done / self.total
            bar = "#" * int(frac * self.width)
            rate = self.done / max(now - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.label:<22} [{bar:<{self.width}}] {self.done}/{self.total}"
                             f" ({rate:,.0f}/s)")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done < self.total:
            sys.stderr.write("\n")

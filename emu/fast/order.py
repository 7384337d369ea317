"""The commit rule: a batch runs instruction-major over its instances, step mode runs
iteration-major, and the two give the same memory exactly when no address is written twice
and no address the batch reads is written.  Checked on the recorded address runs."""

from __future__ import annotations

import numpy as np

from .state import BatchBase


class OrderCheck(BatchBase):
    def memory_is_order_free(self) -> bool:
        """No address written twice and none both read and written: any order gives the same
        memory, so instruction-major order equals step mode's iteration-major order."""
        if not self.writes:
            return True
        counts = {k for _, k in self.writes}
        if len(counts) == 1:
            return self.runs_order_free(counts.pop())
        return self.bitmap_order_free()

    def bitmap_order_free(self) -> bool:
        """The check by a bitmap of AMEM: writes counted per address."""
        written = np.concatenate([(a[:, None] + np.arange(k)).reshape(-1)
                                  for a, k in self.writes])
        hits = np.bincount(written, minlength=self.c.amem_depth)
        if int(hits.max()) > 1:
            return False
        # Written addresses below each address: a run [a, a+k) is clean when the count
        # does not grow across it.
        below = np.concatenate([[0], np.cumsum(hits > 0)])
        for start, k, step in self.reads:
            if step == 1 or k == 1:
                if np.any(below[start + k] != below[start]):
                    return False
            elif np.any(hits[start[:, None] + np.arange(k) * step] > 0):
                return False
        return True

    def runs_order_free(self, kw: int) -> bool:
        """The same check when every write is a run of kw addresses (one store width): sorted
        run starts at least kw apart are disjoint, and a read run [a, a+k) meets a write run
        exactly when the last write run starting below a+k ends above a."""
        ws = np.sort(np.concatenate([a for a, _ in self.writes]))
        if np.any(np.diff(ws) < kw):
            return False
        for start, k, step in self.reads:
            if not (step == 1 or k == 1):
                start, k = (start[:, None] + np.arange(k) * step).reshape(-1), 1
            i = np.searchsorted(ws, start + k)
            if np.any((i > 0) & (ws[np.maximum(i - 1, 0)] + kw > start)):
                return False
        return True

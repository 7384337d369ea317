"""A batch's address work, recorded once and replayed on the next batch that starts alike.

Control flow, registers and addresses never depend on data (see emu.fast): a batch that
starts from one LOOP with one text, configuration, register file, iteration count and number
of tiles works out the same instance registers, checked addresses, product shapes, commit
verdict, store placement and counters every time.  A layer runs its tiles again for every
image (and every batch's check) with those all equal, so a batch that commits keeps what it
worked out from registers alone (a :class:`Recording`), and the next one with that start
takes the values back in the same order instead of working them out again (one image on
the serial emulator: ResNet-18 0.236 -> 0.202 s, SqueezeNet 1.1 0.130 -> 0.092 s).

Only the data (AMEM, A, W, P, products) is computed anew, and the data never steers which
values are taken: a value is taken at a site outside every branch on data, and each taken
value names its site, checked on replay.  Recorded arrays are read-only, so a consumer that
would write one in place fails on the first run rather than changing a later one.  A batch
that gives up leaves no recording.  Recordings are kept for the process, the least recently
used dropped past :data:`PLAN_BYTES`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

# Recorded at 224x224: ResNet-18 30 MB, SqueezeNet 1.1 53 MB (mostly instance registers).
PLAN_BYTES = 1 << 27

_PLANS: OrderedDict[Hashable, tuple[list[tuple[str, Any]], dict[str, Any], int]] = OrderedDict()
_BYTES = [0]
_LOCK = threading.Lock()


class Recording:
    """The values one batch works out from registers alone, in the order it takes them:
    recorded on a first run (``replaying`` False), taken back on the next."""

    __slots__ = ("values", "counters", "replaying", "_next")

    def __init__(self, values: list[tuple[str, Any]] | None = None,
                 counters: dict[str, Any] | None = None):
        self.replaying = values is not None
        self.values: list[tuple[str, Any]] = values if values is not None else []
        self.counters = counters
        self._next = 0

    def take(self, site: str, make: Callable[[], T]) -> T:
        """``make()``'s value at ``site``: made and kept when recording, taken when not."""
        if self.replaying:
            name, value = self.values[self._next]
            if name != site:
                raise AssertionError(f"a replayed batch took {site!r} where {name!r} was "
                                     f"recorded: address work depends on data")
            self._next += 1
            return value  # type: ignore[no-any-return]
        value = make()
        _freeze(value)
        self.values.append((site, value))
        return value


def _freeze(value: Any) -> None:
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, (tuple, list)):
        for v in value:
            _freeze(v)
    elif isinstance(value, dict):
        for v in value.values():
            _freeze(v)


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return 64 + sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return 64 + sum(_nbytes(v) for v in value.values())
    return 32


def start(key: Hashable) -> Recording:
    """The recording of a batch starting at ``key``: the kept one to replay, else a new one."""
    with _LOCK:
        hit = _PLANS.get(key)
        if hit is not None:
            _PLANS.move_to_end(key)
            return Recording(hit[0], hit[1])
    return Recording()


def keep(key: Hashable, rec: Recording, counters: dict[str, Any]) -> None:
    """Keep a committed batch's recording (and its counters) for the next start at ``key``."""
    if rec.replaying:
        return
    size = _nbytes(rec.values)
    kept = (rec.values, {k: dict(v) if isinstance(v, dict) else v for k, v in counters.items()},
            size)
    with _LOCK:
        old = _PLANS.pop(key, None)
        if old is not None:
            _BYTES[0] -= old[2]
        _PLANS[key] = kept
        _BYTES[0] += size
        while _BYTES[0] > PLAN_BYTES and len(_PLANS) > 1:
            _BYTES[0] -= _PLANS.popitem(last=False)[1][2]


def clear() -> None:
    """Forget every recording."""
    with _LOCK:
        _PLANS.clear()
        _BYTES[0] = 0

"""Decoded weight blocks kept across runs, by the WMEM images they were decoded from.

A compiled layer runs its tiles again for every image and every batch's check, with the same
weight arrays (images with other activations share them, see contract.image).  Decoding the
same codes to integers each time took about a sixth of ResNet-18's image on the fast
emulator; onnxruntime, the baseline, prepacks a session's weights once too.  An entry is
found only while every weight array it was made from is alive and the same object (weak
references: ids alone could be reused), for the same addresses, configuration and type; the
least recently used go past :data:`CACHE_BYTES`.  Arrays are read-only (an image's weights
are never written once checked).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

# About twice ResNet-18's weights decoded to float32 (15.8 M codes over its tiles).
CACHE_BYTES = 1 << 28

_Key = tuple[Any, ...]
_Entry = tuple[list[weakref.ref[Any]], NDArray[Any], NDArray[Any], dict[str, Any]]

_ITEMS: OrderedDict[_Key, _Entry] = OrderedDict()
_LOCK = threading.Lock()
_BYTES = [0]
_SCANS = [0]
# One eviction in this many also drops the entries of arrays that died.
DEAD_SCAN_EVERY = 64


def decoded(arrays: list[NDArray[Any]], idx: NDArray[np.int64], setting: tuple[Any, ...],
            make: Callable[[], NDArray[Any]]) -> tuple[NDArray[Any], dict[str, Any]]:
    """``make()`` (the integers of the codes at ``idx`` of tiles holding ``arrays``, under
    ``setting``: configuration and type), made once while those arrays live; with a dict
    for figures derived from it (kept as long)."""
    key = (tuple(map(id, arrays)), idx.shape, hash(idx.tobytes()), setting)
    with _LOCK:
        hit = _ITEMS.get(key)
        if hit is not None and _alive(hit[0], arrays) and np.array_equal(hit[1], idx):
            _ITEMS.move_to_end(key)
            return hit[2], hit[3]
    value = make()
    value.flags.writeable = False
    entry: _Entry = ([weakref.ref(a) for a in arrays], idx.copy(), value, {})
    with _LOCK:
        old = _ITEMS.pop(key, None)
        if old is not None:
            _BYTES[0] -= old[2].nbytes
        _ITEMS[key] = entry
        _BYTES[0] += value.nbytes
        if _BYTES[0] > CACHE_BYTES:
            _evict()
    return value, entry[3]


def _alive(refs: list[weakref.ref[Any]], arrays: list[NDArray[Any]]) -> bool:
    return len(refs) == len(arrays) and all(r() is a for r, a in zip(refs, arrays))


def _evict() -> None:
    """Entries whose arrays died (looked for at one eviction in :data:`DEAD_SCAN_EVERY`: a
    scan of every entry at each insertion past the budget cost SqueezeNet 1.1's small
    configuration a sixth of its time), then the least recently used, down to the budget."""
    if _SCANS[0] % DEAD_SCAN_EVERY == 0:
        for key in [k for k, e in _ITEMS.items() if any(r() is None for r in e[0])]:
            _BYTES[0] -= _ITEMS.pop(key)[2].nbytes
    _SCANS[0] += 1
    while _BYTES[0] > CACHE_BYTES and len(_ITEMS) > 1:
        _BYTES[0] -= _ITEMS.popitem(last=False)[1][2].nbytes


def clear() -> None:
    """Forget every entry."""
    with _LOCK:
        _ITEMS.clear()
        _BYTES[0] = _SCANS[0] = 0

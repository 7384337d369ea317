"""Decoded weight blocks kept across runs, by the WMEM images they were decoded from.

A compiled layer runs its tiles again for every image and every batch's check, with the same
weight arrays (images with other activations share them, see contract.image).  Decoding the
same codes to integers each time took about a sixth of ResNet-18's image on the fast
emulator; onnxruntime, the baseline, prepacks a session's weights once too.  An entry is
found by the identities of the weight arrays it was made from (ids alone are safe: it goes
when one of them dies, before its id can be reused), for the same addresses, configuration
and type; the least recently used go past :data:`CACHE_BYTES`.  Arrays are read-only (an
image's weights are never written once checked).

The same holds for a lockstep group's stacked WMEM and BMEM (emu.fast.state.Tiles): no
instruction writes them, so the next run of tiles with the same weight and parameter arrays
takes the stacks made for the last one (ResNet-18's image spent 9 ms zeroing and filling them).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Every seed network's weights decoded to float32: VGG-16's 138 M codes take 553 MB (at 512 MB
# its dense layers decoded on every run, a fifth of its image), AlexNet's 244 MB, ResNet-18's
# 63 MB; onnxruntime, the baseline, holds its float32 weights as long.  A network whose
# weights do not fit decodes the rest on every run: its runs visit the entries in one order,
# so the least recently used is the next one needed.
CACHE_BYTES = 3 << 28
# The stacked WMEM and BMEM of lockstep groups (pool STACKS, budgeted apart, so that they never
# push decoded weights out): ResNet-18's take 40 MB, VGG-16's 357 MB (at 256 MB they were made
# again on every run, a tenth of its image).
STACK_BYTES = 3 << 27
DECODED, STACKS = 0, 1

_Key = tuple[Any, ...]
# The arrays' ids, idx, the value, figures derived from it.
_Entry = tuple[tuple[int, ...], NDArray[Any], NDArray[Any], dict[str, Any]]

_ITEMS: OrderedDict[_Key, _Entry] = OrderedDict()
# The entries made from each array, by its id: dropped when it dies (weakref.finalize), so a
# network that is gone leaves nothing decoded behind.
_BY_ARRAY: dict[int, set[_Key]] = {}
_LOCK = threading.RLock()
_BYTES = [0, 0]  # by pool
NO_INDEX = np.zeros(0, np.int64)  # the index of entries made from whole arrays


def decoded(arrays: list[NDArray[Any]], idx: NDArray[np.int64], setting: tuple[Any, ...],
            make: Callable[[], NDArray[Any]], pool: int = DECODED, idx_key: int | None = None
            ) -> tuple[NDArray[Any], dict[str, Any]]:
    """``make()`` (the integers of the codes at ``idx`` of tiles holding ``arrays``, under
    ``setting``: configuration and type), made once while those arrays live; with a dict
    for figures derived from it (kept as long).  ``pool``: whose budget it counts in.
    ``idx_key``: ``hash(idx.tobytes())`` when the caller has it (emu.fast.plan records it
    with a read-only ``idx``, which is then kept as it is and found by identity)."""
    # The arrays' ids by their hash in the key (a tuple hashes all its items on every use:
    # a group of 3,000 tiles paid for that in each of its arrays' sets below), whole in the
    # entry, compared on a hit.
    ids = tuple(map(id, arrays))
    key = (pool, hash(ids), idx.shape, hash(idx.tobytes()) if idx_key is None else idx_key,
           setting)
    with _LOCK:
        hit = _ITEMS.get(key)
        # An entry whose arrays all live is one of these arrays' (two live objects never
        # share an id), and an entry goes when one of its arrays dies (_forget, called before
        # the array's memory, hence its id, is free): no check on the arrays themselves.
        if hit is not None and hit[0] == ids and (hit[1] is idx or np.array_equal(hit[1], idx)):
            _ITEMS.move_to_end(key)
            return hit[2], hit[3]
    value = make()
    value.flags.writeable = False
    entry: _Entry = (ids, idx if not idx.flags.writeable else idx.copy(), value, {})
    with _LOCK:
        _drop(key)
        _ITEMS[key] = entry
        _BYTES[pool] += value.nbytes
        for a in arrays:
            if id(a) not in _BY_ARRAY:
                _BY_ARRAY[id(a)] = set()
                weakref.finalize(a, _forget, id(a))
            _BY_ARRAY[id(a)].add(key)
        budget = CACHE_BYTES if pool == DECODED else STACK_BYTES
        while _BYTES[pool] > budget:
            oldest = next(k for k in _ITEMS if k[0] == pool)
            if oldest == key:
                break
            _drop(oldest)
    return value, entry[3]


def stacked(arrays: list[NDArray[Any]], depth: int, lanes: int, dtype: np.dtype[Any]
            ) -> tuple[Any, dict[str, Any]]:
    """(tiles, depth, lanes) of ``dtype``, each tile's words from address 0 and zeros after
    (a lockstep group's WMEM or BMEM): read-only, kept across runs while the arrays live,
    with a dict for figures derived from it (kept as long)."""

    def make() -> NDArray[Any]:
        out = np.zeros((len(arrays), depth, lanes), dtype)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
        return out

    return decoded(arrays, NO_INDEX, ("stack", depth, lanes, dtype.str), make, STACKS)


def _drop(key: _Key) -> None:
    old = _ITEMS.pop(key, None)
    if old is not None:
        _BYTES[key[0]] -= old[2].nbytes


def _forget(array_id: int) -> None:
    """Drop the entries an array that died was part of."""
    with _LOCK:
        for key in _BY_ARRAY.pop(array_id, ()):
            _drop(key)


def clear() -> None:
    """Forget every entry."""
    with _LOCK:
        _ITEMS.clear()
        for keys in _BY_ARRAY.values():
            keys.clear()
        _BYTES[:] = [0, 0]

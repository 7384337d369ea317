"""Register transfer functions: the algebra that gives every loop iteration its registers.

Address registers change only through SETI, ADDI and constant post-increments, so the effect
of any straight-line code (or whole loop) on them is one affine map with copies:
``out[i] = (R[src[i]] + add[i]) mod 2^16``, or ``add[i]`` when ``src[i] < 0``.  Composition is
memoized and powers go by doubling, so an iteration's starting registers cost log(count).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import isa

I64 = NDArray[np.int64]
MASK = isa.REG_MASK
POWER_TABLE_MAX = 256  # longer loops: powers by doubling (a Python table costs k steps)


@dataclass(frozen=True)
class Transfer:
    src: tuple[int, ...]
    add: tuple[int, ...]

    @staticmethod
    def identity() -> Transfer:
        return Transfer(tuple(range(isa.NUM_REGS)), (0,) * isa.NUM_REGS)

    @staticmethod
    def of(effects: tuple[isa.RegEffect, ...]) -> Transfer:
        """The transfer of one instruction's register effects (see isa.register_effects)."""
        t = Transfer.identity()
        for rd, rs, a in effects:
            src, add = list(t.src), list(t.add)
            if rs < 0:
                src[rd], add[rd] = -1, a & MASK
            else:
                src[rd], add[rd] = t.src[rs], (t.add[rs] + a) & MASK
            t = Transfer(tuple(src), tuple(add))
        return t

    def then(self, other: Transfer) -> Transfer:
        """``other`` applied after ``self`` (memoized: the same compositions recur per run)."""
        return _then(self, other)

    def compose(self, other: Transfer) -> Transfer:
        src, add = [], []
        for s, a in zip(other.src, other.add):
            if s < 0:
                src.append(-1)
                add.append(a)
            else:
                src.append(self.src[s])
                add.append((self.add[s] + a) & MASK)
        return Transfer(tuple(src), tuple(add))

    def power(self, k: int) -> Transfer:
        out, base = Transfer.identity(), self
        while k:
            if k & 1:
                out = out.then(base)
            base = base.then(base)
            k >>= 1
        return out

    @cached_property
    def _arrays(self) -> tuple[I64, I64, Any]:
        src = np.array(self.src)
        const = src < 0
        return np.maximum(src, 0), np.array(self.add, np.int64), const if const.any() else None

    def apply(self, regs: I64) -> I64:
        idx, add, const = self._arrays
        out = regs[..., idx]
        out += add
        if const is not None:
            out[..., const] = add[const]
        out &= MASK
        return out


@lru_cache(maxsize=4096)
def _then(first: Transfer, second: Transfer) -> Transfer:
    return first.compose(second)


@lru_cache(maxsize=256)
def powers(t: Transfer, k: int) -> tuple[I64, I64, Any]:
    """transfer^j for j < k as arrays (k, regs): source register, addend, constant mask."""
    src = np.empty((k, isa.NUM_REGS), np.int64)
    add = np.empty((k, isa.NUM_REGS), np.int64)
    p = Transfer.identity()
    for j in range(k):
        src[j], add[j] = p.src, p.add
        p = p.compose(t)
    const = src < 0
    np.maximum(src, 0, out=src)
    return src, add, const if const.any() else None


def iteration_registers(regs: I64, t: Transfer, k: int) -> I64:
    """(n, k, regs): the registers each of k iterations starts from, iteration j from
    transfer^j of ``regs`` (n, regs)."""
    n = regs.shape[0]
    if k <= POWER_TABLE_MAX:
        # One gather from a table of the powers (cached per transfer and count, as the tiles
        # of a layer share them).
        src, add, const = powers(t, k)
        out = regs[:, src]  # (n, k, regs)
        out += add
        out &= MASK
        if const is not None:
            out[:, const] = add[const]
        return out
    out = np.empty((n, k, isa.NUM_REGS), np.int64)
    out[:, 0] = regs
    done, step = 1, t
    while done < k:
        m = min(done, k - done)
        out[:, done: done + m] = step.apply(out[:, :m])
        step = step.then(step)
        done += m
    return out

"""The typed state of a batch: per-instance registers and lane registers, plus what the batch
reads (AMEM snapshot, tables derived from WMEM and BMEM) and records (counters, addresses)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract import weights as wformats
from contract.blas import one_blas_thread
from contract.config import AccelConfig
from contract.semantics import req_fields

from ..machine import Machine, new_counters
from .nest import GiveUp

I64 = NDArray[np.int64]
# Largest number of instances a nested loop may expand to; beyond it iterations run in turn.
MAX_INSTANCES = 1 << 21
# Integers whose sums stay below these bounds are exact in float32 and float64.
EXACT_F64 = 1 << 53
EXACT_F32 = 1 << 24


@dataclass
class Lanes:
    """Instance state: one row per instance of registers (n, NUM_REGS), A, W and P (n, lanes).

    Arrays are replaced, never written in place, so that instances may share them."""

    regs: I64
    acc: I64
    w: I64
    p: I64

    @staticmethod
    def of(mach: Machine) -> Lanes:
        return Lanes(np.array([mach.regs], np.int64), mach.acc[None].copy(),
                     mach.w[None].copy(), mach.p[None].copy())

    @property
    def instances(self) -> int:
        return int(self.regs.shape[0])


_INT_TABLES: dict[tuple[str, int], I64] = {}
# REQ tables of a BMEM image, by its bytes: the tiles of one layer share their parameters.
_REQ_TABLES: dict[tuple[bytes, int], tuple[I64, I64, I64]] = {}


def code_ints(codes: I64, exp_bits: int, weights: str = wformats.DEFAULT) -> I64:
    """The weight format's ``to_int`` (two-digit codes by default) by table lookup: a code's
    value depends only on its low code_bits bits, so one table of 2^code_bits entries gives
    the same integers."""
    key = (weights, exp_bits)
    if key not in _INT_TABLES:
        fmt = wformats.get(weights)
        every = np.arange(1 << fmt.code_bits(exp_bits), dtype=np.int64)
        _INT_TABLES[key] = fmt.to_int(every, exp_bits).astype(np.int64)
    table = _INT_TABLES[key]
    return table[np.asarray(codes, np.int64) & (len(table) - 1)]


def wrap_inplace(v: I64, bits: int) -> I64:
    """semantics.wrap, in place on a fresh int64 array."""
    half = 1 << (bits - 1)
    v += half
    v &= (1 << bits) - 1
    v -= half
    return v


def factorize(v: I64) -> tuple[I64, I64]:
    """np.unique(v, return_inverse=True), faster on the nearly sorted register columns of
    expanded instances (a stable sort finds the runs)."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    new = np.empty(len(sv), bool)
    new[:1] = True
    np.not_equal(sv[1:], sv[:-1], out=new[1:])
    inv = np.empty(len(v), np.int64)
    inv[order] = np.cumsum(new) - 1
    return sv[new], inv


def exact_dtype(bound: int) -> Any:
    """float32 or float64 when integer sums whose absolute values add up to less than
    ``bound`` are exact in it, else None (int64).  Then every product and every partial sum,
    in any order a BLAS may take, is an integer under the bound, which the type holds exactly
    (a fused multiply-add rounds to it, exactly)."""
    for limit, dtype in ((EXACT_F32, np.float32), (EXACT_F64, np.float64)):
        if bound < limit:
            return dtype
    return None


class BatchBase:
    """What a batch reads and records, below the instruction semantics and the products."""

    def __init__(self, mach: Machine, tables: dict[str, Any]):
        self.mach = mach
        self.c: AccelConfig = mach.config
        self.amem = mach.amem.copy()
        # Reads see the memory as it was when the batch started (the commit rule guarantees
        # that nothing the batch reads is written by it), so they may use this snapshot.
        self.amem0 = mach.amem
        self._absmax: int | None = None
        self.cnt = new_counters()
        # Read addresses as (start, count, step): start[i] + j*step for j < count.
        self.reads: list[tuple[I64, int, int]] = []
        # Write addresses as (start, count): start[i] + j for j < count.
        self.writes: list[tuple[I64, int]] = []
        # Tables derived from WMEM and BMEM, which no instruction writes: kept for the run.
        self.tables = tables
        self._as: dict[Any, Any] = {}
        self.resources = ExitStack()  # closed by whoever runs the batch
        self._serial = False

    def serial_blas(self) -> None:
        """Enter single-threaded BLAS for the rest of the batch (before its first product)."""
        if not self._serial:
            self._serial = True
            self.resources.enter_context(one_blas_thread())

    @property
    def amem_absmax(self) -> int:
        if self._absmax is None:
            self._absmax = int(np.abs(self.amem0).max())
        return self._absmax

    @property
    def wint(self) -> I64:
        """The integer of every WMEM code."""
        if "wint" not in self.tables:
            self.tables["wint"] = code_ints(self.mach.wmem, self.c.exp_bits, self.c.weights)
        return self.tables["wint"]  # type: ignore[no-any-return]

    def requant_tables(self) -> tuple[I64, I64, I64]:
        """Per BMEM entry, read as a REQ parameter: the code's integer, the shift, and the
        rounding half (2^(shift-1), or 0 for shift 0)."""
        if "req" not in self.tables:
            c = self.c
            key = (self.mach.bmem.tobytes(), c.exp_bits)
            if key not in _REQ_TABLES:
                if len(_REQ_TABLES) > 16:
                    _REQ_TABLES.clear()
                code, shift = req_fields(self.mach.bmem, c.code_bits)
                half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
                _REQ_TABLES[key] = (code_ints(code, c.exp_bits), shift, half)
            self.tables["req"] = _REQ_TABLES[key]
        return self.tables["req"]  # type: ignore[no-any-return]

    def exact_source(self, k: int) -> I64:
        """AMEM in the narrowest type whose k-term dot products with any weights are exact."""
        return self.source_for(self.amem_absmax * self.c.weight_format.max_abs(self.c.exp_bits) * k)

    def source_for(self, bound: int) -> I64:
        """AMEM in the narrowest type in which sums of products whose absolute values add up to
        less than ``bound`` are exact (see exact_dtype)."""
        dtype = exact_dtype(bound)
        if dtype is None:
            return self.amem0
        if dtype not in self._as:
            self._as[dtype] = self.amem0.astype(dtype)
        return self._as[dtype]  # type: ignore[no-any-return]

    def tally(self, mnemonic: str, times: int, cycles: int = 1) -> None:
        self.cnt["cycles"] += times * cycles
        self.cnt["instructions"] += times
        self.cnt["ops"][mnemonic] += times

    def count(self, traffic: dict[str, int], times: int) -> None:
        """Add ``times`` executions' memory traffic and shift-adds (see isa.traffic)."""
        for key, v in traffic.items():
            self.cnt[key] += times * v

    def addr(self, regs: I64, r: int, depth: int, span: int = 1) -> I64:
        a = regs[:, r]
        if a.size and int(a.max()) + span > depth:
            raise GiveUp
        return a

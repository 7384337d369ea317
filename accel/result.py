"""What every backend returns, and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from contract.config import AccelConfig
from contract.errors import AsdError
from contract.image import region_of
from contract.semantics import wrap


class BackendError(RuntimeError, AsdError):
    """A simulator run that failed: bad output, a crash, or a build error."""


class SimulatorMissing(BackendError):
    """The simulator a backend needs is not installed; the message says how to install it."""


class BackendTimeout(BackendError):
    """A run that hit its wall-clock timeout or its cycle limit."""


@dataclass
class BackendResult:
    """Final state after HALT: AMEM (signed, full depth), cycles, accumulators, registers."""

    backend: str
    config: AccelConfig
    amem: NDArray[np.int64]
    cycles: int
    acc: NDArray[np.int64]
    regs: list[int]
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def region(self, name: str = "output") -> NDArray[np.int64]:
        return region_of(self.amem, self.regions, name)


def to_signed(values: NDArray[np.int64] | list[int], bits: int) -> NDArray[np.int64]:
    """Raw ``bits``-wide two's complement words as signed integers."""
    return np.asarray(wrap(np.asarray(values, dtype=np.int64), bits), dtype=np.int64)

"""The one way to run a program image: the :class:`Backend` protocol, its :class:`Limits`, its
:class:`RunResult`, its errors, and the registry that finds a backend by name.

Every way of running an image (the golden emulator in step or fast mode, the MyHDL core in
MyHDL's simulator, Icarus, GHDL, Verilator) is an object with a ``name`` and a
``run(image, limits) -> RunResult``; :func:`get_backend` builds one from its name.  The
registry names each implementation as ``"module:attribute"`` and imports it only when asked
for, so this package still imports none of ``emu``, ``accel`` or ``programs``, and a missing
simulator only matters to whoever asks for it.

    from contract.backend import Limits, get_backend

    result = get_backend("myhdl").run(image, Limits(max_cycles=10_000))
    result.region("output"), result.cycles
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from .config import AccelConfig
from .errors import AsdError
from .image import Image, region_of

# One default for every backend and for the exported testbench's +max_cycles: a program that
# runs longer than this almost certainly never halts.
DEFAULT_MAX_CYCLES = 100_000_000
# Wall-clock bound for a simulator run (conversion and compilation included); the emulator is
# bounded by its cycle limit alone.
DEFAULT_TIMEOUT = 600.0


class BackendError(RuntimeError, AsdError):
    """A simulator run that failed: bad output, a crash, or a build error."""


class SimulatorMissing(BackendError):
    """The simulator a backend needs is not installed; the message says how to install it."""


class BackendTimeout(BackendError):
    """A run that hit its wall-clock timeout or its cycle limit."""


class BackendRequestError(ValueError, AsdError):
    """A backend asked for by a name the registry does not know, or with unusable limits."""


@dataclass(frozen=True)
class Limits:
    """How long a run may take: ``max_cycles`` simulated cycles, ``timeout`` wall seconds."""

    max_cycles: int = DEFAULT_MAX_CYCLES
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.max_cycles < 1:
            raise BackendRequestError(f"max_cycles must be at least 1, got {self.max_cycles}")
        if not self.timeout > 0:
            raise BackendRequestError(f"timeout must be positive, got {self.timeout}")


DEFAULT_LIMITS = Limits()


@dataclass
class RunResult:
    """Final state after HALT, the same shape from every backend.

    ``amem`` is the whole activation memory, signed: int64, or from the fast emulator the
    activations' own width (int8 or int16: every AMEM value is an activation, and a narrow
    copy is an eighth of the bytes); ``acc`` the accumulators and ``regs`` the address
    registers at HALT.  ``counters`` always holds ``cycles`` (from reset release to the
    HALT cycle inclusive); the emulator adds its operation and memory-traffic counts.  The
    emulator also fills the extras the RTL does not expose: the last weight word and products
    latched in the lanes (``weights``, ``products``) and, when asked, the per-instruction
    ``trace``.
    """

    backend: str
    config: AccelConfig
    amem: NDArray[np.signedinteger[Any]]
    acc: NDArray[np.int64]
    regs: list[int]
    counters: dict[str, Any]
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    weights: NDArray[np.int64] | None = None
    products: NDArray[np.int64] | None = None
    trace: list[dict[str, Any]] | None = None

    @property
    def cycles(self) -> int:
        return int(self.counters["cycles"])

    def region(self, name: str = "output") -> NDArray[np.signedinteger[Any]]:
        return region_of(self.amem, self.regions, name)


class Backend(Protocol):
    """Anything that runs an image to HALT.

    ``run`` raises :class:`BackendTimeout` past ``limits`` on a simulator, the emulator's own
    fault (``emu.emulator.EmulatorError``) past the cycle limit or on a program fault,
    :class:`SimulatorMissing` when a tool is absent and :class:`BackendError` for any other
    failed run.
    """

    @property
    def name(self) -> str: ...

    def run(self, image: Image, limits: Limits = DEFAULT_LIMITS) -> RunResult: ...


# The golden model every other backend is compared against.
GOLDEN = "emu"
_IMPLEMENTATIONS: dict[str, str] = {
    GOLDEN: "emu.backend:EmulatorBackend",
    "myhdl": "accel.sims.myhdl_sim:MyhdlBackend",
    "icarus": "accel.sims.icarus:IcarusBackend",
    "ghdl": "accel.sims.ghdl:GhdlBackend",
    "verilator": "accel.sims.verilator:VerilatorBackend",
}
BACKENDS: tuple[str, ...] = tuple(_IMPLEMENTATIONS)
RTL_BACKENDS: tuple[str, ...] = tuple(n for n in BACKENDS if n != GOLDEN)


def get_backend(name: str, **options: Any) -> Backend:
    """The backend registered as ``name``, built with ``options`` (the emulator takes ``fast``
    and ``trace``; the simulators take none).

    Raises :class:`BackendRequestError` for an unknown name and :class:`SimulatorMissing` when
    a Python package the implementation imports is not installed.
    """
    try:
        target = _IMPLEMENTATIONS[name]
    except KeyError:
        raise BackendRequestError(f"unknown backend {name!r} (one of "
                                  f"{', '.join(BACKENDS)})") from None
    module_name, attribute = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        # Our own module missing is a broken install, not a simulator to install.
        if missing.split(".")[0] in ("contract", "emu", "accel"):
            raise SimulatorMissing(f"backend {name!r} needs {module_name}, which is not "
                                   f"available ({exc})") from None
        raise SimulatorMissing(f"backend {name!r} needs the Python package {missing!r}: pip "
                               f"install {missing} (or pip install -e '.[hw]')") from None
    return cast(Backend, getattr(module, attribute)(**options))


def for_config(image: Image, config: AccelConfig) -> Image:
    """``image`` as it runs on ``config``'s hardware: the same program on a core that may have
    another PE kind (the only field outside the image's configuration hash).  Any other
    difference raises :class:`contract.image.ImageError`."""
    image.check_config(config)
    return dataclasses.replace(image, config=config)


__all__ = ["BACKENDS", "DEFAULT_LIMITS", "DEFAULT_MAX_CYCLES", "DEFAULT_TIMEOUT", "GOLDEN",
           "RTL_BACKENDS", "Backend", "BackendError", "BackendRequestError", "BackendTimeout",
           "Limits", "RunResult", "SimulatorMissing", "for_config", "get_backend"]

"""What the simulator backends share: the :class:`SimulatorBackend` base that turns a final
state into a :class:`contract.backend.RunResult`, the build cache, the guarded subprocess and
the parser of the testbench's printed result (the exit code is never trusted: GHDL exits 1
after a successful stop, and a crashed run may exit 0)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from contract import faults, isa
from contract.backend import (
    DEFAULT_LIMITS,
    BackendError,
    BackendTimeout,
    Limits,
    RunResult,
)
from contract.config import AccelConfig
from contract.faults import MEMORY_FAULT, Fault, ProgramFault
from contract.image import Image
from contract.semantics import wrap

_ACCEL_DIR = Path(__file__).resolve().parent.parent


class FinalState(NamedTuple):
    """What a simulation reads back after HALT, signed: the RTL has no more to show.  ``fault``
    is the core's ``(code, pc, arg)`` when it stopped on a fault instead."""

    cycles: int
    acc: NDArray[np.int64]
    regs: list[int]
    amem: NDArray[np.int64]
    fault: tuple[int, int, int] | None = None


def program_fault(image: Image, code: int, pc: int, arg: int) -> ProgramFault:
    """The fault the core reported, as the emulator words it: the kind and pc from the core,
    the instruction's fields from the program, the address or enclosing loop end from
    ``arg``."""
    from emu.asm import format_instr

    c = image.config
    try:
        kind = Fault(code)
    except ValueError:
        raise BackendError(f"the core reported an unknown fault code {code} at pc {pc}") from None
    if kind == Fault.PAST_TEXT:
        return ProgramFault(faults.past_text(pc, len(image.text)), pc, kind=kind)
    word = int(image.text[pc])
    ins, f = isa.decode(word)
    if kind == Fault.LANES:
        msg = faults.lanes(f[isa.LANES_FIELD], c.lanes)
    elif kind in MEMORY_FAULT.values():
        mem = next(m for m, k in MEMORY_FAULT.items() if k == kind)
        ptr = next(p for p in ins.pointers if p.memory == mem)
        depth = {"WMEM": c.wmem_depth, "BMEM": c.bmem_depth, "AMEM": c.amem_depth}[mem]
        span = f[isa.LANES_FIELD] if ptr.per_lane else 1
        msg = faults.memory(mem, arg, span, f[ptr.register], depth)
    else:
        msg = faults.loop(kind, pc + f["len"], arg, c.loop_depth)
    return ProgramFault(msg, pc, format_instr(word), kind)


class SimulatorBackend:
    """A :class:`contract.backend.Backend` over one simulator: subclasses name it and
    ``simulate`` the image's own configuration (PE kind included) within the limits."""

    name: str

    def run(self, image: Image, limits: Limits = DEFAULT_LIMITS) -> RunResult:
        t0 = time.monotonic()
        state = self.simulate(image, limits)
        if state.fault is not None:
            raise program_fault(image, *state.fault)
        return RunResult(self.name, image.config, state.amem, state.acc, state.regs,
                         {"cycles": state.cycles}, dict(image.regions), time.monotonic() - t0)

    def simulate(self, image: Image, limits: Limits) -> FinalState:
        raise NotImplementedError


def to_signed(values: NDArray[np.int64] | list[int], bits: int) -> NDArray[np.int64]:
    """Raw ``bits``-wide two's complement words as signed integers."""
    return np.asarray(wrap(np.asarray(values, dtype=np.int64), bits), dtype=np.int64)


def run_on_image_files(image: Image, backend: str, cmd: list[str], timeout: float, what: str,
                       env: dict[str, str] | None = None) -> str:
    """Run a compiled testbench in a fresh directory holding the image's ``$readmemh`` files
    (each run its own, so concurrent runs of one build never read each other's image)."""
    with tempfile.TemporaryDirectory(prefix=f"asd-{backend}-") as tmp:
        run_dir = Path(tmp)
        image.readmemh(run_dir)
        return run_guarded(cmd, run_dir, timeout, what, env)


class CacheError(BackendError):
    """A build cache that is not private to this user, or an entry that fails verification."""


def cache_root() -> Path:
    """Where converted and compiled designs are kept between runs: ``ASD_ACCEL_CACHE``, else
    ``$XDG_CACHE_HOME/asd-accel``, else ``~/.cache/asd-accel`` (never a shared /tmp path)."""
    env = os.environ.get("ASD_ACCEL_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "asd-accel"


def stat_of(path: Path) -> os.stat_result:
    """``lstat`` of a cache directory (a public seam: tests simulate another owner here)."""
    return os.lstat(path)


def private_dir(path: Path) -> Path:
    """``path`` created 0700 if missing; refuses one that is a symlink, not a directory, not
    owned by this user or writable by group/others (another user could plant builds there)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = stat_of(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"build cache {path}: expected a directory, found "
                         f"{'a symlink' if stat.S_ISLNK(st.st_mode) else 'another file type'}")
    if st.st_uid != os.getuid():
        raise CacheError(f"build cache {path}: expected owner uid {os.getuid()}, found uid "
                         f"{st.st_uid}; remove it or set ASD_ACCEL_CACHE to a private directory")
    if st.st_mode & 0o022:
        raise CacheError(f"build cache {path}: expected no group/other write permission, "
                         f"found mode {stat.S_IMODE(st.st_mode):04o}; chmod 700 it")
    return path


def source_digest() -> str:
    """Hash of every .py file of the ``contract`` and ``accel`` packages (the ISA table, the
    weight code, the RTL and the testbench), so an edit is never run from a stale build."""
    h = hashlib.sha256()
    root = _ACCEL_DIR.parent
    for p in sorted([*(root / "contract").rglob("*.py"), *_ACCEL_DIR.rglob("*.py")]):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def build_key(config: AccelConfig, backend: str) -> str:
    h = hashlib.sha256(f"{backend}|{config.to_json()}|{source_digest()}".encode())
    return f"{backend}-{config.pe}-{h.hexdigest()[:16]}"


_MANIFEST = ".complete"


def _file_digests(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and p.name != _MANIFEST}


def entry_ok(d: Path) -> bool:
    """True if ``d`` is a completed entry whose files all match their recorded sha256."""
    try:
        recorded = json.loads((d / _MANIFEST).read_text())
        return isinstance(recorded, dict) and recorded == _file_digests(d)
    except (OSError, ValueError):
        return False


def cached_build(key: str, builder: Callable[[Path], None]) -> Path:
    """The directory built by ``builder`` for ``key``, building it once.

    The build happens in place (GHDL records absolute source paths in its library) under an
    exclusive lock, so concurrent test processes wait for one build instead of racing. The
    entry is marked complete last, with the sha256 of every file it holds; an entry that is
    incomplete or whose files no longer match (tampered, half written) is rebuilt.
    """
    root = private_dir(cache_root())
    final = root / key
    if entry_ok(final):
        return final
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not entry_ok(final):
            shutil.rmtree(final, ignore_errors=True)
            final.mkdir(mode=0o700)
            try:
                builder(final)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            (final / _MANIFEST).write_text(json.dumps(_file_digests(final)))
    return final


def run_guarded(cmd: list[str], cwd: Path, timeout: float, what: str,
                env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` with a wall-clock timeout; returns stdout and stderr together.

    The child gets its own process group so a timeout also ends what it started (the
    co-simulation's vvp, a compiler spawned by make).
    """
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BackendTimeout(f"{what}: no result within the {timeout:g} s timeout "
                             f"({' '.join(cmd[:3])} ...)") from None
    return out


def check_build(out: str, ok: bool, what: str) -> None:
    if not ok:
        raise BackendError(f"{what} failed:\n{tail(out)}")


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def parse_output(text: str, config: AccelConfig, backend: str) -> FinalState:
    """The final state a testbench printed."""
    cycles: int | None = None
    acc = [0] * config.lanes
    regs = [0] * 8
    amem: list[int] = []
    fault: tuple[int, int, int] | None = None
    ended = False
    try:
        for line in text.splitlines():
            if not line.startswith("ASD-"):
                continue
            parts = line.split()
            tag = parts[0]
            if tag == "ASD-TIMEOUT":
                raise BackendTimeout(f"{backend}: cycle limit reached without HALT "
                                     f"({int(parts[1], 16)} cycles)")
            if tag == "ASD-CYCLES":
                cycles = int(parts[1], 16)
            elif tag == "ASD-FAULT":
                fault = (int(parts[1]), int(parts[2]), int(parts[3]))
            elif tag == "ASD-ACC":
                acc[int(parts[1])] = int(parts[2], 16)
            elif tag == "ASD-REG":
                regs[int(parts[1])] = int(parts[2], 16)
            elif tag == "ASD-AMEM":
                amem.append(int(parts[1], 16))
            elif tag == "ASD-END":
                ended = True
    except (ValueError, IndexError):
        raise BackendError(f"{backend}: unreadable result line {line!r} (X or Z values?)\n"
                           f"{tail(text)}") from None
    if not ended or cycles is None or len(amem) != config.amem_depth:
        raise BackendError(f"{backend}: the simulation printed no complete result "
                           f"({len(amem)} of {config.amem_depth} AMEM words):\n{tail(text)}")
    return FinalState(cycles, to_signed(acc, config.acc_bits), regs,
                      to_signed(np.array(amem, np.int64), config.act_bits), fault)


def child_env() -> dict[str, str]:
    """The environment for a Python child that must import this package from any cwd."""
    env = dict(os.environ)
    root = str(_ACCEL_DIR.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env

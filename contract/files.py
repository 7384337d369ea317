"""Outputs that are either wholly written or not touched at all.

A failure while writing (disk full, a file size limit, a killed process) must never destroy
the previous good output nor leave a truncated one behind, and the toolkit must never delete a
file it did not write:

* :func:`atomic_file` (and :func:`write_bytes_atomic`, :func:`write_text_atomic`) writes to a
  temporary sibling, flushes it to disk and renames it over the target only on success.  The
  file gets the mode the user's umask gives a new file (``mkstemp`` would leave ``0600``).
* :class:`DirectoryBuilder` builds a whole output directory beside the target and swaps it in
  at the end.  Files of the previous directory that the caller does not declare its own (the
  user's notes, a model kept there) are moved into the new directory, so nothing of the user's
  is lost; a new output that would overwrite such a file is refused before anything changes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from .errors import AsdError


class OutputError(OSError, AsdError):
    """An output that could not be written; the message names the path and says whether the
    previous output is intact."""


def _umask() -> int:
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode a new file gets under the user's umask (0644 under the usual 022)."""
    return 0o666 & ~_umask()


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; some file systems cannot, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a temporary sibling of ``path`` for binary writing; on a clean exit it replaces
    ``path``, on an exception it is removed and ``path`` keeps its previous content.  An
    :class:`OSError` becomes an :class:`OutputError` naming ``path``."""
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write here ({_describe(exc)})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{target}: write failed ({_describe(exc)}); the previous content "
                          "is unchanged") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step (see :func:`atomic_file`)."""
    write_bytes_atomic(path, text.encode())


def _relative_files(root: Path) -> Iterator[Path]:
    """Every non-directory entry under ``root`` (symbolic links are not followed), relative."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            yield (here / name).relative_to(root)


class DirectoryBuilder:
    """Build the directory ``target`` beside it and swap it in on success.

    ``owned`` lists the files (relative POSIX paths) of the previous ``target`` that the
    caller wrote and may drop; every other file of it is carried into the new directory.  Use
    as a context manager: write into :attr:`staging`; a clean exit commits, an exception
    removes the staging directory and leaves ``target`` as it was (an :class:`OSError` is
    raised as an :class:`OutputError` naming ``target``).

    A directory that cannot be swapped as a whole (a mount point, the working directory, one
    whose parent is not writable) is built inside itself instead and its files are moved in
    one by one: ``keystone`` (the file that makes the directory valid, e.g. its manifest) is
    removed first and placed last, so an interrupted commit leaves no keystone rather than a
    keystone beside the wrong files.
    """

    def __init__(self, target: str | Path, owned: Iterable[str] = (),
                 keystone: str | None = None) -> None:
        given = Path(target)
        # Build beside the real directory, so a symbolic link to it keeps working.
        self.target = given.resolve() if given.is_symlink() else Path(os.path.abspath(given))
        self.owned = {Path(p) for p in owned}
        self.keystone = Path(keystone) if keystone else None
        if self.target.exists() and not self.target.is_dir():
            raise OutputError(f"{given}: exists and is not a directory")
        self.in_place = self.target.is_dir() and (
            os.path.ismount(self.target) or self.target == Path.cwd()
            or not os.access(self.target.parent, os.W_OK))
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(
                prefix=f".{self.target.name}.new-",
                dir=self.target if self.in_place else self.target.parent))
            os.chmod(self.staging, 0o777 & ~_umask())
        except OSError as exc:
            raise OutputError(f"{given}: cannot create an output directory here "
                              f"({_describe(exc)})") from None

    def __enter__(self) -> DirectoryBuilder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.commit()
            return
        self.abandon()
        # Name the user's directory, not the staging one they never asked for.
        def shown(text: object) -> str:
            return str(text).replace(str(self.staging), str(self.target))

        if isinstance(exc, OutputError):
            raise OutputError(shown(exc)) from None
        if isinstance(exc, OSError) and not isinstance(exc, AsdError):
            what = shown(exc.filename) if exc.filename else "the output"
            raise OutputError(f"{self.target}: writing {what} failed "
                              f"({_describe(exc)}); the previous output is unchanged") from None

    def abandon(self) -> None:
        """Drop what was built; the target is untouched."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def _users_files(self) -> list[Path]:
        if not self.target.is_dir():
            return []
        building = self.staging.relative_to(self.target) if self.in_place else None
        return sorted(p for p in _relative_files(self.target)
                      if p not in self.owned and (building is None or building not in p.parents))

    def _sync_staging(self) -> None:
        for rel in _relative_files(self.staging):
            path = self.staging / rel
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for dirpath, _, _ in os.walk(self.staging):
            _fsync_dir(Path(dirpath))

    def commit(self) -> None:
        """Carry the user's files over, then swap the new directory in."""
        users = self._users_files()
        clash = [p for p in users if os.path.lexists(self.staging / p)]
        if clash:
            self.abandon()
            raise OutputError(f"{self.target / clash[0]}: would be overwritten but was not "
                              "written by this tool (not listed in its manifest); move it or "
                              "choose another output directory")
        if self.in_place:
            self._commit_in_place()
            return
        moved: list[Path] = []
        old: Path | None = None  # where the previous directory went, once it moved
        try:
            self._sync_staging()
            for rel in users:
                (self.staging / rel).parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.target / rel, self.staging / rel)
                moved.append(rel)
            if self.target.is_dir():
                os.chmod(self.staging, stat.S_IMODE(self.target.stat().st_mode))
                parking = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-",
                                                dir=self.target.parent))
                try:
                    os.rename(self.target, parking)  # onto an empty directory: POSIX allows it
                except OSError:
                    parking.rmdir()
                    raise
                old = parking
            os.rename(self.staging, self.target)
        except OSError as exc:
            self._undo(moved, old)
            raise OutputError(f"{self.target}: replacing the output failed "
                              f"({_describe(exc)}); the previous output is unchanged") from None
        _fsync_dir(self.target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # only files this tool wrote remain in it

    def _commit_in_place(self) -> None:
        """Move the new files over the old ones, the keystone removed first and placed last;
        then drop the previous files this tool owned that the new output does not have."""
        new = sorted(_relative_files(self.staging),
                     key=lambda rel: (rel == self.keystone, str(rel)))
        # Only files that are really there: a manifest naming "../x" must not reach outside.
        stale = self.owned.intersection(_relative_files(self.target)) - set(new)
        try:
            self._sync_staging()
            if self.keystone is not None and self.keystone in self.owned:
                (self.target / self.keystone).unlink(missing_ok=True)
            for rel in new:
                (self.target / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.staging / rel, self.target / rel)
            for rel in stale:
                (self.target / rel).unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.target}: replacing the output in place failed "
                              f"({_describe(exc)}); it may be incomplete (no "
                              f"{self.keystone or 'complete set of files'})") from None
        finally:
            self.abandon()
        _fsync_dir(self.target)

    def _undo(self, moved: list[Path], old: Path | None) -> None:
        """Put the previous directory and the user's files back where they were."""
        if old is not None:  # the swap's second rename failed: the target path is free
            os.rename(old, self.target)
        for rel in moved:
            os.rename(self.staging / rel, self.target / rel)
        self.abandon()


__all__ = ["DirectoryBuilder", "OutputError", "atomic_file", "new_file_mode",
           "write_bytes_atomic", "write_text_atomic"]

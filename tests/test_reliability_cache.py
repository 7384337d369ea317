"""The RTL build cache is private and verified (issue 22): planted, shared or tampered
caches are refused or rebuilt, and any edit of contract/ or accel/ changes the key."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from accel.sims import common
from contract.config import AccelConfig


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ASD_ACCEL_CACHE", str(root))
    return root


def _builder(calls: list[Path]):
    def build(d: Path) -> None:
        calls.append(d)
        (d / "bin").write_bytes(b"#!/bin/sh\necho built\n")
    return build


def test_default_root_is_under_user_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("ASD_ACCEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert common.cache_root() == tmp_path / "xdg" / "asd-accel"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert common.cache_root() == Path.home() / ".cache" / "asd-accel"


def test_cache_created_private(cache) -> None:
    common.cached_build("k", _builder([]))
    assert (cache.stat().st_mode & 0o777) == 0o700


def test_world_writable_planted_cache_refused(cache) -> None:
    cache.mkdir()
    os.chmod(cache, 0o777)
    calls: list[Path] = []
    with pytest.raises(common.CacheError, match="expected no group/other write.*0777"):
        common.cached_build("k", _builder(calls))
    assert calls == []


def test_cache_of_another_owner_refused(cache, monkeypatch) -> None:
    cache.mkdir(mode=0o700)
    real = common.stat_of

    class Other:
        def __init__(self, st: os.stat_result) -> None:
            self.st_mode, self.st_uid = st.st_mode, os.getuid() + 1

    monkeypatch.setattr(common, "stat_of", lambda p: Other(real(p)))
    with pytest.raises(common.CacheError, match=f"found uid {os.getuid() + 1}"):
        common.cached_build("k", _builder([]))


def test_symlinked_cache_refused(cache, tmp_path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    cache.symlink_to(target)
    with pytest.raises(common.CacheError, match="symlink"):
        common.cached_build("k", _builder([]))


def test_entry_reused_when_intact(cache) -> None:
    calls: list[Path] = []
    d1 = common.cached_build("k", _builder(calls))
    d2 = common.cached_build("k", _builder(calls))
    assert d1 == d2 and len(calls) == 1


def test_tampered_binary_rebuilt(cache) -> None:
    calls: list[Path] = []
    d = common.cached_build("k", _builder(calls))
    (d / "bin").write_bytes(b"#!/bin/sh\necho pwned\n")
    common.cached_build("k", _builder(calls))
    assert len(calls) == 2
    assert (d / "bin").read_bytes() == b"#!/bin/sh\necho built\n"


def test_planted_complete_marker_not_trusted(cache) -> None:
    cache.mkdir(mode=0o700)
    (cache / "k").mkdir()
    (cache / "k" / "bin").write_bytes(b"evil")
    (cache / "k" / ".complete").write_text("ok\n")
    calls: list[Path] = []
    common.cached_build("k", _builder(calls))
    assert len(calls) == 1 and (cache / "k" / "bin").read_bytes() != b"evil"


def test_half_built_entry_never_used(cache) -> None:
    def crash(d: Path) -> None:
        (d / "bin").write_bytes(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        common.cached_build("k", crash)
    calls: list[Path] = []
    common.cached_build("k", _builder(calls))
    assert len(calls) == 1


def test_isa_table_edit_changes_key(monkeypatch) -> None:
    config = AccelConfig()
    before = common.build_key(config, "verilator")
    isa_file = Path(common.__file__).resolve().parents[2] / "contract" / "isa.py"
    real = Path.read_bytes

    def edited(p: Path) -> bytes:
        data = real(p)
        return data + b"\n# edit\n" if p.resolve() == isa_file else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert common.build_key(config, "verilator") != before

"""Atomic outputs (contract.files) and the compiled directory they write: a failure while
writing leaves the previous output whole, and nothing the toolkit did not write is deleted."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from contract.config import AccelConfig
from contract.errors import AsdError
from contract.files import (
    DirectoryBuilder,
    OutputError,
    atomic_file,
    write_bytes_atomic,
    write_text_atomic,
)
from contract.image import Image
from programs.manifest import Compiled, compile_model

MODELS = Path(__file__).parent.parent / "asd" / "data" / "models"


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


# contract.files ---------------------------------------------------------------------------
def test_atomic_write_replaces_content_with_the_umask_mode(tmp_path: Path, umask_027: None
                                                           ) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_atomic_file_keeps_the_previous_content_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(OutputError) as exc, atomic_file(target) as fh:
        fh.write(b"half")
        raise OSError(28, "No space left on device")
    assert isinstance(exc.value, AsdError) and isinstance(exc.value, OSError)
    assert str(target) in str(exc.value) and "No space left" in str(exc.value)
    assert target.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]  # no temporary sibling left


def test_atomic_write_into_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.bin"
    with pytest.raises(OutputError, match="missing/out.bin"):
        write_bytes_atomic(target, b"x")


def test_directory_builder_keeps_files_it_does_not_own(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (target / "sub").mkdir(parents=True)
    (target / "owned.txt").write_text("old output")
    (target / "sub" / "owned.bin").write_text("old output")
    (target / "sub" / "mine.txt").write_text("the user's")
    with DirectoryBuilder(target, ["owned.txt", "sub/owned.bin"]) as out:
        (out.staging / "sub").mkdir()
        (out.staging / "sub" / "new.bin").write_text("new output")
    assert _tree(target).keys() == {"sub/mine.txt", "sub/new.bin"}
    assert (target / "sub" / "mine.txt").read_text() == "the user's"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_directory_builder_refuses_to_overwrite_a_file_it_does_not_own(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "report.txt").write_text("the user's")
    with pytest.raises(OutputError, match="report.txt.*not written by this tool"), \
            DirectoryBuilder(target, []) as out:
        (out.staging / "report.txt").write_text("new")
    assert (target / "report.txt").read_text() == "the user's"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_directory_builder_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    with pytest.raises(OutputError, match="not a directory"):
        DirectoryBuilder(tmp_path / "out")


# The compiled directory --------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled() -> tuple[Compiled, Compiled]:
    """The same small network compiled twice, to tiles of different sizes."""
    calib = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    model = MODELS / "digits_cnn.onnx"
    return (compile_model(model, AccelConfig(), calib),
            compile_model(model, AccelConfig(lanes=4), calib))


def test_recompile_keeps_the_users_files_and_drops_stale_tiles(
        tmp_path: Path, compiled: tuple[Compiled, Compiled]) -> None:
    few, many = compiled
    assert few.totals()["tiles"] != many.totals()["tiles"]
    out = tmp_path / "net"
    many.write(out)
    (out / "tiles" / "notes.txt").write_text("kept by the user")
    (out / "calib.npy").write_bytes(b"the user's data")
    few.write(out)
    listed = {f"tiles/{p.name}" for p in (out / "tiles").iterdir()}
    tiles = {t[k] for e in few.manifest()["layers"] for t in e["tiles"]
             for k in ("image", "listing")}
    assert listed == tiles | {"tiles/notes.txt"}
    assert (out / "tiles" / "notes.txt").read_text() == "kept by the user"
    assert (out / "calib.npy").read_bytes() == b"the user's data"
    assert len(Compiled.load(out).layers) == len(few.layers)


def test_failed_write_leaves_the_previous_output_intact(
        tmp_path: Path, compiled: tuple[Compiled, Compiled],
        monkeypatch: pytest.MonkeyPatch) -> None:
    few, many = compiled
    out = tmp_path / "net"
    few.write(out)
    (out / "tiles" / "notes.txt").write_text("kept by the user")
    before = _tree(out)
    real = Image.to_bytes
    calls = {"n": 0}

    def third_tile_fails(self: Image) -> bytes:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(27, "File too large")
        return real(self)

    monkeypatch.setattr(Image, "to_bytes", third_tile_fails)
    with pytest.raises(OutputError, match="File too large.*previous output is unchanged"):
        many.write(out)
    assert calls["n"] == 3
    assert _tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["net"]  # no staging directory left beside it
    monkeypatch.undo()
    assert Compiled.load(out).totals() == few.totals()


def test_compile_refuses_to_overwrite_a_manifest_it_did_not_write(
        tmp_path: Path, compiled: tuple[Compiled, Compiled]) -> None:
    out = tmp_path / "net"
    out.mkdir()
    (out / "manifest.json").write_text("my own notes, not a manifest")
    with pytest.raises(OutputError, match="manifest.json"):
        compiled[0].write(out)
    assert (out / "manifest.json").read_text() == "my own notes, not a manifest"
    assert sorted(os.listdir(out)) == ["manifest.json"]


def test_the_working_directory_is_replaced_in_place_keeping_its_inode(
        tmp_path: Path, compiled: tuple[Compiled, Compiled],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Swapping the directory a shell sits in would strand the shell in a deleted one: it is
    rebuilt inside itself, the manifest placed last."""
    few, many = compiled
    out = tmp_path / "net"
    many.write(out)
    (out / "notes.txt").write_text("kept by the user")
    inode = out.stat().st_ino
    monkeypatch.chdir(out)
    few.write(".")
    assert out.stat().st_ino == inode
    tiles = {t[k] for e in few.manifest()["layers"] for t in e["tiles"]
             for k in ("image", "listing")}
    assert set(_tree(out)) == tiles | {"manifest.json", "qnet.json", "qnet.npz", "model.onnx",
                                       "notes.txt"}
    assert Compiled.load(out).totals() == few.totals()


def test_an_in_place_build_that_fails_leaves_the_previous_output_intact(
        tmp_path: Path, compiled: tuple[Compiled, Compiled],
        monkeypatch: pytest.MonkeyPatch) -> None:
    few, many = compiled
    out = tmp_path / "net"
    few.write(out)
    before = _tree(out)
    monkeypatch.chdir(out)
    monkeypatch.setattr(Compiled, "manifest", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        many.write(".")
    assert _tree(out) == before and sorted(os.listdir(out)) == sorted(
        {p.split("/")[0] for p in before})


@pytest.mark.parametrize("in_place", [False, True])
def test_a_manifest_claiming_files_outside_its_directory_deletes_nothing_there(
        tmp_path: Path, compiled: tuple[Compiled, Compiled], monkeypatch: pytest.MonkeyPatch,
        in_place: bool) -> None:
    out = tmp_path / "net"
    compiled[0].write(out)
    outside = tmp_path / "precious.txt"
    outside.write_text("the user's")
    man = json.loads((out / "manifest.json").read_text())
    man["files"] += ["../precious.txt", str(outside)]
    (out / "manifest.json").write_text(json.dumps(man))
    if in_place:
        monkeypatch.chdir(out)
    compiled[1].write("." if in_place else out)
    assert outside.read_text() == "the user's"

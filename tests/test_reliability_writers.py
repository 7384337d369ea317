"""Every command that writes: a failure while writing (the disk filling up as the data is
flushed, a serializer raising half way) leaves the previous output intact and no temporary
file behind; a success replaces it with the mode a new file gets under the user's umask."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from asd_cli.main import main
from contract.config import AccelConfig
from contract.errors import AsdError
from contract.files import OutputError
from emu.asm import assemble
from tests.zoo_onnx import chain_model

EXAMPLES = Path(__file__).parent.parent / "programs" / "examples"
SPEC = {"c": 1, "h": 6, "w": 6, "seed": 2, "steps": [
    ("conv", {"co": 3, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True, "bn": False,
              "groups": "dense", "act": "relu"}), ("gemm", {"co": 4})]}


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, flushing a file to disk fails as a full disk does (after the data went
    into the file)."""
    def fail(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _no_temporaries(d: Path) -> None:
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []


def _fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str], *names: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    for n in names:
        assert n in err
    return err


def test_asm_output_survives_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dot.bin"
    assert main(["asm", str(EXAMPLES / "dot.s"), "-o", str(out)]) == 0
    before = out.read_bytes()
    _disk_full(monkeypatch)
    err = _fails_cleanly(capsys, ["asm", str(EXAMPLES / "conv3x3.s"), "-o", str(out)], str(out))
    assert "unchanged" in err
    assert out.read_bytes() == before
    _no_temporaries(tmp_path)


def test_image_hex_files_survive_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    image = assemble(".amem 0 1 2 3\n    HALT\n", AccelConfig(), "<t>")
    files = image.readmemh(tmp_path)
    before = _snapshot(tmp_path)
    other = assemble(".amem 0 7 7 7\n    HALT\n", AccelConfig(), "<t>")
    _disk_full(monkeypatch)
    with pytest.raises(OutputError, match="amem.hex|imem.hex|wmem.hex|bmem.hex"):
        other.readmemh(tmp_path)
    assert _snapshot(tmp_path) == before and len(files) == 4
    _no_temporaries(tmp_path)


def test_config_save_survives_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    path = tmp_path / "accel.toml"
    AccelConfig(lanes=4).save(path)
    _disk_full(monkeypatch)
    with pytest.raises(OutputError, match="accel.toml"):
        AccelConfig(lanes=8).save(path)
    assert AccelConfig.load(path).lanes == 4
    _no_temporaries(tmp_path)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("writers")
    onnx.save(chain_model(SPEC), d / "m.onnx")
    np.save(d / "x.npy", np.random.default_rng(0).standard_normal((2, 1, 6, 6), np.float32))
    assert main(["compile", str(d / "m.onnx"), "-o", str(d / "out")]) == 0
    return d


def test_run_output_gets_exactly_the_name_asked_and_survives_a_full_disk(
        compiled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    y = tmp_path / "y"  # numpy alone would write y.npy
    argv = ["run", str(compiled / "out"), "--input", str(compiled / "x.npy"), "--output", str(y)]
    assert main(argv) == 0
    assert sorted(os.listdir(tmp_path)) == ["y"]
    before = y.read_bytes()
    assert np.load(y).shape == (2, 4)
    _disk_full(monkeypatch)
    _fails_cleanly(capsys, argv, str(y), "unchanged")
    assert y.read_bytes() == before
    _no_temporaries(tmp_path)


def test_run_output_into_a_missing_directory_names_it(
        compiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = tmp_path / "no" / "y.npy"
    _fails_cleanly(capsys, ["run", str(compiled / "out"), "--input", str(compiled / "x.npy"),
                            "--output", str(y)], str(y))


def test_export_keeps_the_previous_directory_when_writing_fails_and_the_users_files_always(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rtl"
    out.mkdir()
    (out / "run.sh").write_text("previous export\n")
    (out / "notes.txt").write_text("the user's\n")
    before = _snapshot(out)
    config = tmp_path / "small.toml"
    AccelConfig(lanes=2, amem_depth=64).save(config)
    with monkeypatch.context() as m:
        _disk_full(m)
        _fails_cleanly(capsys, ["export", "--hdl", "verilog", "--config", str(config), "-o",
                                str(out)], str(out), "unchanged")
    assert _snapshot(out) == before
    _no_temporaries(tmp_path)
    assert main(["export", "--hdl", "verilog", "--config", str(config), "-o", str(out)]) == 0
    assert (out / "notes.txt").read_text() == "the user's\n"
    assert "ASD-CHECK" in (out / "run.sh").read_text() and (out / "asd_core.v").exists()
    _no_temporaries(tmp_path)


def test_report_files_survive_a_full_disk(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from asd_cli import report

    report.write(tmp_path, {"title": "first", "accuracy": []}, {})
    before = _snapshot(tmp_path)
    with monkeypatch.context() as m:
        _disk_full(m)
        with pytest.raises(OutputError, match="summary.json"):
            report.write(tmp_path, {"title": "third", "accuracy": []}, {})
    assert _snapshot(tmp_path) == before
    _no_temporaries(tmp_path)


def test_demo_with_a_bad_config_or_model_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("lanes = 0\n")
    out = tmp_path / "a" / "report"
    _fails_cleanly(capsys, ["demo", "--config", str(bad), "--out", str(out)], str(bad), "lanes")
    _fails_cleanly(capsys, ["demo", "--model", str(tmp_path / "none.onnx"), "--out", str(out)],
                   "none.onnx", "no such model file")
    assert os.listdir(tmp_path) == ["bad.toml"]


def test_demo_failing_half_way_leaves_the_previous_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from asd_cli import demo

    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("previous report")
    (out / "mine.txt").write_text("the user's")
    before = _snapshot(out)

    def half_way(args: Any, config: Any, model: Any, staging: Path, dest: Path) -> int:
        (staging / "index.html").write_text("half")
        raise AsdError("the model cannot be read")

    monkeypatch.setattr(demo, "_demo", half_way)
    _fails_cleanly(capsys, ["demo", "--out", str(out)], "cannot be read")
    assert _snapshot(out) == before
    _no_temporaries(tmp_path)


def test_hwreport_files_survive_a_writer_failing_half_way(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from asd_cli.hwreport import _write_outputs

    out = tmp_path / "hw"
    out.mkdir()
    (out / "hwreport.md").write_text("previous")
    before = _snapshot(out)

    class HalfWriter:
        @staticmethod
        def write_outputs(report: dict[str, Any], d: Path) -> list[Path]:
            (Path(d) / "hwreport.md").write_text("half")
            raise OSError(errno.EFBIG, "File too large")

    with pytest.raises(OutputError, match="unchanged"):
        _write_outputs(HalfWriter, {}, out)
    assert _snapshot(out) == before
    _no_temporaries(out)


@pytest.fixture
def umask_022() -> Any:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _quantize_argv(tmp_path: Path) -> Callable[[str], list[str]]:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "w.npz", conv=rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    return lambda out: ["quantize", str(tmp_path / "w.npz"), "-o", out, "-q"]


def test_quantize_output_has_the_umask_mode_and_survives_a_failing_serializer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        umask_022: None) -> None:
    argv = _quantize_argv(tmp_path)
    out = tmp_path / "q.npz"
    assert main(argv(str(out))) == 0
    assert out.stat().st_mode & 0o777 == 0o644
    assert out.with_suffix(".json").stat().st_mode & 0o777 == 0o644
    before = out.read_bytes()

    def half_then_fail(fh: Any, **arrays: Any) -> None:
        fh.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", half_then_fail)
    _fails_cleanly(capsys, argv(str(out)), str(out))
    assert out.read_bytes() == before
    _no_temporaries(tmp_path)


def test_quantize_pair_survives_a_failing_sidecar_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The archive is renamed into place first; when the sidecar's rename then fails, the
    # previous archive comes back, so the pair on disk is the old one, whole.
    argv = _quantize_argv(tmp_path)
    out = tmp_path / "q.npz"
    side = out.with_suffix(".json")
    assert main(argv(str(out))) == 0
    before = out.read_bytes(), side.read_bytes()
    real_replace = os.replace

    def sidecar_fails(src: Any, dst: Any) -> None:
        if str(dst) == str(side):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", sidecar_fails)
    monkeypatch.setattr(np, "savez", lambda fh, **arrays: fh.write(b"PK\x03\x04 a new one"))
    _fails_cleanly(capsys, argv(str(out)), str(out))
    assert (out.read_bytes(), side.read_bytes()) == before
    _no_temporaries(tmp_path)

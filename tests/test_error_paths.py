"""One bad input per ``asd`` subcommand (more where a command has several inputs): exit status
2, one line on stderr naming the file, field, line or instruction and what was expected, no
traceback, and nothing written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from asd_cli.main import build_parser, main
from tests.zoo_onnx import chain_model

SPEC = {"c": 1, "h": 6, "w": 6, "seed": 3, "steps": [
    ("conv", {"co": 2, "k": 3, "s": 1, "pads": [1, 1, 1, 1], "bias": True, "bn": False,
              "groups": "dense", "act": "relu"}), ("gemm", {"co": 3})]}


def _write(d: Path, name: str, content: str | bytes) -> str:
    p = d / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return str(p)


def _npy(d: Path, name: str, arr: np.ndarray) -> str:
    np.save(d / name, arr)
    return str(d / name)


# Each case: files to make in the test's directory -> argv, and the words the one error line
# must hold ("{d}" is the directory).
Case = Callable[[Path], list[str]]
CASES: dict[str, tuple[Case, list[str]]] = {
    "quantize": (lambda d: ["quantize", _write(d, "w.npz", "not an archive"), "-o",
                            str(d / "q.npz")], ["w.npz", "expected a zip of .npy arrays",
                                                   "b'not '"]),
    "asm": (lambda d: ["asm", _write(d, "bad.s", "    MAC r1, 1, r2\n"), "-o",
                       str(d / "bad.bin")], ["bad.s:1:5", "MAC takes 4 operand"]),
    "asm-late-config": (lambda d: ["asm", _write(d, "late.s", ".amem 0 1\n.config lanes=4\n"
                                                 "    HALT\n")], ["late.s:2", ".config",
                                                                  "before any data"]),
    "disasm": (lambda d: ["disasm", _write(d, "cut.bin", b"ASDI\x01")],
               ["cut.bin", "too short to be a program image"]),
    "emu": (lambda d: ["emu", _write(d, "loop.s", "    LOOP 2, 0\n    HALT\n")],
            ["pc 0", "LOOP 2, 0", "at least 1"]),
    "eval-limit": (lambda d: ["eval", "digits_cnn", "--limit", "-3"],
                   ["--limit -3", "expected a positive count"]),
    "eval-no-dataset": (lambda d: ["eval", _write(d, "m.onnx", b"not onnx")],
                        ["m.onnx", "--dataset", "expected"]),
    "eval-wrong-dataset": (lambda d: ["eval", "mnist_lenet", "--dataset", "digits",
                                      "--limit", "4"],
                           ["mnist_lenet.onnx", "expects images of 1 x 28 x 28", "8 x 8"]),
    "demo": (lambda d: ["demo", "--config", _write(d, "c.toml", "lanes = 'x'\n"), "--out",
                        str(d / "report")], ["c.toml", "lanes", "integer"]),
    "compile": (lambda d: ["compile", _write(d, "m.onnx", b"\x08\x07garbage"), "-o",
                           str(d / "out")], ["m.onnx", "ONNX"]),
    "compile-complex-calibration": (
        lambda d: ["compile", _model(d), "--calib", _npy(d, "cal.npy", np.ones((2, 1, 6, 6),
                                                                                complex)),
                   "-o", str(d / "out")], ["cal.npy", "real", "complex128"]),
    "run-no-network": (lambda d: ["run", str(d / "nowhere"), "--input",
                                  _npy(d, "x.npy", np.zeros((1, 1, 6, 6), np.float32))],
                       ["nowhere", "no compiled network"]),
    "run-inf-input": (lambda d: ["run", _compiled(d), "--input",
                                 _npy(d, "x.npy", np.full((1, 1, 6, 6), np.inf, np.float32))],
                      ["x.npy", "finite", "inf"]),
    "run-wrong-shape": (lambda d: ["run", _compiled(d), "--input",
                                   _npy(d, "x.npy", np.zeros((1, 3, 6, 6), np.float32))],
                        ["(1, 3, 6, 6)", "N x 1 x 6 x 6"]),
    "export": (lambda d: ["export", "--hdl", "verilog", "--config",
                          _write(d, "tiny.toml", "imem_depth = 8\n"), "-o", str(d / "rtl")],
               ["tiny.toml", "demo program does not fit", "imem_depth is 8", "--image"]),
    "hwreport": (lambda d: ["hwreport", "--lanes", "2,x", "-o", str(d / "hw")],
                 ["--lanes", "expected comma-separated integers", "'2,x'"]),
    "sweep": (lambda d: ["sweep", _write(d, "spec.toml", "lanes = 4\n"), "--db",
                         str(d / "s.sqlite")], ["spec.toml:1", "lanes", "[axes]"]),
}


def _model(d: Path) -> str:
    onnx.save(chain_model(SPEC), d / "m.onnx")
    return str(d / "m.onnx")


def _compiled(d: Path) -> str:
    assert main(["compile", _model(d), "-o", str(d / "net")]) == 0
    return str(d / "net")


def test_every_subcommand_has_an_error_case() -> None:
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = set(sub.choices)
    covered = {name.split("-")[0] for name in CASES}
    assert commands <= covered, commands - covered


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_naming_what_was_expected(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, words = CASES[name]
    argv = make(tmp_path)
    before = set(os.listdir(tmp_path))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"asd {argv[0]}: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert set(os.listdir(tmp_path)) == before  # nothing written, not even an empty directory

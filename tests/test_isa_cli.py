"""`asd asm`, `asd disasm`, `asd emu`: outputs, JSON, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asd_cli.main import main
from contract.image import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "programs" / "examples"


def _bin(tmp_path: Path, name: str = "dot") -> Path:
    out = tmp_path / f"{name}.bin"
    assert main(["asm", str(EXAMPLES / f"{name}.s"), "-o", str(out)]) == 0
    return out


def test_asm_writes_an_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _bin(tmp_path)
    assert Image.load(out).config.lanes == 4
    assert "10 instructions" in capsys.readouterr().out


def test_asm_with_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[accelerator]\nlanes = 4\namem_depth = 1024\n")
    out = tmp_path / "x.bin"
    assert main(["asm", str(EXAMPLES / "maxpool.s"), "-o", str(out), "--config", str(cfg)]) == 0
    assert Image.load(out).config.amem_depth == 1024


def test_disasm_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _bin(tmp_path, "conv3x3")
    capsys.readouterr()
    assert main(["disasm", str(out)]) == 0
    text = capsys.readouterr().out
    src = tmp_path / "again.s"
    src.write_text(text)
    again = tmp_path / "again.bin"
    assert main(["asm", str(src), "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    assert main(["disasm", str(out), "--no-data"]) == 0
    code = capsys.readouterr().out
    assert "MAC r0, 1, r1, 1" in code and ".amem" not in code


@pytest.mark.parametrize("fast", [[], ["--fast"]])
def test_emu_prints_region_and_counters(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        fast: list[str]) -> None:
    out = _bin(tmp_path)
    capsys.readouterr()
    assert main(["emu", str(out), *fast]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "output [16..20): -69 -70 -26 -86"
    assert "cycles 20, instructions 17" in text and "MAC 8" in text


def test_emu_json_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _bin(tmp_path, "maxpool")
    capsys.readouterr()
    assert main(["emu", str(out), "--json", "--trace"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["regions"]["output"]["values"][:4] == [111, 112, 112, 90]
    assert data["counters"]["cycles"] == 88 and data["counters"]["ops"]["VMAX"] == 12
    assert len(data["trace"]) == data["counters"]["instructions"]
    assert main(["emu", str(EXAMPLES / "dot.s"), "--trace"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "SETI r3, 16" in lines[3] and "r3=16" not in lines[0]


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.s"
    bad.write_text("NOP\n  SETI r1, x\n")
    assert f"{bad}:2:12: expected an integer" in _err(capsys, ["asm", str(bad)])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an image at all, but long enough to be read as one")
    assert "wrong magic" in _err(capsys, ["emu", str(junk)])
    assert "cannot read image" in _err(capsys, ["disasm", str(tmp_path / "none.bin")])
    spin = tmp_path / "spin.s"
    spin.write_text("LOOP 65535, a\nLOOP 65535, b\nNOP\nb: NOP\na: HALT\n")
    for mode in ([], ["--fast"]):
        msg = _err(capsys, ["emu", str(spin), "--max-cycles", "1000", *mode])
        assert msg.endswith("pc 2 (NOP): cycle limit 1000 reached (a program that never "
                            "halts? raise --max-cycles)")
    assert "no region 'nope'" in _err(capsys, ["emu", str(spin), "--region", "nope"])


def test_other_backends_need_accel_backends(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = _bin(tmp_path)
    assert "emu backend only" in _err(capsys, ["emu", str(out), "--backend", "icarus",
                                               "--fast"])
    try:
        import accel.sims.myhdl_sim  # noqa: F401
    except ImportError:
        assert "needs accel.sims.myhdl_sim" in _err(capsys, ["emu", str(out), "--backend",
                                                            "myhdl"])
        return
    # The RTL (simulated by MyHDL) prints the same region and cycle count as the emulator.
    assert main(["emu", str(out), "--backend", "myhdl", "--json"]) == 0
    rtl = json.loads(capsys.readouterr().out)
    assert main(["emu", str(out), "--json"]) == 0
    golden = json.loads(capsys.readouterr().out)
    assert rtl["regions"] == golden["regions"]
    assert rtl["counters"]["cycles"] == golden["counters"]["cycles"]


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("asm", "disasm", "emu"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert f"asd {cmd} " in capsys.readouterr().out

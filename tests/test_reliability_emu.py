"""Reliability of the assembler on hostile inputs (issue 22): each refusal is an AsmError."""
from __future__ import annotations

import pytest

from contract.config import AccelConfig
from emu.asm import AsmError, assemble, assemble_file

LANES = AccelConfig().lanes


def _row(v: int = 1) -> str:
    return " ".join([str(v)] * LANES)


def test_negative_wmem_address_refused() -> None:
    with pytest.raises(AsmError, match=r"src:1.*expected 0\.\..*found -1"):
        assemble(f".wmem -1 {_row()}\n", None, "src")


def test_negative_bmem_address_refused() -> None:
    with pytest.raises(AsmError, match=r"src:2.*found -3"):
        assemble(f"\n.bmem -3 {_row()}\n", None, "src")


def test_huge_wmem_address_refused_before_allocating() -> None:
    depth = AccelConfig().wmem_depth
    with pytest.raises(AsmError, match=rf"depth {depth}.*found 1000000000"):
        assemble(f".wmem 1000000000 {_row()}\n", None, "src")


def test_last_wmem_word_still_accepted() -> None:
    depth = AccelConfig().wmem_depth
    img = assemble(f".wmem {depth - 1} {_row(0)}\nHALT\n", None, "src")
    assert img.weights.shape[0] == depth


def test_huge_amem_address_refused() -> None:
    with pytest.raises(AsmError, match="found 99999999"):
        assemble(".amem 99999999 1\n", None, "src")


def test_int_string_limit_reported_with_line() -> None:
    with pytest.raises(AsmError, match=r"src:1.*at most \d+ digits"):
        assemble(".wmem " + "9" * 5000 + "\n", None, "src")


def test_config_after_data_refused() -> None:
    with pytest.raises(AsmError, match=r"src:2.*\.config must come before"):
        assemble(f".wmem 0 {_row()}\n.config lanes={LANES}\n", None, "src")


def test_non_utf8_source_refused(tmp_path) -> None:
    p = tmp_path / "bad.s"
    p.write_bytes(b"HALT\n\xff\xfe\n")
    with pytest.raises(AsmError, match=r"bad.s:2.*UTF-8.*0xff"):
        assemble_file(p)


def test_oversized_source_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("emu.asm.MAX_SOURCE_BYTES", 16)
    p = tmp_path / "big.s"
    p.write_text("HALT\n" * 10)
    with pytest.raises(AsmError, match="too large"):
        assemble_file(p)


def test_dev_zero_source_is_bounded() -> None:
    with pytest.raises(AsmError):
        assemble_file("/dev/zero")


def test_trace_streams_and_shows_lines_before_cycle_limit(tmp_path, capsys) -> None:
    from asd_cli.main import main

    src = tmp_path / "spin.s"
    src.write_text("SETI r1, 1\nSETI r2, 2\nSETI r3, 3\nSETI r4, 4\nHALT\n")
    assert main(["emu", str(src), "--trace", "--max-cycles", "3"]) == 2
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert len(lines) == 3 and "SETI r1, 1" in lines[0] and "SETI r3, 3" in lines[2]
    assert "3" in cap.err and len(cap.err.strip().splitlines()) == 1


def test_streamed_trace_keeps_nothing_in_memory() -> None:
    from emu import emulator

    img = assemble("SETI r1, 7\nSETI r2, 1\nHALT\n", None, "src")
    seen: list[dict] = []
    res = emulator.run(img, on_trace=seen.append)
    assert res.trace is None
    assert seen == emulator.run(img, trace=True).trace


def test_json_trace_is_streamed_and_the_same_object(tmp_path, capsys, monkeypatch) -> None:
    import json

    from asd_cli.main import main
    from emu import emulator

    src = tmp_path / "loop.s"
    src.write_text("SETI r1, 2\nLOOP 3, end\nSETI r2, 1\nend:\nHALT\n")
    full = emulator.run(assemble_file(str(src)), trace=True).trace
    kept: list[object] = []
    real_run = emulator.run

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        result = real_run(*args, **kw)
        kept.append(result.trace)
        return result

    monkeypatch.setattr(emulator, "run", spy)
    assert main(["emu", str(src), "--json", "--trace"]) == 0
    text = capsys.readouterr().out
    got = json.loads(text)
    assert got["trace"] == full and list(got)[-1] == "trace"
    assert text == json.dumps(got) + "\n"  # the text json.dump gives for the whole object
    assert kept == [None]  # the emulator handed each entry on and kept none
    # A fault: the error line only, no half-written JSON.
    assert main(["emu", str(src), "--json", "--trace", "--max-cycles", "2"]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "cycle" in cap.err


def test_config_file_hostile_inputs(tmp_path) -> None:
    from contract.config import ConfigError

    bad = tmp_path / "c.toml"
    bad.write_bytes(b"lanes = 4\n\xff\n")
    with pytest.raises(ConfigError, match="c.toml"):
        AccelConfig.load(bad)
    big = tmp_path / "c.json"
    big.write_text('{"lanes": ' + "9" * 5000 + "}")
    with pytest.raises(ConfigError, match="c.json"):
        AccelConfig.load(big)
    with pytest.raises(ConfigError, match="too large"):
        AccelConfig.load("/dev/zero")


def test_image_file_bounded(monkeypatch) -> None:
    from contract.image import Image, ImageError

    monkeypatch.setattr("contract.image.MAX_IMAGE_BYTES", 1 << 16)
    with pytest.raises(ImageError, match="too large"):
        Image.load("/dev/zero")

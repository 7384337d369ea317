"""README and docs: generated tables up to date with benchmarks/results, the README short, its
Python example running, its links alive."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import tables

ROOT = tables.ROOT
README = ROOT / "README.md"


def test_generated_tables_are_up_to_date() -> None:
    assert tables.stale() == [], "stale: run python -m benchmarks.tables"


def test_every_document_with_results_has_generated_blocks() -> None:
    for name in ("README.md", "docs/hardware.md", "docs/benchmarks.md", "docs/compiler.md",
                 "docs/fidelity.md", "docs/hardware-ice40.md", "docs/hardware-energy.md",
                 "docs/quantizers.md", "docs/rtl.md", "docs/sweep.md"):
        assert "<!-- generated: " in (ROOT / name).read_text(), name


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.encode()) < 5000, f"README.md is {len(text.encode())} bytes (limit 5000)"
    assert "./dev demo" in text and "./dev test" in text


def test_readme_links_exist() -> None:
    for link in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        assert (ROOT / link).exists(), link


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) <= 12
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", blocks[0]], cwd=ROOT, env=env, timeout=300,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "bits/weight" in out.stdout and "cycles" in out.stdout


def test_hardware_docs_prose_lines_are_short() -> None:
    for name in ("docs/hardware.md", "docs/hardware-ice40.md", "docs/hardware-energy.md",
                 "docs/hardware-log.md"):
        for n, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if not line.startswith("|"):
                assert len(line) <= 120, f"{name}:{n}: {len(line)} characters"


def test_check_mode_and_rewrite(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- generated: speed -->\nold\n<!-- end generated -->\ny\n")
    assert tables.main(["--check", str(doc)]) == 1
    assert tables.main([str(doc)]) == 0
    assert tables.main(["--check", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("x\n") and text.endswith("y\n") and "old" not in text


def test_unknown_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown generated block"):
        tables.render("<!-- generated: nosuch -->\n<!-- end generated -->", "doc.md")


def test_headline_states_the_operating_point() -> None:
    """The README's hardware table is the shipped point against the int8 baseline first, and
    says in words which targets hold there."""
    text = tables.hw_headline()
    assert "(shipped)" in text.splitlines()[2] and "E = 3" in text
    words = " ".join(text.split())
    assert "Against int8 at the shipped point" in words and "targets -52%, -50%, -50%" in words


def test_accuracy_benchmark_runs(tmp_path: Path) -> None:
    from benchmarks import bench_accuracy

    out = tmp_path / "accuracy.json"
    db = tmp_path / "accuracy.sqlite"
    argv = ["--models", "digits_cnn", "--schemes", "float,asd2", "--workers", "1",
            "--db", str(db), "-o", str(out)]
    assert bench_accuracy.main(argv) == 0
    rec = json.loads(out.read_text())["models"]["digits_cnn"]
    # The sweep's database holds every point: a rerun measures nothing and writes the same.
    first = out.read_text()
    out.unlink()
    assert bench_accuracy.main(argv) == 0
    assert json.loads(out.read_text())["models"]["digits_cnn"]["schemes"] == json.loads(
        first)["models"]["digits_cnn"]["schemes"]
    assert set(rec["schemes"]) == {"float", "asd2"} and rec["accelerator"]["bit_exact"]
    assert rec["asd2_exp_bits_4_size"]["bits_per_weight"] > rec["schemes"]["asd2"][
        "bits_per_weight"]


# Numbers in the prose that are not measurements: CSD examples, codebook values, a test's bound,
# the GPTQ damping, package versions, the cell library and its corner, the published targets,
# addresses, defaults (timeouts, memory budget, memory depths), sizes that follow from a
# definition (a model's parameters, an analytic bound), model and file names. Anything else that
# looks like a figure must come from a generated block.
NOT_MEASURED = {
    "README.md": ["OSU 0.18 um", "Python 3.11"],
    "docs/benchmarks.md": [],
    "docs/onnx-loading.md": ["1.4.4"],  # the rapidocr-onnxruntime wheel's version
    "docs/compiler.md": [
        "4 GiB",  # programs.budget.DEFAULT_MEMORY_BUDGET
        "integer of 1.0", "weight 1.0", "1.0/1.1", "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "about 6 dB",  # 256 codes instead of 128: 20 log10(2)
        "~9%", "17%",  # the two-digit grid's widest gap and worst upward snap
        "[0.6, 1.5]", "0.01",  # the search's range; LeakyReLU's usual slope
        "4,096",  # wmem_depth's default
        "0.55 GB", "0.8 GB",  # VGG-16's float32 weights; its first FC layer in float64
    ],
    "docs/fidelity.md": ["SqueezeNet 1.1"],
    "docs/hardware.md": ["0.18 um", "1.8 V", "0.02 pF", "-52%", "-50%", "+1s", "±2x"],
    "docs/hardware-ice40.md": [],
    "docs/hardware-energy.md": [],
    "docs/isa.md": ["unit (1.0)"],
    "docs/quantizers.md": ["28.5", "0.75", "1.45", "1.125", "1.5", "1.0", "0.05 dB", "0.01",
                           "2.6.0", "2 s B", "K=1..3 x", "<= 3x", "<= 30x", "<= 4x",
                           "99,662", "385,442"],
    "docs/rtl.md": ["600 s"],  # Limits.timeout's default
    "docs/sweep.md": ["127.0.0.1", "3600 s"],
    "docs/usage.md": ["0.18 um", "10,000", "5 KB"],
}
# A measured figure: a decimal, a percentage, decibels, a number with thousands separators, or
# one with a unit of time, size or a ratio.
FIGURE = re.compile(r"[^\s]*(?:\d\.\d|\d\s?%|\d\s?dB|\d,\d\d\d"
                    r"|\d\s?(?:s|ms|min|minutes|MB|GB|GiB|kB|KB|x)\b)[^\s]*")
# Every document but the dated logs (history: figures as measured on the day).
PROSE = ["README.md", *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md"))
                        if not p.name.endswith("-log.md"))]


def test_every_document_is_checked_for_hand_typed_figures() -> None:
    assert sorted(NOT_MEASURED) == sorted(PROSE), "add the new document to NOT_MEASURED"


def hand_typed(text: str, facts: list[str]) -> list[str]:
    """The figures of ``text`` outside generated blocks, code and the ``facts``."""
    text = re.sub(r"<!-- generated: .*?<!-- end generated -->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for fact in sorted(facts, key=len, reverse=True):
        text = text.replace(fact, "")
    return FIGURE.findall(text)


def test_hand_typed_figures_are_found() -> None:
    text = ("Compiles in 12 s (4.8 s before), 62.2 MB, 35x the float model, 18,429 tiles, 97% "
            "busy, 38.9 dB.\n<!-- generated: x -->\n1.5 s\n<!-- end generated -->\n"
            "```\n2.5 s\n```\n8 lanes, 3x3 kernels, 224x224, wmem_depth 4096, opset 13.\n")
    assert hand_typed(text, ["97%"]) == ["12 s", "(4.8 s", "62.2 MB,", "35x", "18,429",
                                         "38.9 dB."]


@pytest.mark.parametrize("name", PROSE)
def test_no_measured_figure_typed_by_hand(name: str) -> None:
    """Outside generated blocks and code, a document names no measured figure: those are
    generated from benchmarks/results, or live in the dated logs (docs/*-log.md)."""
    figures = hand_typed((ROOT / name).read_text(), NOT_MEASURED.get(name, []))
    assert figures == [], f"typed by hand in {name}: {figures}"


def test_every_results_file_has_its_benchmark_listed() -> None:
    """docs/benchmarks.md names the command behind every file of benchmarks/results."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    missing = [p.name for p in sorted(tables.RESULTS.glob("*.json")) if f"`{p.name}`" not in text]
    assert missing == [], f"not in docs/benchmarks.md: {missing}"


def test_document_links_exist() -> None:
    for doc in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / link).exists(), f"{doc.name}: {link}"

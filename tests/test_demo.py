"""The main job end to end on a slice of the test set, and its report."""

import json
import re

import pytest

from asd_cli.main import main


def run_demo(tmp_path, capsys, *extra):
    out = tmp_path / "demo"
    rc = main(["demo", "--model", "digits_cnn", "--limit", "40", "--calib", "16", "--chunk",
               "20", "--out", str(out), "--json", *extra])
    return rc, json.loads(capsys.readouterr().out), out


def test_demo_counts_and_report(tmp_path, capsys):
    rc, summary, out = run_demo(tmp_path, capsys, "--rtl-images", "0")
    assert rc == 0
    acc = summary["accelerator"]
    assert acc["images_checked_bitexact"] == 40 and acc["mismatches"] == 0
    assert acc["cycles_per_image"] == sum(layer["cycles"] for layer in summary["layers"]) > 0
    schemes = {a["scheme"]: a for a in summary["accuracy"]}
    assert {"float", "asd2", "pot", "int8", "fp8-e4m3", "fp8-e5m2"} <= set(schemes)
    assert schemes["asd2"]["size_reduction"] > 0.73
    # The int8 baseline runs the same schedule (the PE kinds share the ISA's timing) and keeps
    # the accuracy; the saved hardware sweep prices both at this point.
    base = acc["int8_baseline"]
    assert base["cycles_per_image"] == acc["cycles_per_image"]
    assert abs(base["top1"] - acc["top1"]) <= 5.0
    energy = acc["datapath_energy_per_image"]
    assert energy["shiftadd"]["energy_uj"] > 0 and energy["int8"]["energy_uj"] > 0
    page = (out / "index.html").read_text()
    pngs = re.findall(r"src='([^']+\.png)'", page)
    assert len(pngs) == 4
    for png in pngs:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert json.loads((out / "summary.json").read_text())["accelerator"]["mismatches"] == 0


@pytest.mark.rtl
def test_demo_on_rtl(tmp_path, capsys, backend):
    rc, summary, _ = run_demo(tmp_path, capsys, "--rtl-images", "1", "--backend", backend)
    assert rc == 0
    rtl = summary["rtl"]
    assert rtl["backend"] == backend and rtl["images"] == 1
    assert rtl["bit_exact"] and rtl["cycles_match"]
    assert rtl["cycles_per_image"] == summary["accelerator"]["cycles_per_image"]

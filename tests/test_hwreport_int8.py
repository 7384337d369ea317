"""The int8 baselines of `asd hwreport` (issue 20): which kinds each mode builds, how the
strongest int8 form is chosen, energy per inference from a network's cycle counts, the
refusals, and (synth) the int8 netlists reproducing the emulator on cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from accel import hwreport, inference, kinds
from asd_cli.main import main
from benchmarks import bench_hwreport
from contract.config import AccelConfig

FIGURES = {"asic_crit_ns": 2.0, "asic_area": 100.0, "asic_energy_pj": 2103.0,
           "asic_stream_cycles": 103, "asic_mac_cycles": 100, "asic_idle_pj_per_cycle": 1.0}


def test_partial_product_kinds_only_where_sums_stay_unresolved() -> None:
    assert kinds.kinds_for("pipelined") == ("shiftadd", "multiplier", "int8")
    assert set(kinds.kinds_for("carrysave_drain")) == set(kinds.KINDS)
    assert set(kinds.kinds_for("tree")) == set(kinds.KINDS)
    assert kinds.kinds_for("carrysave", "core") == ("shiftadd", "multiplier", "int8")
    with pytest.raises(ValueError, match="'int8_booth'.*mode 'product'.*builds: shiftadd"):
        kinds.check_kinds(["shiftadd", "int8_booth"], "product", "pe")
    with pytest.raises(ValueError, match="unknown PE kind 'int4'"):
        kinds.check_kinds(["int4"], "tree", "pe")
    c = kinds.KINDS["int8_array"].config(AccelConfig())
    assert (c.pe, c.weights) == ("multiplier", "int8")


def test_strongest_int8_form_is_the_lowest_path_area_energy() -> None:
    row: dict[str, Any] = {
        "shiftadd": dict(FIGURES),
        "int8": {**FIGURES, "asic_crit_ns": 4.0},  # cost 4 * 100 * 2103
        "int8_booth": {**FIGURES, "asic_area": 150.0},  # cost 2 * 150 * 2103: the least
        "int8_array": {**FIGURES, "asic_energy_pj": 4000.0},
        "multiplier": {**FIGURES, "asic_crit_ns": 5.0},
    }
    assert kinds.strongest_int8(row) == "int8_booth"
    hwreport.update_ratios(row)
    assert row["int8_best"] == "int8_booth"
    assert row["ratio_int8"]["asic_area"] == round(100 / 150, 3)
    assert row["ratio"]["asic_crit_ns"] == 0.4
    assert kinds.strongest_int8({"shiftadd": FIGURES}) is None


def test_energy_per_inference_counts_idle_and_drain_cycles() -> None:
    ops = {"MAC": 600, "SHIFTADD": 0, "BIAS": 10, "CLR": 2, "REQ": 12}
    net = inference.NetworkCycles.from_counters("net", 1000, ops, 8 * (600 + 12), 8)
    assert (net.mac_cycles, net.sums, net.single_products) == (600, 12, 0)
    c = AccelConfig()  # 32-bit accumulators: 8 blocks of 4 bits
    drain = inference.per_inference(FIGURES, net, c, "carrysave_drain")
    piped = inference.per_inference(FIGURES, net, c, "pipelined")
    assert drain is not None and piped is not None
    # A MAC cycle: the stream's 2103 pJ less its 3 idle tail cycles, over 100 MAC cycles.
    assert piped["pj_per_mac_cycle"] == 21.0
    assert piped["cycles"] == 1000 and piped["energy_uj"] == round((600 * 21 + 400) / 1e6, 3)
    assert drain["drain_cycles"] == 12 * 8 and drain["cycles"] == 1096
    assert drain["energy_uj"] == round((600 * 21 + 496 * 1) / 1e6, 3)
    assert drain["images_per_s"] == float(f"{1e9 / (2.0 * 1096):.4g}")  # 4 significant digits
    tree = inference.per_inference(FIGURES, net, c, "tree")
    assert tree is not None and tree["mac_cycles"] == 150 and tree["cycles"] == 550
    assert inference.per_inference({"asic_crit_ns": 1.0}, net, c, "tree") is None
    # VMAC: 40 products one lane a cycle cost 40 idle cycles and 40 / 8 MAC cycles' extra.
    vm = inference.NetworkCycles.from_counters("vm", 1000, {**ops, "VMAC": 5},
                                               8 * (600 + 12) + 40, 8)
    assert vm.single_products == 40
    got = inference.per_inference(FIGURES, vm, c, "pipelined")
    assert got is not None and got["energy_uj"] == round((1000 + (600 + 5) * 20) / 1e6, 3)
    with pytest.raises(ValueError, match="do not match the operations counted with 8 lanes"):
        inference.NetworkCycles.from_counters("bad", 10, ops, 8 * 600, 8)


def test_cli_refuses_what_it_cannot_build(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "int8.toml"
    cfg.write_text('[accelerator]\npe = "multiplier"\nweights = "int8"\n')
    assert main(["hwreport", "--config", str(cfg), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pe = 'multiplier', weights = 'int8'" in err and "--kinds" in err
    assert main(["hwreport", "--mode", "pipelined", "--kinds", "shiftadd,int8_booth", "-o",
                 str(tmp_path)]) == 2
    assert "--kinds: kind 'int8_booth' keeps partial products unresolved, which mode " \
           "'pipelined' does not" in capsys.readouterr().err
    assert main(["hwreport", "--kinds", "int4", "-o", str(tmp_path)]) == 2
    assert "unknown kind 'int4'" in capsys.readouterr().err


def test_bench_adds_the_int8_kinds_to_stored_rows() -> None:
    """``bench_hwreport.py --cells-only``: the cells-only points of every kind the mode
    builds go over the stored rows the filter kept (a kind new to a row gets its cell
    figures alone), the other rows and figures are kept, and the ratios follow."""
    from asd_cli.sweep import spec

    sp = spec.load(bench_hwreport.SPECS / "pe_carrysave_drain.toml")
    sp.measures["hwreport"]["networks"] = []
    area = {"shiftadd": 50.0, "multiplier": 120.0, "int8": 120.0, "int8_booth": 100.0,
            "int8_array": 110.0}
    cfg = {"lanes": 4, "act_bits": 8}
    records = [{"point": {"measure": "hwreport", "config": cfg, "pe": k,
                          "mode": "carrysave_drain"}, "full": None,
                "cells": {"result": {**FIGURES, "asic_area": a, "layer_macs": 10}}}
               for k, a in area.items()]
    row = {"lanes": 4, "act_bits": 8, "exp_bits": 3, "acc_bits": 32, "target": "pe",
           "layer_macs": 10, "shiftadd": {"lut4": 1}, "multiplier": {"lut4": 2}}
    other = {**row, "act_bits": 16, "shiftadd": {}, "multiplier": {}}
    old = {"seeds": 5, "results": [row, other]}
    study = bench_hwreport.merge_rows(old, bench_hwreport.build_study(sp, records, old))
    new, kept = study["results"]
    assert new["shiftadd"]["lut4"] == 1 and new["shiftadd"]["asic_area"] == 50.0
    assert set(kinds.KINDS) <= set(new) and new["int8_booth"] == {**FIGURES,
                                                                   "asic_area": 100.0}
    assert new["int8_best"] == "int8_booth" and new["ratio_int8"]["asic_area"] == 0.5
    assert kept == {**other, "seeds": 5} and study["int8_best"] == "int8_booth"


@pytest.mark.synth
def test_cli_cells_only_every_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every kind of the default mode on cells, each netlist checked against the emulator on
    its own layer (int8 weights for the int8 forms), and energy per inference."""
    rc = main(["hwreport", "--lanes", "2", "--act-bits", "4", "--cells-only", "--macs", "150",
               "--networks", "mnist_lenet", "--json", "-q", "-o", str(tmp_path)])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    row = rep["results"][0]
    assert set(kinds.KINDS) <= set(row) and rep["pe_array_mode"] == "carrysave_drain"
    for k in kinds.KINDS:
        assert row[k]["asic_area"] > 0 and row[k]["asic_idle_pj_per_cycle"] > 0, k
        assert row[k]["asic_energy_pj"] > row[k]["asic_idle_pj_per_cycle"] * 150 / 2, k
    assert row["int8_best"] in kinds.INT8_KINDS
    inf = rep["inference"][0]
    assert inf["network"]["name"] == "mnist_lenet" and inf["network"]["sums"] > 0
    assert inf["shiftadd"]["drain_cycles"] == inf["network"]["sums"] * 8
    assert inf["ratio_int8"] == round(inf["shiftadd"]["energy_uj"]
                                      / inf[row["int8_best"]]["energy_uj"], 3)


def test_int8_programs_compile_at_the_shipped_exponent_field() -> None:
    """An int8 multiplier has no E: rows at E = 4 run int8 programs compiled at E = 3 (the
    compiler refuses int8 weights at E = 4); ASD configurations are left as they are."""
    from asd_cli.hwreport import compilable

    wide = AccelConfig(act_bits=16, exp_bits=4, acc_bits=40)
    assert compilable(wide) == wide
    int8 = wide.replace(pe="multiplier", weights="int8")
    assert compilable(int8) == int8.replace(exp_bits=3)


def test_inference_classes_come_from_the_isa_table() -> None:
    """accel.inference names no mnemonic: its instruction classes are the table's columns,
    and they are the instructions the cost model was written for."""
    assert set(inference.MAC_OPS) == {"MAC", "SHIFTADD"}
    assert set(inference.SINGLE_OPS) == {"VMAC"}
    assert set(inference.LANE_OPS) == {"REQ", "ACT"}
    assert set(inference.SUM_OPS) == {"BIAS", "CLR"}

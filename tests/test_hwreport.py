"""asd hwreport: the parsers, the transistor model, and the synthesis flow on a small
configuration (marker ``synth``: Yosys, nextpnr-ice40, Icarus and OpenSTA really run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from accel import arith, asic, designs, hwreport, lanes, pe_array, power, synth
from asd_cli.hwreport import PE_ARRAY_MODES, layer_stream
from asd_cli.main import main
from benchmarks.bench_hwreport import merge_rows
from contract.config import AccelConfig

STAT = """
=== asd_pe_array ===

   Number of wires:                 42
   Number of cells:                 10
     SB_CARRY                        3
     SB_DFF                          2
     SB_DFFE                         1
     SB_LUT4                         4

"""


def test_parse_stat_ltp_fmax() -> None:
    cells = synth.parse_stat(STAT)
    assert cells == {"SB_CARRY": 3, "SB_DFF": 2, "SB_DFFE": 1, "SB_LUT4": 4}
    r = synth.Ice40Result(cells, Path("x.json"))
    assert (r.lut4, r.carry, r.ff) == (4, 3, 3)
    assert synth.parse_ltp("Longest topological path in top (length=17):\n") == 17
    log = ("Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 80.00 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 95.72 MHz (PASS at 12.00 MHz)\n")
    assert synth.parse_fmax(log) == 95.72
    with pytest.raises(synth.SynthError, match="Max frequency"):
        synth.parse_fmax("Info: nothing here")
    with pytest.raises(synth.SynthError, match="cell counts"):
        synth.parse_stat(STAT.replace("SB_LUT4                         4",
                                      "SB_LUT4                         5"))


def test_transistor_model() -> None:
    assert synth.transistors_of({"$_NAND_": 2, "$_XOR_": 1, "$_MUX_": 1}) == 8 + 8 + 12
    plain = synth.transistors_of({"$_DFF_P_": 1})
    assert plain == synth.DFF_TRANSISTORS
    assert synth.transistors_of({"$_SDFFE_PP0P_": 1}) > plain
    with pytest.raises(synth.SynthError, match="no transistor count"):
        synth.transistors_of({"$_FOO_": 1})


def test_vcd_toggles(tmp_path: Path) -> None:
    vcd = tmp_path / "t.vcd"
    vcd.write_text("$scope module dut $end\n$var wire 1 ! a $end\n$var wire 3 \" v [2:0] $end\n"
                   "$upscope $end\n$enddefinitions $end\n#0\n$dumpvars\n0!\nb000 \"\n$end\n"
                   "#10\n1!\nb101 \"\n#20\n0!\nb1 \"\n#30\n0!\n")
    t = power.parse_vcd_toggles(vcd)
    assert t["a"] == [2]
    assert t["v"] == [1, 0, 2]  # 000 -> 101 -> 001: bit 0 once, bit 2 twice


def test_scan_wrapper_ports() -> None:
    c = AccelConfig(lanes=2, act_bits=4)
    v = designs.scan_wrapper(designs.PE_ARRAY_NAME, pe_array.pe_array_ports(c))
    nin = c.act_bits + 2 * c.code_bits + 1 + pe_array.sel_bits(2)
    assert f"reg [{nin - 1}:0] sin" in v
    assert f"reg [{c.acc_bits - 1}:0] sout" in v
    assert "module asd_synth_top(input clk, input rst, input si, input se, output so)" in v


def test_ratios() -> None:
    r = hwreport.ratios({"lut4": 50, "fmax_mhz": 120.0, "toggle_energy": None},
                        {"lut4": 100, "fmax_mhz": 100.0, "toggle_energy": 5})
    assert r["lut4"] == 0.5 and r["fmax_mhz"] == 1.2 and r["toggle_energy"] is None


def test_missing_tools_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["hwreport", "--target", "pe", "--seeds", "1", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "yosys" in err and "apt-get install yosys nextpnr-ice40" in err


def test_cli_names_the_sweep_point_a_config_refuses(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    """Every (lanes, act_bits, exp_bits) of the sweep is checked before any tool runs."""
    assert main(["hwreport", "--act-bits", "8,16", "--exp-bits", "3,4", "-o",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "acc_bits" in err and "must be 33..40" in err
    assert "act_bits 16, exp_bits 4; set acc_bits in --config" in err
    assert main(["hwreport", "--exp-bits", "5", "-o", str(tmp_path)]) == 2
    assert "'exp_bits' = 5: must be 1..4" in capsys.readouterr().err
    assert main(["hwreport", "--exp-bits", "3,x", "-o", str(tmp_path)]) == 2
    assert "--exp-bits: expected comma-separated integers" in capsys.readouterr().err


@pytest.mark.synth
def test_cli_pe_array_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both PE kinds through the whole flow on a 2-lane, 4-bit PE array."""
    out = tmp_path / "rep"
    rc = main(["hwreport", "--target", "pe", "--lanes", "2", "--act-bits", "4", "--seeds", "2",
               "--mode", "pipelined", "--kinds", "shiftadd,multiplier", "--networks", "none",
               "--macs", "150", "--json", "-q", "-o", str(out)])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    for kind in ("shiftadd", "multiplier"):
        m = rep[kind]
        assert set(m) == set(hwreport.METRICS)
        for key in hwreport.METRICS:
            assert isinstance(m[key], (int, float)) and m[key] > 0, (kind, key, m[key])
        assert m["ff"] <= m["lut4"] + m["ff"] and m["logic_depth"] < m["gates"]
    row = rep["results"][0]
    assert row["shiftadd"]["mul_cells"] == 0
    assert row["multiplier"]["mul_cells"] == 2  # one multiplier per lane
    assert len(row["shiftadd"]["fmax_seeds"]) == 2
    assert row["ratio"]["lut4"] == round(rep["shiftadd"]["lut4"] / rep["multiplier"]["lut4"], 3)
    # The shift-add array is smaller in LUTs and generic gates at this size already.
    assert rep["ratio"]["lut4"] < 1 and rep["ratio"]["gates"] < 1
    assert row["shiftadd"]["macs"] == 150
    for name in ("hwreport.md", "hwreport.json", "hwreport.png"):
        assert (out / name).stat().st_size > 0
    assert "| pe | 2 | 4 | 3 | iCE40 LUT4 |" in (out / "hwreport.md").read_text()


@pytest.mark.synth
def test_carrysave_flow_small(tmp_path: Path) -> None:
    """The carry-save PE array through the whole flow: its gate-level netlists reproduce the
    emulator on a real layer (the power proxy refuses them otherwise) and its one carry
    chain per block keeps the logic shallower than the multiplier's."""
    e2, e3 = small_pe_flow(tmp_path, "carrysave", lanes=2, macs=300, exp_bits=(2, 3))
    for row in (e2, e3):
        assert row["shiftadd"]["logic_depth"] < row["multiplier"]["logic_depth"]
    # The exponent field sweeps: 4 against 8 digit positions.  Per lane the multiplier's
    # decoded weight grows by 4 bits and its product by 4, the shift-add code by 2 bits and
    # each of its two terms by 4.
    assert (e2["exp_bits"], e3["exp_bits"]) == (2, 3)
    assert e3["multiplier"]["ff"] - e2["multiplier"]["ff"] == 2 * (4 + 4)
    assert e3["shiftadd"]["ff"] - e2["shiftadd"]["ff"] == 2 * (2 + 4 + 4)
    assert "| pe | 2 | 4 | 2 | iCE40 LUT4 |" in hwreport.markdown(
        {**e2, "device": "-", "seeds": 1, "pe_array_mode": "carrysave", "tools": {},
         "results": [e2, e3]})


@pytest.mark.synth
def test_carrysave_drain_flow_small(tmp_path: Path) -> None:
    """The carry-save array whose lanes drain their own carries through the whole flow: the
    netlists' sums are read after the drain and equal the emulator's, and the readout is one
    register of the accumulator's width (no carry-resolving stages)."""
    [row] = small_pe_flow(tmp_path, "carrysave_drain", lanes=2, macs=200,
                          kinds=("shiftadd", "multiplier", "int8_booth"))
    c = AccelConfig(lanes=2, act_bits=4, exp_bits=3, acc_bits=20)
    lane = c.acc_bits + len(arith.carry_blocks(c.acc_bits)) - 1  # word and block carries
    weight = {"shiftadd": c.code_bits, "multiplier": c.window + 2, "int8_booth": 8}
    # The x == 0 flag: for the shifts' signs, for the Booth terms' signs and biases.
    for kind, extra in (("shiftadd", 1), ("multiplier", 0), ("int8_booth", 1)):
        assert row[kind]["ff"] == c.lanes * (lane + weight[kind]) + c.act_bits + extra \
            + c.acc_bits


def small_pe_flow(tmp_path: Path, mode: str, lanes: int, macs: int,
                  exp_bits: tuple[int, ...] = (3,),
                  kinds: tuple[str, ...] = ("shiftadd", "multiplier")) -> list[dict]:
    """Small PE arrays (4-bit activations) of ``mode`` through the whole flow, 1 seed, one
    per exponent field; checks what holds in every mode and returns the rows."""
    base = AccelConfig(lanes=lanes, act_bits=4, exp_bits=3, acc_bits=20)
    rep = hwreport.run_sweep(base, [lanes], [4], ("pe",), tmp_path, seeds=1, mode=mode,
                             stream_for=lambda c: layer_stream(c, macs), exp_bits=exp_bits,
                             kinds=kinds)
    assert rep["pe_array_mode"] == mode
    assert [r["exp_bits"] for r in rep["results"]] == list(exp_bits)
    for row in rep["results"]:
        for kind in kinds:
            m = row[kind]
            assert m["fmax_mhz"] > 0 and m["macs"] == macs
            assert 0 < m["toggle_energy_zero_delay"] <= m["toggle_energy"]
            assert m["glitch_share"] == round(
                1 - m["toggle_energy_zero_delay"] / m["toggle_energy"], 3)
            assert m["energy_per_mac"] == round(m["toggle_energy"] / macs, 1)
            # Every array registers its weights and accumulates: flip-flops take a part.
            assert 0 < m["ff_energy_share"] < 1
            # Standard cells: flip-flops are part of the area and (clock pins) of the energy.
            assert 0 < m["asic_ff_area"] < m["asic_area"]
            assert 0.1 < m["asic_crit_ns"] < 50
            assert m["asic_pj_per_mac"] == round(m["asic_energy_pj"] / macs, 3)
            # Timed, a net switches at least as often as its settled value changes.
            assert 0 < m["asic_energy_pj_zero_delay"] <= m["asic_energy_pj"]
            assert m["asic_glitch_share"] == round(
                1 - m["asic_energy_pj_zero_delay"] / m["asic_energy_pj"], 3)
            assert 0 < m["asic_ff_energy_share"] < 1
            assert sum(n for c, n in m["asic_cells"].items() if asic.is_flip_flop(c)) == m["ff"]
        assert row["shiftadd"]["mul_cells"] == 0
    return rep["results"]


@pytest.mark.synth
def test_tree_flow_small(tmp_path: Path) -> None:
    """The compressor-tree PE array (four MACs a lane a cycle) through the whole flow: the
    gate-level netlists take the layer four MACs at a time and still reproduce the emulator,
    the energy is counted per MAC, and the multiplier side has one multiplier per product."""
    [row] = small_pe_flow(tmp_path, "tree", lanes=1, macs=301)  # not a multiple of four
    assert row["multiplier"]["mul_cells"] == lanes.TREE_PRODUCTS
    assert row["ratio"]["gates"] < 1


@pytest.mark.synth
def test_core_flow_small(tmp_path: Path) -> None:
    """The whole core of a tiny configuration, both kinds: area, depth and Fmax parsed."""
    base = AccelConfig(lanes=1, act_bits=4, exp_bits=2, acc_bits=12, imem_depth=64,
                       wmem_depth=64, bmem_depth=16, amem_depth=256, loop_depth=1)
    rep = hwreport.run_sweep(base, [1], [4], ("core",), tmp_path, seeds=1,
                             kinds=("shiftadd", "multiplier"))
    row = rep["results"][0]
    for kind in ("shiftadd", "multiplier"):
        m = row[kind]
        assert m["lut4"] > 0 and m["ff"] > 0 and m["fmax_mhz"] > 0 and m["logic_depth"] > 0
        assert m["toggle_energy"] is None  # the power proxy runs on the PE array
    # The core multiplies twice per lane (MAC product and requantization).
    assert row["shiftadd"]["mul_cells"] == 0 and row["multiplier"]["mul_cells"] == 2
    assert row["ratio"]["transistors"] is not None
    assert "core" in hwreport.text_table(rep)


@pytest.mark.synth
def test_power_refuses_a_wrong_netlist(tmp_path: Path) -> None:
    """The toggle count is only taken from a netlist that reproduces the emulator."""
    c = AccelConfig(lanes=1, act_bits=4, exp_bits=2, acc_bits=12)
    srcs, top, _ = designs.write_design(c, "pe", tmp_path / "rtl")
    gen = synth.generic_stats(srcs, top, tmp_path / "gen")
    x = np.array([3, -2, 7, 1], np.int64)
    codes = np.array([[5], [17], [40], [63]], np.int64)
    ok = power.toggle_energy(gen.netlist_v, gen.netlist_json, top, c, x, codes, tmp_path / "p1")
    assert ok.toggle_energy > ok.toggles > 0 and ok.macs == 4
    # Simulating a multiplier-kind netlist as if it ran another configuration's codes:
    # give it the right stream but claim a different exponent width -> mismatch.
    wrong = c.replace(exp_bits=1, acc_bits=12)
    with pytest.raises(power.PowerError):
        power.toggle_energy(gen.netlist_v, gen.netlist_json, top, wrong, x, codes,
                            tmp_path / "p2")


@pytest.mark.synth
def test_unit_delay_counts_glitches(tmp_path: Path) -> None:
    """With a unit delay per gate the multiplier's adder array switches more than once a
    cycle; zero-delay gates switch at most once, so they count fewer toggles.  Both runs
    still reproduce the emulator (the proxy refuses them otherwise)."""
    c = AccelConfig(lanes=1, act_bits=4, exp_bits=2, acc_bits=12, pe="multiplier")
    srcs, top, _ = designs.write_design(c, "pe", tmp_path / "rtl")
    gen = synth.generic_stats(srcs, top, tmp_path / "gen")
    rng = np.random.default_rng(5)
    x = rng.integers(-8, 8, 60)
    codes = rng.integers(0, 1 << c.code_bits, (60, 1))
    zero = power.toggle_energy(gen.netlist_v, gen.netlist_json, top, c, x, codes,
                               tmp_path / "zero", unit_delay=False)
    unit = power.toggle_energy(gen.netlist_v, gen.netlist_json, top, c, x, codes,
                               tmp_path / "unit")
    assert unit.toggles > zero.toggles > 0
    assert unit.toggle_energy > zero.toggle_energy


def test_cli_offers_every_pe_array_mode():
    """The CLI keeps its own copy of the mode names (importing MyHDL for ``--help`` is slow);
    it must name exactly the modes the PE array builds."""
    assert PE_ARRAY_MODES == lanes.MODES


def test_overfull_device_is_reported_as_not_fitting():
    """Regression: the full sweep crashed when nextpnr-ice40 0.4 could not place a 4-lane,
    8-bit core (9327 logic cells on a 7680-cell HX8K) instead of reporting it as not fitting."""
    from accel.synth import _over_capacity

    assert _over_capacity("ERROR: Failed to expand region (0, 0) |_> (33, 33) of 9327 "
                          "ICESTORM_LCs")
    assert _over_capacity("Info: \t ICESTORM_LC:  9327/ 7680   121%")
    assert not _over_capacity("Info: \t ICESTORM_LC:  5000/ 7680    65%\nERROR: timing loop")


def test_power_result_splits_flip_flops_from_logic() -> None:
    pr = power.PowerResult(toggle_energy=100, toggles=20, macs=4,
                           by_cell={"$_SDFF_PP0_": 24, "$_SDFFE_PP0P_": 16, "$_XOR_": 60})
    assert pr.ff_share == 0.4 and pr.energy_per_mac == 25


def test_bench_adds_rows_without_losing_others() -> None:
    """``bench_hwreport.py --add-rows``: the new rows replace those of the same lanes,
    activation width, exponent field, accumulator and target; the others stay, with the
    seeds they were measured with, and the headline is the first row's of the merge."""
    def row(lanes: int, act: int, tag: str, exp: int = 3, acc: int = 32) -> dict:
        return {"lanes": lanes, "act_bits": act, "exp_bits": exp, "acc_bits": acc,
                "target": "pe", "tag": tag, "shiftadd": {"lut4": lanes * act},
                "multiplier": {"lut4": 2 * lanes * act}, "ratio": {"lut4": 0.5}}

    old = {"seeds": 5, "results": [row(1, 4, "old"), row(1, 8, "old"), row(4, 8, "old"),
                                   row(1, 16, "old", 4, 40)]}
    new = {"seeds": 3, "results": [row(1, 8, "new"), row(1, 16, "new")], "first": {"lanes": 1}}
    merged = merge_rows(old, new)
    got = [(r["lanes"], r["act_bits"], r["exp_bits"], r["tag"], r["seeds"])
           for r in merged["results"]]
    assert got == [(1, 4, 3, "old", 5), (1, 8, 3, "new", 3), (1, 16, 3, "new", 3),
                   (1, 16, 4, "old", 5), (4, 8, 3, "old", 5)]
    assert merged["seeds"] == 3
    assert merged["first"] == {"lanes": 1, "act_bits": 4, "exp_bits": 3, "target": "pe"}
    assert merged["shiftadd"]["lut4"] == 4 and merged["multiplier"]["lut4"] == 8


POWER_REPORT = """
Group                  Internal  Switching    Leakage      Total
                          Power      Power      Power      Power
----------------------------------------------------------------
Sequential             9.08e-03   2.49e-04   6.14e-08   9.32e-03  73.7%
Combinational          2.80e-03   5.31e-04   6.84e-08   3.33e-03  26.3%
Macro                  0.00e+00   0.00e+00   0.00e+00   0.00e+00   0.0%
Pad                    0.00e+00   0.00e+00   0.00e+00   0.00e+00   0.0%
----------------------------------------------------------------
Total                  1.19e-02   7.80e-04   1.30e-07   1.27e-02 100.0%
"""


def test_cell_report_parsers() -> None:
    assert asic.parse_power(POWER_REPORT) == (1.27e-02, 9.32e-03)
    with pytest.raises(asic.AsicError, match="'Total'"):
        asic.parse_power(POWER_REPORT.replace("Total", "Sum"))
    assert asic.parse_area("   Chip area for module '\\asd_pe_array': 71946.000000\n") \
        == 71946.0
    with pytest.raises(asic.AsicError, match="chip area"):
        asic.parse_area("Number of cells: 3")
    # VCD buses become OpenSTA's bit names; scalars keep theirs.
    assert asic._bit_names({"x_in": [1, 0, 4], "_12_": [7]}) == \
        {"x_in[0]": 1, "x_in[1]": 0, "x_in[2]": 4, "_12_": 7}


def test_cell_library_areas() -> None:
    """The Liberty file's areas: a flip-flop is several NAND gates, an inverter less than one."""
    lib, models = asic.library()
    areas = asic.cell_areas(lib)
    assert {"DFFPOSX1", "NAND2X1", "INVX1", "FAX1", "MUX2X1"} <= set(areas)
    assert areas["INVX1"] < areas["NAND2X1"] < areas["DFFPOSX1"]
    assert "module DFFPOSX1" in models.read_text()


@pytest.mark.synth
def test_cell_energy_follows_the_stream(tmp_path: Path) -> None:
    """The cell-level power reads the simulated activity: the same netlist on the same
    weights draws less with every activation zero (only the clock and the weight registers
    switch), and both runs reproduce the emulator."""
    c = AccelConfig(lanes=2, act_bits=4, exp_bits=2, acc_bits=12)
    srcs, top, _ = designs.write_design(c, "pe", tmp_path / "rtl", "carrysave")
    cells = asic.map_cells(srcs, top, tmp_path / "cells")
    assert cells.ffs > 0 and cells.area > cells.ff_area > 0
    assert 0.1 < asic.critical_path(cells.netlist_v, top, tmp_path / "sta") < 20
    rng = np.random.default_rng(11)
    x = rng.integers(-8, 8, 80)
    codes = rng.integers(0, 1 << c.code_bits, (80, c.lanes))
    busy = asic.energy_per_mac(cells.netlist_v, top, c, x, codes, tmp_path / "busy",
                               mode="carrysave")
    idle = asic.energy_per_mac(cells.netlist_v, top, c, np.zeros_like(x), codes,
                               tmp_path / "idle", mode="carrysave")
    assert busy.macs == idle.macs == 80 and busy.cycles == idle.cycles
    assert 0 < idle.energy_pj < busy.energy_pj
    # The clock reaches every flip-flop whatever the data: their share grows when idle.
    assert 0 < busy.ff_share < idle.ff_share < 1
    # Timed by OpenSTA's delays, nets whose inputs arrive apart glitch: more energy than
    # at zero delay on the same stream.
    flat = asic.energy_per_mac(cells.netlist_v, top, c, x, codes, tmp_path / "flat",
                               mode="carrysave", timed=False)
    assert flat.cycles == busy.cycles and 0 < flat.energy_pj < busy.energy_pj


@pytest.mark.synth
def test_cell_delays_are_annotated(tmp_path: Path) -> None:
    """The timed simulation runs on the delays of the SDF file, not the models' own: with
    every cell slowed to 40 ns the array cannot settle in its clock and the run is refused
    (Icarus ignores delays it cannot read without a word; this catches it)."""
    c = AccelConfig(lanes=1, act_bits=4, exp_bits=2, acc_bits=12)
    srcs, top, _ = designs.write_design(c, "pe", tmp_path / "rtl", "carrysave_direct")
    cells = asic.map_cells(srcs, top, tmp_path / "cells")
    sdf = asic.write_sdf(cells.netlist_v, top, tmp_path / "sdf")
    text = sdf.read_text()
    assert text.count("(IOPATH") >= sum(n for cl, n in cells.cells.items()
                                        if not asic.is_flip_flop(cl)) > 0
    slow = tmp_path / "slow.sdf"
    slow.write_text(re.sub(r"\(IOPATH (\S+) (\S+) .*\)",
                           r"(IOPATH \1 \2 (40.0::40.0) (40.0::40.0))", text))
    rng = np.random.default_rng(5)
    x = rng.integers(1, 8, 30)
    codes = rng.integers(0, 1 << c.code_bits, (30, 1))
    _, models = asic.library()
    power.simulate_toggles(cells.netlist_v, [models], top, c, x, codes, tmp_path / "ok",
                           mode="carrysave_direct", sdf=sdf, dump_depth=1)
    with pytest.raises(power.PowerError, match="disagrees with the emulator"):
        power.simulate_toggles(cells.netlist_v, [models], top, c, x, codes,
                               tmp_path / "slow", mode="carrysave_direct", sdf=slow,
                               dump_depth=1)


@pytest.mark.parametrize("weights", ["asd", "int8"])
def test_shipped_stream_is_the_compiled_demo_network(weights: str) -> None:
    """hwreport's stream: the demo network as compiled, so its feature maps carry the zero
    points (a ReLU's zero is the most negative code, which the digits layer computed without
    them never shows) and every code is one of the configuration's weight format."""
    from asd_cli.hwreport import shipped_stream
    from contract import weights as wformats

    pe = wformats.get(weights).pe_kinds[0]
    cfg = AccelConfig(lanes=4, weights=weights, pe=pe)
    x, w = shipped_stream(cfg, 300)
    assert x.shape == (300,) and w.shape == (300, cfg.lanes)
    assert cfg.act_min <= x.min() and x.max() <= cfg.act_max
    assert np.mean(x == cfg.act_min) > 0.05  # zero points: ReLU zeros at the bottom code
    assert w.min() >= 0 and w.max() < 1 << cfg.weight_bits
    digits_x, _ = layer_stream(cfg, 300)
    assert not np.any(digits_x == cfg.act_min)

"""The compiler's error-compensating weight rounding (``asd compile --rounding``), the PReLU
output range it calibrates, and the fidelity benchmark that measures both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asd import datasets, fidelity
from asd.modelio import ModelError
from asd.rounding import conv_stats
from asd_cli.main import main
from contract.config import AccelConfig
from contract.errors import AsdError
from programs import reference, runtime
from programs.manifest import compile_model
from programs.onnx_import import import_model
from programs.quantize import QuantizeError, WeightRounding, quantize, weight_rounding

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "asd" / "data" / "models"
DIGITS = MODELS / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.load("digits")


def _int_output(comp, x: np.ndarray) -> np.ndarray:
    q = comp.qnet
    y = reference.int_forward(q, x)[q.graph.output]
    return reference.to_user(reference.dequantize(q, q.graph.output, y), q.graph)


@pytest.mark.parametrize("config", [AccelConfig(), AccelConfig(weights="int8", pe="multiplier")],
                         ids=["asd", "int8"])
def test_rounded_program_is_bit_exact_on_the_emulator(digits, config) -> None:
    with weight_rounding("gptq+bias", "quantized"):
        comp = compile_model(DIGITS, config, digits.x_train[:64])
    x = digits.x_test[:2]
    rep = runtime.run(comp, x, emulate="all")  # every image on the emulator, else raises
    q = comp.qnet
    want = reference.int_forward(q, x)[q.graph.output]
    assert np.array_equal(rep.output_int.reshape(want.shape), want)


def test_gptq_beats_nearest_on_a_shipped_model(digits) -> None:
    calib, x = digits.x_train[:64], digits.x_test[:200]
    ref = next(iter(reference.onnx_forward(DIGITS, x).values()))
    sqnr = {}
    for method in ("nearest", "gptq+bias"):
        with weight_rounding(method, "quantized"):
            comp = compile_model(DIGITS, AccelConfig(), calib)
        sqnr[method] = fidelity.sqnr_db(ref, _int_output(comp, x))
    # Measured 31.3 -> 35.7 dB (benchmarks/results/fidelity_compiled.json).
    assert sqnr["gptq+bias"] > sqnr["nearest"] + 2.0, sqnr


def test_small_calibration_is_damped_and_said(digits) -> None:
    with weight_rounding("gptq") as rnd:
        comp = compile_model(DIGITS, AccelConfig(), digits.x_train[:4])
    assert any("rank-deficient" in n and "damped" in n for n in rnd.notes), rnd.notes
    q = comp.qnet
    assert all(ql.w_int is not None for ql in q.qlayers.values() if ql.layer.op == "conv")


def test_non_finite_calibration_is_an_error_naming_the_tensor(digits) -> None:
    x = digits.x_train[:4].copy()
    x[1, 0, 2, 2] = np.inf
    with weight_rounding("gptq+bias"), pytest.raises(QuantizeError, match="finite"):
        compile_model(DIGITS, AccelConfig(), x)
    nhwc = np.zeros((2, 4, 4, 3))
    nhwc[0, 1, 1, 2] = np.nan
    with pytest.raises(ModelError, match="'t0'"):
        conv_stats(nhwc, (5, 3, 3, 3), (1, 1), (1, 1, 1, 1), 1, "'t0'")


def test_unknown_rounding_is_refused() -> None:
    with pytest.raises(AsdError, match="rounding 'best'"):
        WeightRounding("best").check()
    with pytest.raises(AsdError, match="inputs"):
        WeightRounding("gptq", "both").check()


def test_cli_rounding_and_bad_input_write_nothing(tmp_path, digits, capsys) -> None:
    bad = digits.x_train[:4].copy()
    bad[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    np.save(tmp_path / "few.npy", digits.x_train[:4])
    assert main(["compile", str(DIGITS), "-o", str(tmp_path / "a"), "--rounding", "gptq"]) == 2
    assert "needs calibration images" in capsys.readouterr().err
    assert main(["compile", str(DIGITS), "-o", str(tmp_path / "b"), "--calib",
                 str(tmp_path / "bad.npy")]) == 2
    assert "nan" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main(["compile", str(DIGITS), "-o", str(tmp_path / "c"), "--calib",
                 str(tmp_path / "few.npy"), "--json"]) == 0
    assert "rank-deficient" in capsys.readouterr().err
    man = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert man["rounding"]["method"] == "gptq+bias" and man["rounding"]["notes"]


def test_prelu_range_by_mse_lowers_the_layer_error() -> None:
    """R-Net's second PReLU conv: covering all of its negative pre-activations made the int8
    step 1.66x coarser than its output needs; the MSE range choice must measurably help."""
    ds = datasets.load("lfw_faces24")
    g = import_model(MODELS / "mtcnn_rnet.onnx")
    calib, x = ds.x_train[:64], ds.x_test
    f = reference.float_forward(g, x)
    lay = [la for la in g.layers if la.act == "prelu"][1]
    db = {}
    for mse in (False, True):
        q = quantize(g, AccelConfig(), calib, slope_mse=mse)
        got = reference.dequantize(q, lay.output, reference.int_forward(q, x)[lay.output])
        db[mse] = fidelity.sqnr_db(f[lay.output], got)
    assert db[True] > db[False] + 0.5, db


def test_fidelity_benchmark_runs(tmp_path) -> None:
    from benchmarks import bench_fidelity

    out = tmp_path / "f.json"
    assert bench_fidelity.main(["--networks", "digits_cnn", "--calib", "16", "--test", "20",
                                "--variants", f"int8 nearest,{bench_fidelity.BEST}",
                                "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["networks"][0]["rows"]
    assert {bench_fidelity.BEST, "int8 nearest", *bench_fidelity.ORT_ROWS} <= set(rows)
    assert rows[bench_fidelity.BEST]["emulator_bit_exact"]
    assert "within_3db" in doc["networks"][0]["goal"]


def test_fidelity_measures_count_ties_and_near_ties() -> None:
    from benchmarks.bench_fidelity import measures

    # Float top-2 margins 3, 0.5, 2, 0.1, 1: ranks (smallest first) 4, 1, 3, 0, 2.
    ref = np.array([[3.0, 0, 0], [0, 2.5, 2], [2, 0, 0], [0, 0.1, 0], [0, 1, 0]])
    out = ref.copy()
    out[1] = [0, 2, 2]  # tied, but argmax (the first class) is float's: no disagreement
    out[3] = [0.2, 0.1, 0]  # wrong, not tied: rank 0
    out[4] = [1, 1, 0]  # wrong and tied: rank 2
    m = measures(ref, out, np.zeros(5, int))
    assert m["agreement"] == 60.0 and m["tied"] == 1 and m["closest"] == 3
    assert measures(ref, ref, np.zeros(5, int))["closest"] == 0


def test_compile_model_takes_the_rounding(digits) -> None:
    # The keyword is the context manager's twin: the same integer network either way.
    calib = digits.x_train[:32]
    direct = compile_model(DIGITS, AccelConfig(), calib, rounding="gptq+bias",
                           rounding_inputs="quantized")
    with weight_rounding("gptq+bias", "quantized"):
        managed = compile_model(DIGITS, AccelConfig(), calib)
    nearest = compile_model(DIGITS, AccelConfig(), calib)
    key = next(n for n, ql in direct.qnet.qlayers.items() if ql.w_int is not None)
    assert np.array_equal(direct.qnet.qlayers[key].w_int, managed.qnet.qlayers[key].w_int)
    assert not np.array_equal(direct.qnet.qlayers[key].w_int, nearest.qnet.qlayers[key].w_int)

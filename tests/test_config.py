"""The accelerator configuration: validation names the field, serialization round trips."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.config import AccelConfig, ConfigError


@given(lanes=st.integers(1, 32), act=st.integers(2, 12), e=st.integers(1, 4),
       pe=st.sampled_from(["shiftadd", "multiplier"]))
def test_round_trip_toml_and_json(tmp_path_factory, lanes, act, e, pe):
    cfg = AccelConfig(lanes=lanes, act_bits=act, exp_bits=e, acc_bits=act + (1 << e) + 8, pe=pe)
    d = tmp_path_factory.mktemp("cfg")
    for name in ("c.toml", "c.json"):
        cfg.save(d / name)
        assert AccelConfig.load(d / name) == cfg


@pytest.mark.parametrize("field, value", [
    ("lanes", 0), ("lanes", 33), ("act_bits", 1), ("exp_bits", 5), ("acc_bits", 12),
    ("amem_depth", 1000), ("imem_depth", 1 << 17), ("loop_depth", 0), ("pe", "dsp"),
    ("lanes", 2.5), ("lanes", True),
])
def test_bad_field_is_named(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        AccelConfig(**{field: value})


def test_unknown_field_and_bad_file_are_named(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"lanez": 4}))
    with pytest.raises(ConfigError, match="lanez"):
        AccelConfig.load(p)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match=str(p)):
        AccelConfig.load(p)
    with pytest.raises(ConfigError, match="cannot read"):
        AccelConfig.load(tmp_path / "missing.toml")


def test_toml_with_table_header(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[accelerator]\nlanes = 4\npe = 'multiplier'\n")
    cfg = AccelConfig.load(p)
    assert (cfg.lanes, cfg.pe) == (4, "multiplier")


def test_hash_ignores_pe_only():
    base = AccelConfig()
    assert base.semantic_hash() == base.replace(pe="multiplier").semantic_hash()
    assert base.semantic_hash() != base.replace(lanes=4).semantic_hash()
    assert base.semantic_hash() != base.replace(amem_depth=1024).semantic_hash()

"""The no-multiply probe (``form="floor"``) the energy benchmark measures: bit-exact sums of
the activations, and refused where it is not built."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import pe_array
from contract import semantics
from tests.pe_sim import simulate
from tests.profiles import scaled_examples
from tests.strategies import mac_streams, small_configs


@pytest.mark.parametrize("mode", pe_array.FLOOR_MODES)
@settings(max_examples=scaled_examples(10))
@given(data=st.data(), config=small_configs(max_lanes=3, formats=("asd",)))
def test_floor_sums_the_activations(mode: str, data: st.DataObject, config) -> None:
    """Its product is the activation (weight 1), whatever the codes loaded."""
    c = config.replace(pe="shiftadd")
    x, codes = data.draw(mac_streams(c))
    want = [int(semantics.wrap(int(x.sum()), c.acc_bits))] * c.lanes
    assert simulate(c, mode, x, codes, pe_array.FLOOR_FORM) == want


def test_floor_on_the_extreme_activations() -> None:

    from contract.config import AccelConfig
    cfg = AccelConfig(lanes=2, act_bits=8, acc_bits=32)
    x = np.array([cfg.act_min, cfg.act_max, 0, cfg.act_min, -1, 1] * 20, np.int64)
    codes = np.zeros((len(x), 2), np.int64)
    for mode in pe_array.FLOOR_MODES:
        assert simulate(cfg, mode, x, codes, pe_array.FLOOR_FORM) == [int(x.sum())] * 2


@pytest.mark.parametrize("pe,mode", [("multiplier", "carrysave_drain"),
                                     ("shiftadd", "pipelined"), ("shiftadd", "carrysave")])
def test_floor_refused_where_not_built(pe: str, mode: str) -> None:
    from contract.config import AccelConfig
    cfg = AccelConfig(lanes=1, pe=pe, weights="asd")
    with pytest.raises(ValueError, match="floor.*pe = 'shiftadd'.*carrysave_drain"):
        pe_array.check_form(cfg, mode, pe_array.FLOOR_FORM)

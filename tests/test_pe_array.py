"""The PE-array designs `asd hwreport` synthesizes compute the layer, in every mode, for both
PE kinds and both weight formats, and for every form of the multiplier (resolved product,
Booth or plain partial products): MyHDL simulation against the emulator's products (the
synthesized netlists are checked the same way by the power proxy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from myhdl import (
    ResetSignal,
    Signal,
    Simulation,
    StopSimulation,
    always,
    block,
    delay,
    instance,
    intbv,
)

from accel import arith, lanes, pe_array
from accel.hdl import fast_elaboration
from accel.pe import MULTIPLIER_FORMS
from contract import semantics
from contract.config import AccelConfig
from tests.pe_sim import simulate
from tests.profiles import scaled_examples
from tests.strategies import mac_streams, small_configs


def expected(c: AccelConfig, mode: str, x: np.ndarray, codes: np.ndarray) -> list[int]:
    prods = semantics.product(x[:, None], codes, c.weights, c.exp_bits)
    total = prods[-1] if mode == "product" else prods.sum(axis=0)
    return [int(v) for v in semantics.wrap(total, c.acc_bits)]


@pytest.mark.parametrize("kind", ["shiftadd", "multiplier"])
@pytest.mark.parametrize("mode", lanes.MODES)
@settings(max_examples=scaled_examples(20))
@given(data=st.data(), config=small_configs(max_lanes=3, formats=("asd",)))  # MyHDL: slow
def test_pe_array_equals_emulator(kind: str, mode: str, data: st.DataObject,
                                  config: AccelConfig) -> None:
    c = config.replace(pe=kind)
    x, codes = data.draw(mac_streams(c))
    assert simulate(c, mode, x, codes) == expected(c, mode, x, codes)


def forms_of(mode: str) -> tuple[str, ...]:
    """The multiplier forms ``mode`` builds: partial products only where sums stay
    unresolved (carry-save lanes, the compressor tree)."""
    spec = lanes.lane_mode(mode)
    return MULTIPLIER_FORMS if spec.carry_save or spec.tree else ("resolved",)


@pytest.mark.parametrize("weights", ["asd", "int8"])
@pytest.mark.parametrize("mode", lanes.MODES)
@settings(max_examples=scaled_examples(10))
@given(data=st.data())
def test_multiplier_forms_equal_emulator(weights: str, mode: str, data: st.DataObject) -> None:
    """Every multiplier form, fed the decoded ASD code or plain int8 weights."""
    c = data.draw(small_configs(max_lanes=3, formats=(weights,))).replace(pe="multiplier")
    x, codes = data.draw(mac_streams(c))
    for form in forms_of(mode):
        assert simulate(c, mode, x, codes, form) == expected(c, mode, x, codes), form


@pytest.mark.parametrize("mode", [m for m in lanes.MODES if m != "product"])
@pytest.mark.parametrize("act_bits,acc_bits", [(8, 32), (16, 32), (2, 10)])
def test_int8_every_weight_on_the_extreme_activations(mode: str, act_bits: int,
                                                      acc_bits: int) -> None:
    """All 256 int8 weights (-128 and the Booth digits' -0, 111, among them) against the
    most negative and the largest activation, in every form: the partial products' widths,
    biases and constant are exactly enough."""
    c = AccelConfig(lanes=2, act_bits=act_bits, acc_bits=acc_bits, pe="multiplier",
                    weights="int8")
    every = np.arange(256, dtype=np.int64)
    codes = np.stack([np.concatenate([every, every]), np.concatenate([every, every])[::-1]], 1)
    x = np.repeat(np.array([c.act_min, c.act_max], np.int64), len(every))
    for form in forms_of(mode):
        assert simulate(c, mode, x, codes, form) == expected(c, mode, x, codes), form


def test_partial_product_forms_refused_where_products_resolve() -> None:
    c = AccelConfig(lanes=2, pe="multiplier", weights="int8")
    with pytest.raises(ValueError, match="only the carry-save and tree modes.*'pipelined'"):
        pe_array.check_form(c, "pipelined", "booth")
    with pytest.raises(ValueError, match="needs pe = 'multiplier', not 'shiftadd'"):
        pe_array.check_form(AccelConfig(lanes=2), "carrysave", "array")
    with pytest.raises(ValueError, match="unknown multiplier form 'wallace'"):
        pe_array.check_form(c, "carrysave", "wallace")


@pytest.mark.parametrize("mode", lanes.CARRYSAVE_MODES)
def test_carrysave_blocks_carry_across_and_wrap(mode: str) -> None:
    """Sums that carry across every block boundary and wrap at acc_bits, with negated digits
    on zero activations and zero weights mixed in."""
    c = AccelConfig(lanes=2, act_bits=8, exp_bits=3, acc_bits=17)
    n = 60
    x = np.where(np.arange(n) % 5 == 0, 0, 127).astype(np.int64)
    codes = np.empty((n, 2), np.int64)
    codes[:, 0] = 0b0000_0000  # 2 * 2**7 = 256 per unit of x: the sum wraps 17 bits
    codes[:, 1] = np.where(np.arange(n) % 3 == 0, 127, 0b1000_1111)  # zero weight, negative
    want = expected(c, mode, x, codes)
    assert semantics.wrap(int((x * 256).sum()), 17) == want[0]  # it did wrap
    assert int((x * 256).sum()) != want[0]
    for kind in ("shiftadd", "multiplier"):
        assert simulate(c.replace(pe=kind), mode, x, codes) == want
    for form in MULTIPLIER_FORMS[1:]:
        assert simulate(c.replace(pe="multiplier"), mode, x, codes, form) == want


@pytest.mark.parametrize("mode", lanes.MODES)
@pytest.mark.parametrize("act_bits,exp_bits,acc_bits", [(8, 3, 32), (16, 3, 32), (16, 4, 40),
                                                        (2, 1, 5)])
def test_every_code_on_the_extreme_activations(mode: str, act_bits: int, exp_bits: int,
                                               acc_bits: int) -> None:
    """Every weight code against the most negative and the largest activation: the widths
    of the shifted terms (two bits under the product in the carry-save lane), of -x (one bit
    over x) and of the decoded multiplier weights are exactly enough, from the narrowest
    configuration to the widest (16-bit activations, 16 digit positions, 40-bit sums)."""
    c = AccelConfig(lanes=2, act_bits=act_bits, exp_bits=exp_bits, acc_bits=acc_bits)
    every = np.arange(1 << c.code_bits, dtype=np.int64)
    codes = np.stack([np.concatenate([every, every]), np.concatenate([every, every])[::-1]], 1)
    x = np.repeat(np.array([c.act_min, c.act_max], np.int64), len(every))
    for kind in ("shiftadd", "multiplier"):
        k = c.replace(pe=kind)
        if mode == "product":  # shows the last product only: one MAC a run
            for i in range(0, len(x), len(x) // 14 | 1):  # about 14 MACs, codes of all kinds
                assert simulate(k, mode, x[i:i + 1], codes[i:i + 1]) == \
                    expected(k, mode, x[i:i + 1], codes[i:i + 1])
        else:
            assert simulate(k, mode, x, codes) == expected(k, mode, x, codes)


def test_tree_lane_sums_its_largest_products_in_one_cycle() -> None:
    """The compressor tree's rows are exactly wide enough: every product of a cycle at the
    largest magnitude of either sign (and then the sum wrapping at acc_bits)."""
    c = AccelConfig(lanes=2, act_bits=8, exp_bits=3, acc_bits=32)
    every = np.arange(1 << c.code_bits, dtype=np.int64)
    k = lanes.TREE_PRODUCTS
    for xv in (c.act_min, c.act_max):
        prods = semantics.shift_add(np.int64(xv), every, c.exp_bits)
        top, bottom = every[np.argmax(prods)], every[np.argmin(prods)]
        x = np.full(3 * k, xv, np.int64)
        codes = np.stack([np.repeat([top, bottom, top], k), np.repeat([bottom, top, top], k)], 1)
        for kind in ("shiftadd", "multiplier"):
            assert simulate(c.replace(pe=kind), "tree", x, codes) == expected(c, "tree", x, codes)
    small = AccelConfig(lanes=1, act_bits=8, exp_bits=3, acc_bits=17)
    x = np.full(4 * k, small.act_min, np.int64)
    codes = np.full((4 * k, 1), 0, np.int64)  # 2 * 2**7 * -128 each: wraps 17 bits
    want = expected(small, "tree", x, codes)
    assert want[0] != int(semantics.shift_add(x, codes[:, 0], 3).sum())
    for kind in ("shiftadd", "multiplier"):
        assert simulate(small.replace(pe=kind), "tree", x, codes) == want


@pytest.mark.parametrize("count,width,acc_bits", [(36, 21, 24), (20, 25, 32), (3, 5, 6),
                                                   (1, 4, 4), (12, 8, 10)])
def test_tree_accumulate_takes_any_number_of_terms(count: int, width: int,
                                                   acc_bits: int) -> None:
    """``arith.tree_accumulate`` alone, with more terms than either PE kind hands it (a
    Booth multiplier brings five a weight) and sums wider than the accumulator: 36 terms
    into 24 bits once overflowed the sign extension of its upper operand."""
    rng = np.random.default_rng(count * 1000 + width)
    cycles = 6
    lo, hi = -(1 << (width - 1)), 1 << (width - 1)
    values = rng.integers(lo, hi, (cycles, count))
    values[0] = lo  # the most negative terms, then the largest
    values[1] = hi - 1
    signs = rng.integers(0, 2, (cycles, count))
    clk, rst = Signal(bool(0)), ResetSignal(1, active=1, isasync=False)
    terms = [Signal(intbv(0, min=lo, max=hi)) for _ in range(count)]
    ones = [Signal(bool(0)) for _ in range(count)]
    acc = Signal(intbv(0, min=-(1 << (acc_bits - 1)), max=1 << (acc_bits - 1)))
    with fast_elaboration():
        dut = arith.tree_accumulate(terms, ones, acc, clk, rst)
    got: list[int] = []

    @block
    def bench():
        @always(delay(5))
        def clock():
            clk.next = not clk

        @instance
        def stimulus():
            yield clk.negedge
            rst.next = 0
            for t in range(cycles + 2):  # two more cycles of zeros drain the pipeline
                for i in range(count):
                    terms[i].next = int(values[t, i]) if t < cycles else 0
                    ones[i].next = bool(signs[t, i]) if t < cycles else False
                yield clk.negedge
            got.append(int(acc.val))
            raise StopSimulation

        return clock, stimulus

    Simulation(dut, bench()).run(quiet=1)
    want = semantics.wrap(int(values.sum() + signs.sum()), acc_bits)
    assert semantics.wrap(got[0], acc_bits) == want

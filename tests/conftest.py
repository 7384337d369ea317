"""Shared pytest options.  ``--backend`` picks the simulator the RTL tests run on (as VTA runs
the same tests on fsim and tsim): myhdl (default), icarus, ghdl, verilator, or all of them."""

from __future__ import annotations

import pytest
from hypothesis import settings

from contract.backend import RTL_BACKENDS

# Examples are judged by their results, never by their time: ./dev test runs the suites side
# by side on shared cores, where Hypothesis's 200 ms default deadline would fail at random.
settings.register_profile("asd", deadline=None)
settings.load_profile("asd")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", action="store", default="myhdl",
                     choices=(*RTL_BACKENDS, "all"),
                     help="simulator for the RTL tests (-m rtl): myhdl, icarus, ghdl, "
                          "verilator or all (default myhdl)")


def selected_backends(config: pytest.Config) -> list[str]:
    choice = config.getoption("--backend")
    return list(RTL_BACKENDS) if choice == "all" else [choice]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", selected_backends(metafunc.config))

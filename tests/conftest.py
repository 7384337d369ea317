"""Shared pytest options.  ``--backend`` picks the simulator the RTL tests run on (as VTA runs
the same tests on fsim and tsim): myhdl (default), icarus, ghdl, verilator, or all of them.
``--hypothesis-profile`` (or ``HYPOTHESIS_PROFILE``) picks how hard the property tests search:
dev (default), ci or fuzz (tests/profiles.py)."""

from __future__ import annotations

import pytest

from contract.backend import RTL_BACKENDS
from tests.profiles import register_profiles

# At import, before Hypothesis's plugin reads --hypothesis-profile and before any test module
# reads the loaded profile's counts.
register_profiles()


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

"""Hypothesis profiles: how hard the property tests search.

* ``dev`` (the default): a quarter of CI's examples, for quick runs while editing;
* ``ci`` (tox, hence ``./dev test`` and CI): the counts the suite is tuned to;
* ``fuzz``: ten times CI's, for a long hunt (``./dev test -e py -- --hypothesis-profile=fuzz``).

A run picks one with pytest's ``--hypothesis-profile=NAME``, else the ``HYPOTHESIS_PROFILE``
environment variable, else ``dev``.  A test whose examples cost more or less than usual states
its CI count through :func:`scaled_examples`, so every profile scales it alike.
"""

from __future__ import annotations

import os

from hypothesis import settings

# Hypothesis's own default, which CI has always run for tests that set no count.
CI_MAX_EXAMPLES = 100
PROFILE_MAX_EXAMPLES = {"dev": CI_MAX_EXAMPLES // 4, "ci": CI_MAX_EXAMPLES,
                        "fuzz": 10 * CI_MAX_EXAMPLES}
DEFAULT_PROFILE = "dev"


def register_profiles() -> None:
    """Register the profiles and load the one ``HYPOTHESIS_PROFILE`` names (``dev`` if unset);
    Hypothesis's pytest plugin then loads ``--hypothesis-profile``'s, if given, over it."""
    for name, max_examples in PROFILE_MAX_EXAMPLES.items():
        # No deadline: examples are judged by their results, never by their time, and
        # ./dev test runs the suites side by side on shared cores, where Hypothesis's 200 ms
        # default would fail at random.  Random, not derandomized as Hypothesis's own ci
        # profile is: CI's fresh draws are what finds new bugs.  The blob makes a failure
        # seen in CI reproducible with @reproduce_failure.
        settings.register_profile(name, max_examples=max_examples, deadline=None,
                                  derandomize=False, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", DEFAULT_PROFILE))


def scaled_examples(ci_count: int) -> int:
    """A test's example count under the loaded profile, given its count under ``ci``; at least
    one.  Read when the test's module is imported, after the profile is loaded."""
    max_examples = settings().max_examples  # the loaded profile's
    return max(1, -(-ci_count * max_examples // CI_MAX_EXAMPLES))


# What `tox -e fuzz` runs per property class of tests/test_reliability_fuzz.py (assembler
# text, configuration files, program images, emulator programs, ONNX graphs);
# ASD_FUZZ_EXAMPLES sets another count, e.g. a short smoke run of the environment.
FUZZ_EXAMPLES = 10_000


def fuzz_examples(ci_count: int) -> int:
    """A fuzz property's example count: ``ci_count`` scaled like any test (a few hundred in
    CI), but FUZZ_EXAMPLES (or ``$ASD_FUZZ_EXAMPLES``) under the ``fuzz`` profile."""
    if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
        return int(os.environ.get("ASD_FUZZ_EXAMPLES", FUZZ_EXAMPLES))
    return scaled_examples(ci_count)

"""The Hypothesis profiles: HYPOTHESIS_PROFILE picks one (dev when unset), ci keeps each test's
count, dev and fuzz scale it, none has a deadline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.profiles import DEFAULT_PROFILE, PROFILE_MAX_EXAMPLES, register_profiles, scaled_examples


@pytest.fixture
def restore_profile() -> Iterator[None]:
    """The profile this run loaded comes back after the test loads another."""
    before = settings.get_current_profile_name()
    yield
    settings.load_profile(before)


@pytest.mark.parametrize("profile, ci_count, want", [
    ("ci", 250, 250), ("ci", 15, 15), ("ci", 1, 1),
    ("dev", 300, 75), ("dev", 150, 38), ("dev", 8, 2), ("dev", 1, 1),
    ("fuzz", 30, 300), ("fuzz", 1, 10)])
def test_counts_scale_with_the_profile(restore_profile: None, profile: str, ci_count: int,
                                       want: int) -> None:
    settings.load_profile(profile)
    assert scaled_examples(ci_count) == want


@pytest.mark.parametrize("profile", sorted(PROFILE_MAX_EXAMPLES))
def test_no_profile_has_a_deadline(profile: str) -> None:
    assert settings.get_profile(profile).deadline is None


def test_the_environment_picks_the_profile(restore_profile: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "fuzz")
    register_profiles()
    assert settings.get_current_profile_name() == "fuzz"
    monkeypatch.delenv("HYPOTHESIS_PROFILE")
    register_profiles()
    assert settings.get_current_profile_name() == DEFAULT_PROFILE == "dev"

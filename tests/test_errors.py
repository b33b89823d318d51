"""The option checks of edgeskin.errors: what passes, and the one-line ConfigError for what does not."""

from __future__ import annotations

import pytest

from edgeskin.errors import ConfigError, check_at_least, check_fraction


@pytest.mark.parametrize("value", [None, 0, 0.5, 1, 1.0])
def test_a_fraction_in_range_or_none_passes(value) -> None:
    check_fraction(value, "threshold")


@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan"), "0.5"])
def test_a_fraction_out_of_range_names_the_option(value) -> None:
    with pytest.raises(ConfigError, match=r"^threshold: expected a number in \[0, 1\] or None, got "):
        check_fraction(value, "threshold")


@pytest.mark.parametrize(("value", "minimum"), [(32, 32), (33, 32), (0, 0), (0.5, 0), (1e9, 1)])
def test_a_number_at_least_the_minimum_passes(value, minimum) -> None:
    check_at_least(value, minimum, "side")


@pytest.mark.parametrize(("value", "minimum"), [(31, 32), (-0.1, 0), (float("nan"), 0), (None, 1), ("64", 32)])
def test_a_number_below_the_minimum_or_not_a_number_names_the_option(value, minimum) -> None:
    with pytest.raises(ConfigError, match=rf"^side: expected a number of at least {minimum} pixels, got "):
        check_at_least(value, minimum, "side", " pixels")


def test_the_checks_raise_a_value_error_for_callers_that_catch_one() -> None:
    with pytest.raises(ValueError):
        check_at_least(1, 32, "analysis_side")

"""The fault-injection suite's pause points: a typo must fail loudly, not make a trial vacuous."""

from __future__ import annotations

import doctest

import pytest

import plantstream.faultpoint as faultpoint
from plantstream.errors import ConfigError


@pytest.mark.parametrize("text", ["before_comit@3", "before_commit", "before_commit@0", "after_commit@x"])
def test_a_fault_point_that_names_no_step_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="PLANTSTREAM_FAULT_POINT"):
        faultpoint.parse(text)


def test_unset_it_never_stops_the_process() -> None:
    assert faultpoint._POINT is None  # the test process has no fault point
    for step in faultpoint.STEPS:
        faultpoint.reached(step)  # returns: a SIGSTOP here would hang the suite


def test_docstring_examples() -> None:
    result = doctest.testmod(faultpoint)
    assert result.attempted > 0 and result.failed == 0

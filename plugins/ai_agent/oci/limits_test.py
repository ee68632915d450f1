"""The network limits: when retries stop, which flags a command line gets, and how the cores'
command lines read them back."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from .limits import (
    InvalidNetworkLimit,
    NetworkLimits,
    add_limit_arguments,
    limits_from,
)

DEFAULT = NetworkLimits(attempts=5)
NAN = float("nan")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="core")
    add_limit_arguments(parser, DEFAULT)
    return parser


def test_retries_wait_twice_as_long_each_time_up_to_10_s() -> None:
    limits = NetworkLimits(attempts=8)
    delays = [limits.retry_delay(tried, 0, 1.5) for tried in range(1, 8)]
    assert delays == [1.5, 3.0, 6.0, 10.0, 10.0, 10.0, 10.0]


def test_no_retry_once_the_attempts_are_spent_or_it_would_start_past_the_total() -> None:
    limits = NetworkLimits(attempts=3, total_s=20)
    assert limits.retry_delay(3, 0, 1) is None
    assert limits.given_up(3, 7.4) == "gave up after 3 attempt(s) in 7 s"
    assert limits.retry_delay(2, 15.9, 2) == 4
    assert limits.retry_delay(2, 16, 2) is None
    assert limits.given_up(2, 16) == (
        "gave up after 2 attempt(s) in 16 s: another would start past the total limit of 20 s"
    )


def test_only_limits_that_differ_from_the_defaults_become_flags() -> None:
    assert DEFAULT.args(DEFAULT) == ()
    assert NetworkLimits(attempts=5, total_s=5).args(DEFAULT) == ("--total-timeout", "5")
    changed = NetworkLimits(connect_s=2.5, read_s=30, attempts=1, total_s=600)
    assert changed.args(DEFAULT) == (
        "--connect-timeout",
        "2.5",
        "--read-timeout",
        "30",
        "--attempts",
        "1",
    )


def test_a_command_line_reads_back_the_flags_it_was_given() -> None:
    assert limits_from(_parser().parse_args([])) == DEFAULT
    limits = NetworkLimits(connect_s=0.25, read_s=7, attempts=9, total_s=1e4)
    assert limits_from(_parser().parse_args(list(limits.args(DEFAULT)))) == limits


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--attempts", "0", "0 is not a whole number of at least 1"),
        ("--attempts", "1.5", "'1.5' is not a whole number of at least 1"),
        ("--read-timeout", "-1", "-1.0 is not a positive number"),
        ("--total-timeout", "inf", "inf is not a positive number"),
        ("--connect-timeout", "soon", "'soon' is not a positive number"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_the_flag(
    flag: str, value: str, expected: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit:
        _parser().parse_args([flag, value])
    assert exit.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"core: error: argument {flag}: {expected}"


@pytest.mark.parametrize("field, value", [("attempts", 0), ("connect_s", 0.0), ("total_s", NAN)])
def test_limits_refuse_what_no_flag_would_take(field: str, value: float) -> None:
    with pytest.raises(InvalidNetworkLimit) as error:
        dataclasses.replace(NetworkLimits(), **{field: value})
    assert error.value.field == field

"""The `[ai-agents]` network options as flags of the build steps that reach the network."""

from __future__ import annotations

import pytest
from pants.testutil.option_util import create_subsystem

from ai_agent.subsystems import AiAgentSubsystem, InvalidNetworkOption
from ai_agent.util_rules.network import NetworkLimitArgs, network_limit_args

OPTIONS = (
    "network_connect_timeout",
    "network_read_timeout",
    "network_attempts",
    "network_total_timeout",
)


def _limit_args(**options: object) -> NetworkLimitArgs:
    """The flags for these options, the others at their registered defaults."""
    defaults = {name: getattr(AiAgentSubsystem, name).flag_options["default"] for name in OPTIONS}
    return network_limit_args(create_subsystem(AiAgentSubsystem, **{**defaults, **options}))


def test_default_options_add_no_flag_so_command_lines_stay_as_they_were() -> None:
    assert _limit_args() == NetworkLimitArgs(downloads=(), registries=())


def test_a_set_option_reaches_downloads_and_registries_where_it_changes_their_limit() -> None:
    assert _limit_args(network_total_timeout=5.0, network_attempts=3) == NetworkLimitArgs(
        downloads=("--total-timeout", "5.0"),  # 3 attempts: the downloads' own default
        registries=("--attempts", "3", "--total-timeout", "5.0"),
    )


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("network_attempts", 0, "0 is not a whole number of at least 1"),
        ("network_read_timeout", -1.0, "-1.0 is not a positive number"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_option(
    option: str, value: object, expected: str
) -> None:
    with pytest.raises(InvalidNetworkOption) as error:
        _limit_args(**{option: value})
    flag = option.replace("_", "-")
    assert str(error.value) == (
        f"[ai-agents].{option}: {expected}; set it in pants.toml or with --ai-agents-{flag}"
    )

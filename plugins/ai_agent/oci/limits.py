"""The network limits every download and registry request of a build step works within, and the
command-line flags that set them (`connection.py` has the HTTP connections that keep them).

Shared by the `oci`, `debian` and `wheels` cores, so that a mirror, PyPI and a registry are
bounded alike and by the same `[ai-agents]` options. Apart from the connections, so that a
command line that only declares the flags (every `oci` command's parser) does not import
`http.client`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Optional, Tuple, cast

from .errors import OciError

# Retries wait twice as long as the one before, up to this.
MAX_RETRY_DELAY_S = 10.0
# The flag that sets each limit on the cores' command lines.
_FLAGS = {
    "connect_s": "--connect-timeout",
    "read_s": "--read-timeout",
    "attempts": "--attempts",
    "total_s": "--total-timeout",
}


class InvalidNetworkLimit(OciError, ValueError):
    """A limit is not a positive number (for `attempts`: a whole number of at least 1)."""

    def __init__(self, field: str, value: object) -> None:
        expected = "a whole number of at least 1" if field == "attempts" else "a positive number"
        super().__init__(f"{value!r} is not {expected}")
        self.field = field


def _check(field: str, value: object) -> None:
    if field == "attempts":
        valid = isinstance(value, int) and value >= 1
    else:
        valid = isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    if not valid:
        raise InvalidNetworkLimit(field, value)


@dataclass(frozen=True)
class NetworkLimits:
    """How long one download or registry operation may take: to connect, between two arrivals
    of data, how many tries, and `total_s` after which no retry starts (a try under way is
    bounded by the two timeouts instead, so a transfer that keeps receiving is never cut)."""

    connect_s: float = 15.0
    read_s: float = 60.0
    attempts: int = 3
    total_s: float = 600.0

    def __post_init__(self) -> None:
        for field in _FLAGS:
            _check(field, getattr(self, field))

    def retry_delay(self, tried: int, elapsed_s: float, first_delay_s: float) -> Optional[float]:
        """Seconds to wait before try number `tried + 1` (doubling from `first_delay_s`, at most
        MAX_RETRY_DELAY_S), or None when the attempts are spent or it would start after
        `total_s`."""
        if tried >= self.attempts:
            return None
        delay = min(MAX_RETRY_DELAY_S, first_delay_s * 2.0 ** (tried - 1))
        return None if elapsed_s + delay >= self.total_s else delay

    def given_up(self, tried: int, elapsed_s: float) -> str:
        """Why the retries stopped after `tried` tries, for an error message."""
        said = f"gave up after {tried} attempt(s) in {elapsed_s:.0f} s"
        if tried >= self.attempts:
            return said
        return f"{said}: another would start past the total limit of {self.total_s:g} s"

    def args(self, default: NetworkLimits) -> Tuple[str, ...]:
        """The flags that set these limits on a command line whose defaults are `default`: only
        those that differ, so that default limits leave command lines (cache keys) unchanged."""
        return tuple(
            arg
            for field, flag in _FLAGS.items()
            if getattr(self, field) != getattr(default, field)
            for arg in (flag, str(getattr(self, field)))
        )


def add_limit_arguments(parser: argparse.ArgumentParser, default: NetworkLimits) -> None:
    """The four limit flags, defaulting to `default`; read them back with `limits_from`."""
    helps = {
        "connect_s": "seconds to make a connection",
        "read_s": "seconds to wait for an answer or the next data",
        "attempts": "tries of each download or request",
        "total_s": "seconds after the first try when no retry starts",
    }
    for field, flag in _FLAGS.items():
        parser.add_argument(
            flag,
            dest=field,
            type=functools.partial(_parse, field),
            default=getattr(default, field),
            metavar="N" if field == "attempts" else "SECONDS",
            help=f"{helps[field]} (default: {getattr(default, field):g})",
        )


def _parse(field: str, text: str) -> float:
    value: object = text
    with contextlib.suppress(ValueError):  # not a number: refused by _check as it is
        value = int(text) if field == "attempts" else float(text)
    try:
        _check(field, value)
    except InvalidNetworkLimit as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return cast(float, value)


def limits_from(args: argparse.Namespace) -> NetworkLimits:
    """The limits that `add_limit_arguments`' flags set (already checked as they were parsed)."""
    return NetworkLimits(**{field: getattr(args, field) for field in _FLAGS})


# The limits of the command lines that reach registries (`oci lock-base|pull-blob|push`): more
# attempts than a download gets, for registries that answer 429 or 503 under load.
REGISTRY_LIMITS = NetworkLimits(attempts=5)

"""Debian version numbers, ordered exactly as `dpkg --compare-versions` orders them.

A version is `[epoch:]upstream[-revision]` (Debian Policy 5.6.12). The epoch compares as an
integer; upstream and revision compare with dpkg's `verrevcmp`: alternating runs of non-digits
(compared character by character, `~` before everything including the end of the string, letters
before other characters) and digits (compared as integers). A missing revision compares like `0`,
so `1.0` and `1.0-0` are the same version, as they are to dpkg.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Tuple

from .errors import DebianError

# Characters Debian Policy allows; the epoch and revision separators are checked separately.
_UPSTREAM = re.compile(r"^[0-9][A-Za-z0-9.+~:-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9.+~]+$")
_RUNS = re.compile(r"([^0-9]*)([0-9]*)")

RELATION_OPERATORS = ("<<", "<=", "=", ">=", ">>")


class InvalidVersion(DebianError, ValueError):
    """A version string does not follow Debian Policy's `[epoch:]upstream[-revision]` syntax."""


def _order(character: str) -> int:
    """dpkg's weight of one non-digit character: `~` lowest, then the end of the string (0),
    then letters, then everything else."""
    if character == "~":
        return -1
    if character.isalpha():
        return ord(character)
    return ord(character) + 256


def _compare_part(left: str, right: str) -> int:
    """dpkg's `verrevcmp` on an upstream version or a revision."""
    left_runs = _RUNS.findall(left)
    right_runs = _RUNS.findall(right)
    length = max(len(left_runs), len(right_runs))
    padding = ("", "")
    for index in range(length):
        left_text, left_digits = left_runs[index] if index < len(left_runs) else padding
        right_text, right_digits = right_runs[index] if index < len(right_runs) else padding
        for position in range(max(len(left_text), len(right_text))):
            left_weight = _order(left_text[position]) if position < len(left_text) else 0
            right_weight = _order(right_text[position]) if position < len(right_text) else 0
            if left_weight != right_weight:
                return -1 if left_weight < right_weight else 1
        left_number = int(left_digits or "0")
        right_number = int(right_digits or "0")
        if left_number != right_number:
            return -1 if left_number < right_number else 1
    return 0


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A parsed Debian version; `==`, `<` and `hash` follow dpkg's ordering (so `1.0` equals
    `0:1.0-0`), and `str` gives the text it was parsed from."""

    epoch: int
    upstream: str
    revision: str
    text: str

    @classmethod
    def parse(cls, text: str) -> Version:
        epoch_text, colon, rest = text.partition(":")
        if not colon:
            epoch_text, rest = "0", text
        if not epoch_text.isdigit() or not epoch_text.isascii():
            raise InvalidVersion(f"version {text!r}: epoch {epoch_text!r} is not a number")
        upstream, hyphen, revision = rest.rpartition("-")
        if not hyphen:
            upstream, revision = rest, ""
        elif not _REVISION.match(revision):
            raise InvalidVersion(f"version {text!r}: revision {revision!r} is empty or invalid")
        if not _UPSTREAM.match(upstream):
            raise InvalidVersion(
                f"version {text!r}: upstream part {upstream!r} must start with a digit and hold"
                " only letters, digits and `.+~-:`"
            )
        return cls(int(epoch_text), upstream, revision, text)

    def compare(self, other: Version) -> int:
        """-1, 0 or 1 as `self` is lower than, equal to or higher than `other`."""
        if self.epoch != other.epoch:
            return -1 if self.epoch < other.epoch else 1
        return _compare_part(self.upstream, other.upstream) or _compare_part(
            self.revision, other.revision
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.compare(other) == 0

    def __lt__(self, other: Version) -> bool:
        return self.compare(other) < 0

    def __hash__(self) -> int:
        return hash((self.epoch, _canonical_part(self.upstream), _canonical_part(self.revision)))

    def __str__(self) -> str:
        return self.text


def _canonical_part(part: str) -> Tuple[Tuple[str, int], ...]:
    """The runs of `part` with numbers as integers and trailing empty runs dropped: two parts
    compare equal exactly when these are equal."""
    runs = [(text, int(digits or "0")) for text, digits in _RUNS.findall(part)]
    while runs and runs[-1] == ("", 0):
        runs.pop()
    return tuple(runs)


def compare_versions(left: str, right: str) -> int:
    """`dpkg --compare-versions` as -1, 0 or 1."""
    return Version.parse(left).compare(Version.parse(right))


def satisfies(version: Version, operator: str, bound: Version) -> bool:
    """Whether `version` meets the relation `(operator bound)` of a dependency field."""
    order = version.compare(bound)
    if operator == "<<":
        return order < 0
    if operator == "<=":
        return order <= 0
    if operator == "=":
        return order == 0
    if operator == ">=":
        return order >= 0
    if operator == ">>":
        return order > 0
    raise ValueError(f"unknown version relation {operator!r}; expected one of {RELATION_OPERATORS}")

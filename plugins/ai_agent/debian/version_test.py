"""Debian version ordering, checked against `dpkg --compare-versions` itself on real versions."""

from __future__ import annotations

import concurrent.futures
import random
import shlex
import subprocess
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest

from testkit.components import require_binary

from .version import InvalidVersion, Version, compare_versions, satisfies

TESTDATA = Path(__file__).parent / "testdata"
# Hand-picked corners of the algorithm: epochs, `~` before everything (even the end), letters
# before other characters, leading zeros, a missing revision comparing like `0`.
EDGE_CASES = [
    ("1.0", "1.0"),
    ("1.0", "1.0-0"),
    ("0:1.0", "1.0"),
    ("1.0-1", "1.0-01"),
    ("1:0.1", "2.0"),
    ("2:1", "10:0"),
    ("1.0~rc1", "1.0"),
    ("1.0~rc1", "1.0~rc2"),
    ("1.0~~", "1.0~"),
    ("1.0~", "1.0"),
    ("1.0~rc1-1", "1.0-1"),
    ("1.0a", "1.0"),
    ("1.0a", "1.0+"),
    ("1.0+", "1.0."),
    ("1.0-a-1", "1.0.a-1"),
    ("1.0-1", "1.0-1+b1"),
    ("1.0-1+b1", "1.0-1.1"),
    ("1.0-1~bpo1", "1.0-1"),
    ("1.0+dfsg-1", "1.0-1"),
    ("1.0.0", "1.0"),
    ("1.00", "1.0"),
    ("1.0010", "1.9"),
    ("9", "10"),
    ("1.2.3-4", "1.2.3-4ubuntu1"),
    ("2.36-9+deb12u9", "2.36-9+deb12u10"),
    ("3.0.15-1~deb12u1", "3.0.15-1"),
    ("1:9.2p1-2+deb12u7", "1:9.2p1-2+deb12u10"),
    ("20230311+deb12u1", "20250419~deb12u2"),
    ("0", "0.0"),
    ("1-a", "1-A"),
    ("1-Z", "1-a"),
    ("1-1-1", "1-1-2"),
    ("1:1:1", "1:1:0"),
]


def _real_pairs() -> List[Tuple[str, str]]:
    lines = (TESTDATA / "versions.txt").read_text().splitlines()
    versions = [line for line in lines if line and not line.startswith("#")]
    neighbours = list(zip(versions, versions[1:]))
    rng = random.Random(20260711)
    shuffled = [(rng.choice(versions), rng.choice(versions)) for _ in range(400)]
    return neighbours + shuffled


def _dpkg_orders(pairs: Sequence[Tuple[str, str]]) -> List[int]:
    """dpkg's verdict on each pair (-1, 0, 1), one shell per core running dpkg per pair."""
    dpkg = require_binary("dpkg", "dpkg")  # the reference here

    def run(chunk: Sequence[Tuple[str, str]]) -> List[int]:
        script = "".join(
            f"if {dpkg} --compare-versions {shlex.quote(a)} lt {shlex.quote(b)}; then echo -1;"
            f" elif {dpkg} --compare-versions {shlex.quote(a)} eq {shlex.quote(b)}; then echo 0;"
            " else echo 1; fi\n"
            for a, b in chunk
        )
        output = subprocess.run(
            ["sh", "-e"], input=script, capture_output=True, text=True, check=True
        ).stdout
        return [int(line) for line in output.split()]

    chunks = [pairs[index::2] for index in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(run, chunks)
    merged = [0] * len(pairs)
    merged[0::2], merged[1::2] = first, second
    return merged


def test_agrees_with_dpkg_on_real_and_edge_case_versions() -> None:
    pairs = _real_pairs() + EDGE_CASES
    assert len(pairs) >= 2000
    expected = _dpkg_orders(pairs)
    disagreements = [
        (a, b, ours, theirs)
        for (a, b), theirs in zip(pairs, expected)
        for ours in [compare_versions(a, b)]
        if ours != theirs
    ]
    assert not disagreements, disagreements[:10]
    assert expected.count(-1) > 100 and expected.count(1) > 100 and expected.count(0) >= 5


def test_equal_versions_are_equal_and_hash_alike() -> None:
    same = [Version.parse(text) for text in ("1.0", "0:1.0", "1.0-0", "1.00", "01.0-00")]
    assert all(version == same[0] for version in same)
    assert len(set(same)) == 1
    assert Version.parse("1.0") != Version.parse("1.0-1")
    assert str(Version.parse("0:1.0-0")) == "0:1.0-0"


def test_sorting_uses_dpkg_order() -> None:
    texts = ["1.0", "1:0.1", "1.0~rc1", "1.0-1", "1.0+b1", "0.9"]
    ordered = [str(v) for v in sorted(Version.parse(text) for text in texts)]
    assert ordered == ["0.9", "1.0~rc1", "1.0", "1.0-1", "1.0+b1", "1:0.1"]


@pytest.mark.parametrize(
    "operator, bound, expected",
    [
        ("<<", "2.36", False),
        ("<<", "2.37", True),
        ("<=", "2.36-9+deb12u14", True),
        ("=", "2.36-9+deb12u14", True),
        ("=", "2.36-9", False),
        (">=", "2.34", True),
        (">>", "2.36-9+deb12u14", False),
        (">>", "2.36-9+deb12u13", True),
    ],
)
def test_satisfies(operator: str, bound: str, expected: bool) -> None:
    version = Version.parse("2.36-9+deb12u14")
    assert satisfies(version, operator, Version.parse(bound)) is expected


def test_unknown_relation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown version relation '<'"):
        satisfies(Version.parse("1"), "<", Version.parse("2"))


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("", "upstream part"),
        ("a1.0", "must start with a digit"),
        ("1.0 beta", "upstream part"),
        ("x:1.0", "epoch 'x' is not a number"),
        ("1.0-", "revision '' is empty or invalid"),
        ("1.0-a_b", "revision 'a_b'"),
        ("1.0:2", "epoch '1.0'"),
    ],
)
def test_malformed_versions_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(InvalidVersion, match=complaint):
        Version.parse(text)

from __future__ import annotations

import pytest

from .requirements import (
    Marker,
    Requirement,
    RequirementError,
    SpecifierSet,
    Version,
    marker_environment,
)

AMD64_311 = marker_environment("3.11.2", "x86_64")
ARM64_39 = marker_environment("3.9.18", "aarch64")


@pytest.mark.parametrize(
    "ordered",
    [
        ["1.0.dev1", "1.0a1", "1.0a2.dev1", "1.0b1", "1.0rc1", "1.0", "1.0+local", "1.0.post1"],
        ["0.9", "1.0", "1.0.1", "1.1", "2!0.1"],
        ["2.2.6", "2.10.0", "2026.10.19.post1"],
    ],
)
def test_versions_order_as_pep_440_says(ordered: list) -> None:
    keys = [Version.parse(text).key() for text in ordered]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_trailing_zeros_and_spellings_are_equal() -> None:
    assert Version.parse("1.0").key() == Version.parse("1.0.0").key()
    assert Version.parse("1.0-1").key() == Version.parse("1.0.post1").key()
    assert Version.parse("1.0RC1").key() == Version.parse("1.0rc1").key()
    with pytest.raises(RequirementError, match="not a PEP 440 version"):
        Version.parse("latest")


@pytest.mark.parametrize(
    ("specifier", "inside", "outside"),
    [
        ("<2.3,>=1.26", ["1.26", "2.2.6", "2.3.dev0"], ["1.25.2", "2.3", "2.3.0"]),
        ("==5.0.*", ["5.0", "5.0.7", "5.0.post1"], ["5.1", "50.0"]),
        ("~=2.4", ["2.4", "2.9"], ["3.0", "2.3"]),
        ("!=3.0.*,!=3.1.*,>=2.7", ["2.7", "3.2", "3.11.2"], ["3.0.1", "3.1", "2.6"]),
        ("==2.1.0", ["2.1", "2.1.0+cu121"], ["2.1.1"]),
        ("==2.1.0+cu121", ["2.1.0+cu121"], ["2.1.0", "2.1.0+cpu"]),
        ("", ["0.0.1"], []),
    ],
)
def test_specifier_sets(specifier: str, inside: list, outside: list) -> None:
    parsed = SpecifierSet.parse(specifier)
    assert [parsed.contains(version) for version in inside] == [True] * len(inside)
    assert [parsed.contains(version) for version in outside] == [False] * len(outside)


def test_markers_are_evaluated_for_the_target_not_the_host() -> None:
    aarch64_only = Marker.parse('platform_machine == "aarch64"')
    assert not aarch64_only.evaluate(AMD64_311)
    assert aarch64_only.evaluate(ARM64_39)
    old_python = Marker.parse('python_version < "3.11" and sys_platform != "win32"')
    assert not old_python.evaluate(AMD64_311) and old_python.evaluate(ARM64_39)
    assert Marker.parse('python_full_version >= "3.11.1"').evaluate(AMD64_311)
    assert Marker.parse("'linux' in sys_platform").evaluate(AMD64_311)
    grouped = Marker.parse(
        '(os_name == "nt" or platform_system == "Linux") and implementation_name == "cpython"'
    )
    assert grouped.evaluate(AMD64_311)
    assert Marker.parse('platform.machine=="x86_64"').evaluate(AMD64_311)


@pytest.mark.parametrize(
    "text",
    ['python_version < "3.11" and', 'colour == "red"', '(python_version < "3"', "os_name"],
)
def test_malformed_markers_are_refused(text: str) -> None:
    with pytest.raises(RequirementError, match="marker"):
        Marker.parse(text)


def test_requirements_with_extras_and_markers() -> None:
    requirement = Requirement.parse(
        'Brotli>=1.2.0; platform_python_implementation == "CPython"' ' and extra == "brotli"'
    )
    assert requirement.name == "brotli" and str(requirement.specifier) == ">=1.2.0"
    assert not requirement.applies(AMD64_311)
    assert requirement.applies(AMD64_311, frozenset({"brotli"}))
    assert not requirement.applies(AMD64_311, frozenset({"socks"}))
    parsed = Requirement.parse("Typing_Extensions [Socks, h2] (>=4.1)")
    assert (parsed.name, parsed.extras) == ("typing-extensions", frozenset({"socks", "h2"}))
    assert parsed.specifier.contains("4.3.0")
    with pytest.raises(RequirementError, match="direct URL"):
        Requirement.parse("torch @ https://download.pytorch.org/whl/torch.whl")

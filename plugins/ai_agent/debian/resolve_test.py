"""The closure, on real Packages stanzas of bookworm, bookworm-updates and bookworm-security
(testdata/*.Packages hold a handful of each, copied from the mirror unchanged)."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence

import pytest

from .conftest import fixture_indexes
from .index import PackageIndex, parse_packages
from .resolve import (
    Relation,
    ResolutionError,
    Universe,
    UnknownPackage,
    UnsatisfiableDependency,
    parse_relations,
    resolve,
)
from .version import Version


def _names(
    indexes: List[PackageIndex], packages: List[str], excludes: Sequence[str] = ()
) -> Dict[str, str]:
    records = resolve(indexes, packages, "amd64", excludes)
    return {record.name: f"{record.version} {record.suite}" for record in records}


def _without(indexes: List[PackageIndex], suite: str, name: str) -> List[PackageIndex]:
    """The indexes with `name` missing from `suite`, as on a partial or lagging mirror."""
    return [
        (
            dataclasses.replace(index, records=tuple(r for r in index.records if r.name != name))
            if index.suite == suite
            else index
        )
        for index in indexes
    ]


def test_python_closure_takes_the_highest_version_across_suites() -> None:
    assert _names(fixture_indexes(), ["python3.11-minimal"]) == {
        "python3.11-minimal": "3.11.2-6+deb12u9 bookworm-security",
        "libpython3.11-minimal": "3.11.2-6+deb12u9 bookworm-security",
        "libssl3": "3.0.22-1~deb12u2 bookworm-security",
        "libexpat1": "2.5.0-1+deb12u5 bookworm-security",
        "zlib1g": "1:1.2.13.dfsg-1 bookworm",
        "libc6": "2.36-9+deb12u14 bookworm",
        "libgcc-s1": "12.2.0-14+deb12u1 bookworm",
        "gcc-12-base": "12.2.0-14+deb12u1 bookworm",
    }


def test_an_older_version_in_updates_does_not_win() -> None:
    # bookworm-updates still lists openssh-client 1:9.2p1-2+deb12u7; bookworm has deb12u10.
    universe = Universe(fixture_indexes(), "amd64")
    candidate = universe.candidates["openssh-client"]
    assert (str(candidate.version), candidate.suite) == ("1:9.2p1-2+deb12u10", "bookworm")


def test_virtual_package_takes_the_provider_of_highest_priority() -> None:
    # base-files Pre-Depends on awk, provided by mawk (required), gawk and original-awk
    # (optional): apt installs mawk.
    closure = _names(fixture_indexes(), ["base-files"])
    assert set(closure) == {"base-files", "mawk", "libc6", "libgcc-s1", "gcc-12-base"}


def test_virtual_package_ties_are_broken_by_name() -> None:
    closure = _names(fixture_indexes(), ["base-files"], excludes=["mawk"])
    assert "gawk" in closure and "original-awk" not in closure
    # gawk's own Pre-Depends are followed.
    assert {"libmpfr6", "libgmp10", "libreadline8", "libsigsegv2"} <= set(closure)


def test_a_provider_pulled_in_anyway_meets_the_virtual_package() -> None:
    closure = _names(fixture_indexes(), ["base-files", "original-awk"])
    assert "original-awk" in closure and "mawk" not in closure


def test_first_satisfiable_alternative_wins_and_excludes_count_as_met() -> None:
    # tzdata: Depends: debconf (>= 0.5) | debconf-2.0
    assert set(_names(fixture_indexes(), ["tzdata"])) == {"tzdata", "debconf"}
    assert set(_names(fixture_indexes(), ["tzdata"], excludes=["debconf"])) == {"tzdata"}


def test_essential_packages_are_assumed_not_pulled_in() -> None:
    # readline-common: Depends: dpkg (>= 1.15.4) | install-info, and dpkg is Essential.
    assert set(_names(fixture_indexes(), ["readline-common"])) == {"readline-common"}
    # Requested by name, an Essential package is installed; its Essential dependencies
    # (debianutils, dpkg) are still assumed.
    assert set(_names(fixture_indexes(), ["dash"])) == {
        "dash",
        "libc6",
        "libgcc-s1",
        "gcc-12-base",
    }


def test_versioned_provides_meet_versioned_dependencies() -> None:
    universe = Universe(fixture_indexes(), "amd64")
    (relation,) = parse_relations("apt-transport-https (>= 2.6)", "test")[0]
    assert [record.name for record in universe.satisfiers(relation)] == ["apt"]
    (too_new,) = parse_relations("apt-transport-https (>= 2.7)", "test")[0]
    assert universe.satisfiers(too_new) == []
    # An unversioned Provides never meets a versioned dependency.
    (versioned_awk,) = parse_relations("awk (>= 1)", "test")[0]
    assert universe.satisfiers(versioned_awk) == []


def test_architecture_qualifiers() -> None:
    universe = Universe(fixture_indexes(), "amd64")

    def names(text: str) -> List[str]:
        (relation,) = parse_relations(text, "test")[0]
        return [record.name for record in universe.satisfiers(relation)]

    assert names("perl:any") == ["perl"]  # perl is Multi-Arch: allowed
    assert names("mawk:any") == []  # Multi-Arch: foreign cannot meet :any
    assert names("awk:any") == []  # nor can a Provides
    assert names("libc6:native") == names("libc6:amd64") == ["libc6"]
    assert names("libc6:arm64") == []
    (relation,) = parse_relations("mawk:any", "test")[0]
    assert "Multi-Arch: foreign" in universe.explain(relation)


def test_unsatisfiable_dependency_names_the_chain() -> None:
    indexes = _without(fixture_indexes(), "bookworm", "gcc-12-base")
    with pytest.raises(UnsatisfiableDependency) as error:
        resolve(indexes, ["base-files"], "amd64")
    message = str(error.value)
    assert "cannot meet `gcc-12-base (= 12.2.0-14+deb12u1)`" in message
    assert "a Depends of libgcc-s1 12.2.0-14+deb12u1 (bookworm)" in message
    assert "(requested base-files -> mawk -> libc6 -> libgcc-s1)" in message
    assert "no package is named gcc-12-base" in message


def test_a_version_constraint_no_candidate_meets_names_the_candidate() -> None:
    # A security mirror lagging behind: python3.11-minimal deb12u9 but no libpython deb12u9.
    indexes = _without(fixture_indexes(), "bookworm-security", "libpython3.11-minimal")
    with pytest.raises(UnsatisfiableDependency) as error:
        resolve(indexes, ["python3.11-minimal"], "amd64")
    message = str(error.value)
    assert "cannot meet `libpython3.11-minimal (= 3.11.2-6+deb12u9)`" in message
    assert "the newest libpython3.11-minimal is libpython3.11-minimal 3.11.2-6+deb12u8" in message


def test_requests_must_be_known_real_packages() -> None:
    with pytest.raises(UnknownPackage, match="similar names: python3.11-minimal"):
        resolve(fixture_indexes(), ["python3.11-minimum"], "amd64")
    with pytest.raises(ResolutionError, match="awk is virtual.*gawk, mawk, original-awk"):
        resolve(fixture_indexes(), ["awk"], "amd64")
    with pytest.raises(UnknownPackage, match="excluded package no-such-package"):
        resolve(fixture_indexes(), ["dash"], "amd64", ["no-such-package"])
    with pytest.raises(ResolutionError, match="dash is both requested and excluded"):
        resolve(fixture_indexes(), ["dash"], "amd64", ["dash"])


def test_the_closure_does_not_depend_on_request_order() -> None:
    forward = resolve(fixture_indexes(), ["base-files", "tzdata", "dash"], "amd64")
    backward = resolve(fixture_indexes(), ["dash", "tzdata", "base-files"], "amd64")
    assert forward == backward
    assert [record.name for record in forward] == sorted(record.name for record in forward)


def test_relation_syntax() -> None:
    groups = parse_relations(
        "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0,\n python3:any (<< 3.12), old (> 1)",
        "test",
    )
    assert groups == [
        (Relation("libc6", None, ">=", Version.parse("2.34")),),
        (
            Relation("debconf", None, ">=", Version.parse("0.5")),
            Relation("debconf-2.0"),
        ),
        (Relation("python3", "any", "<<", Version.parse("3.12")),),
        # The obsolete `>` means `>=`, as dpkg reads it.
        (Relation("old", None, ">=", Version.parse("1")),),
    ]
    assert str(groups[2][0]) == "python3:any (<< 3.12)"
    with pytest.raises(
        ResolutionError, match="Depends of x: cannot read the relation 'foo \\[amd64\\]'"
    ):
        parse_relations("foo [amd64]", "Depends of x")


def test_choices_wait_for_packages_pulled_in_anyway() -> None:
    # A made-up package (processed after base-files) that needs gawk itself: once gawk is in,
    # base-files' `awk` is met by it and mawk is not installed next to it.
    gawk_user = parse_packages(
        "Package: zz-gawk-user\nVersion: 1\nArchitecture: all\nDepends: gawk\n"
        "Filename: pool/z.deb\nSize: 1\nSHA256: " + "0" * 64 + "\n",
        "bookworm",
        "test",
    )
    indexes = fixture_indexes()
    indexes[0] = dataclasses.replace(indexes[0], records=indexes[0].records + tuple(gawk_user))
    closure = _names(indexes, ["base-files", "zz-gawk-user"])
    assert "gawk" in closure and "mawk" not in closure

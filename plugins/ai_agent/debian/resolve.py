"""The dependency closure of a set of Debian packages, chosen the way apt chooses.

- Candidates: for each package name the highest version across the suites read (bookworm-updates
  may list an *older* version than bookworm); the same version in two suites comes from the suite
  read last, i.e. bookworm-security, whose pool keeps superseded uploads longest.
- Pre-Depends and Depends are followed (Recommends and Suggests are not, as with
  `--no-install-recommends`); a group `a | b` is met by its first alternative that can be met.
- A virtual package (one named only in Provides) is met by its providers, chosen by Priority
  (required, important, standard, optional, extra) and then by name; versioned Provides
  (`Provides: foo (= 1.2)`) meet versioned dependencies.
- Choices (alternatives, or virtual packages with several providers) are decided after every
  unambiguous dependency is in, so a package pulled in anyway meets them, as apt prefers
  packages it installs anyway.
- `:any` needs a `Multi-Arch: allowed` package; `:native` and the target architecture's name
  mean the target architecture.
- Essential packages (dpkg, tar, coreutils, dash, ...) are there for maintainer scripts and
  interactive use; Debian lets packages assume them without declaring it. Distroless-style, a
  dependency on an Essential package counts as met and pulls nothing in (readline-common's
  `dpkg | install-info` would otherwise add dpkg, tar and their libraries). Request one by name
  to install it: the shell variant requests dash, coreutils and libc-bin.
- Excluded names are never installed, and a dependency naming one counts as met: the image
  supplies it otherwise, or the caller decided it is not needed (debconf, for example).
"""

from __future__ import annotations

import collections
import difflib
import re
from dataclasses import dataclass
from typing import Deque, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from .errors import DebianError
from .index import PackageIndex, PackageRecord
from .version import InvalidVersion, Version, satisfies

PRIORITY_ORDER = ("required", "important", "standard", "optional", "extra")
ARCHITECTURE_ALL = "all"

_RELATION = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9+.-]+)(?::(?P<architecture>[a-z0-9-]+))?"
    r"\s*(?:\(\s*(?P<operator><<|<=|>=|>>|=|<|>)\s*(?P<version>[^\s)]+)\s*\))?$"
)
# Operators dpkg still reads for old packages: `<` means `<=` and `>` means `>=`.
_OBSOLETE_OPERATORS = {"<": "<=", ">": ">="}


class ResolutionError(DebianError):
    """The closure cannot be computed; the message names the packages involved."""


class UnknownPackage(ResolutionError):
    """A requested or excluded name is in none of the indexes."""


class UnsatisfiableDependency(ResolutionError):
    """A dependency no candidate meets; the message names the chain that pulled it in."""


@dataclass(frozen=True)
class Relation:
    """One alternative of a dependency field: `name[:arch] [(operator version)]`."""

    name: str
    architecture: Optional[str] = None
    operator: Optional[str] = None
    version: Optional[Version] = None

    def __str__(self) -> str:
        qualifier = f":{self.architecture}" if self.architecture else ""
        constraint = f" ({self.operator} {self.version})" if self.operator else ""
        return f"{self.name}{qualifier}{constraint}"


Group = Tuple[Relation, ...]


def parse_relations(text: str, where: str) -> List[Group]:
    """A dependency field (`a (>= 1) | b, c:any`) as groups of alternatives."""
    groups: List[Group] = []
    for group_text in text.split(","):
        if not group_text.strip():
            continue
        groups.append(tuple(_parse_relation(part, where) for part in group_text.split("|")))
    return groups


def _parse_relation(text: str, where: str) -> Relation:
    match = _RELATION.match(" ".join(text.split()))
    if match is None:
        raise ResolutionError(f"{where}: cannot read the relation {text.strip()!r}")
    operator = match.group("operator")
    version = None
    if operator is not None:
        operator = _OBSOLETE_OPERATORS.get(operator, operator)
        try:
            version = Version.parse(match.group("version"))
        except InvalidVersion as error:
            raise ResolutionError(f"{where}: {error}") from None
    return Relation(match.group("name"), match.group("architecture"), operator, version)


class Universe:
    """Every candidate of the indexes for one architecture, and who provides what."""

    def __init__(self, indexes: Sequence[PackageIndex], architecture: str) -> None:
        self.architecture = architecture
        self.suites = [index.suite for index in indexes]
        self.candidates: Dict[str, PackageRecord] = {}
        for index in indexes:
            for record in index.records:
                if record.architecture not in (architecture, ARCHITECTURE_ALL):
                    continue
                current = self.candidates.get(record.name)
                if current is None or record.version >= current.version:
                    self.candidates[record.name] = record
        # Provides is parsed in full only for the names a dependency asks about.
        self._providers_by_name: Dict[str, List[PackageRecord]] = {}
        for record in self.candidates.values():
            for part in record.provides.split(",") if record.provides else ():
                name = part.split("(")[0].split(":")[0].strip()
                self._providers_by_name.setdefault(name, []).append(record)
        self._provided: Dict[str, List[Relation]] = {}

    def providers(self, name: str) -> List[Tuple[PackageRecord, Optional[Version]]]:
        """The candidates that provide `name`, each with the version it provides (if any)."""
        found = []
        for record in self._providers_by_name.get(name, ()):
            if record.name not in self._provided:
                groups = parse_relations(record.provides, f"Provides of {record}")
                self._provided[record.name] = [relation for group in groups for relation in group]
            found += [(record, r.version) for r in self._provided[record.name] if r.name == name]
        return found

    def knows(self, name: str) -> bool:
        return name in self.candidates or name in self._providers_by_name

    def satisfiers(self, relation: Relation) -> List[PackageRecord]:
        """The candidates that meet `relation`: the real package first, then its providers by
        Priority and name."""
        if not self._architecture_matches(relation):
            return []
        found = []
        real = self.candidates.get(relation.name)
        if real is not None and _version_meets(real.version, relation):
            if relation.architecture != "any" or real.multi_arch == "allowed":
                found.append(real)
        if relation.architecture != "any":
            providers = [
                record
                for record, provided in self.providers(relation.name)
                if (relation.operator is None or provided is not None)
                and _version_meets(provided, relation)
                and record is not real
            ]
            found += sorted(providers, key=_provider_preference)
        return found

    def explain(self, relation: Relation) -> str:
        """Why nothing meets `relation`, for an error message."""
        if not self._architecture_matches(relation):
            return f"architecture {relation.architecture} is not the target {self.architecture}"
        real = self.candidates.get(relation.name)
        providers = self.providers(relation.name)
        if real is None and not providers:
            suggestions = difflib.get_close_matches(relation.name, self.candidates, n=3)
            hint = f" (similar names: {', '.join(suggestions)})" if suggestions else ""
            return (
                f"no package is named {relation.name} or provides it in"
                f" {', '.join(self.suites)} for {self.architecture}{hint}"
            )
        reasons = []
        if real is not None:
            if relation.architecture == "any" and real.multi_arch != "allowed":
                reasons.append(
                    f"{real} is Multi-Arch: {real.multi_arch}, so {relation.name}:any cannot"
                    " be met (it needs Multi-Arch: allowed)"
                )
            else:
                reasons.append(f"the newest {relation.name} is {real}")
        for record, provided in providers:
            what = f"{relation.name} (= {provided})" if provided else f"{relation.name} unversioned"
            reasons.append(f"{record} provides {what}")
        return "; ".join(reasons)

    def _architecture_matches(self, relation: Relation) -> bool:
        return relation.architecture in (None, "any", "native", self.architecture)


def _version_meets(version: Optional[Version], relation: Relation) -> bool:
    if relation.operator is None:
        return True
    assert relation.version is not None, "a relation with an operator has a version"
    return version is not None and satisfies(version, relation.operator, relation.version)


def _provider_preference(record: PackageRecord) -> Tuple[int, str]:
    priority = record.priority
    rank = PRIORITY_ORDER.index(priority) if priority in PRIORITY_ORDER else len(PRIORITY_ORDER)
    return rank, record.name


def resolve(
    indexes: Sequence[PackageIndex],
    packages: Iterable[str],
    architecture: str,
    excludes: Iterable[str] = (),
) -> List[PackageRecord]:
    """The closure of `packages` over `indexes` for `architecture`, sorted by name."""
    universe = Universe(indexes, architecture)
    return _Closure(universe, frozenset(excludes)).resolve(sorted(set(packages)))


class _Closure:
    def __init__(self, universe: Universe, excludes: FrozenSet[str]) -> None:
        self.universe = universe
        self.excludes = excludes
        self.selected: Dict[str, PackageRecord] = {}
        # Who pulled each package in (None for a requested one), for error messages.
        self.pulled_in_by: Dict[str, Optional[str]] = {}
        self.pending: Deque[PackageRecord] = collections.deque()
        self.choices: Deque[Tuple[PackageRecord, str, Group]] = collections.deque()

    def resolve(self, requested: Sequence[str]) -> List[PackageRecord]:
        for name in sorted(self.excludes):
            if not self.universe.knows(name):
                raise UnknownPackage(f"excluded package {name}: {self._unknown(name)}")
        for name in requested:
            self._add(self._requested(name), None)
        while self.pending or self.choices:
            if self.pending:
                record = self.pending.popleft()
                for field, text in (
                    ("Pre-Depends", record.pre_depends),
                    ("Depends", record.depends),
                ):
                    for group in parse_relations(text, f"{field} of {record}"):
                        self._meet(record, field, group, decide_now=False)
            else:
                self._meet(*self.choices.popleft(), decide_now=True)
        return [self.selected[name] for name in sorted(self.selected)]

    def _requested(self, name: str) -> PackageRecord:
        if name in self.excludes:
            raise ResolutionError(f"{name} is both requested and excluded; drop one of the two")
        record = self.universe.candidates.get(name)
        if record is not None:
            return record
        providers = sorted({provider.name for provider, _ in self.universe.providers(name)})
        if providers:
            raise ResolutionError(
                f"requested package {name} is virtual; request one of its providers instead:"
                f" {', '.join(providers)}"
            )
        raise UnknownPackage(f"requested package {name}: {self._unknown(name)}")

    def _unknown(self, name: str) -> str:
        return self.universe.explain(Relation(name))

    def _meet(self, parent: PackageRecord, field: str, group: Group, decide_now: bool) -> None:
        if self._is_met(group):
            return
        options = [
            [
                record
                for record in self.universe.satisfiers(relation)
                if record.name not in self.excludes
            ]
            for relation in group
        ]
        usable = [records for records in options if records]
        if not usable:
            raise self._unsatisfiable(parent, field, group)
        is_choice = len(group) > 1 or len(usable[0]) > 1
        if is_choice and not decide_now:
            self.choices.append((parent, field, group))
            return
        self._add(usable[0][0], parent.name)

    def _is_met(self, group: Group) -> bool:
        for relation in group:
            if relation.name in self.excludes:
                return True
            for record in self.universe.satisfiers(relation):
                if record.essential or record.name in self.selected:
                    return True
        return False

    def _add(self, record: PackageRecord, parent: Optional[str]) -> None:
        if record.name in self.selected:
            return
        self.selected[record.name] = record
        self.pulled_in_by[record.name] = parent
        self.pending.append(record)

    def _unsatisfiable(
        self, parent: PackageRecord, field: str, group: Group
    ) -> UnsatisfiableDependency:
        chain = [parent.name]
        puller = self.pulled_in_by[parent.name]
        while puller is not None:
            chain.insert(0, puller)
            puller = self.pulled_in_by[puller]
        reasons = []
        for relation in group:
            excluded = [
                record.name
                for record in self.universe.satisfiers(relation)
                if record.name in self.excludes
            ]
            if excluded:
                reasons.append(f"{relation}: met only by excluded {', '.join(excluded)}")
            else:
                reasons.append(f"{relation}: {self.universe.explain(relation)}")
        text = " | ".join(str(relation) for relation in group)
        return UnsatisfiableDependency(
            f"cannot meet `{text}`, a {field} of {parent} (requested"
            f" {' -> '.join(chain)}): {'; '.join(reasons)}"
        )

"""Read a Pants/pex lockfile and choose, for the image's target, the locked wheels that the
requested requirements need: the transitive closure through `requires_dists` whose markers hold
for the target, each with the one wheel pip would install there. Requirements, versions,
specifiers and markers are `packaging`'s, evaluated in the target's environment (`target`).

Only wheels are installed: building an sdist would run arbitrary code and give host-dependent
bytes, so a locked project without a wheel for the target is an error that names it.
"""

from __future__ import annotations

import json
import posixpath
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import WheelsError
from .target import Target, best_wheel


class LockError(WheelsError):
    """The lockfile is unreadable or does not satisfy the requested requirements."""


class NoCompatibleWheel(LockError):
    """A locked project has no wheel the target can install."""

    def __init__(self, project: str, version: str, target: Target, filenames: Sequence[str]):
        self.project = project
        listed = "\n  ".join(filenames) or "(no artifacts)"
        super().__init__(
            f"{project} {version} has no wheel for {target.describe()}; the lock has:\n  {listed}\n"
            "Pin a version that publishes such a wheel (or a compatible manylinux/abi3/py3 one)"
            " and regenerate the lockfile; sdists are never built into images."
        )


@dataclass(frozen=True)
class Artifact:
    url: str
    algorithm: str
    hash: str

    @property
    def filename(self) -> str:
        return urllib.parse.unquote(posixpath.basename(urllib.parse.urlparse(self.url).path))


@dataclass(frozen=True)
class LockedProject:
    name: str
    version: Version
    requires_dists: Tuple[Requirement, ...]
    requires_python: SpecifierSet
    artifacts: Tuple[Artifact, ...]


@dataclass(frozen=True)
class ChosenWheel:
    """A locked project's wheel for the target: what to download and install."""

    project: str
    version: str
    filename: str
    url: str
    sha256: str

    def to_json(self) -> Dict[str, Any]:
        return {
            "project": self.project,
            "version": self.version,
            "filename": self.filename,
            "url": self.url,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class PexLock:
    """The projects of one locked resolve, by canonical name."""

    source: str
    projects: Dict[str, LockedProject]

    @classmethod
    def load(cls, path: Path, target: Target) -> PexLock:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise LockError(f"{path}: cannot read the lockfile: {error.strerror}") from None
        return cls.loads(text, str(path), target)

    @classmethod
    def loads(cls, text: str, source: str, target: Target) -> PexLock:
        """Of several resolves (a pex lock made for explicit platforms), take the first whose
        platform tag the target accepts."""
        supported = set(target.supported_tags())
        for resolve in _locked_resolves(text, source):
            platform_tag = resolve.get("platform_tag")
            if platform_tag is None or _tag(platform_tag, source) in supported:
                return cls(source, _projects(resolve, source))
        raise LockError(f"{source}: no locked resolve is for {target.describe()}")

    def resolve(self, requirements: Sequence[str], target: Target) -> List[ChosenWheel]:
        """The wheels of the requested requirements and their dependencies for `target`,
        sorted by project name."""
        environment = target.marker_environment()
        requested = [
            _parse_requirement(text, "the requested requirements") for text in requirements
        ]
        pending = [
            (requirement, "the image")
            for requirement in requested
            if self._applies(requirement, environment, frozenset(), "the requested requirements")
        ]
        extras_seen: Dict[str, FrozenSet[str]] = {}
        while pending:
            requirement, wanted_by = pending.pop()
            project = self._locked(requirement, wanted_by)
            requested_extras = frozenset(canonicalize_name(extra) for extra in requirement.extras)
            seen = extras_seen.get(project.name)
            if seen is not None and requested_extras <= seen:
                continue
            extras = requested_extras | (seen or frozenset())
            extras_seen[project.name] = extras
            if not project.requires_python.contains(target.python_full_version, prereleases=True):
                raise LockError(
                    f"{self.source}: {project.name} {project.version} requires Python"
                    f" {project.requires_python}, but the image runs {target.describe()}"
                )
            described = f"{project.name} {project.version}"
            for dependency in project.requires_dists:
                if self._applies(dependency, environment, extras, described):
                    pending.append((dependency, described))
        return [self._wheel(self.projects[name], target) for name in sorted(extras_seen)]

    def _applies(
        self,
        requirement: Requirement,
        environment: Dict[str, str],
        extras: FrozenSet[str],
        where: str,
    ) -> bool:
        """Whether the target installs `requirement` when its dependent was asked for `extras`:
        its marker holds without an extra or with one of them."""
        marker = requirement.marker
        if marker is None:
            return True
        try:
            return any(
                marker.evaluate({**environment, "extra": extra}) for extra in ["", *sorted(extras)]
            )
        except (UndefinedComparison, UndefinedEnvironmentName) as error:
            raise LockError(
                f"{self.source}: {where}: cannot evaluate the marker of {str(requirement)!r}:"
                f" {error}"
            ) from None

    def _locked(self, requirement: Requirement, wanted_by: str) -> LockedProject:
        project = self.projects.get(canonicalize_name(requirement.name))
        if project is None:
            raise LockError(
                f"{self.source}: {requirement} (wanted by {wanted_by}) is not in the lockfile;"
                " add it to the resolve's requirements and regenerate the lockfile"
            )
        if not requirement.specifier.contains(project.version, prereleases=True):
            raise LockError(
                f"{self.source}: {requirement} (wanted by {wanted_by}) is not satisfied by"
                f" the locked {project.name} {project.version}; regenerate the lockfile"
            )
        return project

    def _wheel(self, project: LockedProject, target: Target) -> ChosenWheel:
        by_filename = {artifact.filename: artifact for artifact in project.artifacts}
        version = str(project.version)
        try:
            filename = best_wheel(sorted(by_filename), target)
        except (InvalidWheelFilename, InvalidVersion) as error:
            raise LockError(f"{self.source}: {project.name} {version}: {error}") from None
        if filename is None:
            raise NoCompatibleWheel(project.name, version, target, sorted(by_filename))
        artifact = by_filename[filename]
        if artifact.algorithm != "sha256":
            raise LockError(
                f"{self.source}: {filename} is locked with {artifact.algorithm};"
                " only sha256 is accepted"
            )
        return ChosenWheel(project.name, version, filename, artifact.url, artifact.hash)


def locked_artifacts(text: str, source: str) -> List[Artifact]:
    """Every artifact (wheel or sdist) of every resolve of a lock, each once."""
    artifacts = {
        artifact.url: artifact
        for resolve in _locked_resolves(text, source)
        for project in _projects(resolve, source).values()
        for artifact in project.artifacts
    }
    return list(artifacts.values())


def _locked_resolves(text: str, source: str) -> List[Dict[str, Any]]:
    """The `locked_resolves` of the JSON after Pants' `//` header."""
    body = "".join(line for line in text.splitlines(True) if not line.startswith("//"))
    try:
        return list(json.loads(body)["locked_resolves"])
    except (ValueError, KeyError, TypeError) as error:
        raise LockError(f"{source}: not a pex lockfile ({error})") from None


def _tag(platform_tag: Any, source: str) -> Tag:
    """A resolve's `platform_tag`, `[interpreter, abi, platform]`."""
    try:
        interpreter, abi, platform = platform_tag
        return Tag(interpreter, abi, platform)
    except (TypeError, ValueError, AttributeError):
        raise LockError(f"{source}: malformed platform_tag {platform_tag!r}") from None


def _projects(resolve: Dict[str, Any], source: str) -> Dict[str, LockedProject]:
    projects: Dict[str, LockedProject] = {}
    for raw in resolve.get("locked_requirements", []):
        try:
            name = canonicalize_name(raw["project_name"])
            where = f"{source}: {name}"
            projects[name] = LockedProject(
                name=name,
                version=_version(raw["version"], where),
                requires_dists=tuple(
                    _parse_requirement(text, where) for text in raw.get("requires_dists", [])
                ),
                requires_python=_specifier(raw.get("requires_python"), where),
                artifacts=tuple(
                    Artifact(artifact["url"], artifact["algorithm"], artifact["hash"])
                    for artifact in raw["artifacts"]
                ),
            )
        except (KeyError, TypeError) as error:
            raise LockError(f"{source}: malformed locked requirement {raw!r}: {error}") from None
    return projects


def _parse_requirement(text: str, where: str) -> Requirement:
    """A PEP 508 requirement with PEP 440 specifiers; direct URLs are refused (locks pin them)."""
    try:
        requirement = Requirement(text)
        _check_pep440(requirement.specifier)
    except (InvalidRequirement, InvalidSpecifier) as error:
        raise LockError(f"{where}: {text!r} is not a PEP 508 requirement: {error}") from None
    if requirement.url is not None:
        raise LockError(f"{where}: {text!r}: direct URL requirements are not supported")
    return requirement


def _version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise LockError(f"{where}: version {text!r} is not a PEP 440 version") from None


def _specifier(text: Optional[str], where: str) -> SpecifierSet:
    try:
        specifier = SpecifierSet(text or "")
        _check_pep440(specifier)
    except InvalidSpecifier as error:
        raise LockError(
            f"{where}: requires_python {text!r} is not a PEP 440 specifier: {error}"
        ) from None
    return specifier


def _check_pep440(specifier: SpecifierSet) -> None:
    """Raise InvalidSpecifier for a pre-PEP 440 clause such as `>=latest`, which packaging 21.3
    still accepts (as a deprecated `LegacySpecifier`) and pip refuses."""
    for clause in specifier:
        Specifier(str(clause))

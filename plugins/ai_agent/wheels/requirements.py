"""PEP 508 requirements, PEP 440 versions and specifiers, and environment markers evaluated for a
*target* environment (the image's interpreter and platform), not for the build host.

Only what reading a pex lock needs: a locked version is checked against specifiers, and the
markers of requested and locked requirements decide which dependencies the target installs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Mapping, Optional, Tuple, Union

_VERSION = re.compile(
    r"""^\s*v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_label>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_number>[0-9]+)?)?
    (?:-(?P<post_implicit>[0-9]+)|[-_.]?(?P<post_label>post|rev|r)[-_.]?(?P<post_number>[0-9]+)?)?
    (?P<dev_label>[-_.]?dev[-_.]?(?P<dev_number>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_PHASES = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_SPECIFIER = re.compile(r"^\s*(===|==|!=|<=|>=|~=|<|>)\s*([^\s,]+)\s*$")
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<rest>.*)$"
)


class RequirementError(ValueError):
    """A requirement, version, specifier or marker cannot be parsed or evaluated."""


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: `Typing_Extensions` and `typing-extensions` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


# Versions ---------------------------------------------------------------------------------------


VersionKey = Tuple[object, ...]


@dataclass(frozen=True)
class Version:
    """A PEP 440 version; compare with `key`."""

    text: str
    epoch: int
    release: Tuple[int, ...]
    pre: Optional[Tuple[int, int]]
    post: Optional[int]
    dev: Optional[int]
    local: Optional[str]

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(text)
        if not match:
            raise RequirementError(f"{text!r} is not a PEP 440 version")
        pre = None
        if match["pre_label"]:
            pre = (_PRE_PHASES[match["pre_label"].lower()], int(match["pre_number"] or 0))
        post = None
        if match["post_implicit"] or match["post_label"]:
            post = int(match["post_implicit"] or match["post_number"] or 0)
        return cls(
            text=text.strip(),
            epoch=int(match["epoch"] or 0),
            release=tuple(int(part) for part in match["release"].split(".")),
            pre=pre,
            post=post,
            dev=int(match["dev_number"] or 0) if match["dev_label"] else None,
            local=re.sub(r"[-_]", ".", match["local"].lower()) if match["local"] else None,
        )

    @property
    def public(self) -> Version:
        return Version(self.text, self.epoch, self.release, self.pre, self.post, self.dev, None)

    def key(self) -> VersionKey:
        """The PEP 440 order: dev < pre < final < post; trailing zeros do not count."""
        release = list(self.release)
        while len(release) > 1 and release[-1] == 0:
            release.pop()
        if self.pre is not None:
            pre: Tuple[int, int] = self.pre
        elif self.dev is not None and self.post is None:
            pre = (-1, 0)  # 1.0.dev1 sorts before 1.0a1
        else:
            pre = (3, 0)
        post = (-1,) if self.post is None else (self.post,)
        dev = (1, 0) if self.dev is None else (0, self.dev)
        local: Tuple[object, ...] = ()
        if self.local is not None:
            local = tuple(
                (1, int(part), "") if part.isdigit() else (0, 0, part)
                for part in self.local.split(".")
            )
        return (self.epoch, tuple(release), pre, post, dev, (self.local is not None,) + local)

    def __str__(self) -> str:
        return self.text


# Specifiers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Specifier:
    """One clause such as `>=1.26` or `==2.*`."""

    operator: str
    version: str

    def contains(self, candidate: Version) -> bool:
        """Whether `candidate` satisfies the clause (pre-releases included: the lock chose them)."""
        if self.operator == "===":
            return candidate.text.lower() == self.version.lower()
        if self.version.endswith(".*"):
            if self.operator not in ("==", "!="):
                raise RequirementError(f"{self}: `.*` only goes with == and !=")
            matches = _prefix_match(candidate, Version.parse(self.version[:-2]))
            return matches if self.operator == "==" else not matches
        wanted = Version.parse(self.version)
        # Without a local label in the specifier, the candidate's local label is ignored.
        have = candidate if wanted.local is not None else candidate.public
        if self.operator == "==":
            return have.key() == wanted.key()
        if self.operator == "!=":
            return have.key() != wanted.key()
        if self.operator == "~=":
            if len(wanted.release) < 2:
                raise RequirementError(f"{self}: ~= needs at least two release numbers")
            prefix = Version.parse(".".join(str(part) for part in wanted.release[:-1]))
            return have.key() >= wanted.key() and _prefix_match(have, prefix)
        ordering = {
            "<": have.key() < wanted.key(),
            "<=": have.key() <= wanted.key(),
            ">": have.key() > wanted.key(),
            ">=": have.key() >= wanted.key(),
        }
        return ordering[self.operator]

    def __str__(self) -> str:
        return f"{self.operator}{self.version}"


def _prefix_match(candidate: Version, prefix: Version) -> bool:
    """`==1.2.*`: epoch and the first release numbers agree (zero-padded, like PEP 440)."""
    length = len(prefix.release)
    release = candidate.release + (0,) * max(0, length - len(candidate.release))
    return candidate.epoch == prefix.epoch and release[:length] == prefix.release


@dataclass(frozen=True)
class SpecifierSet:
    """Comma-separated clauses, all of which must hold; empty holds for every version."""

    specifiers: Tuple[Specifier, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SpecifierSet:
        text = text.strip()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]
        clauses = []
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            match = _SPECIFIER.match(part)
            if not match:
                raise RequirementError(f"{part!r} is not a version specifier")
            clauses.append(Specifier(match[1], match[2]))
        return cls(tuple(clauses))

    def contains(self, version: Union[str, Version]) -> bool:
        candidate = version if isinstance(version, Version) else Version.parse(version)
        return all(specifier.contains(candidate) for specifier in self.specifiers)

    def __str__(self) -> str:
        return ",".join(str(specifier) for specifier in self.specifiers)


# Markers ----------------------------------------------------------------------------------------


MarkerEnvironment = Mapping[str, str]
_MARKER_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'[^']*'|"[^"]*")
        |(?P<operator>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)
        |(?P<boolean>and\b|or\b)
        |(?P<paren>[()])
        |(?P<variable>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
# The pre-PEP 508 spellings that old metadata still carries.
_VARIABLE_ALIASES = {
    "os.name": "os_name",
    "sys.platform": "sys_platform",
    "platform.version": "platform_version",
    "platform.machine": "platform_machine",
    "platform.python_implementation": "platform_python_implementation",
    "python_implementation": "platform_python_implementation",
}
MARKER_VARIABLES: FrozenSet[str] = frozenset(
    {
        "os_name",
        "sys_platform",
        "platform_machine",
        "platform_python_implementation",
        "platform_release",
        "platform_system",
        "platform_version",
        "python_version",
        "python_full_version",
        "implementation_name",
        "implementation_version",
        "extra",
    }
)
_VERSION_VARIABLES = {"python_version", "python_full_version", "implementation_version"}


@dataclass(frozen=True)
class Marker:
    """A parsed environment marker, evaluated against a target environment."""

    text: str
    tree: object

    @classmethod
    def parse(cls, text: str) -> Marker:
        tokens = _tokenize_marker(text)
        tree, position = _parse_or(tokens, 0, text)
        if position != len(tokens):
            raise RequirementError(f"marker {text!r}: unexpected {tokens[position][1]!r}")
        return cls(text, tree)

    def evaluate(self, environment: MarkerEnvironment) -> bool:
        return _evaluate(self.tree, environment, self.text)


def _tokenize_marker(text: str) -> List[Tuple[str, str]]:
    tokens = []
    position = 0
    while position < len(text.rstrip()):
        match = _MARKER_TOKEN.match(text, position)
        if not match or match.end() == position:
            raise RequirementError(f"marker {text!r}: cannot parse at {text[position:]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, " ".join(match[kind].split())))
        position = match.end()
    return tokens


def _parse_or(tokens: List[Tuple[str, str]], position: int, text: str) -> Tuple[object, int]:
    left, position = _parse_and(tokens, position, text)
    while position < len(tokens) and tokens[position] == ("boolean", "or"):
        right, position = _parse_and(tokens, position + 1, text)
        left = ("or", left, right)
    return left, position


def _parse_and(tokens: List[Tuple[str, str]], position: int, text: str) -> Tuple[object, int]:
    left, position = _parse_comparison(tokens, position, text)
    while position < len(tokens) and tokens[position] == ("boolean", "and"):
        right, position = _parse_comparison(tokens, position + 1, text)
        left = ("and", left, right)
    return left, position


def _parse_comparison(
    tokens: List[Tuple[str, str]], position: int, text: str
) -> Tuple[object, int]:
    if position < len(tokens) and tokens[position] == ("paren", "("):
        inner, position = _parse_or(tokens, position + 1, text)
        if position >= len(tokens) or tokens[position] != ("paren", ")"):
            raise RequirementError(f"marker {text!r}: missing `)`")
        return inner, position + 1
    if position + 3 > len(tokens):
        raise RequirementError(f"marker {text!r}: incomplete comparison")
    left, operator, right = tokens[position : position + 3]
    if operator[0] != "operator" or {left[0], right[0]} - {"string", "variable"}:
        raise RequirementError(f"marker {text!r}: expected `<value> <operator> <value>`")
    return ("compare", _operand(left, text), operator[1], _operand(right, text)), position + 3


def _operand(token: Tuple[str, str], text: str) -> Tuple[str, str]:
    kind, value = token
    if kind == "string":
        return ("string", value[1:-1])
    name = _VARIABLE_ALIASES.get(value, value)
    if name not in MARKER_VARIABLES:
        raise RequirementError(f"marker {text!r}: unknown variable {value!r}")
    return ("variable", name)


def _evaluate(node: object, environment: MarkerEnvironment, text: str) -> bool:
    assert isinstance(node, tuple)
    if node[0] == "and":
        return _evaluate(node[1], environment, text) and _evaluate(node[2], environment, text)
    if node[0] == "or":
        return _evaluate(node[1], environment, text) or _evaluate(node[2], environment, text)
    _, left, operator, right = node
    variables = {operand[1] for operand in (left, right) if operand[0] == "variable"}
    left_value = environment[left[1]] if left[0] == "variable" else left[1]
    right_value = environment[right[1]] if right[0] == "variable" else right[1]
    if "extra" in variables:
        left_value, right_value = canonical_name(left_value), canonical_name(right_value)
    if operator == "in":
        return left_value in right_value
    if operator == "not in":
        return left_value not in right_value
    if variables & _VERSION_VARIABLES or operator not in ("==", "!="):
        try:
            return Specifier(operator, right_value).contains(Version.parse(left_value))
        except RequirementError:
            if operator not in ("==", "!=", "==="):
                raise RequirementError(
                    f"marker {text!r}: cannot compare {left_value!r} {operator} {right_value!r}"
                ) from None
    if operator == "!=":
        return left_value != right_value
    return left_value == right_value


# Requirements -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """`name[extras] specifier ; marker`; direct URL requirements are refused (locks pin them)."""

    text: str
    name: str
    extras: FrozenSet[str]
    specifier: SpecifierSet
    marker: Optional[Marker]

    @classmethod
    def parse(cls, text: str) -> Requirement:
        body, _, marker_text = text.partition(";")
        match = _REQUIREMENT.match(body)
        if not match or not _NAME.match(match["name"]):
            raise RequirementError(f"{text!r} is not a PEP 508 requirement")
        if match["rest"].startswith("@"):
            raise RequirementError(f"{text!r}: direct URL requirements are not supported")
        extras = frozenset(
            canonical_name(extra.strip())
            for extra in (match["extras"] or "").split(",")
            if extra.strip()
        )
        return cls(
            text=text.strip(),
            name=canonical_name(match["name"]),
            extras=extras,
            specifier=SpecifierSet.parse(match["rest"]),
            marker=Marker.parse(marker_text) if marker_text.strip() else None,
        )

    def applies(self, environment: MarkerEnvironment, extras: FrozenSet[str] = frozenset()) -> bool:
        """Whether the target installs this requirement when its parent was asked for `extras`."""
        if self.marker is None:
            return True
        marker = self.marker
        return any(
            marker.evaluate({**environment, "extra": extra}) for extra in sorted(extras) or [""]
        )


def marker_environment(python_full_version: str, machine: str) -> Dict[str, str]:
    """The marker values of CPython `python_full_version` on Linux/glibc `machine`."""
    major_minor = ".".join(python_full_version.split(".")[:2])
    return {
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_version": major_minor,
        "python_full_version": python_full_version,
        "implementation_name": "cpython",
        "implementation_version": python_full_version,
        "extra": "",
    }

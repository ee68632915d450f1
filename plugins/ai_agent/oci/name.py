"""Image references: `[registry/]repository[:tag][@digest]`, parsed and normalised as the Docker
CLI does (Docker Hub's aliases, `library/` for one-component names). No I/O, so that code which
only checks a reference (the plugin's target fields) need not load the registry client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .errors import OciError
from .types import InvalidDigest, check_digest

# Docker Hub's names: the one in references and config.json, and the host serving the API.
DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})
_DOCKER_HUB_API_HOST = "registry-1.docker.io"

# The grammar of distribution's reference package; matched with fullmatch().
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_RE = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG_RE = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_MAX_NAME_LENGTH = 255


class InvalidReference(OciError, ValueError):
    pass


@dataclass(frozen=True)
class Repository:
    """A repository on a registry: `registry` is `host[:port]` (`docker.io` for Docker Hub)."""

    registry: str
    name: str

    def __post_init__(self) -> None:
        if not _DOMAIN_RE.fullmatch(self.registry):
            raise InvalidReference(f"invalid registry host {self.registry!r}")
        if len(self.registry) + 1 + len(self.name) > _MAX_NAME_LENGTH:
            raise InvalidReference(f"repository name longer than {_MAX_NAME_LENGTH}: {self.name!r}")
        if not all(_PATH_COMPONENT_RE.fullmatch(part) for part in self.name.split("/")):
            raise InvalidReference(
                f"invalid repository name {self.name!r}: lower-case letters, digits and"
                " separators (. _ __ -) between them, in /-separated components"
            )

    @classmethod
    def parse(cls, text: str) -> Repository:
        """Parse `[registry/]name`. Without a registry (a first component with no `.` or `:` and
        not `localhost`) it is Docker Hub, where one-component names live under `library/`.
        A first component with capitals and neither is refused: distribution's grammar reads
        it as a registry host since Docker 23, older daemons as a name, which must be
        lowercase, so no Docker loads it the same way."""
        first, slash, rest = text.partition("/")
        names_registry = bool(slash) and ("." in first or ":" in first or first == "localhost")
        if slash and not names_registry and first != first.lower():
            raise InvalidReference(
                f"{text!r}: `{first}` has capital letters, so only a registry host could be"
                " named so, but a host needs a `.` or a `:port`: lowercase it for a repository"
                " name, or write the registry as `host.domain/...` or `host:port/...`"
            )
        registry, name = (first, rest) if names_registry else (DOCKER_HUB, text)
        if registry in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in name:
                name = "library/" + name
        return cls(registry, name)

    @property
    def api_host(self) -> str:
        """The host serving the distribution API (Docker Hub's differs from its name)."""
        return _DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        return f"{self.registry}/{self.name}"


def check_tag(tag: str) -> None:
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReference(f"invalid tag {tag!r}: up to 128 letters, digits, _ . -")


@dataclass(frozen=True)
class Reference:
    """`registry/repository:tag`, `…@sha256:…` or both; without either it means `:latest`."""

    repository: Repository
    tag: Optional[str] = None
    digest: Optional[str] = None

    def __post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            object.__setattr__(self, "tag", "latest")
        if self.tag is not None:
            check_tag(self.tag)
        if self.digest is not None:
            try:
                check_digest(self.digest)
            except InvalidDigest as error:
                raise InvalidReference(f"invalid digest in reference: {error}") from None

    @classmethod
    def parse(cls, text: str) -> Reference:
        name, at, digest = text.partition("@")
        tag = None
        colon = name.rfind(":")
        if colon > name.rfind("/"):
            name, tag = name[:colon], name[colon + 1 :]
        return cls(Repository.parse(name), tag, digest if at else None)

    @property
    def identifier(self) -> str:
        """What names the manifest in the API: the digest when there is one (it pins), else
        the tag."""
        if self.digest:
            return self.digest
        assert self.tag is not None, "__post_init__ defaults the tag"
        return self.tag

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}{tag}{digest}"

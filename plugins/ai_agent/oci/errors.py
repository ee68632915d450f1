"""`OciError`, the root of every error of this package, and the errors of the registry client
(`transport`, `remote`, `push`): each says which registry, repository and operation failed,
and never carries a URL's query (`loggable_url`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, FrozenSet, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .name import Repository


def loggable_url(url: str) -> str:
    """The URL without its query: upload sessions and storage redirects carry signed state there."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class OciError(Exception):
    """The root of this package's errors: `python -m ai_agent.oci` reports any of them as one
    `error: ...` line and exit status 2; anything else is a bug, with a traceback."""


class RegistryError(OciError):
    """Base of the errors this client raises about a registry or the blobs given to it."""


class RegistryHTTPError(RegistryError):
    """The registry answered with a status the operation cannot continue from."""

    def __init__(
        self,
        repository: Repository,
        method: str,
        url: str,
        status: int,
        errors: Sequence[Tuple[str, str]] = (),
    ) -> None:
        self.repository = repository
        self.method = method
        self.status = status
        self.errors = tuple(errors)
        details = "".join(f"; {code}: {message}" for code, message in self.errors)
        super().__init__(
            f"{method} {loggable_url(url)} for repository {repository.name} on registry"
            f" {repository.registry} failed with HTTP {status}{details}"
        )

    @property
    def codes(self) -> FrozenSet[str]:
        """The distribution error codes of the answer, e.g. MANIFEST_UNKNOWN, DIGEST_INVALID."""
        return frozenset(code for code, _ in self.errors)


class NotFoundError(RegistryHTTPError):
    pass


class TransientHTTPError(RegistryHTTPError):
    """A 5xx (or 408/429) answer: worth retrying the operation."""


class AuthenticationError(RegistryError):
    pass


class PlainHTTPRefused(RegistryError):
    pass


class TLSVerificationError(RegistryError):
    pass


class DigestMismatch(RegistryError):
    """What the registry served or stored does not match the digest that names it."""

    def __init__(self, repository: Repository, digest: str, detail: str) -> None:
        self.repository = repository
        self.digest = digest
        super().__init__(
            f"{digest} in repository {repository.name} on registry {repository.registry} failed"
            f" verification: {detail}"
        )


class BlobSourceMismatch(RegistryError):
    """The local bytes given for a blob do not match its descriptor."""


class MissingBlob(RegistryError):
    pass


class InvalidManifest(RegistryError):
    pass


class PlatformNotFound(RegistryError):
    pass


class RegistryUnavailable(RegistryError):
    """An operation kept failing transiently until its retries ran out."""


class RegistryTimeout(RegistryError):
    """No connection within the connect timeout, or a connection over which nothing arrived
    within the read timeout; the message says which."""

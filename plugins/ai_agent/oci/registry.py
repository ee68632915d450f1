"""A client for the OCI distribution API: resolve, pull and push images by digest.

Modelled on go-containerregistry's `pkg/v1/remote`. Everything it reads is verified against the
digest that names it before anyone can use it; everything it pushes is skipped when the registry
already has it. It works on plain descriptors and local blobs (bytes or files), so it needs no
image model.

Transport rules: HTTPS with the system CA bundle, plain HTTP only for loopback registries and ones
marked insecure; keep-alive connections reused per host; bounded retries with exponential backoff
on 5xx answers and dropped connections. Whole operations are retried, never a single request of a
multi-request upload, so a retried upload starts a fresh upload session.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import selectors
import socket
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import (
    Any,
    BinaryIO,
    Callable,
    Collection,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from .auth import (
    DOCKER_HUB,
    Challenge,
    Credentials,
    DockerConfigKeychain,
    Keychain,
    parse_token_response,
    parse_www_authenticate,
)
from .connection import NetworkLimits, TimedHTTPConnection, TimedHTTPSConnection
from .types import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    InvalidDigest,
    Platform,
    check_digest,
    sha256_digest,
)

_log = logging.getLogger(__name__)

DEFAULT_PLATFORM = Platform("linux", "amd64")
# Blobs up to this size go up in one PUT; bigger ones in PATCH chunks of this size.
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
# Registries cap manifests at a few MiB; the cap keeps a hostile answer out of memory.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

_USER_AGENT = "ai-agent-oci"
_MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))
_OCTET_STREAM = "application/octet-stream"
_COPY_BUFFER = 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Docker Hub's names: the one in references and config.json, and the host serving the API.
_DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})
_DOCKER_HUB_API_HOST = "registry-1.docker.io"
# A token's lifetime when the token server does not say (distribution's token spec), and how long
# before it ends it is renewed.
_DEFAULT_TOKEN_LIFETIME_S = 60
_TOKEN_RENEWAL_MARGIN_S = 10

# The grammar of distribution's reference package; matched with fullmatch().
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_RE = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG_RE = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_MAX_NAME_LENGTH = 255

T = TypeVar("T")

# A blob to push: its bytes, or the file holding them.
BlobData = Union[bytes, Path]


# Errors -----------------------------------------------------------------------------------------


class RegistryError(Exception):
    """Base of the errors this client raises about a registry or the blobs given to it."""


class InvalidReference(ValueError):
    pass


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
            f"{method} {_loggable_url(url)} for repository {repository.name} on registry"
            f" {repository.registry} failed with HTTP {status}{details}"
        )

    @property
    def codes(self) -> FrozenSet[str]:
        """The distribution error codes of the answer, e.g. MANIFEST_UNKNOWN, DIGEST_INVALID."""
        return frozenset(code for code, _ in self.errors)


class NotFoundError(RegistryHTTPError):
    pass


class _TransientHTTPError(RegistryHTTPError):
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


def _corrupt_download(received: str) -> str:
    return (
        f"received {received}; the registry's copy is corrupt or was tampered with, and nothing"
        " was kept"
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


# Dropped connections (plain or TLS), timeouts, truncated answers and 5xx statuses.
_TRANSIENT_ERRORS = (
    ConnectionError,
    http.client.HTTPException,
    socket.timeout,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    _TransientHTTPError,
    RegistryTimeout,
)


# References -------------------------------------------------------------------------------------


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


def _check_tag(tag: str) -> None:
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
            _check_tag(self.tag)
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


# Manifests --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """A manifest or index: the descriptor that names it and its exact bytes (never re-encoded,
    since re-encoding would change the digest)."""

    descriptor: Descriptor
    data: bytes = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.descriptor.media_type in INDEX_MEDIA_TYPES

    @cached_property
    def document(self) -> Dict[str, Any]:
        try:
            document = json.loads(self.data)
        except ValueError:
            raise InvalidManifest(f"manifest {self.descriptor.digest} is not JSON") from None
        if not isinstance(document, dict):
            raise InvalidManifest(f"manifest {self.descriptor.digest} is not a JSON object")
        return document

    @property
    def config(self) -> Descriptor:
        return self._descriptors("config", expect_index=False)[0]

    @property
    def layers(self) -> Tuple[Descriptor, ...]:
        return self._descriptors("layers", expect_index=False)

    @property
    def manifests(self) -> Tuple[Descriptor, ...]:
        """The entries of an index."""
        return self._descriptors("manifests", expect_index=True)

    def _descriptors(self, key: str, expect_index: bool) -> Tuple[Descriptor, ...]:
        if self.is_index != expect_index:
            kind = "an index" if self.is_index else "an image manifest"
            raise InvalidManifest(f"{self.descriptor.digest} is {kind} and has no {key!r}")
        value: Any = self.document.get(key)
        try:
            entries = [value] if isinstance(value, dict) else list(value)
            return tuple(Descriptor.from_json(entry) for entry in entries)
        except (TypeError, KeyError, ValueError):
            raise InvalidManifest(
                f"manifest {self.descriptor.digest} has a missing or malformed {key!r}"
            ) from None


# Statistics and policy --------------------------------------------------------------------------


# The limits of the command lines that reach registries (`oci lock-base|pull-blob|push`): more
# attempts than a download gets, for registries that answer 429 or 503 under load.
REGISTRY_LIMITS = NetworkLimits(attempts=5)
FIRST_RETRY_DELAY_S = 0.5


_UPLOADED, _MOUNTED, _PRESENT = "uploaded", "mounted", "present"


@dataclass
class PushStats:
    """What a push sent and what it could skip (mounted from another repository, or already
    there). Safe to update from the push's worker threads."""

    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    mounted_blobs: int = 0
    mounted_bytes: int = 0
    present_blobs: int = 0
    present_bytes: int = 0
    manifests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def skipped_bytes(self) -> int:
        return self.mounted_bytes + self.present_bytes

    def _record_blob(self, outcome: str, size: int) -> None:
        with self._lock:
            setattr(self, f"{outcome}_blobs", getattr(self, f"{outcome}_blobs") + 1)
            setattr(self, f"{outcome}_bytes", getattr(self, f"{outcome}_bytes") + size)

    def _count_manifest(self) -> None:
        with self._lock:
            self.manifests += 1

    def _count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def __str__(self) -> str:
        return (
            f"uploaded {self.uploaded_blobs} blobs ({_format_size(self.uploaded_bytes)}), skipped"
            f" {self.mounted_blobs + self.present_blobs} ({_format_size(self.skipped_bytes)}:"
            f" {self.mounted_blobs} mounted, {self.present_blobs} already present),"
            f" put {self.manifests} manifests, {self.retries} retries"
        )


def _format_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


# Transport --------------------------------------------------------------------------------------


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def _origin_of(url: str) -> _Origin:
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    return _Origin(parts.scheme, parts.hostname or "", parts.port or default_port)


def _loggable_url(url: str) -> str:
    """The URL without its query: upload sessions and storage redirects carry signed state there."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _with_query(url: str, params: Sequence[Tuple[str, str]]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def is_loopback(host: str) -> bool:
    """Whether `host[:port]` (or a bare host name) names this machine: localhost, 127.0.0.0/8,
    ::1."""
    hostname = urlsplit(f"//{host}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


class _Stream(Protocol):
    """A request body that is read once, in blocks, and then closed."""

    def read(self, size: int = -1) -> bytes:
        ...

    def close(self) -> None:
        ...


# A factory of request bodies, so that a request can be sent again after an auth challenge.
_Body = Callable[[], _Stream]


class _ConnectionPool:
    """Idle keep-alive connections per origin. A connection is used by one thread at a time."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: NetworkLimits) -> None:
        self._ssl_context = ssl_context
        self._limits = limits
        self._idle: Dict[_Origin, List[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def acquire(self, origin: _Origin) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                connection = idle.pop() if idle else None
            if connection is None:
                return self._connect(origin)
            if not _closed_by_peer(connection):
                return connection
            connection.close()

    def release(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(origin, []).append(connection)

    def close(self) -> None:
        with self._lock:
            connections = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()

    def _connect(self, origin: _Origin) -> http.client.HTTPConnection:
        connection: Union[TimedHTTPConnection, TimedHTTPSConnection]
        if origin.scheme == "https":
            connection = TimedHTTPSConnection(
                origin.host, origin.port, context=self._ssl_context, blocksize=_COPY_BUFFER
            )
        else:
            connection = TimedHTTPConnection(origin.host, origin.port, blocksize=_COPY_BUFFER)
        connection.connect_timeout = self._limits.connect_s
        connection.read_timeout = self._limits.read_s
        return connection

    def timeout_error(self, connection: http.client.HTTPConnection, url: str) -> RegistryTimeout:
        if getattr(connection, "connected", False):
            return RegistryTimeout(
                f"{_loggable_url(url)}: connected, but nothing arrived within"
                f" {self._limits.read_s:g} s"
            )
        return RegistryTimeout(
            f"{_loggable_url(url)}: cannot connect within {self._limits.connect_s:g} s"
        )


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether the server closed an idle keep-alive connection (it is then readable, at EOF).

    Checked before reuse, so that a request is never sent into a dead connection and then
    blindly repeated: the registry might have acted on it.
    """
    sock = connection.sock
    if sock is None:
        return False  # closed on our side; http.client reconnects it
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            return bool(selector.select(timeout=0))
    except (OSError, ValueError):
        return True


class _Response:
    """An HTTP answer tied to its connection: closing it returns the connection to the pool, or
    drops the connection when the body was not read to its end."""

    def __init__(
        self,
        pool: _ConnectionPool,
        origin: _Origin,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        url: str,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection: Optional[http.client.HTTPConnection] = connection
        self._response = response
        self.url = url
        self.status = response.status

    def header(self, name: str) -> Optional[str]:
        return self._response.getheader(name)

    def read(self, size: int) -> bytes:
        try:
            return self._response.read(size)
        except socket.timeout as error:
            assert self._connection is not None, "read before close"
            raise self._pool.timeout_error(self._connection, self.url) from error

    def read_up_to(self, limit: int) -> bytes:
        """The whole body, or its first `limit` + 1 bytes when it is longer than `limit`."""
        buffer = bytearray()
        while len(buffer) <= limit:
            chunk = self.read(min(_COPY_BUFFER, limit + 1 - len(buffer)))
            if not chunk:
                break
            buffer += chunk
        return bytes(buffer)

    def discard(self) -> None:
        """Read and drop a short body (so the connection can be reused), then close."""
        self.read_up_to(_MAX_ERROR_BODY)
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if not self._response.isclosed():
            connection.close()
        self._pool.release(self._origin, connection)

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Transport:
    """Sends single HTTP requests over pooled connections; enforces the plain-HTTP rule."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        limits: NetworkLimits,
        insecure_registries: FrozenSet[str],
    ) -> None:
        self._pool = _ConnectionPool(ssl_context, limits)
        self._insecure_registries = insecure_registries

    def allows_plain_http(self, host: str) -> bool:
        return is_loopback(host) or host in self._insecure_registries

    def send(
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[_Body] = None
    ) -> _Response:
        parts = urlsplit(url)
        if parts.scheme == "http" and not self.allows_plain_http(parts.netloc):
            raise PlainHTTPRefused(
                f"refusing plain HTTP to {parts.netloc}: only loopback registries and ones marked"
                " insecure may be reached without TLS"
            )
        if parts.scheme not in ("http", "https"):
            raise RegistryError(f"unsupported URL scheme in {_loggable_url(url)}")
        origin = _origin_of(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection = self._pool.acquire(origin)
        try:
            stream = body() if body else None
            try:
                connection.request(method, target, body=stream, headers=dict(headers))
            finally:
                if stream is not None:
                    stream.close()
            response = connection.getresponse()
        except BaseException as error:
            connection.close()
            if isinstance(error, socket.timeout):
                raise self._pool.timeout_error(connection, url) from error
            if isinstance(error, ssl.SSLCertVerificationError):
                raise TLSVerificationError(
                    f"the TLS certificate of {parts.netloc} is not trusted"
                    f" ({error.verify_message}); add its CA to the system bundle or point"
                    " SSL_CERT_FILE at a bundle that holds it"
                ) from error
            raise
        _log.debug("%s %s -> %d", method, _loggable_url(url), response.status)
        return _Response(self._pool, origin, connection, response, url)

    def close(self) -> None:
        self._pool.close()


def _bytes_body(data: bytes) -> _Body:
    return lambda: io.BytesIO(data)


# Authentication ---------------------------------------------------------------------------------


class _Authenticator:
    """The auth state of one registry: the scheme it challenged with and the bearer tokens it
    issued, per set of scopes. Until the first challenge requests go out anonymously."""

    def __init__(self, registry: str, keychain: Keychain, transport: _Transport) -> None:
        self._registry = registry
        self._keychain = keychain
        self._transport = transport
        self._lock = threading.Lock()
        self._challenge: Optional[Challenge] = None
        self._credentials: Optional[Credentials] = None
        self._credentials_looked_up = False
        self._tokens: Dict[FrozenSet[str], Tuple[str, float]] = {}

    def authorization(self, repository: Repository, scopes: FrozenSet[str]) -> Optional[str]:
        """The Authorization header for a request needing `scopes`, if the registry wants one."""
        with self._lock:
            if self._challenge is None:
                return None
            if self._challenge.scheme == "basic":
                return self._basic_authorization(repository)
            token = self._tokens.get(scopes)
            if token is None or token[1] <= time.monotonic():
                token = self._fetch_token(repository, scopes, scopes)
            return "Bearer " + token[0]

    def challenged(
        self, repository: Repository, header: Optional[str], scopes: FrozenSet[str]
    ) -> None:
        """Learn from a 401 answer, so that `authorization` then answers with fresh credentials."""
        try:
            challenges = parse_www_authenticate(header or "")
        except ValueError as error:
            raise AuthenticationError(f"registry {self._registry}: {error}") from None
        by_scheme = {c.scheme: c for c in challenges}
        challenge = by_scheme.get("bearer") or by_scheme.get("basic")
        if challenge is None:
            raise AuthenticationError(
                f"registry {self._registry} asks for authentication with"
                f" {header or 'no WWW-Authenticate header'}; only Bearer and Basic are supported"
            )
        with self._lock:
            self._challenge = challenge
            if challenge.scheme == "bearer":
                # The challenge names the scope this request needed; ask for it as well.
                wanted = scopes | frozenset(challenge.params.get("scope", "").split())
                self._fetch_token(repository, scopes, wanted)

    def _basic_authorization(self, repository: Repository) -> str:
        credentials = self._lookup_credentials()
        if credentials is None or not (credentials.username or credentials.password):
            raise AuthenticationError(
                f"registry {self._registry} requires a user name and password for repository"
                f" {repository.name}; run `docker login {self._registry}` or pass credentials"
            )
        return credentials.basic_authorization()

    def _lookup_credentials(self) -> Optional[Credentials]:
        if not self._credentials_looked_up:
            self._credentials = self._keychain.credentials_for(self._registry)
            self._credentials_looked_up = True
        return self._credentials

    def _fetch_token(
        self, repository: Repository, key: FrozenSet[str], scopes: FrozenSet[str]
    ) -> Tuple[str, float]:
        assert self._challenge is not None
        realm = self._challenge.params.get("realm")
        if not realm:
            raise AuthenticationError(
                f"registry {self._registry} sent a Bearer challenge without a realm"
            )
        service = self._challenge.params.get("service", "")
        credentials = self._lookup_credentials()
        headers = {"User-Agent": _USER_AGENT}
        if credentials is not None and credentials.identity_token:
            # OAuth2 refresh-token grant, as `docker login` with an identity token does.
            form = urlencode(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": credentials.identity_token,
                    "service": service,
                    "scope": " ".join(sorted(scopes)),
                    "client_id": _USER_AGENT,
                }
            ).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Content-Length"] = str(len(form))
            method, url, body = "POST", realm, _bytes_body(form)
        else:
            query = [("service", service)] + [("scope", scope) for scope in sorted(scopes)]
            method, url, body = "GET", _with_query(realm, query), None
            if credentials is not None and (credentials.username or credentials.password):
                headers["Authorization"] = credentials.basic_authorization()
        with self._transport.send(method, url, headers, body) as response:
            answer = response.read_up_to(_MAX_ERROR_BODY)
        if response.status == 200:
            try:
                token, lifetime = parse_token_response(answer)
            except ValueError as error:
                raise AuthenticationError(
                    f"token server {_loggable_url(realm)} of registry {self._registry}: {error}"
                ) from None
            expiry = time.monotonic() + (lifetime or _DEFAULT_TOKEN_LIFETIME_S)
            self._tokens[key] = (token, expiry - _TOKEN_RENEWAL_MARGIN_S)
            return self._tokens[key]
        if response.status in (401, 403):
            who = "the configured credentials" if credentials else "anonymous access"
            raise AuthenticationError(
                f"token server {_loggable_url(realm)} of registry {self._registry} refused"
                f" {who} for {' '.join(sorted(scopes))} (HTTP {response.status}); run"
                f" `docker login {self._registry}` or pass credentials"
            )
        error_type = (
            _TransientHTTPError if response.status in _TRANSIENT_STATUSES else RegistryHTTPError
        )
        raise error_type(repository, method, realm, response.status)


# Client -----------------------------------------------------------------------------------------


def _pull_scope(repository: Repository) -> FrozenSet[str]:
    return frozenset({f"repository:{repository.name}:pull"})


def _push_scope(repository: Repository) -> FrozenSet[str]:
    return frozenset({f"repository:{repository.name}:pull,push"})


class RegistryClient:
    """Talks to registries on behalf of one process. Thread-safe; close it (or use it as a
    context manager) to close its pooled connections.

    `keychain` defaults to the Docker CLI's config (`$DOCKER_CONFIG`, `~/.docker/config.json`).
    `insecure_registries` (`host[:port]`) may be reached over plain HTTP, as loopback ones always
    are. Blobs larger than `chunk_size` are pushed in chunks of that size, `jobs` at a time.
    A connection must be made within `limits.connect_s`, and then each answer or piece of data
    arrive within `limits.read_s`; either failure, and answers such as 503, are retried within
    `limits.attempts` and `limits.total_s`, the first retry after `first_retry_delay_s`.
    """

    def __init__(
        self,
        keychain: Optional[Keychain] = None,
        *,
        insecure_registries: Iterable[str] = (),
        limits: NetworkLimits = REGISTRY_LIMITS,
        first_retry_delay_s: float = FIRST_RETRY_DELAY_S,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        jobs: int = 4,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        if chunk_size < 1 or jobs < 1:
            raise ValueError("chunk_size and jobs must be positive")
        self._keychain = keychain if keychain is not None else DockerConfigKeychain()
        self._limits = limits
        self._first_retry_delay_s = first_retry_delay_s
        self._chunk_size = chunk_size
        self._jobs = jobs
        # create_default_context() loads the system CA bundle and honours SSL_CERT_FILE/DIR.
        self._transport = _Transport(
            ssl_context or ssl.create_default_context(),
            limits,
            frozenset(insecure_registries),
        )
        self._authenticators: Dict[str, _Authenticator] = {}
        self._authenticators_lock = threading.Lock()

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Pull ---------------------------------------------------------------------------------------

    def get_manifest(self, reference: Reference) -> Manifest:
        """The manifest or index `reference` names, verified against its digest (the one in the
        reference, else the one the registry states)."""
        return self._retrying(
            f"fetching manifest {reference.identifier}",
            reference.repository,
            lambda: self._fetch_manifest(reference.repository, reference.identifier),
        )

    def resolve(self, reference: Reference, platform: Platform = DEFAULT_PLATFORM) -> Manifest:
        """The image manifest `reference` names; for an index, its entry for `platform` (whose
        descriptor then carries the platform). A plain image manifest is returned as it is: its
        platform is only in its config."""
        top = self.get_manifest(reference)
        if not top.is_index:
            return top
        matches = [e for e in top.manifests if e.platform and e.platform.matches(platform)]
        if not matches:
            available = ", ".join(sorted({str(e.platform) for e in top.manifests if e.platform}))
            raise PlatformNotFound(
                f"{reference} has no image for platform {platform}; it has: {available or 'none'}"
            )
        chosen = matches[0]
        return self._retrying(
            f"fetching manifest {chosen.digest}",
            reference.repository,
            lambda: self._fetch_manifest(reference.repository, chosen.digest, chosen),
        )

    def fetch_blob(self, repository: Repository, descriptor: Descriptor, target: Path) -> None:
        """Download a blob to `target` (in an existing directory), hashing while writing; `target`
        appears only once the content matched the descriptor (it is written beside it, then
        renamed)."""

        def download() -> None:
            with self._get_blob(repository, descriptor) as response:
                with _atomic_output(Path(target)) as output:
                    self._copy_verified(repository, descriptor, response, output)

        self._retrying(f"downloading blob {descriptor.digest}", repository, download)

    def read_blob(self, repository: Repository, descriptor: Descriptor) -> bytes:
        """A small blob (an image config) in memory, verified."""

        def download() -> bytes:
            output = io.BytesIO()
            with self._get_blob(repository, descriptor) as response:
                self._copy_verified(repository, descriptor, response, output)
            return output.getvalue()

        return self._retrying(f"downloading blob {descriptor.digest}", repository, download)

    def served_size(self, repository: Repository, kind: str, digest: str) -> Optional[int]:
        """The size the registry states for the manifest or blob (`kind` "manifests" or "blobs")
        `digest`, asked with HEAD so that nothing is downloaded; NotFoundError if it has none."""
        return self._retrying(
            f"checking for {digest}", repository, lambda: self._head(repository, kind, digest)
        )

    # Push ---------------------------------------------------------------------------------------

    def push(
        self,
        repository: Repository,
        root: Descriptor,
        blobs: Mapping[str, BlobData],
        *,
        tags: Sequence[str] = (),
        mount_from: Optional[Repository] = None,
    ) -> PushStats:
        """Push the manifest or index `root` and everything it references, then put `root` under
        each tag (or only by digest without tags).

        `blobs` maps digests to local content, manifests included. A blob the registry already
        has, or can mount from `mount_from` (same registry), need not be in it. Manifests are sent
        as the exact bytes given, so the registry's digest is the local one.
        """
        for tag in tags:
            _check_tag(tag)
        if mount_from is not None and (
            mount_from.registry != repository.registry or mount_from == repository
        ):
            mount_from = None  # mounting only works between repositories of one registry
        with ThreadPoolExecutor(max_workers=self._jobs) as executor:
            push = _Push(self, repository, blobs, mount_from, executor)
            push.push_manifest(root, tuple(tags) or (root.digest,))
        return push.stats

    # Internals ----------------------------------------------------------------------------------

    def _retrying(
        self,
        description: str,
        repository: Repository,
        operation: Callable[[], T],
        on_retry: Callable[[], None] = lambda: None,
    ) -> T:
        attempt = 1
        started = time.monotonic()
        while True:
            try:
                return operation()
            except _TRANSIENT_ERRORS as error:
                elapsed = time.monotonic() - started
                delay = self._limits.retry_delay(attempt, elapsed, self._first_retry_delay_s)
                if delay is None:
                    given_up = self._limits.given_up(attempt, elapsed)
                    raise RegistryUnavailable(
                        f"{description} in repository {repository.name} on registry"
                        f" {repository.registry} failed ({given_up}); last error:"
                        f" {_describe(error)}"
                    ) from error
                attempt += 1
                _log.warning(
                    "%s in %s failed (%s); attempt %d of %d in %gs",
                    description,
                    repository,
                    _describe(error),
                    attempt,
                    self._limits.attempts,
                    delay,
                )
                on_retry()
                time.sleep(delay)

    def _authenticator(self, registry: str) -> _Authenticator:
        with self._authenticators_lock:
            if registry not in self._authenticators:
                self._authenticators[registry] = _Authenticator(
                    registry, self._keychain, self._transport
                )
            return self._authenticators[registry]

    def _base_url(self, repository: Repository) -> str:
        plain = self._transport.allows_plain_http(repository.registry)
        return f"{'http' if plain else 'https'}://{repository.api_host}"

    def _request(
        self,
        repository: Repository,
        method: str,
        url: str,
        *,
        scopes: FrozenSet[str],
        expected: Collection[int],
        headers: Optional[Mapping[str, str]] = None,
        body: Optional[_Body] = None,
        follow_redirects: bool = False,
    ) -> _Response:
        """One API call: `url` is a path on the registry or an absolute URL it handed out.

        Answers a 401 once by authenticating, follows redirects (without credentials when they
        leave the registry's origin), and raises for any status not in `expected`.
        """
        base_url = self._base_url(repository)
        url = urljoin(base_url, url)
        authenticator = self._authenticator(repository.registry)
        challenged = False
        redirects = 0
        while True:
            on_registry = _origin_of(url) == _origin_of(base_url)
            request_headers = {"User-Agent": _USER_AGENT, **(headers or {})}
            authorization = authenticator.authorization(repository, scopes) if on_registry else None
            if authorization:
                request_headers["Authorization"] = authorization
            response = self._transport.send(method, url, request_headers, body)
            location = response.header("Location")
            if response.status == 401 and on_registry and not challenged:
                challenge = response.header("WWW-Authenticate")
                response.discard()
                authenticator.challenged(repository, challenge, scopes)
                challenged = True
            elif follow_redirects and response.status in _REDIRECT_STATUSES and location:
                response.discard()
                redirects += 1
                if redirects > _MAX_REDIRECTS:
                    raise RegistryHTTPError(repository, method, url, response.status)
                url = urljoin(url, location)
            elif response.status in expected:
                return response
            else:
                raise _http_error(repository, method, url, response)

    def _fetch_manifest(
        self, repository: Repository, identifier: str, described: Optional[Descriptor] = None
    ) -> Manifest:
        with self._request(
            repository,
            "GET",
            f"/v2/{repository.name}/manifests/{identifier}",
            scopes=_pull_scope(repository),
            expected={200},
            headers={"Accept": _MANIFEST_ACCEPT},
        ) as response:
            data = response.read_up_to(MAX_MANIFEST_SIZE)
            content_type = response.header("Content-Type") or ""
            stated_digest = response.header("Docker-Content-Digest") or ""
        if len(data) > MAX_MANIFEST_SIZE:
            raise InvalidManifest(
                f"manifest {identifier} in {repository} is larger than {MAX_MANIFEST_SIZE} bytes"
            )
        digest = sha256_digest(data)
        expected = identifier if identifier.startswith("sha256:") else stated_digest
        if expected.startswith("sha256:") and digest != expected:
            raise DigestMismatch(
                repository, expected, _corrupt_download(f"{len(data)} bytes with digest {digest}")
            )
        if described is not None:
            return Manifest(described, data)
        media_type = _manifest_media_type(repository, identifier, content_type, data)
        return Manifest(Descriptor(media_type, digest, len(data)), data)

    def _get_blob(self, repository: Repository, descriptor: Descriptor) -> _Response:
        return self._request(
            repository,
            "GET",
            f"/v2/{repository.name}/blobs/{descriptor.digest}",
            scopes=_pull_scope(repository),
            expected={200},
            follow_redirects=True,
        )

    @staticmethod
    def _copy_verified(
        repository: Repository, descriptor: Descriptor, response: _Response, output: BinaryIO
    ) -> None:
        """Copy at most one byte more than the descriptor's size, hashing on the way."""
        hasher = hashlib.sha256()
        size = 0
        while size <= descriptor.size:
            chunk = response.read(min(_COPY_BUFFER, descriptor.size + 1 - size))
            if not chunk:
                break
            hasher.update(chunk)
            output.write(chunk)
            size += len(chunk)
        digest = "sha256:" + hasher.hexdigest()
        if size > descriptor.size:
            raise DigestMismatch(
                repository,
                descriptor.digest,
                _corrupt_download(f"more than the expected {descriptor.size} bytes"),
            )
        if digest != descriptor.digest:
            raise DigestMismatch(
                repository,
                descriptor.digest,
                _corrupt_download(
                    f"{size} bytes (expected {descriptor.size}) with digest {digest}"
                ),
            )

    def _head(self, repository: Repository, kind: str, digest: str) -> Optional[int]:
        """HEAD of a manifest or blob (`kind` "manifests" or "blobs") by digest: the size the
        registry states, if it does; NotFoundError if it has no such digest."""
        with self._request(
            repository,
            "HEAD",
            f"/v2/{repository.name}/{kind}/{digest}",
            scopes=_pull_scope(repository),
            expected={200},
            headers={"Accept": _MANIFEST_ACCEPT} if kind == "manifests" else None,
            follow_redirects=True,
        ) as response:
            response.discard()
            length = response.header("Content-Length") or ""
            return int(length) if length.isdigit() else None

    def _exists(self, repository: Repository, kind: str, digest: str) -> bool:
        try:
            self._head(repository, kind, digest)
        except NotFoundError:
            return False
        return True


def _describe(error: BaseException) -> str:
    if isinstance(error, RegistryError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _manifest_media_type(
    repository: Repository, identifier: str, content_type: str, data: bytes
) -> str:
    """The media type of a fetched manifest: the Content-Type, else the document's own."""
    known = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
    media_type = content_type.split(";", 1)[0].strip()
    if media_type not in known:
        with contextlib.suppress(ValueError, AttributeError):
            media_type = json.loads(data).get("mediaType") or media_type
    if media_type not in known:
        raise InvalidManifest(
            f"manifest {identifier} in {repository} has media type {media_type!r}, which is neither"
            " an OCI/Docker v2 image manifest nor an index (Docker schema 1 is not supported)"
        )
    return media_type


def _http_error(
    repository: Repository, method: str, url: str, response: _Response
) -> RegistryError:
    body = response.read_up_to(_MAX_ERROR_BODY)
    response.close()
    errors: List[Tuple[str, str]] = []
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        errors = [
            (str(e.get("code", "")), str(e.get("message", "")))
            for e in json.loads(body).get("errors") or ()
        ]
    status = response.status
    if status in (401, 403):
        details = "".join(f"; {code}: {message}" for code, message in errors)
        return AuthenticationError(
            f"registry {repository.registry} denied {method} {_loggable_url(url)} for repository"
            f" {repository.name} (HTTP {status}{details}); run `docker login"
            f" {repository.registry}` or pass credentials with the needed access"
        )
    if status == 404:
        return NotFoundError(repository, method, url, status, errors)
    if status in _TRANSIENT_STATUSES:
        return _TransientHTTPError(repository, method, url, status, errors)
    return RegistryHTTPError(repository, method, url, status, errors)


@contextlib.contextmanager
def _atomic_output(target: Path) -> Iterator[BinaryIO]:
    """A file that becomes `target` only if the block finishes; otherwise nothing is left."""
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
    )
    try:
        os.fchmod(handle, 0o644)  # a cache file, not a secret (mkstemp makes it 0600)
        with os.fdopen(handle, "wb") as output:
            yield output
            output.flush()
            os.fsync(output.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# Push -------------------------------------------------------------------------------------------


class _FileSlice:
    """`length` bytes of a file from `offset`; a file that ends early is an error, not a short
    request the registry would wait on forever."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self._path = path
        self._file = open(path, "rb")
        self._file.seek(offset)
        self._remaining = length

    def read(self, size: int = -1) -> bytes:
        wanted = self._remaining if size < 0 else min(size, self._remaining)
        data = self._file.read(wanted)
        if len(data) < wanted:
            raise BlobSourceMismatch(f"{self._path} became shorter while it was being pushed")
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class _BlobSource:
    """The local content of a blob to push, re-readable for every attempt."""

    def __init__(self, data: BlobData, descriptor: Descriptor) -> None:
        self._data = data
        self._descriptor = descriptor
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        if size != descriptor.size:
            raise BlobSourceMismatch(
                f"{self} has {size} bytes but its descriptor {descriptor.digest} says"
                f" {descriptor.size}"
            )

    def body(self, offset: int, length: int) -> _Body:
        data = self._data
        if isinstance(data, bytes):
            content = data
            return lambda: io.BytesIO(content[offset : offset + length])
        path = data
        return lambda: _FileSlice(path, offset, length)

    def check_digest(self) -> None:
        """Raise if the local content does not hash to the descriptor's digest."""
        hasher = hashlib.sha256()
        with contextlib.closing(self.body(0, self._descriptor.size)()) as stream:
            for chunk in iter(lambda: stream.read(_COPY_BUFFER), b""):
                hasher.update(chunk)
        if "sha256:" + hasher.hexdigest() != self._descriptor.digest:
            raise BlobSourceMismatch(
                f"{self} does not hash to its descriptor's digest {self._descriptor.digest}"
            )

    def __str__(self) -> str:
        if isinstance(self._data, bytes):
            return f"the in-memory content given for {self._descriptor.digest}"
        return f"local file {self._data}"


class _Push:
    """One push: the repository, the local blobs and the statistics, shared by worker threads."""

    def __init__(
        self,
        client: RegistryClient,
        repository: Repository,
        blobs: Mapping[str, BlobData],
        mount_from: Optional[Repository],
        executor: ThreadPoolExecutor,
    ) -> None:
        self._client = client
        self._repository = repository
        self._blobs = blobs
        self._mount_from = mount_from
        self._executor = executor
        self._scopes = _push_scope(repository)
        self._failed = threading.Event()
        # Blobs already pushed (or found) by this push: an index's images often share layers.
        self._blobs_done: Set[str] = set()
        self.stats = PushStats()

    def push_manifest(self, descriptor: Descriptor, references: Sequence[str]) -> None:
        """Push what `descriptor` references (children first, so the registry accepts it), then
        put the manifest itself under each reference."""
        manifest = Manifest(descriptor, self._manifest_bytes(descriptor))
        if manifest.is_index:
            for entry in manifest.manifests:
                if not self._exists("manifests", entry.digest):
                    self.push_manifest(entry, (entry.digest,))
        else:
            referenced = (manifest.config, *manifest.layers)
            new = {d.digest: d for d in referenced if d.digest not in self._blobs_done}
            self._blobs_done.update(new)
            futures = [self._executor.submit(self._push_blob, d) for d in new.values()]
            for future in futures:
                future.result()
        for reference in references:
            self._put_manifest(manifest, reference)

    def _retrying(self, description: str, operation: Callable[[], T]) -> T:
        return self._client._retrying(
            description, self._repository, operation, self.stats._count_retry
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> _Response:
        return self._client._request(self._repository, method, url, **kwargs)

    def _manifest_bytes(self, descriptor: Descriptor) -> bytes:
        data = self._blobs.get(descriptor.digest)
        if data is None:
            raise MissingBlob(
                f"manifest {descriptor.digest} is not among the local blobs to push to"
                f" {self._repository}"
            )
        content = data if isinstance(data, bytes) else data.read_bytes()
        if sha256_digest(content) != descriptor.digest:
            raise BlobSourceMismatch(
                f"the local manifest given for {descriptor.digest} has digest"
                f" {sha256_digest(content)}"
            )
        return content

    def _exists(self, kind: str, digest: str) -> bool:
        return self._retrying(
            f"checking for {digest}",
            lambda: self._client._exists(self._repository, kind, digest),
        )

    def _put_manifest(self, manifest: Manifest, reference: str) -> None:
        self._retrying(
            f"putting manifest {manifest.descriptor.digest} as {reference}",
            lambda: self._put_manifest_once(manifest, reference),
        )
        self.stats._count_manifest()

    def _put_manifest_once(self, manifest: Manifest, reference: str) -> None:
        descriptor = manifest.descriptor
        with self._request(
            "PUT",
            f"/v2/{self._repository.name}/manifests/{reference}",
            scopes=self._scopes,
            expected={201},
            headers={"Content-Type": descriptor.media_type, "Content-Length": str(descriptor.size)},
            body=_bytes_body(manifest.data),
        ) as response:
            response.discard()
            stored_digest = response.header("Docker-Content-Digest")
        if stored_digest and stored_digest != descriptor.digest:
            raise DigestMismatch(
                self._repository,
                descriptor.digest,
                f"the registry stored the manifest as {stored_digest}; it rewrote the bytes sent",
            )

    def _push_blob(self, descriptor: Descriptor) -> None:
        if self._failed.is_set():
            return  # another blob failed: the push is over, start nothing new
        try:
            outcome = self._retrying(
                f"pushing blob {descriptor.digest}", lambda: self._push_blob_once(descriptor)
            )
        except BaseException:
            self._failed.set()
            raise
        self.stats._record_blob(outcome, descriptor.size)

    def _push_blob_once(self, descriptor: Descriptor) -> str:
        """HEAD, else mount, else upload in a fresh session; returns which of them did it."""
        if self._client._exists(self._repository, "blobs", descriptor.digest):
            return _PRESENT
        location = None
        if self._mount_from is not None:
            mounted, location = self._try_mount(self._mount_from, descriptor)
            if mounted:
                return _MOUNTED
        data = self._blobs.get(descriptor.digest)
        if data is None:
            raise MissingBlob(
                f"blob {descriptor.digest} is neither among the local blobs nor in"
                f" {self._repository}" + (f" or {self._mount_from}" if self._mount_from else "")
            )
        source = _BlobSource(data, descriptor)
        location = location or self._start_upload()
        chunk_size = self._client._chunk_size
        if descriptor.size <= chunk_size:
            self._commit(location, descriptor, source, source.body(0, descriptor.size))
            return _UPLOADED
        for offset in range(0, descriptor.size, chunk_size):
            length = min(chunk_size, descriptor.size - offset)
            with self._request(
                "PATCH",
                location,
                scopes=self._scopes,
                expected={202},
                headers={
                    "Content-Type": _OCTET_STREAM,
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=source.body(offset, length),
            ) as response:
                response.discard()
                location = _location(self._repository, "PATCH", response)
        self._commit(location, descriptor, source, None)
        return _UPLOADED

    def _try_mount(self, source: Repository, descriptor: Descriptor) -> Tuple[bool, Optional[str]]:
        """Mount the blob from `source`; when the registry does not, it may open an upload
        session instead, whose location is returned."""
        query = urlencode({"mount": descriptor.digest, "from": source.name})
        try:
            with self._request(
                "POST",
                f"/v2/{self._repository.name}/blobs/uploads/?{query}",
                scopes=self._scopes | _pull_scope(source),
                expected={201, 202},
                headers={"Content-Length": "0"},
            ) as response:
                response.discard()
                if response.status == 201:
                    return True, None
                return False, _location(self._repository, "POST", response)
        except AuthenticationError:
            _log.info("no pull access to %s for mounting; uploading instead", source)
            return False, None

    def _start_upload(self) -> str:
        with self._request(
            "POST",
            f"/v2/{self._repository.name}/blobs/uploads/",
            scopes=self._scopes,
            expected={202},
            headers={"Content-Length": "0"},
        ) as response:
            response.discard()
            return _location(self._repository, "POST", response)

    def _commit(
        self,
        location: str,
        descriptor: Descriptor,
        source: _BlobSource,
        body: Optional[_Body],
    ) -> None:
        """Close the upload session with the digest (and, monolithically, the whole blob)."""
        length = descriptor.size if body is not None else 0
        try:
            with self._request(
                "PUT",
                _with_query(location, [("digest", descriptor.digest)]),
                scopes=self._scopes,
                expected={201},
                headers={"Content-Type": _OCTET_STREAM, "Content-Length": str(length)},
                body=body,
            ) as response:
                response.discard()
        except RegistryHTTPError as error:
            if "DIGEST_INVALID" in error.codes:
                source.check_digest()  # names the local file when it is the culprit
            raise


def _location(repository: Repository, method: str, response: _Response) -> str:
    location = response.header("Location")
    if not location:
        raise RegistryHTTPError(repository, method, response.url, response.status)
    return urljoin(response.url, location)

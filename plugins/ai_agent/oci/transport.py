"""The HTTP side of the registry client: connections, auth challenges and retries.

HTTPS with the system CA bundle, plain HTTP only for loopback registries and ones marked
insecure; keep-alive connections reused per host; bounded retries with exponential backoff on
5xx answers and dropped connections. Whole operations are retried, never a single request of a
multi-request upload, so a retried upload starts a fresh upload session. Credentials come from
`auth`; what the requests mean is `remote`'s and `push`'s business.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import json
import logging
import selectors
import socket
import ssl
import threading
import time
from typing import (
    Callable,
    Collection,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from .auth import (
    Challenge,
    Credentials,
    DockerConfigKeychain,
    Keychain,
    parse_token_response,
    parse_www_authenticate,
)
from .connection import TimedHTTPConnection, TimedHTTPSConnection
from .errors import (
    AuthenticationError,
    NotFoundError,
    PlainHTTPRefused,
    RegistryError,
    RegistryHTTPError,
    RegistryTimeout,
    RegistryUnavailable,
    TLSVerificationError,
    TransientHTTPError,
    loggable_url,
)
from .limits import REGISTRY_LIMITS, NetworkLimits
from .name import Repository

_log = logging.getLogger(__name__)

FIRST_RETRY_DELAY_S = 0.5

COPY_BUFFER = 1024 * 1024
_USER_AGENT = "ai-agent-oci"
_MAX_ERROR_BODY = 64 * 1024
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A token's lifetime when the token server does not say (distribution's token spec), and how long
# before it ends it is renewed.
_DEFAULT_TOKEN_LIFETIME_S = 60
_TOKEN_RENEWAL_MARGIN_S = 10

T = TypeVar("T")
S = TypeVar("S", bound="RegistrySession")

# Dropped connections (plain or TLS), timeouts, truncated answers and 5xx statuses.
_TRANSIENT_ERRORS = (
    ConnectionError,
    http.client.HTTPException,
    socket.timeout,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    TransientHTTPError,
    RegistryTimeout,
)


# Connections ------------------------------------------------------------------------------------


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def _origin_of(url: str) -> _Origin:
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    return _Origin(parts.scheme, parts.hostname or "", parts.port or default_port)


def with_query(url: str, params: Sequence[Tuple[str, str]]) -> str:
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
Body = Callable[[], _Stream]


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
                origin.host, origin.port, context=self._ssl_context, blocksize=COPY_BUFFER
            )
        else:
            connection = TimedHTTPConnection(origin.host, origin.port, blocksize=COPY_BUFFER)
        connection.connect_timeout = self._limits.connect_s
        connection.read_timeout = self._limits.read_s
        return connection

    def timeout_error(self, connection: http.client.HTTPConnection, url: str) -> RegistryTimeout:
        if getattr(connection, "connected", False):
            return RegistryTimeout(
                f"{loggable_url(url)}: connected, but nothing arrived within"
                f" {self._limits.read_s:g} s"
            )
        return RegistryTimeout(
            f"{loggable_url(url)}: cannot connect within {self._limits.connect_s:g} s"
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


class Response:
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
            chunk = self.read(min(COPY_BUFFER, limit + 1 - len(buffer)))
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

    def __enter__(self) -> Response:
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
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[Body] = None
    ) -> Response:
        parts = urlsplit(url)
        if parts.scheme == "http" and not self.allows_plain_http(parts.netloc):
            raise PlainHTTPRefused(
                f"refusing plain HTTP to {parts.netloc}: only loopback registries and ones marked"
                " insecure may be reached without TLS"
            )
        if parts.scheme not in ("http", "https"):
            raise RegistryError(f"unsupported URL scheme in {loggable_url(url)}")
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
        _log.debug("%s %s -> %d", method, loggable_url(url), response.status)
        return Response(self._pool, origin, connection, response, url)

    def close(self) -> None:
        self._pool.close()


def bytes_body(data: bytes) -> Body:
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
            method, url, body = "POST", realm, bytes_body(form)
        else:
            query = [("service", service)] + [("scope", scope) for scope in sorted(scopes)]
            method, url, body = "GET", with_query(realm, query), None
            if credentials is not None and (credentials.username or credentials.password):
                headers["Authorization"] = credentials.basic_authorization()
        with self._transport.send(method, url, headers, body) as response:
            answer = response.read_up_to(_MAX_ERROR_BODY)
        if response.status == 200:
            try:
                token, lifetime = parse_token_response(answer)
            except ValueError as error:
                raise AuthenticationError(
                    f"token server {loggable_url(realm)} of registry {self._registry}: {error}"
                ) from None
            expiry = time.monotonic() + (lifetime or _DEFAULT_TOKEN_LIFETIME_S)
            self._tokens[key] = (token, expiry - _TOKEN_RENEWAL_MARGIN_S)
            return self._tokens[key]
        if response.status in (401, 403):
            who = "the configured credentials" if credentials else "anonymous access"
            raise AuthenticationError(
                f"token server {loggable_url(realm)} of registry {self._registry} refused"
                f" {who} for {' '.join(sorted(scopes))} (HTTP {response.status}); run"
                f" `docker login {self._registry}` or pass credentials"
            )
        error_type = (
            TransientHTTPError if response.status in _TRANSIENT_STATUSES else RegistryHTTPError
        )
        raise error_type(repository, method, realm, response.status)


# Session ----------------------------------------------------------------------------------------


def pull_scope(repository: Repository) -> FrozenSet[str]:
    return frozenset({f"repository:{repository.name}:pull"})


def push_scope(repository: Repository) -> FrozenSet[str]:
    return frozenset({f"repository:{repository.name}:pull,push"})


class RegistrySession:
    """The HTTP side of talking to registries on behalf of one process: pooled connections, auth
    per registry, and whole operations retried. Thread-safe; close it (or use it as a context
    manager) to close its pooled connections.

    `keychain` defaults to the Docker CLI's config (`$DOCKER_CONFIG`, `~/.docker/config.json`).
    `insecure_registries` (`host[:port]`) may be reached over plain HTTP, as loopback ones always
    are. A connection must be made within `limits.connect_s`, and then each answer or piece of
    data arrive within `limits.read_s`; either failure, and answers such as 503, are retried
    within `limits.attempts` and `limits.total_s`, the first retry after `first_retry_delay_s`.
    """

    def __init__(
        self,
        keychain: Optional[Keychain] = None,
        *,
        insecure_registries: Iterable[str] = (),
        limits: NetworkLimits = REGISTRY_LIMITS,
        first_retry_delay_s: float = FIRST_RETRY_DELAY_S,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._keychain = keychain if keychain is not None else DockerConfigKeychain()
        self._limits = limits
        self._first_retry_delay_s = first_retry_delay_s
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

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        body: Optional[Body] = None,
        follow_redirects: bool = False,
    ) -> Response:
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


def _describe(error: BaseException) -> str:
    if isinstance(error, RegistryError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _http_error(repository: Repository, method: str, url: str, response: Response) -> RegistryError:
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
            f"registry {repository.registry} denied {method} {loggable_url(url)} for repository"
            f" {repository.name} (HTTP {status}{details}); run `docker login"
            f" {repository.registry}` or pass credentials with the needed access"
        )
    if status == 404:
        return NotFoundError(repository, method, url, status, errors)
    if status in _TRANSIENT_STATUSES:
        return TransientHTTPError(repository, method, url, status, errors)
    return RegistryHTTPError(repository, method, url, status, errors)

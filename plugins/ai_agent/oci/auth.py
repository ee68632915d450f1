"""Registry credentials: where they come from (the Docker CLI's config.json and its credential
helpers) and how a registry asks for them (the WWW-Authenticate challenge).

Nothing here talks HTTP; `transport.py` does. Credentials are kept out of every repr, message and
serialized form because build tools turn reprs into logs and pickled values into cache keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Tuple

from .errors import OciError
from .name import DOCKER_HUB

# Docker Hub is stored under its legacy v1 index URL in config.json and in credential helpers.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"

# What `docker-credential-*` helpers print when they hold nothing for a server.
_HELPER_NOT_FOUND = "credentials not found"
# Helpers report an identity (OAuth refresh) token under this user name.
_IDENTITY_TOKEN_USERNAME = "<token>"
_HELPER_TIMEOUT_S = 60.0


class CredentialError(OciError):
    """Credentials could not be read; the message never contains a secret."""


class DockerConfigError(CredentialError):
    pass


class CredentialHelperError(CredentialError):
    pass


class Credentials:
    """A user name with a password, or an identity token to trade for registry tokens.

    Deliberately not a dataclass: it must not compare, hash, pickle or print its fields.
    """

    __slots__ = ("username", "password", "identity_token")

    def __init__(self, username: str = "", password: str = "", identity_token: str = "") -> None:
        self.username = username
        self.password = password
        self.identity_token = identity_token

    def basic_authorization(self) -> str:
        """The value of an `Authorization: Basic …` header."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("Credentials are not serializable, so that they never reach a cache key")


class Keychain(ABC):
    """Finds the credentials for a registry host (`host[:port]`, `docker.io` for Docker Hub)."""

    @abstractmethod
    def credentials_for(self, registry: str) -> Optional[Credentials]:
        ...


class AnonymousKeychain(Keychain):
    def credentials_for(self, registry: str) -> Optional[Credentials]:
        return None


class StaticKeychain(Keychain):
    """Credentials given explicitly, e.g. from a CI secret, keyed by registry host."""

    def __init__(self, credentials_by_registry: Mapping[str, Credentials]) -> None:
        self._credentials_by_registry = dict(credentials_by_registry)

    def credentials_for(self, registry: str) -> Optional[Credentials]:
        return self._credentials_by_registry.get(registry)

    def __repr__(self) -> str:
        return f"StaticKeychain(registries={sorted(self._credentials_by_registry)})"


class DockerConfigKeychain(Keychain):
    """The credentials `docker login` stored, looked up the way the Docker CLI looks them up:
    a per-registry `credHelpers` entry wins, then the global `credsStore`, then `auths`."""

    def __init__(self, config_path: Optional[Path] = None) -> None:
        self.config_path = config_path if config_path is not None else docker_config_path()

    def credentials_for(self, registry: str) -> Optional[Credentials]:
        config = self._load()
        server = DOCKER_HUB_CONFIG_KEY if registry == DOCKER_HUB else registry
        hostname = _config_key_hostname(server)
        helpers = self._section(config, "credHelpers")
        helper = next(
            (h for key, h in helpers.items() if _config_key_hostname(key) == hostname), None
        )
        helper = helper or config.get("credsStore")
        if helper:
            if not isinstance(helper, str):
                raise DockerConfigError(f"{self.config_path}: credential helper names are strings")
            return run_credential_helper(helper, server)
        for key, entry in self._section(config, "auths").items():
            if _config_key_hostname(key) == hostname:
                return self._auths_entry_credentials(key, entry)
        return None

    def _auths_entry_credentials(self, key: str, entry: Any) -> Optional[Credentials]:
        if not isinstance(entry, dict):
            raise DockerConfigError(f"{self.config_path}: auths entry {key!r} is not an object")
        identity_token = entry.get("identitytoken") or ""
        username, password = entry.get("username") or "", entry.get("password") or ""
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, TypeError):
                decoded = ""
            username, separator, password = decoded.partition(":")
            if not separator:
                raise DockerConfigError(
                    f"{self.config_path}: the auth field of {key!r} is not base64 of"
                    " 'user:password'"
                )
        if not (username or password or identity_token):
            return None
        return Credentials(username, password, identity_token)

    def _section(self, config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        section = config.get(name) or {}
        if not isinstance(section, dict):
            raise DockerConfigError(f"{self.config_path}: {name} is not a JSON object")
        return section

    def _load(self) -> Dict[str, Any]:
        try:
            text = self.config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise DockerConfigError(f"cannot read {self.config_path}: {error.strerror}") from None
        try:
            config = json.loads(text)
        except ValueError:
            # The parser's message quotes the document, which may hold secrets.
            raise DockerConfigError(f"{self.config_path} is not valid JSON") from None
        if not isinstance(config, dict):
            raise DockerConfigError(f"{self.config_path} does not hold a JSON object")
        return config

    def __repr__(self) -> str:
        return f"DockerConfigKeychain({str(self.config_path)!r})"


def docker_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, as the Docker CLI resolves it."""
    directory = environ.get("DOCKER_CONFIG")
    return Path(directory or Path.home() / ".docker") / "config.json"


def _config_key_hostname(key: str) -> str:
    """`https://host:port/v1/` and `host:port` name the same registry in config.json."""
    without_scheme = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key)
    return without_scheme.split("/", 1)[0]


def run_credential_helper(helper: str, server: str) -> Optional[Credentials]:
    """Ask `docker-credential-<helper> get` for the credentials of `server` (a registry host, or
    Docker Hub's v1 URL). Returns None when the helper holds none."""
    executable = f"docker-credential-{helper}"
    try:
        completed = subprocess.run(
            [executable, "get"],
            input=server.encode("utf-8"),
            capture_output=True,
            timeout=_HELPER_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialHelperError(
            f"credential helper {executable} (configured for {server} in the Docker config) is not"
            " on PATH; install it or remove it from config.json"
        ) from None
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(
            f"{executable} get did not answer for {server} within {_HELPER_TIMEOUT_S:.0f}s"
        ) from None
    output = completed.stdout.decode("utf-8", "replace").strip()
    if completed.returncode != 0:
        if _HELPER_NOT_FOUND in output.lower():
            return None
        # Helpers print a one-line error; bound it so nothing long is carried into logs.
        detail = (output or completed.stderr.decode("utf-8", "replace").strip())[:200]
        raise CredentialHelperError(
            f"{executable} get failed for {server} (exit {completed.returncode}): {detail}"
        )
    try:
        answer = json.loads(output)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise CredentialHelperError(
            f"{executable} get printed no JSON object with Username and Secret for {server}"
        ) from None
    if not secret:
        return None
    if username == _IDENTITY_TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    return Credentials(username, secret)


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: a scheme (lower-cased) and its parameters
    (names lower-cased), e.g. bearer {realm, service, scope}."""

    scheme: str
    params: Mapping[str, str]


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED_STRING = r'"(?:[^"\\]|\\.)*"'
_SCHEME_RE = re.compile(rf"({_TOKEN})(?=\s|,|$)")
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED_STRING})\s*(?:,|$)")
_SEPARATORS = " \t,"


def parse_www_authenticate(header: str) -> List[Challenge]:
    """Parse a WWW-Authenticate header (RFC 7235) into its challenges.

    Quoted values may contain commas and escaped quotes, as registry scopes do. Raises ValueError
    on anything else (token68 included, which no registry sends), rather than guessing.
    """
    challenges: List[Challenge] = []
    position = _skip_separators(header, 0)
    while position < len(header):
        scheme_match = _SCHEME_RE.match(header, position)
        if scheme_match is None:
            raise ValueError(f"malformed WWW-Authenticate header: {header!r}")
        params: Dict[str, str] = {}
        position = scheme_match.end()
        param_match = _PARAM_RE.match(header, position)
        while param_match is not None:
            name, value = param_match.group(1), param_match.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[name.lower()] = value
            position = param_match.end()
            param_match = _PARAM_RE.match(header, position)
        challenges.append(Challenge(scheme_match.group(1).lower(), params))
        position = _skip_separators(header, position)
    return challenges


def _skip_separators(header: str, position: int) -> int:
    while position < len(header) and header[position] in _SEPARATORS:
        position += 1
    return position


def parse_token_response(body: bytes) -> Tuple[str, Optional[int]]:
    """The token and its lifetime in seconds (if given) from a token endpoint's JSON answer.

    Docker's token spec calls it `token`; OAuth2 endpoints call it `access_token`.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        raise ValueError("the token endpoint did not answer with JSON") from None
    if not isinstance(answer, dict):
        raise ValueError("the token endpoint did not answer with a JSON object")
    token = answer.get("token") or answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the token endpoint's answer holds no token")
    expires_in = answer.get("expires_in")
    return token, expires_in if isinstance(expires_in, int) and expires_in > 0 else None

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any, Dict

import pytest

from .auth import (
    Challenge,
    CredentialHelperError,
    Credentials,
    DockerConfigError,
    DockerConfigKeychain,
    StaticKeychain,
    docker_config_path,
    parse_token_response,
    parse_www_authenticate,
)

SECRET = "s3cr3t-never-printed"


# WWW-Authenticate -------------------------------------------------------------------------------


def test_parses_a_bearer_challenge_whose_scope_holds_commas() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push"'
    )
    assert parse_www_authenticate(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example.com/token",
                "service": "registry.example.com",
                "scope": "repository:team/app:pull,push",
            },
        )
    ]


def test_parses_several_challenges_tokens_escapes_and_odd_spacing() -> None:
    header = 'Basic realm="say \\"hi\\"" , Bearer REALM = plain-token ,error="invalid_token"'
    assert parse_www_authenticate(header) == [
        Challenge("basic", {"realm": 'say "hi"'}),
        Challenge("bearer", {"realm": "plain-token", "error": "invalid_token"}),
    ]


def test_a_scheme_without_parameters_is_a_challenge() -> None:
    assert parse_www_authenticate("Negotiate") == [Challenge("negotiate", {})]


@pytest.mark.parametrize("header", ['Bearer realm="unterminated', "Bearer realm=a b=c", "=x"])
def test_malformed_challenges_are_refused(header: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_www_authenticate(header)


def test_token_responses_in_both_spellings() -> None:
    assert parse_token_response(b'{"token": "a", "expires_in": 300}') == ("a", 300)
    assert parse_token_response(b'{"access_token": "b"}') == ("b", None)
    with pytest.raises(ValueError, match="no token"):
        parse_token_response(b'{"expires_in": 300}')


# Credentials ------------------------------------------------------------------------------------


def test_credentials_never_show_their_fields() -> None:
    credentials = Credentials("alice", SECRET, identity_token=SECRET)
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert SECRET not in text and "alice" not in text
    with pytest.raises(TypeError, match="not serializable"):
        pickle.dumps(credentials)
    assert Credentials("alice", SECRET) != Credentials("alice", SECRET)
    assert SECRET not in repr(StaticKeychain({"r.example": credentials}))


def test_basic_authorization_header() -> None:
    assert Credentials("alice", "pa:ss").basic_authorization() == "Basic " + base64.b64encode(
        b"alice:pa:ss"
    ).decode("ascii")


# config.json ------------------------------------------------------------------------------------


def _write_config(directory: Path, config: Dict[str, Any]) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


def _auth_field(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def test_docker_config_path_follows_docker_config(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path / "config.json"
    assert docker_config_path({}) == Path.home() / ".docker" / "config.json"


def test_keychain_reads_docker_config_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_config(tmp_path, {"auths": {"r.example": {"auth": _auth_field("bob", SECRET)}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    credentials = DockerConfigKeychain().credentials_for("r.example")
    assert credentials is not None and credentials.password == SECRET


def test_auths_entries_match_by_host_whatever_the_key_spelling(tmp_path: Path) -> None:
    config = _write_config(
        tmp_path,
        {
            "auths": {
                "https://r.example:5000/v1/": {"auth": _auth_field("alice", "pw1")},
                "https://index.docker.io/v1/": {"auth": _auth_field("hubuser", "pw2")},
                "tokens.example": {"identitytoken": "refresh-me"},
                "empty.example": {},
            }
        },
    )
    keychain = DockerConfigKeychain(config)
    first = keychain.credentials_for("r.example:5000")
    assert first is not None and (first.username, first.password) == ("alice", "pw1")
    hub = keychain.credentials_for("docker.io")
    assert hub is not None and (hub.username, hub.password) == ("hubuser", "pw2")
    token = keychain.credentials_for("tokens.example")
    assert token is not None and token.identity_token == "refresh-me"
    assert keychain.credentials_for("empty.example") is None
    assert keychain.credentials_for("r.example") is None  # another port is another registry
    assert DockerConfigKeychain(tmp_path / "absent.json").credentials_for("r.example") is None


def test_config_errors_name_the_file_but_not_its_content(tmp_path: Path) -> None:
    broken = tmp_path / "config.json"
    broken.write_text('{"auths": {"r.example": {"auth": "' + SECRET)
    with pytest.raises(DockerConfigError, match="not valid JSON") as invalid_json:
        DockerConfigKeychain(broken).credentials_for("r.example")
    not_base64 = _write_config(tmp_path, {"auths": {"r.example": {"auth": SECRET}}})
    with pytest.raises(DockerConfigError, match="not base64") as bad_auth:
        DockerConfigKeychain(not_base64).credentials_for("r.example")
    for error in (invalid_json.value, bad_auth.value):
        assert str(broken) in str(error) and SECRET not in str(error)


# Credential helpers -----------------------------------------------------------------------------


def _install_helper(bin_dir: Path, name: str, script_body: str) -> Path:
    """A real `docker-credential-<name>` executable; it logs the server URL it was asked for."""
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || { echo "unexpected action $1"; exit 2; }\n'
        'server=$(cat)\necho "$server" >> "$(dirname "$0")/' + name + '.asked"\n' + script_body
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    return bin_dir / f"{name}.asked"


@pytest.fixture
def helper_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_cred_helpers_win_over_creds_store_and_auths(tmp_path: Path, helper_bin: Path) -> None:
    specific = _install_helper(
        helper_bin, "specific", f'echo \'{{"ServerURL":"x","Username":"u1","Secret":"{SECRET}"}}\''
    )
    store = _install_helper(
        helper_bin, "store", 'echo \'{"ServerURL":"x","Username":"u2","Secret":"from-store"}\''
    )
    config = _write_config(
        tmp_path,
        {
            "credsStore": "store",
            "credHelpers": {"r.example:5000": "specific"},
            "auths": {"r.example:5000": {"auth": _auth_field("ignored", "ignored")}},
        },
    )
    keychain = DockerConfigKeychain(config)
    chosen = keychain.credentials_for("r.example:5000")
    assert chosen is not None and (chosen.username, chosen.password) == ("u1", SECRET)
    other = keychain.credentials_for("other.example")
    assert other is not None and other.password == "from-store"
    hub = keychain.credentials_for("docker.io")
    assert hub is not None
    assert specific.read_text().split() == ["r.example:5000"]
    assert store.read_text().split() == ["other.example", "https://index.docker.io/v1/"]


def test_helper_identity_tokens_and_not_found(tmp_path: Path, helper_bin: Path) -> None:
    _install_helper(
        helper_bin,
        "tokens",
        'case "$server" in\n'
        '  known.example) echo \'{"Username":"<token>","Secret":"refresh-me"}\' ;;\n'
        "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac\n",
    )
    keychain = DockerConfigKeychain(_write_config(tmp_path, {"credsStore": "tokens"}))
    known = keychain.credentials_for("known.example")
    assert known is not None and known.identity_token == "refresh-me" and not known.password
    assert keychain.credentials_for("unknown.example") is None


def test_helper_failures_are_named(tmp_path: Path, helper_bin: Path) -> None:
    _install_helper(helper_bin, "broken", "echo 'keychain is locked' >&2; exit 3\n")
    _install_helper(helper_bin, "garbled", "echo 'not json'\n")
    config = _write_config(
        tmp_path,
        {"credHelpers": {"a.example": "broken", "b.example": "garbled", "c.example": "absent"}},
    )
    keychain = DockerConfigKeychain(config)
    with pytest.raises(CredentialHelperError, match=r"exit 3\): keychain is locked"):
        keychain.credentials_for("a.example")
    with pytest.raises(CredentialHelperError, match="no JSON object with Username and Secret"):
        keychain.credentials_for("b.example")
    with pytest.raises(CredentialHelperError, match="docker-credential-absent .* not on PATH"):
        keychain.credentials_for("c.example")

"""The command line: mirror options, the refresh command and error reporting."""

from __future__ import annotations

import argparse
import re
import socket
import time
from pathlib import Path

import pytest

from ..oci.layer import LayerError
from . import __main__ as cli
from .__main__ import UsageError, main, parse_mirrors, refresh_command
from .errors import DebianError
from .lock import LockError, LockRequest


def test_mirrors_given_for_an_archive_replace_its_default_in_order() -> None:
    mirrors = parse_mirrors(
        [
            "debian=https://snapshot.debian.org/archive/debian/20260711T000000Z/",
            "debian=http://deb.debian.org/debian",
        ]
    )
    assert mirrors == {
        "debian": (
            "https://snapshot.debian.org/archive/debian/20260711T000000Z",
            "http://deb.debian.org/debian",
        ),
        "debian-security": ("http://deb.debian.org/debian-security",),
    }
    with pytest.raises(UsageError, match="ARCHIVE one of \\['debian', 'debian-security'\\]"):
        parse_mirrors(["ubuntu=http://archive.ubuntu.com/ubuntu"])


def test_the_refresh_command_regenerates_the_same_request() -> None:
    request = LockRequest("bookworm", ("arm64", "amd64"), ("tzdata",), ("debconf",), "shell")
    assert refresh_command(request, Path("3rdparty/debian/base.lock.json")) == (
        "python -m ai_agent.debian lock --suite bookworm --arch amd64 --arch arm64"
        " --package tzdata --exclude debconf --variant shell"
        " --output 3rdparty/debian/base.lock.json"
    )


def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lock = tmp_path / "lock.json"
    lock.write_text('{"lockVersion": 0}')
    status = main(["layer", "--lock", str(lock), "--debs", str(tmp_path), "--output-dir", "out"])
    assert status == 2
    assert capsys.readouterr().err == (
        f"error: {lock}: lockVersion 0 is not 1; regenerate the lock with this version of the"
        " tool\n"
    )


@pytest.mark.parametrize("error", [DebianError("root"), LockError("lock"), LayerError("layer")])
def test_errors_of_the_core_and_of_oci_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, error: Exception
) -> None:
    def run_check(args: argparse.Namespace) -> None:
        raise error

    monkeypatch.setattr(cli, "run_check", run_check)
    assert main(["check", "--lock", "lock.json"]) == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_lock_from_a_mirror_that_never_answers_stops_within_the_limits_given(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections queue, nothing answers
        mirror = f"http://127.0.0.1:{silent.getsockname()[1]}/debian"
        args = ["lock", "--suite", "bookworm", "--arch", "amd64", "--mirror", f"debian={mirror}"]
        args += ["--read-timeout", "0.5", "--attempts", "10", "--total-timeout", "1"]
        started = time.monotonic()
        assert main([*args, "--output", str(tmp_path / "lock.json")]) == 2
        assert time.monotonic() - started < 5
    assert re.fullmatch(
        re.escape(
            "error: cannot download the index of suite bookworm:"
            f" {mirror}/dists/bookworm/InRelease: connected, but no answer within 0.5 s (gave up"
            " after 1 attempt(s) in "
        )
        + r"\d+ s: another would start past the total limit of 1 s\)",
        capsys.readouterr().err.strip(),
    )

"""Fixtures of the Debian unit tests: real index stanzas from testdata/, real HTTP servers on
loopback standing in for mirrors, and real .deb files built with `dpkg-deb`."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Mapping, Sequence

import pytest

from testkit.components import require_binary
from testkit.http_stub import QuietHandler, StubHTTPServer

from .index import PackageIndex, Release, parse_packages, suites_of

TESTDATA = Path(__file__).parent / "testdata"


def fixture_indexes(suite: str = "bookworm", architecture: str = "amd64") -> List[PackageIndex]:
    """The indexes of `suite` and its -updates and -security suites made from the real stanzas
    in testdata/ (a handful per suite, copied from the mirror's Packages files)."""
    indexes = []
    for name in suites_of(suite):
        text = (TESTDATA / f"{name}_{architecture}.Packages").read_text()
        release = Release(
            name, "http://deb.debian.org/debian", f"date of {name}", "12", True, files={}
        )
        records = parse_packages(text, name, f"testdata/{name}")
        indexes.append(PackageIndex(release, architecture, "0" * 64, tuple(records)))
    return indexes


@dataclass
class Mirror:
    """A directory served over HTTP on 127.0.0.1, with the paths it was asked for: with GET in
    `requests`, with HEAD in `heads`."""

    root: Path
    url: str
    requests: List[str] = field(default_factory=list)
    heads: List[str] = field(default_factory=list)
    # Seconds each GET waits before answering, and the most GETs answered at once.
    delay: float = 0.0
    most_at_once: int = 0
    _at_once: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class _MirrorHandler(QuietHandler, http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: object, mirror: Mirror, **kwargs: object) -> None:
        self._mirror = mirror
        super().__init__(*args, directory=str(mirror.root), **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        mirror = self._mirror
        mirror.requests.append(self.path)
        with mirror._lock:
            mirror._at_once += 1
            mirror.most_at_once = max(mirror.most_at_once, mirror._at_once)
        try:
            time.sleep(mirror.delay)
            super().do_GET()
        finally:
            with mirror._lock:
                mirror._at_once -= 1

    def do_HEAD(self) -> None:
        self._mirror.heads.append(self.path)
        super().do_HEAD()


@pytest.fixture
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Mirror]]:
    """A factory of mirrors, each a real `http.server` on its own loopback port."""
    with contextlib.ExitStack() as servers:

        def start() -> Mirror:
            mirror = Mirror(tmp_path_factory.mktemp("mirror"), "")
            handler = functools.partial(_MirrorHandler, mirror=mirror)
            mirror.url = servers.enter_context(StubHTTPServer(handler)).url
            return mirror

        yield start


@dataclass(frozen=True)
class DebSpec:
    """What `dpkg-deb --build` should pack: control fields and the files of the package."""

    control: Mapping[str, str]
    files: Mapping[str, bytes] = field(default_factory=dict)
    modes: Mapping[str, int] = field(default_factory=dict)
    symlinks: Mapping[str, str] = field(default_factory=dict)
    hard_links: Mapping[str, str] = field(default_factory=dict)
    directories: Sequence[str] = ()
    conffiles: Sequence[str] = ()


def build_deb(spec: DebSpec, workdir: Path) -> Path:
    """A real .deb made by `dpkg-deb` (xz, root-owned), as Debian builds them."""
    dpkg_deb = require_binary("dpkg-deb", "dpkg")
    name = spec.control["Package"]
    tree = workdir / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    control = {"Maintainer": "Test <test@example.org>", "Description": "test", **spec.control}
    (tree / "DEBIAN" / "control").write_text(
        "".join(f"{key}: {value}\n" for key, value in control.items())
    )
    if spec.conffiles:
        (tree / "DEBIAN" / "conffiles").write_text("".join(f"{p}\n" for p in spec.conffiles))
    # What dh_md5sums writes: every regular file but the conffiles.
    (tree / "DEBIAN" / "md5sums").write_text(
        "".join(
            f"{hashlib.md5(data).hexdigest()}  {path}\n"
            for path, data in sorted(spec.files.items())
            if f"/{path}" not in spec.conffiles
        )
    )
    for directory in spec.directories:
        (tree / directory).mkdir(parents=True, exist_ok=True)
    for path, data in spec.files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
        (tree / path).chmod(spec.modes.get(path, 0o644))
    for path, target in spec.symlinks.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).symlink_to(target)
    for path, existing in spec.hard_links.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        os.link(tree / existing, tree / path)
    for directory, mode in spec.modes.items():
        if (tree / directory).is_dir():
            (tree / directory).chmod(mode)
    output = workdir / f"{name}_{control['Version']}_{control['Architecture']}.deb"
    subprocess.run(
        [dpkg_deb, "--root-owner-group", "-Zxz", "--build", str(tree), str(output)],
        check=True,
        capture_output=True,
    )
    return output

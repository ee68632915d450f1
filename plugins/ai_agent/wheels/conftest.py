"""Fixtures of the wheel unit tests: real wheels from PyPI, downloaded by URL and checked
against pinned sha256s the way the build's `layer` step does (cached in the test download
cache); a loopback server of wheel files with or without byte ranges; and the build host's
CPython 3.11 for compiling bytecode."""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from testkit.components import download_cache, host_interpreter, missing_component
from testkit.http_stub import QuietHandler, StubHTTPServer

from ..debian.download import DownloadError, download_verified

TESTDATA = Path(__file__).parent / "testdata"
_FILES = "https://files.pythonhosted.org/packages"


@dataclass(frozen=True)
class RealWheel:
    requirement: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def path(self) -> Path:
        return download_cache("wheels") / self.filename


# Pure; a compiled extension; `.data/scripts` with `#!python`; a console_scripts entry point.
REAL_WHEELS = {
    "six": RealWheel(
        "six==1.16.0",
        f"{_FILES}/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/"
        "six-1.16.0-py2.py3-none-any.whl",
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
    ),
    "markupsafe": RealWheel(
        "markupsafe==2.1.5",
        f"{_FILES}/97/18/c30da5e7a0e7f4603abfc6780574131221d9148f323752c2755d48abad30/"
        "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "b91c037585eba9095565a3556f611e3cbfaa42ca1e865f7b8015fe5c7336d5a5",
    ),
    "jsonpointer": RealWheel(
        "jsonpointer==2.4",
        f"{_FILES}/12/f6/0232cc0c617e195f06f810534d00b74d2f348fe71b2118009ad8ad31f878/"
        "jsonpointer-2.4-py2.py3-none-any.whl",
        "15d51bba20eea3165644553647711d150376234112651b4f1811022aecad7d7a",
    ),
    "pyflakes": RealWheel(
        "pyflakes==3.2.0",
        f"{_FILES}/d4/d7/f1b7db88d8e4417c5d47adad627a93547f44bdc9028372dbd2313f34a855/"
        "pyflakes-3.2.0-py2.py3-none-any.whl",
        "84b5be138a2dfbb40689ca07e2152deb896a65c3a3e24c251c5c62489568074a",
    ),
}

# Wheels that exercise the rest of the wheel format: `.data/headers` (greenlet), `.data/data`
# (ipykernel's kernel spec), a `.pth` at the root (setuptools' distutils-precedence.pth), a
# gui_scripts entry point (qtconsole), one namespace package `nvidia` shared by two wheels with
# the same empty `__init__.py`, and two projects that both install `jwt/` with other bytes.
FORMAT_WHEELS = {
    "greenlet": RealWheel(
        "greenlet==3.0.3",
        f"{_FILES}/bb/6b/384dee7e0121cbd1757bdc1824a5ee28e43d8d4e3f99aa59521f629442fe/"
        "greenlet-3.0.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "2797aa5aedac23af156bbb5a6aa2cd3427ada2972c828244eb7d1b9255846379",
    ),
    "ipykernel": RealWheel(
        "ipykernel==6.29.5",
        f"{_FILES}/94/5c/368ae6c01c7628438358e6d337c19b05425727fbb221d2a3c4303c372f42/"
        "ipykernel-6.29.5-py3-none-any.whl",
        "afdb66ba5aa354b09b91379bac28ae4afebbb30e8b39510c9690afb7a10421b5",
    ),
    "setuptools": RealWheel(
        "setuptools==69.5.1",
        f"{_FILES}/f7/29/13965af254e3373bceae8fb9a0e6ea0d0e571171b80d6646932131d6439b/"
        "setuptools-69.5.1-py3-none-any.whl",
        "c636ac361bc47580504644275c9ad802c50415c7522212252c033bd15f301f32",
    ),
    "qtconsole": RealWheel(
        "qtconsole==5.5.2",
        f"{_FILES}/f2/3f/de5e5eb44900c1ed1c1567bc505e3b6e6f4c01cf29e558bf2f8cee29af5b/"
        "qtconsole-5.5.2-py3-none-any.whl",
        "42d745f3d05d36240244a04e1e1ec2a86d5d9b6edb16dbdef582ccb629e87e0b",
    ),
    "nvidia-nvtx-cu12": RealWheel(
        "nvidia-nvtx-cu12==12.4.127",
        f"{_FILES}/87/20/199b8713428322a2f22b722c62b8cc278cc53dffa9705d744484b5035ee9/"
        "nvidia_nvtx_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl",
        "781e950d9b9f60d8241ccea575b32f5105a5baf4c2351cab5256a24869f12a1a",
    ),
    "nvidia-cuda-runtime-cu12": RealWheel(
        "nvidia-cuda-runtime-cu12==12.4.127",
        f"{_FILES}/ea/27/1795d86fe88ef397885f2e580ac37628ed058a92ed2c39dc8eac3adf0619/"
        "nvidia_cuda_runtime_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl",
        "64403288fa2136ee8e467cdc9c9427e0434110899d07c779f25b5c068934faa5",
    ),
    "jwt": RealWheel(
        "jwt==1.3.1",
        f"{_FILES}/ad/66/1e792aef36645b96271b4d27c2a8cc9fc7bbbaf06277a849b9e1a6360e6a/"
        "jwt-1.3.1-py3-none-any.whl",
        "61c9170f92e736b530655e75374681d4fcca9cfa8763ab42be57353b2b203494",
    ),
    "pyjwt": RealWheel(
        "pyjwt==2.8.0",
        f"{_FILES}/2b/4f/e04a8067c7c96c364cef7ef73906504e2f40d690811c021e1a1901473a19/"
        "PyJWT-2.8.0-py3-none-any.whl",
        "59127c392cc44c2da5bb3192169a91f429924e17aff6534d70fdc02ab3e04320",
    ),
}


def _downloaded(wheels: Dict[str, RealWheel]) -> Dict[str, RealWheel]:
    """`wheels`, each downloaded once and kept only if its bytes match the pinned sha256."""
    for wheel in wheels.values():
        if not wheel.path.is_file():
            try:
                download_verified(wheel.url, wheel.path, wheel.sha256)
            except DownloadError as error:
                missing_component("wheels from PyPI", f"network access to PyPI ({error})")
    return wheels


@pytest.fixture(scope="session")
def real_wheels() -> Dict[str, RealWheel]:
    """The REAL_WHEELS (for CPython 3.11 on manylinux x86_64)."""
    return _downloaded(REAL_WHEELS)


@pytest.fixture(scope="session")
def format_wheels() -> Dict[str, RealWheel]:
    """The FORMAT_WHEELS (for CPython 3.11 on manylinux x86_64)."""
    return _downloaded(FORMAT_WHEELS)


@pytest.fixture(scope="session")
def host_python311() -> str:
    return host_interpreter("3.11")


class WheelServer(StubHTTPServer):
    """Files of `root` over HTTP on loopback, with byte ranges (`Range: bytes=A-B` or `-N`, as
    PyPI serves them) unless `ranges` is off; `requests` lists (path, Range header or None)."""

    def __init__(self, root: Path, ranges: bool = True) -> None:
        self.root = root
        self.ranges = ranges
        self.requests: List[Tuple[str, Optional[str]]] = []
        super().__init__(functools.partial(_RangeHandler, server=self))

    def url_of(self, path: Path) -> str:
        return f"{self.url}/{path.relative_to(self.root)}"


class _RangeHandler(QuietHandler):
    def __init__(self, *args: Any, server: WheelServer, **kwargs: Any) -> None:
        self._wheels = server
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        asked = self.headers.get("Range")
        self._wheels.requests.append((self.path, asked))
        path = self._wheels.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", asked or "")
        if not self._wheels.ranges or match is None:
            self.send_response(200)
        else:
            first, last = match.groups()
            start = max(len(data) - int(last), 0) if not first else int(first)
            stop = len(data) if not first or not last else min(int(last) + 1, len(data))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
            data = data[start:stop]
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def wheel_server(tmp_path: Path) -> Iterator[Callable[..., WheelServer]]:
    """Starts a `WheelServer` of `root` (ranges on unless told): `wheel_server(root)`."""
    with contextlib.ExitStack() as stack:
        yield lambda root, ranges=True: stack.enter_context(WheelServer(root, ranges))

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Dict

import pytest

from .conftest import RealWheel
from .install import (
    InstalledDistribution,
    InstallLayout,
    WheelError,
    WheelHashMismatch,
    install_wheel,
)

LAYOUT = InstallLayout("opt/agent", "/usr/bin/python3.11")
SITE = "opt/agent/site-packages"


def _install(wheel: RealWheel, root: Path) -> InstalledDistribution:
    return install_wheel(wheel.path, wheel.sha256, LAYOUT, root)


def _modes(distribution: InstalledDistribution) -> Dict[str, int]:
    return {installed.path: installed.mode for installed in distribution.files}


def test_a_compiled_extension_lands_in_site_packages(
    real_wheels: Dict[str, RealWheel], tmp_path: Path
) -> None:
    distribution = _install(real_wheels["markupsafe"], tmp_path / "root")
    modes = _modes(distribution)
    assert (distribution.project, distribution.version) == ("markupsafe", "2.1.5")
    extension = f"{SITE}/markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"
    # The wheel marks the extension executable; that bit is kept, like pip keeps it.
    assert modes[extension] == 0o755 and (tmp_path / "root" / extension).stat().st_size == 53656
    assert modes[f"{SITE}/markupsafe/__init__.py"] == 0o644
    dist_info = f"{SITE}/MarkupSafe-2.1.5.dist-info"
    assert (tmp_path / "root" / dist_info / "INSTALLER").read_text() == "ai-agent"
    record = (tmp_path / "root" / dist_info / "RECORD").read_text().splitlines()
    assert record == sorted(record) and "MarkupSafe-2.1.5.dist-info/RECORD,," in record
    assert "MarkupSafe-2.1.5.dist-info/INSTALLER,sha256=" in "\n".join(record)
    assert len(record) == len(distribution.files)
    assert distribution.size == sum(
        (tmp_path / "root" / installed.path).stat().st_size for installed in distribution.files
    )


def test_the_installed_tree_imports(real_wheels: Dict[str, RealWheel], tmp_path: Path) -> None:
    for name in ("six", "markupsafe"):
        _install(real_wheels[name], tmp_path / "root" / name)
    paths = ":".join(str(tmp_path / "root" / name / SITE) for name in ("six", "markupsafe"))
    check = "import six, markupsafe._speedups as s; print(six.__version__, s.__name__)"
    python = shutil.which("python3.11") or pytest.skip("no python3.11 to import with")
    result = subprocess.run(
        [python, "-I", "-c", f"import sys; sys.path[:0] = {paths.split(':')!r}; {check}"],
        capture_output=True,
        text=True,
    )
    assert result.stdout == "1.16.0 markupsafe._speedups\n", result.stderr


def test_scripts_get_the_image_interpreter_and_entry_points_get_launchers(
    real_wheels: Dict[str, RealWheel], tmp_path: Path
) -> None:
    jsonpointer = _install(real_wheels["jsonpointer"], tmp_path / "jsonpointer")
    script = tmp_path / "jsonpointer" / "opt/agent/bin/jsonpointer"
    assert script.read_bytes().startswith(b"#!/usr/bin/python3.11\n# -*- coding: utf-8 -*-\n")
    assert _modes(jsonpointer)["opt/agent/bin/jsonpointer"] == 0o755
    record = (tmp_path / "jsonpointer" / SITE / "jsonpointer-2.4.dist-info/RECORD").read_text()
    assert "../bin/jsonpointer,sha256=" in record

    pyflakes = _install(real_wheels["pyflakes"], tmp_path / "pyflakes")
    launcher = (tmp_path / "pyflakes" / "opt/agent/bin/pyflakes").read_text()
    assert launcher.startswith("#!/usr/bin/python3.11\n")
    assert "from pyflakes.api import main\n" in launcher and "sys.exit(main())" in launcher
    assert _modes(pyflakes)["opt/agent/bin/pyflakes"] == 0o755
    compile(launcher, "pyflakes", "exec")


def test_the_same_wheel_gives_the_same_files_anywhere(
    real_wheels: Dict[str, RealWheel], tmp_path: Path
) -> None:
    for wheel in real_wheels.values():
        first = _install(wheel, tmp_path / "first" / wheel.filename)
        second = _install(wheel, tmp_path / "elsewhere" / "deeper" / wheel.filename)
        assert first.files == second.files
        for installed in first.files:
            assert (first.root / installed.path).read_bytes() == (
                second.root / installed.path
            ).read_bytes(), installed.path


def test_a_tampered_wheel_is_refused(real_wheels: Dict[str, RealWheel], tmp_path: Path) -> None:
    wheel = real_wheels["six"]
    tampered = tmp_path / wheel.filename
    shutil.copyfile(wheel.path, tampered)
    with zipfile.ZipFile(tampered, "a") as archive:
        archive.writestr("sitecustomize.py", "print('owned')\n")
    with pytest.raises(WheelHashMismatch, match=f"{wheel.filename}: sha256 is .*, the lock pins"):
        install_wheel(tampered, wheel.sha256, LAYOUT, tmp_path / "root")
    assert not (tmp_path / "root").exists()


def _wheel(path: Path, members: Dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_headers_are_dropped_and_data_goes_under_the_prefix(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    sha256 = _wheel(
        path,
        {
            "demo/__init__.py": "",
            "demo-1.0.data/headers/demo.h": "int demo;\n",
            "demo-1.0.data/data/share/demo/config.toml": "x = 1\n",
            "demo-1.0.data/purelib/demo_extra.py": "",
            "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
            "demo-1.0.dist-info/RECORD.jws": "signature",
            "demo-1.0.dist-info/RECORD": "stale",
        },
    )
    distribution = install_wheel(path, sha256, LAYOUT, tmp_path / "root")
    assert sorted(_modes(distribution)) == [
        "opt/agent/share/demo/config.toml",
        f"{SITE}/demo-1.0.dist-info/INSTALLER",
        f"{SITE}/demo-1.0.dist-info/RECORD",
        f"{SITE}/demo-1.0.dist-info/WHEEL",
        f"{SITE}/demo/__init__.py",
        f"{SITE}/demo_extra.py",
    ]
    assert distribution.notes == ("dropped C header demo.h (headers are not installed in images)",)


@pytest.mark.parametrize(
    ("members", "complaint"),
    [
        ({"../evil.py": ""}, "not a plain relative path"),
        ({"demo-1.0.dist-info/WHEEL": "Wheel-Version: 2.0\n"}, "Wheel-Version '2.0'"),
        ({"demo/__init__.py": ""}, "expected one top-level .dist-info"),
        ({"demo-1.0.data/unknown/x": ""}, "unknown install scheme"),
    ],
)
def test_malformed_wheels_are_refused(
    tmp_path: Path, members: Dict[str, str], complaint: str
) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    if "demo/__init__.py" not in members:
        members = {"demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\n", **members}
    sha256 = _wheel(path, members)
    with pytest.raises(WheelError, match=complaint):
        install_wheel(path, sha256, LAYOUT, tmp_path / "root")

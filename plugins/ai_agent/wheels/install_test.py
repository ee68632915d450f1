from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

from testkit.components import require_program

from .conftest import RealWheel
from .install import (
    InstalledDistribution,
    InstallLayout,
    WheelError,
    WheelHashMismatch,
    install_wheel,
)

LAYOUT = InstallLayout("opt/agent", "/usr/bin/python3.11")
SITE = "opt/agent/lib/python3.11/site-packages"


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
    assert (tmp_path / "root" / dist_info / "INSTALLER").read_text() == "ai-agent\n"
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
    python = require_program("python3.11", "CPython 3.11, the agents' interpreter (pyenv's)")
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
    assert script.read_bytes().startswith(b"#!/opt/agent/bin/python3.11\n# -*- coding: utf-8 -*-\n")
    assert _modes(jsonpointer)["opt/agent/bin/jsonpointer"] == 0o755
    record = (tmp_path / "jsonpointer" / SITE / "jsonpointer-2.4.dist-info/RECORD").read_text()
    assert "../../../bin/jsonpointer,sha256=" in record

    pyflakes = _install(real_wheels["pyflakes"], tmp_path / "pyflakes")
    launcher = (tmp_path / "pyflakes" / "opt/agent/bin/pyflakes").read_text()
    assert launcher.startswith("#!/opt/agent/bin/python3.11\n")
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


def test_every_data_scheme_lands_where_pip_puts_it_in_a_prefix(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    sha256 = _wheel(
        path,
        {
            "demo/__init__.py": "",
            "demo-1.0.data/headers/demo.h": "int demo;\n",
            "demo-1.0.data/data/share/demo/config.toml": "x = 1\n",
            "demo-1.0.data/purelib/demo_extra.py": "",
            "demo-1.0.data/platlib/demo_native.py": "",
            "demo-1.0.data/scripts/demo-tool": "#!python\nprint('tool')\n",
            "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
            "demo-1.0.dist-info/RECORD": "",
        },
    )
    distribution = install_wheel(path, sha256, LAYOUT, tmp_path / "root")
    assert _modes(distribution) == {
        "opt/agent/bin/demo-tool": 0o755,
        "opt/agent/include/site/python3.11/demo/demo.h": 0o644,
        "opt/agent/share/demo/config.toml": 0o644,
        f"{SITE}/demo-1.0.dist-info/INSTALLER": 0o644,
        f"{SITE}/demo-1.0.dist-info/RECORD": 0o644,
        f"{SITE}/demo-1.0.dist-info/WHEEL": 0o644,
        f"{SITE}/demo/__init__.py": 0o644,
        f"{SITE}/demo_extra.py": 0o644,
        f"{SITE}/demo_native.py": 0o644,
    }
    tool = (tmp_path / "root" / "opt/agent/bin/demo-tool").read_text()
    assert tool == "#!/opt/agent/bin/python3.11\nprint('tool')\n"
    record = (tmp_path / "root" / SITE / "demo-1.0.dist-info/RECORD").read_text().splitlines()
    assert [row.split(",")[0] for row in record] == sorted(
        [
            "../../../bin/demo-tool",
            "../../../include/site/python3.11/demo/demo.h",
            "../../../share/demo/config.toml",
            "demo-1.0.dist-info/INSTALLER",
            "demo-1.0.dist-info/RECORD",
            "demo-1.0.dist-info/WHEEL",
            "demo/__init__.py",
            "demo_extra.py",
            "demo_native.py",
        ]
    )


@pytest.mark.parametrize(
    ("members", "complaint"),
    [
        ({"../evil.py": ""}, "not a plain relative path"),
        ({"demo-1.0.dist-info/WHEEL": "Wheel-Version: 2.0\n"}, "Incompatible Wheel-Version 2.0"),
        ({"demo/__init__.py": ""}, "exactly one .dist-info directory"),
        ({"demo-1.0.data/unknown/x": ""}, "not contained in a valid .data subdirectory"),
    ],
)
def test_malformed_wheels_are_refused(
    tmp_path: Path, members: Dict[str, str], complaint: str
) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    if "demo/__init__.py" not in members:
        members = {
            "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
            "demo-1.0.dist-info/RECORD": "",
            **members,
        }
    sha256 = _wheel(path, members)
    with pytest.raises(WheelError, match=complaint):
        install_wheel(path, sha256, LAYOUT, tmp_path / "root")


def test_headers_data_pth_and_gui_entry_points_of_real_wheels(
    format_wheels: Dict[str, RealWheel], tmp_path: Path
) -> None:
    installed = {
        name: _modes(_install(format_wheels[name], tmp_path / name))
        for name in ("greenlet", "ipykernel", "setuptools", "qtconsole")
    }
    assert "opt/agent/include/site/python3.11/greenlet/greenlet.h" in installed["greenlet"]
    assert "opt/agent/share/jupyter/kernels/python3/kernel.json" in installed["ipykernel"]
    assert installed["setuptools"][f"{SITE}/distutils-precedence.pth"] == 0o644
    assert installed["qtconsole"]["opt/agent/bin/jupyter-qtconsole"] == 0o755
    launcher = (tmp_path / "qtconsole" / "opt/agent/bin/jupyter-qtconsole").read_text()
    assert launcher.startswith("#!/opt/agent/bin/python3.11\n")
    assert "from qtconsole.qtconsoleapp import main\n" in launcher
    compile(launcher, "jupyter-qtconsole", "exec")


def _pip_prefix_files(wheels: List[RealWheel], venv: Path, python311: str) -> Dict[str, bytes]:
    """What pip installs for `wheels` into a fresh virtual environment, by path below it."""
    subprocess.run([python311, "-m", "venv", "--without-pip", str(venv)], check=True)
    if wheels:
        subprocess.run(
            [python311, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--quiet",
             "--no-deps", "--no-index", "--no-compile", "--disable-pip-version-check",
             *(str(wheel.path) for wheel in wheels)],
            check=True,
            env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
        )  # fmt: skip
    files = {str(path.relative_to(venv)) for path in Path(venv).rglob("*") if path.is_file()}
    return {relative: (venv / relative).read_bytes() for relative in files}


def test_files_and_bytes_match_what_pip_installs(
    real_wheels: Dict[str, RealWheel],
    format_wheels: Dict[str, RealWheel],
    host_python311: str,
    tmp_path: Path,
) -> None:
    """Every wheel of the test set installed by pip into a virtual environment and by us into
    the prefix: the same files at the same places with the same bytes, except what each
    installer writes about itself (INSTALLER, RECORD, pip's REQUESTED and direct_url.json) and
    the venv's own files."""
    wheels = [
        *real_wheels.values(),
        *(format_wheels[name] for name in ("greenlet", "ipykernel", "setuptools", "qtconsole")),
    ]
    empty_venv = _pip_prefix_files([], tmp_path / "empty-venv", host_python311)
    pip = _pip_prefix_files(wheels, tmp_path / "venv", host_python311)
    pip = {path: data for path, data in pip.items() if path not in empty_venv}
    ours: Dict[str, bytes] = {}
    for wheel in wheels:
        distribution = _install(wheel, tmp_path / "ours" / wheel.filename)
        for installed in distribution.files:
            relative = installed.path[len("opt/agent/") :]
            ours[relative] = (distribution.root / installed.path).read_bytes()

    def comparable(files: Dict[str, bytes]) -> Dict[str, bytes]:
        own = ("/INSTALLER", "/RECORD", "/REQUESTED", "/direct_url.json")
        return {
            path: (b"" if path.startswith("bin/") else data)
            for path, data in files.items()
            if not path.endswith(own)
        }

    assert sorted(comparable(ours)) == sorted(comparable(pip))
    assert comparable(ours) == comparable(pip)
    # Scripts differ only in the interpreter named on their first line, and entry-point
    # launchers in quote style too (installer's template has double quotes, pip's distlib single).
    for path in (path for path in pip if path.startswith("bin/")):
        ours_body, pip_body = ours[path].split(b"\n", 1)[1], pip[path].split(b"\n", 1)[1]
        assert ours_body.replace(b"'", b'"') == pip_body.replace(b"'", b'"'), path

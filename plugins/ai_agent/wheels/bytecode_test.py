from __future__ import annotations

import marshal
import sys
from pathlib import Path
from typing import Dict

import pytest

from .bytecode import BytecodeError, Compiler
from .conftest import RealWheel
from .install import InstalledDistribution, InstalledFile, InstallLayout, file_sha256, install_wheel

LAYOUT = InstallLayout("opt/agent", "/usr/bin/python3.11")


def _compiled(wheel: RealWheel, root: Path, compiler: Compiler) -> InstalledDistribution:
    distribution = install_wheel(wheel.path, wheel.sha256, LAYOUT, root)
    return compiler.compile(distribution, LAYOUT.site_packages)


def _pyc_files(distribution: InstalledDistribution) -> Dict[str, bytes]:
    return {
        installed.path: (distribution.root / installed.path).read_bytes()
        for installed in distribution.files
        if installed.path.endswith(".pyc")
    }


def test_bytecode_is_byte_identical_and_names_image_paths(
    real_wheels: Dict[str, RealWheel], host_python311: str, tmp_path: Path
) -> None:
    compiler = Compiler.probe([host_python311], 11)
    assert compiler.cache_tag == "cpython-311" and compiler.version.startswith("3.11.")
    first = _pyc_files(_compiled(real_wheels["markupsafe"], tmp_path / "a", compiler))
    second = _pyc_files(_compiled(real_wheels["markupsafe"], tmp_path / "b" / "deeper", compiler))
    assert sorted(first) == [
        "opt/agent/lib/python3.11/site-packages/markupsafe/__pycache__/__init__.cpython-311.pyc",
        "opt/agent/lib/python3.11/site-packages/markupsafe/__pycache__/_native.cpython-311.pyc",
    ]
    assert first == second
    pyc = first[
        "opt/agent/lib/python3.11/site-packages/markupsafe/__pycache__/_native.cpython-311.pyc"
    ]
    # Flags 0b01: hash-based and not checked against the source at import.
    assert int.from_bytes(pyc[4:8], "little") == 0b01
    if sys.version_info[:2] == (3, 11):
        code = marshal.loads(pyc[16:])
        assert code.co_filename == "/opt/agent/lib/python3.11/site-packages/markupsafe/_native.py"
    assert str(tmp_path).encode() not in pyc


def test_sources_that_do_not_compile_are_noted(
    host_python311: str, tmp_path: Path, real_wheels: Dict[str, RealWheel]
) -> None:
    compiler = Compiler.probe([host_python311], 11)
    distribution = install_wheel(
        real_wheels["six"].path, real_wheels["six"].sha256, LAYOUT, tmp_path / "root"
    )
    broken = tmp_path / "root" / LAYOUT.site_packages / "six_py2_only.py"
    broken.write_text("print 'python 2'\n")
    distribution = distribution.with_files(
        [
            InstalledFile(
                f"{LAYOUT.site_packages}/six_py2_only.py",
                0o644,
                broken.stat().st_size,
                file_sha256(broken),
            )
        ]
    )
    compiled = compiler.compile(distribution, LAYOUT.site_packages)
    paths = {installed.path for installed in compiled.files}
    assert f"{LAYOUT.site_packages}/__pycache__/six.cpython-311.pyc" in paths
    assert compiled.notes == (
        f"no bytecode for {LAYOUT.site_packages}/six_py2_only.py: it does not compile",
    )


def test_an_interpreter_of_another_python_is_refused(host_python311: str) -> None:
    with pytest.raises(
        BytecodeError, match=r"is cpython 3\.11\.\d+, but the image runs CPython 3\.12"
    ):
        Compiler.probe([host_python311], 12)
    with pytest.raises(BytecodeError, match="cannot run /nonexistent/python3.11"):
        Compiler.probe(["/nonexistent/python3.11"], 11)

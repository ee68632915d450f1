"""The ld.so.cache writer, compared with the real `ldconfig` on a root made of this host's own
shared libraries: `ldconfig -p` must list the same entries, in the same order, from both."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit.components import missing_component

from .ldcache import LdCacheError, build_ld_cache

MULTIARCH = "usr/lib/x86_64-linux-gnu"
HOST_LIBRARIES = ("libc.so.6", "libm.so.6", "libz.so.1", "libssl.so.3", "libcrypto.so.3")


def _merged_root(root: Path) -> None:
    """A usr-merged root holding copies of a few host libraries, linked as Debian links them."""
    libraries = root / MULTIARCH
    libraries.mkdir(parents=True)
    for name in HOST_LIBRARIES:
        real = Path(os.path.realpath(f"/lib/x86_64-linux-gnu/{name}"))
        shutil.copy(real, libraries / real.name)
        if real.name != name:
            (libraries / name).symlink_to(real.name)
    loader = "ld-linux-x86-64.so.2"
    shutil.copy(os.path.realpath(f"/lib/x86_64-linux-gnu/{loader}"), libraries / loader)
    (libraries / "libssl.so").symlink_to("libssl.so.3")  # a development link
    (libraries / "libnotelf.so.1").write_text("INPUT(-lc)\n")  # a linker script
    (root / "usr/lib64").mkdir()
    (root / "usr/lib64" / loader).symlink_to(f"/lib/x86_64-linux-gnu/{loader}")
    for top in ("lib", "lib64"):
        (root / top).symlink_to(f"usr/{top}")
    conf = root / "etc/ld.so.conf.d"
    conf.mkdir(parents=True)
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n\n")
    (conf / "libc.conf").write_text("# libc default configuration\n/usr/local/lib\n")
    (conf / "x86_64-linux-gnu.conf").write_text(
        "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n"
        "/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n"
    )


def _listing(ldconfig: str, cache: Path) -> list:
    output = subprocess.run(
        [ldconfig, "-p", "-C", str(cache)], check=True, capture_output=True, text=True
    ).stdout
    return [line for line in output.splitlines()[1:] if not line.startswith("Cache generated")]


def test_ldconfig_reads_the_same_entries_from_ours_and_its_own(tmp_path: Path) -> None:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if platform.machine() != "x86_64":
        pytest.skip("builds its root from this x86_64 Debian host's libraries")
    if not os.path.exists(ldconfig):
        missing_component("glibc's `ldconfig`", "the Debian package `libc-bin`")
    if os.geteuid() != 0:
        pytest.skip("`ldconfig -r` chroots, which needs root")
    root = tmp_path / "root"
    _merged_root(root)
    ours = tmp_path / "ours.cache"
    ours.write_bytes(build_ld_cache(root, "amd64"))
    subprocess.run([ldconfig, "-X", "-r", str(root), "-C", "/theirs.cache"], check=True)
    theirs = _listing(ldconfig, root / "theirs.cache")
    assert _listing(ldconfig, ours) == theirs
    assert "\tlibssl.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so" in theirs
    assert not [line for line in theirs if "notelf" in line]


def test_the_cache_depends_only_on_the_files(tmp_path: Path) -> None:
    if platform.machine() != "x86_64" or not os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"):
        pytest.skip("builds its root from this x86_64 Debian host's libraries")
    _merged_root(tmp_path / "one")
    _merged_root(tmp_path / "two")
    first = build_ld_cache(tmp_path / "one", "amd64")
    assert first == build_ld_cache(tmp_path / "two", "amd64")
    assert first.startswith(b"glibc-ld.so.cache1.1")
    assert str(tmp_path).encode() not in first


def test_an_unknown_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LdCacheError, match="riscv64"):
        build_ld_cache(tmp_path, "riscv64")

"""The ./pants launcher: finds CPython 3.9, bootstraps once under a lock, redoes a half-finished
bootstrap, works from a checkout path with a space. Runs the real launcher in a copy of the
repo's top level, so it really installs Pants (pip's cache makes that ~40 s) and really builds
and checks the pex tool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_SANDBOX_ROOT = Path(__file__).resolve().parents[2]


def _copy_launcher(repo: Path) -> None:
    repo.mkdir(parents=True)
    for name in ("pants", "pants.toml"):
        shutil.copy2(_SANDBOX_ROOT / name, repo / name)
    # The copy must not try to load the plugin, which is not part of it, nor set its options.
    config = (repo / "pants.toml").read_text().replace('  "ai_agent",\n', "")
    config = re.sub(r"(?ms)^\[ai-agents[^\]]*\]\n.*?(?=^\[|\Z)", "", config)
    (repo / "pants.toml").write_text(config)


def _launch(repo: Path, *args: str, umask: int = 0o022, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(repo / "pants"), "--no-pantsd", *args],
        cwd=repo,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(umask),  # noqa: PLW1509
    )


def test_missing_python39_is_one_clear_line(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _copy_launcher(repo)
    empty = tmp_path / "empty"
    empty.mkdir()
    process = _launch(
        repo,
        "--version",
        PANTS_PYTHON="",
        PYENV_ROOT=str(empty),
        PATH=f"{empty}:/usr/bin:/bin",
    )
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert stderr.strip().splitlines() == [
        "pants launcher: CPython 3.9 not found: install it (e.g. `pyenv install 3.9`) or set "
        "PANTS_PYTHON=/path/to/python3.9."
    ]
    assert not (repo / ".pants-bootstrap" / "venv").exists()


@pytest.mark.integration
def test_concurrent_first_runs_under_umask_077_bootstrap_once_and_redo_a_half_finished_one(
    tmp_path: Path,
) -> None:
    # A checkout path with a space: Pants reads the pex tool through a file:// URL.
    repo = tmp_path / "a checkout path" / "repo"
    _copy_launcher(repo)
    # A bootstrap that was killed half-way: files present, no `complete` marker.
    half_finished = repo / ".pants-bootstrap" / "pants-2.17.1-pex-2.1.163"
    (half_finished / "venv").mkdir(parents=True)
    (half_finished / "venv" / "leftover").write_text("from an interrupted run")

    # Whichever run bootstraps does so under a strict umask and another TZ and locale: the pex
    # tool it builds must still match the sha256 pinned in pants.toml.
    first, second = (
        _launch(repo, "--version", umask=0o077, TZ="Pacific/Kiritimati", LC_ALL="C")
        for _ in range(2)
    )
    results = [process.communicate(timeout=600) for process in (first, second)]

    assert [p.returncode for p in (first, second)] == [0, 0], results
    assert [stdout.strip() for stdout, _ in results] == ["2.17.1", "2.17.1"]
    bootstraps = sum("bootstrapping Pants" in stderr for _, stderr in results)
    assert bootstraps == 1, results
    assert not (half_finished / "venv" / "leftover").exists()
    assert (half_finished / "complete").is_file()
    # The pex tool was rebuilt and passed the sha256 pinned in pants.toml.
    assert (half_finished / "pex-v2.1.163.pex").is_file()

    # A goal that runs the pex tool works from that path.
    config = (repo / "pants.toml").read_text()
    config = config.replace(
        'root_patterns = ["/plugins", "/tests", "/benchmarks", "/agents/*"]',
        'root_patterns = ["/"]',
    )
    (repo / "pants.toml").write_text(
        config.replace("enable_resolves = true", "enable_resolves = false")
    )
    (repo / "BUILD").write_text(
        'python_sources(name="src")\npex_binary(name="app", entry_point="app.py")\n'
    )
    (repo / "app.py").write_text("print('ran')\n")
    stdout, stderr = _launch(repo, "package", "//:app").communicate(timeout=600)
    assert (repo / "dist" / "app.pex").is_file(), stderr
    assert (
        subprocess.run(
            [sys.executable, str(repo / "dist" / "app.pex")], capture_output=True, text=True
        ).stdout
        == "ran\n"
    )

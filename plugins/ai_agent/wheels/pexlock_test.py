from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from .conftest import TESTDATA
from .pexlock import LockError, NoCompatibleWheel, PexLock
from .target import Target

CUDA_TESTDATA = Path(__file__).parent.parent / "cuda" / "testdata"
AMD64_39 = Target.parse("3.9", "linux/amd64", "2.36")
AMD64_311 = Target.parse("3.11.2", "linux/amd64", "2.36")
ARM64_311 = Target.parse("3.11.2", "linux/arm64", "2.36")


def _project(name: str, version: str, requires: List[str], filenames: List[str]) -> Dict[str, Any]:
    return {
        "project_name": name,
        "version": version,
        "requires_dists": requires,
        "requires_python": ">=3.8",
        "artifacts": [
            {"url": f"https://files.example/{filename}", "algorithm": "sha256", "hash": "ab" * 32}
            for filename in filenames
        ],
    }


def _lock(*projects: Dict[str, Any]) -> str:
    document = {"locked_resolves": [{"locked_requirements": list(projects)}]}
    return "// header line\n" + json.dumps(document)


def _with_projects(fixture: str, *projects: Dict[str, Any]) -> str:
    """A lock fixture of `ai_agent.cuda` with `projects` locked next to its real ones."""
    text = (CUDA_TESTDATA / fixture).read_text(encoding="utf-8")
    body = "".join(line for line in text.splitlines(True) if not line.startswith("//"))
    document = json.loads(body)
    document["locked_resolves"][0]["locked_requirements"].extend(projects)
    return json.dumps(document)


def _names(lock: PexLock, requirements: List[str], target: Target) -> List[str]:
    return [wheel.project for wheel in lock.resolve(requirements, target)]


def test_the_closure_of_pytest_in_the_pants_plugins_lock() -> None:
    lock = PexLock.load(TESTDATA / "pants-plugins.lock", AMD64_39)
    wheels = lock.resolve(["pytest==7.0.1"], AMD64_39)
    # Not colorama/atomicwrites (win32), importlib-metadata (< 3.8) or the `testing` extra.
    assert [wheel.project for wheel in wheels] == [
        "attrs",
        "iniconfig",
        "packaging",
        "pluggy",
        "py",
        "pyparsing",
        "pytest",
        "tomli",
    ]
    packaging = wheels[2]
    assert packaging.filename == "packaging-21.3-py3-none-any.whl"
    assert packaging.url.endswith("/packaging-21.3-py3-none-any.whl")
    assert len(packaging.sha256) == 64


def test_the_requires_python_of_a_locked_project_is_checked() -> None:
    lock = PexLock.load(TESTDATA / "pants-plugins.lock", AMD64_311)
    with pytest.raises(LockError, match=r"pantsbuild-pants 2.17.1 requires Python <3.10,>=3.7"):
        lock.resolve(["pantsbuild.pants"], AMD64_311)


def test_markers_of_a_foreign_platform_decide_the_closure() -> None:
    text = _lock(
        _project(
            "agent-tools",
            "1.0",
            [
                'uvloop>=0.19; platform_machine == "aarch64"',
                'colorama; sys_platform == "win32"',
                'httpx[http2]; python_version >= "3.10"',
                'tomli; python_version < "3.11"',
            ],
            ["agent_tools-1.0-py3-none-any.whl"],
        ),
        _project("uvloop", "0.19.0", [], ["uvloop-0.19.0-cp311-cp311-manylinux_2_17_aarch64.whl"]),
        _project("colorama", "0.4.6", [], ["colorama-0.4.6-py2.py3-none-any.whl"]),
        _project("tomli", "2.0.1", [], ["tomli-2.0.1-py3-none-any.whl"]),
        _project(
            "httpx", "0.27.0", ['h2<5,>=3; extra == "http2"'], ["httpx-0.27.0-py3-none-any.whl"]
        ),
        _project("h2", "4.1.0", [], ["h2-4.1.0-py3-none-any.whl"]),
    )
    lock = PexLock.loads(text, "fixture.lock", AMD64_311)
    assert _names(lock, ["agent-tools"], AMD64_311) == ["agent-tools", "h2", "httpx"]
    assert _names(lock, ["agent-tools"], ARM64_311) == ["agent-tools", "h2", "httpx", "uvloop"]
    assert _names(lock, ["httpx"], AMD64_311) == ["httpx"]
    assert _names(lock, ["httpx", "httpx[http2]"], AMD64_311) == ["h2", "httpx"]
    assert _names(lock, ['tomli; python_version < "3.11"'], AMD64_311) == []


def test_a_project_without_a_wheel_for_the_target_is_named() -> None:
    lock = PexLock.load(TESTDATA / "agents.lock", ARM64_311)
    target = Target.parse("3.11", "linux/arm64", "2.12")
    with pytest.raises(NoCompatibleWheel) as raised:
        lock.resolve(["numpy>=1.26"], target)
    message = str(raised.value)
    assert "numpy 2.2.6 has no wheel for CPython 3.11 on linux/arm64 (glibc 2.12)" in message
    assert "numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl" in message
    assert "numpy-2.2.6.tar.gz" in message
    sdist_only = _lock(_project("pyjwt", "2.8.0", [], ["pyjwt-2.8.0.tar.gz"]))
    with pytest.raises(NoCompatibleWheel, match="pyjwt 2.8.0 has no wheel"):
        PexLock.loads(sdist_only, "fixture.lock", AMD64_311).resolve(["pyjwt"], AMD64_311)


def test_requirements_the_lock_does_not_satisfy_are_refused() -> None:
    lock = PexLock.load(TESTDATA / "agents.lock", AMD64_311)
    with pytest.raises(LockError, match=r"numpy>=2.3 \(wanted by the image\) is not satisfied"):
        lock.resolve(["numpy>=2.3"], AMD64_311)
    with pytest.raises(LockError, match="torch .* is not in the lockfile"):
        lock.resolve(["torch"], AMD64_311)


def test_of_several_resolves_the_one_for_the_target_is_read(tmp_path: Path) -> None:
    def resolve(platform: str) -> Dict[str, Any]:
        filename = f"psutil-5.9.0-cp311-cp311-{platform}.whl"
        return {
            "platform_tag": ["cp311", "cp311", platform],
            "locked_requirements": [_project("psutil", "5.9.0", [], [filename])],
        }

    path = tmp_path / "platforms.lock"
    document = {"locked_resolves": [resolve("macosx_11_0_arm64"), resolve("manylinux2014_x86_64")]}
    path.write_text(json.dumps(document))
    wheels = PexLock.load(path, AMD64_311).resolve(["psutil"], AMD64_311)
    assert wheels[0].filename == "psutil-5.9.0-cp311-cp311-manylinux2014_x86_64.whl"
    with pytest.raises(LockError, match="no locked resolve is for CPython 3.11.2 on linux/arm64"):
        PexLock.load(path, ARM64_311)


def test_unreadable_locks_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.lock").write_text("// only a header\n{")
    with pytest.raises(LockError, match="broken.lock: not a pex lockfile"):
        PexLock.load(tmp_path / "broken.lock", AMD64_311)
    with pytest.raises(LockError, match="cannot read the lockfile"):
        PexLock.load(tmp_path / "absent.lock", AMD64_311)


@pytest.mark.parametrize(
    ("requirement", "satisfied"),
    [
        ("torch==2.4.1+cu121", True),
        # Without a local label in the specifier, the candidate's is ignored.
        ("torch==2.4.1", True),
        ("torch==2.4.1+cpu", False),
        # Arbitrary equality compares the strings.
        ("torch===2.4.1+cu121", True),
        ("torch===2.4.1", False),
        ("torch==2.*", True),
        ("torch!=2.4.*", False),
        ("torch~=2.4.0", True),
        ("torch<=2.4.1", True),
        # A local version of 2.4.1 is neither greater nor smaller than 2.4.1.
        ("torch>2.4.1", False),
        ("torch<2.4.1", False),
    ],
)
def test_specifiers_against_a_local_version(requirement: str, satisfied: bool) -> None:
    lock = PexLock.load(CUDA_TESTDATA / "torch-2.4.1-cu121.lock", AMD64_311)
    if satisfied:
        wheels = {wheel.project: wheel for wheel in lock.resolve([requirement], AMD64_311)}
        assert wheels["torch"].version == "2.4.1+cu121"
        assert wheels["torch"].filename == "torch-2.4.1+cu121-cp311-cp311-linux_x86_64.whl"
        assert "nvidia-cudnn-cu12" in wheels and "triton" in wheels
    else:
        complaint = f"{requirement} (wanted by the image) is not satisfied by the locked torch"
        with pytest.raises(LockError, match=re.escape(f"{complaint} 2.4.1+cu121")):
            lock.resolve([requirement], AMD64_311)


def test_a_dependency_under_an_extra_comes_with_that_extra_only() -> None:
    agent = _project(
        "agent-tools",
        "1.0",
        ['torch==2.4.1+cu121; extra == "cuda"', "typing-extensions>=4.8"],
        ["agent_tools-1.0-py3-none-any.whl"],
    )
    lock = PexLock.loads(_with_projects("torch-2.4.1-cu121.lock", agent), "f.lock", AMD64_311)
    assert _names(lock, ["agent-tools"], AMD64_311) == ["agent-tools", "typing-extensions"]
    assert _names(lock, ["agent-tools[docs]"], AMD64_311) == ["agent-tools", "typing-extensions"]
    with_cuda = _names(lock, ["agent-tools[cuda]"], AMD64_311)
    assert {"torch", "nvidia-cudnn-cu12", "triton"} <= set(with_cuda)
    assert _names(lock, ["Agent_Tools[CUDA]"], AMD64_311) == with_cuda
    assert _names(lock, ["agent-tools", "agent-tools[cuda]"], AMD64_311) == with_cuda
    # torch's own `extra == "optree"` dependency is not locked and not wanted.
    assert "optree" not in with_cuda


def test_a_platform_machine_marker_for_the_arm64_target() -> None:
    agent = _project(
        "agent-tools",
        "1.0",
        ['torch==2.5.1; platform_machine == "aarch64"'],
        ["agent_tools-1.0-py3-none-any.whl"],
    )
    text = _with_projects("torch-2.5.1-pypi.lock", agent)
    arm64 = PexLock.loads(text, "f.lock", ARM64_311).resolve(["agent-tools"], ARM64_311)
    chosen = {wheel.project: wheel.filename for wheel in arm64}
    assert chosen["torch"] == "torch-2.5.1-cp311-cp311-manylinux2014_aarch64.whl"
    # torch's nvidia-* and triton requirements are `platform_machine == "x86_64"` ones.
    assert not any(name.startswith("nvidia-") or name == "triton" for name in chosen)
    amd64 = PexLock.loads(text, "f.lock", AMD64_311)
    assert _names(amd64, ["agent-tools"], AMD64_311) == ["agent-tools"]


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("version", "latest", "agent-tools: version 'latest' is not a PEP 440 version"),
        ("requires_python", ">=3.8,<", "agent-tools: requires_python '>=3.8,<' is not a PEP 440"),
        ("requires_dists", ["numpy>="], "agent-tools: 'numpy>=' is not a PEP 508 requirement"),
        (
            "requires_dists",
            ['numpy; colour == "red"'],
            """agent-tools: 'numpy; colour == "red"' is not a PEP 508 requirement""",
        ),
        (
            "requires_dists",
            ["torch @ https://download.pytorch.org/whl/torch.whl"],
            "agent-tools: 'torch @ https://download.pytorch.org/whl/torch.whl': direct URL"
            " requirements are not supported",
        ),
    ],
)
def test_malformed_lock_entries_are_named(field: str, value: Any, complaint: str) -> None:
    project = _project("agent-tools", "1.0", [], ["agent_tools-1.0-py3-none-any.whl"])
    project[field] = value
    with pytest.raises(LockError, match=re.escape(f"fixture.lock: {complaint}")):
        PexLock.loads(_lock(project), "fixture.lock", AMD64_311)


def test_what_only_resolving_finds_malformed_is_named() -> None:
    lock = PexLock.loads(
        _lock(
            _project("bad-marker", "1.0", ['numpy; python_version ~= "new"'], []),
            _project("bad-wheel", "1.0", [], ["bad_wheel-latest-py3-none-any.whl"]),
        ),
        "fixture.lock",
        AMD64_311,
    )
    with pytest.raises(LockError, match="fixture.lock: bad-marker 1.0: cannot evaluate the marker"):
        lock.resolve(["bad-marker"], AMD64_311)
    with pytest.raises(LockError, match="fixture.lock: bad-wheel 1.0: Invalid version: 'latest'"):
        lock.resolve(["bad-wheel"], AMD64_311)
    with pytest.raises(LockError, match="the requested requirements: 'numpy>=latest' is not a"):
        lock.resolve(["numpy>=latest"], AMD64_311)

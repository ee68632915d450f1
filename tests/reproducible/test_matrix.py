"""The reproducibility matrix: every example agent, built in two scratch clones that differ in
everything a build machine can, has the same manifest digest (and archive bytes) in both; then
one changed byte of a weight file changes only the layer that holds it, and the config and
manifest that list that layer.

| | clone A | clone B |
|---|---|---|
| checkout path | `<tmp>/a/repo` | `<tmp>/b/some/deeper/checkout` |
| umask | 022 | 077 |
| TZ | UTC | Pacific/Kiritimati (UTC+14) |
| LANG, LC_ALL | C.UTF-8 | tr_TR.UTF-8 |
| HOME | the test's | an empty directory |
| Pants caches | the default ones (may be warm) | an empty local store and named caches |
| file mtimes | as copied from the sandbox | all 2009-02-13 |
| builder Python (`[ai-agents-builder].interpreter_constraints`) | CPython 3.9 | CPython 3.11 |

Clone B builds everything from nothing. Real components: Pants 2.17 with this plugin (no pantsd)
against scratch repos holding the real pants.toml, lockfiles, `agents/` and `3rdparty/`; on an
empty cache the wheels of the `agents` lock come from PyPI and the Debian base's .debs from
deb.debian.org. No dockerd.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import pytest

from testkit.pants_output import PackagedOutputs
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

WEIGHT_FILE = "agents/models/router/router-centroids.npy"
# 2009-02-13T23:31:30Z.
OTHER_MTIME = 1234567890


@dataclass(frozen=True)
class Clones:
    a: ScratchRepo
    b: ScratchRepo
    b_options: List[str]
    b_env: Dict[str, str]


def _package(repo: ScratchRepo, *options: str, **kwargs: Any) -> None:
    result = repo.run(*options, "package", "agents::", timeout=1800, **kwargs)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _layers(metadata: Dict[str, Any]) -> List[Dict[str, Any]]:
    (image,) = metadata["images"]
    return list(image["layers"])


@pytest.fixture(scope="module")
def clones(tmp_path_factory: pytest.TempPathFactory) -> Clones:
    a = ScratchRepo.with_example_agents(tmp_path_factory.mktemp("a") / "repo")
    _package(a, "--ai-agents-builder-interpreter-constraints=['CPython==3.9.*']", umask=0o022)

    scratch = tmp_path_factory.mktemp("b")
    b = ScratchRepo.with_example_agents(scratch / "some" / "deeper" / "checkout")
    for directory, _, files in os.walk(b.root):
        for name in files:
            os.utime(Path(directory) / name, (OTHER_MTIME, OTHER_MTIME))
    home = scratch / "home"
    home.mkdir()
    b_options = [
        f"--local-store-dir={scratch / 'cache/lmdb_store'}",
        f"--named-caches-dir={scratch / 'cache/named_caches'}",
        "--ai-agents-builder-interpreter-constraints=['CPython==3.11.*']",
    ]
    b_env = {
        "HOME": str(home),
        # Interpreters stay where they are installed (Pants looks for pyenv under $HOME).
        "PYENV_ROOT": os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
        "TZ": "Pacific/Kiritimati",
        "LANG": "tr_TR.UTF-8",
        "LC_ALL": "tr_TR.UTF-8",
    }
    _package(b, *b_options, extra_env=b_env, umask=0o077)
    return Clones(a, b, b_options, b_env)


def test_every_agent_has_the_same_digest_and_bytes_in_both_clones(clones: Clones) -> None:
    in_a, in_b = PackagedOutputs.read(clones.a), PackagedOutputs.read(clones.b)
    # The example agents: router for CPU and for CUDA 12.4, and triage.
    assert len(in_a.metadata) == 3, sorted(in_a.metadata)
    assert sorted(in_b.metadata) == sorted(in_a.metadata)
    for target, metadata in in_a.metadata.items():
        assert in_b.metadata[target]["digest"] == metadata["digest"], target
        assert in_b.metadata[target] == metadata, target
    assert len(in_a.archive_sha256) >= 3
    assert in_b.archive_sha256 == in_a.archive_sha256


def test_one_changed_weight_byte_changes_only_the_layer_holding_it(clones: Clones) -> None:
    before = PackagedOutputs.read(clones.b).metadata
    weights = clones.b.root / WEIGHT_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    _package(clones.b, *clones.b_options, extra_env=clones.b_env, umask=0o077)
    after = PackagedOutputs.read(clones.b).metadata

    assert sorted(after) == sorted(before)
    for target, old in before.items():
        new = after[target]
        changed = [
            (old_layer["kind"], old_layer["holds"])
            for old_layer, new_layer in zip(_layers(old), _layers(new))
            if old_layer != new_layer
        ]
        assert len(_layers(new)) == len(_layers(old)), target
        assert len(changed) == 1, (target, changed)
        (kind, holds) = changed[0]
        assert kind == "weights" and "router-centroids.npy" in holds, (target, changed)
        (old_image,), (new_image,) = old["images"], new["images"]
        assert new_image["config"]["digest"] != old_image["config"]["digest"], target
        assert new["digest"] != old["digest"], target

"""What a nested Pants run printed (the processes it executed, its stats counters) and what
`package` wrote to a scratch repo's dist/."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping

from testkit.pants_repo import ScratchRepo

# Descriptions of the plugin's build processes (layers.py, image.py, base_images.py); other
# processes (interpreter discovery and placing images in dist/, which run in every session, and
# dependency inference of an edited file) build nothing of the image.
BUILDER_PROCESSES = (
    "Writing the ",
    "Installing ",
    "Grouping the ",
    "Fetching ",
    "Choosing the locked wheels",
    "Pulling ",
    "Locking ",
)
# Logged under `--keep-sandboxes=always` as Pants creates a process' sandbox: for every process that
# starts locally (cache hits start nothing, except that Pants may start a process while it asks a
# remote cache, and cancel it on a hit).
_PRESERVED = re.compile(r"Preserving local process execution dir \S+ for (.+)$", re.MULTILINE)
# `--stats-log` logs `Counters:` and then one `  <name>: <count>` line per counter.
_COUNTERS = re.compile(r"Counters:\n((?:  \w+: \d+\n?)+)")
_COUNTER = re.compile(r"^  (\w+): (\d+)$", re.MULTILINE)


def succeeded(result: subprocess.CompletedProcess) -> str:
    """What a run that must have succeeded printed (stdout, then stderr); fails showing both."""
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return f"{result.stdout}\n{result.stderr}"


def executed_processes(result: subprocess.CompletedProcess) -> List[str]:
    """The descriptions of the processes that a run with `--keep-sandboxes=always` started."""
    return _PRESERVED.findall(result.stderr)


def builder_processes(result: subprocess.CompletedProcess) -> List[str]:
    """The started processes that build part of an image, sorted."""
    return sorted(name for name in executed_processes(result) if name.startswith(BUILDER_PROCESSES))


def stats_counters(result: subprocess.CompletedProcess) -> Dict[str, int]:
    """The counters that a run with `--stats-log` logged at its end (every counter Pants knows,
    zeros included)."""
    (block,) = _COUNTERS.findall(result.stderr)
    return {name: int(count) for name, count in _COUNTER.findall(block)}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class PackagedOutputs:
    """What `package agents::` left in a repo's dist/: every agent's metadata (by its target
    address, which is what the summary line names) and the sha256 of every archive in dist/."""

    metadata: Mapping[str, Dict[str, Any]]
    archive_sha256: Mapping[str, str]

    @classmethod
    def read(cls, repo: ScratchRepo) -> PackagedOutputs:
        dist = repo.root / "dist"
        metadata = {}
        for path in sorted(dist.glob("agents.*/*.tar.json")):
            content = json.loads(path.read_text())
            if "accelerator" in content:  # an agent's, not its base's
                metadata[content["target"]] = content
        hashes = {str(path.relative_to(dist)): file_sha256(path) for path in dist.glob("*/*.tar")}
        return cls(metadata=metadata, archive_sha256=hashes)

    def agent(self, name: str) -> Dict[str, Any]:
        """The CPU image of the example agent `name` (`agents/<name>`, whichever variants of it
        the BUILD file parametrizes)."""
        own = re.compile(rf"^agents/{name}(:{name})?(@|$)")
        (metadata,) = (
            metadata
            for target, metadata in self.metadata.items()
            if own.match(target) and metadata["accelerator"] == "cpu"
        )
        return metadata

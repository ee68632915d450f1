"""Agent image builds with Pants and this plugin against `docker build` of an equivalent
Dockerfile, side by side in one run. A script, not a test.

    ./pants --concurrent run benchmarks/agent_builds.py -- [--only P1,P2,...] [--runs 3]
        [--weights-mib 1024] [--workdir DIR] [--json PATH] [--docker-builder classic|buildkit]
        [--docker docker] [--p1-archives on|off] [--p1-layouts on|off] [--p10-gib 9]

`./pants run` is the way to run it: it gives the script Pants, the plugin, the repo's
configuration, the example agents and tests/testkit (its BUILD dependencies), and the launcher
sets AI_AGENT_PEX_TOOL, which testkit's ScratchRepo needs. Every Pants build runs in a scratch
repo under --workdir (default: the temporary directory) with Pants caches of its own there, never
in this repo's dist/ or ~/.cache/pants. Docker images it makes are named `bench-agent-builds/...`
and removed at the end; the warm Pants caches and the python-slim-style root filesystem stay in
--workdir for the next run (delete it to reclaim the space).

The equivalent Dockerfile. Our images build on a distroless-style `debian_base` (no pip inside),
so docker's side is a Dockerfile `FROM` the very same base image, which docker pulls by digest
from a registry the benchmark runs on loopback (`docker-registry`; the base is pushed there from
the OCI layout `package` wrote, blobs as they are: the same layers). It first sets our image's
config (Env, Entrypoint, Cmd, Labels, ExposedPorts, Healthcheck, User, WorkingDir, StopSignal,
read from the config Pants wrote: before the COPYs, as a Dockerfile written for the layer cache
has them, so a code change does not rebuild them), then COPYs, in our layer order: a
site-packages directory installed on the host by `pip install --target` with CPython 3.11 from
the agents lock's pins and sha256s (pip's time counts on docker's side in cold builds), the
weights, the code and agent.yaml (the same files as our layers hold). Each figure is the median
of --runs runs. Docker builds use dockerd's classic builder unless --docker-builder buildkit (its
built-in BuildKit, which needs buildx or a 20.10-22.x CLI, e.g. Debian's /usr/bin/docker).

Timed windows. Every timed command, ours and docker's, ends with `sync`: Pants fsyncs its store's
writes, so dockerd's writes (and dist/'s) are flushed inside the window too; and a `sync` just
before the clock starts flushes what the benchmark itself wrote (new weights, a context), which
is neither side's work. The warm benchmarks (P1, P2, P5) start with the base on both sides: in
Pants' store, and pulled into dockerd. The cold ones fetch it on both sides (Pants: the .debs
from the Debian mirror, docker: a pull from the loopback registry; docker's pull fetches no layer
if dockerd holds the same image under another name, which P3 counts).

    P1  fresh random weights (--weights-mib) in a `resources` target, everything else warm:
        `package`, with pantsd (the headline: Pants' default for a developer) and without, vs
        `docker build` COPYing them; the peak RSS of the Pants process and of its largest build
        step (sampled from /proc), each against the same build with 1-byte weights (flat: <=1.25x).
        --p1-archives=on: with [ai-agents].archives on (an archive too; default: off, the OCI
        layout only, the plugin's default); --p1-layouts=off: without the layout either.
    P2  one-line code edit, warm caches: `package` of the router, with pantsd (headline) and
        without, vs `docker build` with its layer cache.
    P3  cold `package agents::` (fresh scratch repo, --local-store-dir and --named-caches-dir) vs
        docker's cold path: `docker pull` of the base, pip into a fresh cache, and `docker build
        --no-cache` of every example agent image. (P2-P7 leave out the torch classifier: P8's.)
    P4  `package agents::` with empty local caches and a warm remote cache (a real BuildGrid) vs
        the cold build that filled it (cold + uploads, as the CI job that writes the cache).
    P5  no-op `package agents::`, with pantsd (headline) and without (target: 3 s); docker's fully
        cached rebuild of the same images for reference.
    P6  uncompressed (and pushed, compressed) size of the router image vs a python-slim-style one:
        Debian bookworm minbase slimmed as debian:bookworm-slim is (no docs, manuals, locales) with
        python3 and pip (mmdebstrap, `docker import`), whose Dockerfile pip-installs the locked
        requirements in a RUN and COPYs the same weights, code and config.
    P7  `publish` to a real registry of an unchanged image and of a code-only change vs `docker
        push` of the docker-built image; blob uploads are read from the registry's access log and
        sized from its storage, for both tools.
    P8  a real ML stack: the torch example agent (`agents/classifier`: torch 2.5.1 from PyPI with
        its nvidia-* CUDA wheels, ~2.5 GB of wheels). Cold `package` with archives off (fresh
        scratch repo and caches, wheels downloaded; the image is its OCI layout in dist/; the
        archives docker loads are packaged after it, timed apart) vs what users do instead:
        `docker pull` of the same base, pip of the same locked wheels (fresh cache, downloads
        included) into a directory, and `docker build --no-cache` COPYing it; the image sizes;
        then a small requirement bump (filelock to another release, edited into the lock)
        re-packaged (archives off), with pantsd (headline) and without, vs pip again (warm
        cache) and `docker build` (warm layer cache).
    P9  bytes, not time (one run): a scratch monorepo of 20 agents (`agents/fleetNN`, each its own
        tiny module on the router's code, the `agents` lock's packages, the router's weights and
        the Debian base), archives off, with pantsd. What (a) a cold `package ::` (empty caches),
        (b) a no-op one, (c) one after a one-line edit in one agent write outside Pants' store:
        files in dist/ that are new or rewritten (another inode, mtime or size than before),
        counted apart from new hardlinks to the store's files ("linked", no byte written); the
        store's growth and the disk's writes (every process's, /sys/block) beside them. Targets:
        (a) <= 1.2x the unique layer bytes, (b) 0 B, (c) <= the agent's code layer + its
        metadata + 1 MB. Then (d): the monorepo's machine, which filled a remote cache (a real
        BuildGrid) while building, publishes every agent to a loopback registry; a fresh
        machine (empty local caches, the warm remote cache, publish-only settings:
        --cache-content-behavior=defer, layouts and archives off) publishes `::` after another
        one-line edit: bytes downloaded (at most its local store's growth) + uploaded (the
        registry's access log) against the changed code layer's (target <= 2x).
    P10 disk, not time (one run): a weights file of --p10-gib GiB (default 9; sparse but for its
        first KiB, so that only what the build writes takes disk) packaged, archives off, with the
        OCI layout in dist/ and without it: the disk's use at its peak during `package` and after
        it, against the file's size (target <= 2x). Both settings share one store (the second gets
        other weights); the disk must have ~2.2x the size free.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, TypeVar

import toml

from testkit.components import (
    RunningBuildGrid,
    RunningRegistry,
    host_interpreter,
    require_binary,
    start_buildgrid,
    start_registry,
)
from testkit.pants_repo import AGENTS_SKELETON, ScratchRepo

MIB = 1 << 20
BENCHMARKS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10")
IMAGE_PREFIX = "bench-agent-builds"
BASE = "agents/base:bookworm-python"
BASE_ARCHIVE = "agents.base/bookworm-python.tar"
BASE_NAME = "bookworm-python:latest"  # in the OCI layout dist/oci, which holds every image
LAYOUT_BLOBS = "dist/oci/blobs/sha256"
ROUTER = "agents/router@accelerator=cpu"
CLASSIFIER = "agents/classifier:classifier"
# The example agents P2-P7 build: all but the torch classifier (P8's, 5 GB), whose files the
# scratch repos hold for P8.
EXAMPLES = ("agents::", "-agents/classifier::")
# `package` as repos with big images run it: OCI layouts in dist/, no archive.
NO_ARCHIVES = "--ai-agents-archives=false"
NO_LAYOUTS = "--ai-agents-layouts=false"
# P8's small requirement bumps: releases of filelock other than the torch lock's.
FILELOCK_BUMPS = ("3.16.1", "3.15.4")
# The file the code-edit benchmarks change, in the repo and in the image.
ROUTER_SOURCE = ("agents/router/router_agent/server.py", "opt/agent/app/router_agent/server.py")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# P1's agent: its code, agent.yaml and one weights file written per run.
WEIGHTS = "agents/big/w/weights.bin"
BIG_AGENT = "agents/big:agent"
BIG_AGENT_FILES = {
    **AGENTS_SKELETON,
    "agents/big/BUILD": """\
python_sources(name="src", sources=["big_agent/*.py"])
resource(name="weights", source="w/weights.bin")
ai_agent(name="agent", entry_point="big_agent", dependencies=[":src"], weights=[":weights"])
""",
    "agents/big/big_agent/__main__.py": 'print("big")\n',
    "agents/big/agent.yaml": "name: big\nmodels:\n  - w/weights.bin\n",
}


# Results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table: our median against a baseline's (docker's, or as named)."""

    benchmark: str
    unit: str
    ours: float
    baseline: Optional[float]
    baseline_is: str
    target: str
    passed: Optional[bool]
    note: str = ""

    @property
    def ratio(self) -> Optional[float]:
        return self.ours / self.baseline if self.baseline else None


def _figure(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    if unit == "B":
        return _size(value)
    return f"{value:.1f} {unit}" if unit == "s" else f"{value:.0f} {unit}"


def _size(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def print_table(rows: Sequence[Row]) -> None:
    header = ("benchmark", "ours", "baseline", "baseline is", "ratio", "target", "result")
    lines = [header] + [
        (
            row.benchmark,
            _figure(row.ours, row.unit),
            _figure(row.baseline, row.unit),
            row.baseline_is,
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            row.target,
            {True: "pass", False: "FAIL", None: "info"}[row.passed],
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    for row in rows:
        if row.note:
            print(f"{row.benchmark}: {row.note}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _tail(text: str, chars: int = 4000) -> str:
    return text[-chars:]


# Pants ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caches:
    """A Pants local store and named caches of the benchmark's own."""

    store: Path
    named: Path

    @classmethod
    def under(cls, root: Path) -> Caches:
        return cls(store=root / "store", named=root / "named")

    @property
    def options(self) -> List[str]:
        return [f"--local-store-dir={self.store}", f"--named-caches-dir={self.named}"]


def pants(repo: ScratchRepo, caches: Caches, *args: str, pantsd: bool = False) -> Tuple[float, str]:
    """Run Pants in `repo` with `caches`; return its wall time and output (it must succeed)."""
    command = [*caches.options, *args]
    os.sync()  # earlier writes (new weights, an edit) are not this command's to flush
    started = time.perf_counter()
    if pantsd:
        # ScratchRepo runs Pants without pantsd (and a later `--pantsd` does not override it):
        # the same command line and environment with the daemon on.
        kwargs = repo._process_kwargs(command, None, None)
        kwargs["args"] = ["--pantsd" if arg == "--no-pantsd" else arg for arg in kwargs["args"]]
        result = subprocess.run(**kwargs, capture_output=True, text=True, timeout=1800)
    else:
        result = repo.run(*command, timeout=1800)
    # Pants fsyncs what it writes to its store; dist/ and the rest are flushed in the window too,
    # as docker's writes are (see Docker.build).
    os.sync()
    seconds = time.perf_counter() - started
    output = f"{result.stdout}\n{result.stderr}"
    if result.returncode != 0:
        raise SystemExit(f"pants {' '.join(args)} failed in {repo.root}:\n{_tail(output)}")
    return seconds, output


def stop_pantsd(repo: ScratchRepo) -> None:
    for pid_file in repo.root.glob(".pids/*/pantsd/pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def examples_repo(root: Path) -> ScratchRepo:
    repo = ScratchRepo.create(root)
    repo.copy_from_sandbox("agents", "3rdparty")
    return repo


def append_line(path: Path) -> None:
    """A one-line code edit, unique so that no earlier run left its result cached."""
    with path.open("a") as source:
        source.write(f"# edited {uuid.uuid4().hex}\n")


@dataclass(frozen=True)
class BuiltImage:
    """An image `package` wrote: its metadata (the .tar.json beside the archive), its config and
    archive, as they were when read (a later `package` rewrites the archive)."""

    root: Path
    archive_path: str
    metadata: Mapping[str, Any]
    config: Mapping[str, Any]

    @classmethod
    def of(cls, repo: ScratchRepo, target: str) -> BuiltImage:
        """The agent image `target` (its metadata names it)."""
        for path in (repo.root / "dist").glob("*/*.tar.json"):
            metadata = json.loads(path.read_text())
            if metadata.get("target") == target:
                # The archive's path, whether `package` wrote one or not (archives off).
                archive = str(path.relative_to(repo.root / "dist"))[: -len(".json")]
                return cls._read(repo, archive, metadata)
        raise SystemExit(f"no metadata for {target} in {repo.root / 'dist'}")

    @classmethod
    def base(cls, repo: ScratchRepo) -> BuiltImage:
        """The example agents' base image (a base's metadata names no target)."""
        metadata = json.loads((repo.root / "dist" / f"{BASE_ARCHIVE}.json").read_text())
        return cls._read(repo, BASE_ARCHIVE, metadata)

    @classmethod
    def _read(cls, repo: ScratchRepo, archive_path: str, metadata: Mapping[str, Any]) -> BuiltImage:
        """Read from the OCI layout in dist/ (there with or without an archive)."""
        (image,) = metadata["images"]
        blob = repo.root / LAYOUT_BLOBS / image["config"]["digest"].split(":")[1]
        config = json.loads(blob.read_bytes())
        return cls(root=repo.root, archive_path=archive_path, metadata=metadata, config=config)

    @classmethod
    def agents(cls, repo: ScratchRepo) -> List[BuiltImage]:
        """Every agent image in the repo's dist/ (those with an accelerator), by target."""
        found = []
        for path in sorted((repo.root / "dist").glob("*/*.tar.json")):
            metadata = json.loads(path.read_text())
            if "accelerator" in metadata:
                found.append(cls.of(repo, metadata["target"]))
        return found

    @property
    def archive(self) -> Path:
        return self.root / "dist" / self.archive_path

    @property
    def lockfile(self) -> Path:
        """The lockfile of the agent's resolve, as the repo's pants.toml names it."""
        resolve = self.config["config"]["Labels"]["ai-agent.resolve"]
        resolves = toml.loads((self.root / "pants.toml").read_text())["python"]["resolves"]
        return self.root / resolves[resolve]

    @property
    def layers(self) -> List[Mapping[str, Any]]:
        (image,) = self.metadata["images"]
        return list(image["layers"])

    def layer(self, kind: str) -> Mapping[str, Any]:
        (layer,) = (layer for layer in self.layers if layer["kind"] == kind)
        return layer

    @property
    def config_digest(self) -> str:
        (image,) = self.metadata["images"]
        return str(image["config"]["digest"])

    @property
    def compressed_size(self) -> int:
        """What a registry stores: every layer blob (weights uncompressed), config, manifest."""
        (image,) = self.metadata["images"]
        return (
            sum(layer["size"] for layer in self.layers)
            + image["config"]["size"]
            + int(self.metadata["size"])
        )

    def extract_layer(self, kind: str, destination: Path) -> None:
        digest = self.layer(kind)["digest"].split(":", 1)[1]
        destination.mkdir(parents=True, exist_ok=True)
        blob_path = self.root / LAYOUT_BLOBS / digest
        if blob_path.exists():
            with tarfile.open(blob_path, mode="r|*") as layer:
                layer.extractall(destination)
            return
        with tarfile.open(self.archive) as archive:
            blob = archive.extractfile(f"blobs/sha256/{digest}")
            assert blob is not None
            with tarfile.open(fileobj=blob, mode="r|*") as layer:
                layer.extractall(destination)

    def locked_pins(self) -> List[Tuple[str, str]]:
        """(name, version) of every third-party distribution the packages layers hold."""
        pins = []
        for layer in self.layers:
            if layer["kind"] not in ("base", "weights", "code", "config"):
                for held in str(layer["holds"]).split(", "):
                    name, version = held.rsplit(" ", 1)
                    pins.append((name, version))
        return pins


# Sampling while a command runs ---------------------------------------------------------------

_Sampling = TypeVar("_Sampling", bound="Sampler")


class Sampler:
    """Calls `sample` every `interval` seconds on a thread of its own while the `with` block
    runs."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self: _Sampling) -> _Sampling:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


class PeakRss(Sampler):
    """Samples /proc while a process tree runs: the peak RSS (VmHWM) of its root and of each
    build step below it (`python -m ai_agent.<module> <command>`), by that name."""

    def __init__(self, root_pid: int, interval: float = 0.05) -> None:
        super().__init__(interval)
        self.root_pid = root_pid
        self.peaks: Dict[str, int] = {}

    def sample(self) -> None:
        for pid in [self.root_pid, *self._descendants(self.root_pid)]:
            name = "pants" if pid == self.root_pid else self._step_name(pid)
            peak = self._vm_hwm(pid)
            if name and peak:
                self.peaks[name] = max(self.peaks.get(name, 0), peak)

    def _descendants(self, pid: int) -> List[int]:
        try:
            children = [
                int(child)
                for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()
            ]
        except (OSError, ValueError):
            return []
        return children + [
            grandchild for child in children for grandchild in self._descendants(child)
        ]

    @staticmethod
    def _step_name(pid: int) -> Optional[str]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return None
        if "-m" in argv and argv.index("-m") + 1 < len(argv):
            module = argv[argv.index("-m") + 1]
            if module.startswith("ai_agent."):
                rest = argv[argv.index("-m") + 2 :]
                return f"{module} {rest[0]}" if rest and not rest[0].startswith("-") else module
        return None

    @staticmethod
    def _vm_hwm(pid: int) -> int:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) * 1024 if found else 0


def pants_with_peak_rss(
    repo: ScratchRepo, caches: Caches, *args: str
) -> Tuple[float, Dict[str, int]]:
    """Like `pants`, sampling the peak RSS of the Pants process and of its build steps."""
    log = repo.root.parent / f"{repo.root.name}-pants.log"
    with open(log, "wb") as output:
        os.sync()
        started = time.perf_counter()
        process = repo.popen(*caches.options, *args, stdout=output, stderr=subprocess.STDOUT)
        with PeakRss(process.pid) as sampler:
            process.wait(timeout=1800)
        os.sync()
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"pants {' '.join(args)} failed:\n{_tail(log.read_text())}")
    return seconds, sampler.peaks


# Docker ---------------------------------------------------------------------------------------


@dataclass
class Docker:
    """The docker CLI with one builder; remembers the tags and images it made, to remove them."""

    cli: str
    builder: str
    tags: List[str] = field(default_factory=list)
    images: List[str] = field(default_factory=list)
    # Images pulled by digest (`registry/repository@sha256:...`): no tag to move away.
    pulled: List[str] = field(default_factory=list)

    def run(self, *args: str) -> str:
        env = {**os.environ, "DOCKER_BUILDKIT": "1" if self.builder == "buildkit" else "0"}
        result = subprocess.run([self.cli, *args], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(
                f"docker {' '.join(args)} failed:\n{_tail(result.stdout + result.stderr)}"
            )
        return result.stdout

    def build(self, context: Path, tag: str, no_cache: bool = False) -> float:
        iid = context.parent / f"{context.name}.iid"
        os.sync()  # the context just written (weights, pip's site-packages) is flushed untimed
        started = time.perf_counter()
        self.run(
            "build",
            *(["--no-cache"] if no_cache else []),
            "--iidfile",
            str(iid),
            "-t",
            tag,
            str(context),
        )
        # dockerd's layer writes flushed inside the window, as Pants' store writes are fsynced.
        os.sync()
        seconds = time.perf_counter() - started
        self.tags.append(tag)
        self.images.append(iid.read_text().strip())
        return seconds

    def pull(self, reference: str) -> float:
        """`docker pull` of `reference` (by digest, from the benchmark's registry); its time,
        writes flushed."""
        os.sync()
        started = time.perf_counter()
        self.run("pull", "-q", reference)
        os.sync()
        seconds = time.perf_counter() - started
        self.pulled.append(reference)
        return seconds

    def tag(self, image: str, tag: str) -> None:
        self.run("tag", image, tag)
        self.tags.append(tag)

    def exists(self, image: str) -> bool:
        return (
            subprocess.run([self.cli, "image", "inspect", image], capture_output=True).returncode
            == 0
        )

    def load(self, image: BuiltImage, tag: str) -> float:
        """`docker load` of our archive naming the image `tag` only (its own tags could move
        someone else's image of the same name)."""
        image_id = image.metadata["docker"]["imageID"]
        existed = self.exists(image_id)
        os.sync()
        started = time.perf_counter()
        process = subprocess.Popen(
            [self.cli, "load", "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdin is not None
        with tarfile.open(image.archive) as source, tarfile.open(
            fileobj=process.stdin, mode="w|"
        ) as retagged:
            for member in source:
                if member.name == "repositories":
                    continue
                content = source.extractfile(member) if member.isfile() else None
                if member.name == "manifest.json" and content is not None:
                    manifests = json.loads(content.read())
                    for manifest in manifests:
                        manifest["RepoTags"] = [tag]
                    data = json.dumps(manifests).encode()
                    member.size = len(data)
                    retagged.addfile(member, io.BytesIO(data))
                else:
                    retagged.addfile(member, content)
        process.stdin.close()
        output = process.stdout.read().decode() if process.stdout else ""
        if process.wait() != 0:
            raise SystemExit(f"docker load of {image.archive} failed:\n{output}")
        os.sync()
        seconds = time.perf_counter() - started
        self.tags.append(tag)
        if not existed:
            self.images.append(image_id)
        return seconds

    def image_size(self, image: str) -> int:
        return int(self.run("image", "inspect", "-f", "{{.Size}}", image).strip())

    def remove(self, *images: str) -> None:
        """`docker rmi` (never forced): deletes images only this run named and nobody uses."""
        subprocess.run([self.cli, "rmi", *images], capture_output=True, check=False)

    def remove_all(self) -> None:
        """Remove this run's tags, then the images it made that nothing else uses.

        A tag is moved onto an empty image of our own, which is then deleted: `docker rmi` of
        a tag refuses (or, forced, deletes the image) when the image is someone else's, untagged
        otherwise and used by a stopped container, as the same bytes loaded twice can be."""
        if self.tags:
            empty = subprocess.run(
                [self.cli, "import", "-"], input=bytes(1024), capture_output=True, check=True
            )
            scratch = empty.stdout.decode().strip()
            for tag in dict.fromkeys(self.tags):
                subprocess.run([self.cli, "tag", scratch, tag], capture_output=True, check=False)
            self.run("rmi", "--force", scratch)
        for image in reversed(list(dict.fromkeys(self.images))):
            self.remove(image)
        # By its reference: removes that name only, and the image once nothing else names it.
        for reference in dict.fromkeys(self.pulled):
            self.remove(reference)
        self.tags.clear()
        self.images.clear()
        self.pulled.clear()


def _quoted(value: str) -> str:
    """A Dockerfile string: JSON-quoted, with `$` escaped from variable substitution."""
    return json.dumps(value).replace("$", "\\$")


def config_instructions(config: Mapping[str, Any]) -> List[str]:
    """Dockerfile instructions giving an image our image's config."""
    own = config["config"]
    variables = (item.partition("=") for item in own["Env"])
    env = " ".join(f"{name}={_quoted(value)}" for name, _, value in variables)
    lines = [f"ENV {env}", f"ENTRYPOINT {json.dumps(own['Entrypoint'])}"]
    if own.get("Cmd") is not None:
        lines.append(f"CMD {json.dumps(own['Cmd'])}")
    labels = " ".join(
        f"{_quoted(name)}={_quoted(value)}" for name, value in own.get("Labels", {}).items()
    )
    if labels:
        lines.append(f"LABEL {labels}")
    if own.get("ExposedPorts"):
        lines.append(f"EXPOSE {' '.join(own['ExposedPorts'])}")
    healthcheck = own.get("Healthcheck")
    if healthcheck:
        options = [
            f"--interval={healthcheck['Interval'] / 1e9:g}s",
            f"--timeout={healthcheck['Timeout'] / 1e9:g}s",
        ]
        if healthcheck.get("StartPeriod"):
            options.append(f"--start-period={healthcheck['StartPeriod'] / 1e9:g}s")
        options.append(f"--retries={healthcheck['Retries']}")
        kind, *test = healthcheck["Test"]
        command = json.dumps(test) if kind == "CMD" else " ".join(test)
        lines.append(f"HEALTHCHECK {' '.join(options)} CMD {command}")
    lines += [f"USER {own['User']}", f"WORKDIR {own['WorkingDir']}"]
    if own.get("StopSignal"):
        lines.append(f"STOPSIGNAL {own['StopSignal']}")
    return lines


# The layers docker's side COPYs, in our order (the packages layer is pip's, installed apart).
COPIED_KINDS = ("weights", "code", "config")


@dataclass(frozen=True)
class DockerEquivalent:
    """A docker build context equivalent to one of our agent images: `packages/` (pip's, on the
    host), one directory per copied layer (the same files), and a Dockerfile `FROM` our base
    (pulled by digest from the benchmark's registry) that sets the image's config first, then
    COPYs: as a Dockerfile written for the layer cache does, so that a code change rebuilds only
    the COPYs from the code's on."""

    context: Path
    image: BuiltImage
    tag: str

    @classmethod
    def prepare(cls, image: BuiltImage, context: Path, base: str, tag: str) -> DockerEquivalent:
        if context.exists():
            shutil.rmtree(context)
        context.mkdir(parents=True)
        kinds = [layer["kind"] for layer in image.layers]
        lines = [f"FROM {base}", *config_instructions(image.config)]
        if image.locked_pins():
            (context / "packages").mkdir()
            lines.append("COPY packages/ /")
        for kind in COPIED_KINDS:
            if kind in kinds:
                image.extract_layer(kind, context / kind)
                lines.append(f"COPY {kind}/ /")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        return cls(context=context, image=image, tag=tag)


@dataclass(frozen=True)
class Pip:
    """pip of the image's CPython (3.11) on the host, installing an image's third-party
    distributions as its resolve's lockfile pins them (versions and sha256s)."""

    python: str

    def requirements(self, image: BuiltImage) -> str:
        lock = json.loads(
            "\n".join(
                line
                for line in image.lockfile.read_text().splitlines()
                if not line.startswith("//")
            )
        )
        (resolve,) = lock["locked_resolves"]
        hashes = {
            (_normalized(locked["project_name"]), locked["version"]): " ".join(
                f"--hash={artifact['algorithm']}:{artifact['hash']}"
                for artifact in locked["artifacts"]
            )
            for locked in resolve["locked_requirements"]
        }
        return "".join(
            f"{name}=={version} {hashes[(_normalized(name), version)]}\n"
            for name, version in image.locked_pins()
        )

    def install(self, image: BuiltImage, prefix: Path, cache_dir: Path) -> float:
        """Install into `prefix`/opt/agent/{lib/python3.11/site-packages,bin}, where our packages
        layers put them; return pip's wall time."""
        if (prefix / "opt").exists():
            shutil.rmtree(prefix / "opt")
        target = prefix / "opt/agent/lib/python3.11/site-packages"
        # This machine's pip.conf and find-links would bypass the index and a cold cache.
        env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
        env.update(
            PIP_CONFIG_FILE=os.devnull, PIP_CERT=str(CA_BUNDLE), PIP_DISABLE_PIP_VERSION_CHECK="1"
        )
        with tempfile.NamedTemporaryFile("w", suffix="-requirements.txt") as requirements:
            requirements.write(self.requirements(image))
            requirements.flush()
            started = time.perf_counter()
            subprocess.run(
                [
                    self.python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--require-hashes",
                    "--root-user-action=ignore",
                    f"--cache-dir={cache_dir}",
                    f"--target={target}",
                    f"--requirement={requirements.name}",
                ],
                env=env,
                check=True,
            )
            seconds = time.perf_counter() - started
        if (target / "bin").is_dir():
            (target / "bin").rename(prefix / "opt/agent/bin")
        return seconds


@dataclass(frozen=True)
class LockedArtifact:
    """One release's py3 wheel as a pex lock pins it: version, URL and sha256 (from PyPI's
    simple index, PEP 691 JSON)."""

    project: str
    version: str
    url: str
    sha256: str

    @classmethod
    def from_pypi(cls, project: str, version: str) -> LockedArtifact:
        request = urllib.request.Request(
            f"https://pypi.org/simple/{project}/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            files = json.loads(answer.read())["files"]
        name = f"{project}-{version}-py3-none-any.whl"
        (wheel,) = (file for file in files if file["filename"] == name)
        return cls(project, version, wheel["url"], wheel["hashes"]["sha256"])

    def pin_in(self, lockfile: Path) -> None:
        """Pin this release in the pex lock `lockfile` (its comment header kept)."""
        lines = lockfile.read_text().splitlines(keepends=True)
        header = "".join(line for line in lines if line.startswith("//"))
        lock = json.loads("".join(line for line in lines if not line.startswith("//")))
        (resolve,) = lock["locked_resolves"]
        (locked,) = (e for e in resolve["locked_requirements"] if e["project_name"] == self.project)
        locked["version"] = self.version
        locked["artifacts"] = [{"algorithm": "sha256", "hash": self.sha256, "url": self.url}]
        lockfile.write_text(header + json.dumps(lock, indent=2, sort_keys=True) + "\n")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Registries -----------------------------------------------------------------------------------


ACCESS_LOG = {"log": {"accesslog": {"disabled": False}}}
_BLOB_PUT = re.compile(r'"PUT /v2/\S+/blobs/uploads/\S*?[?&]digest=sha256(?::|%3A)([0-9a-f]{64})')


@dataclass
class UploadLog:
    """The blobs a registry received (completed uploads in its access log), since the last read."""

    registry: RunningRegistry
    offset: int = 0

    def uploaded(self) -> List[str]:
        text = self.registry.log_file.read_text(errors="replace")
        new, self.offset = text[self.offset :], len(text)
        return ["sha256:" + digest for digest in _BLOB_PUT.findall(new)]

    def size(self, digest: str) -> int:
        hexdigest = digest.split(":", 1)[1]
        data = (
            self.registry.storage_dir
            / f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
        )
        return data.stat().st_size


def pushed_size(registry: RunningRegistry, repository: str, tag: str) -> int:
    """Layers, config and manifest of `repository:tag` as the registry stores them."""
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    manifest = json.loads(body)
    return (
        sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"] + len(body)
    )


def push_layout(layout: Path, name: str, registry: RunningRegistry, repository: str) -> str:
    """Push the image `name` of an OCI image layout to `registry` as it is (blobs and manifest,
    so the same digests), the blobs it lacks only; return the image's reference by digest."""
    (descriptor,) = (
        entry
        for entry in json.loads((layout / "index.json").read_text())["manifests"]
        if entry["annotations"]["org.opencontainers.image.ref.name"] == name
    )

    def blob(digest: str) -> Path:
        return layout / "blobs" / digest.replace(":", "/")

    manifest = blob(descriptor["digest"]).read_bytes()
    parsed = json.loads(manifest)
    for entry in [parsed["config"], *parsed["layers"]]:
        digest = entry["digest"]
        head = urllib.request.Request(
            f"{registry.url}/v2/{repository}/blobs/{digest}", method="HEAD"
        )
        try:
            urllib.request.urlopen(head, timeout=30).close()
            continue
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
        started = urllib.request.Request(
            f"{registry.url}/v2/{repository}/blobs/uploads/", data=b"", method="POST"
        )
        with urllib.request.urlopen(started, timeout=30) as answer:
            location = urllib.parse.urljoin(registry.url, answer.headers["Location"])
        separator = "&" if "?" in location else "?"
        path = blob(digest)
        with path.open("rb") as body:
            upload = urllib.request.Request(
                f"{location}{separator}digest={urllib.parse.quote(digest)}",
                data=body,
                method="PUT",
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(path.stat().st_size),
                },
            )
            urllib.request.urlopen(upload, timeout=600).close()
    put = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{descriptor['digest']}",
        data=manifest,
        method="PUT",
        headers={"Content-Type": descriptor["mediaType"]},
    )
    urllib.request.urlopen(put, timeout=30).close()
    return f"{registry.address}/{repository}@{descriptor['digest']}"


# The benchmarks -------------------------------------------------------------------------------


@dataclass
class Session:
    """What the benchmarks share: options, docker, and the warm examples repo (made on demand)."""

    runs: int
    weights_mib: int
    workdir: Path
    docker: Docker
    pip: Pip
    warm: Caches
    # P1's options for `package`: [ai-agents].archives off unless --p1-archives=on (the scratch
    # repos turn archives on), .layouts off with --p1-layouts=off.
    p1_options: Tuple[str, ...]
    p10_gib: int
    # Holds what runs for the whole session (the registry docker pulls our base from).
    resources: contextlib.ExitStack
    built_examples: Optional[Examples] = None
    registry: Optional[RunningRegistry] = None

    def scratch(self, name: str) -> Path:
        path = self.workdir / "scratch" / name
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def base_reference(self, repo: ScratchRepo) -> str:
        """Our base image as docker's side gets it: from a registry (the benchmark's own, on
        loopback), by digest, as a Dockerfile `FROM` a registry's image pulls it. The image is
        the one `package` wrote in `repo` (its OCI layout), pushed as it is: the same bytes,
        layers and digests as the layers of our images. Docker has not pulled it yet."""
        if self.registry is None:
            self.registry = self.resources.enter_context(
                start_registry(self.workdir / "scratch" / "base-registry")
            )
        return push_layout(repo.root / "dist/oci", BASE_NAME, self.registry, f"{IMAGE_PREFIX}/base")

    def pulled_base(self, repo: ScratchRepo) -> str:
        """`base_reference`, pulled into dockerd (untimed: a warm docker has its base, as a warm
        Pants has it in its store)."""
        reference = self.base_reference(repo)
        if not self.docker.exists(reference):
            self.docker.pull(reference)
        return reference

    def examples(self) -> Examples:
        """The example agents built once with the warm caches, each with its docker context
        (site-packages installed, built once by docker too)."""
        if self.built_examples is None:
            repo = examples_repo(self.scratch("examples"))
            progress("examples: package agents:: (warming the caches)")
            pants(repo, self.warm, "package", *EXAMPLES)
            base = self.pulled_base(repo)
            contexts = []
            for image in BuiltImage.agents(repo):
                name = re.sub(r"[^a-z0-9]+", "-", image.metadata["target"].split("/", 1)[1].lower())
                context = self.workdir / "scratch" / "contexts" / name
                equivalent = DockerEquivalent.prepare(
                    image, context, base, f"{IMAGE_PREFIX}/{name}"
                )
                self.pip.install(image, context / "packages", self.workdir / "warm-caches/pip")
                progress(f"examples: docker build {equivalent.tag}")
                self.docker.build(context, equivalent.tag)
                contexts.append(equivalent)
            self.built_examples = Examples(repo=repo, base=base, contexts=contexts)
        return self.built_examples


@dataclass(frozen=True)
class Examples:
    repo: ScratchRepo
    base: str  # the base's reference in the registry, pulled
    contexts: List[DockerEquivalent]

    def context(self, target: str) -> DockerEquivalent:
        (found,) = (c for c in self.contexts if c.image.metadata["target"] == target)
        return found

    def edit_router(self) -> None:
        """The same one-line edit in the repo and in docker's context."""
        repo_path, image_path = ROUTER_SOURCE
        append_line(self.repo.root / repo_path)
        shutil.copyfile(
            self.repo.root / repo_path, self.context(ROUTER).context / "code" / image_path
        )


# P1 ---------------------------------------------------------------------------------------------


def write_random(path: Path, size_mib: int) -> None:
    with open(path, "wb") as handle:
        for _ in range(size_mib):
            handle.write(os.urandom(MIB))


def largest_step(peaks: Mapping[str, int]) -> Tuple[str, int]:
    steps = {name: peak for name, peak in peaks.items() if name != "pants"}
    name = max(steps, key=lambda step: steps[step])
    return name, steps[name]


def _p1_settings(options: Sequence[str]) -> str:
    off = [
        name
        for name, flag in (("archives", NO_ARCHIVES), ("layouts", NO_LAYOUTS))
        if flag in options
    ]
    return f", {' and '.join(off)} off" if off else ""


def _big_agent_repo(session: Session, name: str) -> Tuple[Caches, ScratchRepo, Path]:
    """A scratch repo of the agent with one weights file (1 byte for now), with a store of its
    own (every run stores new weights): its caches, the repo and the weights file."""
    caches = Caches(store=session.scratch(f"{name}-store"), named=session.warm.named)
    repo = ScratchRepo.create(session.scratch(f"{name}-repo"))
    repo.write(BIG_AGENT_FILES)
    weights = repo.root / WEIGHTS
    weights.parent.mkdir(parents=True)
    progress(f"{name.upper()}: warming the caches (base, code, config) with 1-byte weights")
    weights.write_bytes(os.urandom(1))
    return caches, repo, weights


def p1_weights(session: Session) -> List[Row]:
    mib = session.weights_mib
    caches, repo, weights = _big_agent_repo(session, "p1")
    options = session.p1_options
    # The base's layout, whatever P1's options: docker's side pulls the base pushed from it.
    pants(repo, caches, "package", BASE)
    pants(repo, caches, *options, "package", BIG_AGENT)
    # The control for "flat": the same build, weights 1 byte (new bytes, so the steps run again).
    weights.write_bytes(os.urandom(1))
    _, control = pants_with_peak_rss(repo, caches, *options, "package", BIG_AGENT)
    weights.write_bytes(os.urandom(1))
    pants(repo, caches, *options, "package", BIG_AGENT, pantsd=True)
    base = session.pulled_base(repo)
    context = session.scratch("p1-context")
    tag = f"{IMAGE_PREFIX}/big"

    def prepare_docker() -> None:
        """docker's context from the image just built (untimed): with the layouts off, from
        a `package` that writes the layout, then one that removes it again."""
        if NO_LAYOUTS in options:
            pants(repo, caches, *(o for o in options if o != NO_LAYOUTS), "package", BIG_AGENT)
        DockerEquivalent.prepare(BuiltImage.of(repo, BIG_AGENT), context, base, tag)
        if NO_LAYOUTS in options:
            pants(repo, caches, *options, "package", BIG_AGENT)

    prepare_docker()
    session.docker.build(context, tag)

    without, with_pantsd, theirs = [], [], []
    pants_peaks, step_peaks, steps = [], [], set()
    try:
        for run in range(session.runs):
            write_random(weights, mib)
            seconds, peaks = pants_with_peak_rss(repo, caches, *options, "package", BIG_AGENT)
            prepare_docker()
            theirs.append(session.docker.build(context, tag))
            session.docker.remove(tag)
            write_random(weights, mib)
            with_pantsd.append(pants(repo, caches, *options, "package", BIG_AGENT, pantsd=True)[0])
            step, step_peak = largest_step(peaks)
            without.append(seconds)
            pants_peaks.append(peaks["pants"])
            step_peaks.append(step_peak)
            steps.add(step)
            progress(
                f"P1 run {run + 1}: pants {seconds:.1f} s, with pantsd {with_pantsd[-1]:.1f} s,"
                f" docker {theirs[-1]:.1f} s; peak RSS pants {_size(peaks['pants'])},"
                f" {step} {_size(step_peak)}"
            )
    finally:
        stop_pantsd(repo)
    for path in (caches.store, repo.root, context):
        shutil.rmtree(path)
    size = mib * MIB
    docker = median(theirs)
    return [
        Row(
            f"P1 ingest {mib} MiB of weights, {label}{_p1_settings(options)}",
            "s",
            median(seconds),
            docker,
            "docker build (COPY)",
            "<= 0.5x",
            median(seconds) <= 0.5 * docker,
        )
        for label, seconds in (("pantsd (headline)", with_pantsd), ("no pantsd", without))
    ] + [
        Row(
            f"P1 peak RSS, {name}",
            "B",
            median(peaks),
            baseline,
            "same, 1-byte weights",
            "<= 1.25x (flat)",
            median(peaks) <= 1.25 * baseline,
            note=f"{median(peaks) / size:.2f}x the weights' size ({_size(size)}){detail}",
        )
        for name, peaks, baseline, detail in (
            ("Pants process", pants_peaks, control["pants"], ""),
            (
                "largest build step",
                step_peaks,
                largest_step(control)[1],
                f"; the step: {', '.join(sorted(steps))}",
            ),
        )
    ]


# P2 ---------------------------------------------------------------------------------------------


def p2_code_edit(session: Session) -> List[Row]:
    examples = session.examples()
    router = examples.context(ROUTER)
    progress("P2: starting pantsd")
    pants(examples.repo, session.warm, "package", ROUTER, pantsd=True)
    without, with_pantsd, theirs = [], [], []
    for run in range(session.runs):
        examples.edit_router()
        without.append(pants(examples.repo, session.warm, "package", ROUTER)[0])
        theirs.append(session.docker.build(router.context, router.tag))
        examples.edit_router()
        with_pantsd.append(pants(examples.repo, session.warm, "package", ROUTER, pantsd=True)[0])
        progress(
            f"P2 run {run + 1}: pants {without[-1]:.1f} s, with pantsd {with_pantsd[-1]:.1f} s,"
            f" docker {theirs[-1]:.1f} s"
        )
    docker = median(theirs)
    return [
        Row(
            f"P2 code edit rebuild, {label}",
            "s",
            median(seconds),
            docker,
            "docker build, layer cache",
            "<= 0.25x",
            median(seconds) <= 0.25 * docker,
        )
        for label, seconds in (("pantsd (headline)", with_pantsd), ("no pantsd", without))
    ]


# P3 ---------------------------------------------------------------------------------------------


def p3_cold(session: Session) -> List[Row]:
    examples = session.examples()
    base_id = BuiltImage.base(examples.repo).metadata["docker"]["imageID"]
    ours, theirs = [], []
    held = []
    for run in range(session.runs):
        root = session.scratch("p3")
        seconds, _ = pants(
            examples_repo(root / "repo"), Caches.under(root / "caches"), "package", *EXAMPLES
        )
        shutil.rmtree(root)
        # Docker's cold path; its images go first, then the base (unless another name holds it:
        # then its pull fetches no layer, which the note says).
        session.docker.remove(*[context.tag for context in examples.contexts], examples.base)
        held.append(session.docker.exists(base_id))
        pip_cache = session.scratch("p3-pip-cache")
        started = time.perf_counter()
        session.docker.pull(examples.base)
        for context in examples.contexts:
            session.pip.install(context.image, context.context / "packages", pip_cache)
            session.docker.build(context.context, context.tag, no_cache=True)
        theirs.append(time.perf_counter() - started)
        ours.append(seconds)
        progress(f"P3 run {run + 1}: pants {seconds:.1f} s, docker {theirs[-1]:.1f} s")
    images = ", ".join(context.tag.split("/", 1)[1] for context in examples.contexts)
    return [
        Row(
            "P3 cold build of every example agent",
            "s",
            median(ours),
            median(theirs),
            "pull base + pip + build --no-cache",
            "<= 1.0x",
            median(ours) <= median(theirs),
            note=f"images: base, {images}; ours builds the base from .debs fetched from"
            f" {DEBIAN_MIRROR}, docker pulls it built from a registry on loopback; runs in which"
            f" dockerd still held the base under another name (its pull fetched no layer):"
            f" {sum(held)} of {len(held)}",
        )
    ]


# P4 ---------------------------------------------------------------------------------------------


def _stat(output: str, counter: str) -> int:
    found = re.search(rf"^\s*{counter}: (\d+)$", output, re.MULTILINE)
    return int(found.group(1)) if found else 0


def p4_remote_cache(session: Session) -> List[Row]:
    cold, warm, hits = [], [], []
    for run in range(session.runs):
        root = session.scratch("p4")
        with start_buildgrid(root / "buildgrid") as grid:
            filling, _ = pants(
                examples_repo(root / "filling"),
                Caches.under(root / "filling-caches"),
                *grid.pants_options(read=False, write=True),
                "package",
                *EXAMPLES,
            )
            reading, output = pants(
                examples_repo(root / "reading"),
                Caches.under(root / "reading-caches"),
                *grid.pants_options(read=True, write=False),
                "--stats-log",
                "package",
                *EXAMPLES,
            )
        shutil.rmtree(root)
        cold.append(filling)
        warm.append(reading)
        cached, requests = (
            _stat(output, f"remote_cache_{name}") for name in ("requests_cached", "requests")
        )
        hits.append(f"{cached}/{requests}")
        progress(
            f"P4 run {run + 1}: cold {filling:.1f} s, warm remote {reading:.1f} s ({hits[-1]})"
        )
    return [
        Row(
            "P4 empty local cache, warm remote cache",
            "s",
            median(warm),
            median(cold),
            "cold build filling it",
            "<= 0.3x",
            median(warm) <= 0.3 * median(cold),
            note=f"remote cache hits/requests per run: {', '.join(hits)}",
        )
    ]


# P5 ---------------------------------------------------------------------------------------------


def p5_noop(session: Session) -> List[Row]:
    examples = session.examples()
    progress("P5: warming pantsd on `package agents::`")
    pants(examples.repo, session.warm, "package", *EXAMPLES, pantsd=True)
    with_pantsd = [
        pants(examples.repo, session.warm, "package", *EXAMPLES, pantsd=True)[0]
        for _ in range(session.runs)
    ]
    without = [
        pants(examples.repo, session.warm, "package", *EXAMPLES)[0] for _ in range(session.runs)
    ]
    theirs = [
        sum(session.docker.build(context.context, context.tag) for context in examples.contexts)
        for _ in range(session.runs)
    ]
    progress(f"P5: pantsd {with_pantsd}, no pantsd {without}, docker {theirs}")
    return [
        Row(
            f"P5 no-op package agents::, {label}",
            "s",
            median(seconds),
            median(theirs),
            "docker build, all cached",
            "<= 3 s",
            median(seconds) <= 3,
        )
        for label, seconds in (("pantsd (headline)", with_pantsd), ("no pantsd", without))
    ]


# P6 ---------------------------------------------------------------------------------------------


# What makes debian:bookworm-slim (the base of python:3.11-slim) slim: dpkg skips documentation,
# manuals and translations (as docker-library's debuerreotype configures it).
SLIM_DPKG_OPTIONS = [
    f"--dpkgopt=path-{action}={path}"
    for action, path in (
        ("exclude", "/usr/share/doc/*"),
        ("include", "/usr/share/doc/*/copyright"),
        ("exclude", "/usr/share/man/*"),
        ("exclude", "/usr/share/groff/*"),
        ("exclude", "/usr/share/info/*"),
        ("exclude", "/usr/share/locale/*"),
        ("exclude", "/usr/share/lintian/*"),
        ("exclude", "/usr/share/linda/*"),
    )
]


def python_slim_base(session: Session) -> str:
    """A python-slim-style base (Docker Hub is out of reach): Debian bookworm minbase, slimmed
    like debian:bookworm-slim, with python3 and pip from Debian's mirror, imported into dockerd.
    The root filesystem is kept in --workdir for later runs."""
    rootfs = session.workdir / "python-slim" / "bookworm-slim-python3-pip.tar"
    if not rootfs.exists():
        mmdebstrap = require_binary("mmdebstrap", "mmdebstrap")
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        partial = rootfs.with_suffix(".partial")
        progress("P6: mmdebstrap --variant=minbase --include=python3,python3-pip bookworm")
        result = subprocess.run(
            [
                mmdebstrap,
                "--quiet",
                "--variant=minbase",
                "--include=python3,python3-pip",
                '--aptopt=APT::Install-Recommends "false"',
                # Merged /usr as debootstrap makes it: no usrmerge package (nor the perl it needs).
                "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                *SLIM_DPKG_OPTIONS,
                "--format=tar",
                "bookworm",
                str(partial),
                DEBIAN_MIRROR,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"mmdebstrap failed:\n{_tail(result.stdout + result.stderr)}")
        partial.rename(rootfs)
    tag = f"{IMAGE_PREFIX}/python-slim:bookworm"
    imported = session.docker.run(
        "import",
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8",
        "--change",
        'CMD ["python3"]',
        str(rootfs),
        tag,
    )
    session.docker.tags.append(tag)
    session.docker.images.append(imported.strip())
    return tag


def p6_size(session: Session) -> List[Row]:
    examples = session.examples()
    router = examples.context(ROUTER)
    # As the repo has it now (other benchmarks may have edited its code).
    image = BuiltImage.of(examples.repo, ROUTER)
    slim_base = python_slim_base(session)
    context = session.scratch("p6-context")
    context.mkdir()
    for kind in COPIED_KINDS:
        shutil.copytree(router.context / kind, context / kind)
    shutil.copyfile(CA_BUNDLE, context / "ca-certificates.crt")
    (context / "requirements.txt").write_text(session.pip.requirements(image))
    pip = (
        "PIP_CERT=/tmp/pip/ca-certificates.crt python3 -m pip install --no-cache-dir"
        " --break-system-packages --no-deps --only-binary=:all: --require-hashes"
        " -r /tmp/pip/requirements.txt"
    )
    lines = [
        f"FROM {slim_base}",
        # The proxy's CA, which pip needs here (about 0.2 MB of the image).
        "COPY ca-certificates.crt requirements.txt /tmp/pip/",
        f"RUN {pip}",
        # The config before the COPYs, as a Dockerfile written for the layer cache has it (after
        # the RUN, which must run as root: the config names the agent's user).
        *config_instructions(image.config),
        *[f"COPY {kind}/ /" for kind in COPIED_KINDS],
    ]
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    slim_tag = f"{IMAGE_PREFIX}/router-python-slim"
    progress("P6: docker build of the python-slim-style router")
    session.docker.build(context, slim_tag)
    ours_tag = f"{IMAGE_PREFIX}/router-ours:latest"
    session.docker.load(image, ours_tag)
    ours, theirs = session.docker.image_size(ours_tag), session.docker.image_size(slim_tag)
    with start_registry(session.scratch("p6-registry")) as registry:
        pushed = f"{registry.address}/python-slim/router:1"
        session.docker.tag(slim_tag, pushed)
        session.docker.run("push", pushed)
        theirs_compressed = pushed_size(registry, "python-slim/router", "1")
    ours_compressed = image.compressed_size
    base_size = session.docker.image_size(slim_base)
    return [
        Row(
            "P6 router image size, uncompressed",
            "B",
            ours,
            theirs,
            "python-slim-style image",
            "<= 0.8x",
            ours <= 0.8 * theirs,
            note=f"the python-slim-style base alone: {_size(base_size)}",
        ),
        Row(
            "P6 router image size, as pushed",
            "B",
            ours_compressed,
            theirs_compressed,
            "python-slim-style, docker push",
            "<= 0.8x",
            ours_compressed <= 0.8 * theirs_compressed,
            note="ours: gzip layers, weights uncompressed (what `publish` uploads); docker's:"
            " the pushed manifest's gzip layers",
        ),
    ]


# P7 ---------------------------------------------------------------------------------------------


def p7_publish(session: Session) -> List[Row]:
    examples = session.examples()
    repo, router = examples.repo, examples.context(ROUTER)
    build_file = repo.root / "agents/router/BUILD"
    original = build_file.read_text()
    with start_registry(session.scratch("p7-ours"), ACCESS_LOG) as ours_registry, start_registry(
        session.scratch("p7-docker"), ACCESS_LOG
    ) as docker_registry:
        repository = f"{ours_registry.address}/agents/router"
        build_file.write_text(
            original.replace(
                'name="router",',
                f'name="router",\n    repository="{repository}",\n    image_tags=["1"],',
            )
        )
        pushed = f"{docker_registry.address}/docker/router:1"
        ours_log, docker_log = UploadLog(ours_registry), UploadLog(docker_registry)

        def uploaded_bytes(log: UploadLog) -> Tuple[int, List[str]]:
            digests = log.uploaded()
            return sum(log.size(digest) for digest in digests), digests

        def docker_push() -> Tuple[int, List[str]]:
            session.docker.tag(router.tag, pushed)
            session.docker.run("push", pushed)
            return uploaded_bytes(docker_log)

        try:
            progress("P7: first push of both images")
            pants(repo, session.warm, "package", "publish", ROUTER)
            first_ours = uploaded_bytes(ours_log)
            first_docker = docker_push()
            unchanged: Dict[str, List[int]] = {"ours": [], "docker": []}
            changed: Dict[str, List[int]] = {"ours": [], "docker": []}
            blobs: Dict[str, List[int]] = {"ours": [], "docker": []}
            only_expected = True
            for run in range(session.runs):
                pants(repo, session.warm, "publish", ROUTER)
                unchanged["ours"].append(uploaded_bytes(ours_log)[0])
                unchanged["docker"].append(docker_push()[0])
                examples.edit_router()
                pants(repo, session.warm, "package", "publish", ROUTER)
                ours_bytes, ours_digests = uploaded_bytes(ours_log)
                image = BuiltImage.of(repo, ROUTER)
                expected = {image.layer("code")["digest"], image.config_digest}
                only_expected = only_expected and set(ours_digests) == expected
                session.docker.build(router.context, router.tag)
                docker_bytes, docker_digests = docker_push()
                changed["ours"].append(ours_bytes)
                changed["docker"].append(docker_bytes)
                blobs["ours"].append(len(ours_digests))
                blobs["docker"].append(len(docker_digests))
                progress(
                    f"P7 run {run + 1}: unchanged {unchanged['ours'][-1]} B / docker"
                    f" {unchanged['docker'][-1]} B; code change {ours_bytes} B in"
                    f" {len(ours_digests)} blobs / docker {docker_bytes} B in {len(docker_digests)}"
                )
        finally:
            build_file.write_text(original)
    return [
        Row(
            "P7 first push",
            "B",
            first_ours[0],
            first_docker[0],
            "docker push",
            "-",
            None,
            note=f"blobs: ours {len(first_ours[1])}, docker {len(first_docker[1])}",
        ),
        Row(
            "P7 re-publish unchanged: blob bytes uploaded",
            "B",
            median(unchanged["ours"]),
            median(unchanged["docker"]),
            "docker push",
            "0 B",
            max(unchanged["ours"]) == 0,
        ),
        Row(
            "P7 code-only change: blob bytes uploaded",
            "B",
            median(changed["ours"]),
            median(changed["docker"]),
            "docker build + push",
            "code layer + config",
            only_expected,
            note=f"blobs per run: ours {blobs['ours']}, docker {blobs['docker']} (manifests are"
            " PUT besides)",
        ),
    ]


# P8 ---------------------------------------------------------------------------------------------


def p8_real_stack(session: Session) -> List[Row]:
    bumps = [LockedArtifact.from_pypi("filelock", version) for version in FILELOCK_BUMPS]
    cold: List[float] = []
    archives: List[float] = []
    cold_docker: List[float] = []
    with_pantsd: List[float] = []
    without: List[float] = []
    bump_docker: List[float] = []
    for run in range(session.runs):
        root = session.scratch("p8")
        repo = examples_repo(root / "repo")
        caches = Caches.under(root / "caches")
        progress(f"P8 run {run + 1}: cold package of {CLASSIFIER}, archives off")
        seconds, _ = pants(repo, caches, NO_ARCHIVES, "package", BASE, CLASSIFIER)
        cold.append(seconds)
        progress(f"P8 run {run + 1}: the archives docker loads")
        archives.append(pants(repo, caches, "package", BASE, CLASSIFIER)[0])
        image = BuiltImage.of(repo, CLASSIFIER)
        base = session.base_reference(repo)
        context = DockerEquivalent.prepare(
            image, root / "context", base, f"{IMAGE_PREFIX}/classifier"
        )
        session.docker.remove(context.tag, base)
        progress(f"P8 run {run + 1}: docker pull + pip (cold cache) + docker build --no-cache")
        started = time.perf_counter()
        session.docker.pull(base)
        session.pip.install(image, context.context / "packages", root / "pip-cache")
        session.docker.build(context.context, context.tag, no_cache=True)
        cold_docker.append(time.perf_counter() - started)
        ours_tag = f"{IMAGE_PREFIX}/classifier-ours:latest"
        session.docker.load(image, ours_tag)
        sizes = (
            session.docker.image_size(ours_tag),
            session.docker.image_size(context.tag),
            image.compressed_size,
        )
        session.docker.remove(ours_tag)

        pants(repo, caches, NO_ARCHIVES, "package", CLASSIFIER, pantsd=True)  # starts pantsd
        for bump, use_pantsd, times in ((bumps[0], True, with_pantsd), (bumps[1], False, without)):
            progress(f"P8 run {run + 1}: filelock bumped to {bump.version}, pantsd: {use_pantsd}")
            bump.pin_in(image.lockfile)
            times.append(
                pants(repo, caches, NO_ARCHIVES, "package", CLASSIFIER, pantsd=use_pantsd)[0]
            )
            bumped = BuiltImage.of(repo, CLASSIFIER)
            assert ("filelock", bump.version) in bumped.locked_pins(), bumped.locked_pins()
            replaced = session.docker.run("image", "inspect", "-f", "{{.Id}}", context.tag).strip()
            started = time.perf_counter()
            session.pip.install(bumped, context.context / "packages", root / "pip-cache")
            session.docker.build(context.context, context.tag)
            bump_docker.append(time.perf_counter() - started)
            # The image it replaces holds another 5 GB: gone, or three of them fill a disk.
            session.docker.remove(replaced)
        stop_pantsd(repo)
        progress(
            f"P8 run {run + 1}: cold {cold[-1]:.1f} s vs {cold_docker[-1]:.1f} s; bumps"
            f" {with_pantsd[-1]:.1f} s (pantsd), {without[-1]:.1f} s vs {bump_docker[-2:]}"
        )
        session.docker.remove(context.tag)
        shutil.rmtree(root)
    layers = image.layers
    big = [layer for layer in layers if layer["kind"] == "big package"]
    docker_bump = median(bump_docker)
    return [
        Row(
            "P8 cold build of the torch agent",
            "s",
            median(cold),
            median(cold_docker),
            "pull base + pip + build --no-cache",
            "<= 1.0x",
            median(cold) <= median(cold_docker),
            note=f"{len(layers)} layers, {len(big)} of them one big wheel each"
            f" ({', '.join(str(layer['holds']) for layer in big)}); `package` wrote OCI layouts"
            f" (archives off); archives on top, warm: {median(archives):.1f} s",
        ),
        *(
            Row(
                f"P8 re-package after a small requirement bump, {label}",
                "s",
                median(seconds),
                docker_bump,
                "pip (warm cache) + docker build",
                "<= 0.3x",
                median(seconds) <= 0.3 * docker_bump,
            )
            for label, seconds in (("pantsd (headline)", with_pantsd), ("no pantsd", without))
        ),
        Row(
            "P8 torch image size, uncompressed",
            "B",
            sizes[0],
            sizes[1],
            "pip --target + docker build",
            "-",
            None,
            note=f"ours as pushed (gzip layers): {_size(sizes[2])}",
        ),
    ]


# P9 ---------------------------------------------------------------------------------------------

FLEET_SIZE = 20
# Every fleet agent: its own tiny module, the router's service and model code (shared first-party
# libraries), so the same packages (the `agents` lock's numpy and CUDA runtime), the same weights
# and the same base as the router.
FLEET_BUILD = """\
python_sources(name="src", sources=["{module}/*.py"])
ai_agent(
    name="{name}",
    entry_point="{module}",
    dependencies=[":src"],
    weights=["//agents/models/router:weights"],
    ports=[8080],
    repository="{repository}",
)
"""
FLEET_MAIN = """\
\"\"\"`python3 -m {module}` starts {name}: the router's service and model under its own name.\"\"\"

import os
import sys

from router_agent.accelerator import cuda_status
from router_agent.server import serve
from router_model import Router

router = Router.load(os.environ.get("MODEL_DIR", "/models/router"))
sys.exit(serve("{name}", router, {{"cuda": cuda_status()}}))
"""
# The file P9's code edits change: the first fleet agent's own module.
FLEET_EDITED = "agents/fleet00/fleet00_agent/__main__.py"
# What a CI machine that only publishes sets (as tests/remote_cache does).
PUBLISH_ONLY = (
    "--cache-content-behavior=defer",
    "--ai-agents-layouts=false",
    "--ai-agents-archives=false",
)


def fleet_repo(root: Path, registry: str) -> ScratchRepo:
    """A monorepo of FLEET_SIZE agents (`agents/fleetNN:fleetNN`, published to
    `registry/fleet/fleetNN`) and the base: no other image target."""
    repo = ScratchRepo.create(root)
    repo.copy_from_sandbox(
        "agents/base", "agents/router", "agents/models/router", "agents/models/router_model"
    )
    repo.copy_from_sandbox("3rdparty")
    # The router's code without its `ai_agent` targets (and the comment above them).
    router_build = (repo.root / "agents/router/BUILD").read_text()
    kept = router_build[: router_build.index("\nai_agent(")].rstrip().splitlines()
    while kept and kept[-1].startswith("#"):
        kept.pop()
    files = {
        "agents/BUILD": AGENTS_SKELETON["agents/BUILD"],
        "agents/router/BUILD": "\n".join(kept) + "\n",
    }
    agent_yaml = (repo.root / "agents/router/agent.yaml").read_text()
    for index in range(FLEET_SIZE):
        name = f"fleet{index:02d}"
        module = f"{name}_agent"
        files.update(
            {
                f"agents/{name}/BUILD": FLEET_BUILD.format(
                    name=name, module=module, repository=f"{registry}/fleet/{name}"
                ),
                f"agents/{name}/agent.yaml": agent_yaml.replace(
                    "name: router\n", f"name: {name}\n", 1
                ),
                f"agents/{name}/{module}/__init__.py": "",
                f"agents/{name}/{module}/__main__.py": FLEET_MAIN.format(name=name, module=module),
            }
        )
    repo.write(files)
    return repo


# (inode, mtime in ns, size) of a file: another of these, or a new path, means written.
FileState = Tuple[int, int, int]


def file_states(directory: Path) -> Dict[str, FileState]:
    states = {}
    for dirpath, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            states[os.path.relpath(path, directory)] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return states


def store_inodes(store: Path) -> Set[int]:
    """The inodes of the store's files (those of 512 KiB or more, kept as plain files)."""
    return {state[0] for state in file_states(store / "immutable").values()}


def allocated_bytes(directory: Path) -> int:
    """Disk space the files under `directory` take (blocks allocated, sparse files as they are)."""
    total = 0
    for dirpath, _, names in os.walk(directory):
        for name in names:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def device_written(path: Path) -> int:
    """Bytes written to the block device holding `path` since boot (every process's)."""
    device = os.stat(path).st_dev
    stat = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}/stat").read_text().split()
    return int(stat[6]) * 512


def network_bytes() -> Tuple[int, int]:
    """Bytes received on loopback, and on every other interface, since boot."""
    loopback = other = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, counters = line.split(":", 1)
        received = int(counters.split()[0])
        if name.strip() == "lo":
            loopback += received
        else:
            other += received
    return loopback, other


@dataclass(frozen=True)
class Writes:
    """What one Pants command wrote: into dist/ (new or rewritten files, and files that are new
    hardlinks to the store's), into the store, and to the disk overall."""

    written: int
    written_files: List[Tuple[str, int]]
    linked: int
    linked_files: int
    removed_files: int
    store_growth: int
    named_caches_growth: int
    remote_cache_growth: int
    device: int
    seconds: float

    def summary(self) -> str:
        biggest = ", ".join(f"{path} {_size(size)}" for path, size in self.written_files[:3])
        return (
            f"dist/: {_size(self.written)} written in {len(self.written_files)} files"
            f"{f' (biggest: {biggest})' if biggest else ''}, {_size(self.linked)} linked from the"
            f" store in {self.linked_files} files, {self.removed_files} removed; the store grew by"
            f" {_size(self.store_growth)}, the named caches by {_size(self.named_caches_growth)},"
            f" the remote cache's CAS (BuildGrid, same disk) by {_size(self.remote_cache_growth)};"
            f" the disk took {_size(self.device)} (every process's writes); {self.seconds:.1f} s"
        )


def measured_writes(
    repo: ScratchRepo, caches: Caches, remote_cas: Path, *args: str, pantsd: bool = False
) -> Tuple[Writes, str]:
    """Run Pants (as `pants` does, synced) and measure what it wrote outside its store."""
    dist = repo.root / "dist"
    os.sync()
    before = file_states(dist) if dist.exists() else {}
    store_before = allocated_bytes(caches.store)
    named_before = allocated_bytes(caches.named)
    remote_before = allocated_bytes(remote_cas)
    device_before = device_written(repo.root)
    seconds, output = pants(repo, caches, *args, pantsd=pantsd)
    device = device_written(repo.root) - device_before
    after = file_states(dist) if dist.exists() else {}
    linked_inodes = store_inodes(caches.store)
    # Another name of a file dist/ already had, or got earlier in this command, is not another
    # write.
    named = {state[0] for state in before.values()}
    written: List[Tuple[str, int]] = []
    linked: List[Tuple[str, int]] = []
    for path, state in after.items():
        if before.get(path) == state:
            continue
        if state[0] in linked_inodes:
            linked.append((path, state[2]))
        elif state[0] not in named:
            written.append((path, state[2]))
        named.add(state[0])
    written.sort(key=lambda item: -item[1])
    writes = Writes(
        written=sum(size for _, size in written),
        written_files=written,
        linked=sum(size for _, size in linked),
        linked_files=len(linked),
        removed_files=len(set(before) - set(after)),
        store_growth=allocated_bytes(caches.store) - store_before,
        named_caches_growth=allocated_bytes(caches.named) - named_before,
        remote_cache_growth=allocated_bytes(remote_cas) - remote_before,
        device=device,
        seconds=seconds,
    )
    return writes, output


def metadata_of(repo: ScratchRepo, name: str) -> Tuple[Mapping[str, Any], Path]:
    """The `.tar.json` of fleet agent `name`, and the prefix of its files in dist/."""
    (path,) = (repo.root / "dist").glob(f"agents.{name}/{name}.tar.json")
    return json.loads(path.read_text()), path.with_name(path.name[: -len(".tar.json")])


def unique_layer_bytes(repo: ScratchRepo) -> Tuple[int, int]:
    """The sizes of the distinct layer blobs of every image in dist/ (base included), and how
    many there are."""
    sizes = {}
    for path in (repo.root / "dist").glob("*/*.tar.json"):
        for image in json.loads(path.read_text())["images"]:
            for layer in image["layers"]:
                sizes[layer["digest"]] = layer["size"]
    return sum(sizes.values()), len(sizes)


def p9_monorepo_bytes(session: Session) -> List[Row]:
    """Bytes, not time: one run (what is written does not vary from run to run)."""
    root = session.scratch("p9")
    rows: List[Row] = []
    with start_registry(root / "registry", ACCESS_LOG) as registry, start_buildgrid(
        root / "buildgrid"
    ) as grid:
        repo = fleet_repo(root / "monorepo", registry.address)
        caches = Caches.under(root / "monorepo-caches")
        # The monorepo's machine: archives off, and it fills the remote cache for (d).
        options = [NO_ARCHIVES, *grid.pants_options(read=False, write=True)]
        cas = root / "buildgrid" / "cas"
        try:
            progress(f"P9: cold package :: of {FLEET_SIZE} agents and the base (empty caches)")
            cold, _ = measured_writes(repo, caches, cas, *options, "package", "::", pantsd=True)
            progress(f"P9 cold: {cold.summary()}")
            unique, layers = unique_layer_bytes(repo)
            noop, _ = measured_writes(repo, caches, cas, *options, "package", "::", pantsd=True)
            progress(f"P9 no-op: {noop.summary()}")
            append_line(repo.root / FLEET_EDITED)
            edit, _ = measured_writes(repo, caches, cas, *options, "package", "::", pantsd=True)
            progress(f"P9 code edit: {edit.summary()}")
            metadata, prefix = metadata_of(repo, "fleet00")
            (image,) = metadata["images"]
            layer_digests = {layer["digest"] for layer in image["layers"]}
            (code,) = (layer for layer in image["layers"] if layer["kind"] == "code")
            # The edited agent's files in dist/ other than layer blobs: metadata, SBOM,
            # provenance, the layout's index, manifest and config.
            own_metadata = sum(
                path.stat().st_size
                for path in prefix.parent.rglob("*")
                if path.is_file()
                and str(path).startswith(str(prefix))
                and f"sha256:{path.name}" not in layer_digests
            )
            # (d): the registry gets every agent as the monorepo has it now.
            progress("P9: publish :: from the monorepo's machine (fills the registry)")
            pants(repo, caches, *options, "publish", "::", pantsd=True)
        finally:
            stop_pantsd(repo)
        rows += [
            Row(
                f"P9 {FLEET_SIZE}-agent monorepo, cold package ::: bytes written outside the store",
                "B",
                cold.written,
                unique,
                f"unique layer bytes ({layers} layers)",
                "<= 1.2x",
                cold.written <= 1.2 * unique,
                note=cold.summary(),
            ),
            Row(
                "P9 no-op package ::: bytes written outside the store",
                "B",
                noop.written,
                None,
                "-",
                "0 B",
                noop.written == 0,
                note=noop.summary(),
            ),
            Row(
                "P9 one-line code edit in one agent, package ::: bytes written outside the store",
                "B",
                edit.written,
                code["size"] + own_metadata,
                "its code layer + its metadata",
                "<= that + 1 MB",
                edit.written <= code["size"] + own_metadata + 1e6,
                note=f"code layer {_size(code['size'])}, metadata {_size(own_metadata)}; "
                + edit.summary(),
            ),
        ]
        rows.append(fresh_machine_publish(root, repo, registry, grid))
    shutil.rmtree(root)
    return rows


def fresh_machine_publish(
    root: Path, monorepo: ScratchRepo, registry: RunningRegistry, grid: RunningBuildGrid
) -> Row:
    """(d): another machine with empty local caches and the warm remote cache publishes every
    agent after a one-line code edit in one of them (as CI's publish-only machine: deferred
    cache content, no layout, no archive)."""
    fresh = ScratchRepo(root / "fresh")
    shutil.copytree(
        monorepo.root,
        fresh.root,
        ignore=lambda directory, names: [
            name for name in names if name in ("dist", ".pids") or name.startswith(".pants")
        ]
        if Path(directory) == monorepo.root
        else [],
    )
    append_line(fresh.root / FLEET_EDITED)
    caches = Caches.under(root / "fresh-caches")
    uploads = UploadLog(registry)
    uploads.uploaded()  # the monorepo machine's pushes: not this one's
    os.sync()
    loopback_before, other_before = network_bytes()
    progress("P9: publish :: after a code edit, from a fresh machine with the warm remote cache")
    seconds, output = pants(
        fresh,
        caches,
        *grid.pants_options(read=True, write=False),
        *PUBLISH_ONLY,
        "--stats-log",
        "publish",
        "::",
    )
    loopback_after, other_after = network_bytes()
    digests = uploads.uploaded()
    uploaded = sum(uploads.size(digest) for digest in digests)
    store = allocated_bytes(caches.store)
    named = allocated_bytes(caches.named)
    metadata, _ = metadata_of(fresh, "fleet00")
    (image,) = metadata["images"]
    (code,) = (layer for layer in image["layers"] if layer["kind"] == "code")
    expected = {code["digest"], image["config"]["digest"]}
    pushed = re.findall(r"uploaded (\d+) blobs \(([^)]*)\)", output)
    # What publish wrote into dist/ (metadata, SBOM, provenance: cache hits' outputs, fetched).
    dist_bytes = sum(state[2] for state in file_states(fresh.root / "dist").values())
    immutable = caches.store / "immutable"
    big_files = sorted(
        ((state[2], _kind_of(immutable / path)) for path, state in file_states(immutable).items()),
        reverse=True,
    )
    counters = ", ".join(
        f"{name} {_stat(output, name)}"
        for name in (
            "remote_cache_requests_cached",
            "remote_cache_requests_uncached",
            "local_execution_requests",
        )
    )
    which = (
        "the code layer and config only"
        if set(digests) == expected
        else f"not only the code layer and config: {', '.join(digests)}"
    )
    # Everything it exchanged with BuildGrid and the registry (both on loopback; requests and
    # answers, protocol included): downloads + uploads.
    moved = loopback_after - loopback_before
    biggest = ", ".join(f"{_size(size)} ({kind})" for size, kind in big_files[:5]) or "-"
    return Row(
        "P9 publish :: of a code-only change, fresh machine, warm remote cache: bytes moved",
        "B",
        moved,
        code["size"],
        "the changed (code) layer",
        "<= 2x",
        moved <= 2 * code["size"],
        note=f"moved = loopback traffic (BuildGrid + registry, both ways; other interfaces"
        f" received {_size(other_after - other_before)}); uploaded {_size(uploaded)} in"
        f" {len(digests)} blobs ({which}; publish printed"
        f" {sum(int(count) for count, _ in pushed)} blobs uploaded over {len(pushed)} pushes);"
        f" the local store grew to {_size(store)} (what was fetched and what was built:"
        f" {len(big_files)} files of 512 KiB or more: {biggest}), named caches to {_size(named)};"
        f" dist/ got {_size(dist_bytes)} (metadata, SBOMs, provenance of {FLEET_SIZE} agents);"
        f" {counters}; {seconds:.1f} s",
    )


def _kind_of(path: Path) -> str:
    """What a store file holds, by its first bytes."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK"):
        return "zip: a PEX or wheel"
    if head.startswith(b"\x93NUMPY"):
        return "numpy array: weights"
    if head.startswith(b"\x1f\x8b"):
        return "gzip: a layer"
    if head[257:262] == b"ustar":
        return "tar: a layer"
    if head.startswith(b"#!"):
        return "script: " + head.split(b"\n", 1)[0][:60].decode(errors="replace")
    return "other"


# P10 --------------------------------------------------------------------------------------------


class PeakDiskUse(Sampler):
    """The most disk used on `path`'s filesystem while the block runs, sampled every 0.2 s."""

    def __init__(self, path: Path) -> None:
        super().__init__(0.2)
        self._path = path
        self.peak = shutil.disk_usage(path).used

    def sample(self) -> None:
        self.peak = max(self.peak, shutil.disk_usage(self._path).used)


def p10_big_weights_disk(session: Session) -> List[Row]:
    size = session.p10_gib * 1024 * MIB
    caches, repo, weights = _big_agent_repo(session, "p10")
    pants(repo, caches, NO_ARCHIVES, "package", BIG_AGENT, BASE)
    rows = []
    try:
        for label, options in (
            ("layouts and archives off", (NO_ARCHIVES, NO_LAYOUTS)),
            ("archives off, OCI layout in dist/", (NO_ARCHIVES,)),
        ):
            with open(weights, "wb") as handle:
                handle.write(os.urandom(1024))
                handle.truncate(size)
            os.sync()
            before = shutil.disk_usage(session.workdir).used
            with PeakDiskUse(session.workdir) as disk:
                seconds, _ = pants(repo, caches, *options, "package", BIG_AGENT)
            after = shutil.disk_usage(session.workdir).used
            progress(
                f"P10 {label}: peak +{_size(disk.peak - before)}, after +{_size(after - before)},"
                f" {seconds:.1f} s"
            )
            for what, used in (("peak", disk.peak - before), ("after", after - before)):
                rows.append(
                    Row(
                        f"P10 package {session.p10_gib} GiB of weights, {label}: disk use {what}",
                        "B",
                        used,
                        size,
                        "the weights file",
                        "<= 2x",
                        used <= 2 * size,
                        note=f"{seconds:.1f} s",
                    )
                )
    finally:
        for path in (caches.store, repo.root):
            shutil.rmtree(path)
    return rows


# Main -------------------------------------------------------------------------------------------

RUNNERS: Dict[str, Callable[[Session], List[Row]]] = {
    "P1": p1_weights,
    "P2": p2_code_edit,
    "P3": p3_cold,
    "P4": p4_remote_cache,
    "P5": p5_noop,
    "P6": p6_size,
    "P7": p7_publish,
    "P8": p8_real_stack,
    "P9": p9_monorepo_bytes,
    "P10": p10_big_weights_disk,
}


def machine(docker: Docker) -> Dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model.group(1) if model else "?",
        "memory": _size(int(memory.group(1)) * 1024) if memory else "?",
        "dockerd": docker.run("version", "--format", "{{.Server.Version}}").strip(),
        "docker builder": docker.builder,
        "load average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="e.g. P1,P3")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights-mib", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--p1-archives",
        choices=("on", "off"),
        default="off",
        help="[ai-agents].archives for P1's `package` (default: off, the plugin's default)",
    )
    parser.add_argument("--p10-gib", type=int, default=9, help="P10's weights file, in GiB")
    parser.add_argument(
        "--p1-layouts",
        choices=("on", "off"),
        default="on",
        help="[ai-agents].layouts for P1's `package` (default: on, the plugin's default)",
    )
    parser.add_argument("--docker", default="docker", help="the docker CLI")
    parser.add_argument(
        "--docker-builder",
        choices=("classic", "buildkit"),
        default="classic",
        help="buildkit needs buildx or a CLI with BuildKit built in (20.10-22.x)",
    )
    args = parser.parse_args(argv or None)
    chosen = [key.strip().upper() for key in args.only.split(",") if key.strip()]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(
            f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )

    workdir = args.workdir / "agent-builds"
    docker = Docker(cli=args.docker, builder=args.docker_builder)
    before = machine(docker)
    resources = contextlib.ExitStack()
    session = Session(
        runs=args.runs,
        weights_mib=args.weights_mib,
        workdir=workdir,
        docker=docker,
        pip=Pip(host_interpreter("3.11")),
        warm=Caches.under(workdir / "warm-caches"),
        p1_options=(
            *((NO_ARCHIVES,) if args.p1_archives == "off" else ()),
            *((NO_LAYOUTS,) if args.p1_layouts == "off" else ()),
        ),
        p10_gib=args.p10_gib,
        resources=resources,
    )
    rows: List[Row] = []
    try:
        # P4 and P9 last: they run BuildGrid, the others do not.
        for key in sorted(chosen, key=lambda key: (key in ("P4", "P9"), key)):
            progress(f"{key}: start")
            rows += RUNNERS[key](session)
    finally:
        if session.built_examples is not None:
            stop_pantsd(session.built_examples.repo)
        docker.remove_all()
        resources.close()
        shutil.rmtree(workdir / "scratch", ignore_errors=True)
    after = machine(docker)
    description = {**before, "load average": f"{before['load average']} -> {after['load average']}"}
    print("; ".join(f"{name}: {value}" for name, value in description.items()))
    runs = f"median of {args.runs} runs" + ("; P9: one run (bytes)" if "P9" in chosen else "")
    print(f"{runs}; MB = 10^6 bytes; ratio = ours / baseline")
    print_table(rows)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": description,
                    "command": sys.argv,
                    "runs": args.runs,
                    "weights_mib": args.weights_mib,
                    "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

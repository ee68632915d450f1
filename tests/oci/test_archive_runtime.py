"""An image archive built on a real busybox root filesystem is accepted by the real consumers:
dockerd 20.10 loads and runs it, skopeo reads it as `oci-archive:`, umoci unpacks its layout, and
building it twice gives the same bytes. The base layer is gzip, the app layer uncompressed."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Union

import pytest

from ai_agent.oci.archive import write_archive
from ai_agent.oci.image import ConfigUpdate, Image, Index, Layer, build_image
from ai_agent.oci.layer import Compression, Entry, LayerOptions, expand_tree, write_layer
from ai_agent.oci.name import Reference, Repository
from ai_agent.oci.remote import RegistryClient
from ai_agent.oci.types import Platform
from testkit.components import RunningRegistry

pytestmark = pytest.mark.integration

AGENT_UID = 65532
SCRIPT = b"""#!/bin/sh
echo "greeting=$GREETING pwd=$(pwd) uid=$(id -u)"
"""
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
HOST_PLATFORM = Platform("linux", _ARCHITECTURES.get(platform.machine(), platform.machine()))
OTHER_PLATFORM = Platform("linux", "s390x")


@dataclass(frozen=True)
class BuiltArchive:
    path: Path
    image: Image
    tag: str


def write_new_layer(path: Path, entries: List[Entry], compression: str, what: str) -> Layer:
    result = write_layer(entries, path, LayerOptions(compression=Compression(compression)))
    return Layer(result.descriptor, result.diff_id, str(path), what)


def build_agent_image(workdir: Path, rootfs: Path) -> Image:
    """busybox (gzip) as a base image, then an app layer (uncompressed) and config on top."""
    workdir.mkdir(parents=True, exist_ok=True)
    base_entries = expand_tree(rootfs, ".") + [Entry.directory("tmp", mode=0o1777)]
    base_layer = write_new_layer(workdir / "base.tar.gz", base_entries, "gzip", "busybox")
    base = build_image(
        Image.scratch(HOST_PLATFORM), [base_layer], ConfigUpdate(env={"PATH": "/bin"})
    )
    app_entries = [
        Entry.content("app/hello.sh", SCRIPT, mode=0o755),
        Entry.directory("app/data", uid=AGENT_UID, gid=AGENT_UID),
        Entry.symlink("app/shell", "/bin/sh"),
        Entry.content("app/" + "n" * 120 + "/long-name.txt", b"long path\n"),
    ]
    app_layer = write_new_layer(workdir / "app.tar", app_entries, "none", "app")
    update = ConfigUpdate(
        env={"GREETING": "hello-from-config", "PATH": "/app:${PATH}"},
        entrypoint=["/app/hello.sh"],
        working_dir="/app/data",
        user=str(AGENT_UID),
    )
    return build_image(base, [app_layer], update)


def build_archive(workdir: Path, rootfs: Path, tag: str) -> BuiltArchive:
    image = build_agent_image(workdir, rootfs)
    path = workdir / "image.tar"
    write_archive(path, image, [tag])
    return BuiltArchive(path, image, tag)


@pytest.fixture(scope="module")
def tag() -> str:
    return f"ai-agent-oci-test/runtime:{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path, tag: str) -> BuiltArchive:
    return build_archive(tmp_path_factory.mktemp("first"), busybox_rootfs, tag)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def docker_load_and_run(docker_client: object, archive: Path, tag: str) -> str:
    with open(archive, "rb") as handle:
        loaded = docker_client.images.load(handle)  # type: ignore[attr-defined]
    assert [image.tags for image in loaded] == [[tag]]
    output = docker_client.containers.run(tag, remove=True)  # type: ignore[attr-defined]
    return str(loaded[0].id) + " " + output.decode()


def test_docker_loads_and_runs_the_archive(
    docker_client: object, built: BuiltArchive, loaded_images: List[str]
) -> None:
    loaded_images.append(built.tag)
    result = docker_load_and_run(docker_client, built.path, built.tag)
    image_id, output = result.split(" ", 1)
    assert image_id == built.image.image_id
    assert output == f"greeting=hello-from-config pwd=/app/data uid={AGENT_UID}\n"


def test_skopeo_reads_the_oci_archive(skopeo: str, built: BuiltArchive) -> None:
    reference = f"oci-archive:{built.path}:{built.tag.rsplit(':', 1)[1]}"
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", reference], check=True, capture_output=True
    ).stdout
    assert raw == built.image.manifest_bytes
    inspected = json.loads(
        subprocess.run([skopeo, "inspect", reference], check=True, capture_output=True).stdout
    )
    assert inspected["Digest"] == built.image.digest
    assert inspected["Layers"] == [layer.descriptor.digest for layer in built.image.layers]
    assert inspected["Architecture"] == HOST_PLATFORM.architecture
    assert "GREETING=hello-from-config" in inspected["Env"]


def test_umoci_unpacks_the_layout(umoci: str, built: BuiltArchive, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with tarfile.open(built.path) as archive:
        archive.extractall(layout, filter="data")  # type: ignore[call-arg]
    bundle = tmp_path / "bundle"
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    subprocess.run(
        [umoci, "unpack", *rootless, "--image", f"{layout}:{built.tag.rsplit(':', 1)[1]}"]
        + [str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    script = rootfs / "app/hello.sh"
    assert script.read_bytes() == SCRIPT
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert os.readlink(rootfs / "app/shell") == "/bin/sh"
    assert (rootfs / "app" / ("n" * 120) / "long-name.txt").read_bytes() == b"long path\n"
    if not rootless:
        assert (rootfs / "app/data").stat().st_uid == AGENT_UID


def test_rebuild_is_byte_identical(
    built: BuiltArchive, tmp_path: Path, busybox_rootfs: Path
) -> None:
    again = build_archive(tmp_path / "second", busybox_rootfs, built.tag)
    assert sha256_file(again.path) == sha256_file(built.path)


def test_index_archive_serves_each_platform(
    built: BuiltArchive,
    tmp_path: Path,
    docker_client: object,
    skopeo: str,
    loaded_images: List[str],
) -> None:
    """Docker gets the image for the host; skopeo can pick any platform from the index."""
    other = build_image(Image.scratch(OTHER_PLATFORM), built.image.layers[:1])
    archive = tmp_path / "index.tar"
    tag = built.tag + "-index"
    index = Index([other, built.image])
    write_archive(archive, index, [tag], docker_platform=HOST_PLATFORM)
    loaded_images.append(tag)
    _, output = docker_load_and_run(docker_client, archive, tag).split(" ", 1)
    assert output.startswith("greeting=hello-from-config")
    inspected = json.loads(
        subprocess.run(
            [skopeo, "--override-arch", OTHER_PLATFORM.architecture, "inspect"]
            + [f"oci-archive:{archive}:{tag.rsplit(':', 1)[1]}"],
            check=True,
            capture_output=True,
        ).stdout
    )
    assert inspected["Digest"] == index.digest  # skopeo names what the tag points at
    assert inspected["Architecture"] == OTHER_PLATFORM.architecture
    assert inspected["Layers"] == [layer.descriptor.digest for layer in other.layers]


def test_pushed_image_keeps_its_digest_and_runs_when_pulled_by_digest(
    docker_client: object, registry: RunningRegistry, built: BuiltArchive
) -> None:
    """Writer and registry client together: what was built locally is what dockerd pulls."""
    image = built.image
    blobs: Dict[str, Union[bytes, Path]] = {
        image.descriptor.digest: image.manifest_bytes,
        image.config_descriptor.digest: image.config_bytes,
        **{layer.descriptor.digest: Path(layer.path) for layer in image.layers},
    }
    repository = Repository(registry.address, f"runtime/{uuid.uuid4().hex[:12]}")
    with RegistryClient() as client:
        stats = client.push(repository, image.descriptor, blobs, tags=["v1"])
        resolved = client.resolve(Reference(repository, tag="v1"), HOST_PLATFORM)
    assert stats.uploaded_blobs == 1 + len(image.layers)
    assert resolved.descriptor.digest == image.digest

    pulled = f"{registry.address}/{repository.name}@{image.digest}"
    try:
        output = docker_client.containers.run(pulled, remove=True)  # type: ignore[attr-defined]
        assert output.decode() == f"greeting=hello-from-config pwd=/app/data uid={AGENT_UID}\n"
    finally:
        docker_client.images.remove(pulled, force=True)  # type: ignore[attr-defined]


def _oci(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ai_agent.oci", *args], capture_output=True, text=True
    )


def _spec_of(image: Image, directory: Path) -> Path:
    """An `image` spec for `image` whose layer files are copies in `directory` (which a test may
    delete), as `publish` gives `push` the build steps' outputs."""
    directory.mkdir()
    (directory / "config.json").write_bytes(image.config_bytes)
    layers = []
    for number, layer in enumerate(image.layers):
        shutil.copyfile(layer.path, directory / f"layer-{number}")
        layers.append({**layer.descriptor.to_json(), "path": f"layer-{number}"})
    spec = {"images": [{"base": {"config": "config.json", "layers": layers}}]}
    (directory / "spec.json").write_text(json.dumps(spec))
    return directory / "spec.json"


def test_push_command_sends_only_the_layers_the_registry_lacks(
    registry: RunningRegistry, built: BuiltArchive, tmp_path: Path
) -> None:
    """`python -m ai_agent.oci missing-layers` then `push` (what `publish` runs): the digest is
    the spec's, a re-push uploads nothing, and layers the registry has need no local bytes."""
    spec = _spec_of(built.image, tmp_path / "image")
    described = _oci("image", "--spec", str(spec), "--metadata", str(tmp_path / "image.json"))
    assert described.returncode == 0, described.stderr
    digest = json.loads((tmp_path / "image.json").read_text())["digest"]
    repository = f"{registry.address}/cli/{uuid.uuid4().hex[:12]}"
    layers = sorted(layer.descriptor.digest for layer in built.image.layers)

    missing = _oci("missing-layers", "--spec", str(spec), "--repository", repository)
    assert (missing.returncode, json.loads(missing.stdout)) == (0, layers), missing.stderr
    first = _oci("push", "--spec", str(spec), "--ref", f"{repository}:v1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"pushed {repository}@{digest}: uploaded")
    assert " uploaded 0 blobs (0 B)," not in first.stdout
    missing = _oci("missing-layers", "--spec", str(spec), "--repository", repository)
    assert (missing.returncode, json.loads(missing.stdout)) == (0, []), missing.stderr

    for number in range(len(layers)):
        (spec.parent / f"layer-{number}").unlink()
    again = _oci("push", "--spec", str(spec), "--ref", f"{repository}:v2")
    assert again.returncode == 0, again.stderr
    assert ": uploaded 0 blobs (0 B), skipped " in again.stdout
    other = f"{registry.address}/cli/{uuid.uuid4().hex[:12]}"
    elsewhere = _oci("push", "--spec", str(spec), "--ref", f"{other}:v1")
    assert elsewhere.returncode == 2
    assert f"blob {built.image.layers[0].descriptor.digest} is neither" in elsewhere.stderr
    # Another repository of the registry has every layer: nothing is missing, all is mounted.
    mountable = _oci(
        "missing-layers", "--spec", str(spec), "--repository", other, "--mount-from", repository
    )
    assert (mountable.returncode, json.loads(mountable.stdout)) == (0, []), mountable.stderr
    mounted = _oci("push", "--spec", str(spec), "--ref", f"{other}:v1", "--mount-from", repository)
    assert mounted.returncode == 0, mounted.stderr
    assert f": {len(layers)} mounted, " in mounted.stdout, mounted.stdout
    with RegistryClient() as client:
        for tag in ("v1", "v2"):
            resolved = client.get_manifest(Reference.parse(f"{repository}:{tag}"))
            assert resolved.descriptor.digest == digest

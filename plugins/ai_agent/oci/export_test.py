import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

import pytest

from ai_agent.oci.__main__ import main
from ai_agent.oci.archive import image_files
from ai_agent.oci.archive_test import (
    archive_bytes,
    blob_name,
    file_in,
    make_image,
    make_layer,
    read_archive,
    referenced_blobs,
)
from ai_agent.oci.export import Exported, ExportError, LayoutImage, export_files, partial_path
from ai_agent.oci.image import ConfigUpdate, Image, build_image
from ai_agent.oci.layout import ANNOTATION_OWNER, LayoutError, layout_entries, ref_name
from ai_agent.oci.types import ANNOTATION_REF_NAME, Platform

AMD64, ARM64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64/v8")
ARCHIVE = "agents.x/x.tar"
METADATA = "agents.x/x.tar.json"


def _sources(root: Path, archive: bytes, metadata: bytes) -> Dict[str, Path]:
    paths = {ARCHIVE: root / ARCHIVE, METADATA: root / METADATA}
    for relative, data in ((ARCHIVE, archive), (METADATA, metadata)):
        paths[relative].parent.mkdir(parents=True, exist_ok=True)
        paths[relative].write_bytes(data)
    return paths


def _export(sources: Dict[str, Path], into: Path):
    return export_files(into, [(sources[ARCHIVE], ARCHIVE), (sources[METADATA], METADATA)])


def test_files_are_hardlinked_and_left_alone_when_unchanged(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "build", b"a" * 4096, b'{"digest": 1}')
    dist = tmp_path / "dist"

    first = _export(sources, dist)
    assert first.written == (ARCHIVE, METADATA) and first.unchanged == ()
    assert os.path.samefile(dist / ARCHIVE, sources[ARCHIVE])  # no byte copied
    assert not partial_path(dist / ARCHIVE).exists()

    inode = (dist / METADATA).stat().st_ino
    again = _export(sources, dist)
    assert again.written == () and again.unchanged == (ARCHIVE, METADATA)
    assert (dist / METADATA).stat().st_ino == inode


def test_equal_small_files_count_as_unchanged(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _export(_sources(tmp_path / "one", b"same", b"{}"), dist)
    again = _export(_sources(tmp_path / "two", b"same", b"{}"), dist)
    assert again.written == ()


def test_a_change_replaces_the_archive_and_writes_the_metadata_again(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _export(_sources(tmp_path / "old", b"old archive", b'{"v": "old"}'), dist)
    result = _export(_sources(tmp_path / "new", b"new archive", b'{"v": "old"}'), dist)
    # The metadata is placed again (last) although its bytes did not change: it says that the
    # set is complete.
    assert result.written == (ARCHIVE, METADATA) and result.unchanged == ()
    assert (dist / ARCHIVE).read_bytes() == b"new archive"
    assert json.loads((dist / METADATA).read_bytes()) == {"v": "old"}


@pytest.mark.parametrize("relative", ["/etc/x", "../x", "a/../../x"])
def test_paths_outside_the_directory_are_refused(tmp_path: Path, relative: str) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(ExportError, match="not a relative path inside"):
        export_files(tmp_path / "dist", [(source, relative)])


# A real SIGKILL at a chosen moment: the export runs in a child process whose `os.replace` (or
# copy) kills the child at that point, as a kill from outside would.
_KILLED_CHILD = textwrap.dedent(
    """
    import errno, os, shutil, signal, sys
    from pathlib import Path
    from ai_agent.oci import export

    into, archive, metadata, moment = sys.argv[1:5]
    real_replace, real_copy = os.replace, shutil.copyfileobj

    def replace_then_die(source, destination):
        real_replace(source, destination)
        os.kill(os.getpid(), signal.SIGKILL)

    def copy_half_then_die(reader, writer, length):
        writer.write(reader.read(3))
        writer.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def refuse_link(source, destination):
        raise OSError(errno.EXDEV, "cross-device link")

    if moment == "between-files":
        os.replace = replace_then_die
    else:
        os.link = refuse_link
        shutil.copyfileobj = copy_half_then_die
    export.export_files(
        Path(into), [(Path(archive), "agents.x/x.tar"), (Path(metadata), "agents.x/x.tar.json")]
    )
    """
)


@pytest.mark.parametrize("moment", ["between-files", "while-copying"])
def test_a_kill_leaves_no_metadata_beside_a_torn_or_new_archive(
    tmp_path: Path, moment: str
) -> None:
    dist = tmp_path / "dist"
    _export(_sources(tmp_path / "old", b"old archive", b'{"v": "old"}'), dist)
    new = _sources(tmp_path / "new", b"new archive", b'{"v": "new"}')

    child = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_CHILD,
            str(dist),
            str(new[ARCHIVE]),
            str(new[METADATA]),
            moment,
        ],  # fmt: skip
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    # Without its metadata the set reads as incomplete; the archive is whole, old or new.
    assert not (dist / METADATA).exists()
    expected = b"new archive" if moment == "between-files" else b"old archive"
    assert (dist / ARCHIVE).read_bytes() == expected

    result = _export(new, dist)
    assert METADATA in result.written
    assert (dist / ARCHIVE).read_bytes() == b"new archive"
    assert json.loads((dist / METADATA).read_bytes()) == {"v": "new"}
    assert sorted(path.name for path in (dist / "agents.x").iterdir()) == ["x.tar", "x.tar.json"]


# The shared layout ------------------------------------------------------------------------------

TAGS = ("example.local/agent:1.0",)


def _layout_files(directory: Path) -> Dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _layout_image(image: Image, owner: str = "agents/x", tags: Sequence[str] = TAGS):
    return LayoutImage(
        "oci", owner, image_files(image, tags).blobs, tuple(layout_entries(image, tags, owner))
    )


def _export_image(
    image: Image, dist: Path, metadata: Path, owner: str = "agents/x", tags=TAGS
) -> Exported:
    return export_files(
        dist, [(metadata, f"{owner}.tar.json")], layout=_layout_image(image, owner, tags)
    )


def _index(dist: Path) -> List[Dict[str, Any]]:
    return json.loads((dist / "oci/index.json").read_bytes())["manifests"]


def _names(dist: Path) -> Dict[str, str]:
    """Each name in the layout's index, and its owner."""
    return {
        entry["annotations"][ANNOTATION_REF_NAME]: entry["annotations"][ANNOTATION_OWNER]
        for entry in _index(dist)
    }


@pytest.fixture
def metadata(tmp_path: Path) -> Path:
    path = tmp_path / "metadata.json"
    path.write_bytes(b"{}")
    return path


def test_the_layout_holds_the_image_by_name_with_its_layers_hardlinked(
    tmp_path: Path, metadata: Path
) -> None:
    image = make_image(tmp_path / "build")
    dist = tmp_path / "dist"

    assert _export_image(image, dist, metadata).written == ("oci", "agents/x.tar.json")

    data = archive_bytes(image, TAGS)
    blobs = {
        name: file_in(data, name)
        for name, member in read_archive(data).items()
        if member.isfile() and name.startswith("blobs/")
    }
    files = _layout_files(dist / "oci")
    assert {name: files[name] for name in files if name.startswith("blobs/")} == blobs
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = _index(dist)
    assert entry["digest"] == image.digest and entry["mediaType"] == image.descriptor.media_type
    assert entry["annotations"] == {
        ANNOTATION_REF_NAME: "example.local/agent:1.0",
        "io.containerd.image.name": "example.local/agent:1.0",
        ANNOTATION_OWNER: "agents/x",
    }
    for layer in image.layers:
        assert os.path.samefile(dist / "oci" / blob_name(layer.descriptor.digest), layer.path)
    assert _export_image(image, dist, metadata) == Exported((), ("oci", "agents/x.tar.json"))


def test_names_are_the_tags_as_written_with_latest_where_none_is_given() -> None:
    assert ref_name("router") == "router:latest"
    assert ref_name("router:v1") == "router:v1"
    assert ref_name("localhost:5000/team/router") == "localhost:5000/team/router:latest"
    assert ref_name("localhost:5000/team/router:v1") == "localhost:5000/team/router:v1"


def test_a_new_image_keeps_unchanged_blobs_and_drops_unreferenced_ones(
    tmp_path: Path, metadata: Path
) -> None:
    first = make_image(tmp_path / "first")
    dist = tmp_path / "dist"
    _export_image(first, dist, metadata)
    kept = dist / "oci" / blob_name(first.layers[0].descriptor.digest)
    inode = kept.stat().st_ino

    second = build_image(
        Image.scratch(first.platform),
        [first.layers[0], make_layer(tmp_path / "second", "three", b"third")],
        ConfigUpdate(cmd=["/app/one"]),
    )
    assert _export_image(second, dist, metadata).written == ("oci", "agents/x.tar.json")

    assert kept.stat().st_ino == inode
    assert sorted(_layout_files(dist / "oci")) == sorted(
        ["index.json", "oci-layout", *referenced_blobs(second)]
    )
    assert [entry["digest"] for entry in _index(dist)] == [second.digest]


def test_images_share_blobs_and_each_leaves_only_its_own(tmp_path: Path, metadata: Path) -> None:
    """Two targets' images with a layer in common: the layout holds it once; when one image
    leaves (its target's layouts turned off), the blobs only it reached go, the shared stay."""
    one = make_image(tmp_path / "one")
    other = build_image(
        Image.scratch(one.platform),
        [one.layers[0], make_layer(tmp_path / "other", "mine", b"only the other's")],
        ConfigUpdate(cmd=["/app/mine"]),
    )
    dist = tmp_path / "dist"
    _export_image(one, dist, metadata, "agents/one", ("one:latest",))
    shared = dist / "oci" / blob_name(one.layers[0].descriptor.digest)
    inode = shared.stat().st_ino
    _export_image(other, dist, metadata, "agents/other", ("other",))

    assert shared.stat().st_ino == inode  # in place: not written again
    assert _names(dist) == {"one:latest": "agents/one", "other:latest": "agents/other"}
    assert sorted(_layout_files(dist / "oci")) == sorted(
        {"index.json", "oci-layout", *referenced_blobs(one), *referenced_blobs(other)}
    )

    gone = export_files(dist, [(metadata, "agents/one.tar.json")], LayoutImage("oci", "agents/one"))
    assert gone.written == ("agents/one.tar.json",)
    assert _names(dist) == {"other:latest": "agents/other"}
    assert sorted(_layout_files(dist / "oci")) == sorted(
        ["index.json", "oci-layout", *referenced_blobs(other)]
    )
    # Leaving again changes nothing.
    again = export_files(
        dist, [(metadata, "agents/one.tar.json")], LayoutImage("oci", "agents/one")
    )
    assert again == Exported((), ("agents/one.tar.json",))


def test_a_name_another_target_left_behind_is_taken_over(tmp_path: Path, metadata: Path) -> None:
    """A target renamed or removed leaves its entry; the image now named so replaces it (Pants
    refuses two live targets with one name before building, `dist.py`)."""
    old, new = make_image(tmp_path / "old"), make_image(tmp_path / "new", ARM64)
    dist = tmp_path / "dist"
    _export_image(old, dist, metadata, "agents/old", ("agent:1", "agent:2"))
    _export_image(new, dist, metadata, "agents/new", ("agent:2",))
    assert _names(dist) == {"agent:1": "agents/old", "agent:2": "agents/new"}
    assert {entry["digest"] for entry in _index(dist)} == {old.digest, new.digest}


def test_the_index_follows_what_it_holds_not_the_order_images_came_in(
    tmp_path: Path, metadata: Path
) -> None:
    images = {
        owner: make_image(tmp_path / owner, platform)
        for owner, platform in (("a", AMD64), ("b", ARM64))
    }
    indexes = []
    for order in (("a", "b"), ("b", "a")):
        dist = tmp_path / f"dist-{''.join(order)}"
        for owner in order:
            _export_image(images[owner], dist, metadata, owner, (f"{owner}:1",))
        indexes.append((dist / "oci/index.json").read_bytes())
    assert indexes[0] == indexes[1]


_CONCURRENT_EXPORT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ai_agent.oci.__main__ import main

    into, owner, spec, metadata = sys.argv[1:5]
    for _ in range(5):
        argv = ["export", "--into", into, "--layout", "oci", "--owner", owner, "--spec", spec]
        assert main([*argv, metadata]) == 0
    """
)


def _image_spec(directory: Path, content: str) -> Path:
    """An image spec of one layer holding `content`, its layer built, in `directory`."""
    directory.mkdir(parents=True)
    layer_spec = directory / "layer.json"
    layer_spec.write_text(json.dumps({"entries": [{"path": "app/x", "content": content}]}))
    assert main(["layer", "--spec", str(layer_spec), "--output-dir", str(directory / "l")]) == 0
    spec = directory / "image.json"
    image = {"platform": "linux/amd64", "layers": [str(directory / "l/descriptor.json")]}
    spec.write_text(json.dumps({"tags": [f"{directory.name}:1"], "images": [image]}))
    return spec


def test_images_exported_at_once_all_land_in_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Pants runs the exports of all images at once: none may lose another's entry or blobs."""
    monkeypatch.chdir(tmp_path)
    owners = [f"agent{number}" for number in range(8)]
    specs = {owner: _image_spec(tmp_path / owner, f"{owner}\n") for owner in owners}
    (tmp_path / "m.json").write_text("{}")
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_EXPORT, "dist", owner, str(specs[owner]), "m.json"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdout=subprocess.DEVNULL,
        )
        for owner in owners
    ]
    assert [child.wait() for child in children] == [0] * len(owners)
    dist = tmp_path / "dist"
    assert _names(dist) == {f"{owner}:1": owner for owner in owners}
    for entry in _index(dist):
        manifest = json.loads((dist / "oci" / blob_name(str(entry["digest"]))).read_bytes())
        for descriptor in [manifest["config"], *manifest["layers"]]:
            assert (dist / "oci" / blob_name(descriptor["digest"])).is_file()


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than `tmp_path` (Linux's /dev/shm, a tmpfs), where no
    hardlink from `tmp_path` can reach: as Pants' store on another disk than `dist/`."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary directory")
    directory = Path(tempfile.mkdtemp(dir=shm))
    yield directory
    shutil.rmtree(directory)


def test_across_filesystems_each_blob_is_copied_once_for_every_image(
    tmp_path: Path, other_filesystem: Path, metadata: Path
) -> None:
    image = make_image(other_filesystem / "build")
    dist = tmp_path / "dist"
    _export_image(image, dist, metadata, "agents/a", ("a:1",))
    copies = {
        layer.descriptor.digest: (dist / "oci" / blob_name(layer.descriptor.digest)).stat()
        for layer in image.layers
    }
    _export_image(image, dist, metadata, "agents/b", ("b:1",))
    for layer in image.layers:
        blob = dist / "oci" / blob_name(layer.descriptor.digest)
        assert blob.read_bytes() == Path(layer.path).read_bytes()
        assert blob.stat().st_ino == copies[layer.descriptor.digest].st_ino  # copied once
        assert blob.stat().st_nlink == 1


def test_the_image_command_writes_metadata_without_reading_a_layer_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # export's PATHs are relative to the working directory
    layer_spec = tmp_path / "layer.json"
    layer_spec.write_text(json.dumps({"entries": [{"path": "app/x", "content": "x\n"}]}))
    assert main(["layer", "--spec", str(layer_spec), "--output-dir", str(tmp_path / "l")]) == 0
    spec = tmp_path / "image.json"
    image = {"platform": "linux/amd64", "layers": ["l/descriptor.json"], "config": {}}
    spec.write_text(json.dumps({"tags": list(TAGS), "images": [image]}))
    with_archive, metadata_only = tmp_path / "with-archive.json", tmp_path / "metadata-only.json"
    command = ["image", "--spec", str(spec)]
    archive = ["--output", str(tmp_path / "a.tar")]
    assert main([*command, *archive, "--metadata", str(with_archive)]) == 0

    export = ["export", "--into", "dist", "--layout", "oci", "--owner", "x", "--spec", str(spec)]
    assert main([*export, with_archive.name]) == 0
    (tmp_path / "l" / "layer.tar").unlink()
    assert main([*command, "--metadata", str(metadata_only)]) == 0
    assert metadata_only.read_bytes() == with_archive.read_bytes()
    data = (tmp_path / "a.tar").read_bytes()
    blobs = {
        name: file_in(data, name)
        for name, member in read_archive(data).items()
        if member.isfile() and name.startswith("blobs/")
    }
    assert {
        name: content
        for name, content in _layout_files(tmp_path / "dist/oci").items()
        if name.startswith("blobs/")
    } == blobs


def test_export_flags_that_go_together_are_refused_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "m.json").write_text("{}")
    for flags in (["--layout", "oci"], ["--owner", "x"], ["--spec", "image.json"]):
        with pytest.raises(SystemExit) as exited:
            main(["export", "--into", str(tmp_path / "dist"), *flags, "m.json"])
        assert exited.value.code == 2
        assert "--layout and --owner go together" in capsys.readouterr().err


def test_an_index_that_is_no_oci_index_is_refused_naming_it(tmp_path: Path, metadata: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "oci").mkdir(parents=True)
    (dist / "oci/index.json").write_text("[]")
    with pytest.raises(LayoutError, match=r"oci/index.json: not an OCI image index"):
        _export_image(make_image(tmp_path / "build"), dist, metadata)


def test_big_files_rewritten_by_the_store_with_the_same_bytes_are_unchanged(
    tmp_path: Path,
) -> None:
    """Pants' store replaces a file (a new inode) when a step captures the same bytes again: a
    no-op must still leave `dist/` alone, and a change of one byte must still be written."""
    archive = os.urandom(3 << 20)
    dist = tmp_path / "dist"
    _export(_sources(tmp_path / "build", archive, b"{}"), dist)
    inode = (dist / ARCHIVE).stat().st_ino
    again = _export(_sources(tmp_path / "rebuilt", archive, b"{}"), dist)
    assert again.written == () and again.unchanged == (ARCHIVE, METADATA)
    assert (dist / ARCHIVE).stat().st_ino == inode
    changed = archive[:-1] + bytes([archive[-1] ^ 1])
    assert _export(_sources(tmp_path / "changed", changed, b"{}"), dist).written == (
        ARCHIVE,
        METADATA,
    )
    assert (dist / ARCHIVE).read_bytes() == changed


def test_what_a_set_no_longer_holds_is_removed(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    sources = _sources(tmp_path / "build", b"archive", b"{}")
    _export(sources, dist)
    result = export_files(dist, [(sources[METADATA], METADATA)], remove=[ARCHIVE])
    assert result.written == (METADATA,)
    assert not (dist / ARCHIVE).exists() and (dist / METADATA).exists()
    assert export_files(dist, [(sources[METADATA], METADATA)], remove=[ARCHIVE]).written == ()


def test_an_earlier_versions_layout_and_kept_blobs_are_removed_whole(tmp_path: Path) -> None:
    """Earlier versions placed a layout per image and kept a second name of blobs under
    `.ai-agent/blobs`: both go (`dist.py` names the image's old layout)."""
    dist = tmp_path / "dist"
    (dist / "agent.oci" / "blobs" / "sha256").mkdir(parents=True)
    (dist / "agent.oci" / "index.json").write_text("{}")
    (dist / ".ai-agent/blobs").mkdir(parents=True)
    (dist / ".ai-agent/blobs/0123").write_text("blob")
    sources = _sources(tmp_path / "build", b"archive", b"{}")
    result = export_files(dist, [(sources[METADATA], METADATA)], remove=["agent.oci"])
    assert result.written == (METADATA,)
    assert not (dist / "agent.oci").exists() and (dist / METADATA).exists()
    assert not (dist / ".ai-agent/blobs").exists()


def _sbom_set(build: Path, spdx: List[str], extra: Sequence[str] = ()) -> List[str]:
    """The files `package` places for an image with these SPDX documents, in `build`, as the
    export command's PATH arguments (relative to the working directory `build`)."""
    metadata = {"sbom": {"spdx": [*spdx, *extra], "provenance": "agents.x/x.provenance.json"}}
    paths = [*spdx, "agents.x/x.provenance.json", METADATA]
    for path in paths:
        (build / path).parent.mkdir(parents=True, exist_ok=True)
        # A new file, as a new sandbox has: dist/ holds hardlinks to the earlier ones.
        (build / path).unlink(missing_ok=True)
        (build / path).write_text(json.dumps(metadata) if path == METADATA else path)
    return paths


def test_the_sbom_files_an_earlier_package_named_and_this_one_lacks_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """One platform, then two (other SPDX file names), then one again: each time the files the
    metadata in dist/ names and the new set lacks go; what it names that is no SBOM file, or
    outside dist/, stays."""
    build, dist = tmp_path / "build", tmp_path / "dist"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dist/agents.x").mkdir(parents=True)
    (tmp_path / "dist/agents.x/notes.txt").write_text("mine")
    (tmp_path / "outside.spdx.json").write_text("not dist's")

    def export(paths: List[str]) -> None:
        monkeypatch.chdir(build)
        argv = ["export", "--into", str(dist), f"--remove-sbom-named-by={METADATA}", *paths]
        assert main(argv) == 0
        capsys.readouterr()

    single = ["agents.x/x.spdx.json"]
    both = ["agents.x/x.linux-amd64.spdx.json", "agents.x/x.linux-arm64.spdx.json"]
    export(_sbom_set(build, single, extra=["agents.x/notes.txt", "../outside.spdx.json"]))
    assert (dist / single[0]).exists()
    export(_sbom_set(build, both))
    assert not (dist / single[0]).exists()
    assert all((dist / path).exists() for path in both)
    assert (dist / "agents.x/notes.txt").exists() and (tmp_path / "outside.spdx.json").exists()
    export(_sbom_set(build, single))
    assert sorted(path.name for path in (dist / "agents.x").iterdir()) == [
        "notes.txt",
        "x.provenance.json",
        "x.spdx.json",
        "x.tar.json",
    ]

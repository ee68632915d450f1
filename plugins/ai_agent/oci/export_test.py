import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

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
)
from ai_agent.oci.export import Exported, ExportError, export_files, partial_path
from ai_agent.oci.image import ConfigUpdate, Image, build_image

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


# Layouts ----------------------------------------------------------------------------------------

TAGS = ("example.local/agent:1.0",)


def _layout_files(directory: Path) -> Dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _export_image(image: Image, dist: Path, metadata: Path) -> Exported:
    return export_files(dist, [(metadata, "x.tar.json")], layout=("x", image_files(image, TAGS)))


def test_a_layout_holds_the_archives_files_with_its_layers_hardlinked(tmp_path: Path) -> None:
    image = make_image(tmp_path / "build")
    metadata = tmp_path / "metadata.json"
    metadata.write_bytes(b"{}")
    dist = tmp_path / "dist"

    assert _export_image(image, dist, metadata).written == ("x", "x.tar.json")

    data = archive_bytes(image, TAGS)
    members = [name for name, member in read_archive(data).items() if member.isfile()]
    assert _layout_files(dist / "x") == {name: file_in(data, name) for name in members}
    for layer in image.layers:
        assert os.path.samefile(dist / "x" / blob_name(layer.descriptor.digest), layer.path)
    assert _export_image(image, dist, metadata) == Exported((), ("x", "x.tar.json"))


def test_a_new_image_keeps_unchanged_blobs_and_drops_unreferenced_ones(tmp_path: Path) -> None:
    first = make_image(tmp_path / "first")
    metadata = tmp_path / "metadata.json"
    metadata.write_bytes(b"{}")
    dist = tmp_path / "dist"
    _export_image(first, dist, metadata)
    kept = dist / "x" / blob_name(first.layers[0].descriptor.digest)
    inode = kept.stat().st_ino

    second = build_image(
        Image.scratch(first.platform),
        [first.layers[0], make_layer(tmp_path / "second", "three", b"third")],
        ConfigUpdate(cmd=["/app/one"]),
    )
    assert _export_image(second, dist, metadata).written == ("x", "x.tar.json")

    assert kept.stat().st_ino == inode
    assert not (dist / "x" / blob_name(first.layers[1].descriptor.digest)).exists()
    data = archive_bytes(second, TAGS)
    assert _layout_files(dist / "x") == {
        name: file_in(data, name) for name, member in read_archive(data).items() if member.isfile()
    }


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


def test_across_filesystems_each_blob_is_copied_once_for_every_layout(
    tmp_path: Path, other_filesystem: Path
) -> None:
    image = make_image(other_filesystem / "build")
    metadata = tmp_path / "metadata.json"
    metadata.write_bytes(b"{}")
    dist = tmp_path / "dist"
    for layout in ("a.oci", "b.oci"):
        export_files(dist, [(metadata, f"{layout}.json")], layout=(layout, image_files(image)))
    for layer in image.layers:
        name = blob_name(layer.descriptor.digest)
        first, second = dist / "a.oci" / name, dist / "b.oci" / name
        assert first.read_bytes() == Path(layer.path).read_bytes()
        assert os.path.samefile(first, second)  # copied once, linked into the second layout
        assert first.stat().st_nlink == 3  # and kept once under dist/.ai-agent/blobs

    # Both layouts go: so do the kept copies.
    for layout in ("a.oci", "b.oci"):
        export_files(dist, [(metadata, f"{layout}.json")], remove=[layout])
    assert list((dist / ".ai-agent/blobs").iterdir()) == []


def test_blobs_of_the_store_are_linked_and_sandbox_copies_are_placed_once(tmp_path: Path) -> None:
    """A big file that Pants' store holds reaches a sandbox as another name of the store's file;
    a file Pants writes into each step's sandbox (every file under 512 KiB) has no other name:
    such copies are linked into `dist/` once, not once per layout."""
    store = make_image(tmp_path / "store")
    linked = tmp_path / "store-link"
    os.link(store.layers[0].path, linked)  # the sandbox's name of the store's file
    one, other = make_image(tmp_path / "one"), make_image(tmp_path / "other")  # private copies
    assert [layer.descriptor for layer in one.layers] == [
        layer.descriptor for layer in store.layers
    ]
    metadata = tmp_path / "metadata.json"
    metadata.write_bytes(b"{}")
    dist = tmp_path / "dist"
    for layout, image in (("a.oci", one), ("b.oci", other)):
        export_files(dist, [(metadata, f"{layout}.json")], layout=(layout, image_files(image)))
    for layer, its_other in zip(one.layers, other.layers):
        name = blob_name(layer.descriptor.digest)
        assert os.path.samefile(dist / "a.oci" / name, layer.path)
        assert os.path.samefile(dist / "b.oci" / name, layer.path)
        assert not os.path.samefile(dist / "b.oci" / name, its_other.path)
    assert len(list((dist / ".ai-agent/blobs").iterdir())) == 2

    export_files(dist, [(metadata, "c.oci.json")], layout=("c.oci", image_files(store)))
    name = blob_name(store.layers[0].descriptor.digest)
    assert os.path.samefile(dist / "c.oci" / name, linked)  # the store's, not the kept copy
    assert len(list((dist / ".ai-agent/blobs").iterdir())) == 2


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

    export = ["export", "--into", str(tmp_path / "dist"), "--layout", "x", "--spec", str(spec)]
    assert main([*export, with_archive.name]) == 0
    (tmp_path / "l" / "layer.tar").unlink()
    assert main([*command, "--metadata", str(metadata_only)]) == 0
    assert metadata_only.read_bytes() == with_archive.read_bytes()
    assert _layout_files(tmp_path / "dist" / "x") == {
        name: file_in((tmp_path / "a.tar").read_bytes(), name)
        for name, member in read_archive((tmp_path / "a.tar").read_bytes()).items()
        if member.isfile()
    }


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


def test_a_layout_no_longer_wanted_is_removed_whole(tmp_path: Path) -> None:
    """With `[ai-agents].layouts` off, the image's layout directory from an earlier run goes."""
    dist = tmp_path / "dist"
    (dist / "agent.oci" / "blobs" / "sha256").mkdir(parents=True)
    (dist / "agent.oci" / "index.json").write_text("{}")
    sources = _sources(tmp_path / "build", b"archive", b"{}")
    result = export_files(dist, [(sources[METADATA], METADATA)], remove=["agent.oci"])
    assert result.written == (METADATA,)
    assert not (dist / "agent.oci").exists() and (dist / METADATA).exists()


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

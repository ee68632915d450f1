"""The archive tar: OCI layout plus docker manifest.json, each blob once, byte-identical rebuilds,
refusals, and the `image` command end to end."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest

from .__main__ import main
from .archive import ArchiveError, write_archive
from .image import ConfigUpdate, Image, Index, Layer, build_image
from .layer import DEFAULT_MTIME, Compression, Entry, LayerOptions, write_layer
from .types import ANNOTATION_REF_NAME, OCI_INDEX, Platform, digest_hex

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


def make_layer(directory: Path, name: str, content: bytes, compression: str = "none") -> Layer:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.tar"
    options = LayerOptions(compression=Compression(compression))
    result = write_layer([Entry.content(f"app/{name}", content)], path, options)
    return Layer(result.descriptor, result.diff_id, str(path), f"layer {name}")


def make_image(directory: Path, platform: Platform = AMD64) -> Image:
    layers = [
        make_layer(directory, "one", b"first", "gzip"),
        make_layer(directory, "two", b"second"),
    ]
    return build_image(Image.scratch(platform), layers, ConfigUpdate(cmd=["/app/one"]))


def archive_bytes(
    target: Any, tags: Sequence[str] = ("example.local/agent:1.0",), **kw: Any
) -> bytes:
    output = io.BytesIO()
    write_archive(output, target, tags, **kw)
    return output.getvalue()


def read_archive(data: bytes) -> Dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        return {member.name: member for member in archive.getmembers()}


def file_in(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None
        return extracted.read()


def blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def referenced_blobs(image: Image) -> List[str]:
    digests = [image.digest, image.image_id] + [layer.descriptor.digest for layer in image.layers]
    return [blob_name(digest) for digest in digests]


# Layout -----------------------------------------------------------------------------------------


def test_archive_holds_the_oci_layout_and_docker_manifest(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    data = archive_bytes(image, ["example.local/agent:1.0"])
    members = read_archive(data)
    blobs = sorted(referenced_blobs(image))
    assert list(members) == [
        "blobs",
        "blobs/sha256",
        *blobs,
        "index.json",
        "manifest.json",
        "oci-layout",
        "repositories",
    ]
    assert {member.mtime for member in members.values()} == {DEFAULT_MTIME}
    assert {(member.uid, member.gid, member.uname) for member in members.values()} == {(0, 0, "")}
    for name in blobs:
        assert "sha256:" + hashlib.sha256(file_in(data, name)).hexdigest() == "sha256:" + name[13:]
    assert json.loads(file_in(data, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(file_in(data, "index.json")) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **image.descriptor.to_json(),
                "annotations": {
                    ANNOTATION_REF_NAME: "1.0",
                    "io.containerd.image.name": "example.local/agent:1.0",
                },
            }
        ],
    }
    assert json.loads(file_in(data, "manifest.json")) == [
        {
            "Config": blob_name(image.image_id),
            "RepoTags": ["example.local/agent:1.0"],
            "Layers": [blob_name(layer.descriptor.digest) for layer in image.layers],
        }
    ]
    assert json.loads(file_in(data, "repositories")) == {
        "example.local/agent": {"1.0": digest_hex(image.image_id)}
    }


def test_untagged_archive_has_no_names(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    data = archive_bytes(image, [])
    assert "repositories" not in read_archive(data)
    assert json.loads(file_in(data, "index.json"))["manifests"] == [image.descriptor.to_json()]
    assert json.loads(file_in(data, "manifest.json"))[0]["RepoTags"] == []


def test_short_names_are_normalised_and_repeated_tags_dropped(tmp_path: Path) -> None:
    data = archive_bytes(make_image(tmp_path), ["agent", "docker.io/library/agent:latest", "a:2"])
    tags = json.loads(file_in(data, "manifest.json"))[0]["RepoTags"]
    assert tags == ["docker.io/library/agent:latest", "docker.io/library/a:2"]
    index = json.loads(file_in(data, "index.json"))
    assert [entry["annotations"][ANNOTATION_REF_NAME] for entry in index["manifests"]] == [
        "latest",
        "2",
    ]


def test_rebuilds_are_byte_identical_and_tags_change_only_names(tmp_path: Path) -> None:
    first = archive_bytes(make_image(tmp_path / "one"))
    second = archive_bytes(make_image(tmp_path / "elsewhere" / "two"))
    assert first == second
    retagged = archive_bytes(make_image(tmp_path / "three"), ["example.local/agent:2.0"])
    assert retagged != first
    assert {name for name in read_archive(retagged) if name.startswith("blobs/")} == {
        name for name in read_archive(first) if name.startswith("blobs/")
    }


def test_index_archive_holds_every_platform_and_docker_gets_one(tmp_path: Path) -> None:
    amd64 = make_image(tmp_path, AMD64)
    arm64 = make_image(tmp_path, ARM64)  # the same layer blobs: stored once
    index = Index([amd64, arm64])
    data = archive_bytes(index, docker_platform=ARM64)
    members = read_archive(data)
    expected = {blob_name(index.digest), *referenced_blobs(amd64), *referenced_blobs(arm64)}
    assert {name for name in members if name.startswith("blobs/sha256/")} == expected
    assert len(expected) == 1 + 2 * 2 + 2  # index, two manifests and configs, shared layers
    layout_index = json.loads(file_in(data, "index.json"))
    assert layout_index["manifests"][0]["digest"] == index.digest
    assert layout_index["manifests"][0]["mediaType"] == OCI_INDEX
    docker = json.loads(file_in(data, "manifest.json"))[0]
    assert docker["Config"] == blob_name(arm64.image_id)
    first = json.loads(file_in(archive_bytes(index), "manifest.json"))[0]
    assert first["Config"] == blob_name(amd64.image_id)


# Refusals ---------------------------------------------------------------------------------------


def test_layer_file_of_the_wrong_size_is_refused_before_writing(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    Path(image.layers[1].path).write_bytes(b"truncated")
    output = tmp_path / "archive.tar"
    with pytest.raises(ArchiveError, match=f"{image.layers[1].path} holds 9 bytes"):
        write_archive(output, image)
    assert not output.exists()


def test_layer_file_with_other_content_is_refused(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    layer_path = Path(image.layers[1].path)
    content = bytearray(layer_path.read_bytes())
    content[600] ^= 0xFF
    layer_path.write_bytes(bytes(content))
    output = tmp_path / "archive.tar"
    with pytest.raises(ArchiveError, match=f"{layer_path} has digest sha256:.*, expected"):
        write_archive(output, image)
    assert not output.exists()


def test_missing_layer_file_is_refused(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    Path(image.layers[0].path).unlink()
    with pytest.raises(ArchiveError, match="cannot read source"):
        archive_bytes(image)


@pytest.mark.parametrize(
    "tag, message",
    [
        ("example.local/agent@sha256:" + "0" * 64, "named by tags, not digests"),
        ("Example.local/Agent:1", "invalid image name"),
        ("agent:bad tag", "invalid image name"),
    ],
)
def test_bad_tags_are_refused(tmp_path: Path, tag: str, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        archive_bytes(make_image(tmp_path), [tag])


def test_docker_platform_must_be_in_the_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="linux/arm64/v8 is not in the archive"):
        archive_bytes(make_image(tmp_path), docker_platform=ARM64)


# The `image` command ----------------------------------------------------------------------------


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def run_layer(tmp_path: Path, name: str, entries: List[Dict[str, Any]], **spec: Any) -> Path:
    spec_path = write_json(tmp_path / f"{name}.json", {"entries": entries, **spec})
    assert main(["layer", "--spec", str(spec_path), "--output-dir", str(tmp_path / name)]) == 0
    return tmp_path / name / "descriptor.json"


def test_image_command_builds_on_a_base_from_files(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/run.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "src/run.sh").chmod(0o755)
    run_layer(tmp_path, "base-layer", [{"path": "etc/os-release", "content": "ID=test\n"}])
    base_spec = {"images": [{"platform": "linux/amd64", "layers": ["base-layer/descriptor.json"]}]}
    base_archive = tmp_path / "base.tar"
    spec_path = write_json(tmp_path / "base-image.json", base_spec)
    assert main(["image", "--spec", str(spec_path), "--output", str(base_archive)]) == 0
    base_metadata = json.loads((tmp_path / "base.tar.json").read_text())
    with tarfile.open(base_archive) as archive:
        archive.extractall(tmp_path / "base", filter="data")  # type: ignore[call-arg]

    run_layer(
        tmp_path,
        "app-layer",
        [{"path": "app/run.sh", "source": "src/run.sh"}, {"path": "tmp", "directory": True}],
        compression="gzip",
        created_by="app files",
    )
    base_image = base_metadata["images"][0]
    spec = {
        "tags": ["example.local/agent:1.0"],
        "source_date_epoch": 1700000000,
        "images": [
            {
                "base": {
                    "config": "base/" + blob_name(base_image["config"]["digest"]),
                    "layers": [
                        {
                            "mediaType": layer["mediaType"],
                            "digest": layer["digest"],
                            "size": layer["size"],
                            "path": "base/" + blob_name(layer["digest"]),
                        }
                        for layer in base_image["layers"]
                    ],
                },
                "layers": ["app-layer/descriptor.json"],
                "config": {"Entrypoint": ["/app/run.sh"], "Env": {"PATH": "/app:${PATH}"}},
            }
        ],
    }
    spec_path = write_json(tmp_path / "image.json", spec)
    archive_path = tmp_path / "out" / "image.tar"
    archive_path.parent.mkdir()
    metadata_path = tmp_path / "out" / "meta.json"
    arguments = ["image", "--spec", str(spec_path), "--output", str(archive_path)]
    assert main([*arguments, "--metadata", str(metadata_path)]) == 0

    metadata = json.loads(metadata_path.read_text())
    data = archive_path.read_bytes()
    image = metadata["images"][0]
    config = json.loads(file_in(data, blob_name(image["config"]["digest"])))
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["history"] == [
        {"created_by": "layer: etc/os-release"},
        {"created_by": "app files"},
        {"created_by": "config: Env, Entrypoint", "empty_layer": True},
    ]
    assert config["config"]["Env"][0].startswith("PATH=/app:/usr/local/sbin")
    assert [layer["digest"] for layer in image["layers"]] == [
        base_image["layers"][0]["digest"],
        json.loads((tmp_path / "app-layer/descriptor.json").read_text())["digest"],
    ]
    assert metadata["digest"] == image["manifest"]["digest"]
    assert file_in(data, blob_name(metadata["digest"]))  # the manifest is in the archive
    assert metadata["docker"] == {"imageID": image["config"]["digest"], "platform": "linux/amd64"}
    assert read_archive(data)["index.json"].mtime == 1700000000


def test_image_command_streams_the_same_archive_to_stdout(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """`--output -` is what `./pants run` pipes into `docker load`: the archive's very bytes."""
    run_layer(tmp_path, "layer", [{"path": "etc/os-release", "content": "ID=test\n"}])
    spec = {
        "tags": ["agent:1"],
        "images": [{"platform": "linux/amd64", "layers": ["layer/descriptor.json"]}],
    }
    spec_path = str(write_json(tmp_path / "image.json", spec))
    arguments = ["image", "--spec", spec_path, "--output", str(tmp_path / "image.tar")]
    assert main(arguments) == 0
    capsysbinary.readouterr()
    arguments = ["image", "--spec", spec_path, "--output", "-"]
    assert main([*arguments, "--metadata", str(tmp_path / "streamed.json")]) == 0
    assert capsysbinary.readouterr().out == (tmp_path / "image.tar").read_bytes()
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "image.tar.json").read_bytes()


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"images": []}, "`images` must list at least one image"),
        ({"images": [{"layers": []}]}, "`platform` is required for an image without a base"),
        ({"images": [{"platform": "linux"}]}, "platform must look like os/arch"),
        ({"images": [{"platform": "linux/amd64", "layers": ["nope.json"]}]}, "cannot read"),
        ({"images": [{"platform": "linux/amd64", "config": []}]}, "`config` must be a dict"),
        ({"images": [{"platform": "linux/amd64"}], "tag": ["x"]}, "unknown keys \\['tag'\\]"),
        ({"images": [{"platform": "linux/amd64", "config": {"User": 1}}]}, "User must be"),
    ],
)
def test_image_command_reports_bad_specs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: Any, message: str
) -> None:
    spec_path = write_json(tmp_path / "image.json", spec)
    assert main(["image", "--spec", str(spec_path), "--output", str(tmp_path / "x.tar")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert re.search(message, error), error

"""The comparison `verify-reproducible` reports with: it must name the first differing tar entry
and header field (plain and gzip layers), the JSON field, and, inside an image archive, follow
the differing manifest down to the config field or the layer entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest

from .__main__ import main
from .archive import write_archive
from .compare import compare_directories, compare_files, compare_json
from .image import ConfigUpdate, Image, Layer, build_image
from .layer import Compression, Entry, LayerOptions, write_layer, write_layer_directory
from .types import Platform

ENTRIES = (
    Entry.content("app/a.py", b"print('a')\n"),
    Entry.content("app/b.py", b"print('b')\n"),
)


def layer_dir(
    root: Path,
    entries: Sequence[Entry] = ENTRIES,
    mtime: int = 946684800,
    compression: str = "none",
) -> Path:
    options = LayerOptions(compression=Compression(compression), mtime=mtime)
    write_layer_directory(entries, root / "layers/code", options, "code")
    return root


def test_identical_outputs_have_no_difference(tmp_path: Path) -> None:
    first, second = layer_dir(tmp_path / "first"), layer_dir(tmp_path / "second")
    assert compare_directories(first, second) == []


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_drifting_mtime_is_named_at_the_first_entry(tmp_path: Path, compression: str) -> None:
    first = layer_dir(tmp_path / "first", compression=compression)
    second = layer_dir(tmp_path / "second", mtime=1700000000, compression=compression)
    blob = "layers/code/layer.tar.gz" if compression == "gzip" else "layers/code/layer.tar"
    by_path = {
        difference.path: difference.detail for difference in compare_directories(first, second)
    }
    assert by_path[blob] == (
        "tar entry app: mtime 946684800 in the cached build, 1700000000 in the rebuild"
    )
    # The descriptor differs first in its digest (keys are compared in sorted order).
    assert by_path["layers/code/descriptor.json"].startswith("field .diffID ")


def test_differing_content_names_the_file_and_its_hashes(tmp_path: Path) -> None:
    first = layer_dir(tmp_path / "first")
    changed = (ENTRIES[0], Entry.content("app/b.py", b"print('B')\n"))
    second = layer_dir(tmp_path / "second", entries=changed)
    detail = compare_files(first / "layers/code/layer.tar", second / "layers/code/layer.tar")
    assert detail is not None
    assert detail.startswith("tar entry app/b.py: content sha256 "), detail


def test_an_entry_present_in_one_build_only(tmp_path: Path) -> None:
    first = layer_dir(tmp_path / "first", entries=ENTRIES[:1])
    second = layer_dir(tmp_path / "second")
    detail = compare_files(first / "layers/code/layer.tar", second / "layers/code/layer.tar")
    assert detail == "tar entry app/b.py is only in the rebuild"


def test_files_present_in_one_directory_only(tmp_path: Path) -> None:
    first = layer_dir(tmp_path / "first")
    second = layer_dir(tmp_path / "second")
    (second / "extra.txt").write_text("x")
    (first / "layers/code/descriptor.json").unlink()
    details = {d.path: d.detail for d in compare_directories(first, second)}
    assert details == {
        "extra.txt": "only in the rebuild",
        "layers/code/descriptor.json": "only in the rebuild",
    }


def test_json_fields_are_named_by_path() -> None:
    first = {"config": {"Env": ["A=1", "B=2"], "User": "65532"}}
    second = {"config": {"Env": ["A=1", "B=3"], "User": "65532"}}
    assert compare_json(first, second) == (
        'field .config.Env[1] "B=2" in the cached build, "B=3" in the rebuild'
    )
    assert compare_json({"a": [1]}, {"a": [1, 2]}) == (
        "field .a length 1 in the cached build, 2 in the rebuild"
    )
    assert compare_json({"a": 1}, {"b": 1}) == "field .a is only in the cached build"
    assert compare_json({"a": 1}, {"a": 1.0}) is not None
    assert compare_json({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}) is None


def test_the_same_json_encoded_differently(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"a": 1, "b": 2}')
    (tmp_path / "b.json").write_text('{"b":2,"a":1}')
    assert compare_files(tmp_path / "a.json", tmp_path / "b.json") == (
        "the same JSON, encoded differently"
    )


def test_other_files_report_the_first_differing_byte(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\x00\x01\x02\x03")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01\x07\x03")
    assert compare_files(tmp_path / "a.bin", tmp_path / "b.bin") == "bytes differ from offset 2"


# Image archives -----------------------------------------------------------------------------------


def archive(
    path: Path, mode: str = "fast", code: bytes = b"print('a')\n", mtime: int = 946684800
) -> Path:
    path.mkdir(parents=True)
    layers = []
    for name, content, compression in (("code", code, "gzip"), ("weights", b"\0" * 4096, "none")):
        options = LayerOptions(compression=Compression(compression), mtime=mtime)
        blob = path / f"{name}.blob"
        result = write_layer([Entry.content(f"app/{name}", content)], blob, options)
        layers.append(Layer(result.descriptor, result.diff_id, str(blob), name))
    image = build_image(
        Image.scratch(Platform("linux", "amd64")),
        layers,
        ConfigUpdate(env={"MODE": mode}, cmd=["/app/code"]),
    )
    output = path / "image.tar"
    write_archive(output, image, ["agent:latest"])
    return output


def test_an_archive_difference_is_followed_to_the_config_field(tmp_path: Path) -> None:
    first = archive(tmp_path / "first")
    second = archive(tmp_path / "second", mode="slow")
    detail = compare_files(first, second)
    assert detail is not None
    assert detail.startswith(
        "index.json .manifests[0] (application/vnd.oci.image.manifest.v1+json)"
        " .config (application/vnd.oci.image.config.v1+json): "
    ), detail
    assert detail.endswith(
        'field .config.Env[0] "MODE=fast" in the cached build, "MODE=slow" in the rebuild'
    ), detail


def test_an_archive_difference_is_followed_into_the_layer(tmp_path: Path) -> None:
    first = archive(tmp_path / "first")
    second = archive(tmp_path / "second", code=b"print('A')\n")
    detail = compare_files(first, second)
    assert detail is not None
    # The config's diffIDs differ too, as a consequence: the layer is the one followed.
    assert detail.startswith(
        "index.json .manifests[0] (application/vnd.oci.image.manifest.v1+json)"
        " .layers[0] (application/vnd.oci.image.layer.v1.tar+gzip): tar entry app/code:"
        " content sha256 "
    ), detail


def test_a_drifting_mtime_in_an_uncompressed_layer_of_an_archive(tmp_path: Path) -> None:
    first = archive(tmp_path / "first")
    second = archive(tmp_path / "second", mtime=1)
    detail = compare_files(first, second)
    assert detail is not None
    assert detail.endswith(
        " .layers[0] (application/vnd.oci.image.layer.v1.tar+gzip): tar entry app:"
        " mtime 946684800 in the cached build, 1 in the rebuild"
    ), detail


def test_the_compare_command_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = layer_dir(tmp_path / "first")
    second = layer_dir(tmp_path / "second", mtime=1)
    assert main(["compare", "--first", str(first), "--second", str(second)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [difference["path"] for difference in printed] == [
        "layers/code/descriptor.json",
        "layers/code/layer.tar",
    ]

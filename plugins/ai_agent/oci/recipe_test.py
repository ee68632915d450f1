import io
import json
import os
from pathlib import Path
from typing import List, Tuple

import pytest

from ai_agent.oci.__main__ import main
from ai_agent.oci.archive import ArchiveError, image_files, write_archive
from ai_agent.oci.archive_test import blob_name, file_in, make_layer
from ai_agent.oci.export import ExportError, LayoutImage, export_files, partial_path
from ai_agent.oci.image import ConfigUpdate, Image, Layer, build_image
from ai_agent.oci.layer import (
    Compression,
    Entry,
    LayerError,
    LayerOptions,
    write_layer,
    write_layer_recipe,
)
from ai_agent.oci.layout import layout_entries
from ai_agent.oci.recipe import RECIPE_SOURCE_MIN, BlobRecipe, RecipeError
from ai_agent.oci.types import Platform

BIG = RECIPE_SOURCE_MIN + 12345  # not a multiple of the tar block or the read chunk
TAGS = ("example.local/agent:1.0",)


def _entries(root: Path) -> List[Entry]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "big.bin").write_bytes(os.urandom(BIG))
    (root / "other.bin").write_bytes(os.urandom(2 * RECIPE_SOURCE_MIN))
    (root / "small.json").write_bytes(b'{"labels": ["a", "b"]}')
    return [
        Entry.file("models/big.bin", root / "big.bin"),
        # Longer than a USTAR name: a PAX header precedes it.
        Entry.file("models/" + "n" * 120 + "/other.bin", root / "other.bin"),
        Entry.file("models/small.json", root / "small.json"),
    ]


def _stitched(recipe: BlobRecipe, offset: int = 0) -> bytes:
    with recipe.open(offset) as stream:
        return stream.read()


def test_a_recipe_makes_the_blob_byte_for_byte_and_holds_only_the_tars_own_bytes(
    tmp_path: Path,
) -> None:
    entries = _entries(tmp_path / "in")
    blob = tmp_path / "layer.tar"
    written = write_layer(entries, blob)
    result, recipe = write_layer_recipe(entries)

    assert result.descriptor == written.descriptor and result.diff_id == written.diff_id
    assert result.members == written.members
    assert recipe.size == blob.stat().st_size
    assert _stitched(recipe) == blob.read_bytes()
    assert recipe.sources == (str(entries[0].source), str(entries[1].source))
    inline = sum(part.size for part in recipe.parts if part.data is not None)
    assert inline < 16 * 1024  # headers, padding, the small file and the end blocks


@pytest.mark.parametrize("offset", [0, 1, 511, 512, BIG, BIG + 600, 3 * RECIPE_SOURCE_MIN])
def test_a_recipe_reads_from_any_offset(tmp_path: Path, offset: int) -> None:
    entries = _entries(tmp_path / "in")
    blob = tmp_path / "layer.tar"
    write_layer(entries, blob)
    _, recipe = write_layer_recipe(entries)
    assert _stitched(recipe, offset) == blob.read_bytes()[offset:]


def test_a_layer_directory_keeps_the_recipe_in_its_descriptor_with_relative_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()
    (tmp_path / "w/weights.bin").write_bytes(os.urandom(BIG))
    spec = {"entries": [{"path": "models/weights.bin", "source": "w/weights.bin"}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))

    assert main(["layer", "--spec", "spec.json", "--output-dir", "out/l", "--recipe"]) == 0
    assert main(["layer", "--spec", "spec.json", "--output-dir", "blob"]) == 0
    descriptor = json.loads((tmp_path / "out/l/descriptor.json").read_text())
    assert sorted(os.listdir(tmp_path / "out/l")) == ["descriptor.json"]  # no blob written
    assert "blob" not in descriptor
    sources = [part["source"] for part in descriptor["recipe"] if "source" in part]
    assert sources == ["../../w/weights.bin"]
    blob = json.loads((tmp_path / "blob/descriptor.json").read_text())
    same = ("digest", "diffID", "size", "mediaType", "entries")
    assert {key: descriptor[key] for key in same} == {key: blob[key] for key in same}

    # The `image` command stacks it as it stacks a blob: the same image.
    for layer_dir in ("out/l", "blob"):
        image_spec = {
            "images": [{"platform": "linux/amd64", "layers": [f"{layer_dir}/descriptor.json"]}]
        }
        (tmp_path / "image.json").write_text(json.dumps(image_spec))
        assert main(["image", "--spec", "image.json", "--metadata", f"{layer_dir}.json"]) == 0
    assert (tmp_path / "out/l.json").read_bytes() == (tmp_path / "blob.json").read_bytes()


def test_only_uncompressed_layers_are_kept_as_recipes(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="uncompressed"):
        write_layer_recipe(_entries(tmp_path), LayerOptions(compression=Compression("gzip")))


def test_malformed_recipes_and_changed_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="part 0 must be"):
        BlobRecipe.from_json([{"source": "x"}], tmp_path, "d.json")
    with pytest.raises(RecipeError, match="a list of parts"):
        BlobRecipe.from_json({"data": ""}, tmp_path, "d.json")
    (tmp_path / "w").write_bytes(b"12345")
    recipe = BlobRecipe.from_json([{"source": "w", "size": 6}], tmp_path, "d.json")
    with pytest.raises(RecipeError, match="holds 5 bytes, its recipe says 6"):
        recipe.check_sources("layer")
    missing = BlobRecipe.from_json([{"source": "gone", "size": 1}], tmp_path, "d.json")
    with pytest.raises(RecipeError, match="cannot read .*gone"):
        missing.check_sources("layer")


def _recipe_layer(tmp_path: Path) -> Tuple[Layer, Path]:
    entries = _entries(tmp_path / "in")
    blob = tmp_path / "layer.tar"
    written = write_layer(entries, blob)
    result, recipe = write_layer_recipe(entries)
    assert result.descriptor == written.descriptor
    layer = Layer(result.descriptor, result.diff_id, str(tmp_path / "d.json"), "w", recipe=recipe)
    return layer, blob


def _image(tmp_path: Path, layer: Layer) -> Image:
    code = make_layer(tmp_path / "code", "code", b"print(1)\n", "gzip")
    return build_image(
        Image.scratch(Platform("linux", "amd64")), [layer, code], ConfigUpdate(cmd=["/app/code"])
    )


def test_an_archive_stitches_the_blob_and_checks_its_digest(tmp_path: Path) -> None:
    layer, blob = _recipe_layer(tmp_path)
    image = _image(tmp_path, layer)
    output = io.BytesIO()
    write_archive(output, image, TAGS)
    assert file_in(output.getvalue(), blob_name(layer.descriptor.digest)) == blob.read_bytes()

    # Same size, other bytes: the stitched blob no longer has the recipe's digest.
    big = tmp_path / "in/big.bin"
    big.write_bytes(os.urandom(BIG))
    with pytest.raises(ArchiveError, match="has digest sha256:.*, expected"):
        write_archive(io.BytesIO(), image, TAGS)


def _layout_image(image: Image, owner: str) -> LayoutImage:
    entries = tuple(layout_entries(image, [f"{owner}:1"], owner))
    return LayoutImage("oci", owner, image_files(image).blobs, entries)


def test_a_stitched_blob_is_written_once_for_every_image_and_goes_with_the_last(
    tmp_path: Path,
) -> None:
    layer, blob = _recipe_layer(tmp_path)
    image = _image(tmp_path, layer)
    dist = tmp_path / "dist"
    metadata = tmp_path / "metadata.json"
    metadata.write_bytes(b"{}")
    stitched = dist / "oci" / blob_name(layer.descriptor.digest)
    export_files(dist, [(metadata, "a.json")], layout=_layout_image(image, "a"))
    assert stitched.read_bytes() == blob.read_bytes()
    inode = stitched.stat().st_ino
    export_files(dist, [(metadata, "b.json")], layout=_layout_image(image, "b"))
    assert stitched.stat().st_ino == inode  # written once: the second image found it there

    # Both images leave the layout (archives only, say): so does the stitched blob.
    for owner in ("a", "b"):
        export_files(dist, [(metadata, f"{owner}.json")], layout=LayoutImage("oci", owner))
    assert list((dist / "oci/blobs/sha256").iterdir()) == []


def test_a_recipe_that_does_not_make_its_digest_leaves_no_blob(tmp_path: Path) -> None:
    layer, _ = _recipe_layer(tmp_path)
    image = _image(tmp_path, layer)
    (tmp_path / "in/big.bin").write_bytes(os.urandom(BIG))
    metadata = tmp_path / "metadata.json"
    metadata.write_bytes(b"{}")
    with pytest.raises(ExportError, match="its recipe makes sha256:"):
        export_files(tmp_path / "dist", [(metadata, "x.json")], layout=_layout_image(image, "x"))
    destination = tmp_path / "dist/oci" / blob_name(layer.descriptor.digest)
    assert not destination.exists() and not partial_path(destination).exists()

"""Image config, manifest and index assembly: stacking on a base, Env and Cmd rules, digests."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping

import pytest

from .image import (
    DEFAULT_CREATED,
    DEFAULT_PATH,
    ConfigUpdate,
    Image,
    ImageError,
    Index,
    Layer,
    build_image,
    created_from_epoch,
)
from .types import (
    DOCKER_LAYER_TAR_GZIP,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    sha256_digest,
)

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


def fake_digest(seed: str) -> str:
    return sha256_digest(seed.encode())


def new_layer(name: str, media_type: str = OCI_LAYER_TAR) -> Layer:
    descriptor = Descriptor(media_type, fake_digest(name + "-blob"), 100)
    return Layer(descriptor, fake_digest(name + "-tar"), f"/blobs/{name}", f"layer {name}")


def base_image(config_overrides: Mapping[str, Any]) -> Image:
    """A base as a registry would hand it over: Docker media types, history with timestamps,
    fields this library does not model, and non-canonical JSON bytes."""
    layer_blob = Descriptor(
        DOCKER_LAYER_TAR_GZIP, fake_digest("base-blob"), 1234, annotations={"note": "kept"}
    )
    config: Dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "author": "someone",
        "created": "2023-05-06T07:08:09Z",
        "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [fake_digest("base-tar")]},
        "history": [{"created": "2023-05-06T07:08:09Z", "created_by": "ADD rootfs.tar /"}],
        **config_overrides,
    }
    config_bytes = json.dumps(config, indent=3).encode()
    return Image.from_blobs(config_bytes, [(layer_blob, "/base/blob")])


def container_config(image: Image) -> Dict[str, Any]:
    return dict(image.config["config"])


def env_after(base_env: List[str], update: Mapping[str, str]) -> List[str]:
    base = base_image({"config": {"Env": base_env}})
    return list(container_config(build_image(base, update=ConfigUpdate(env=update)))["Env"])


# Config -----------------------------------------------------------------------------------------


def test_image_from_scratch_has_every_field_given() -> None:
    healthcheck = {"Test": ["CMD", "/app/health"], "Interval": 30_000_000_000}
    update = ConfigUpdate(
        env={"GREETING": "hi"},
        entrypoint=["/app/run"],
        cmd=["--serve"],
        working_dir="/app",
        user="65532",
        exposed_ports=["8080", "53/udp"],
        labels={"org.opencontainers.image.source": "repo"},
        stop_signal="SIGINT",
        healthcheck=healthcheck,
    )
    layers = [new_layer("a"), new_layer("b", OCI_LAYER_TAR_GZIP)]
    image = build_image(Image.scratch(AMD64), layers, update)
    assert image.config == {
        "architecture": "amd64",
        "os": "linux",
        "created": DEFAULT_CREATED,
        "config": {
            "Env": ["GREETING=hi"],
            "Entrypoint": ["/app/run"],
            "Cmd": ["--serve"],
            "WorkingDir": "/app",
            "User": "65532",
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "Labels": {"org.opencontainers.image.source": "repo"},
            "StopSignal": "SIGINT",
            "Healthcheck": healthcheck,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created_by": "layer a"},
            {"created_by": "layer b"},
            {
                "created_by": "config: Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts,"
                " Labels, StopSignal, Healthcheck",
                "empty_layer": True,
            },
        ],
    }
    assert image.platform == AMD64


def test_created_is_fixed_or_derived_from_an_epoch() -> None:
    assert created_from_epoch(946684800) == DEFAULT_CREATED
    assert created_from_epoch(0) == "1970-01-01T00:00:00Z"
    image = build_image(Image.scratch(AMD64), created=created_from_epoch(1700000000))
    assert image.config["created"] == "2023-11-14T22:13:20Z"
    with pytest.raises(ImageError, match="negative"):
        created_from_epoch(-1)


def test_history_has_no_timestamps_of_its_own() -> None:
    image = build_image(base_image({}), [new_layer("app")], ConfigUpdate(user="1"))
    assert image.config["history"][0]["created"] == "2023-05-06T07:08:09Z"  # the base's, kept
    assert all("created" not in entry for entry in image.config["history"][1:])


def test_layers_without_description_get_an_empty_history_entry() -> None:
    layer = Layer(new_layer("x").descriptor, fake_digest("x-tar"), "/blobs/x")
    image = build_image(Image.scratch(AMD64), [layer])
    assert image.config["history"] == [{}]


# Stacking on a base -----------------------------------------------------------------------------


def test_base_layers_and_unknown_fields_are_carried() -> None:
    base = base_image({"config": {"Env": ["A=1"], "Volumes": {"/data": {}}}})
    image = build_image(base, [new_layer("app")])
    base_layer = image.layers[0]
    assert base_layer.descriptor == base.layers[0].descriptor
    manifest = json.loads(image.manifest_bytes)
    assert manifest["layers"][0] == {
        "mediaType": OCI_LAYER_TAR_GZIP,  # the OCI name of the same gzip bytes
        "digest": fake_digest("base-blob"),
        "size": 1234,
        "annotations": {"note": "kept"},
    }
    assert image.config["author"] == "someone"
    assert image.config["config"]["Volumes"] == {"/data": {}}
    assert image.config["rootfs"]["diff_ids"] == [fake_digest("base-tar"), fake_digest("app-tar")]
    assert image.config["history"][0]["created_by"] == "ADD rootfs.tar /"
    assert image.config["created"] == DEFAULT_CREATED


def test_base_config_bytes_are_kept_so_the_image_id_is_unchanged() -> None:
    base = base_image({})
    assert base.config_bytes != canonical_json(base.config)  # indented, as received
    assert base.image_id == sha256_digest(base.config_bytes)


def test_env_merge_replaces_in_place_appends_and_expands() -> None:
    merged = env_after(
        ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "A=1"],
        {"A": "2", "PATH": "/app/bin:${PATH}", "NEW": "${A}-x", "LANG": "C"},
    )
    assert merged == ["PATH=/app/bin:/usr/bin:/bin", "LANG=C", "A=2", "NEW=2-x"]


def test_unset_path_expands_to_the_runtime_default_and_other_names_fail() -> None:
    assert env_after([], {"PATH": "/app:${PATH}"}) == [f"PATH=/app:{DEFAULT_PATH}"]
    with pytest.raises(ImageError, match=r"X='\$\{NOPE\}' refers to \$\{NOPE\}"):
        env_after([], {"X": "${NOPE}"})
    assert env_after([], {"X": "$NOPE and $$"}) == ["X=$NOPE and $$"]  # only ${NAME} expands


def test_new_entrypoint_resets_the_inherited_cmd() -> None:
    base = base_image({"config": {"Entrypoint": ["/old"], "Cmd": ["sh"]}})
    only_entrypoint = build_image(base, update=ConfigUpdate(entrypoint=["/new"]))
    assert container_config(only_entrypoint) == {"Entrypoint": ["/new"]}
    both = build_image(base, update=ConfigUpdate(entrypoint=["/new"], cmd=["-v"]))
    assert container_config(both) == {"Entrypoint": ["/new"], "Cmd": ["-v"]}
    only_cmd = build_image(base, update=ConfigUpdate(cmd=["-v"]))
    assert container_config(only_cmd) == {"Entrypoint": ["/old"], "Cmd": ["-v"]}


def test_labels_and_ports_merge_with_the_base() -> None:
    base = base_image({"config": {"Labels": {"a": "1", "b": "1"}, "ExposedPorts": {"22/tcp": {}}}})
    update = ConfigUpdate(labels={"b": "2", "c": "3"}, exposed_ports=["8080/tcp"])
    config = container_config(build_image(base, update=update))
    assert config["Labels"] == {"a": "1", "b": "2", "c": "3"}
    assert config["ExposedPorts"] == {"22/tcp": {}, "8080/tcp": {}}


def test_config_update_reads_the_docker_field_names() -> None:
    update = ConfigUpdate.from_json({"Env": {"A": "1"}, "WorkingDir": "/w", "Entrypoint": []})
    assert update == ConfigUpdate(env={"A": "1"}, working_dir="/w", entrypoint=[])
    assert update.changed_fields() == ["Env", "Entrypoint", "WorkingDir"]


@pytest.mark.parametrize(
    "document, message",
    [
        ({"Workdir": "/app"}, "unknown config fields \\['Workdir'\\]"),
        ({"WorkingDir": "app"}, "WorkingDir must be absolute"),
        ({"ExposedPorts": ["http"]}, "exposed port must look like"),
        ({"ExposedPorts": ["70000"]}, "exposed port must look like"),
        ({"Env": ["A=1"]}, "Env must map strings to strings"),
        ({"Env": {"A=B": "1"}}, "Env name 'A=B'"),
        ({"Labels": {"a": 1}}, "Labels must map strings to strings"),
        ({"Entrypoint": "/app/run"}, "Entrypoint must be a list of strings"),
        ({"User": 65532}, "User must be a string"),
        ({"Healthcheck": ["CMD"]}, "Healthcheck must be an object"),
    ],
)
def test_config_update_refuses_malformed_fields(document: Mapping[str, Any], message: str) -> None:
    with pytest.raises(ImageError, match=message):
        ConfigUpdate.from_json(document)


# Manifest and digests ---------------------------------------------------------------------------


def test_manifest_and_digests_are_canonical() -> None:
    layer = new_layer("a")
    image = build_image(Image.scratch(AMD64), [layer], annotations={"k": "v"})
    assert image.config_bytes == canonical_json(image.config)
    assert image.image_id == image.config_descriptor.digest == sha256_digest(image.config_bytes)
    assert image.config_descriptor.media_type == OCI_CONFIG
    assert image.digest == sha256_digest(image.manifest_bytes)
    assert image.descriptor.size == len(image.manifest_bytes)
    assert image.descriptor.platform == AMD64
    assert image.manifest_bytes == canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": image.config_descriptor.to_json(),
            "layers": [layer.descriptor.to_json()],
            "annotations": {"k": "v"},
        }
    )


def test_same_inputs_give_the_same_image() -> None:
    def build() -> Image:
        return build_image(base_image({}), [new_layer("a")], ConfigUpdate(env={"A": "1"}))

    assert build().manifest_bytes == build().manifest_bytes


def test_diff_ids_must_match_the_layers() -> None:
    config = json.loads(Image.scratch(AMD64).config_bytes)
    with pytest.raises(ImageError, match="do not match the 1 layers"):
        Image.from_config(config, [new_layer("a")])
    with pytest.raises(ImageError, match="lists 0 diff_ids but 1 layers"):
        Image.from_blobs(canonical_json(config), [(new_layer("a").descriptor, "/blob")])


def test_configs_that_are_not_images_are_refused() -> None:
    with pytest.raises(ImageError, match="not JSON"):
        Image(b"{", [])
    with pytest.raises(ImageError, match="no 'architecture'"):
        Image(b'{"os": "linux"}', [])


def test_layers_an_oci_manifest_cannot_list_are_refused() -> None:
    foreign = new_layer("win", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    with pytest.raises(ImageError, match="cannot list"):
        build_image(Image.scratch(AMD64), [foreign])


# Index ------------------------------------------------------------------------------------------


def test_index_lists_one_manifest_per_platform() -> None:
    images = [build_image(Image.scratch(p), [new_layer(str(p))]) for p in (AMD64, ARM64)]
    index = Index(images)
    document = json.loads(index.index_bytes)
    assert document == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.descriptor.to_json() for image in images],
    }
    assert [entry["platform"] for entry in document["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    assert index.digest == sha256_digest(index.index_bytes)
    assert index.image_for(ARM64) is images[1]
    with pytest.raises(ImageError, match="no image for linux/s390x"):
        index.image_for(Platform("linux", "s390x"))


def test_index_refuses_repeated_platforms_and_emptiness() -> None:
    image = build_image(Image.scratch(AMD64))
    with pytest.raises(ImageError, match="repeated: \\['linux/amd64'\\]"):
        Index([image, image])
    with pytest.raises(ImageError, match="at least one image"):
        Index([])

from __future__ import annotations

import pytest

from .name import InvalidReference, Reference, Repository

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, registry, name, tag, digest",
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("index.docker.io/team/app", "docker.io", "team/app", "latest", None),
        ("team/app:v1", "docker.io", "team/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b/c:tag", "localhost:5000", "a/b/c", "tag", None),
        (f"127.0.0.1:5000/app@{DIGEST}", "127.0.0.1:5000", "app", None, DIGEST),
        (f"r.example/app:v2@{DIGEST}", "r.example", "app", "v2", DIGEST),
        ("[::1]:5000/app:v3", "[::1]:5000", "app", "v3", None),
        ("Registry.Example/app", "Registry.Example", "app", "latest", None),
        ("r.example/my-app/x__y.z:1_0-rc.1", "r.example", "my-app/x__y.z", "1_0-rc.1", None),
    ],
)
def test_parses_references(text: str, registry: str, name: str, tag: str, digest: str) -> None:
    reference = Reference.parse(text)
    assert reference.repository == Repository(registry, name)
    assert (reference.tag, reference.digest) == (tag, digest)
    assert Reference.parse(str(reference)) == reference


@pytest.mark.parametrize(
    "text",
    [
        "UPPER",
        "UPPER/case",
        "UPPER/Case",
        "r.example/App",
        "r.example//app",
        "r.example/app-",
        "r.example/app:-tag",
        "r.example/app:v1\n",
        "r.example/app:v\u00e9",
        "r.example/app:" + "t" * 129,
        "r.example/app@sha256:abc",
        f"r.example/app@sha512:{'ab' * 64}",
        "bad_host:5000/app",
        "r.example/" + "a" * 250,
    ],
)
def test_refuses_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        Reference.parse(text)


def test_docker_hub_references_compare_equal_however_written() -> None:
    # What matches an `oci_base` image to the CUDA table's entry.
    table = Reference.parse("nvidia/cuda:12.4.1-base-ubuntu22.04")
    for written in ("docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
                    "index.docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04"):  # fmt: skip
        assert Reference.parse(written) == table
    assert Reference.parse("docker.io/library/python:3.11") == Reference.parse("python:3.11")
    assert Reference.parse("r.example/nvidia/cuda:12.4.1-base-ubuntu22.04") != table


def test_a_capitalised_first_component_is_named_in_the_error() -> None:
    with pytest.raises(InvalidReference, match="^'UPPER/Case': `UPPER` has capital letters"):
        Repository.parse("UPPER/Case")


def test_a_digest_pins_the_manifest_even_with_a_tag() -> None:
    assert Reference.parse(f"r.example/app:v1@{DIGEST}").identifier == DIGEST
    assert Reference.parse("r.example/app").identifier == "latest"


def test_docker_hub_is_served_by_its_api_host() -> None:
    assert Repository.parse("busybox").api_host == "registry-1.docker.io"
    assert Repository.parse("r.example:443/app").api_host == "r.example:443"

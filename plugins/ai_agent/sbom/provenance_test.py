from __future__ import annotations

import json
from pathlib import Path

from .__main__ import document_bytes
from .provenance import BUILD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, provenance_statement
from .spdx_test import _spec


def test_an_in_toto_statement_with_slsa_provenance(tmp_path: Path) -> None:
    statement = provenance_statement(_spec(tmp_path))
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"] == [
        {"name": "registry.example.com/agents/router", "digest": {"sha256": "a" * 64}}
    ]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"]["target"] == "agents/router:router"
    assert definition["internalParameters"] == {"sourceDateEpoch": 1700000000}
    names = [dependency["name"] for dependency in definition["resolvedDependencies"]]
    assert names == [
        "lockfiles/agents.lock",
        "lockfiles/debian-bookworm-python.lock.json",
        "agents/router/agent.yaml",
        "router/router-centroids.npy",
        "router_agent/__main__.py",
        "agents/base:bookworm-python",
        "ai_agent plugin sources",
    ]
    base = definition["resolvedDependencies"][-2]
    assert base["digest"] == {"sha256": "b" * 64}
    assert base["uri"].startswith("pkg:oci/bookworm-python@sha256%3Abbbb")
    builder = statement["predicate"]["runDetails"]["builder"]
    assert builder["version"] == {"ai_agent": "0123456789ab", "pants": "2.17.1"}


def test_several_platforms_name_the_index_and_each_manifest(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    arm = {**spec["images"][0], "platform": "linux/arm64/v8", "manifest": "sha256:" + "e" * 64}
    spec = {**spec, "digest": "sha256:" + "f" * 64, "images": [spec["images"][0], arm]}
    subjects = provenance_statement(spec)["subject"]
    assert [subject["digest"]["sha256"][0] for subject in subjects] == ["f", "a", "e"]


def test_the_same_spec_gives_the_same_bytes(tmp_path: Path) -> None:
    first = document_bytes(provenance_statement(_spec(tmp_path)))
    assert first == document_bytes(provenance_statement(_spec(tmp_path)))
    assert "startedOn" not in json.loads(first)["predicate"]["runDetails"].get("metadata", {})

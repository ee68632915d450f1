"""An in-toto attestation statement v1 (https://in-toto.io/Statement/v1) whose predicate is SLSA
provenance v1 (https://slsa.dev/provenance/v1) for an image target's `package`.

- subject: the image's manifest digest (for several platforms, the index's, then each
  platform's manifest), named by the image's repository;
- buildDefinition: the build type (below), the target and goal as external parameters, the
  SOURCE_DATE_EPOCH and tool versions as internal ones, and as resolved dependencies the sha256 of
  every lock, of every first-party file in the image (code, config, weights), of the base image's
  manifest and of the plugin's own sources;
- runDetails: the builder (Pants with this plugin) and its versions; no invocation id and no
  start or finish time, so that the same inputs give the same bytes.

Nothing is signed here: a signature (DSSE envelope) is the publisher's to add.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from .spdx import _hex, oci_purl

IN_TOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# Identifiers of this plugin's build type and builder (URNs: the project publishes no URL that
# describes them; the README's "Supply chain" section does).
BUILD_TYPE = "urn:ai-agent:slsa:buildtype:pants-package:v1"
BUILDER_ID = "urn:ai-agent:slsa:builder:pants"


def provenance_statement(spec: Mapping[str, Any]) -> Dict[str, Any]:
    repository = spec["repository"]
    subjects = [{"name": repository, "digest": {"sha256": _hex(spec["digest"], "image digest")}}]
    if len(spec["images"]) > 1:
        subjects += [
            {
                "name": f"{repository} ({image['platform']})",
                "digest": {"sha256": _hex(image["manifest"], "platform manifest")},
            }
            for image in spec["images"]
        ]
    dependencies: List[Dict[str, Any]] = [
        {
            "name": lock["path"],
            "digest": {"sha256": lock["sha256"]},
            "annotations": {"kind": "lock"},
        }
        for lock in sorted(spec.get("locks") or (), key=lambda lock: lock["path"])
    ]
    sources: Dict[str, Dict[str, Any]] = {}
    bases: Dict[str, Dict[str, Any]] = {}
    for image in spec["images"]:
        for file in image.get("files") or ():
            sources[file["source"]] = {
                "name": file["source"],
                "digest": {"sha256": file["sha256"]},
                "annotations": {"kind": file["kind"], "imagePath": file["path"]},
            }
        base = image.get("base")
        if base:
            bases[base["manifest"]] = {
                "name": base["target"],
                "uri": oci_purl(base["repository"], base["manifest"]),
                "digest": {"sha256": _hex(base["manifest"], "base manifest")},
                "annotations": {"kind": "base image", "platform": image["platform"]},
            }
    dependencies += [sources[path] for path in sorted(sources)]
    dependencies += [bases[digest] for digest in sorted(bases)]
    plugin = spec["plugin"]
    dependencies.append(
        {
            "name": "ai_agent plugin sources",
            "digest": {"sha256": plugin["sha256"]},
            "annotations": {"kind": "build tool", "files": plugin["files"]},
        }
    )
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "target": spec["target"],
                    "goal": "package",
                    "repository": repository,
                    "tags": list(spec.get("tags") or ()),
                },
                "internalParameters": {
                    "sourceDateEpoch": spec["sourceDateEpoch"],
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": dict(sorted(spec["tools"].items()))},
                "metadata": {},
            },
        },
    }

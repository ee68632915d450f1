"""What every image in `dist/` must have beside it: a valid SPDX 2.3 SBOM per platform image (the
SPDX project's own validator, spdx-tools), a provenance statement naming the image's digest, and
an SBOM that accounts for every byte of every layer (`ai_agent.sbom.account`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping

from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from ai_agent.sbom.account import account_layout


def spdx_problems(document: Mapping[str, Any]) -> List[str]:
    parsed = JsonLikeDictParser().parse(json.loads(json.dumps(document)))
    return [
        problem.validation_message for problem in validate_full_spdx_document(parsed, "SPDX-2.3")
    ]


def check_image_supply_chain(dist: Path, metadata_path: Path) -> Dict[str, Any]:
    """Check the SBOM and provenance of the image whose metadata is `metadata_path`
    (`dist/…/<name>.tar.json`; its image in the OCI layout `dist/oci`); return the accounting
    reports by platform manifest."""
    metadata = json.loads(metadata_path.read_text())
    sbom = metadata["sbom"]
    documents = [json.loads((dist / path).read_text()) for path in sbom["spdx"]]
    for path, document in zip(sbom["spdx"], documents):
        assert spdx_problems(document) == [], path
    statement = json.loads((dist / sbom["provenance"]).read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"][0]["digest"] == {"sha256": metadata["digest"].split(":", 1)[1]}
    layout = dist / metadata["layout"]["directory"]
    reports = account_layout(layout, documents, metadata["layout"]["refNames"][0])
    problems = {digest: report.problems for digest, report in reports.items() if report.problems}
    assert problems == {}, json.dumps(problems, indent=2)[:20000]
    return {digest: report.to_json() for digest, report in reports.items()}

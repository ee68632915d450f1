"""What an installed distribution's core metadata (`<name>.dist-info/METADATA`, an email-style
header block) says of its licence: the SPDX `License-Expression` (metadata 2.4, PEP 639), the
free-text `License` field, and the `License ::` trove classifiers, as written. Turning them into
one SPDX expression is the SBOM writer's business; this only reads them, in the layer step that
has the files at hand.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Dict, Optional


def license_facts(metadata: bytes) -> Dict[str, Any]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(metadata)
    return {
        "expression": _text(headers.get("License-Expression")),
        "license": _text(headers.get("License")),
        "classifiers": [
            classifier.strip()
            for classifier in headers.get_all("Classifier") or []
            if classifier.strip().startswith("License ::")
        ],
    }


def _text(value: Optional[str]) -> Optional[str]:
    """A header's value with its folding undone; None where it is absent, empty or UNKNOWN."""
    if value is None:
        return None
    lines = [line.strip() for line in str(value).splitlines()]
    text = "\n".join(lines).strip()
    return None if not text or text.upper() == "UNKNOWN" else text

"""The command line that the Pants rules run: `python -m <this package> COMMAND`.

    write   --spec SPEC
    account --layout DIR [--name NAME] --spdx FILE [--spdx FILE ...]

`write` reads SPEC (JSON, written by `util_rules/sbom.py`; the facts files it names are read from
the working directory) and writes, at the paths it names, each platform image's SPDX 2.3 JSON
document (`images[].output`) and the in-toto statement with SLSA provenance (`provenance`).
SPEC:

    {"target": …, "repository": …, "tags": […], "digest": "sha256:…" (the manifest's, or the
     index's for several platforms), "sourceDateEpoch": N, "tools": {"ai_agent": …, "pants": …},
     "plugin": {"sha256": …, "files": N}, "locks": [{"path", "sha256"}], "provenance": PATH,
     "images": [{"platform", "manifest", "config", "output": PATH,
                 "base": {"target", "kind": "debian"|"registry", "repository", "manifest",
                          "lock": {"path", "sha256"}, "download"} | null,
                 "debian": PATH of a Debian layer step's packages.json | null,
                 "wheels": [{"project", "version", "filename", "url", "sha256"}],
                 "installed": [PATH of a wheel layer step's installed.json],
                 "files": [{"kind": "weights"|"code"|"config", "path": "/…", "source",
                            "sha256", "size"}]}]}

`account` maps every file of every layer of the image NAME (`ref.name`, e.g. `router:latest`;
default: the first) of the OCI image layout DIR to an entry of the SPDX
documents (one per platform image; `account.py`) and prints `{"<manifest digest>": {"files",
"bytes", "owners", "problems": […]}}`; it exits 1 if a file is unaccounted for, or its bytes
differ from what its package says, or an SBOM entry is not in the image.

On a bad input the exit status is 2 and stderr has one `error: …` line naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .account import account_layout
from .errors import SbomError
from .provenance import provenance_statement
from .spdx import spdx_document


def document_bytes(document: Any) -> bytes:
    """How the documents are written: indented for people, key order as built (deterministic)."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        raise SbomError(f"{path}: cannot read it as JSON: {error}") from None


def run_write(args: argparse.Namespace) -> Optional[int]:
    spec = _read_json(args.spec)
    try:
        outputs = [
            (image["output"], spdx_document(spec, image, _read_json)) for image in spec["images"]
        ]
        outputs.append((spec["provenance"], provenance_statement(spec)))
    except (KeyError, TypeError) as error:
        raise SbomError(f"{args.spec}: malformed spec ({type(error).__name__}: {error})") from None
    for path, document in outputs:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(document_bytes(document))
    return None


def run_account(args: argparse.Namespace) -> Optional[int]:
    documents = [_read_json(path) for path in args.spdx]
    reports = account_layout(args.layout, documents, args.name)
    print(json.dumps({digest: report.to_json() for digest, report in reports.items()}, indent=2))
    return 1 if any(report.problems for report in reports.values()) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description="Write and check images' SBOM and provenance."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write the SPDX documents and the provenance")
    write.add_argument("--spec", required=True)
    write.set_defaults(run=run_write)
    account = commands.add_parser("account", help="map every file of an image to its SBOM")
    account.set_defaults(run=run_account)
    account.add_argument("--layout", type=Path, required=True, help="an OCI image layout")
    account.add_argument("--name", help="the image's name in the layout (default: the first)")
    account.add_argument("--spdx", action="append", required=True, help="repeatable")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (SbomError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

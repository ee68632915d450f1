"""What a package's `/usr/share/doc/<package>/copyright` file says its licences are, where it says
so in Debian's machine-readable format (DEP-5,
https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/): the short name of the
`License` field of the header and of every `Files` paragraph, in order, each once. A copyright
file in free form states no licence a program can read: the answer is then empty, never a guess.
The names are Debian's (`GPL-2+`, `BSD-3-clause`, `Expat`); turning them into SPDX identifiers is
the SBOM writer's business.
"""

from __future__ import annotations

import re
from typing import Dict, List

_FORMAT = re.compile(r"^Format:\s*\S*copyright-format/1\.0", re.IGNORECASE)


def declared_licenses(text: str) -> List[str]:
    """The licence short names a DEP-5 copyright file declares for the package's files."""
    paragraphs = _paragraphs(text)
    if not paragraphs or not _FORMAT.match(paragraphs[0].get("\0first", "")):
        return []
    names: List[str] = []
    for index, paragraph in enumerate(paragraphs):
        # Stand-alone `License` paragraphs only give the text of a name used elsewhere.
        if index > 0 and "files" not in paragraph:
            continue
        name = " ".join(paragraph.get("license", "").split())
        if name and name not in names:
            names.append(name)
    return names


def _paragraphs(text: str) -> List[Dict[str, str]]:
    """Each paragraph's fields by lowercased name, with only the first line of each value (the
    synopsis); `\\0first` holds a paragraph's first line as written."""
    paragraphs: List[Dict[str, str]] = []
    current: Dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current = {}
            continue
        if line[0] in " \t" or line.startswith("#"):
            continue  # a continuation line (a value's text) or a comment
        name, colon, value = line.partition(":")
        if not colon:
            continue
        if not current:
            current["\0first"] = line
        current.setdefault(name.strip().lower(), value.strip())
    if current:
        paragraphs.append(current)
    return paragraphs

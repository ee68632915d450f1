"""Licence statements as SPDX licence expressions.

Debian copyright files name licences in their own way (`GPL-2+`, `BSD-3-clause`, `Expat`,
`GPL-3+ with GCC-exception`); Python metadata states them as a PEP 639 `License-Expression`, a
free-text `License` field or trove classifiers. A name this module knows becomes its SPDX
identifier; anything else becomes a `LicenseRef-` whose text (what the package says, and where)
is kept in the document's `hasExtractedLicensingInfos`, so no statement is lost and none is
guessed: an ambiguous classifier (`BSD License`: which BSD?) is a `LicenseRef-` too.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

NOASSERTION = "NOASSERTION"

# SPDX licence list identifiers this module emits (https://spdx.org/licenses/).
_SPDX_IDS = (
    "0BSD AGPL-3.0-only AGPL-3.0-or-later Apache-1.1 Apache-2.0 Artistic-2.0 BSD-1-Clause "
    "BSD-2-Clause BSD-3-Clause BSD-4-Clause BSL-1.0 bzip2-1.0.6 CC-BY-4.0 CC-BY-SA-4.0 CC0-1.0 "
    "curl EPL-1.0 EPL-2.0 FSFAP FSFUL FSFULLR GFDL-1.2-only GFDL-1.2-or-later GFDL-1.3-only "
    "GFDL-1.3-or-later GPL-1.0-only GPL-1.0-or-later GPL-2.0-only GPL-2.0-or-later GPL-3.0-only "
    "GPL-3.0-or-later HPND ISC Latex2e LGPL-2.0-only LGPL-2.0-or-later LGPL-2.1-only "
    "LGPL-2.1-or-later LGPL-3.0-only LGPL-3.0-or-later MIT MIT-0 MPL-1.1 MPL-2.0 MS-PL NCSA "
    "OpenSSL PSF-2.0 Python-2.0 "
    "Sleepycat Unicode-DFS-2016 Unicode-3.0 Unlicense WTFPL X11 Zlib ZPL-2.1"
).split()
_SPDX_EXCEPTIONS = (
    "Autoconf-exception-2.0 Autoconf-exception-3.0 Bison-exception-2.2 Classpath-exception-2.0 "
    "GCC-exception-2.0 GCC-exception-3.1 LLVM-exception Libtool-exception"
).split()
_BY_LOWER = {identifier.lower(): identifier for identifier in _SPDX_IDS}
_EXCEPTIONS_BY_LOWER = {identifier.lower(): identifier for identifier in _SPDX_EXCEPTIONS}

# Debian's short names (https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
# #license-short-name) and common spellings, lowercased.
_DEBIAN = {
    "expat": "MIT",
    "public-domain": None,
    "zlib": "Zlib",
    "psf-2": "PSF-2.0",
    "psf-2.0": "PSF-2.0",
    "boost-1.0": "BSL-1.0",
    "cc0": "CC0-1.0",
    "apache-2": "Apache-2.0",
    "mpl-2": "MPL-2.0",
    **{
        f"{name}-{version}": f"{spdx}-{version_spdx}-only"
        for name, spdx, version, version_spdx in (
            ("gpl", "GPL", "1", "1.0"),
            ("gpl", "GPL", "2", "2.0"),
            ("gpl", "GPL", "3", "3.0"),
            ("lgpl", "LGPL", "2", "2.0"),
            ("lgpl", "LGPL", "2.1", "2.1"),
            ("lgpl", "LGPL", "3", "3.0"),
            ("agpl", "AGPL", "3", "3.0"),
            ("gfdl", "GFDL", "1.2", "1.2"),
            ("gfdl", "GFDL", "1.3", "1.3"),
            ("gpl", "GPL", "2.0", "2.0"),
            ("gpl", "GPL", "3.0", "3.0"),
            ("lgpl", "LGPL", "2.0", "2.0"),
            ("lgpl", "LGPL", "3.0", "3.0"),
        )
    },
}
_DEBIAN_EXCEPTIONS = {
    ("gcc", "3"): "GCC-exception-3.1",
    ("gcc", "2"): "GCC-exception-2.0",
    ("autoconf", "3"): "Autoconf-exception-3.0",
    ("autoconf", "2"): "Autoconf-exception-2.0",
    ("bison", ""): "Bison-exception-2.2",
    ("libtool", ""): "Libtool-exception",
    ("classpath", ""): "Classpath-exception-2.0",
}

# Trove classifiers that name exactly one licence.
_CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: zlib/libpng License": "Zlib",
    "License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "License :: OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "License :: OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "License :: OSI Approved :: GNU Library or Lesser General Public License (LGPL)": None,
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "License :: OSI Approved :: Apache Software License": None,  # 1.1 or 2.0: not said
    "License :: OSI Approved :: BSD License": None,  # which BSD: not said
}
# Short `License` field values (lowercased) and what they name.
_PYTHON_NAMES = {
    "mit license": "MIT",
    "the mit license": "MIT",
    "apache 2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0",
    "bsd 3-clause": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "psf": "PSF-2.0",
    "mpl 2.0": "MPL-2.0",
}
_SHORT_FIELD = 80


class Licenses:
    """Turns licence statements into SPDX expressions, collecting the `LicenseRef-`s used with
    their texts (`extracted()`, the document's `hasExtractedLicensingInfos`)."""

    def __init__(self) -> None:
        self._texts: Dict[str, str] = {}
        self._names: Dict[str, str] = {}

    def debian(self, package: str, names: Iterable[str], copyright_path: Optional[str]) -> str:
        """The licences a Debian package's copyright file declares, all of them applying to
        some of its files: joined with AND."""
        terms = [self._debian_term(name, package, copyright_path) for name in names]
        terms = list(dict.fromkeys(terms))
        if not terms:
            return NOASSERTION
        return " AND ".join(
            f"({term})" if " " in term and len(terms) > 1 else term for term in terms
        )

    def python(self, project: str, facts: Optional[Mapping[str, object]]) -> str:
        """What a distribution's METADATA declares (`wheels.metadata.license_facts`)."""
        if not facts:
            return NOASSERTION
        expression = facts.get("expression")
        if isinstance(expression, str):
            known = _spdx_expression(expression, _spdx_id)
            return known or self._ref(
                f"PyPI-{project}", expression, f"License-Expression of {project}"
            )
        text = facts.get("license")
        if isinstance(text, str) and "\n" not in text and len(text) <= _SHORT_FIELD:
            known = _spdx_expression(text, _python_name)
            if known:
                return known
        listed = facts.get("classifiers")
        classifiers = [str(item) for item in listed] if isinstance(listed, (list, tuple)) else []
        mapped = [_CLASSIFIERS.get(classifier) for classifier in classifiers]
        if classifiers and all(mapped):
            return " AND ".join(dict.fromkeys(str(identifier) for identifier in mapped))
        if isinstance(text, str):
            return self._ref(f"PyPI-{project}", text, f"the License field of {project}'s METADATA")
        if classifiers:
            terms = [
                identifier
                or self._ref(classifier.rsplit(" :: ", 1)[-1], classifier, "a trove classifier")
                for classifier, identifier in zip(classifiers, mapped)
            ]
            return " AND ".join(dict.fromkeys(terms))
        return NOASSERTION

    def extracted(self) -> List[Dict[str, str]]:
        return [
            {"licenseId": identifier, "name": self._names[identifier], "extractedText": text}
            for identifier, text in sorted(self._texts.items())
        ]

    def _debian_term(self, name: str, package: str, copyright_path: Optional[str]) -> str:
        text = " ".join(name.split())
        # `GPL-2+ or Artistic`, `GPL-2+ and BSD-3-clause`, `GPL-3+ with GCC-exception`.
        words = re.split(r"\s+(or|and)\s+", text, flags=re.IGNORECASE)
        parts: List[str] = []
        for index, word in enumerate(words):
            if index % 2:
                parts.append(word.upper())
                continue
            single = _debian_single(word.rstrip(","))
            if single is None:
                where = copyright_path or f"/usr/share/doc/{package}/copyright"
                single = self._ref(
                    f"Debian-{word}",
                    f"The licence Debian's copyright files name `{word}`; its text is in each"
                    f" such file, e.g. {where}.",
                    f"Debian: {word}",
                )
            parts.append(single)
        return " ".join(parts)

    def _ref(self, key: str, text: str, name: str) -> str:
        identifier = "LicenseRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")
        self._texts.setdefault(identifier, text)
        self._names.setdefault(identifier, name)
        return identifier


def _debian_single(name: str) -> Optional[str]:
    """`GPL-2+`, `bsd-3-clause`, `GPL-3+ with GCC-exception` as SPDX, or None."""
    match = re.fullmatch(r"(\S+?)(\+?)(?:\s+with\s+(\S+?)(?:[- ]exception)?)?", name, re.IGNORECASE)
    if not match:
        return None
    base, plus, exception = match.group(1).lower(), match.group(2), match.group(3)
    identifier = _DEBIAN.get(base, _BY_LOWER.get(base))
    if identifier is None:
        return None
    if plus:
        if not identifier.endswith("-only"):
            return None
        identifier = identifier[: -len("-only")] + "-or-later"
    if exception:
        version = re.search(r"-(\d)", identifier)
        spdx_exception = _DEBIAN_EXCEPTIONS.get(
            (exception.lower(), version.group(1) if version else "")
        ) or _DEBIAN_EXCEPTIONS.get((exception.lower(), ""))
        if spdx_exception is None:
            return None
        identifier = f"{identifier} WITH {spdx_exception}"
    return identifier


def _spdx_id(name: str) -> Optional[str]:
    return _BY_LOWER.get(name.lower())


def _python_name(name: str) -> Optional[str]:
    return _BY_LOWER.get(name.lower()) or _PYTHON_NAMES.get(name.lower())


def _spdx_expression(text: str, identify: Callable[[str], Optional[str]]) -> Optional[str]:
    """`text` as an SPDX expression if every licence in it is known (`identify`), else None."""
    whole = identify(text.strip())
    if whole:
        return whole
    out: List[str] = []
    after_with = False
    for token in re.findall(r"\(|\)|[^\s()]+", text):
        operator = token.upper()
        if token in "()":
            out.append(token)
        elif operator in ("AND", "OR", "WITH"):
            out.append(operator)
        elif after_with:
            exception = _EXCEPTIONS_BY_LOWER.get(token.lower())
            if exception is None:
                return None
            out.append(exception)
        else:
            identifier = identify(token)
            if identifier is None:
                return None
            out.append(identifier)
        after_with = operator == "WITH"
    return " ".join(out).replace("( ", "(").replace(" )", ")") or None


def spdx_identifiers() -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Every licence and every exception identifier this module may emit (the tests check
    them against the SPDX licence list)."""
    licences = (
        *_SPDX_IDS,
        *(v for v in _DEBIAN.values() if v),
        *filter(None, _CLASSIFIERS.values()),
    )
    return tuple(dict.fromkeys(licences)), tuple(_SPDX_EXCEPTIONS)

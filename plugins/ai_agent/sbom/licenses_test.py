from __future__ import annotations

import pytest
from spdx_tools.common.spdx_licensing import spdx_licensing

from .licenses import NOASSERTION, Licenses, spdx_identifiers


def test_every_identifier_emitted_is_on_the_spdx_licence_list() -> None:
    licences, exceptions = spdx_identifiers()
    for identifier in licences:
        assert not spdx_licensing.validate(identifier).errors, identifier
    for exception in exceptions:
        assert not spdx_licensing.validate(f"GPL-2.0-or-later WITH {exception}").errors, exception


@pytest.mark.parametrize(
    "names, expression",
    [
        (["GPL-2+"], "GPL-2.0-or-later"),
        (["GPL-2"], "GPL-2.0-only"),
        (["LGPL-2.1+", "Expat"], "LGPL-2.1-or-later AND MIT"),
        (
            ["BSD-3-clause", "GPL-2+ or Artistic"],
            "BSD-3-Clause AND (GPL-2.0-or-later OR LicenseRef-Debian-Artistic)",
        ),
        (["GPL-3+ with GCC-exception"], "GPL-3.0-or-later WITH GCC-exception-3.1"),
        (["Zlib"], "Zlib"),
        ([], NOASSERTION),
    ],
)
def test_debian_short_names(names: list, expression: str) -> None:
    assert Licenses().debian("p", names, "/usr/share/doc/p/copyright") == expression


def test_an_unknown_debian_name_keeps_its_name_and_where_its_text_is() -> None:
    licenses = Licenses()
    assert licenses.debian("tzdata", ["public-domain"], "/usr/share/doc/tzdata/copyright") == (
        "LicenseRef-Debian-public-domain"
    )
    (info,) = licenses.extracted()
    assert info["licenseId"] == "LicenseRef-Debian-public-domain"
    assert "/usr/share/doc/tzdata/copyright" in info["extractedText"]


@pytest.mark.parametrize(
    "facts, expression",
    [
        ({"expression": "MIT OR Apache-2.0"}, "MIT OR Apache-2.0"),
        (
            {"expression": "bsd-3-clause AND (MIT OR Apache-2.0 WITH LLVM-exception)"},
            "BSD-3-Clause AND (MIT OR Apache-2.0 WITH LLVM-exception)",
        ),
        ({"license": "MIT License"}, "MIT"),
        ({"license": "BSD-3-Clause"}, "BSD-3-Clause"),
        ({"classifiers": ["License :: OSI Approved :: MIT License"]}, "MIT"),
        (None, NOASSERTION),
        ({"expression": None, "license": None, "classifiers": []}, NOASSERTION),
    ],
)
def test_python_metadata(facts: dict, expression: str) -> None:
    assert Licenses().python("p", facts) == expression


def test_an_ambiguous_classifier_or_free_text_is_a_licence_ref_with_its_text() -> None:
    licenses = Licenses()
    assert licenses.python("numpy", {"license": "Copyright (c) NumPy\nAll rights reserved."}) == (
        "LicenseRef-PyPI-numpy"
    )
    assert licenses.python("x", {"classifiers": ["License :: OSI Approved :: BSD License"]}) == (
        "LicenseRef-BSD-License"
    )
    texts = {info["licenseId"]: info["extractedText"] for info in licenses.extracted()}
    assert texts == {
        "LicenseRef-BSD-License": "License :: OSI Approved :: BSD License",
        "LicenseRef-PyPI-numpy": "Copyright (c) NumPy\nAll rights reserved.",
    }

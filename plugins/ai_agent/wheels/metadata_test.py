from __future__ import annotations

from .metadata import license_facts


def test_the_licence_fields_and_classifiers_as_written() -> None:
    metadata = (
        b"Metadata-Version: 2.1\nName: numpy\nVersion: 2.1.3\n"
        b"License: Copyright (c) 2005-2024, NumPy Developers.\n"
        b"        All rights reserved.\n"
        b"Classifier: Programming Language :: Python\n"
        b"Classifier: License :: OSI Approved :: BSD License\n"
        b"\nthe long description\nLicense: not a header\n"
    )
    assert license_facts(metadata) == {
        "expression": None,
        "license": "Copyright (c) 2005-2024, NumPy Developers.\nAll rights reserved.",
        "classifiers": ["License :: OSI Approved :: BSD License"],
    }


def test_a_pep_639_expression_and_unknown() -> None:
    metadata = (
        b"Metadata-Version: 2.4\nName: x\nLicense-Expression: MIT OR Apache-2.0\nLicense: UNKNOWN\n"
    )
    assert license_facts(metadata) == {
        "expression": "MIT OR Apache-2.0",
        "license": None,
        "classifiers": [],
    }

from __future__ import annotations

from .copyright import declared_licenses

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: bzip2
Source: https://sourceware.org/bzip2/

Files: *
Copyright: 1996-2010 Julian R Seward
License: BSD-variant
 This program, "bzip2", ...
 .
 more text

Files: debian/*
Copyright: 2004-2019 Anibal Monsalve Salazar
License: GPL-2+
 This package is free software

Files: tests/*
Copyright: someone
License:   GPL-2+

License: BSD-variant
 The full text.
"""


def test_the_license_of_every_files_paragraph_in_order_once() -> None:
    assert declared_licenses(DEP5) == ["BSD-variant", "GPL-2+"]


def test_a_header_license_counts_too() -> None:
    text = (
        "Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0\n"
        "License: MIT\n\nFiles: *\nCopyright: x\nLicense: GPL-3+ with GCC-exception\n"
    )
    assert declared_licenses(text) == ["MIT", "GPL-3+ with GCC-exception"]


def test_a_free_form_copyright_file_declares_nothing_readable() -> None:
    text = "This is the Debian prepackaged version of zlib.\n\nLicense: zlib, see below\n"
    assert declared_licenses(text) == []
    assert declared_licenses("") == []

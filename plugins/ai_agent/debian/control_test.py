"""deb822 parsing and writing, on a real dpkg status stanza."""

from __future__ import annotations

import pytest

from .control import ControlSyntaxError, format_stanza, parse_single_stanza, parse_stanzas

# From a Debian 12 /var/lib/dpkg/status.
ADDUSER = """Package: adduser
Status: install ok installed
Priority: important
Section: admin
Installed-Size: 686
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Multi-Arch: foreign
Version: 3.134
Depends: passwd
Suggests: liblocale-gettext-perl, perl, cron, quota
Conffiles:
 /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18
 /etc/deluser.conf 11a06baf8245fd8d690b99024d228c1f
Description: add and remove users and groups
 This package includes the 'adduser' and 'deluser' commands for creating
 and removing users.
 .
  - 'adduser' creates new users and groups and adds existing users to
    existing groups;
"""


def test_a_stanza_round_trips_byte_for_byte() -> None:
    fields = parse_single_stanza(ADDUSER, "status")
    assert list(fields)[:3] == ["Package", "Status", "Priority"]
    assert fields["Conffiles"].startswith("\n /etc/adduser.conf ")
    assert fields["Description"].startswith("add and remove users and groups\n This package")
    assert format_stanza(fields) == ADDUSER


def test_stanzas_are_numbered_and_filtered() -> None:
    text = ADDUSER + "\n\n" + "Package: passwd\nVersion: 1:4.13+dfsg1-1+b1\n"
    stanzas = list(parse_stanzas(text, "status", keep=("Package", "Version")))
    assert stanzas == [
        (1, {"Package": "adduser", "Version": "3.134"}),
        (23, {"Package": "passwd", "Version": "1:4.13+dfsg1-1+b1"}),
    ]


@pytest.mark.parametrize(
    "text, complaint",
    [
        (" leading continuation\n", "status:1: continuation line without a field"),
        ("Package: a\nno colon here\n", "status:2: expected `Field: value`"),
        ("Package: a\nPackage: b\n", "status:2: field Package given twice"),
    ],
)
def test_syntax_errors_name_the_line(text: str, complaint: str) -> None:
    with pytest.raises(ControlSyntaxError, match=complaint):
        list(parse_stanzas(text, "status"))


def test_a_single_stanza_is_required_where_one_is_expected() -> None:
    with pytest.raises(ControlSyntaxError, match="expected one stanza, found 2"):
        parse_single_stanza("A: 1\n\nB: 2\n", "control")

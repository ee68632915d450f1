"""Debian control data (deb822): the stanzas of Release and Packages indexes, of a .deb's
`control` file and of dpkg's `status` database.

A stanza maps field names to values in the order they appeared. A value keeps its continuation
lines verbatim (each starts with a space, joined with newlines), so writing a stanza back gives
the text dpkg would write: `Description` and `Conffiles` survive byte for byte.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, Mapping, Tuple

from .errors import DebianError

Stanza = Dict[str, str]


class ControlSyntaxError(DebianError, ValueError):
    """Text that is not deb822; the message names the source and line."""


def parse_stanzas(text: str, source: str, keep: Iterable[str] = ()) -> Iterator[Tuple[int, Stanza]]:
    """The stanzas of `text` with the line number each starts on. With `keep`, only those fields
    are stored (reading a 50 MB Packages index is then mostly skipping)."""
    wanted = frozenset(keep)
    stanza: Stanza = {}
    start = 0  # the line the current stanza starts on; 0 between stanzas
    field = ""  # the field continuation lines extend; "" while skipping a field
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if stanza:
                yield start, stanza
            stanza, start, field = {}, 0, ""
            continue
        if line[0] in " \t":
            if not start:
                raise ControlSyntaxError(f"{source}:{number}: continuation line without a field")
            if field:
                stanza[field] += "\n" + line
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or " " in name:
            raise ControlSyntaxError(f"{source}:{number}: expected `Field: value`, got {line!r}")
        start = start or number
        if wanted and name not in wanted:
            field = ""
            continue
        if name in stanza:
            raise ControlSyntaxError(f"{source}:{number}: field {name} given twice in one stanza")
        field = name
        stanza[name] = value.strip()
    if stanza:
        yield start, stanza


def parse_single_stanza(text: str, source: str) -> Stanza:
    """The one stanza of a control file or Release file."""
    stanzas = [stanza for _, stanza in parse_stanzas(text, source)]
    if len(stanzas) != 1:
        raise ControlSyntaxError(f"{source}: expected one stanza, found {len(stanzas)}")
    return stanzas[0]


def format_stanza(fields: Mapping[str, str]) -> str:
    """Fields as deb822 text ending in a newline; multi-line values keep their lines."""
    lines = []
    for name, value in fields.items():
        separator = "" if value.startswith("\n") or not value else " "
        lines.append(f"{name}:{separator}{value}")
    return "\n".join(lines) + "\n"

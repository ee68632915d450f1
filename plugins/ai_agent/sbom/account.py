"""Every byte of an image accounted for: each file of each layer of an OCI image layout mapped
to an entry of the image's SPDX document (`spdx.py`), through what the image itself says:

- Debian packages: dpkg's file lists (`/var/lib/dpkg/info/<package>[:<arch>].list`, paths as
  the .deb ships them, placed under `/usr` by usr-merge) and the package's own dpkg info files;
  each file's bytes are checked against the package's `md5sums` where it lists the file;
- wheels: each `.dist-info/RECORD` (paths relative to the site-packages directory), each file's
  bytes checked against its RECORD sha256;
- the agent's weight, code and config files: their image path and sha256 in the SBOM;
- files that no package ships but the build writes, each named in `GENERATED` with why, and the
  bytecode (`__pycache__/<module>.<tag>.pyc`) of an accounted-for `.py` file.

Anything else is unaccounted for, and named. So is a package the SBOM lists that the image does
not hold, and a package the image holds that the SBOM does not list.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from .errors import SbomError

# Paths no package ships, written by the build, and why.
GENERATED: Mapping[str, str] = {
    "etc/passwd": "root, nobody and nonroot, written by the Debian layer step",
    "etc/group": "root, nobody and nonroot, written by the Debian layer step",
    "etc/nsswitch.conf": "Debian's default name service order, written by the Debian layer step",
    "etc/localtime": "UTC, a link written by the Debian layer step (tzdata's postinst would)",
    "usr/lib/os-release": "written by the Debian layer step unless base-files ships it",
    "etc/os-release": "a link to ../usr/lib/os-release, as base-files has it",
    "etc/ld.so.cache": "ldconfig's cache, built by the Debian layer step from the libraries",
    "etc/ssl/certs/ca-certificates.crt": "the CA bundle, built from ca-certificates' certificates",
    "usr/bin/python3": "a link to the newest python3.N (python3-minimal's job, not installed)",
    "var/lib/dpkg/status": "dpkg's database of the installed packages",
    "var/lib/dpkg/info/format": "dpkg's database format",
    "bin": "usr-merge link",
    "sbin": "usr-merge link",
    "lib": "usr-merge link",
    "lib32": "usr-merge link",
    "lib64": "usr-merge link",
    "libx32": "usr-merge link",
}
# The virtual environment's own files (`wheels.install.InstallLayout.venv_entries`).
_VENV = re.compile(r"^(?P<prefix>.+)/(pyvenv\.cfg|bin/python[0-9.]*)$")
_USR_MERGED = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
_DPKG_INFO = "var/lib/dpkg/info/"
_PYC = re.compile(r"^(?P<dir>(?:.*/)?)__pycache__/(?P<stem>[^/.]+)\.[^/]+\.pyc$")
_RECORD = re.compile(r"^(?P<site>.+)/(?P<dist>[^/]+)\.dist-info/RECORD$")


@dataclass
class _File:
    layer: int
    kind: str  # "file" or "symlink"
    size: int = 0
    sha256: str = ""
    md5: str = ""
    target: str = ""


@dataclass
class Report:
    """What `account` found: files (and bytes) looked at, and the problems."""

    files: int = 0
    bytes: int = 0
    unaccounted: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    owners: Dict[str, int] = field(default_factory=dict)

    @property
    def problems(self) -> List[str]:
        return [
            *(f"unaccounted: {item}" for item in self.unaccounted),
            *(f"bytes differ: {item}" for item in self.mismatched),
            *(f"SBOM entry not in the image: {item}" for item in self.missing),
        ]

    def to_json(self) -> Dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "owners": dict(sorted(self.owners.items())),
            "problems": self.problems,
        }


def account_layout(
    layout: Path, documents: Sequence[Mapping[str, Any]], name: Optional[str] = None
) -> Dict[str, Report]:
    """A report per platform manifest of the layout's image named `name` (`ref.name` in its
    `index.json`; without a name, its index's first entry), each checked against the document
    whose image package is that manifest."""
    by_manifest = {_image_digest(document): document for document in documents}
    reports = {}
    for manifest_digest in _manifests(layout, name):
        document = by_manifest.get(manifest_digest)
        if document is None:
            raise SbomError(f"no SPDX document describes the image {manifest_digest}")
        manifest = _blob_json(layout, manifest_digest)
        layers = [_blob(layout, layer["digest"]) for layer in manifest["layers"]]
        reports[manifest_digest] = account_layers(layers, document)
    return reports


def account_layers(layers: Sequence[Path], document: Mapping[str, Any]) -> Report:
    files, texts = _read_layers(layers)
    report = Report(files=len(files), bytes=sum(file.size for file in files.values()))
    owners: Dict[str, str] = {}
    expected_md5: Dict[str, str] = {}
    expected_sha256: Dict[str, str] = {}
    debs = {
        package["name"]
        for package in document["packages"]
        if package["SPDXID"].startswith("SPDXRef-Deb-")
    }
    wheels = {
        (_normalise(package["name"]), package.get("versionInfo"))
        for package in document["packages"]
        if package["SPDXID"].startswith("SPDXRef-PyPI-")
    }
    found_debs, found_wheels = set(), set()
    for path, text in sorted(texts.items()):
        if path.startswith(_DPKG_INFO) and path.endswith(".list"):
            deb = path[len(_DPKG_INFO) : -len(".list")].split(":")[0]
            owner = f"deb {deb}" if deb in debs else None
            found_debs.add(deb)
            for line in text.splitlines():
                listed = _usr_merged(line.strip().lstrip("/"))
                if listed and listed != ".":
                    owners.setdefault(
                        listed,
                        owner or f"!dpkg lists it for {deb}, which the SBOM does not name",
                    )
            prefix = path[: -len(".list")] + "."
            for info in files:
                if info.startswith(prefix) and "/" not in info[len(_DPKG_INFO) :]:
                    owners.setdefault(info, owner or f"!dpkg info of {deb}, not in the SBOM")
        elif path.startswith(_DPKG_INFO) and path.endswith(".md5sums"):
            for line in text.splitlines():
                digest, _, listed = line.partition("  ")
                if listed:
                    expected_md5[_usr_merged(listed.strip())] = digest.strip()
        else:
            match = _RECORD.match(path)
            if not match:
                continue
            name, _, version = match.group("dist").partition("-")
            key = (_normalise(name), version)
            found_wheels.add(key)
            owner = f"wheel {name} {version}" if key in wheels else None
            for row in csv.reader(io.StringIO(text)):
                if not row or not row[0]:
                    continue
                listed = posixpath.normpath(posixpath.join(match.group("site"), row[0]))
                owners.setdefault(listed, owner or f"!RECORD of {name} {version}, not in the SBOM")
                if len(row) > 1 and row[1].startswith("sha256="):
                    expected_sha256[listed] = _b64_to_hex(row[1][len("sha256=") :])
    for package in document["packages"]:
        name = package.get("packageFileName", "")
        purpose = package.get("primaryPackagePurpose")
        if purpose in ("FILE", "SOURCE") and name.startswith("/"):
            path = name.lstrip("/")
            owners[path] = f"{package['SPDXID'].split('-')[1].lower()} {name}"
            expected_sha256[path] = package["checksums"][0]["checksumValue"]
            if path not in files:
                report.missing.append(f"{package['SPDXID']} {name}")
    report.missing += [f"Debian package {name}" for name in sorted(debs - found_debs)]
    report.missing += [f"wheel {name} {version}" for name, version in sorted(wheels - found_wheels)]
    for path, file in sorted(files.items()):
        owner = owners.get(path) or _generated(path, owners)
        if owner is None:
            report.unaccounted.append(f"/{path} (layer {file.layer + 1})")
            continue
        if owner.startswith("!"):
            report.unaccounted.append(f"/{path}: {owner[1:]}")
            continue
        kind = owner.split(" ", 1)[0]
        report.owners[kind] = report.owners.get(kind, 0) + 1
        if file.kind != "file":
            continue
        if path in expected_sha256 and expected_sha256[path] != file.sha256:
            report.mismatched.append(
                f"/{path}: sha256 {file.sha256}, {owner} says {expected_sha256[path]}"
            )
        elif path in expected_md5 and expected_md5[path] != file.md5:
            report.mismatched.append(
                f"/{path}: md5 {file.md5}, {owner}'s md5sums say {expected_md5[path]}"
            )
    return report


def _generated(path: str, owners: Mapping[str, str]) -> Optional[str]:
    if path in GENERATED:
        return f"generated {GENERATED[path]}"
    pyc = _PYC.match(path)
    if pyc:
        source = f"{pyc.group('dir')}{pyc.group('stem')}.py"
        if source in owners and not owners[source].startswith("!"):
            return f"bytecode of /{source}"
    if _VENV.match(path):
        return "venv file"
    return None


def _usr_merged(path: str) -> str:
    top = path.split("/", 1)[0]
    return f"usr/{path}" if top in _USR_MERGED and path != top else path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _b64_to_hex(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def _is_text_needed(path: str) -> bool:
    return (path.startswith(_DPKG_INFO) and path.endswith((".list", ".md5sums"))) or bool(
        _RECORD.match(path)
    )


def _read_layers(layers: Sequence[Path]) -> Tuple[Dict[str, _File], Dict[str, str]]:
    """Every file and symlink of the layers (by path, relative to /), hashed; the text of the
    dpkg lists, md5sums and RECORDs."""
    files: Dict[str, _File] = {}
    texts: Dict[str, str] = {}
    for index, layer in enumerate(layers):
        for member, content in _members(layer):
            name = member.name[2:] if member.name.startswith("./") else member.name
            path = posixpath.normpath(name.strip("/") or ".")
            if member.isdir() or path == ".":
                continue
            if member.issym() or member.islnk():
                files[path] = _File(index, "symlink", target=member.linkname)
                continue
            if not member.isreg() or content is None:
                raise SbomError(f"/{path}: a {member.type!r} member, neither file nor link")
            sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
            keep = _is_text_needed(path)
            kept = bytearray()
            stream = content
            for chunk in iter(lambda: stream.read(1 << 20), b""):  # noqa: B023
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                if keep:
                    kept += chunk
            files[path] = _File(index, "file", size, sha256.hexdigest(), md5.hexdigest())
            if keep:
                texts[path] = kept.decode("utf-8", "replace")
    return files, texts


def _members(layer: Path) -> Iterator[Tuple[tarfile.TarInfo, Optional[Any]]]:
    with tarfile.open(layer, "r|*") as archive:
        for member in archive:
            yield member, archive.extractfile(member) if member.isreg() else None


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, value = digest.partition(":")
    return layout / "blobs" / algorithm / value


def _blob_json(layout: Path, digest: str) -> Any:
    return json.loads(_blob(layout, digest).read_bytes())


def _manifests(layout: Path, name: Optional[str]) -> List[str]:
    index = json.loads((layout / "index.json").read_bytes())
    named = [
        entry
        for entry in index["manifests"]
        if name is None or (entry.get("annotations") or {}).get(_REF_NAME) == name
    ]
    if not named:
        raise SbomError(f"{layout}: no image is named {name}")
    top = named[0]
    if top["mediaType"].endswith("index.v1+json") or top["mediaType"].endswith("list.v2+json"):
        return [entry["digest"] for entry in _blob_json(layout, top["digest"])["manifests"]]
    return [top["digest"]]


# What names an image in an OCI layout's index.json.
_REF_NAME = "org.opencontainers.image.ref.name"


def _image_digest(document: Mapping[str, Any]) -> str:
    (image,) = (p for p in document["packages"] if p["SPDXID"] == "SPDXRef-Image")
    return f"sha256:{image['checksums'][0]['checksumValue']}"

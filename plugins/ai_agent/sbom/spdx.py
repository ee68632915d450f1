"""An SPDX 2.3 JSON document (https://spdx.github.io/spdx-spec/v2.3/) for one platform image.

Packages, in this order (the bytes depend on the spec alone: no clock, no random UUID):

- the image (`SPDXRef-Image`, purpose CONTAINER): its manifest digest as a SHA256 checksum and an
  OCI purl; the document DESCRIBES it;
- its base (`SPDXRef-Base`): the base image's manifest digest, its repository or reference and
  lock; the image is a DESCENDANT_OF it;
- every Debian package (`SPDXRef-Deb-…`, from the base layer step's `packages.json`): name,
  version, architecture, the .deb's sha256, the source package, a `pkg:deb/debian/…` purl and the
  licences its copyright file declares; the base and the image CONTAIN each;
- every wheel (`SPDXRef-PyPI-…`, from the plan and the wheel layer steps' `installed.json`):
  name, version, the wheel's file name, URL and sha256, a `pkg:pypi/…` purl, the licence its
  METADATA declares; the image CONTAINS each;
- every weight, code and config file (`SPDXRef-Weights-N`, `-Code-N`, `-Config-N`) as a package
  of purpose FILE or SOURCE whose `packageFileName` is its path in the image, with its sha256 and
  size (SPDX `files` would require a SHA1, which would mean reading every weight again; Pants
  already knows each file's sha256); the image CONTAINS each.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence
from urllib.parse import quote

from .errors import SbomError
from .licenses import NOASSERTION, Licenses

SPDX_MEDIA_TYPE = "application/spdx+json"
# Where the document namespaces point: a name, not a place to fetch from (SPDX wants a unique
# URI per document; it is derived from the image's digest, so the same image gets the same one).
_NAMESPACE = "https://spdx.org/spdxdocs/ai-agent"
_NAMESPACE_UUID = uuid.UUID("6f4b4f0e-2d0e-5b8a-9a55-2f7f3c1d9e21")
_PURPOSES = {"weights": "FILE", "code": "SOURCE", "config": "FILE"}
_DEBIAN_ARCHIVES = {"security": "https://deb.debian.org/debian-security"}

ReadJson = Callable[[str], Any]


def timestamp(source_date_epoch: int) -> str:
    return datetime.fromtimestamp(source_date_epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def spdx_id(*parts: str) -> str:
    return "SPDXRef-" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", part).strip("-") for part in parts)


def pypi_purl(project: str, version: str) -> str:
    name = re.sub(r"[-_.]+", "-", project).lower()
    return f"pkg:pypi/{name}@{quote(version, safe='')}"


def deb_purl(name: str, version: str, architecture: str, suite: str) -> str:
    return (
        f"pkg:deb/debian/{quote(name, safe='')}@{quote(version, safe='')}"
        f"?arch={architecture}&distro={suite}"
    )


def oci_purl(repository: str, digest: str, tag: Optional[str] = None) -> str:
    """`pkg:oci/<name>@sha256%3A…?repository_url=<repository>`, as the purl spec has it."""
    name = repository.rstrip("/").rsplit("/", 1)[-1].lower()
    qualifiers = f"?repository_url={quote(repository, safe='/')}"
    if tag:
        qualifiers += f"&tag={quote(tag, safe='')}"
    return f"pkg:oci/{name}@{quote(digest, safe='')}{qualifiers}"


def _hex(digest: str, what: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise SbomError(f"{what}: {digest!r} is not a sha256:<64 hex digits> digest")
    return value


def _package(
    identifier: str,
    name: str,
    *,
    version: Optional[str] = None,
    sha256: Optional[str] = None,
    purl: Optional[str] = None,
    purpose: str,
    download: str = NOASSERTION,
    license_declared: str = NOASSERTION,
    **extra: Any,
) -> Dict[str, Any]:
    package: Dict[str, Any] = {"SPDXID": identifier, "name": name}
    if version is not None:
        package["versionInfo"] = version
    package["downloadLocation"] = download
    package["filesAnalyzed"] = False
    if sha256 is not None:
        package["checksums"] = [{"algorithm": "SHA256", "checksumValue": sha256}]
    package["licenseConcluded"] = NOASSERTION
    package["licenseDeclared"] = license_declared
    package["copyrightText"] = NOASSERTION
    if purl is not None:
        package["externalRefs"] = [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }
        ]
    package["primaryPackagePurpose"] = purpose
    package.update({key: value for key, value in extra.items() if value is not None})
    return package


def _relationship(element: str, kind: str, related: str) -> Dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


def spdx_document(
    spec: Mapping[str, Any], image: Mapping[str, Any], read_json: ReadJson
) -> Dict[str, Any]:
    """The SPDX document of `image` (one of `spec["images"]`); facts files are read with
    `read_json` (a path in the step's inputs)."""
    repository = spec["repository"]
    manifest = image["manifest"]
    tags = list(spec.get("tags") or [])
    licenses = Licenses()
    packages: List[Dict[str, Any]] = []
    relationships = [_relationship("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")]
    index = spec["digest"] if spec["digest"] != manifest else None
    packages.append(
        _package(
            "SPDXRef-Image",
            repository,
            version=manifest,
            sha256=_hex(manifest, "image manifest"),
            purl=oci_purl(repository, manifest, tags[0] if tags else None),
            purpose="CONTAINER",
            comment=(
                f"The {image['platform']} image of the Pants target {spec['target']}"
                + (f", in the image index {index}" if index else "")
                + f"; config {image['config']}; tags {', '.join(tags) or '(none)'}."
            ),
        )
    )
    contains: List[str] = []
    base = image.get("base")
    debian_parent = "SPDXRef-Image"
    if base:
        packages.append(_base_package(base))
        relationships.append(_relationship("SPDXRef-Image", "DESCENDANT_OF", "SPDXRef-Base"))
        debian_parent = "SPDXRef-Base"
    debian = image.get("debian")
    if debian:
        facts = read_json(debian)
        for deb in facts["packages"]:
            package = _deb_package(deb, facts["suite"], licenses)
            packages.append(package)
            if debian_parent != "SPDXRef-Image":
                relationships.append(_relationship(debian_parent, "CONTAINS", package["SPDXID"]))
            contains.append(package["SPDXID"])
    installed = _installed(image.get("installed") or (), read_json)
    for wheel in sorted(image.get("wheels") or (), key=lambda wheel: wheel["filename"]):
        package = _wheel_package(wheel, installed.get(wheel["filename"]), licenses)
        packages.append(package)
        contains.append(package["SPDXID"])
    counters: Dict[str, int] = {}
    for file in sorted(image.get("files") or (), key=lambda file: file["path"]):
        kind = file["kind"]
        counters[kind] = counters.get(kind, 0) + 1
        package = _file_package(file, kind=kind, number=counters[kind])
        packages.append(package)
        contains.append(package["SPDXID"])
    relationships += [_relationship("SPDXRef-Image", "CONTAINS", element) for element in contains]
    _check_unique(packages)
    document: Dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{repository}@{manifest}",
        "documentNamespace": f"{_NAMESPACE}/{quote(repository, safe='')}-"
        f"{uuid.uuid5(_NAMESPACE_UUID, manifest)}",
        "creationInfo": {
            "created": timestamp(spec["sourceDateEpoch"]),
            "creators": [
                f"Tool: {name}-{version}" for name, version in sorted(spec["tools"].items())
            ],
            "comment": "Created at SOURCE_DATE_EPOCH ([ai-agents].source_date_epoch), not at the"
            " wall-clock time, so that the same image always gets the same document.",
        },
        "packages": packages,
        "relationships": relationships,
    }
    extracted = licenses.extracted()
    if extracted:
        document["hasExtractedLicensingInfos"] = extracted
    return document


def _base_package(base: Mapping[str, Any]) -> Dict[str, Any]:
    manifest = base["manifest"]
    lock = base.get("lock")
    lock_text = f"; lock {lock['path']} (sha256 {lock['sha256']})" if lock else ""
    return _package(
        "SPDXRef-Base",
        base["repository"],
        version=manifest,
        sha256=_hex(manifest, "base manifest"),
        purl=oci_purl(base["repository"], manifest),
        purpose="OPERATING-SYSTEM" if base["kind"] == "debian" else "CONTAINER",
        download=base.get("download") or NOASSERTION,
        comment=f"The {base['kind']} base {base['target']}{lock_text}.",
    )


def _deb_package(deb: Mapping[str, Any], suite: str, licenses: Licenses) -> Dict[str, Any]:
    name, version, architecture = deb["name"], deb["version"], deb["architecture"]
    archive = _DEBIAN_ARCHIVES.get(deb["suite"].rsplit("-", 1)[-1], "https://deb.debian.org/debian")
    return _package(
        spdx_id("Deb", name, architecture),
        name,
        version=version,
        sha256=deb["sha256"],
        purl=deb_purl(name, version, architecture, suite),
        purpose="LIBRARY",
        download=f"{archive}/{deb['filename']}",
        license_declared=licenses.debian(name, deb.get("licenses") or (), deb.get("copyright")),
        supplier="Organization: Debian",
        homepage=deb.get("homepage"),
        packageFileName=deb["filename"].rsplit("/", 1)[-1],
        sourceInfo=f"built from the Debian source package {deb['source']} {deb['sourceVersion']}",
        comment=(
            f"Suite {deb['suite']}; maintainer {deb.get('maintainer') or '(none)'}. "
            + (
                f"Licence as declared in {deb['copyright']}."
                if deb.get("copyright") and deb.get("licenses")
                else "Its copyright file declares no licence in Debian's machine-readable format."
            )
        ),
    )


def _installed(paths: Sequence[str], read_json: ReadJson) -> Dict[str, Mapping[str, Any]]:
    """The wheel layer steps' record of each distribution, by wheel file name."""
    by_wheel: Dict[str, Mapping[str, Any]] = {}
    for path in paths:
        for distribution in read_json(path)["distributions"]:
            by_wheel[distribution["wheel"]] = distribution
    return by_wheel


def _wheel_package(
    wheel: Mapping[str, Any], installed: Optional[Mapping[str, Any]], licenses: Licenses
) -> Dict[str, Any]:
    if installed is None:
        raise SbomError(f"{wheel['filename']}: no wheel layer step says it installed it")
    if installed.get("sha256") not in (None, wheel["sha256"]):
        raise SbomError(f"{wheel['filename']}: installed with another sha256 than the plan's")
    project, version = wheel["project"], wheel["version"]
    return _package(
        spdx_id("PyPI", project, version),
        project,
        version=version,
        sha256=wheel["sha256"],
        purl=pypi_purl(project, version),
        purpose="LIBRARY",
        download=wheel.get("url") or NOASSERTION,
        license_declared=licenses.python(project, installed.get("license")),
        packageFileName=wheel["filename"],
        comment=f"Installed at /{installed['distInfo']}." if installed.get("distInfo") else None,
    )


def _file_package(file: Mapping[str, Any], *, kind: str, number: int) -> Dict[str, Any]:
    path = file["path"]
    return _package(
        spdx_id(kind.capitalize(), str(number)),
        path,
        sha256=file["sha256"],
        purpose=_PURPOSES.get(kind, "FILE"),
        packageFileName=path,
        comment=f"The agent's {kind} file {path} ({file['size']} bytes), from {file['source']}"
        " in the repository.",
    )


def _check_unique(packages: Sequence[Mapping[str, Any]]) -> None:
    seen: Dict[str, str] = {}
    for package in packages:
        if package["SPDXID"] in seen:
            raise SbomError(
                f"two packages would be {package['SPDXID']}: {seen[package['SPDXID']]} and"
                f" {package['name']}"
            )
        seen[package["SPDXID"]] = package["name"]

"""Documents about an image (its SBOM, its provenance) attached to it in a registry as OCI 1.1
referrers (distribution-spec v1.1, "Listing Referrers" and "Referrers Tag Schema"; image-spec
v1.1, "Guidelines for Artifact Usage").

Each document becomes an artifact manifest: an image manifest whose `artifactType` is the
document's media type, whose config is the empty descriptor (`{}`), whose one layer is the
document and whose `subject` is the manifest the document is about. It is pushed by digest. A
registry with the referrers API lists it under its subject itself (it answers the manifest's PUT
with an `OCI-Subject` header, or `GET /v2/<name>/referrers/<digest>` answers at all); for one
without (a 404 there), the client keeps the list: an image index tagged `sha256-<hex of the
subject's digest>`, read, extended with a descriptor per new referrer (its `artifactType` and
annotations copied from the manifest), and put back. Everything is deterministic and a second
attach finds everything in place: no blob, manifest or list is sent again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import InvalidManifest, NotFoundError
from .image import Image, Index, images_of
from .name import Repository
from .push import BlobData, PushStats, _mount_sources, _Push
from .transport import pull_scope
from .types import (
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    digest_hex,
    sha256_digest,
)

if TYPE_CHECKING:
    from .remote import RegistryClient

# The documents' media types, and so the artifacts' types.
SPDX_JSON = "application/spdx+json"
IN_TOTO_JSON = "application/vnd.in-toto+json"

# The config of an artifact without one: the two bytes `{}` (image-spec v1.1).
EMPTY_CONFIG = b"{}"
EMPTY_DESCRIPTOR = Descriptor(
    OCI_EMPTY, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", 2
)

ANNOTATION_CREATED = "org.opencontainers.image.created"
# The file name `oras pull` saves a layer as.
ANNOTATION_TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class Artifact:
    """A document attached to `subject`: its artifact manifest (`descriptor`, whose
    `artifact_type` and `annotations` are the manifest's, as a referrers list names it, and
    `data`), and the document's own descriptor and bytes (or file)."""

    descriptor: Descriptor
    data: bytes
    subject: Descriptor
    document: Descriptor
    content: BlobData

    @property
    def blobs(self) -> Dict[str, BlobData]:
        return {
            self.descriptor.digest: self.data,
            EMPTY_DESCRIPTOR.digest: EMPTY_CONFIG,
            self.document.digest: self.content,
        }


def artifact(
    content: Union[bytes, Path],
    media_type: str,
    subject: Descriptor,
    *,
    title: str,
    created: Optional[str] = None,
) -> Artifact:
    """The artifact manifest attaching `content` (a document of `media_type`, saved as `title`
    by tools that pull it) to `subject`. Only the subject's media type, digest and size are
    named; `created` (an RFC 3339 time, e.g. from SOURCE_DATE_EPOCH) is its one annotation."""
    data = content if isinstance(content, bytes) else content.read_bytes()
    document = Descriptor(
        media_type, sha256_digest(data), len(data), annotations={ANNOTATION_TITLE: title}
    )
    annotations = {ANNOTATION_CREATED: created} if created else {}
    manifest: Dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": media_type,
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": [document.to_json()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_json(),
    }
    if annotations:
        manifest["annotations"] = annotations
    descriptor, manifest_bytes = Descriptor.of_json_document(
        OCI_MANIFEST, manifest, annotations=annotations, artifact_type=media_type
    )
    return Artifact(descriptor, manifest_bytes, subject, document, content)


def subject_of(target: Union[Image, Index], digest: str) -> Descriptor:
    """The manifest of `target` (the index or manifest at its root, or a platform's manifest)
    whose digest is `digest`: what a document may be attached to."""
    candidates = [target.descriptor, *(image.descriptor for image in images_of(target))]
    for candidate in candidates:
        if candidate.digest == digest:
            return Descriptor(candidate.media_type, candidate.digest, candidate.size)
    raise InvalidManifest(
        f"{digest} is not a manifest of the image pushed ({target.descriptor.digest}): a document"
        " is attached to the image or one of its platforms' manifests"
    )


def fallback_tag(subject: str) -> str:
    """The tag of the referrers list of `subject` where the registry has no referrers API:
    `<algorithm>-<encoded digest>` (distribution-spec v1.1, "Referrers Tag Schema")."""
    return f"sha256-{digest_hex(subject)}"


def referrers_index(
    existing: Optional[Manifest], referrers: Sequence[Descriptor]
) -> Optional[Tuple[Descriptor, bytes]]:
    """The referrers list `existing` (None: there is none yet) with a descriptor for each of
    `referrers` it lacks appended, in the order given; None if it lacks none. The entries
    already there (other tools' signatures, attestations) are kept as they are."""
    if existing is None:
        document: Dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    else:
        document = _referrers_document(existing)
    entries: List[Any] = list(document["manifests"])
    listed = {entry.get("digest") for entry in entries if isinstance(entry, dict)}
    added = [entry.to_json() for entry in _unique(referrers) if entry.digest not in listed]
    if not added:
        return None
    return Descriptor.of_json_document(OCI_INDEX, {**document, "manifests": entries + added})


def _unique(referrers: Sequence[Descriptor]) -> List[Descriptor]:
    return list({entry.digest: entry for entry in referrers}.values())


def _referrers_document(existing: Manifest) -> Dict[str, Any]:
    """A referrers list read back, refused (the tag is left alone) unless it is an OCI index."""
    tag_content = f"the referrers tag's manifest {existing.descriptor.digest}"
    if existing.descriptor.media_type != OCI_INDEX:
        raise InvalidManifest(
            f"{tag_content} is a {existing.descriptor.media_type}, not an OCI image index: it was"
            " not written as a referrers list, and is left alone"
        )
    document = existing.document
    if not isinstance(document.get("manifests"), list):
        raise InvalidManifest(f"{tag_content} has no `manifests` list")
    return document


@dataclass
class AttachStats:
    """What an attach did: artifact manifests put and found already there, and the referrers
    tags written (registries without the referrers API)."""

    attached: int = 0
    present: int = 0
    tags_written: Tuple[str, ...] = ()
    # The blobs and manifests sent.
    push: PushStats = field(default_factory=PushStats)

    def __str__(self) -> str:
        tags = ", ".join(self.tags_written) or "none"
        return (
            f"attached {self.attached} referrers ({self.present} already there;"
            f" referrers tags written: {tags}); {self.push}"
        )


def attach(
    client: RegistryClient,
    repository: Repository,
    artifacts: Sequence[Artifact],
    *,
    mount_from: Sequence[Repository] = (),
) -> AttachStats:
    """Push each artifact (its blobs, then its manifest by digest) unless the registry has it,
    and make sure each subject's referrers list names it: the registry's own where it has the
    referrers API, else the fallback tag. The subjects must be in `repository` already."""
    blobs: Dict[str, BlobData] = {}
    for each in artifacts:
        blobs.update(each.blobs)
    stats = AttachStats()
    with ThreadPoolExecutor(max_workers=client._jobs) as executor:
        push = _Push(client, repository, blobs, _mount_sources(repository, mount_from), executor)
        stats.push = push.stats
        indexed: Dict[str, bool] = {}
        for each in artifacts:
            if push._exists("manifests", each.descriptor.digest):
                stats.present += 1
                continue
            push.push_manifest(each.descriptor, (each.descriptor.digest,))
            stats.attached += 1
            said = push.subject_headers.get(each.descriptor.digest)
            subject = each.subject.digest
            indexed[subject] = indexed.get(subject, True) and said == subject
        written = []
        for subject in dict.fromkeys(each.subject.digest for each in artifacts):
            referrers = [each.descriptor for each in artifacts if each.subject.digest == subject]
            if indexed.get(subject) or _has_referrers_api(push, client, repository, subject):
                continue
            if _update_fallback_tag(push, client, repository, subject, referrers):
                written.append(fallback_tag(subject))
        stats.tags_written = tuple(written)
    return stats


def _update_fallback_tag(
    push: _Push,
    client: RegistryClient,
    repository: Repository,
    subject: str,
    referrers: Sequence[Descriptor],
) -> bool:
    """Add `referrers` to the referrers tag of `subject` (read, extended, put back); whether it
    lacked any. Two clients doing so at once may lose one's entries: the next attach of that
    client adds them again."""
    tag = fallback_tag(subject)
    existing = push._retrying(
        f"reading the referrers tag {tag}", lambda: _read_tag(client, repository, tag)
    )
    updated = referrers_index(existing, referrers)
    if updated is None:
        return False
    push._put_manifest(Manifest(*updated), tag)
    return True


def _has_referrers_api(
    push: _Push, client: RegistryClient, repository: Repository, subject: str
) -> bool:
    """Whether the registry answers the referrers API for `subject` (any list, even an empty
    one); a 404 means it has none."""

    def ask() -> bool:
        try:
            with client._request(
                repository,
                "GET",
                f"/v2/{repository.name}/referrers/{subject}",
                scopes=pull_scope(repository),
                expected={200},
                headers={"Accept": OCI_INDEX},
            ) as response:
                response.discard()
        except NotFoundError:
            return False
        return True

    return push._retrying(f"asking for the referrers of {subject}", ask)


def _read_tag(client: RegistryClient, repository: Repository, tag: str) -> Optional[Manifest]:
    try:
        return client._fetch_manifest(repository, tag)
    except NotFoundError:
        return None

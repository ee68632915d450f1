"""Pulling from registries, modelled on go-containerregistry's `pkg/v1/remote`: resolve a reference
to a manifest (for an index, the one for a platform), and download blobs. Everything read is
verified against the digest that names it before anyone can use it. `RegistryClient` is also
the entry to `push`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import ssl
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping, Optional, Sequence

from .auth import Keychain
from .errors import DigestMismatch, InvalidManifest, NotFoundError, PlatformNotFound
from .limits import REGISTRY_LIMITS, NetworkLimits
from .name import Reference, Repository
from .push import DEFAULT_CHUNK_SIZE, BlobData, PushStats, push_image
from .transport import (
    COPY_BUFFER,
    FIRST_RETRY_DELAY_S,
    RegistrySession,
    Response,
    pull_scope,
)
from .types import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    sha256_digest,
)

DEFAULT_PLATFORM = Platform("linux", "amd64")
# Registries cap manifests at a few MiB; the cap keeps a hostile answer out of memory.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

_MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))


class RegistryClient(RegistrySession):
    """Talks to registries on behalf of one process: pulls, and pushes with `push`. Thread-safe;
    close it (or use it as a context manager) to close its pooled connections.

    The session's options are `RegistrySession`'s. Blobs larger than `chunk_size` are pushed in
    chunks of that size, `jobs` at a time.
    """

    def __init__(
        self,
        keychain: Optional[Keychain] = None,
        *,
        insecure_registries: Iterable[str] = (),
        limits: NetworkLimits = REGISTRY_LIMITS,
        first_retry_delay_s: float = FIRST_RETRY_DELAY_S,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        jobs: int = 4,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        if chunk_size < 1 or jobs < 1:
            raise ValueError("chunk_size and jobs must be positive")
        super().__init__(
            keychain,
            insecure_registries=insecure_registries,
            limits=limits,
            first_retry_delay_s=first_retry_delay_s,
            ssl_context=ssl_context,
        )
        self._chunk_size = chunk_size
        self._jobs = jobs

    def get_manifest(self, reference: Reference) -> Manifest:
        """The manifest or index `reference` names, verified against its digest (the one in the
        reference, else the one the registry states)."""
        return self._retrying(
            f"fetching manifest {reference.identifier}",
            reference.repository,
            lambda: self._fetch_manifest(reference.repository, reference.identifier),
        )

    def resolve(self, reference: Reference, platform: Platform = DEFAULT_PLATFORM) -> Manifest:
        """The image manifest `reference` names; for an index, its entry for `platform` (whose
        descriptor then carries the platform). A plain image manifest is returned as it is: its
        platform is only in its config."""
        top = self.get_manifest(reference)
        if not top.is_index:
            return top
        matches = [e for e in top.manifests if e.platform and e.platform.matches(platform)]
        if not matches:
            available = ", ".join(sorted({str(e.platform) for e in top.manifests if e.platform}))
            raise PlatformNotFound(
                f"{reference} has no image for platform {platform}; it has: {available or 'none'}"
            )
        chosen = matches[0]
        return self._retrying(
            f"fetching manifest {chosen.digest}",
            reference.repository,
            lambda: self._fetch_manifest(reference.repository, chosen.digest, chosen),
        )

    def fetch_blob(self, repository: Repository, descriptor: Descriptor, target: Path) -> None:
        """Download a blob to `target` (in an existing directory), hashing while writing; `target`
        appears only once the content matched the descriptor (it is written beside it, then
        renamed)."""

        def download() -> None:
            with self._get_blob(repository, descriptor) as response:
                with _atomic_output(Path(target)) as output:
                    self._copy_verified(repository, descriptor, response, output)

        self._retrying(f"downloading blob {descriptor.digest}", repository, download)

    def read_blob(self, repository: Repository, descriptor: Descriptor) -> bytes:
        """A small blob (an image config) in memory, verified."""

        def download() -> bytes:
            output = io.BytesIO()
            with self._get_blob(repository, descriptor) as response:
                self._copy_verified(repository, descriptor, response, output)
            return output.getvalue()

        return self._retrying(f"downloading blob {descriptor.digest}", repository, download)

    def served_size(self, repository: Repository, kind: str, digest: str) -> Optional[int]:
        """The size the registry states for the manifest or blob (`kind` "manifests" or "blobs")
        `digest`, asked with HEAD so that nothing is downloaded; NotFoundError if it has none."""
        return self._retrying(
            f"checking for {digest}", repository, lambda: self._head(repository, kind, digest)
        )

    def push(
        self,
        repository: Repository,
        root: Descriptor,
        blobs: Mapping[str, BlobData],
        *,
        tags: Sequence[str] = (),
        mount_from: Sequence[Repository] = (),
    ) -> PushStats:
        """Push the manifest or index `root` and everything it references, then put `root` under
        each tag (or only by digest without tags).

        `blobs` maps digests to local content, manifests included. A blob the registry already
        has, or can mount from a repository of `mount_from` (same registry), need not be in it.
        Manifests are sent as the exact bytes given, so the registry's digest is the local one.
        """
        return push_image(self, repository, root, blobs, tags=tags, mount_from=mount_from)

    def _fetch_manifest(
        self, repository: Repository, identifier: str, described: Optional[Descriptor] = None
    ) -> Manifest:
        with self._request(
            repository,
            "GET",
            f"/v2/{repository.name}/manifests/{identifier}",
            scopes=pull_scope(repository),
            expected={200},
            headers={"Accept": _MANIFEST_ACCEPT},
        ) as response:
            data = response.read_up_to(MAX_MANIFEST_SIZE)
            content_type = response.header("Content-Type") or ""
            stated_digest = response.header("Docker-Content-Digest") or ""
        if len(data) > MAX_MANIFEST_SIZE:
            raise InvalidManifest(
                f"manifest {identifier} in {repository} is larger than {MAX_MANIFEST_SIZE} bytes"
            )
        digest = sha256_digest(data)
        expected = identifier if identifier.startswith("sha256:") else stated_digest
        if expected.startswith("sha256:") and digest != expected:
            raise DigestMismatch(
                repository, expected, _corrupt_download(f"{len(data)} bytes with digest {digest}")
            )
        if described is not None:
            return Manifest(described, data)
        media_type = _manifest_media_type(repository, identifier, content_type, data)
        return Manifest(Descriptor(media_type, digest, len(data)), data)

    def _get_blob(self, repository: Repository, descriptor: Descriptor) -> Response:
        return self._request(
            repository,
            "GET",
            f"/v2/{repository.name}/blobs/{descriptor.digest}",
            scopes=pull_scope(repository),
            expected={200},
            follow_redirects=True,
        )

    @staticmethod
    def _copy_verified(
        repository: Repository, descriptor: Descriptor, response: Response, output: BinaryIO
    ) -> None:
        """Copy at most one byte more than the descriptor's size, hashing on the way."""
        hasher = hashlib.sha256()
        size = 0
        while size <= descriptor.size:
            chunk = response.read(min(COPY_BUFFER, descriptor.size + 1 - size))
            if not chunk:
                break
            hasher.update(chunk)
            output.write(chunk)
            size += len(chunk)
        digest = "sha256:" + hasher.hexdigest()
        if size > descriptor.size:
            raise DigestMismatch(
                repository,
                descriptor.digest,
                _corrupt_download(f"more than the expected {descriptor.size} bytes"),
            )
        if digest != descriptor.digest:
            raise DigestMismatch(
                repository,
                descriptor.digest,
                _corrupt_download(
                    f"{size} bytes (expected {descriptor.size}) with digest {digest}"
                ),
            )

    def _head(self, repository: Repository, kind: str, digest: str) -> Optional[int]:
        """HEAD of a manifest or blob (`kind` "manifests" or "blobs") by digest: the size the
        registry states, if it does; NotFoundError if it has no such digest."""
        with self._request(
            repository,
            "HEAD",
            f"/v2/{repository.name}/{kind}/{digest}",
            scopes=pull_scope(repository),
            expected={200},
            headers={"Accept": _MANIFEST_ACCEPT} if kind == "manifests" else None,
            follow_redirects=True,
        ) as response:
            response.discard()
            length = response.header("Content-Length") or ""
            return int(length) if length.isdigit() else None

    def _exists(self, repository: Repository, kind: str, digest: str) -> bool:
        try:
            self._head(repository, kind, digest)
        except NotFoundError:
            return False
        return True


def _corrupt_download(received: str) -> str:
    return (
        f"received {received}; the registry's copy is corrupt or was tampered with, and nothing"
        " was kept"
    )


def _manifest_media_type(
    repository: Repository, identifier: str, content_type: str, data: bytes
) -> str:
    """The media type of a fetched manifest: the Content-Type, else the document's own."""
    known = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
    media_type = content_type.split(";", 1)[0].strip()
    if media_type not in known:
        with contextlib.suppress(ValueError, AttributeError):
            media_type = json.loads(data).get("mediaType") or media_type
    if media_type not in known:
        raise InvalidManifest(
            f"manifest {identifier} in {repository} has media type {media_type!r}, which is neither"
            " an OCI/Docker v2 image manifest nor an index (Docker schema 1 is not supported)"
        )
    return media_type


@contextlib.contextmanager
def _atomic_output(target: Path) -> Iterator[BinaryIO]:
    """A file that becomes `target` only if the block finishes; otherwise nothing is left."""
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
    )
    try:
        os.fchmod(handle, 0o644)  # a cache file, not a secret (mkstemp makes it 0600)
        with os.fdopen(handle, "wb") as output:
            yield output
            output.flush()
            os.fsync(output.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise

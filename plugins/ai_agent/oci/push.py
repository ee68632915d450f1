"""Pushing to registries: an image or index and everything it references, children first, blobs
in parallel, each skipped when the registry already has it (or mounted from another repository
of the registry). Manifests go up as the exact bytes given, so the registry's digest is the
local one."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import urlencode, urljoin

from .errors import (
    AuthenticationError,
    BlobSourceMismatch,
    DigestMismatch,
    MissingBlob,
    RegistryHTTPError,
)
from .image import Image, Index, images_of
from .name import Repository, check_tag
from .recipe import BlobRecipe
from .transport import COPY_BUFFER, Body, Response, bytes_body, pull_scope, push_scope, with_query
from .types import Descriptor, Manifest, sha256_digest

if TYPE_CHECKING:
    from .remote import RegistryClient

_log = logging.getLogger(__name__)

# Blobs up to this size go up in one PUT; bigger ones in PATCH chunks of this size.
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
_OCTET_STREAM = "application/octet-stream"

T = TypeVar("T")

# A blob to push: its bytes, the file holding them, or the recipe that makes them.
BlobData = Union[bytes, Path, BlobRecipe]

_UPLOADED, _MOUNTED, _PRESENT = "uploaded", "mounted", "present"


@dataclass
class PushStats:
    """What a push sent and what it could skip (mounted from another repository, or already
    there). Safe to update from the push's worker threads."""

    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    mounted_blobs: int = 0
    mounted_bytes: int = 0
    present_blobs: int = 0
    present_bytes: int = 0
    manifests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def skipped_bytes(self) -> int:
        return self.mounted_bytes + self.present_bytes

    def _record_blob(self, outcome: str, size: int) -> None:
        with self._lock:
            setattr(self, f"{outcome}_blobs", getattr(self, f"{outcome}_blobs") + 1)
            setattr(self, f"{outcome}_bytes", getattr(self, f"{outcome}_bytes") + size)

    def _count_manifest(self) -> None:
        with self._lock:
            self.manifests += 1

    def _count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def __str__(self) -> str:
        return (
            f"uploaded {self.uploaded_blobs} blobs ({_format_size(self.uploaded_bytes)}), skipped"
            f" {self.mounted_blobs + self.present_blobs} ({_format_size(self.skipped_bytes)}:"
            f" {self.mounted_blobs} mounted, {self.present_blobs} already present),"
            f" put {self.manifests} manifests, {self.retries} retries"
        )


def _format_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _open_blob(data: Union[Path, BlobRecipe], offset: int = 0) -> BinaryIO:
    """A blob's bytes from `offset`, from its file or made by its recipe."""
    if isinstance(data, BlobRecipe):
        return data.open(offset)
    stream = open(data, "rb")
    stream.seek(offset)
    return stream


class _BlobSlice:
    """`length` bytes of a file or recipe from `offset`; one that ends early is an error, not a
    short request the registry would wait on forever."""

    def __init__(self, data: Union[Path, BlobRecipe], offset: int, length: int) -> None:
        self._path = data if isinstance(data, Path) else "the recipe's sources"
        self._file = _open_blob(data, offset)
        self._remaining = length

    def read(self, size: int = -1) -> bytes:
        wanted = self._remaining if size < 0 else min(size, self._remaining)
        data = self._file.read(wanted)
        if len(data) < wanted:
            raise BlobSourceMismatch(f"{self._path} became shorter while it was being pushed")
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class _BlobSource:
    """The local content of a blob to push, re-readable for every attempt."""

    def __init__(self, data: BlobData, descriptor: Descriptor) -> None:
        self._data = data
        self._descriptor = descriptor
        if isinstance(data, bytes):
            size = len(data)
        elif isinstance(data, BlobRecipe):
            size = data.size
        else:
            size = data.stat().st_size
        if size != descriptor.size:
            raise BlobSourceMismatch(
                f"{self} has {size} bytes but its descriptor {descriptor.digest} says"
                f" {descriptor.size}"
            )

    def body(self, offset: int, length: int) -> Body:
        data = self._data
        if isinstance(data, bytes):
            content = data
            return lambda: io.BytesIO(content[offset : offset + length])
        source = data
        return lambda: _BlobSlice(source, offset, length)

    def check_digest(self) -> None:
        """Raise if the local content does not hash to the descriptor's digest."""
        hasher = hashlib.sha256()
        with contextlib.closing(self.body(0, self._descriptor.size)()) as stream:
            for chunk in iter(lambda: stream.read(COPY_BUFFER), b""):
                hasher.update(chunk)
        if "sha256:" + hasher.hexdigest() != self._descriptor.digest:
            raise BlobSourceMismatch(
                f"{self} does not hash to its descriptor's digest {self._descriptor.digest}"
            )

    def __str__(self) -> str:
        if isinstance(self._data, bytes):
            return f"the in-memory content given for {self._descriptor.digest}"
        if isinstance(self._data, BlobRecipe):
            return f"the recipe given for {self._descriptor.digest}"
        return f"local file {self._data}"


def local_blobs(target: Union[Image, Index]) -> Dict[str, BlobData]:
    """What a push of `target` can send from here: its index, manifests and configs (made in
    memory), and each layer whose file is present. A layer file may be absent where the
    registry has the blob (`missing_layers` said so): its bytes need not be here at all."""
    blobs: Dict[str, BlobData] = {}
    if isinstance(target, Index):
        blobs[target.descriptor.digest] = target.index_bytes
    for image in images_of(target):
        blobs[image.descriptor.digest] = image.manifest_bytes
        blobs[image.config_descriptor.digest] = image.config_bytes
        for layer in image.layers:
            if layer.is_local:
                blobs[layer.descriptor.digest] = layer.recipe or Path(layer.path)
    return blobs


def _mount_sources(repository: Repository, candidates: Sequence[Repository]) -> List[Repository]:
    """The candidates a blob can be mounted from into `repository`: other repositories of its
    registry (mounting works within one registry only)."""
    return [
        candidate
        for candidate in dict.fromkeys(candidates)
        if candidate.registry == repository.registry and candidate != repository
    ]


def missing_layers(
    client: RegistryClient,
    repository: Repository,
    target: Union[Image, Index],
    mount_from: Sequence[Repository] = (),
) -> List[Descriptor]:
    """The layers of `target` that neither `repository` nor a repository it can mount from
    has (HEAD each, in parallel): the only blobs whose bytes a push needs."""
    layers = {
        layer.descriptor.digest: layer.descriptor
        for image in images_of(target)
        for layer in image.layers
    }
    sources = [repository, *_mount_sources(repository, mount_from)]

    def found(digest: str) -> bool:
        return any(client._exists(source, "blobs", digest) for source in sources)

    with ThreadPoolExecutor(max_workers=client._jobs) as executor:
        present = list(executor.map(found, sorted(layers)))
    return [layers[digest] for digest, there in zip(sorted(layers), present) if not there]


def push_image(
    client: RegistryClient,
    repository: Repository,
    root: Descriptor,
    blobs: Mapping[str, BlobData],
    *,
    tags: Sequence[str],
    mount_from: Sequence[Repository] = (),
) -> PushStats:
    """Push the manifest or index `root` and everything it references as `client`, then put
    `root` under each tag (or only by digest without tags); `RegistryClient.push` says more."""
    for tag in tags:
        check_tag(tag)
    mount_from = _mount_sources(repository, mount_from)
    with ThreadPoolExecutor(max_workers=client._jobs) as executor:
        push = _Push(client, repository, blobs, mount_from, executor)
        push.push_manifest(root, tuple(tags) or (root.digest,))
    return push.stats


class _Push:
    """One push: the repository, the local blobs and the statistics, shared by worker threads."""

    def __init__(
        self,
        client: RegistryClient,
        repository: Repository,
        blobs: Mapping[str, BlobData],
        mount_from: Sequence[Repository],
        executor: ThreadPoolExecutor,
    ) -> None:
        self._client = client
        self._repository = repository
        self._blobs = blobs
        self._mount_from = mount_from
        self._executor = executor
        self._scopes = push_scope(repository)
        self._failed = threading.Event()
        # Blobs already pushed (or found) by this push: an index's images often share layers.
        self._blobs_done: Set[str] = set()
        self.stats = PushStats()
        # The `OCI-Subject` header of each manifest put, by digest: a registry with the
        # referrers API names the subject of a manifest that has one (`referrers.py`).
        self.subject_headers: Dict[str, Optional[str]] = {}

    def push_manifest(self, descriptor: Descriptor, references: Sequence[str]) -> None:
        """Push what `descriptor` references (children first, so the registry accepts it), then
        put the manifest itself under each reference."""
        manifest = Manifest(descriptor, self._manifest_bytes(descriptor))
        if manifest.is_index:
            for entry in manifest.manifests:
                if not self._exists("manifests", entry.digest):
                    self.push_manifest(entry, (entry.digest,))
        else:
            referenced = (manifest.config, *manifest.layers)
            new = {d.digest: d for d in referenced if d.digest not in self._blobs_done}
            self._blobs_done.update(new)
            futures = [self._executor.submit(self._push_blob, d) for d in new.values()]
            for future in futures:
                future.result()
        for reference in references:
            self._put_manifest(manifest, reference)

    def _retrying(self, description: str, operation: Callable[[], T]) -> T:
        return self._client._retrying(
            description, self._repository, operation, self.stats._count_retry
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> Response:
        return self._client._request(self._repository, method, url, **kwargs)

    def _manifest_bytes(self, descriptor: Descriptor) -> bytes:
        data = self._blobs.get(descriptor.digest)
        if data is None:
            raise MissingBlob(
                f"manifest {descriptor.digest} is not among the local blobs to push to"
                f" {self._repository}"
            )
        if isinstance(data, bytes):
            content = data
        else:
            with _open_blob(data) as stream:
                content = stream.read()
        if sha256_digest(content) != descriptor.digest:
            raise BlobSourceMismatch(
                f"the local manifest given for {descriptor.digest} has digest"
                f" {sha256_digest(content)}"
            )
        return content

    def _exists(self, kind: str, digest: str) -> bool:
        return self._retrying(
            f"checking for {digest}",
            lambda: self._client._exists(self._repository, kind, digest),
        )

    def _put_manifest(self, manifest: Manifest, reference: str) -> None:
        self._retrying(
            f"putting manifest {manifest.descriptor.digest} as {reference}",
            lambda: self._put_manifest_once(manifest, reference),
        )
        self.stats._count_manifest()

    def _put_manifest_once(self, manifest: Manifest, reference: str) -> None:
        descriptor = manifest.descriptor
        with self._request(
            "PUT",
            f"/v2/{self._repository.name}/manifests/{reference}",
            scopes=self._scopes,
            expected={201},
            headers={"Content-Type": descriptor.media_type, "Content-Length": str(descriptor.size)},
            body=bytes_body(manifest.data),
        ) as response:
            response.discard()
            stored_digest = response.header("Docker-Content-Digest")
            self.subject_headers[descriptor.digest] = response.header("OCI-Subject")
        if stored_digest and stored_digest != descriptor.digest:
            raise DigestMismatch(
                self._repository,
                descriptor.digest,
                f"the registry stored the manifest as {stored_digest}; it rewrote the bytes sent",
            )

    def _push_blob(self, descriptor: Descriptor) -> None:
        if self._failed.is_set():
            return  # another blob failed: the push is over, start nothing new
        try:
            outcome = self._retrying(
                f"pushing blob {descriptor.digest}", lambda: self._push_blob_once(descriptor)
            )
        except BaseException:
            self._failed.set()
            raise
        self.stats._record_blob(outcome, descriptor.size)

    def _push_blob_once(self, descriptor: Descriptor) -> str:
        """HEAD, else mount, else upload in a fresh session; returns which of them did it."""
        if self._client._exists(self._repository, "blobs", descriptor.digest):
            return _PRESENT
        location = None
        source = self._mount_source(descriptor)
        if source is not None:
            mounted, location = self._try_mount(source, descriptor)
            if mounted:
                return _MOUNTED
        data = self._blobs.get(descriptor.digest)
        if data is None:
            raise MissingBlob(
                f"blob {descriptor.digest} is neither among the local blobs nor in"
                f" {' or '.join(map(str, (self._repository, *self._mount_from)))}"
            )
        blob = _BlobSource(data, descriptor)
        location = location or self._start_upload()
        chunk_size = self._client._chunk_size
        if descriptor.size <= chunk_size:
            self._commit(location, descriptor, blob, blob.body(0, descriptor.size))
            return _UPLOADED
        for offset in range(0, descriptor.size, chunk_size):
            length = min(chunk_size, descriptor.size - offset)
            with self._request(
                "PATCH",
                location,
                scopes=self._scopes,
                expected={202},
                headers={
                    "Content-Type": _OCTET_STREAM,
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=blob.body(offset, length),
            ) as response:
                response.discard()
                location = _location(self._repository, "PATCH", response)
        self._commit(location, descriptor, blob, None)
        return _UPLOADED

    def _mount_source(self, descriptor: Descriptor) -> Optional[Repository]:
        """The first repository to mount from that has the blob (one source: with several,
        the first alone is tried, as before asking the others costs a HEAD each)."""
        if len(self._mount_from) == 1:
            return self._mount_from[0]
        for candidate in self._mount_from:
            if self._client._exists(candidate, "blobs", descriptor.digest):
                return candidate
        return None

    def _try_mount(self, source: Repository, descriptor: Descriptor) -> Tuple[bool, Optional[str]]:
        """Mount the blob from `source`; when the registry does not, it may open an upload
        session instead, whose location is returned."""
        query = urlencode({"mount": descriptor.digest, "from": source.name})
        try:
            with self._request(
                "POST",
                f"/v2/{self._repository.name}/blobs/uploads/?{query}",
                scopes=self._scopes | pull_scope(source),
                expected={201, 202},
                headers={"Content-Length": "0"},
            ) as response:
                response.discard()
                if response.status == 201:
                    return True, None
                return False, _location(self._repository, "POST", response)
        except AuthenticationError:
            _log.info("no pull access to %s for mounting; uploading instead", source)
            return False, None

    def _start_upload(self) -> str:
        with self._request(
            "POST",
            f"/v2/{self._repository.name}/blobs/uploads/",
            scopes=self._scopes,
            expected={202},
            headers={"Content-Length": "0"},
        ) as response:
            response.discard()
            return _location(self._repository, "POST", response)

    def _commit(
        self,
        location: str,
        descriptor: Descriptor,
        source: _BlobSource,
        body: Optional[Body],
    ) -> None:
        """Close the upload session with the digest (and, monolithically, the whole blob)."""
        length = descriptor.size if body is not None else 0
        try:
            with self._request(
                "PUT",
                with_query(location, [("digest", descriptor.digest)]),
                scopes=self._scopes,
                expected={201},
                headers={"Content-Type": _OCTET_STREAM, "Content-Length": str(length)},
                body=body,
            ) as response:
                response.discard()
        except RegistryHTTPError as error:
            if "DIGEST_INVALID" in error.codes:
                source.check_digest()  # names the local file when it is the culprit
            raise


def _location(repository: Repository, method: str, response: Response) -> str:
    location = response.header("Location")
    if not location:
        raise RegistryHTTPError(repository, method, response.url, response.status)
    return urljoin(response.url, location)

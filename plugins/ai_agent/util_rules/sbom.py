"""An image's SBOM and provenance (`ai_agent.sbom`), written by one cacheable process beside the
image's metadata in `dist/`: `<name>.spdx.json` (SPDX 2.3; one per platform,
`<name>.<os>-<arch>.spdx.json`, for several) and `<name>.provenance.json` (in-toto v1 statement,
SLSA provenance v1 predicate).

The process reads a spec this rule writes from what Pants already knows (the image's digests,
the wheel plan, each first-party file's sha256 and size from its digest entries, the locks'
sha256) and the small facts files of the steps that read the packages' bytes (the Debian layer
step's `packages.json`, the wheel layer steps' `installed.json`): it reads no .deb, wheel or
weight file. The documents are beside the image, never in it: the image's labels cannot carry
the SBOM's digest, since the SBOM names the manifest, which names the config that holds the
labels.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    DigestEntries,
    DigestSubset,
    FileContent,
    FileEntry,
    MergeDigests,
    PathGlobs,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.version import VERSION as PANTS_VERSION

from ai_agent.oci.types import canonical_json
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import base_image_names
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.util_rules.frozen import thawed
from ai_agent.util_rules.image import (
    BaseImage,
    ImageArchiveRequest,
    ImageDescription,
    PlatformImage,
)
from ai_agent.util_rules.wheel_layers import LockedWheel

_SPEC = "__sbom_spec.json"


@dataclass(frozen=True)
class ImageFileFacts:
    """A first-party file of an image (`weights`, `code` or `config`): its path in the image
    (absolute), in the repository, its sha256 and size."""

    kind: str
    path: str
    source: str
    sha256: str
    size: int


@dataclass(frozen=True)
class SbomImage:
    """One platform image of an SBOM request. `base` is what it descends from (None for a base
    image packaged on its own); `packages` is the base whose Debian packages it holds."""

    platform: str
    manifest: str
    config: str
    base: Optional[BaseImage]
    packages: Optional[BaseImage]
    wheels: Tuple[LockedWheel, ...] = ()
    # The wheel layer steps' outputs, and their installed.json paths in it.
    layers: Digest = EMPTY_DIGEST
    installed: Tuple[str, ...] = ()
    files: Tuple[ImageFileFacts, ...] = ()


@dataclass(frozen=True)
class SbomRequest:
    """The SBOM and provenance of the image whose archive path in `dist/` is `output_path`."""

    owner: str
    output_path: str
    repository: str
    tags: Tuple[str, ...]
    # The manifest's digest, or the index's for several platforms.
    digest: str
    images: Tuple[SbomImage, ...]
    # sha256 of every lock used, by path.
    locks: FrozenDict[str, str]


@dataclass(frozen=True)
class Sbom:
    """The documents in `digest`, at `paths` (the `dist/` paths), written by `step`, which
    reads what `input_steps` (a Debian base's description, packaged alone) wrote besides the
    image's own steps."""

    digest: Digest
    paths: Tuple[str, ...]
    step: BuildStep
    input_steps: Tuple[BuildStep, ...] = ()

    @property
    def steps(self) -> Tuple[BuildStep, ...]:
        """The steps behind the documents that are not the image's own, this one last."""
        return (*self.input_steps, self.step)

    @property
    def spdx_paths(self) -> Tuple[str, ...]:
        return self.paths[:-1]

    @property
    def provenance_path(self) -> str:
        return self.paths[-1]


def sbom_paths(output_path: str, platforms: Tuple[str, ...]) -> Tuple[str, ...]:
    """Where in `dist/` the documents of the image at `output_path` go: each platform's SPDX
    document (`<stem>.spdx.json`, or `<stem>.<os>-<arch>.spdx.json` for several), then the
    provenance (`<stem>.provenance.json`)."""
    stem = output_path[: -len(".tar")] if output_path.endswith(".tar") else output_path
    spdx: Tuple[str, ...] = (f"{stem}.spdx.json",)
    if len(platforms) > 1:
        spdx = tuple(f"{stem}.{platform.replace('/', '-')}.spdx.json" for platform in platforms)
    return (*spdx, f"{stem}.provenance.json")


@functools.cache
def plugin_sources() -> Tuple[str, int]:
    """The sha256 of this plugin's sources (each non-test `.py` file's path and sha256, in path
    order) and how many there are: the plugin's version, as the provenance names it."""
    root = Path(__file__).resolve().parents[1]
    files = sorted(
        path
        for path in root.rglob("*.py")
        if not path.name.endswith("_test.py") and "testdata" not in path.parts
    )
    listing = "".join(
        f"{path.relative_to(root).as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
        for path in files
    )
    return hashlib.sha256(listing.encode()).hexdigest(), len(files)


async def file_facts(
    kind: str, digest: Digest, files: Tuple[Tuple[str, str], ...]
) -> List[ImageFileFacts]:
    """`files` ((source path in `digest`, image path)) with the sha256 and size Pants knows
    from the digest's entries (its file digests are sha256), without reading them."""
    entries = await Get(DigestEntries, Digest, digest)
    known = {entry.path: entry.file_digest for entry in entries if isinstance(entry, FileEntry)}
    return [
        ImageFileFacts(
            kind,
            f"/{image_path}",
            source,
            known[source].fingerprint,
            known[source].serialized_bytes_length,
        )
        for source, image_path in files
    ]


def installed_files(image: PlatformImage) -> Tuple[str, ...]:
    """Where the wheel layer steps of `image` wrote `installed.json`: beside their descriptors."""
    return tuple(
        f"{posixpath.dirname(descriptor)}/installed.json" for descriptor in image.layer_descriptors
    )


async def _base_facts(base: BaseImage) -> Tuple[Dict[str, Any], Optional[BuildStep]]:
    """What the SBOM says of a base it descends from: for a Debian base, its manifest digest is
    that of the base packaged alone (described from its layer's descriptor, no blob read, by
    the step returned)."""
    facts = {"target": str(base.address), **thawed(base.sbom)}
    if "manifest" in facts:
        return facts, None
    request = ImageArchiveRequest(
        owner=str(base.address),
        tags=base_image_names(base.address),
        images=(
            PlatformImage.create(base=base, inputs=EMPTY_DIGEST, layer_descriptors=(), config={}),
        ),
        output_path=f"__sbom_base/{base.address.path_safe_spec}.tar",
    )
    description = await Get(ImageDescription, ImageArchiveRequest, request)
    facts["manifest"] = description.manifest_digest
    return facts, description.step


def _wheel_json(wheel: LockedWheel) -> Dict[str, Any]:
    return {
        "project": wheel.project,
        "version": wheel.version,
        "filename": wheel.filename,
        "url": wheel.url,
        "sha256": wheel.sha256,
    }


def _file_json(file: ImageFileFacts) -> Dict[str, Any]:
    return {
        "kind": file.kind,
        "path": file.path,
        "source": file.source,
        "sha256": file.sha256,
        "size": file.size,
    }


@rule(desc="Writing an image's SBOM and provenance", level=LogLevel.DEBUG)
async def write_sbom(
    request: SbomRequest, builder: ImageBuilder, subsystem: AiAgentSubsystem
) -> Sbom:
    paths = sbom_paths(request.output_path, tuple(image.platform for image in request.images))
    plugin_sha256, plugin_files = plugin_sources()
    images = []
    facts: List[Digest] = []
    base_steps: List[BuildStep] = []
    for image, document_path in zip(request.images, paths):
        packages = image.packages if image.packages and image.packages.packages_file else None
        if packages is not None:
            facts.append(packages.packages_facts)
        # Only the layers of wheels have an installed.json.
        installed = await Get(Digest, DigestSubset(image.layers, PathGlobs(image.installed)))
        entries = await Get(DigestEntries, Digest, installed)
        facts.append(installed)
        base, base_step = await _base_facts(image.base) if image.base else (None, None)
        if base_step is not None:
            base_steps.append(base_step)
        images.append(
            {
                "platform": image.platform,
                "manifest": image.manifest,
                "config": image.config,
                "output": document_path,
                "base": base,
                "debian": packages.packages_file if packages is not None else None,
                "wheels": [_wheel_json(wheel) for wheel in image.wheels],
                "installed": sorted(entry.path for entry in entries),
                "files": [_file_json(file) for file in image.files],
            }
        )
    spec = {
        "target": request.owner,
        "repository": request.repository,
        "tags": list(request.tags),
        "digest": request.digest,
        "sourceDateEpoch": subsystem.source_date_epoch,
        "tools": {"ai_agent": plugin_sha256[:12], "pants": PANTS_VERSION},
        "plugin": {"sha256": plugin_sha256, "files": plugin_files},
        "locks": [{"path": path, "sha256": sha} for path, sha in sorted(request.locks.items())],
        "provenance": paths[-1],
        "images": images,
    }
    spec_digest = await Get(Digest, CreateDigest([FileContent(_SPEC, canonical_json(spec))]))
    step = BuildStep(
        builder.sbom_write(
            spec=_SPEC,
            outputs=paths,
            inputs=await Get(Digest, MergeDigests([spec_digest, *facts])),
            description=f"Writing the SBOM and provenance of {request.owner}",
        ),
        owner=request.owner,
    )
    output = await Get(BuildStepOutput, BuildStep, step)
    return Sbom(output.digest, paths, step, tuple(dict.fromkeys(base_steps)))


def rules():
    return collect_rules()

"""An image's own layers from files (weights, code, config), each written by its own cacheable
process running the OCI core's `layer` command, so that a change re-runs only the processes
whose inputs it touches:

- weights: uncompressed, one layer per big file and one for the small ones; the process sees only
  those files and their image paths, so identical weights in two agents are one cached layer;
- first-party code and resources, gzip;
- config: `agent.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

from pants.engine.fs import (
    CreateDigest,
    Digest,
    FileContent,
    MergeDigests,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.oci.types import canonical_json
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder, read_json

_LAYER_SPEC = "__layer_spec.json"


APP_DIR = "opt/agent/app"


PACKAGES_PREFIX = "opt/agent"


CONFIG_PATH = "etc/ai-agent/agent.yaml"


@dataclass(frozen=True)
class LayerInfo:
    """A written layer: its descriptor's place in `BuiltLayers.digest` and what it holds."""

    kind: str
    holds: str
    descriptor_path: str
    media_type: str
    digest: str
    size: int
    diff_id: str
    # The non-directory paths it writes, for the check that no two layers write the same path.
    paths: Tuple[str, ...]

    def to_json(self) -> Dict[str, Any]:
        return {
            "kind": self.kind,
            "holds": self.holds,
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "diffID": self.diff_id,
        }


@dataclass(frozen=True)
class BuiltLayers:
    """Layers in `digest`, and every build step that went into them (`verify-reproducible`
    runs them again)."""

    digest: Digest
    layers: Tuple[LayerInfo, ...]
    steps: Tuple[BuildStep, ...]


def layer_info(kind: str, holds: str, descriptor_path: str, descriptor: Mapping) -> LayerInfo:
    return LayerInfo(
        kind=kind,
        holds=holds,
        descriptor_path=descriptor_path,
        media_type=descriptor["mediaType"],
        digest=descriptor["digest"],
        size=descriptor["size"],
        diff_id=descriptor["diffID"],
        paths=tuple(
            entry["path"] for entry in descriptor["entries"] if entry["type"] != "directory"
        ),
    )


@dataclass(frozen=True)
class ImageFile:
    """A file of an image's own layer: where it is in the layer's inputs, and where it lands
    (relative to `/`)."""

    source: str
    image_path: str


@dataclass(frozen=True)
class FileLayerRequest:
    """`files` of `inputs` as one layer, written by the OCI core's `layer` command into
    `directory`."""

    owner: str
    directory: str
    kind: str
    files: Tuple[ImageFile, ...]
    inputs: Digest
    compression: str
    # Summarise the contents by the top-level names below this directory.
    root: str = ""
    # Keep the (uncompressed) layer as a recipe naming its big files (`oci/recipe.py`): its
    # bytes are never written by the step nor captured by Pants; the layer's digest then holds
    # the recipe and `inputs`, which whatever needs the blob stitches it from.
    recipe: bool = False


def _summary(paths: List[str], root: str) -> str:
    """`router_agent, router_model (7 files)` below `root`, else the first paths themselves."""
    if root:
        names = sorted({path[len(root) + 1 :].split("/")[0] for path in paths})
        return f"{', '.join(names)} ({len(paths)} files)"
    shown = ", ".join(f"/{path}" for path in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _spec(request: FileLayerRequest, holds: str, source_date_epoch: int) -> Dict[str, Any]:
    entries = [
        {"path": file.image_path, "source": file.source, "mode": "0644"} for file in request.files
    ]
    return {
        "compression": request.compression,
        "source_date_epoch": source_date_epoch,
        "created_by": f"ai_agent {request.kind}: {holds}",
        "entries": entries,
    }


@rule(desc="Writing a file layer", level=LogLevel.DEBUG)
async def file_layer(
    request: FileLayerRequest, builder: ImageBuilder, subsystem: AiAgentSubsystem
) -> BuiltLayers:
    holds = _summary([file.image_path for file in request.files], request.root)
    spec = _spec(request, holds, subsystem.source_date_epoch)
    spec_file = await Get(Digest, CreateDigest([FileContent(_LAYER_SPEC, canonical_json(spec))]))
    step = BuildStep(
        builder.oci_layer(
            spec=_LAYER_SPEC,
            output_dir=request.directory,
            inputs=await Get(Digest, MergeDigests([request.inputs, spec_file])),
            # Not naming the owner: agents with the same weights run one and the same process.
            description=f"Writing the {request.kind} layer ({holds})",
            recipe=request.recipe,
        ),
        owner=request.owner,
    )
    output = await Get(BuildStepOutput, BuildStep, step)
    descriptor_path = f"{request.directory}/descriptor.json"
    descriptor = await read_json(output.digest, descriptor_path)
    info = layer_info(request.kind, holds, descriptor_path, descriptor)
    digest = output.digest
    if request.recipe:
        digest = await Get(Digest, MergeDigests([output.digest, request.inputs]))
    return BuiltLayers(digest, (info,), (step,))


def rules():
    return collect_rules()

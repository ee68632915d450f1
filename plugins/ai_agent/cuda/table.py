"""The built-in table of CUDA base images: CUDA X.Y -> flavour -> `nvidia/cuda` image reference,
and the `[ai-agents].cuda_bases` overrides (private mirrors, versions the table lacks).

Flavours, smallest first: `base` (libcudart and the driver interface only), `runtime` (+ the
toolkit's shared libraries: cuBLAS, cuFFT, ...), `cudnn-runtime` (+ cuDNN) and `devel` (+ nvcc,
headers). `nvidia/cuda` tags carry `cudnn8` up to CUDA 12.2 and plain `cudnn` (cuDNN 9) from 12.3.

The table names tags, not digests: a digest belongs in it only where it was read from a source
that can be cited; the caller resolves a tag to the digest it pulls by (or a mirror override
names one, `registry/nvidia/cuda:12.4.1-runtime-ubuntu22.04@sha256:...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

from .errors import CudaError

BASE = "base"
RUNTIME = "runtime"
CUDNN_RUNTIME = "cudnn-runtime"
DEVEL = "devel"
FLAVOURS = (BASE, RUNTIME, CUDNN_RUNTIME, DEVEL)

OVERRIDE_OPTION = "[ai-agents].cuda_bases"

_VERSION = re.compile(r"^(?:cuda)?([0-9]+)\.([0-9]+)(?:\.[0-9]+)?$")
_CU_TAG = re.compile(r"^cu([0-9]{2})([0-9])$")
_REFERENCE = re.compile(
    r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?::[0-9]+(?=/))?"  # registry host[:port] or first path part
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"  # path
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


class CudaProblem(CudaError, ValueError):
    """What the agent asks for and what its lock holds do not make a working CUDA image; the
    message says what was found, which field (`accelerator`, `cuda_flavour`, `gpu_archs`, the
    lock or `[ai-agents].cuda_bases`) to change, and how."""


@dataclass(frozen=True, order=True)
class CudaVersion:
    """A CUDA major.minor; the patch release (12.4.1) is the table's business."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> CudaVersion:
        """`12.4`, `12.4.1`, `cuda12.4`, `cuda12.4.1` or PyTorch's `cu124`."""
        cleaned = text.strip().lower()
        match = _VERSION.match(cleaned) or _CU_TAG.match(cleaned)
        if not match:
            raise CudaProblem(
                f"{text!r} is not a CUDA version: expected X.Y such as 12.4 (or 12.4.1, cuda12.4,"
                " cu124)"
            )
        return cls(int(match[1]), int(match[2]))

    @property
    def tag(self) -> str:
        """PyTorch's wheel variant: `cu124`."""
        return f"cu{self.major}{self.minor}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def cudnn_major_of_base(version: CudaVersion) -> int:
    """The cuDNN major of `nvidia/cuda`'s cudnn images: `cudnn8` up to 12.2, cuDNN 9 from 12.3."""
    return 8 if version <= CudaVersion(12, 2) else 9


def _tags(release: str, os_version: str) -> Dict[str, str]:
    version = CudaVersion.parse(release)
    cudnn = "cudnn8" if cudnn_major_of_base(version) == 8 else "cudnn"
    return {
        BASE: f"nvidia/cuda:{release}-base-{os_version}",
        RUNTIME: f"nvidia/cuda:{release}-runtime-{os_version}",
        CUDNN_RUNTIME: f"nvidia/cuda:{release}-{cudnn}-runtime-{os_version}",
        DEVEL: f"nvidia/cuda:{release}-devel-{os_version}",
    }


# CUDA X.Y -> flavour -> image: the newest patch release of X.Y, on the Ubuntu LTS that
# nvidia/cuda publishes it for (12.6 and later on 24.04).
DEFAULT_TABLE: Dict[str, Dict[str, str]] = {
    "11.8": _tags("11.8.0", "ubuntu22.04"),
    "12.1": _tags("12.1.1", "ubuntu22.04"),
    "12.4": _tags("12.4.1", "ubuntu22.04"),
    "12.6": _tags("12.6.3", "ubuntu24.04"),
    "12.8": _tags("12.8.1", "ubuntu24.04"),
    "12.9": _tags("12.9.1", "ubuntu24.04"),
    "13.0": _tags("13.0.1", "ubuntu24.04"),
}


class UnknownCudaVersion(CudaProblem):
    """The CUDA version the agent needs has no base image in the table."""

    def __init__(self, version: CudaVersion, known: Sequence[str], why: str = ""):
        self.version = version
        self.known = tuple(known)
        nearest = _nearest(version, [CudaVersion.parse(text) for text in self.known])
        use = (
            f"set accelerator='cuda{nearest}' and lock wheels built for CUDA {nearest}"
            if nearest
            else "set accelerator to one of those"
        )
        super().__init__(
            f"CUDA {version}{f' ({why})' if why else ''} has no base image in the CUDA table"
            f" (known: {', '.join(self.known) or 'none'}). Either use a known version ({use}),"
            f" or add CUDA {version}'s images to the table, one entry per flavour you use"
            f" ({', '.join(FLAVOURS)}), e.g. {OVERRIDE_OPTION} ="
            f' {{"{version}/runtime":'
            f' "registry.example/nvidia/cuda:{version}.1-runtime-ubuntu22.04"}}'
        )


def _nearest(version: CudaVersion, known: Sequence[CudaVersion]) -> Optional[CudaVersion]:
    """The known version of the same major closest above `version`, else closest below."""
    same = sorted(candidate for candidate in known if candidate.major == version.major)
    above = [candidate for candidate in same if candidate >= version]
    if above:
        return above[0]
    return same[-1] if same else None


def known_versions(table: Mapping[str, Mapping[str, str]]) -> List[str]:
    """The table's CUDA versions, oldest first."""
    return [str(version) for version in sorted(CudaVersion.parse(key) for key in table)]


def table_versions(table: Mapping[str, Mapping[str, str]]) -> List[CudaVersion]:
    return sorted(CudaVersion.parse(key) for key in table)


def base_reference(
    table: Mapping[str, Mapping[str, str]], version: CudaVersion, flavour: str, why: str = ""
) -> str:
    """The image of `version`'s `flavour`, or `UnknownCudaVersion` / a `CudaProblem` saying how
    to add it."""
    flavours = _entry(table, version)
    if flavours is None:
        raise UnknownCudaVersion(version, known_versions(table), why)
    reference = flavours.get(flavour)
    if reference is None:
        raise CudaProblem(
            f"the CUDA table has no {flavour!r} image for CUDA {version} (it has"
            f" {', '.join(sorted(flavours)) or 'none'}): set cuda_flavour to one of those, or add"
            f' {OVERRIDE_OPTION} = {{"{version}/{flavour}": "registry.example/…:tag"}}'
        )
    return reference


def _entry(
    table: Mapping[str, Mapping[str, str]], version: CudaVersion
) -> Optional[Mapping[str, str]]:
    for key, flavours in table.items():
        if CudaVersion.parse(key) == version:
            return flavours
    return None


def merge_table(
    default: Mapping[str, Mapping[str, str]], overrides: Mapping[str, str]
) -> Dict[str, Dict[str, str]]:
    """`default` with `overrides` (`{"12.4/runtime": "mirror.example/cuda:12.4.1-runtime-…"}`)
    laid over it; a version the default lacks is added with the flavours given. Keys are
    normalised to "X.Y"; the result is a new table sorted by version."""
    merged: Dict[CudaVersion, Dict[str, str]] = {
        CudaVersion.parse(key): dict(flavours) for key, flavours in default.items()
    }
    seen: Dict[str, str] = {}
    for key in sorted(overrides):
        reference = overrides[key]
        version_text, slash, flavour = key.partition("/")
        where = f"{OVERRIDE_OPTION}: key {key!r}"
        if not slash or not version_text or not flavour:
            raise CudaProblem(
                f'{where} is not "X.Y/FLAVOUR" (e.g. "12.4/runtime"); flavours:'
                f" {', '.join(FLAVOURS)}"
            )
        try:
            version = CudaVersion.parse(version_text)
        except CudaProblem as error:
            raise CudaProblem(f"{where}: {error}") from None
        flavour = flavour.strip()
        if flavour not in FLAVOURS:
            raise CudaProblem(
                f"{where}: {flavour!r} is not a flavour; use one of {', '.join(FLAVOURS)}"
            )
        normalised = f"{version}/{flavour}"
        if normalised in seen:
            raise CudaProblem(
                f"{where} and key {seen[normalised]!r} both set {normalised}: keep one"
            )
        seen[normalised] = key
        if not isinstance(reference, str) or not _REFERENCE.match(reference.strip()):
            raise CudaProblem(
                f"{where}: {reference!r} is not an image reference such as"
                " registry.example/nvidia/cuda:12.4.1-runtime-ubuntu22.04[@sha256:…]"
            )
        match = _REFERENCE.match(reference.strip())
        assert match is not None
        if not match["tag"] and not match["digest"]:
            raise CudaProblem(
                f"{where}: {reference!r} has neither a tag nor a digest (it would mean"
                " `latest`, which moves): name the tag, and preferably the @sha256 digest"
            )
        merged.setdefault(version, {})[flavour] = reference.strip()
    return {str(version): merged[version] for version in sorted(merged)}

"""Choose an agent image's CUDA base from its `accelerator`, `cuda_flavour` and `gpu_archs` and
what its locked wheels need (`LockedCuda`), and refuse combinations that cannot work.

Rules:
- `accelerator='cuda'` follows the lock: the CUDA major.minor its wheels are built for (torch
  `+cu124`, the `nvidia-cuda-runtime-cu12` pin); a lock that only names the major (cupy-cuda12x,
  onnxruntime-gpu) gets that major's preferred table version (with a warning); no CUDA wheel at
  all is an error. `accelerator='cuda12.4'` must agree with the lock: a locked major.minor must
  equal it, a lock that only knows the major must match the major.
- One resolve, one CUDA: two CUDA majors (or two major.minors) in the lock are an error.
- Flavour: `base` when pip ships CUDA's libraries (nvidia-* wheels; anything bigger installs CUDA
  twice), else `cudnn-runtime` when something needs cuDNN, else `runtime`. An explicit
  `cuda_flavour` is respected, with a warning where it duplicates or lacks libraries.
- GPU floors: Blackwell (sm_100, sm_120) needs CUDA >= 12.8 and torch >= 2.7; Hopper (sm_90)
  CUDA >= 11.8 and torch >= 2.0.1; CUDA 13 dropped Volta (sm_70).
- The image tells the NVIDIA Container Toolkit what it needs (`NVIDIA_REQUIRE_CUDA=cuda>=X.Y`
  makes a too-old host driver fail fast) and labels the choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from packaging.version import Version

from .lock import CudaClaim, LockedCuda
from .table import (
    BASE,
    CUDNN_RUNTIME,
    DEFAULT_TABLE,
    DEVEL,
    FLAVOURS,
    OVERRIDE_OPTION,
    RUNTIME,
    CudaProblem,
    CudaVersion,
    UnknownCudaVersion,
    base_reference,
    cudnn_major_of_base,
    known_versions,
    table_versions,
)

__all__ = [
    "CudaChoice",
    "CudaProblem",
    "KNOWN_GPU_ARCHS",
    "UnknownCudaVersion",
    "default_flavour",
    "parse_accelerator",
    "parse_gpu_archs",
    "select_cuda",
]

KNOWN_GPU_ARCHS = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120")
GPU_FAMILIES = {
    "sm_70": "Volta, V100",
    "sm_75": "Turing, T4",
    "sm_80": "Ampere, A100",
    "sm_86": "Ampere, A10/RTX 30",
    "sm_89": "Ada, L4/L40",
    "sm_90": "Hopper, H100/H200",
    "sm_100": "Blackwell, B200",
    "sm_120": "Blackwell, RTX 50/RTX PRO",
}


@dataclass(frozen=True)
class ArchFloor:
    """The oldest CUDA, and torch, that run on a GPU architecture."""

    cuda: CudaVersion
    torch: str


ARCH_FLOORS: Dict[str, ArchFloor] = {
    "sm_90": ArchFloor(CudaVersion(11, 8), "2.0.1"),
    "sm_100": ArchFloor(CudaVersion(12, 8), "2.7"),
    "sm_120": ArchFloor(CudaVersion(12, 8), "2.7"),
}
# The newest CUDA that still supports an architecture (CUDA 13.0 removed Maxwell to Volta).
ARCH_CEILINGS: Dict[str, CudaVersion] = {"sm_70": CudaVersion(12, 9)}

# torch X.Y -> its CUDA wheel variants on https://download.pytorch.org/whl/<variant>.
TORCH_CUDA_VARIANTS: Dict[str, Tuple[str, ...]] = {
    "2.1": ("cu118", "cu121"),
    "2.2": ("cu118", "cu121"),
    "2.3": ("cu118", "cu121"),
    "2.4": ("cu118", "cu121", "cu124"),
    "2.5": ("cu118", "cu121", "cu124"),
    "2.6": ("cu118", "cu124", "cu126"),
    "2.7": ("cu118", "cu126", "cu128"),
    "2.8": ("cu126", "cu128", "cu129"),
    "2.9": ("cu126", "cu128", "cu130"),
    "2.10": ("cu126", "cu128", "cu130"),
}
# torch X.Y -> the CUDA of PyPI's default Linux x86_64 wheel (its nvidia-cuda-runtime pin).
PYPI_TORCH_CUDA: Dict[str, CudaVersion] = {
    "2.0": CudaVersion(11, 7),
    "2.3": CudaVersion(12, 1),
    "2.4": CudaVersion(12, 1),
    "2.5": CudaVersion(12, 4),
    "2.6": CudaVersion(12, 4),
    "2.7": CudaVersion(12, 6),
    "2.8": CudaVersion(12, 8),
    "2.9": CudaVersion(12, 8),
}
# The table version used when the lock only names a CUDA major.
PREFERRED_VERSION: Dict[int, CudaVersion] = {
    11: CudaVersion(11, 8),
    12: CudaVersion(12, 4),
    13: CudaVersion(13, 0),
}

_DOWNLOAD_PYTORCH = "https://download.pytorch.org/whl"


@dataclass(frozen=True)
class CudaChoice:
    """The CUDA base of an agent image and what the image says about it."""

    version: CudaVersion
    flavour: str
    base_reference: str
    env: Dict[str, str]
    labels: Dict[str, str]
    warnings: List[str]
    origin: str  # why this version: "accelerator='cuda12.4'" or what the lock says
    # Where the locked nvidia-* wheels put their shared libraries, below site-packages
    # (`nvidia/cublas/lib`): the dynamic loader must find them for native code that links them.
    library_dirs: Tuple[str, ...] = ()
    # Empty when the lock ships CUDA's libraries as wheels; else the requirements that would
    # (the hermetic route, instead of an nvidia/cuda base).
    libraries_to_lock: Tuple[str, ...] = ()

    @property
    def wheels_carry_cuda(self) -> bool:
        """pip ships CUDA's libraries and nothing asks for nvidia/cuda's copies: any Python base
        with the NVIDIA settings runs it."""
        return self.flavour == BASE and not self.libraries_to_lock


def parse_accelerator(accelerator: str) -> Optional[CudaVersion]:
    """`cuda` -> None (follow the lock); `cuda12.4` (or `cuda12.4.1`) -> 12.4."""
    text = accelerator.strip().lower()
    if text == "cuda":
        return None
    if text.startswith("cuda"):
        try:
            return CudaVersion.parse(text)
        except CudaProblem:
            pass
    raise CudaProblem(
        f"accelerator={accelerator!r} is not a CUDA accelerator: set accelerator='cuda' (the CUDA"
        " the locked wheels are built for) or accelerator='cudaX.Y' such as 'cuda12.4'"
    )


def parse_gpu_archs(gpu_archs: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """`["sm_90", "SM_120"]` (or "sm_90,sm_120") -> ("sm_90", "sm_120"): known, in order."""
    items = gpu_archs.split(",") if isinstance(gpu_archs, str) else list(gpu_archs)
    wanted = {item.strip().lower() for item in items if item.strip()}
    unknown = sorted(wanted - set(KNOWN_GPU_ARCHS))
    if unknown:
        known = ", ".join(f"{arch} ({GPU_FAMILIES[arch]})" for arch in KNOWN_GPU_ARCHS)
        what = "is not a known GPU architecture" if len(unknown) == 1 else "are not known ones"
        raise CudaProblem(
            f"gpu_archs has {', '.join(repr(arch) for arch in unknown)}, which {what}; known:"
            f" {known}. Fix gpu_archs, e.g. gpu_archs=['sm_90'] for H100"
        )
    return tuple(arch for arch in KNOWN_GPU_ARCHS if arch in wanted)


def default_flavour(locked: LockedCuda) -> str:
    """`base` when pip ships CUDA (no second copy), else `cudnn-runtime` or `runtime`."""
    if locked.ships_cuda_libraries:
        return BASE
    return CUDNN_RUNTIME if locked.needs_cudnn else RUNTIME


def select_cuda(
    accelerator: str,
    locked: LockedCuda,
    flavour: Optional[str] = None,
    gpu_archs: Union[str, Sequence[str]] = (),
    table: Mapping[str, Mapping[str, str]] = DEFAULT_TABLE,
) -> CudaChoice:
    """The CUDA base, env and labels of an image with `accelerator` ('cuda' or 'cudaX.Y'),
    or a `CudaProblem` naming the field to change."""
    requested = parse_accelerator(accelerator)
    archs = parse_gpu_archs(gpu_archs)
    if flavour is not None and flavour not in FLAVOURS:
        raise CudaProblem(
            f"cuda_flavour={flavour!r} is not a flavour: use one of {', '.join(FLAVOURS)}, or leave"
            f" it unset for {default_flavour(locked)!r} (what this lock needs)"
        )
    chosen_flavour = flavour or default_flavour(locked)
    _check_not_rocm(locked)
    _check_one_major(locked)
    _check_one_version(locked)
    warnings: List[str] = []
    if requested is None:
        version, origin = _version_from_lock(locked, archs, chosen_flavour, table, warnings)
    else:
        _check_agrees(requested, accelerator, locked)
        version, origin = requested, f"accelerator={accelerator!r}"
    if version not in table_versions(table):
        raise UnknownCudaVersion(version, known_versions(table), f"from {origin}")
    _check_archs(archs, version, origin, requested is not None, locked)
    if locked.cpu_only_torch:
        warnings.append(_cpu_torch_warning(locked, version))
    warnings += _flavour_warnings(locked, chosen_flavour, explicit=flavour is not None)
    _check_cudnn(locked, version, chosen_flavour, requested is not None)
    reference = base_reference(table, version, chosen_flavour)
    env = {
        "NVIDIA_VISIBLE_DEVICES": "all",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "NVIDIA_REQUIRE_CUDA": f"cuda>={version}",
    }
    labels = {
        "ai-agent.cuda.version": str(version),
        "ai-agent.cuda.flavour": chosen_flavour,
        "ai-agent.cuda.base": reference,
    }
    if archs:
        labels["ai-agent.gpu-archs"] = ",".join(archs)
    return CudaChoice(
        version,
        chosen_flavour,
        reference,
        env,
        labels,
        warnings,
        origin,
        library_dirs=_library_dirs(locked),
        libraries_to_lock=_libraries_to_lock(locked, version),
    )


def _library_dirs(locked: LockedCuda) -> Tuple[str, ...]:
    """`nvidia-cuda-runtime-cu12 12.4.127` installs `nvidia/cuda_runtime/lib/libcudart.so.12`."""
    directories = set()
    for library in locked.cuda_libraries:
        project = library.split(" ", 1)[0]
        name = re.sub(r"-cu[0-9]+$", "", project[len("nvidia-") :])
        directories.add(f"nvidia/{name.replace('-', '_')}/lib")
    return tuple(sorted(directories))


def _libraries_to_lock(locked: LockedCuda, version: CudaVersion) -> Tuple[str, ...]:
    """The requirements that make pip ship the CUDA libraries the lock needs: onnxruntime-gpu's
    own extras where it has them (>= 1.19, CUDA 12), else the nvidia-* wheels."""
    if locked.ships_cuda_libraries:
        return ()
    projects = {claim.project for claim in locked.claims}
    if projects == {"onnxruntime-gpu"} and version.major >= 12:
        return ("onnxruntime-gpu[cuda,cudnn]",)
    cu = f"cu{version.major}"
    wanted = [f"nvidia-cuda-runtime-{cu}", f"nvidia-cublas-{cu}"]
    if locked.needs_cudnn:
        wanted.append(f"nvidia-cudnn-{cu}")
    return tuple(wanted)


# The lock alone -----------------------------------------------------------------------------------


def _names(items: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def _load(items: Sequence[object]) -> str:
    return "loads" if len(items) == 1 else "load"


def _need(items: Sequence[object]) -> str:
    return "needs" if len(items) == 1 else "need"


def _claims(claims: Sequence[CudaClaim], limit: int = 4) -> str:
    return _names([claim.describe() for claim in claims], limit)


def _check_not_rocm(locked: LockedCuda) -> None:
    if locked.rocm_torch:
        raise CudaProblem(
            f"locked {locked.torch} is a ROCm (AMD GPU) build, which cannot use CUDA: lock a CUDA"
            f" build of torch (PyPI's default, or +cuXYZ from {_DOWNLOAD_PYTORCH}/cuXYZ) and"
            " regenerate the lockfile, or do not build this agent for CUDA"
        )


def _check_one_major(locked: LockedCuda) -> None:
    majors = locked.majors
    if len(majors) < 2:
        return
    found = "; ".join(f"CUDA {major}: {_claims(claims)}" for major, claims in majors.items())
    torch = locked.torch_claim()
    keep = torch.major if torch is not None and torch.major is not None else None
    if keep is None:
        keep = max(majors, key=lambda major: (len(majors[major]), major))
    swaps = [
        swap
        for claims in (majors[major] for major in majors if major != keep)
        for swap in (_same_project_for(claim, keep) for claim in claims)
        if swap
    ]
    hint = f" (e.g. {_names(swaps, 3)})" if swaps else ""
    raise CudaProblem(
        f"the lock mixes CUDA majors ({found}), but one image has one CUDA: lock wheels of a"
        f" single CUDA major, e.g. CUDA {keep}{hint}, and regenerate the lockfile"
    )


def _same_project_for(claim: CudaClaim, major: int) -> str:
    """The name of `claim`'s project built for CUDA `major`, where the naming is regular."""
    project = claim.project
    for old in (f"-cuda{claim.major}x", f"-cu{claim.major}", f"-cuda{claim.major}-"):
        if old in project or project.endswith(old):
            new = old.replace(str(claim.major), str(major))
            return f"{project.replace(old, new)} instead of {project}"
    return ""


def _check_one_version(locked: LockedCuda) -> None:
    versions: Dict[Tuple[int, int], List[str]] = {}
    for claim in locked.claims_with_minor():
        assert claim.major is not None and claim.minor is not None
        versions.setdefault((claim.major, claim.minor), []).append(claim.describe())
    if len(versions) < 2:
        return
    found = "; ".join(
        f"CUDA {major}.{minor}: {_names(names)}"
        for (major, minor), names in sorted(versions.items())
    )
    raise CudaProblem(
        f"the lock's wheels are built for different CUDA versions ({found}): lock wheels of one"
        " CUDA version (torch's +cuXYZ build and the nvidia-*-cuXX pins it requires) and"
        " regenerate the lockfile"
    )


def _version_from_lock(
    locked: LockedCuda,
    archs: Sequence[str],
    flavour: str,
    table: Mapping[str, Mapping[str, str]],
    warnings: List[str],
) -> Tuple[CudaVersion, str]:
    exact = locked.claims_with_minor()
    if exact:
        torch = locked.torch_claim()
        claim = torch if torch is not None and torch.minor is not None else exact[0]
        assert claim.major is not None and claim.minor is not None
        version = CudaVersion(claim.major, claim.minor)
        return version, f"the lock's {claim.describe()}: {claim.reason}"
    if locked.majors:
        ((major, claims),) = locked.majors.items()
        return _version_for_major(major, claims, locked, archs, flavour, table, warnings)
    known = ", ".join(known_versions(table))
    if locked.unknown_version:
        claim = locked.unknown_version[0]
        hint = ""
        series = _series(claim.version)
        if claim.project == "torch" and series in PYPI_TORCH_CUDA:
            pypi = PYPI_TORCH_CUDA[series]
            hint = f" (PyPI's torch {series} is built for CUDA {pypi}: accelerator='cuda{pypi}')"
        raise CudaProblem(
            f"the lock needs CUDA ({claim.describe()}: {claim.reason}) but does not say which"
            f" version: set accelerator='cudaX.Y' (known: {known}){hint}, or lock the"
            " nvidia-cuda-runtime wheel the framework requires"
        )
    cpu = ""
    if locked.cpu_only_torch:
        cpu = f" ({locked.torch} is a CPU-only build: {locked.cpu_only_reason})"
    raise CudaProblem(
        f"no CUDA wheel is locked for this agent{cpu}, so accelerator='cuda' cannot tell which"
        " CUDA to use: lock a CUDA build (torch from PyPI or +cu124 from"
        f" {_DOWNLOAD_PYTORCH}/cu124, onnxruntime-gpu, cupy-cuda12x, jax[cuda12], ...) and"
        f" regenerate the lockfile, or set accelerator='cuda12.4' to choose the CUDA version"
        f" yourself (known: {known}), or accelerator='cpu'"
    )


def _version_for_major(
    major: int,
    claims: Sequence[CudaClaim],
    locked: LockedCuda,
    archs: Sequence[str],
    flavour: str,
    table: Mapping[str, Mapping[str, str]],
    warnings: List[str],
) -> Tuple[CudaVersion, str]:
    """A lock that only names the CUDA major: its preferred table version, or the oldest one
    that the GPU archs and the cuDNN the base must bring allow."""
    cudnn = _cudnn_from_base(locked, flavour)
    candidates = [
        version
        for version in table_versions(table)
        if version.major == major
        and all(_arch_allows(arch, version) for arch in archs)
        and (cudnn is None or cudnn_major_of_base(version) == cudnn)
    ]
    if not candidates:
        constraints = []
        if archs:
            constraints.append(f"gpu_archs={list(archs)}")
        if cudnn is not None:
            constraints.append(f"a cudnn-runtime base with cuDNN {cudnn}")
        needs = f" that suits {' and '.join(constraints)}" if constraints else ""
        raise CudaProblem(
            f"the lock needs CUDA {major} ({_claims(claims)}) but the CUDA table has no CUDA"
            f" {major}.x{needs} (known: {', '.join(known_versions(table))}): set"
            f" accelerator='cuda{major}.Y' and add its images with {OVERRIDE_OPTION}, or change"
            " gpu_archs"
        )
    preferred = PREFERRED_VERSION.get(major)
    version = preferred if preferred in candidates else candidates[0]
    warnings.append(
        f"the lock only says CUDA {major} ({_claims(claims, 3)}), not which {major}.x: chose"
        f" CUDA {version}; set accelerator='cuda{major}.Y' to choose another"
    )
    return version, f"the lock's {_claims(claims, 2)}: CUDA {major}, {version} chosen"


def _cudnn_from_base(locked: LockedCuda, flavour: str) -> Optional[int]:
    """The cuDNN major the base must bring, when its cudnn-runtime image brings cuDNN."""
    if flavour != CUDNN_RUNTIME or locked.cudnn_locked is not None:
        return None
    majors = list(locked.cudnn_majors)
    return majors[0] if len(majors) == 1 else None


# The lock against the agent's fields --------------------------------------------------------------


def _series(version: str) -> str:
    """`2.4.1+cu121` -> `2.4`."""
    try:
        release = Version(version).release
    except ValueError:
        return ""
    return ".".join(str(part) for part in release[:2])


def _public(version: str) -> str:
    """`2.4.1+cu121` -> `2.4.1`."""
    return version.split("+", 1)[0]


def _torch_fix(torch_version: str, want: CudaVersion) -> str:
    """How to lock torch built for CUDA `want` in the series of `torch_version`: a phrase that
    starts with "lock"."""
    series, public = _series(torch_version), _public(torch_version)
    ways = []
    if PYPI_TORCH_CUDA.get(series) == want:
        ways.append(f"torch=={public} from PyPI (its default build is CUDA {want})")
    variants = TORCH_CUDA_VARIANTS.get(series, ())
    if want.tag in variants:
        ways.append(f"torch=={public}+{want.tag} from {_DOWNLOAD_PYTORCH}/{want.tag}")
    if ways:
        return f"lock {' or '.join(ways)} and regenerate the lockfile"
    builds = f" (torch {series}'s CUDA builds are {', '.join(variants)})" if variants else ""
    return f"lock a torch version built for CUDA {want}{builds} and regenerate the lockfile"


def _check_agrees(requested: CudaVersion, accelerator: str, locked: LockedCuda) -> None:
    """A locked major.minor must equal the requested one; a locked major, its major."""
    wrong = [
        claim
        for claim in locked.claims
        if claim.major is not None
        and (
            claim.major != requested.major
            or (claim.minor is not None and claim.minor != requested.minor)
        )
    ]
    if not wrong:
        return
    torch = next((claim for claim in wrong if claim.project == "torch"), None)
    exact = next((claim for claim in wrong if claim.minor is not None), None)
    first = torch or exact or wrong[0]
    if first.minor is not None:
        follow = f"set accelerator='cuda{first.cuda}' (or accelerator='cuda' to follow the lock)"
    else:
        follow = f"set accelerator to a CUDA {first.major} version such as 'cuda{first.major}.Y'"
    if first.project == "torch" and locked.torch_version:
        relock = _torch_fix(locked.torch_version, requested)
    else:
        relock = (
            f"lock {first.project} built for CUDA {requested} (with the wheels it requires)"
            " and regenerate the lockfile"
        )
    others = [
        claim for claim in wrong if claim is not first and claim.describe() not in first.reason
    ]
    also = ""
    if others:
        also = " Other locked wheels for another CUDA: " + _names(
            [f"{claim.describe()} (CUDA {claim.cuda})" for claim in others], 3
        )
        also += "."
    raise CudaProblem(
        f"locked {first.describe()} is built for CUDA {first.cuda} but accelerator is"
        f" {accelerator.strip().lower()} ({first.reason}); {follow}, or {relock}.{also}"
    )


def _arch_allows(arch: str, version: CudaVersion) -> bool:
    floor = ARCH_FLOORS.get(arch)
    ceiling = ARCH_CEILINGS.get(arch)
    return (floor is None or version >= floor.cuda) and (ceiling is None or version <= ceiling)


def _public_version(version: str) -> Version:
    """`2.4.1+cu121` -> Version 2.4.1, for comparing torch series and floors."""
    return Version(_public(version))


def _check_archs(
    archs: Sequence[str],
    version: CudaVersion,
    origin: str,
    explicit: bool,
    locked: LockedCuda,
) -> None:
    torch_version = locked.torch_version if not locked.cpu_only_torch else None
    problems = []
    for arch in archs:
        family = f"{arch} ({GPU_FAMILIES[arch]})"
        ceiling = ARCH_CEILINGS.get(arch)
        if ceiling is not None and version > ceiling:
            problems.append(
                f"gpu_archs has {family}, which CUDA {ceiling.major + 1} and later no longer"
                f" support, but the image's CUDA is {version} (from {origin}): use CUDA"
                f" {ceiling.major}.x (accelerator='cuda{ceiling}', with wheels built for it) or"
                f" remove {arch} from gpu_archs"
            )
        floor = ARCH_FLOORS.get(arch)
        if floor is None:
            continue
        cuda_low = version < floor.cuda
        torch_low = torch_version is not None and _public_version(torch_version) < _public_version(
            floor.torch
        )
        if not cuda_low and not torch_low:
            continue
        need = f"CUDA >= {floor.cuda}"
        have = f"the image's CUDA is {version} (from {origin})"
        if torch_version is not None:
            need += f" and torch >= {floor.torch}"
            have += f" and the lock has torch {torch_version}"
        problems.append(
            f"gpu_archs has {family}, which needs {need}, but {have}:"
            f" {_arch_fix(arch, floor, explicit, torch_version)}"
        )
    if problems:
        raise CudaProblem("; ".join(problems))


def _arch_fix(arch: str, floor: ArchFloor, explicit: bool, torch_version: Optional[str]) -> str:
    then = (
        f", then set accelerator='cuda{floor.cuda}' (or 'cuda' to follow the lock)"
        if explicit
        else " (accelerator='cuda' follows the lock)"
    )
    if torch_version is None:
        if explicit:
            fix = f"set accelerator='cuda{floor.cuda}' or later and lock wheels built for it"
        else:
            fix = f"lock wheels built for CUDA >= {floor.cuda} and regenerate the lockfile"
        return f"{fix}, or remove {arch} from gpu_archs"
    ways = []
    series, public = _series(torch_version), _public(torch_version)
    for candidate in sorted(TORCH_CUDA_VARIANTS, key=_public_version):
        if _public_version(candidate) < max(_public_version(floor.torch), _public_version(series)):
            continue
        good = [
            tag for tag in TORCH_CUDA_VARIANTS[candidate] if CudaVersion.parse(tag) >= floor.cuda
        ]
        if good:
            which = (
                f"torch=={public}+{good[0]}"
                if candidate == series
                else f"torch {candidate} (+{good[0]})"
            )
            ways.append(f"{which} from {_DOWNLOAD_PYTORCH}/{good[0]}")
            break
    pypi = [
        candidate
        for candidate, cuda in PYPI_TORCH_CUDA.items()
        if cuda >= floor.cuda and _public_version(candidate) >= _public_version(floor.torch)
    ]
    if pypi:
        oldest = min(pypi, key=_public_version)
        ways.append(f"torch>={oldest} from PyPI (built for CUDA {PYPI_TORCH_CUDA[oldest]})")
    if not ways:
        ways.append(f"a torch >= {floor.torch} built for CUDA >= {floor.cuda}")
    return (
        f"lock {' or '.join(ways)} and regenerate the lockfile{then}, or remove {arch} from"
        " gpu_archs"
    )


def _cpu_torch_warning(locked: LockedCuda, version: CudaVersion) -> str:
    torch_version = locked.torch_version or ""
    return (
        f"locked {locked.torch} is a CPU-only build ({locked.cpu_only_reason}): torch will not use"
        f" the GPU in this CUDA image; {_torch_fix(torch_version, version)}, or set"
        " accelerator='cpu'"
    )


def _flavour_warnings(locked: LockedCuda, flavour: str, explicit: bool) -> List[str]:
    warnings = []
    if locked.ships_cuda_libraries and flavour != BASE:
        purpose = " or compiles CUDA code in the image" if flavour == DEVEL else ""
        warnings.append(
            f"CUDA installed twice: the lock ships CUDA's libraries as wheels"
            f" ({_names(list(locked.cuda_libraries), 3)}) and cuda_flavour={flavour!r} adds"
            " nvidia/cuda's copies (gigabytes more in every image); leave cuda_flavour unset"
            f" ('base') unless something loads CUDA from the system library path{purpose}"
        )
    if locked.ships_cuda_libraries and flavour == BASE and locked.system_cuda_users:
        warnings.append(
            f"{_names(list(locked.system_cuda_users))} {_load(locked.system_cuda_users)} CUDA's"
            " libraries from the system library path rather than from the nvidia-* wheels, and"
            " the 'base' flavour has only libcudart: if they fail to load cuBLAS or cuDNN, set"
            " cuda_flavour='cudnn-runtime' (or 'runtime')"
        )
    if explicit and not locked.ships_cuda_libraries:
        users = [claim.describe() for claim in locked.claims]
        if flavour == BASE and users:
            warnings.append(
                f"cuda_flavour='base' has only libcudart, but {_names(users)} {_need(users)} CUDA's"
                " libraries (cuBLAS, cuFFT, ...), which the lock does not ship: set cuda_flavour="
                f"{default_flavour(locked)!r} or leave it unset"
            )
        elif flavour == RUNTIME and locked.needs_cudnn:
            warnings.append(
                f"{_names(list(locked.cudnn_needed_by))} {_need(locked.cudnn_needed_by)} cuDNN,"
                " which cuda_flavour='runtime'"
                " lacks and the lock does not ship: set cuda_flavour='cudnn-runtime' or leave it"
                " unset"
            )
    return warnings


def _check_cudnn(
    locked: LockedCuda, version: CudaVersion, flavour: str, explicit_version: bool
) -> None:
    """A cudnn-runtime base must bring the cuDNN major that what needs cuDNN was built for."""
    if flavour != CUDNN_RUNTIME or locked.cudnn_locked is not None:
        return
    majors = locked.cudnn_majors
    if len(majors) > 1:
        found = "; ".join(
            f"cuDNN {major}: {_names(list(names))}" for major, names in majors.items()
        )
        raise CudaProblem(
            f"the lock needs two cuDNN majors ({found}) and a base brings one: lock versions"
            " built for the same cuDNN and regenerate the lockfile"
        )
    base = cudnn_major_of_base(version)
    for major, names in majors.items():
        if major == base:
            continue
        if major == 9:
            use = "CUDA >= 12.3 (accelerator='cuda12.4' or later)"
        else:
            use = "CUDA <= 12.2 (accelerator='cuda12.1' or 'cuda11.8')"
        field = "set accelerator to" if explicit_version else "use"
        raise CudaProblem(
            f"{_names(list(names))} {_need(names)} cuDNN {major}, but CUDA {version}'s"
            " cudnn-runtime base"
            f" has cuDNN {base} (nvidia/cuda has cuDNN 8 up to CUDA 12.2 and cuDNN 9 from"
            f" 12.3): {field} {use}, or lock nvidia-cudnn-cu{version.major}=={major}.* so pip"
            " ships the cuDNN they need"
        )

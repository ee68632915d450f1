"""What the wheels locked for an image say about CUDA.

The input is the list of distributions the image installs, each a project, a version and the
wheel's file name: `(project, version, filename)` tuples, the `ChosenWheel`s of
`ai_agent.wheels.pexlock` or the JSON objects `python -m ai_agent.wheels plan` prints. From them:

- torch: a local version `+cu124` is a CUDA 12.4 build, `+cpu` a CPU-only one, `+rocm…` a ROCm
  one; without a local version (PyPI) the Linux x86_64 wheel is a CUDA build linked against the
  `nvidia-*` wheels, so its CUDA is the locked `nvidia-cuda-runtime-cuXX`'s (unknown if that is
  not locked), and a non-x86_64 wheel without `nvidia-*` wheels is a CPU build;
- `nvidia-*-cu11` / `-cu12` / `-cu13` wheels (and CUDA 13's unsuffixed `nvidia-cuda-runtime`,
  `nvidia-cublas`, ...): pip ships CUDA's libraries; their CUDA major is the suffix, and
  `nvidia-cuda-runtime-cuXX`'s version gives the minor (12.4.127 is CUDA 12.4);
  `nvidia-cudnn-cuXX` ships cuDNN (its major is the version's);
- onnxruntime-gpu (CUDA 12 and cuDNN 9 from 1.19, CUDA 11 and cuDNN 8 before), `cupy-cuda12x`
  / `cupy-cuda11x`, `jax-cuda12-plugin` / `jax-cuda12-pjrt` (`jax[cuda12]`), jaxlib's
  `+cuda12.cudnn89` builds, `tensorrt-cu12`, paddlepaddle-gpu: CUDA of that major (or unknown).
  `tensorflow[and-cuda]` shows as its `nvidia-*-cu12` wheels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

_NVIDIA_SUFFIXED = re.compile(
    r"^nvidia-(?P<library>[a-z0-9]+(?:-[a-z0-9]+)*?)-cu(?P<major>1[0-9])$"
)
# CUDA 13's wheels dropped the suffix; these versions start with the CUDA major (13.0.96).
_NVIDIA_VERSIONED_LIKE_CUDA = frozenset(
    {"cuda-runtime", "cuda-nvrtc", "cuda-cupti", "cuda-nvcc", "cublas", "nvjitlink", "nvtx"}
)
# ... and these do not (cuFFT 12.x is CUDA 13's): they ship CUDA but say nothing of its version.
_NVIDIA_UNSUFFIXED_OTHERS = frozenset(
    {"cufft", "curand", "cusolver", "cusparse", "cufile", "npp", "nvjpeg", "nvfatbin", "nvvm"}
)
_CUPY = re.compile(r"^cupy-cuda(?P<major>1[0-9])x$")
_CUPY_OLD = re.compile(r"^cupy-cuda(?P<major>1[0-9])(?P<minor>[0-9])$")
_JAX_PLUGIN = re.compile(r"^jax-cuda(?P<major>1[0-9])-(?:plugin|pjrt)$")
_JAXLIB_LOCAL = re.compile(r"^cuda(?P<major>1[0-9])(?:\.cudnn(?P<cudnn>[0-9]+))?")
_TENSORRT = re.compile(r"^tensorrt-cu(?P<major>1[0-9])(?:-libs|-bindings)?$")
_TORCH_CUDA_LOCAL = re.compile(r"^cu(?P<major>1[0-9])(?P<minor>[0-9])$")

RUNTIME_LIBRARY = "cuda-runtime"
CUDNN_LIBRARY = "cudnn"


class WheelLike(Protocol):
    """Anything with `.project`, `.version` and `.filename` (a `ChosenWheel`)."""

    @property
    def project(self) -> str:
        ...

    @property
    def version(self) -> str:
        ...

    @property
    def filename(self) -> str:
        ...


Distribution = Union[Tuple[str, str, str], Mapping[str, Any], WheelLike]


@dataclass(frozen=True)
class LockedDistribution:
    """One installed distribution: canonical project name, version and wheel file name."""

    project: str
    version: str
    filename: str

    @classmethod
    def of(cls, item: Distribution) -> LockedDistribution:
        if isinstance(item, tuple):
            project, version, filename = item
        elif isinstance(item, Mapping):
            project, version, filename = item["project"], item["version"], item["filename"]
        else:
            project, version, filename = item.project, item.version, item.filename
        return cls(canonicalize_name(project), str(version), str(filename))

    def describe(self) -> str:
        return f"{self.project} {self.version}"

    def machines(self) -> Tuple[str, ...]:
        """The CPU architectures the wheel's platform tags name (`x86_64`, `aarch64`)."""
        try:
            _, _, _, tags = parse_wheel_filename(self.filename)
        except (InvalidWheelFilename, InvalidVersion):
            return ()
        found = set()
        for tag in tags:
            for machine in ("x86_64", "aarch64", "ppc64le", "s390x"):
                if tag.platform.endswith(machine):
                    found.add(machine)
        return tuple(sorted(found))


@dataclass(frozen=True)
class CudaClaim:
    """A locked distribution that needs CUDA: of `major`.`minor`, of `major` (minor None), or of
    an unknown version (both None); `reason` says how that was read."""

    project: str
    version: str
    major: Optional[int]
    minor: Optional[int]
    reason: str

    def describe(self) -> str:
        return f"{self.project} {self.version}"

    @property
    def cuda(self) -> str:
        """`12.4`, `12` or `unknown`."""
        if self.major is None:
            return "unknown"
        return f"{self.major}" if self.minor is None else f"{self.major}.{self.minor}"


@dataclass(frozen=True)
class LockedCuda:
    """What the locked wheels say about CUDA; see the module's docstring for the rules."""

    claims: Tuple[CudaClaim, ...] = ()
    # "nvidia-cublas-cu12 12.4.5.8", ...: CUDA's libraries installed by pip.
    cuda_libraries: Tuple[str, ...] = ()
    # "torch 2.5.1", "onnxruntime-gpu 1.20.2": what needs cuDNN.
    cudnn_needed_by: Tuple[str, ...] = ()
    # cuDNN major -> what needs exactly that major (where known).
    cudnn_majors: Dict[int, Tuple[str, ...]] = field(default_factory=dict)
    # "nvidia-cudnn-cu12 9.1.0.70" when pip ships cuDNN, and its major.
    cudnn_locked: Optional[str] = None
    cudnn_locked_major: Optional[int] = None
    # Projects that load CUDA's libraries from the system library path, not from nvidia-* wheels.
    system_cuda_users: Tuple[str, ...] = ()
    torch: Optional[str] = None  # "torch 2.4.1+cu121"
    torch_version: Optional[str] = None  # "2.4.1+cu121"
    cpu_only_torch: bool = False
    cpu_only_reason: str = ""
    rocm_torch: bool = False

    @classmethod
    def analyse(cls, distributions: Iterable[Distribution]) -> LockedCuda:
        return _analyse([LockedDistribution.of(item) for item in distributions])

    @property
    def ships_cuda_libraries(self) -> bool:
        """pip installs CUDA's libraries (nvidia-* wheels): the base needs only the driver
        interface."""
        return bool(self.cuda_libraries)

    @property
    def needs_cudnn(self) -> bool:
        return bool(self.cudnn_needed_by)

    @property
    def wants_cuda(self) -> bool:
        return bool(self.claims)

    @property
    def cuda_versions(self) -> Dict[Tuple[int, Optional[int]], Tuple[str, ...]]:
        """(major, minor or None) -> the distributions that say so ("torch 2.4.1+cu121")."""
        versions: Dict[Tuple[int, Optional[int]], List[str]] = {}
        for claim in self.claims:
            if claim.major is not None:
                versions.setdefault((claim.major, claim.minor), []).append(claim.describe())
        return {key: tuple(names) for key, names in sorted(versions.items(), key=_version_order)}

    @property
    def majors(self) -> Dict[int, Tuple[CudaClaim, ...]]:
        """CUDA major -> the claims of that major."""
        found: Dict[int, List[CudaClaim]] = {}
        for claim in self.claims:
            if claim.major is not None:
                found.setdefault(claim.major, []).append(claim)
        return {major: tuple(found[major]) for major in sorted(found)}

    @property
    def unknown_version(self) -> Tuple[CudaClaim, ...]:
        """Claims of CUDA whose version the lock does not tell."""
        return tuple(claim for claim in self.claims if claim.major is None)

    def claims_with_minor(self) -> Tuple[CudaClaim, ...]:
        return tuple(claim for claim in self.claims if claim.minor is not None)

    def torch_claim(self) -> Optional[CudaClaim]:
        return next((claim for claim in self.claims if claim.project == "torch"), None)


def _version_order(item: Tuple[Tuple[int, Optional[int]], Any]) -> Tuple[int, int]:
    (major, minor), _ = item
    return (major, -1 if minor is None else minor)


def _version(text: str) -> Optional[Version]:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _nvidia_library(project: str) -> Optional[Tuple[str, Optional[int]]]:
    """`nvidia-cublas-cu12` -> ("cublas", 12); `nvidia-cublas` -> ("cublas", None)."""
    match = _NVIDIA_SUFFIXED.match(project)
    if match:
        return match["library"], int(match["major"])
    if project.startswith("nvidia-"):
        library = project[len("nvidia-") :]
        if library in _NVIDIA_VERSIONED_LIKE_CUDA or library in _NVIDIA_UNSUFFIXED_OTHERS:
            return library, None
        if library in ("cudnn", "nccl", "cusparselt", "nvshmem"):
            return library, None
    return None


class _Analysis:
    def __init__(self) -> None:
        self.claims: List[CudaClaim] = []
        self.libraries: List[str] = []
        self.cudnn_needed_by: List[str] = []
        self.cudnn_majors: Dict[int, List[str]] = {}
        self.cudnn_locked: Optional[str] = None
        self.cudnn_locked_major: Optional[int] = None
        self.system_users: List[str] = []
        self.runtime: Optional[CudaClaim] = None

    def claim(
        self,
        dist: LockedDistribution,
        major: Optional[int],
        minor: Optional[int],
        reason: str,
    ) -> CudaClaim:
        claim = CudaClaim(dist.project, dist.version, major, minor, reason)
        self.claims.append(claim)
        return claim

    def needs_cudnn(self, dist: LockedDistribution, major: Optional[int] = None) -> None:
        self.cudnn_needed_by.append(dist.describe())
        if major is not None:
            self.cudnn_majors.setdefault(major, []).append(dist.describe())


def _analyse(distributions: Sequence[LockedDistribution]) -> LockedCuda:
    analysis = _Analysis()
    torch: Optional[LockedDistribution] = None
    for dist in sorted(distributions, key=lambda item: item.project):
        if dist.project == "torch":
            torch = dist
            continue
        library = _nvidia_library(dist.project)
        if library is not None:
            _nvidia(analysis, dist, *library)
        else:
            _framework(analysis, dist)

    result: Dict[str, Any] = {}
    if torch is not None:
        result.update(_torch(analysis, torch))
    if analysis.cudnn_locked and not analysis.cudnn_needed_by:
        analysis.cudnn_needed_by.append(analysis.cudnn_locked)
    return LockedCuda(
        claims=tuple(analysis.claims),
        cuda_libraries=tuple(analysis.libraries),
        cudnn_needed_by=tuple(analysis.cudnn_needed_by),
        cudnn_majors={
            major: tuple(names) for major, names in sorted(analysis.cudnn_majors.items())
        },
        cudnn_locked=analysis.cudnn_locked,
        cudnn_locked_major=analysis.cudnn_locked_major,
        system_cuda_users=tuple(analysis.system_users),
        **result,
    )


def _nvidia(
    analysis: _Analysis, dist: LockedDistribution, library: str, suffix_major: Optional[int]
) -> None:
    version = _version(dist.version)
    release = version.release if version else ()
    if suffix_major is None and release[:1] and release[0] < 11:
        return  # a placeholder release such as nvidia-cuda-runtime 0.0.0a0
    analysis.libraries.append(dist.describe())
    if library == CUDNN_LIBRARY:
        analysis.cudnn_locked = dist.describe()
        analysis.cudnn_locked_major = release[0] if release else None
    major = suffix_major
    if major is None and library in _NVIDIA_VERSIONED_LIKE_CUDA and release:
        major = release[0]
    if major is None:
        return
    if library == RUNTIME_LIBRARY and len(release) >= 2 and release[0] == major:
        analysis.runtime = analysis.claim(
            dist, major, release[1], f"CUDA's runtime library, version {dist.version}"
        )
        return
    if suffix_major is not None:
        reason = f"a CUDA {major} library wheel (the -cu{major} suffix)"
    else:
        reason = f"a CUDA {major} library wheel (its version {dist.version})"
    analysis.claim(dist, major, None, reason)


def _framework(analysis: _Analysis, dist: LockedDistribution) -> None:
    """The CUDA builds of frameworks other than torch."""
    project = dist.project
    version = _version(dist.version)
    if project == "onnxruntime-gpu" and version is not None:
        modern = version >= Version("1.19")
        major, cudnn = (12, 9) if modern else (11, 8)
        analysis.claim(
            dist,
            major,
            None,
            f"onnxruntime-gpu {'≥ 1.19' if modern else '< 1.19'} from PyPI is built for CUDA"
            f" {major} and cuDNN {cudnn}",
        )
        analysis.needs_cudnn(dist, cudnn)
        analysis.system_users.append(dist.describe())
        return
    match = _CUPY.match(project)
    if match:
        major = int(match["major"])
        analysis.claim(dist, major, None, f"CuPy's wheel for CUDA {major}.x")
        analysis.system_users.append(dist.describe())
        return
    match = _CUPY_OLD.match(project)
    if match:
        major, minor = int(match["major"]), int(match["minor"])
        analysis.claim(dist, major, minor, f"CuPy's wheel for CUDA {major}.{minor}")
        analysis.system_users.append(dist.describe())
        return
    match = _JAX_PLUGIN.match(project)
    if match:
        major = int(match["major"])
        analysis.claim(dist, major, None, f"JAX's CUDA {major} plugin (jax[cuda{major}])")
        if project.endswith("-plugin"):
            analysis.needs_cudnn(dist)
        return
    if project == "jaxlib" and version is not None and version.local:
        match = _JAXLIB_LOCAL.match(version.local)
        if match:
            major = int(match["major"])
            analysis.claim(dist, major, None, f"jaxlib's local version +{version.local}")
            analysis.needs_cudnn(dist, int(match["cudnn"][0]) if match["cudnn"] else None)
            analysis.system_users.append(dist.describe())
        return
    match = _TENSORRT.match(project)
    if match:
        major = int(match["major"])
        analysis.claim(dist, major, None, f"TensorRT's wheel for CUDA {major}")
        return
    if project == "paddlepaddle-gpu" and version is not None:
        post = version.post
        if post is not None and post >= 110:
            analysis.claim(
                dist,
                post // 10,
                post % 10,
                f"its .post{post} suffix (CUDA {post // 10}.{post % 10})",
            )
        else:
            analysis.claim(dist, None, None, "PaddlePaddle's GPU build")
        analysis.needs_cudnn(dist)
        analysis.system_users.append(dist.describe())


def _torch(analysis: _Analysis, dist: LockedDistribution) -> Dict[str, Any]:
    facts: Dict[str, Any] = {"torch": dist.describe(), "torch_version": dist.version}
    version = _version(dist.version)
    local = version.local if version else None
    if local is not None:
        match = _TORCH_CUDA_LOCAL.match(local.split(".")[0])
        if match:
            major, minor = int(match["major"]), int(match["minor"])
            analysis.claim(dist, major, minor, f"its local version +{local}")
            analysis.needs_cudnn(dist)
            return facts
        if local.startswith("cpu"):
            facts.update(cpu_only_torch=True, cpu_only_reason=f"its local version +{local}")
            return facts
        if local.startswith("rocm"):
            facts.update(rocm_torch=True)
            return facts
    runtime = analysis.runtime
    if runtime is not None and runtime.major is not None:
        analysis.claim(
            dist,
            runtime.major,
            runtime.minor,
            f"a CUDA build linked against the locked {runtime.describe()}",
        )
        analysis.needs_cudnn(dist)
        return facts
    machines = dist.machines()
    if "x86_64" in machines or not machines:
        # PyPI's Linux x86_64 torch is always a CUDA build; only its nvidia-* pins say which.
        analysis.claim(
            dist,
            None,
            None,
            "PyPI's Linux x86_64 torch is a CUDA build, but no nvidia-cuda-runtime wheel is"
            " locked to tell which CUDA",
        )
        analysis.needs_cudnn(dist)
        return facts
    if not analysis.libraries:
        facts.update(
            cpu_only_torch=True,
            cpu_only_reason=f"PyPI's linux {'/'.join(machines)} wheel with no nvidia-* wheels"
            " locked is a CPU build",
        )
    return facts

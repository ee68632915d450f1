"""The targets this plugin adds to BUILD files, and their fields (`./pants help <target>`)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Dict, Iterable, Optional, Tuple

from pants.backend.python.target_types import PythonResolveField
from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    AsyncFieldMixin,
    Dependencies,
    DictStringToStringField,
    Field,
    InvalidFieldException,
    SingleSourceField,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from ai_agent.agent_config import SCHEMA_HELP as AGENT_CONFIG_SCHEMA_HELP
from ai_agent.cuda.select import KNOWN_GPU_ARCHS, parse_accelerator
from ai_agent.cuda.table import FLAVOURS, CudaProblem
from ai_agent.debian.lock import PYTHON_RUNTIME_PACKAGES, VARIANTS
from ai_agent.oci.name import InvalidReference, Reference, Repository
from ai_agent.oci.types import Platform


class DebianSuiteField(StringField):
    alias = "suite"
    default = "bookworm"
    help = softwrap(
        """
        The Debian release to take packages from. Its `-updates` and `-security` suites are
        searched too, and the highest version of a package across them wins.
        """
    )


class DebianArchitecturesField(StringSequenceField):
    alias = "architectures"
    default = ("amd64",)
    valid_choices = ("amd64", "arm64")
    help = "Debian architectures to lock (one image platform each: amd64 → linux/amd64)."


class DebianPackagesField(StringSequenceField):
    alias = "packages"
    default = PYTHON_RUNTIME_PACKAGES
    help = softwrap(
        f"""
        Packages to install, with everything they depend on (Depends and Pre-Depends, resolved
        like apt does). Essential packages are not pulled in implicitly, so the image holds only
        what is listed and needed. Defaults to a Python 3.11 runtime:
        {', '.join(PYTHON_RUNTIME_PACKAGES)}.
        """
    )


class DebianExcludesField(StringSequenceField):
    alias = "excludes"
    default = ()
    help = "Packages to leave out even when something depends on them."


class DebianVariantField(StringField):
    alias = "variant"
    default = "minimal"
    valid_choices = tuple(VARIANTS)
    help = softwrap(
        """
        `minimal`: no shell, distroless-style. `shell`: adds dash, coreutils and libc-bin (with
        an ld.so cache), for agents that run shell tools (`subprocess(..., shell=True)`,
        `ctypes.util.find_library`).
        """
    )


class BaseImageDependenciesField(Dependencies):
    help = softwrap(
        """
        Addresses this base depends on. The target that owns its lockfile (a `files` target in
        `lockfiles/BUILD`) is added automatically, so that `--changed-since` treats a lock edit as
        a change of the base and of every image built on it.
        """
    )


class BaseImageLockfileField(StringField, AsyncFieldMixin):
    """The lock of a base image target; every kind of base has one (a subclass with its own
    default file name), which is how the generic base rules find base targets."""

    alias = "lockfile"
    lockfile_prefix = "base"

    def value_or_default(self) -> str:
        return (
            self.value or f"lockfiles/{self.lockfile_prefix}-{self.address.target_name}.lock.json"
        )


class DebianLockfileField(BaseImageLockfileField):
    lockfile_prefix = "debian"
    help = softwrap(
        """
        Where the package lock lives (default: `lockfiles/debian-<target name>.lock.json`). It
        pins every package by version and sha256; write or refresh it with
        `./pants generate-lockfiles --resolve=<target name>`. Builds read only the lock.
        """
    )


class DebianBaseTarget(Target):
    alias = "debian_base"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        BaseImageDependenciesField,
        DebianSuiteField,
        DebianArchitecturesField,
        DebianPackagesField,
        DebianExcludesField,
        DebianVariantField,
        DebianLockfileField,
        OutputPathField,
    )
    help = softwrap(
        """
        A distroless-style base image made straight from Debian packages pinned in a lockfile:
        no package manager runs, no registry is needed, and the same lock gives the same bytes.
        `./pants package` writes it as an image archive; `ai_agent` targets use it as `base`.
        """
    )


class OciBaseImageField(StringField):
    alias = "image"
    required = True
    value: str
    help = softwrap(
        """
        The image to build on, as `registry/repository:tag`, e.g.
        `registry.example.com/org/python:3.11-slim`; without a registry it is Docker Hub's.
        Lock generation resolves the tag; builds use only the digests it locked, so a moved tag
        changes nothing until the lock is regenerated.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None, "required field"
        try:
            Reference.parse(value)
        except InvalidReference as error:
            raise InvalidFieldException(
                f"The `{cls.alias}` field of {address} is not an image reference: {error}"
            ) from None
        return value


class OciBasePlatformsField(StringSequenceField):
    alias = "platforms"
    default = ("linux/amd64",)
    value: Tuple[str, ...]
    help = softwrap(
        """
        The platforms (`os/arch[/variant]`) to lock, one image each from the tag's index;
        `./pants package` writes the first.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Iterable[str]], address: Address) -> Tuple[str, ...]:
        value = super().compute_value(raw_value, address)
        if not value:
            raise InvalidFieldException(
                f"The `{cls.alias}` field of {address} must list at least one platform, e.g."
                ' ["linux/amd64"].'
            )
        try:
            return tuple(str(Platform.parse(text)) for text in value)
        except ValueError as error:
            raise InvalidFieldException(f"The `{cls.alias}` field of {address}: {error}") from None


class OciBaseLockfileField(BaseImageLockfileField):
    lockfile_prefix = "oci"
    help = softwrap(
        """
        Where the base's lock lives (default: `lockfiles/oci-<target name>.lock.json`). It pins
        each platform's manifest, config and layers by digest; write or refresh it with
        `./pants generate-lockfiles --resolve=<target name>`, which asks the registry. Builds
        read only the lock.
        """
    )


class OciBaseTarget(Target):
    alias = "oci_base"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        BaseImageDependenciesField,
        OciBaseImageField,
        OciBasePlatformsField,
        OciBaseLockfileField,
        OutputPathField,
    )
    help = softwrap(
        """
        A base image from a registry, pinned by digest in a lockfile. Its config and layers are
        pulled by digest (each verified, each its own cacheable process) and carried byte for
        byte; a layer is downloaded only when a build needs its bytes. Registries other than
        loopback ones are reached over HTTPS unless listed in `[ai-agents].insecure_registries`;
        credentials come from the Docker config (`docker login`). `./pants package` writes it as
        an image archive; `ai_agent` targets use it as `base`.
        """
    )


# ai_agent ---------------------------------------------------------------------------------------

_MODULE = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_ENTRY_POINT = re.compile(rf"^(?P<module>{_MODULE})(?::(?P<function>{_MODULE}))?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _field_error(field: Any, address: Address, problem: str) -> InvalidFieldException:
    return InvalidFieldException(f"The `{field.alias}` field of {address}: {problem}")


class AgentDependenciesField(Dependencies):
    help = softwrap(
        """
        The agent's code and data: `python_source(s)` (their third-party requirements come with
        them, from the agent's `resolve`), `resource`/`file` targets (bundled into the code
        layer), and anything those depend on. Weights go in `weights`, not here.
        """
    )


class AgentEntryPointField(StringField):
    alias = "entry_point"
    help = softwrap(
        """
        What the container runs: a module (`router_agent`, run like `python -m router_agent`) or
        `module:function` (the function is called with no arguments; its return value is the
        exit status). The module must be among the agent's first-party sources. Exactly one of
        `entry_point` and `command` is required.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not _ENTRY_POINT.match(value):
            raise _field_error(
                cls,
                address,
                f"{value!r} is not `module` or `module:function`, e.g. `app.main:serve`",
            )
        return value

    def module(self) -> Optional[str]:
        return None if self.value is None else self.value.split(":")[0]


class AgentCommandField(StringSequenceField):
    alias = "command"
    help = softwrap(
        """
        The container's command in exec form, instead of `entry_point`, e.g.
        `["python3.11", "-m", "uvicorn", "app:api"]`; it runs with the image's PATH and PYTHONPATH.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        if value is not None and (not value or not value[0]):
            raise _field_error(
                cls,
                address,
                f"{list(value)!r} names no program: its first element must"
                ' be the program to run, e.g. `["python3.11", "-m", "app"]`',
            )
        return value


class AgentBaseField(StringField):
    alias = "base"
    help = softwrap(
        """
        The address of the `debian_base` or `oci_base` target the image is stacked on.
        Default: `[ai-agents].default_base`. The base's Python must be the one of the agent's
        `resolve` (e.g. CPython 3.11 for both), since wheels and bytecode are built for it.
        """
    )


class AgentAcceleratorField(StringField):
    alias = "accelerator"
    default = "cpu"
    value: str
    help = softwrap(
        """
        The hardware the image is built for. `cpu` (the default) runs anywhere. `cuda` takes the
        CUDA version from the CUDA wheels locked for the agent (torch `+cuXYZ`,
        `nvidia-cuda-runtime-cuXX`, onnxruntime-gpu, cupy-cudaXXx, jax-cudaXX); `cuda12.4` asks
        for one version, which must agree with the lock. A CUDA image gets the NVIDIA runtime
        environment (`NVIDIA_VISIBLE_DEVICES`, `NVIDIA_DRIVER_CAPABILITIES`,
        `NVIDIA_REQUIRE_CUDA`) and `ai-agent.cuda.*` labels, and `./pants run` asks Docker for
        the GPUs. Without a `base`: when the lock ships CUDA's libraries as `nvidia-*` wheels,
        the base is `[ai-agents].default_base` (any Python base: no `nvidia/cuda` image is
        needed); otherwise the `oci_base` whose `image` is the CUDA table's entry for the
        version and `cuda_flavour` (`[ai-agents].cuda_bases` overrides entries).
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None, "has a default"
        if value != "cpu":
            try:
                parse_accelerator(value)
            except CudaProblem as error:
                raise _field_error(cls, address, str(error)) from None
        return value


class AgentCudaFlavourField(StringField):
    alias = "cuda_flavour"
    valid_choices = FLAVOURS
    help = softwrap(
        """
        Which `nvidia/cuda` flavour a CUDA agent's base is: `base` (the driver interface and
        cudart), `runtime` (+ the CUDA libraries), `cudnn-runtime` (+ cuDNN), `devel`
        (+ compilers and headers). Default: `base` when the lock already ships the CUDA
        libraries as `nvidia-*` wheels (so CUDA is not installed twice), else `cudnn-runtime`
        when a locked package needs cuDNN, else `runtime`.
        """
    )


class AgentGpuArchsField(StringSequenceField):
    alias = "gpu_archs"
    help = softwrap(
        f"""
        GPU architectures the agent must run on ({', '.join(KNOWN_GPU_ARCHS)}), checked against
        the locked CUDA and torch: Blackwell (sm_100, sm_120) needs CUDA >= 12.8 and torch >= 2.7,
        Hopper (sm_90) CUDA >= 11.8.
        """
    )


class AgentResolveField(PythonResolveField):
    help = softwrap(
        """
        The Python resolve (`[python].resolves`) whose lockfile pins the agent's third-party
        packages. Its interpreter constraints must name the base's Python (e.g.
        `CPython==3.11.*` on Debian bookworm). Only wheels are installed, each verified against
        the lock's sha256. Default: `[python].default_resolve`.
        """
    )


class AgentEnvField(DictStringToStringField):
    alias = "env"
    help = softwrap(
        """
        Environment variables of the container, added to those of `agent.yaml`'s `env` (a name
        set in both is an error). `PYTHONPATH` and `PATH` are set by the image and cannot be
        overridden here.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Any], address: Address) -> Optional[Any]:
        value = super().compute_value(raw_value, address)
        for name in value or {}:
            if not _ENV_NAME.match(name):
                raise _field_error(cls, address, f"{name!r} is not a valid variable name")
        return value


class AgentPortsField(Field):
    alias = "ports"
    default: ClassVar[Tuple[str, ...]] = ()
    value: Tuple[str, ...]
    help = softwrap(
        """
        Ports the agent listens on, as numbers (`8080`, TCP) or `"8080/udp"`; added to
        `agent.yaml`'s `ports`. They become the image's `ExposedPorts`, and `./pants run`
        publishes them on the same host ports.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Any], address: Address) -> Tuple[str, ...]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return ()
        if isinstance(value, (str, int)) or not isinstance(value, Iterable):
            raise _field_error(cls, address, f"expected a list of ports, got {value!r}")
        return tuple(sorted({exposed_port(port, cls, address) for port in value}))


def exposed_port(port: Any, field: type, address: Address) -> str:
    """`8080` or `"8080/udp"` as the image config writes it (`8080/tcp`), range-checked."""
    text = str(port) if isinstance(port, int) and not isinstance(port, bool) else port
    if not isinstance(text, str):
        raise _field_error(field, address, f"{port!r} is not a port number")
    number, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if not number.isdigit() or not 1 <= int(number) <= 65535 or protocol not in ("tcp", "udp"):
        raise _field_error(
            field,
            address,
            f"{port!r} is not a port: use a number from 1 to 65535, optionally with /tcp or /udp",
        )
    return f"{int(number)}/{protocol}"


class AgentUserField(StringField):
    alias = "user"
    default = "65532"
    help = softwrap(
        """
        The user the container runs as: `uid` or `uid:gid`. Default 65532, the distroless
        `nonroot` user, so the agent does not run as root; numeric, so it works without an
        /etc/passwd entry. uid 0 (root) builds, with a warning.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not re.match(r"^\d+(:\d+)?$", value):
            raise _field_error(cls, address, f"{value!r} is not numeric `uid` or `uid:gid`")
        return value


class AgentWorkdirField(StringField):
    alias = "workdir"
    default = "/opt/agent/app"
    help = "The container's working directory (absolute). Default: where the agent's code lies."

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not value.startswith("/"):
            raise _field_error(cls, address, f"{value!r} must be an absolute path")
        return value


class AgentLabelsField(DictStringToStringField):
    alias = "labels"
    help = softwrap(
        """
        Image labels, added to those the build sets (`org.opencontainers.image.*` from
        `agent.yaml`, and `ai-agent.*` provenance: target, resolve, lock hash).
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Dict[str, str]], address: Address
    ) -> Optional[FrozenDict[str, str]]:
        value = super().compute_value(raw_value, address)
        if value is not None and any(not key.strip() for key in value):
            raise _field_error(cls, address, "a label needs a name: remove the empty key")
        return value


class AgentWeightsField(StringSequenceField):
    alias = "weights"
    help = softwrap(
        """
        Addresses of `file`, `resource` or `http_source`-backed targets holding model weights.
        Their files land, by path below their source root, under `weights_dir`, uncompressed:
        each file of `[ai-agents].weight_layer_threshold_mib` (16 MiB) or more in a layer of its
        own, smaller ones together, so identical weights in two agents are the identical layer.
        `agent.yaml`'s `models` must name exactly these files.
        """
    )


class AgentWeightsDirField(StringField):
    alias = "weights_dir"
    default = "/models"
    value: str
    help = "The absolute directory in the image that weights land under (default `/models`)."

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and (not value.startswith("/") or value.rstrip("/") == ""):
            raise _field_error(cls, address, f"{value!r} must be an absolute directory, not /")
        return value


class AgentConfigSourceField(SingleSourceField):
    alias = "agent_config"
    required = False
    default = "agent.yaml"
    expected_file_extensions = (".yaml", ".yml")
    help = softwrap(
        f"""
        The agent's description, `agent.yaml` beside the BUILD file by default. It is checked
        against this schema (an unknown key or a wrong type is an error naming the line):

        {AGENT_CONFIG_SCHEMA_HELP}

        It is copied to `/etc/ai-agent/agent.yaml` in the image.
        """
    )


class AgentRepositoryField(StringField):
    alias = "repository"
    help = softwrap(
        """
        Where `./pants publish` pushes the image, as `registry/repository`, e.g.
        `registry.example.com/agents/router`. Default: the target name (a local image name;
        publishing then needs this field).
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None:
            if "@" in value or value.rfind(":") > value.rfind("/"):
                raise _field_error(cls, address, "give the repository without a tag or digest")
            try:
                Repository.parse(value)
            except InvalidReference as error:
                raise _field_error(cls, address, str(error)) from None
        return value


class AgentImageTagsField(StringSequenceField):
    alias = "image_tags"
    default = ("latest",)
    value: Tuple[str, ...]
    help = softwrap(
        """
        Tags for the image: the first names it in the archive (what `docker load` tags) and
        `./pants publish` pushes every one, all to the same digest. The default is `latest`
        for a `cpu` agent and `latest-<accelerator>` (e.g. `latest-cuda12.4`) otherwise, so
        the variants of `accelerator=parametrize("cpu", "cuda12.4")` stay apart. No two image
        targets may name their images alike (`repository:tag`): `package` refuses it before
        building, as `dist/oci/` holds one image per name and the pushes would overwrite each
        other; variants with tags of their own need targets of their own.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for tag in value or ():
            if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", tag):
                raise _field_error(cls, address, f"{tag!r} is not a valid tag")
        if not value:
            raise _field_error(cls, address, "list at least one tag")
        return value


class AgentPlatformsField(OciBasePlatformsField):
    help = softwrap(
        """
        Platforms to build (`linux/amd64`, `linux/arm64`). Each needs the base for it and a wheel
        for it of every locked requirement; several give one archive holding an image index.
        """
    )


class AiAgentTarget(Target):
    alias = "ai_agent"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        AgentDependenciesField,
        AgentEntryPointField,
        AgentCommandField,
        AgentBaseField,
        AgentAcceleratorField,
        AgentCudaFlavourField,
        AgentGpuArchsField,
        AgentResolveField,
        AgentEnvField,
        AgentPortsField,
        AgentUserField,
        AgentWorkdirField,
        AgentLabelsField,
        AgentWeightsField,
        AgentWeightsDirField,
        AgentConfigSourceField,
        AgentRepositoryField,
        AgentImageTagsField,
        AgentPlatformsField,
        OutputPathField,
    )
    help = softwrap(
        """
        An AI agent packaged as a reproducible OCI image: the base, then layers for big
        third-party distributions, the other third-party packages, weights, first-party code and
        config, each built by its own cacheable process. `./pants package` writes the archive and
        a JSON describing it; `./pants run` runs it in the local Docker; `./pants publish` pushes
        it to `repository`.
        """
    )

    def validate(self) -> None:
        if (self[AgentEntryPointField].value is None) == (self[AgentCommandField].value is None):
            raise InvalidFieldException(
                f"{self.address}: set exactly one of `entry_point` (a module of the agent, e.g."
                " `router_agent` or `router_agent.server:main`) and `command`"
            )


def agent_repository(target: Target) -> str:
    """An agent's image repository: `repository`, else its target name."""
    return target[AgentRepositoryField].value or target.address.target_name


def agent_image_tags(target: Target) -> Tuple[str, ...]:
    """An agent's image tags: `image_tags`, where left at its default `latest-<accelerator>`
    for an agent not on `cpu` (the variants of `accelerator=parametrize(...)` must not load as
    the same image)."""
    tags = target[AgentImageTagsField].value
    accelerator = target[AgentAcceleratorField].value
    if tags == AgentImageTagsField.default and accelerator != "cpu":
        return (f"latest-{accelerator}",)
    return tuple(tags or ())


def agent_image_names(target: Target) -> Tuple[str, ...]:
    """An agent's image names, `repository:tag`: what its image is called in archives and in
    `dist/`'s OCI layout."""
    return tuple(f"{agent_repository(target)}:{tag}" for tag in agent_image_tags(target))


def base_image_names(address: Address) -> Tuple[str, ...]:
    """A base image's name when packaged on its own (and as its SBOM describes it): its target
    name, tag `latest`."""
    return (f"{address.target_name}:latest",)

"""The targets this plugin adds to BUILD files, and their fields (`./pants help <target>`)."""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    AsyncFieldMixin,
    Dependencies,
    InvalidFieldException,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import softwrap

from ai_agent.debian.lock import PYTHON_RUNTIME_PACKAGES, VARIANTS
from ai_agent.oci.registry import InvalidReference, Reference
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
        loopback ones are reached over HTTPS unless listed in `[ai-agent].insecure_registries`;
        credentials come from the Docker config (`docker login`). `./pants package` writes it as
        an image archive; `ai_agent` targets use it as `base`.
        """
    )

"""The targets this plugin adds to BUILD files, and their fields (`./pants help <target>`)."""

from __future__ import annotations

from pants.core.goals.package import OutputPathField
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    AsyncFieldMixin,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import softwrap

from ai_agent.debian.lock import PYTHON_RUNTIME_PACKAGES, VARIANTS


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


class DebianLockfileField(StringField, AsyncFieldMixin):
    alias = "lockfile"
    help = softwrap(
        """
        Where the package lock lives (default: `lockfiles/debian-<target name>.lock.json`). It
        pins every package by version and sha256; write or refresh it with
        `./pants generate-lockfiles --resolve=<target name>`. Builds read only the lock.
        """
    )

    def value_or_default(self) -> str:
        return self.value or f"lockfiles/debian-{self.address.target_name}.lock.json"


class DebianBaseTarget(Target):
    alias = "debian_base"
    core_fields = (
        *COMMON_TARGET_FIELDS,
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

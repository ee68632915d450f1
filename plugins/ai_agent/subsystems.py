"""The `[ai-agents]` options: settings shared by every `ai_agent` build in a repo."""

from __future__ import annotations

import dataclasses

from pants.backend.python.subsystems.python_tool_base import (
    LockfileRules,
    PythonToolRequirementsBase,
)
from pants.option.option_types import (
    BoolOption,
    DictOption,
    FloatOption,
    IntOption,
    StrListOption,
    StrOption,
)
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap

from ai_agent.debian.download import DOWNLOAD_LIMITS
from ai_agent.oci.limits import REGISTRY_LIMITS, InvalidNetworkLimit, NetworkLimits

DEFAULT_SOURCE_DATE_EPOCH = 946684800  # 2000-01-01T00:00:00Z: zip and wheel tools reject < 1980.
# Downloads and registry operations share these defaults; only their attempts differ.
_LIMITS = NetworkLimits()
# Said in each network option's help: the values reach the steps' command lines.
_SHARED_CACHE_NOTE = (
    "A value other than the default is passed to the build steps' command lines, and so is part"
    " of their cache keys: machines that share a remote cache should use the same values."
)


class InvalidNetworkOption(Exception):
    """A network option of `[ai-agents]` is not a positive number (attempts: at least 1)."""


class AiAgentSubsystem(Subsystem):
    # Not `ai-agent`: Pants refuses a subsystem named like a target type (`ai_agent`).
    options_scope = "ai-agents"
    help = "Options for building `ai_agent` images."

    default_base = StrOption(
        default=None,
        help=softwrap(
            """
            The address of the base target (`debian_base` or `oci_base`) for `ai_agent` targets
            that set no `base`, e.g. `//agents/base:bookworm-python`.
            """
        ),
    )
    wheel_layer_threshold_mib = IntOption(
        default=64,
        help=softwrap(
            """
            A third-party wheel that unpacks to more than this many MiB gets an image layer of
            its own (e.g. torch), written by a build step that sees only that wheel: agents
            locking the same wheel share the step and the layer, and bumping any other
            requirement leaves its layer, and its cached and pushed blob, unchanged.
            """
        ),
    )
    weight_layer_threshold_mib = IntOption(
        default=16,
        help=softwrap(
            """
            A weight file of at least this many MiB gets an image layer of its own; smaller
            weight files of an agent share one layer.
            """
        ),
    )
    cuda_bases = DictOption[str](
        default={},
        help=softwrap(
            """
            Entries of the CUDA base table to add or replace, as `"X.Y/flavour": "image"`, e.g.
            `{"12.4/runtime": "registry.example.com/mirror/cuda:12.4.1-runtime-ubuntu22.04"}`
            for a private mirror. A CUDA agent without `base` builds on the `oci_base` target
            whose `image` is its entry, pinned by that target's lock.
            """
        ),
    )
    archives = BoolOption(
        default=False,
        help=softwrap(
            """
            Whether `package` also writes each image as one docker-loadable archive
            (`<output_path>`, a tar that `docker load`, skopeo's `oci-archive:` and umoci read)
            besides the OCI image layout `dist/oci/` that holds every image (its blobs
            hardlinks to Pants' store). Off by default: the archive holds every layer again,
            written and stored by Pants once more on every change of the image, and `run` and
            `publish` do not need it (`run` streams the image into `docker load`). Turn it on
            (`--ai-agents-archives`) where a file for `docker load -i` is wanted; the layout
            loads without it (`skopeo copy oci:dist/oci:router:latest
            docker-daemon:router:latest`).
            """
        ),
    )
    layouts = BoolOption(
        default=True,
        help=softwrap(
            """
            Whether `package` places each image in the OCI image layout `dist/oci/` that all
            images share (every blob once, hardlinked from Pants' store; each image named by
            its `repository:tag`, e.g. `oci:dist/oci:router:latest` for skopeo). Off, `dist/`
            gets only the image's metadata, SBOM and provenance (and the archive if `archives`
            is on), the image leaves the layout, and `package` reads no layer blob at all:
            what a CI machine
            that only publishes wants, together with `[GLOBAL].cache_content_behavior =
            "defer"`, so that layers the registry already has are never fetched from the
            remote cache (`publish` pushes only the layers the registry lacks).
            """
        ),
    )
    source_date_epoch = IntOption(
        default=DEFAULT_SOURCE_DATE_EPOCH,
        help=softwrap(
            """
            The one timestamp written into images: every tar entry's mtime and the config's
            `created`, in seconds since the Unix epoch (like `SOURCE_DATE_EPOCH`).
            """
        ),
    )
    debian_mirrors = StrListOption(
        default=[],
        help=softwrap(
            """
            Mirrors to fetch pinned Debian packages from, as `ARCHIVE=URL` with ARCHIVE `debian`
            or `debian-security`, tried in the order given; the lock's sha256 decides what is
            accepted. Defaults to deb.debian.org. Put a snapshot first so that old locks keep
            building after the live mirror drops their versions, e.g.
            `debian=https://snapshot.debian.org/archive/debian/20260701T000000Z/`,
            then `debian=http://deb.debian.org/debian`. Lock generation reads the first mirror of
            each archive.
            """
        ),
    )
    insecure_registries = StrListOption(
        default=[],
        help=softwrap(
            """
            Registries (`host[:port]`) that `oci_base` targets may reach over plain HTTP, for lab
            registries without TLS. Loopback registries (localhost, 127.0.0.0/8, ::1) always may;
            every other one must serve HTTPS with a certificate the system trusts.
            """
        ),
    )
    docker_config = StrOption(
        default=None,
        help=softwrap(
            """
            The directory holding the Docker `config.json` whose credentials (`docker login`,
            credential helpers) registry pulls use. Default: `$DOCKER_CONFIG`, else
            `$HOME/.docker`, as the Docker CLI resolves it. Only the path reaches the pull
            processes, never the credentials, but the path is part of their cache keys: machines
            that share a remote cache should set it to the same path.
            """
        ),
    )
    network_connect_timeout = FloatOption(
        default=_LIMITS.connect_s,
        help=softwrap(
            f"""
            Seconds a download (Debian indexes and packages, wheels) or a registry request
            (`oci_base` locks and pulls, `publish` pushes) may take to connect before the try
            fails with "cannot connect". {_SHARED_CACHE_NOTE}
            """
        ),
    )
    network_read_timeout = FloatOption(
        default=_LIMITS.read_s,
        help=softwrap(
            f"""
            Seconds a download or registry request may wait, once connected, for the answer and
            then for each next piece of data before the try fails with "connected, but no
            answer" (or "no data"). A transfer that keeps receiving is never cut.
            {_SHARED_CACHE_NOTE}
            """
        ),
    )
    network_attempts = IntOption(
        default=None,
        help=softwrap(
            f"""
            How many times a download or registry operation is tried when it fails with a
            timeout, a lost connection or a 5xx answer; each retry is printed in the step's log.
            Default: {DOWNLOAD_LIMITS.attempts} for downloads, {REGISTRY_LIMITS.attempts} for
            registry operations. {_SHARED_CACHE_NOTE}
            """
        ),
    )
    network_total_timeout = FloatOption(
        default=_LIMITS.total_s,
        help=softwrap(
            f"""
            Seconds after a download's or registry operation's first try when no retry starts
            any more. A try under way is bounded by `network_connect_timeout` and
            `network_read_timeout` instead, so the longest wait for a server that accepts and
            never answers is about this plus `network_read_timeout`. {_SHARED_CACHE_NOTE}
            """
        ),
    )

    def network_limits(self, default: NetworkLimits) -> NetworkLimits:
        """`default` (a step's own limits) with the network options that are set."""
        options = {
            "connect_s": "network_connect_timeout",
            "read_s": "network_read_timeout",
            "attempts": "network_attempts",
            "total_s": "network_total_timeout",
        }
        values = {field: getattr(self, option) for field, option in options.items()}
        try:
            return dataclasses.replace(
                default, **{field: value for field, value in values.items() if value is not None}
            )
        except InvalidNetworkLimit as error:
            option = options[error.field]
            raise InvalidNetworkOption(
                f"[{self.options_scope}].{option}: {error}; set it in pants.toml or with"
                f" --{self.options_scope}-{option.replace('_', '-')}"
            ) from None


class AgentRunner(PythonToolRequirementsBase):
    options_scope = "ai-agents-runner"
    help = softwrap(
        """
        The docker-py client that `./pants run` of an `ai_agent` runs to load the image into the
        local Docker daemon (`DOCKER_HOST`, else the local socket) and run it.
        """
    )
    default_version = "docker>=7.1,<8"
    default_requirements = ["docker>=7.1,<8"]
    register_interpreter_constraints = True
    default_interpreter_constraints = ["CPython>=3.9,<3.12"]
    default_lockfile_resource = ("ai_agent", "runner.lock")
    lockfile_rules_type = LockfileRules.SIMPLE


class ImageBuilderLibraries(PythonToolRequirementsBase):
    options_scope = "ai-agents-builder"
    help = softwrap(
        """
        The Python packaging libraries that the image-building processes import, next to the
        plugin's own sandboxed code: `packaging` (PEP 425 tags, PEP 440 versions, PEP 508
        requirements and markers) and `installer` (wheel installation), the reference
        implementations pip relies on. `interpreter_constraints` says which interpreters may run
        those processes: of the executables named `pythonX.Y` on `[python-bootstrap].search_path`
        that report a version they allow, the oldest X.Y, then the first on the search path
        (Pants' own, slower search only if none does). Their output is byte-identical under
        each, and the chosen interpreter's path is part of every process's cache key, so
        machines sharing a remote cache should resolve it to the same path. The libraries must
        be pure-Python wheels.
        """
    )
    register_interpreter_constraints = True
    default_interpreter_constraints = ["CPython>=3.9,<3.12"]
    # `packaging` is the version Pants 2.17 itself pins, which the plugin's tests run with.
    default_version = "installer==0.7.0"
    default_requirements = ["packaging==21.3", "installer==0.7.0"]
    default_extra_requirements = ["packaging==21.3"]
    default_lockfile_resource = ("ai_agent", "builder.lock")
    lockfile_rules_type = LockfileRules.SIMPLE

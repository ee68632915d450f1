"""What build steps that reach the network are given: the `[ai-agents]` network limits as flags,
the Debian mirrors, and for registries the Docker config's directory and the plain-HTTP
registries. Only what differs from a step's defaults is passed, so default options leave every
command line, and with it every cache key, as it was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict

from ai_agent.debian.download import DOWNLOAD_LIMITS
from ai_agent.oci.limits import REGISTRY_LIMITS
from ai_agent.subsystems import AiAgentSubsystem

# Where Docker credential helpers (`docker-credential-*`) are looked for; fixed, so that it is the
# same in every machine's cache keys.
_CREDENTIAL_HELPER_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class NetworkLimitArgs:
    """The `[ai-agents]` network options as flags of the steps that download (Debian indexes and
    .debs, wheels) and of those that reach registries: only the limits that differ from the
    step's own defaults."""

    downloads: Tuple[str, ...]
    registries: Tuple[str, ...]


@dataclass(frozen=True)
class DownloadAccess:
    """What every step that downloads .debs or wheels gets: the Debian mirrors to try, in order
    (none: the core's default), and the network limits."""

    debian_mirrors: Tuple[str, ...]
    limit_args: Tuple[str, ...]


@dataclass(frozen=True)
class RegistryAccess:
    """What every registry step gets: the Docker config's directory (a path, never its
    content), the registries it may reach over plain HTTP and the network limits."""

    env: FrozenDict[str, str]
    args: Tuple[str, ...]


@rule
def network_limit_args(subsystem: AiAgentSubsystem) -> NetworkLimitArgs:
    return NetworkLimitArgs(
        downloads=subsystem.network_limits(DOWNLOAD_LIMITS).args(DOWNLOAD_LIMITS),
        registries=subsystem.network_limits(REGISTRY_LIMITS).args(REGISTRY_LIMITS),
    )


@rule
def download_access(subsystem: AiAgentSubsystem, limits: NetworkLimitArgs) -> DownloadAccess:
    return DownloadAccess(tuple(subsystem.debian_mirrors), limits.downloads)


@rule
async def registry_access(subsystem: AiAgentSubsystem, limits: NetworkLimitArgs) -> RegistryAccess:
    environment = await Get(EnvironmentVars, EnvironmentVarsRequest(["DOCKER_CONFIG", "HOME"]))
    docker_config = subsystem.docker_config or environment.get("DOCKER_CONFIG")
    if not docker_config and environment.get("HOME"):
        docker_config = f"{environment['HOME']}/.docker"
    env = {"PATH": _CREDENTIAL_HELPER_PATH}
    if docker_config:
        env["DOCKER_CONFIG"] = docker_config
    insecure = subsystem.insecure_registries
    args = tuple(arg for host in insecure for arg in ("--insecure-registry", host))
    return RegistryAccess(FrozenDict(env), args + limits.registries)


def rules():
    return collect_rules()

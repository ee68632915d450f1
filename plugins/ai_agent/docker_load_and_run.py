"""Load an image archive into the local Docker and run it in the foreground, the way `./pants run`
of an `ai_agent` does: its exposed ports published on the same host ports, its logs streamed,
and the container stopped and removed on Ctrl-C, when it exits, or when it cannot start.

    python docker_load_and_run.py --agent ADDRESS --archive IMAGE.tar --image-id sha256:…
                        [--publish 8080/tcp ...] [--env NAME=VALUE ...] [--gpus]

Runs outside Pants' process (docker-py is a tool requirement of the plugin), talking to the
daemon that `DOCKER_HOST` (default: the local socket) names.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Dict, List, Optional, Sequence

import docker
from docker.errors import APIError, DockerException
from docker.types import DeviceRequest

STOP_TIMEOUT_S = 10
# How dockerd says that a host port is taken (by a process; by another container).
_PORT_TAKEN = ("address already in use", "port is already allocated")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the runner: stop the container."""


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _ports(published: Sequence[str]) -> Dict[str, int]:
    return {port: int(port.split("/")[0]) for port in published}


def run(args: argparse.Namespace) -> int:
    client = docker.from_env()
    with open(args.archive, "rb") as archive:
        client.images.load(archive)
    image = client.images.get(args.image_id)
    device_requests: List[DeviceRequest] = []
    if args.gpus:
        runtimes = client.info().get("Runtimes", {})
        if "nvidia" not in runtimes:
            print(
                "error: this agent asks for GPUs but the Docker daemon has no NVIDIA runtime"
                f" (it has: {', '.join(sorted(runtimes)) or 'none'}). Install the NVIDIA"
                " Container Toolkit on this host, or run the agent's `cpu` variant.",
                file=sys.stderr,
            )
            return 2
        device_requests.append(DeviceRequest(count=-1, capabilities=[["gpu"]]))
    container = client.containers.create(
        image.id,
        ports=_ports(args.publish),
        environment=dict(item.split("=", 1) for item in args.env),
        device_requests=device_requests or None,
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
    )
    try:
        container.start()
    except APIError as error:
        container.remove(force=True)
        if any(words in str(error) for words in _PORT_TAKEN):
            ports = ", ".join(str(port) for port in _ports(args.publish).values())
            print(
                f"error: {args.agent} cannot publish its port(s) {ports} on this host: one is"
                " in use by another process or container. Stop that, or give the agent other"
                " `ports`.",
                file=sys.stderr,
            )
            return 2
        raise
    print(
        f"Running {image.tags[0] if image.tags else image.id} as {container.short_id}", flush=True
    )
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        return int(container.wait().get("StatusCode", 1))
    except Interrupted as signal_name:
        print(f"\n{signal_name}: stopping {container.short_id}", file=sys.stderr)
        container.stop(timeout=STOP_TIMEOUT_S)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        container.remove(force=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="the target, for messages")
    parser.add_argument("--archive", required=True)
    parser.add_argument("--image-id", required=True)
    parser.add_argument("--publish", action="append", default=[], help="8080/tcp")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--gpus", action="store_true", help="request every NVIDIA GPU")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (DockerException, APIError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Load an image archive into the local Docker and run it in the foreground, the way `./pants run`
of an `ai_agent` does: its exposed ports published on the same host ports, its logs streamed,
and the container stopped and removed on Ctrl-C, when it exits, or when it cannot start.

    python docker_load_and_run.py --agent ADDRESS --image-id sha256:… --load LOAD.json
                        [--publish 8080/tcp ...] [--env NAME=VALUE ...] [--gpus]

The image is loaded only if the daemon does not have it yet, and then streamed: LOAD.json names
the command that writes the image's archive to its stdout (`python -m ai_agent.oci image
--output -`, with its environment, run in LOAD.json's directory), piped straight into
`docker load`; no archive is written anywhere.

Runs outside Pants' process (docker-py is a tool requirement of the plugin), talking to the
daemon that `DOCKER_HOST` (default: the local socket) names.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from types import FrameType
from typing import Dict, List, Optional, Sequence

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from docker.types import DeviceRequest

STOP_TIMEOUT_S = 10
# How much of the archive stream is read at a time while it is piped into `docker load`.
_CHUNK = 1 << 20
# How dockerd says that a host port is taken (by a process; by another container).
_PORT_TAKEN = ("address already in use", "port is already allocated")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the runner: stop the container."""


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _ports(published: Sequence[str]) -> Dict[str, int]:
    return {port: int(port.split("/")[0]) for port in published}


class LoadFailed(Exception):
    """The command writing the archive failed: its error, rather than docker's complaint about a
    truncated stream."""


def _load(client: docker.DockerClient, load_spec: str, image_id: str) -> None:
    """Stream the image into the daemon unless it has it already."""
    try:
        client.images.get(image_id)
        print(f"{image_id} is in Docker already: not loaded again", flush=True)
        return
    except ImageNotFound:
        pass
    with open(load_spec, encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    directory = os.path.dirname(os.path.abspath(load_spec))
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
        spec["argv"], cwd=directory, env=spec["env"], stdout=subprocess.PIPE, stderr=errors
    ) as writer:
        assert writer.stdout is not None
        chunks = iter(lambda: writer.stdout.read(_CHUNK), b"")  # type: ignore[union-attr]
        load_error: Optional[Exception] = None
        try:
            client.images.load(chunks)
        except (APIError, DockerException) as error:
            load_error = error
        writer.stdout.close()
        if writer.wait() != 0:
            errors.seek(0)
            raise LoadFailed(
                f"writing the image archive failed (exit code {writer.returncode}):"
                f" {errors.read().decode(errors='replace').strip()}"
                + (f"; docker load: {load_error}" if load_error else "")
            )
        if load_error:
            raise load_error
    print(f"Loaded {image_id} into Docker, streamed from the build's blobs", flush=True)


def run(args: argparse.Namespace) -> int:
    client = docker.from_env()
    _load(client, args.load, args.image_id)
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
    parser.add_argument("--load", required=True, help="the JSON naming the archive writer")
    parser.add_argument("--image-id", required=True)
    parser.add_argument("--publish", action="append", default=[], help="8080/tcp")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--gpus", action="store_true", help="request every NVIDIA GPU")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (DockerException, APIError, OSError, LoadFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

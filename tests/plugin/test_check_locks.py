"""`check-locks` end to end through Pants, with nothing built: a scratch repo whose locks each pin
something that is served and something that is not, asked of the real deb.debian.org, PyPI and
a local registry. Every rotten pin is named with its lock and refresh command, and the exit code
tells gone (1) from could-not-ask (2) from healthy (0)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import toml

from ai_agent.oci.base import lock_base
from ai_agent.oci.image import ConfigUpdate, Image, Layer, build_image
from ai_agent.oci.layer import Entry, LayerOptions, write_layer
from ai_agent.oci.name import Repository
from ai_agent.oci.push import BlobData
from ai_agent.oci.remote import RegistryClient
from ai_agent.oci.types import Platform
from testkit.components import RunningRegistry
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

DEBIAN_LOCK = "lockfiles/debian-bookworm-python.lock.json"
AGENT_YAML = "name: {name}\n"


def _push_image(
    registry: RunningRegistry, workdir: Path, repository: Repository, tag: str
) -> Image:
    """A one-file image, unique to `tag`, pushed under it."""
    blob = workdir / f"{tag}.tar"
    entries = [Entry.content("etc/tag", f"{tag}\n".encode())]
    written = write_layer(entries, blob, LayerOptions())
    layer = Layer(written.descriptor, written.diff_id, str(blob), "tag file")
    image = build_image(Image.scratch(Platform("linux", "amd64")), [layer], ConfigUpdate())
    blobs: Dict[str, BlobData] = {
        image.digest: image.manifest_bytes,
        image.image_id: image.config_bytes,
        layer.descriptor.digest: blob,
    }
    with RegistryClient() as client:
        client.push(repository, image.descriptor, blobs, tags=[tag])
    return image


def _rotten_debian_lock(good: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """The good lock cut to one package of the release, plus the same package at a version
    Debian never had; and that pin, as the check names it."""
    pinned = next(p for p in good["packages"]["amd64"] if p["suite"] == "bookworm")
    made_up = {
        **pinned,
        "version": "99:0-0",
        "filename": pinned["filename"].rsplit("/", 1)[0] + f"/{pinned['name']}_0-0_all.deb",
    }
    item = f"{pinned['name']}=99:0-0 ({pinned['architecture']})"
    return {**good, "packages": {"amd64": [pinned, made_up]}}, item


def _output(result: subprocess.CompletedProcess, returncode: int) -> str:
    assert result.returncode == returncode, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_check_locks_names_each_rotten_pin_with_its_refresh_command(
    scratch_repo: ScratchRepo, registry: RunningRegistry, tmp_path: Path
) -> None:
    root = scratch_repo.root
    config = toml.loads((root / "pants.toml").read_text())
    config["python"]["resolves"]["rotten"] = "lockfiles/rotten.lock"
    config["python"]["resolves_to_interpreter_constraints"]["rotten"] = ["CPython==3.11.*"]
    (root / "pants.toml").write_text(toml.dumps(config))

    # Python: the agents' lock, and a copy with one wheel's URL made up.
    agents_lock = (root / "lockfiles/agents.lock").read_text()
    url = re.search(r'"url": "(https://files\.pythonhosted\.org/[^"]+\.whl)"', agents_lock)
    assert url is not None
    bogus_url = url.group(1).replace(".whl", ".bogus.whl")
    (root / "lockfiles/rotten.lock").write_text(agents_lock.replace(url.group(1), bogus_url))
    bogus_wheel = bogus_url.rsplit("/", 1)[1]

    # Debian: the committed lock, and one pinning a version that does not exist.
    rotten_debian, rotten_pin = _rotten_debian_lock(json.loads((root / DEBIAN_LOCK).read_text()))
    (root / "lockfiles/debian-rotten-debian.lock.json").write_text(json.dumps(rotten_debian))

    # Registry: two images locked by tag, then one deleted, as a registry's clean-up does.
    repository = Repository(registry.address, "check/base")
    _push_image(registry, tmp_path, repository, "good")
    deleted = _push_image(registry, tmp_path, repository, "deleted")
    with RegistryClient() as client:
        for tag in ("good", "deleted"):
            lock = lock_base(client, f"{repository}:{tag}", ["linux/amd64"])
            (root / f"lockfiles/oci-{tag}-oci.lock.json").write_bytes(lock.dumps())
    manifest_url = f"{registry.url}/v2/{repository.name}/manifests/{deleted.digest}"
    urllib.request.urlopen(urllib.request.Request(manifest_url, method="DELETE")).close()

    scratch_repo.write(
        {
            "base/BUILD": 'debian_base(name="bookworm-python")\n'
            'debian_base(name="rotten-debian")\n'
            'debian_base(name="unlocked")\n'
            f'oci_base(name="good-oci", image="{repository}:good")\n'
            f'oci_base(name="deleted-oci", image="{repository}:deleted")\n',
            **{
                f"agents/{name}/BUILD": f'ai_agent(name="{name}", resolve="{resolve}",'
                ' base="//base:bookworm-python", command=["python3", "-c", "pass"])\n'
                for name, resolve in (("good", "agents"), ("rotten", "rotten"))
            },
            **{
                f"agents/{name}/agent.yaml": AGENT_YAML.format(name=name)
                for name in ("good", "rotten")
            },
        }
    )

    everything = _output(scratch_repo.run("check-locks", "::"), 1)
    lines = everything.splitlines()
    served = [line for line in lines if line.endswith("pinned items are still served")]
    assert sorted(line.split(": ", 1)[0][2:] for line in served) == [
        "agents/good:good",
        "base:bookworm-python",
        "base:good-oci",
    ]
    assert "base:good-oci: lockfiles/oci-good-oci.lock.json: all 3 pinned items" in everything
    problems = sorted(line for line in lines if line.startswith("✕"))
    assert len(problems) == 4, everything
    rotten_wheel, deleted_line, rotten_debian_line, missing = problems
    assert missing.startswith(
        "✕ base:unlocked: lockfiles/debian-unlocked.lock.json does not exist; create it with `"
    )
    assert missing.endswith("generate-lockfiles --resolve=unlocked`")
    assert rotten_wheel.startswith(
        f"✕ agents/rotten:rotten: lockfiles/rotten.lock: {bogus_wheel} is gone ({bogus_url}:"
        " HTTP 404 Not Found); refresh the lock with `"
    )
    assert rotten_wheel.endswith("generate-lockfiles --resolve=rotten`")
    assert rotten_debian_line.startswith(
        f"✕ base:rotten-debian: lockfiles/debian-rotten-debian.lock.json: {rotten_pin} is gone"
        " (http://deb.debian.org/debian/pool/"
    )
    assert "_0-0_all.deb: HTTP 404 Not Found); refresh" in rotten_debian_line
    assert rotten_debian_line.endswith("generate-lockfiles --resolve=rotten-debian`")
    assert deleted_line.startswith(
        f"✕ base:deleted-oci: lockfiles/oci-deleted-oci.lock.json: {repository}@{deleted.digest}"
        " (what the tag resolved to) is gone (HEAD "
    )
    assert deleted_line.endswith("generate-lockfiles --resolve=deleted-oci`")
    assert re.search(
        r"^Checked \d+ pinned items in 7 locks: 4 gone or missing, 0 served with another size,"
        r" 0 unreachable\.$",
        everything,
        re.MULTILINE,
    ), everything

    # An agent brings its base's lock along; all served.
    healthy = _output(scratch_repo.run("check-locks", "agents/good"), 0)
    assert "✓ base:bookworm-python: lockfiles/debian-bookworm-python.lock.json: all" in healthy
    assert "✓ agents/good:good: lockfiles/agents.lock: all" in healthy

    # A mirror that does not answer says nothing about the pins: unreachable, not gone.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}/debian"
    unknown = _output(
        scratch_repo.run(
            f"--ai-agents-debian-mirrors=['debian={nobody}']", "check-locks", "base:rotten-debian"
        ),
        2,
    )
    assert f"{rotten_pin} could not be checked (unreachable) ({nobody}/pool/" in unknown
    assert "0 gone or missing, 0 served with another size, 2 unreachable." in unknown

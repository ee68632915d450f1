"""`[ai-agents]` network limits end to end: set on the Pants command line, they reach the
sandboxed lock generation, which gives up on a mirror that accepts connections and never answers
as soon as the total limit says, and says what happened.

Real components: Pants 2.17 with this plugin in a scratch repo, and a loopback TCP socket that
listens and never answers."""

from __future__ import annotations

import re
import socket

import pytest

from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration


def test_lock_generation_gives_up_on_a_silent_mirror_within_the_total_limit(
    scratch_repo: ScratchRepo,
) -> None:
    scratch_repo.write({"base/BUILD": 'debian_base(name="py")\n'})
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections queue, nothing answers
        mirror = f"http://127.0.0.1:{silent.getsockname()[1]}/debian"
        result = scratch_repo.run(
            f"--ai-agents-debian-mirrors=['debian={mirror}']",
            "--ai-agents-network-read-timeout=1",
            "--ai-agents-network-attempts=10",
            "--ai-agents-network-total-timeout=3",
            "generate-lockfiles",
            "--resolve=py",
        )
    assert result.returncode != 0
    url = f"{mirror}/dists/bookworm/InRelease"
    # Tries at 0 s and 2 s (after a 1 s wait), each given up after 1 s; a third would start at 5 s.
    assert (
        f"retrying {url} in 1 s (attempt 2 of 10): connected, but no answer within 1 s"
        in result.stderr
    ), result.stderr
    given_up = re.search(
        re.escape(f"{url}: connected, but no answer within 1 s (gave up after 2 attempt(s) in ")
        + r"(\d+) s: another would start past the total limit of 3 s\)",
        result.stderr,
    )
    assert given_up and int(given_up.group(1)) <= 5, result.stderr
    assert not (scratch_repo.root / "lockfiles" / "debian-py.lock.json").exists()

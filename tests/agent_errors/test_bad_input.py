"""Bad `ai_agent` inputs through the real `./pants package`: the command fails, its stderr names
the target, the field (or agent.yaml line) and the fix, and nothing is left in `dist/`, whether the
input is refused when its BUILD file is read, before any process runs, by a build process, or
after the layers were built.

Which input is refused with which message is proven by the rule tests beside the rules
(`plugins/ai_agent/util_rules/*_test.py`: agent_test, base_image_test, dist_test,
platform_base_test, agent_image_test), in seconds; this module keeps one case per stage, for the
promise only a whole Pants run can show: the exit, the message as the CLI prints it, an empty
`dist/`.

Real components: Pants 2.17 with this plugin, run against a scratch repo holding the real
pants.toml and lockfiles. The cases that fail in or after a build process build the Debian base
of `lockfiles/debian-bookworm-python.lock.json` first, which on a cold cache downloads its .debs
from deb.debian.org. No dockerd and no PyPI download are needed.

Every case runs in one scratch repo against one pantsd that the module starts (a Pants start
without a daemon costs 30-60 s, once per case) and stops at its end (`ScratchRepo.with_pantsd`,
whose daemon outlives no pytest that Pants killed before teardown). A case's files exist only
while it runs, so that a target broken at parse time (`ports=[70000]`) cannot break the others.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from typing import Iterator, Tuple

import pytest
import toml

from ai_agent.testutil import NOWHEEL_REQUIREMENT, nowheel_lock
from testkit.pants_repo import AGENTS_SKELETON, ScratchRepo

pytestmark = pytest.mark.integration

SMALL_WEIGHTS = "small weights\n"
SMALL_SHA256 = hashlib.sha256(SMALL_WEIGHTS.encode()).hexdigest()
ZEROS = "0" * 64

# Source roots are `/agents/*` (the real pants.toml): each directory below agents/ is one.
COMMON_FILES = {
    **AGENTS_SKELETON,
    "agents/weights/BUILD": (
        'resource(name="small", source="w/small.bin")\nresource(name="data", source="w/data.bin")\n'
    ),
    "agents/weights/w/small.bin": SMALL_WEIGHTS,
    "agents/weights/w/data.bin": "weights that land where the code is\n",
    # A code resource at the same path below its source root as `//agents/weights:data`.
    "agents/shared/BUILD": 'resource(name="data", source="w/data.bin")\n',
    "agents/shared/w/data.bin": "data the code reads\n",
}

SOURCES = 'python_sources(name="src", sources=["app/*.py"])\n'


@dataclass(frozen=True)
class Case:
    """A directory `agents/<id>/` holding `app/__main__.py`, an agent.yaml and a BUILD whose
    `ai_agent` is called `agent`; packaging it must fail with every one of `expected` in stderr."""

    id: str
    build: str
    expected: Tuple[str, ...]
    agent_yaml: str = "name: bad\n"

    @property
    def address(self) -> str:
        return f"agents/{self.id}:agent"


def _cases() -> Iterator[Case]:
    # Refused when the BUILD file is read (a field's own check).
    case = "port_field_out_of_range"
    yield Case(
        case,
        SOURCES
        + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"], ports=[70000])\n',
        (
            f"agents/{case}/BUILD:2: The `ports` field of agents/{case}:agent: 70000 is not a"
            " port: use a number from 1 to 65535",
        ),
    )
    # Refused while the agent is read, before any process runs.
    case = "entry_point_not_in_sources"
    yield Case(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="nosuch.module", dependencies=[":src"])\n',
        (
            f"agents/{case}:agent: field `entry_point`: module `nosuch.module` is not among the"
            " agent's first-party sources",
            "Add the `python_sources` target that holds it to `dependencies`, or fix the module"
            " name",
        ),
    )
    # Refused while the agent is read, against the digest Pants took of the weights file.
    case = "model_sha256_mismatch"
    yield Case(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        ' weights=["//agents/weights:small"])\n',
        (
            f"agents/{case}:agent: agents/{case}/agent.yaml:3: model file `w/small.bin` is pinned"
            f" to sha256 {ZEROS}, but the file in the `weights` field has sha256 {SMALL_SHA256}:"
            " fix the file or the pin",
        ),
        agent_yaml=f"name: bad\nmodels:\n  - name: w/small.bin\n    sha256: '{ZEROS}'\n",
    )
    # Refused by a build process (the one choosing the locked wheels), after the base was built.
    case = "no_wheel"
    yield Case(
        case,
        f'python_requirement(name="fakepkg", requirements=["{NOWHEEL_REQUIREMENT}"],'
        ' resolve="nowheel")\n'
        'python_sources(name="src", sources=["app/*.py"], resolve="nowheel")\n'
        'ai_agent(name="agent", entry_point="app", dependencies=[":src", ":fakepkg"],'
        ' resolve="nowheel")\n',
        (
            f"agents/{case}:agent (field `resolve`, lockfile lockfiles/nowheel.lock): Choosing"
            f" the locked wheels of agents/{case}:agent for linux/amd64",
            "fakepkg 1.0 has no wheel for CPython 3.11.",
            "Pin a version that publishes such a wheel",
        ),
    )
    # Refused after the layers were built, before the image is.
    case = "two_layers_one_path"
    yield Case(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app",'
        ' dependencies=[":src", "//agents/shared:data"], weights=["//agents/weights:data"],'
        ' weights_dir="/opt/agent/app")\n',
        (
            f"agents/{case}:agent: two layers write /opt/agent/app/w/data.bin: the weights layer",
            "and the code layer",
            "set `weights_dir` to a directory the code does not use",
        ),
        agent_yaml="name: bad\nmodels:\n  - w/data.bin\n",
    )


CASES = list(_cases())


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRepo]:
    scratch = ScratchRepo.create(tmp_path_factory.mktemp("bad-input") / "repo")
    scratch.write(COMMON_FILES)
    # A resolve whose lock pins a project that has only an sdist.
    config = toml.loads((scratch.root / "pants.toml").read_text())
    config["python"]["resolves"]["nowheel"] = "lockfiles/nowheel.lock"
    config["python"]["resolves_to_interpreter_constraints"]["nowheel"] = ["CPython==3.11.*"]
    (scratch.root / "pants.toml").write_text(toml.dumps(config))
    scratch.write({"lockfiles/nowheel.lock": nowheel_lock()})
    with scratch.with_pantsd() as daemon:
        yield daemon


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_agent_fails_naming_target_and_field(repo: ScratchRepo, case: Case) -> None:
    case_dir = repo.root / "agents" / case.id
    repo.write(
        {
            f"agents/{case.id}/BUILD": case.build,
            f"agents/{case.id}/agent.yaml": case.agent_yaml,
            f"agents/{case.id}/app/__main__.py": 'print("never built")\n',
        }
    )
    try:
        result = repo.run("package", case.address)
    finally:
        shutil.rmtree(case_dir)
    shown = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode != 0, shown
    assert case.address in result.stderr, shown
    for expected in case.expected:
        assert expected in result.stderr, shown
    # Nothing for the target, and nothing half-written: no case here builds anything.
    dist = repo.root / "dist"
    assert not (dist / f"agents.{case.id}").exists(), shown
    assert not dist.exists() or not any(dist.rglob("*")), sorted(dist.rglob("*"))

"""Run Pants, with this plugin, against a scratch repo made by a test.

The scratch repo starts from the real `pants.toml` and lockfiles (a `files` target at the repo
root puts them in the test sandbox), with the plugin loaded from the sandbox's copy of
`plugins/`. Pants itself comes from the test's own environment (`pantsbuild.pants` is in the
plugin resolve); the pex tool is the one the `./pants` launcher built and verified, which it
announces in `AI_AGENT_PEX_TOOL`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import toml

import ai_agent
from testkit.components import missing_component

_SANDBOX_ROOT = Path(__file__).resolve().parents[2]
# Pants only passes these through to the nested run; everything else is scrubbed for hermeticity.
_PASSED_ENV = ("HOME", "PATH", "CI", "DOCKER_HOST", "PYENV_ROOT")


# The skeleton of a scratch repo's agents: the real config's source roots are `/agents/*`, so each
# directory below agents/ is one; code and agents use the `agents` resolve, on the Debian base of
# the committed lock `lockfiles/debian-bookworm-python.lock.json`.
AGENTS_SKELETON = {
    "agents/BUILD": """\
__defaults__(
    {
        (python_sources, python_source): dict(
            resolve="agents", interpreter_constraints=["CPython==3.11.*"]
        ),
        ai_agent: dict(resolve="agents", base="//agents/base:bookworm-python"),
    }
)
""",
    "agents/base/BUILD": 'debian_base(name="bookworm-python")\n',
}


# Where the test sandbox's copy of the plugin package lives (a sys.path entry).
_PLUGINS_DIR = Path(ai_agent.__file__).resolve().parents[1]


@dataclass(frozen=True)
class ScratchRepo:
    root: Path
    # The directory holding the `ai_agent` package that Pants loads (default: the sandbox's).
    plugins_dir: Path = _PLUGINS_DIR
    # Where the runs' shared pantsd keeps its state (`--pants-subprocessdir`); None: no pantsd.
    # Made by `with_pantsd`.
    pantsd_dir: Optional[Path] = None

    @classmethod
    def create(
        cls, root: Path, plugins_dir: Path = _PLUGINS_DIR, *, archives: bool = True
    ) -> ScratchRepo:
        """A repo with the real pants.toml and lockfiles. `archives`: whether `package` also
        writes docker-loadable archives (`[ai-agents].archives`, off by default in the plugin),
        which most tests load or compare; a test of the default passes False."""
        pex_tool = os.environ.get("AI_AGENT_PEX_TOOL")
        if not pex_tool or not Path(pex_tool).is_file():
            missing_component(
                "the pex tool built by the ./pants launcher",
                "nothing: run the tests through `./pants test`, which sets AI_AGENT_PEX_TOOL",
            )
        config = toml.loads((_SANDBOX_ROOT / "pants.toml").read_text())
        config["GLOBAL"]["pythonpath"] = [str(plugins_dir)]
        config["pex-cli"]["url_template"] = f"file://{pex_tool}"
        config.setdefault("ai-agents", {})["archives"] = archives
        root.mkdir(parents=True)
        (root / "pants.toml").write_text(toml.dumps(config))
        shutil.copytree(_SANDBOX_ROOT / "lockfiles", root / "lockfiles")
        return cls(root, plugins_dir)

    @classmethod
    def with_example_agents(cls, root: Path) -> ScratchRepo:
        """A scratch repo holding the real example agents (`agents/`) and the requirements their
        BUILD files name (`3rdparty/`): the test's BUILD must depend on `//agents:tree` and
        `//3rdparty/python:requirements-files`, which put them in the sandbox."""
        repo = cls.create(root)
        repo.copy_from_sandbox("agents", "3rdparty")
        return repo

    def write(self, files: Mapping[str, str]) -> None:
        for relpath, content in files.items():
            path = self.root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def copy_from_sandbox(self, *relpaths: str) -> None:
        """Copy files or directories of the test sandbox (what the test's BUILD dependencies put
        there, e.g. a `files` target's tree) to the same paths in the scratch repo."""
        for relpath in relpaths:
            source, target = _SANDBOX_ROOT / relpath, self.root / relpath
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)

    @contextmanager
    def with_pantsd(self) -> Iterator[ScratchRepo]:
        """This repo, with runs that share one pantsd, which stops (it and no other) when the
        block exits.

        A Pants start without a daemon costs 30-60 s, once per run. The daemon's pidfile lies
        in a directory under the working directory, which is the sandbox Pants runs the test in
        and deletes afterwards, and pantsd exits once its pidfile is gone: so no daemon outlives
        a pytest that Pants killed before teardown (a timeout, a retry after a file change)."""
        pantsd_dir = Path(tempfile.mkdtemp(prefix="scratch-pantsd-", dir=Path.cwd()))
        try:
            yield dataclasses.replace(self, pantsd_dir=pantsd_dir)
        finally:
            _stop_pantsd(self.root, pantsd_dir)
            shutil.rmtree(pantsd_dir, ignore_errors=True)

    def run(
        self,
        *args: str,
        extra_env: Optional[Mapping[str, str]] = None,
        umask: Optional[int] = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess:
        """Run `pants <args>` in the scratch repo (no pantsd, unless made by `with_pantsd`) and
        return the finished process.
        Every such run also checks that nothing printed a Pants deprecation warning: the
        repo's config ignores only the launcher's, so any other comes from the plugin."""
        result = subprocess.run(
            **self._process_kwargs(args, extra_env, umask),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        deprecations = [line for line in result.stderr.splitlines() if "DEPRECATED" in line]
        assert not deprecations, f"`pants {' '.join(args)}` warned:\n" + "\n".join(deprecations)
        return result

    def popen(
        self,
        *args: str,
        extra_env: Optional[Mapping[str, str]] = None,
        umask: Optional[int] = None,
        **popen_kwargs: Any,
    ) -> subprocess.Popen:
        """Start `pants <args>` in the scratch repo, like `run`, without waiting;
        `popen_kwargs` go to `subprocess.Popen` (e.g. `stdout`, `start_new_session`)."""
        return subprocess.Popen(**self._process_kwargs(args, extra_env, umask), **popen_kwargs)

    def _process_kwargs(
        self,
        args: Sequence[str],
        extra_env: Optional[Mapping[str, str]],
        umask: Optional[int],
    ) -> Dict[str, Any]:
        env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
        env.update(
            LC_ALL="C.UTF-8",
            NO_SCIE_WARNING="1",
            # Pants appends `pythonpath` to sys.path: the plugin must not also come from here.
            PYTHONPATH=os.pathsep.join(
                str(self.plugins_dir) if Path(entry).resolve() == _PLUGINS_DIR else entry
                for entry in sys.path
            ),
        )
        env.update(extra_env or {})
        daemon: List[str] = (
            ["--no-pantsd"]
            if self.pantsd_dir is None
            else ["--pantsd", f"--pants-subprocessdir={self.pantsd_dir}"]
        )
        return dict(
            args=[sys.executable, "-m", "pants", *daemon, *args],
            cwd=self.root,
            env=env,
            preexec_fn=None if umask is None else lambda: os.umask(umask),  # noqa: PLW1509
        )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _stop_pantsd(root: Path, pantsd_dir: Path) -> None:
    """Stop the pantsd that runs with `pantsd_dir` started for the repo at `root` (and only it)."""
    for pidfile in pantsd_dir.glob("*/pantsd/pid"):
        pid = int(pidfile.read_text())
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if not cmdline.startswith(f"pantsd [{root}]".encode()):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

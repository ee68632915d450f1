import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from ai_agent.oci.export import ExportError, export_files, partial_path

ARCHIVE = "agents.x/x.tar"
METADATA = "agents.x/x.tar.json"


def _sources(root: Path, archive: bytes, metadata: bytes) -> Dict[str, Path]:
    paths = {ARCHIVE: root / ARCHIVE, METADATA: root / METADATA}
    for relative, data in ((ARCHIVE, archive), (METADATA, metadata)):
        paths[relative].parent.mkdir(parents=True, exist_ok=True)
        paths[relative].write_bytes(data)
    return paths


def _export(sources: Dict[str, Path], into: Path):
    return export_files(into, [(sources[ARCHIVE], ARCHIVE), (sources[METADATA], METADATA)])


def test_files_are_hardlinked_and_left_alone_when_unchanged(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "build", b"a" * 4096, b'{"digest": 1}')
    dist = tmp_path / "dist"

    first = _export(sources, dist)
    assert first.written == (ARCHIVE, METADATA) and first.unchanged == ()
    assert os.path.samefile(dist / ARCHIVE, sources[ARCHIVE])  # no byte copied
    assert not partial_path(dist / ARCHIVE).exists()

    inode = (dist / METADATA).stat().st_ino
    again = _export(sources, dist)
    assert again.written == () and again.unchanged == (ARCHIVE, METADATA)
    assert (dist / METADATA).stat().st_ino == inode


def test_equal_small_files_count_as_unchanged(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _export(_sources(tmp_path / "one", b"same", b"{}"), dist)
    again = _export(_sources(tmp_path / "two", b"same", b"{}"), dist)
    assert again.written == ()


def test_a_change_replaces_the_archive_and_writes_the_metadata_again(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _export(_sources(tmp_path / "old", b"old archive", b'{"v": "old"}'), dist)
    result = _export(_sources(tmp_path / "new", b"new archive", b'{"v": "old"}'), dist)
    # The metadata is placed again (last) although its bytes did not change: it says that the
    # set is complete.
    assert result.written == (ARCHIVE, METADATA) and result.unchanged == ()
    assert (dist / ARCHIVE).read_bytes() == b"new archive"
    assert json.loads((dist / METADATA).read_bytes()) == {"v": "old"}


@pytest.mark.parametrize("relative", ["/etc/x", "../x", "a/../../x"])
def test_paths_outside_the_directory_are_refused(tmp_path: Path, relative: str) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(ExportError, match="not a relative path inside"):
        export_files(tmp_path / "dist", [(source, relative)])


# A real SIGKILL at a chosen moment: the export runs in a child process whose `os.replace` (or
# copy) kills the child at that point, as a kill from outside would.
_KILLED_CHILD = textwrap.dedent(
    """
    import errno, os, shutil, signal, sys
    from pathlib import Path
    from ai_agent.oci import export

    into, archive, metadata, moment = sys.argv[1:5]
    real_replace, real_copy = os.replace, shutil.copyfileobj

    def replace_then_die(source, destination):
        real_replace(source, destination)
        os.kill(os.getpid(), signal.SIGKILL)

    def copy_half_then_die(reader, writer, length):
        writer.write(reader.read(3))
        writer.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def refuse_link(source, destination):
        raise OSError(errno.EXDEV, "cross-device link")

    if moment == "between-files":
        os.replace = replace_then_die
    else:
        os.link = refuse_link
        shutil.copyfileobj = copy_half_then_die
    export.export_files(
        Path(into), [(Path(archive), "agents.x/x.tar"), (Path(metadata), "agents.x/x.tar.json")]
    )
    """
)


@pytest.mark.parametrize("moment", ["between-files", "while-copying"])
def test_a_kill_leaves_no_metadata_beside_a_torn_or_new_archive(
    tmp_path: Path, moment: str
) -> None:
    dist = tmp_path / "dist"
    _export(_sources(tmp_path / "old", b"old archive", b'{"v": "old"}'), dist)
    new = _sources(tmp_path / "new", b"new archive", b'{"v": "new"}')

    child = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_CHILD,
            str(dist),
            str(new[ARCHIVE]),
            str(new[METADATA]),
            moment,
        ],  # fmt: skip
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    # Without its metadata the set reads as incomplete; the archive is whole, old or new.
    assert not (dist / METADATA).exists()
    expected = b"new archive" if moment == "between-files" else b"old archive"
    assert (dist / ARCHIVE).read_bytes() == expected

    result = _export(new, dist)
    assert METADATA in result.written
    assert (dist / ARCHIVE).read_bytes() == b"new archive"
    assert json.loads((dist / METADATA).read_bytes()) == {"v": "new"}
    assert sorted(path.name for path in (dist / "agents.x").iterdir()) == ["x.tar", "x.tar.json"]

"""Layer writer: every normalisation rule, every refusal, the tar and gzip formats, identical bytes
under every installed CPython, and the memory bound on a 4 GiB file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from testkit.components import missing_component

from .__main__ import main
from .layer import (
    DEFAULT_MTIME,
    PARALLEL_GZIP_BLOCK,
    Compression,
    Entry,
    LayerError,
    LayerOptions,
    LayerResult,
    TarMember,
    TarWriter,
    expand_tree,
    gzip_header,
    plan_layer,
    write_layer,
)
from .types import OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP

# The sys.path entry that holds this package, so a child interpreter can `-m` it.
PACKAGE_ROOT = Path(__file__).resolve().parents[len(__package__.split("."))]
PLAIN = LayerOptions()
GZIP = LayerOptions(compression=Compression("gzip"))


def build(entries: Sequence[Entry], options: LayerOptions = PLAIN) -> Tuple[LayerResult, bytes]:
    blob = io.BytesIO()
    result = write_layer(entries, blob, options)
    return result, blob.getvalue()


def read_members(tar_bytes: bytes) -> List[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as archive:
        return archive.getmembers()


def make_tree(root: Path, order: Sequence[str] = ("forward",), umask: int = 0o022) -> Path:
    """A small source tree with every kind of node and mode the normaliser handles."""
    files = {
        "bin/tool": (b"#!/bin/sh\necho tool\n", 0o700),
        "bin/helper": (b"#!/bin/sh\n", 0o750),
        "lib/data.txt": (b"data\n", 0o600),
        "lib/setuid": (b"x", 0o4755),
        "README": (b"readme\n", 0o640),
    }
    names = sorted(files, reverse=order[0] == "reverse")
    old_umask = os.umask(umask)
    try:
        for name in names:
            content, mode = files[name]
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode & ~umask)  # what a checkout under this umask would give
        (root / "empty").mkdir()
        (root / "lib/current").symlink_to("data.txt")
        (root / "linked-dir").symlink_to("lib")
    finally:
        os.umask(old_umask)
    return root


def tree_digest(root: Path) -> str:
    result, _ = build(expand_tree(root, "opt/app"))
    return result.diff_id


# The descriptor ---------------------------------------------------------------------------------


def test_uncompressed_layer_has_one_digest_for_blob_and_tar(tmp_path: Path) -> None:
    result, blob = build(expand_tree(make_tree(tmp_path / "src"), "app"))
    assert result.descriptor.media_type == OCI_LAYER_TAR
    assert result.descriptor.digest == result.diff_id == "sha256:" + sha256_hex(blob)
    assert result.descriptor.size == len(blob)
    assert result.compression.to_json() == {"algorithm": "none"}


def test_gzip_layer_digest_covers_the_blob_and_diff_id_the_tar(tmp_path: Path) -> None:
    entries = expand_tree(make_tree(tmp_path / "src"), "app")
    plain, tar_bytes = build(entries)
    result, blob = build(entries, GZIP)
    assert result.descriptor.media_type == OCI_LAYER_TAR_GZIP
    assert result.descriptor.digest == "sha256:" + sha256_hex(blob)
    assert result.descriptor.size == len(blob)
    assert gzip.decompress(blob) == tar_bytes
    assert result.diff_id == plain.diff_id
    assert result.compression.to_json() == {
        "algorithm": "gzip",
        "level": 6,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
    }


def test_parallel_gzip_is_one_gzip_member_whose_bytes_do_not_depend_on_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several 1 MiB blocks, compressible and not, and a last block shorter than the others.
    size = 3 * PARALLEL_GZIP_BLOCK + 12345
    content = (os.urandom(size // 2) + b"torch " * (size // 12))[:size]
    entries = [Entry.content("opt/agent/lib.so", content)]
    plain, tar_bytes = build(entries)
    parallel = LayerOptions(compression=Compression("gzip", 1, parallel=True))
    blobs = []
    for cores in ({0}, {0, 1}, set(range(7))):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cores=cores: cores)
        result, blob = build(entries, parallel)
        assert gzip.decompress(blob) == tar_bytes
        assert result.diff_id == plain.diff_id
        blobs.append(blob)
    assert blobs[0] == blobs[1] == blobs[2]
    assert blobs[0][:10] == gzip_header(1)
    # Python's own reader (one member, CRC and size checked) and gzip(1) agree.
    assert subprocess.run(["gzip", "-t"], input=blobs[0]).returncode == 0
    assert result.compression.to_json()["blockSize"] == PARALLEL_GZIP_BLOCK
    serial, _ = build(entries, LayerOptions(compression=Compression("gzip", 1)))
    assert serial.diff_id == result.diff_id and serial.descriptor != result.descriptor
    with pytest.raises(ValueError, match="only gzip compresses in parallel"):
        Compression("none", parallel=True)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Normalisation ----------------------------------------------------------------------------------


def test_members_are_sorted_with_explicit_parents_and_normalised_metadata(tmp_path: Path) -> None:
    entries = expand_tree(make_tree(tmp_path / "src"), "opt/app")
    entries.append(Entry.content("a/b/c/deep.txt", b"deep"))
    _, blob = build(entries)
    members = read_members(blob)
    names = [member.name for member in members]
    assert names == sorted(names, key=lambda name: name.split("/"))
    assert {"a", "a/b", "a/b/c", "opt", "opt/app"} <= set(names)
    modes = {member.name: stat.S_IMODE(member.mode) for member in members}
    assert modes["opt/app/bin/tool"] == 0o755  # 0700: exec bit kept, rest normalised
    assert modes["opt/app/bin/helper"] == 0o755  # 0750
    assert modes["opt/app/lib/data.txt"] == 0o644  # 0600
    assert modes["opt/app/README"] == 0o644  # 0640
    assert modes["opt/app/lib/setuid"] == 0o755  # setuid from the input is dropped
    assert all(modes[name] == 0o755 for name in ("a", "a/b", "opt", "opt/app/empty"))
    for member in members:
        assert (member.mtime, member.uid, member.gid) == (DEFAULT_MTIME, 0, 0)
        assert (member.uname, member.gname) == ("", "")
        assert member.pax_headers == {}
    kinds = {member.name: member.type for member in members}
    assert kinds["opt/app/empty"] == tarfile.DIRTYPE
    assert kinds["opt/app/lib/current"] == tarfile.SYMTYPE
    assert kinds["opt/app/linked-dir"] == tarfile.SYMTYPE  # kept as a link, never followed
    links = {member.name: member.linkname for member in members if member.issym()}
    assert links == {"opt/app/lib/current": "data.txt", "opt/app/linked-dir": "lib"}


def test_explicit_mode_and_owner_are_kept(tmp_path: Path) -> None:
    source = tmp_path / "tool"
    source.write_bytes(b"x")
    entries = [
        Entry.directory("tmp", mode=0o1777),
        Entry.file("usr/bin/sudo-like", source, mode=0o4755),
        Entry.content("home/agent/.profile", b"", uid=65532, gid=65532),
    ]
    options = LayerOptions(uid=7, gid=8, mtime=1234567890)
    _, blob = build(entries, options)
    members = {member.name: member for member in read_members(blob)}
    assert stat.S_IMODE(members["tmp"].mode) == 0o1777
    assert stat.S_IMODE(members["usr/bin/sudo-like"].mode) == 0o4755
    assert (members["home/agent/.profile"].uid, members["home/agent/.profile"].gid) == (
        65532,
        65532,
    )
    assert (members["home/agent"].uid, members["home"].gid) == (7, 8)  # the layer default owner
    assert {member.mtime for member in members.values()} == {1234567890}


def test_explicit_directory_entry_wins_over_the_implied_parent() -> None:
    entries = [Entry.content("tmp/x", b""), Entry.directory("tmp", mode=0o1777)]
    members = {member.name: member for member in plan_layer(entries)}
    assert members["tmp"].mode == 0o1777


def test_digest_ignores_mtimes_umask_creation_order_and_checkout_path(tmp_path: Path) -> None:
    reference = tree_digest(make_tree(tmp_path / "one"))
    other = make_tree(tmp_path / "elsewhere" / "two", order=("reverse",), umask=0o077)
    for path in [other, *other.rglob("*")]:
        os.utime(path, (123456, 654321), follow_symlinks=False)
    assert tree_digest(other) == reference


def test_digest_changes_with_content_exec_bit_and_path(tmp_path: Path) -> None:
    def digest_after(change: str) -> str:
        root = make_tree(tmp_path / change)
        if change == "content":
            (root / "lib/data.txt").write_bytes(b"other\n")
        elif change == "exec-bit":
            (root / "lib/data.txt").chmod(0o700)
        elif change == "path":
            (root / "lib/data.txt").rename(root / "lib/data2.txt")
        return tree_digest(root)

    digests = [digest_after(change) for change in ("none", "content", "exec-bit", "path")]
    assert len(set(digests)) == len(digests)


def test_mtime_option_changes_the_digest() -> None:
    entries = [Entry.content("a", b"a")]
    assert build(entries)[0].diff_id != build(entries, LayerOptions(mtime=0))[0].diff_id


def test_hard_links_become_regular_files(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "original").write_bytes(b"shared")
    os.link(source / "original", source / "hardlink")
    _, blob = build(expand_tree(source, "."))
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        for name in ("original", "hardlink"):
            member = archive.getmember(name)
            assert member.isreg()
            extracted = archive.extractfile(member)
            assert extracted is not None and extracted.read() == b"shared"


def test_identical_duplicates_collapse(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"same")
    (tmp_path / "b").write_bytes(b"same")
    entries = [
        Entry.file("etc/x", tmp_path / "a"),
        Entry.file("etc/x", tmp_path / "b"),
        Entry.content("etc/x", b"same"),
        Entry.directory("etc"),
    ]
    assert [member.name for member in plan_layer(entries)] == ["etc", "etc/x"]


# The tar format ---------------------------------------------------------------------------------


def test_plain_member_is_a_single_ustar_header(tmp_path: Path) -> None:
    _, blob = build([Entry.content("hello.txt", b"hello")])
    header = blob[:512]
    assert header[:100].rstrip(b"\0") == b"hello.txt"
    assert header[100:108] == b"0000644\0"
    assert header[108:116] == header[116:124] == b"0000000\0"
    assert header[124:136] == b"00000000005\0"
    assert header[136:148] == b"%011o\0" % DEFAULT_MTIME
    assert header[156:157] == b"0"
    assert header[257:265] == b"ustar\x0000"
    assert header[265:329] == bytes(64)  # no user or group names
    checksum = sum(header[:148]) + 8 * ord(" ") + sum(header[156:])
    assert header[148:156] == b"%06o\0 " % checksum
    assert blob[512:517] == b"hello" and blob[517:1024] == bytes(507)
    assert blob[1024:] == bytes(1024)  # two zero blocks, no record padding


def test_long_and_non_ascii_paths_use_pax_path_records_only(tmp_path: Path) -> None:
    long_dir = "d" * 120
    long_name = f"{long_dir}/{'f' * 200}.txt"
    long_target = "/" + "t" * 150
    entries = [
        Entry.content(long_name, b"long"),
        Entry.symlink("links/far", long_target),
        Entry.content("données/été.txt", b"utf-8"),
    ]
    _, blob = build(entries)
    members = {member.name: member for member in read_members(blob)}
    assert {long_dir, long_name, "links/far", "données", "données/été.txt"} <= set(members)
    assert members["links/far"].linkname == long_target
    for member in members.values():
        assert set(member.pax_headers) <= {"path", "linkpath"}
    assert blob.count(b"././@PaxHeader") == 5  # long dir, long file, long link, two non-ASCII
    assert b"PaxHeaders." not in blob  # GNU tar's per-process name never appears


class _HeadersSeen(Exception):
    pass


class _HeaderCatcher:
    """A sink that keeps the first write (a member's headers) and stops the writer there."""

    headers = b""

    def write(self, data: bytes) -> None:
        self.headers = bytes(data)
        raise _HeadersSeen


@pytest.mark.parametrize("length", [*range(89, 95), *range(989, 995)])
def test_pax_record_lengths_count_their_own_digits(length: int) -> None:
    """Records of 2-, 3- and 4-digit lengths around the boundaries read back exactly."""
    name = "é" + "a" * (length - 2)  # non-ASCII, so a PAX record even when short
    assert len(name.encode()) == length
    _, blob = build([Entry.content(name, b"")])
    assert [member.name for member in read_members(blob)] == [name]


def test_sizes_beyond_ustar_use_a_pax_size_record() -> None:
    huge = 8**11  # one more than 11 octal digits hold
    sink = _HeaderCatcher()
    with pytest.raises(_HeadersSeen):
        TarWriter(sink).add(TarMember("huge.bin", "file", 0o644, 0, 0, DEFAULT_MTIME, huge))
    assert b" size=%d\n" % huge in sink.headers
    assert sink.headers[-512:][124:136] == b"00000000000\0"


# Compression ------------------------------------------------------------------------------------


@pytest.mark.parametrize("level, extra_flags", [(1, 4), (6, 0), (9, 2)])
def test_gzip_header_is_fixed(level: int, extra_flags: int) -> None:
    expected = b"\x1f\x8b\x08\x00" + b"\0\0\0\0" + bytes((extra_flags, 255))
    assert gzip_header(level) == expected
    result, blob = build(
        [Entry.content("a", b"a" * 1000)], LayerOptions(Compression("gzip", level))
    )
    assert blob[:10] == expected
    crc, size = blob[-8:-4], blob[-4:]
    tar_bytes = gzip.decompress(blob)
    assert crc == zlib.crc32(tar_bytes).to_bytes(4, "little")
    assert size == len(tar_bytes).to_bytes(4, "little")
    assert result.compression.level == level


def test_compression_options_are_validated() -> None:
    with pytest.raises(ValueError, match="1..9"):
        Compression("gzip", 10)
    with pytest.raises(ValueError, match="none` or `gzip"):
        Compression("zstd")
    with pytest.raises(ValueError, match="takes no level"):
        Compression("none", 6)


# Refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../escape", "a/../../b", "a/./b", "a//b", "", "a/"]
)
def test_non_normal_destinations_are_refused(path: str) -> None:
    with pytest.raises(LayerError, match=re.escape(repr(path))):
        plan_layer([Entry.content(path, b"")])


def test_same_destination_with_different_content_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="etc/x: given twice with different content"):
        plan_layer([Entry.content("etc/x", b"one"), Entry.content("etc/x", b"two")])
    with pytest.raises(LayerError, match="etc/x: given twice"):
        plan_layer([Entry.content("etc/x", b"one"), Entry.content("etc/x", b"one", mode=0o755)])
    with pytest.raises(LayerError, match="etc/x: given twice"):
        plan_layer([Entry.content("etc/x", b"one"), Entry.symlink("etc/x", "one")])


def test_non_directory_parent_is_refused() -> None:
    with pytest.raises(LayerError, match="lib: is a symlink in this layer but also the parent"):
        plan_layer([Entry.symlink("lib", "usr/lib"), Entry.content("lib/libc.so", b"")])


@pytest.mark.parametrize(
    "path, target",
    [("link", ".."), ("a/link", "../../etc/passwd"), ("a/b/link", "c/../../../../x")],
)
def test_relative_symlinks_escaping_the_root_are_refused(path: str, target: str) -> None:
    with pytest.raises(LayerError, match=f"{path}: symlink target .* escapes the layer root"):
        plan_layer([Entry.symlink(path, target)])


@pytest.mark.parametrize(
    "path, target",
    [("usr/bin/python", "/usr/bin/python3.11"), ("a/b/link", "../../x"), ("a/link", "./b/../c")],
)
def test_symlinks_inside_the_root_are_allowed(path: str, target: str) -> None:
    members = {member.name: member for member in plan_layer([Entry.symlink(path, target)])}
    assert members[path].linkname == target


def test_special_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(LayerError, match="etc/fifo: source .* is a FIFO"):
        plan_layer([Entry.file("etc/fifo", fifo)])
    with pytest.raises(LayerError, match="dev/null: source /dev/null is a character device"):
        plan_layer([Entry.file("dev/null", "/dev/null")])
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        with pytest.raises(LayerError, match="run/sock: source .* is a socket"):
            plan_layer([Entry.file("run/sock", tmp_path / "sock")])
    with pytest.raises(LayerError, match="etc: source .* is a directory"):
        plan_layer([Entry.file("etc", tmp_path)])


def test_special_files_inside_a_tree_are_refused_by_destination(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(LayerError, match="srv/pipe: source .* is a FIFO"):
        plan_layer(expand_tree(tmp_path, "srv"))


def test_missing_and_unreadable_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="etc/missing: cannot read source"):
        plan_layer([Entry.file("etc/missing", tmp_path / "nope")])
    with pytest.raises(LayerError, match="srv: tree source .* is not a directory"):
        expand_tree(tmp_path / "nope", "srv")
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    secret = tmp_path / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0)
    with pytest.raises(LayerError, match="etc/secret: source .* is not readable"):
        plan_layer([Entry.file("etc/secret", secret)])


def test_header_fields_out_of_range_are_refused() -> None:
    with pytest.raises(LayerError, match="x: mode 0o10000"):
        plan_layer([Entry.content("x", b"", mode=0o10000)])
    with pytest.raises(LayerError, match="x: uid 2097152 does not fit"):
        plan_layer([Entry.content("x", b"", uid=8**7)])


def test_content_digest_is_verified_while_streaming(tmp_path: Path) -> None:
    source = tmp_path / "weights"
    source.write_bytes(b"weights")
    good = "sha256:" + sha256_hex(b"weights")
    build([Entry.file("w", source, digest=good)])
    output = tmp_path / "layer.tar"
    with pytest.raises(LayerError, match="w: .* has digest sha256:.*, expected sha256:0+"):
        write_layer([Entry.file("w", source, digest="sha256:" + "0" * 64)], output)
    assert not output.exists()  # no half-written blob is left behind


def test_source_changing_size_after_planning_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "log"
    source.write_bytes(b"12345")
    planned = plan_layer([Entry.file("log", source)])[0]
    source.write_bytes(b"123")
    with pytest.raises(LayerError, match="log: .* shrank while being read"):
        TarWriter(io.BytesIO()).add(planned)
    source.write_bytes(b"1234567")
    with pytest.raises(LayerError, match="log: .* grew while being read"):
        TarWriter(io.BytesIO()).add(planned)


def test_output_errors_surface(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_layer([Entry.content("a", b"a")], Broken())  # type: ignore[arg-type]


# The command line under every CPython -----------------------------------------------------------


def interpreters() -> List[str]:
    """Every pyenv CPython >= 3.9 on this machine (those that do not exist are skipped)."""
    found = []
    for candidate in sorted(Path("/root/.pyenv/versions").glob("3.*/bin/python3.*")):
        match = re.fullmatch(r"python3\.(\d+)", candidate.name)
        if match and int(match.group(1)) >= 9 and os.access(candidate, os.X_OK):
            found.append(str(candidate))
    return found


def run_cli(
    python: str, *args: str, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ.get("PATH", ""), **(env or {})}
    environment["PYTHONPATH"] = str(PACKAGE_ROOT)
    return subprocess.run(
        [python, "-m", __package__, *args], env=environment, capture_output=True, text=True
    )


def write_spec(path: Path, compression: str, tree: Path) -> Path:
    spec = {
        "compression": compression,
        "entries": [
            {"path": "opt/app", "tree": os.path.relpath(tree, path.parent)},
            {"path": "x" * 150 + "/long.txt", "content": "long\n"},
            {"path": "tmp", "directory": True, "mode": "1777"},
            {"path": "usr/bin/python3", "symlink": "/usr/bin/python3.11"},
        ],
    }
    path.write_text(json.dumps(spec))
    return path


def test_cli_output_is_identical_under_every_cpython(tmp_path: Path) -> None:
    pythons = interpreters()
    if len(pythons) < 2:
        missing_component(
            "two CPython versions >= 3.9 under /root/.pyenv/versions",
            "pyenv's CPython 3.9 and 3.11, as on the build machines",
        )
    tree = make_tree(tmp_path / "src")
    for compression in ("none", "gzip"):
        spec = write_spec(tmp_path / f"{compression}.json", compression, tree)
        outputs: Dict[str, Tuple[bytes, bytes]] = {}
        for python in pythons:
            out = tmp_path / compression / Path(python).name
            result = run_cli(python, "layer", "--spec", str(spec), "--output-dir", str(out))
            assert result.returncode == 0, result.stderr
            blob_name = json.loads((out / "descriptor.json").read_text())["blob"]
            outputs[python] = (
                (out / "descriptor.json").read_bytes(),
                (out / blob_name).read_bytes(),
            )
        assert len(set(outputs.values())) == 1, f"{compression} layers differ across {pythons}"


def test_cli_output_ignores_tz_lang_and_umask(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec.json", "gzip", make_tree(tmp_path / "src"))
    descriptors = set()
    environments: List[Dict[str, str]] = [
        {},
        {"TZ": "Pacific/Kiritimati", "LANG": "tr_TR.UTF-8", "LC_ALL": "C"},
    ]
    for number, env in enumerate(environments):
        out = tmp_path / f"out{number}"
        result = subprocess.run(
            ["sh", "-c", f"umask {'077' if number else '022'} && exec \"$@\"", "sh"]
            + [sys.executable, "-m", __package__, "layer", "--spec", str(spec)]
            + ["--output-dir", str(out)],
            env={"PYTHONPATH": str(PACKAGE_ROOT), "PATH": os.environ.get("PATH", ""), **env},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        descriptors.add((out / "descriptor.json").read_bytes())
    assert len(descriptors) == 1


def test_cli_reports_bad_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    arguments = ["layer", "--spec", str(spec), "--output-dir", str(tmp_path / "out")]
    spec.write_text(json.dumps({"entries": [{"path": "/abs", "content": "x"}]}))
    assert main(arguments) == 2
    assert capsys.readouterr().err.startswith("error: '/abs': destinations are relative paths")
    spec.write_text(json.dumps({"entries": [{"path": "a", "content": "x", "symlink": "y"}]}))
    assert main(arguments) == 2
    assert "give exactly one of" in capsys.readouterr().err
    spec.write_text(json.dumps({"entries": [], "compression": "zstd"}))
    assert main(arguments) == 2
    assert "compression must be `none` or `gzip`" in capsys.readouterr().err
    assert not (tmp_path / "out" / "descriptor.json").exists()


# The memory bound -------------------------------------------------------------------------------

MEMORY_LIMIT_BYTES = 100 * 1000 * 1000


def test_a_4_gib_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A sparse 4 GiB file costs no disk; the child's peak RSS must stay far below its size."""
    size = 4 << 30
    weights = tmp_path / "weights.bin"
    with open(weights, "wb") as handle:
        handle.truncate(size)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"entries": [{"path": "w.bin", "source": "weights.bin"}]}))
    out = tmp_path / "out"
    with open(tmp_path / "stderr", "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", __package__, "layer", "--spec", str(spec)]
            + ["--output-dir", str(out), "--discard-blob"],
            env={"PYTHONPATH": str(PACKAGE_ROOT)},
            stderr=stderr,
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, (tmp_path / "stderr").read_text()
    peak_rss_bytes = usage.ru_maxrss * 1024  # Linux reports KiB
    assert peak_rss_bytes < MEMORY_LIMIT_BYTES, f"peak RSS {peak_rss_bytes / 1e6:.0f} MB"
    descriptor = json.loads((out / "descriptor.json").read_text())
    assert descriptor["size"] == 512 + size + 1024
    assert "blob" not in descriptor

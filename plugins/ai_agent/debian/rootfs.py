"""Unpack locked .deb files into the entries of one deterministic base layer, writing what dpkg
and the maintainer scripts would have written, without running either.

- Files come from each package's data.tar in lock order (sorted by name), with the package's
  modes and numeric owners; setuid and setgid bits are dropped (nothing in a distroless runtime
  should gain privileges). Regular files are streamed into a scratch tree and added as file
  entries, so no member is ever held in memory.
- usr-merge, as Debian 12 installs it: `/bin`, `/sbin`, `/lib` and `/lib*` contents are placed
  under `/usr`, and `bin`, `sbin`, `lib` (and `lib64` etc. where used) are symlinks into `usr/`.
- Two packages shipping one path (other than a directory, or the same symlink) is an error, as it
  is for dpkg.
- Written here because no maintainer script runs: `/etc/passwd` and `/etc/group` (root 0, nobody
  65534, nonroot 65532), `/home/nonroot` (0700, owned by 65532), `/root` (0700), `/tmp` (1777),
  `/etc/nsswitch.conf`, `/etc/localtime` (UTC, with tzdata), `/usr/bin/python3` (to the newest
  `python3.N` installed), the CA bundle `/etc/ssl/certs/ca-certificates.crt` (as
  update-ca-certificates builds it), `/etc/os-release` (unless base-files is installed),
  `/etc/ld.so.cache` (with libc-bin, for `ldconfig -p`) and a dpkg database
  (`/var/lib/dpkg/status`, `info/<package>[:<arch>].list|.md5sums|.conffiles`, `info/format`).
- What the SBOM says of each package (`build_rootfs_with_packages`): its lock pin, its control
  fields' source package, maintainer and homepage, and the licences its copyright file declares
  (`copyright.py`), read here where the files are unpacked anyway.
- Python bytecode, compiled by the image's own interpreter through the image's own dynamic
  loader, as hash-checked .pyc (`unchecked-hash`), so the bytes do not depend on time or on the
  build host. This needs a host that runs the target architecture.

The scratch tree is a chroot-less copy of the image: absolute symlink targets are rewritten to
relative ones there so that nothing run in it (the interpreter compiling bytecode) ever reaches
the host's files. The entries keep the targets the packages ship.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..oci.layer import DIRECTORY, FILE, SYMLINK, Entry
from ..wheels.bytecode import compileall_arguments
from .control import Stanza, format_stanza
from .copyright import declared_licenses
from .deb import Deb, DebError, open_deb
from .errors import DebianError
from .ldcache import build_ld_cache
from .lock import Lock, LockedPackage

logger = logging.getLogger(__name__)

NONROOT_UID = 65532
# Top-level directories that usr-merge moves under /usr; bin, sbin and lib are always linked.
USR_MERGED_DIRECTORIES = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
ALWAYS_LINKED_DIRECTORIES = ("bin", "lib", "sbin")
BYTECODE_MODES = ("auto", "yes", "no")
GENERATED = "(generated)"
DPKG_INFO = "var/lib/dpkg/info"
PRIVILEGE_BITS = 0o6000

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
# Local files first, then DNS: what Debian's default says for the databases a runtime uses.
NSSWITCH = (
    "passwd:         files\n"
    "group:          files\n"
    "shadow:         files\n"
    "gshadow:        files\n"
    "\n"
    "hosts:          files dns\n"
    "networks:       files\n"
    "\n"
    "protocols:      files\n"
    "services:       files\n"
    "ethers:         files\n"
    "rpc:            files\n"
)
UTC_ZONE = "usr/share/zoneinfo/Etc/UTC"
CA_CERTIFICATES = "usr/share/ca-certificates"
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
# The order dpkg writes the fields of a status stanza in; other fields follow in control order.
DPKG_STATUS_FIELDS = (
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
)
_PYTHON = re.compile(r"^usr/bin/python3\.([0-9]+)$")


class RootfsError(DebianError):
    """The packages cannot be combined into one root filesystem; the message names them."""


class BytecodeUnavailable(RootfsError):
    """Bytecode was required but this host cannot run the target architecture's interpreter."""


@dataclass(frozen=True)
class TargetArchitecture:
    """What running the image's own binaries on a build host needs for one architecture."""

    name: str
    triplet: str
    dynamic_loader: str
    host_machines: Tuple[str, ...]


ARCHITECTURES: Mapping[str, TargetArchitecture] = {
    "amd64": TargetArchitecture(
        "amd64", "x86_64-linux-gnu", "ld-linux-x86-64.so.2", ("x86_64", "amd64")
    ),
    "arm64": TargetArchitecture(
        "arm64", "aarch64-linux-gnu", "ld-linux-aarch64.so.1", ("aarch64", "arm64")
    ),
}


def build_rootfs(
    lock: Lock,
    architecture: str,
    debs: Mapping[str, Path],
    scratch: Path,
    bytecode: str = "auto",
) -> List[Entry]:
    """The sorted layer entries of the base image for `architecture`.

    `debs` maps each locked package name to its verified .deb; `scratch` is an empty directory
    the entries' file sources are written to (it must outlive the layer write). `bytecode` is
    `auto` (compile when this host can run the target, else warn and skip), `yes` (fail
    instead of skipping) or `no`.
    """
    return build_rootfs_with_packages(lock, architecture, debs, scratch, bytecode)[0]


def build_rootfs_with_packages(
    lock: Lock,
    architecture: str,
    debs: Mapping[str, Path],
    scratch: Path,
    bytecode: str = "auto",
) -> Tuple[List[Entry], List[Dict[str, Any]]]:
    """`build_rootfs`, and what the SBOM says of each package, in lock order (`package_facts`)."""
    if bytecode not in BYTECODE_MODES:
        raise ValueError(f"bytecode must be one of {BYTECODE_MODES}, got {bytecode!r}")
    if architecture not in ARCHITECTURES:
        raise RootfsError(
            f"architecture {architecture} is not supported; supported: {sorted(ARCHITECTURES)}"
        )
    tree = _Tree(scratch / "rootfs")
    status: List[str] = []
    controls: List[Tuple[LockedPackage, Stanza]] = []
    for package in lock.packages_for(architecture):
        if package.name not in debs:
            raise RootfsError(f"no .deb given for locked package {package.name}")
        stanza, control = _unpack(tree, package, debs[package.name])
        status.append(stanza)
        controls.append((package, control))
    # After every package: a doc directory may be a link into another package's.
    packages = [package_facts(tree, package, control) for package, control in controls]
    _add_usr_merge_links(tree)
    _add_system_files(tree)
    _add_os_release(tree, lock)
    _add_ca_bundle(tree)
    _add_ld_cache(tree, ARCHITECTURES[architecture])
    _add_dpkg_status(tree, status)
    _add_bytecode(tree, ARCHITECTURES[architecture], bytecode)
    return tree.sorted_entries(), packages


def package_facts(tree: _Tree, package: LockedPackage, control: Stanza) -> Dict[str, Any]:
    """The lock's pin of `package`, its source package (the `Source` field, else itself), its
    maintainer and homepage, and the licences its copyright file declares (`copyright.py`; none
    where the file is free-form or missing)."""
    source, _, source_version = control.get("Source", package.name).partition(" ")
    copyright_path = f"usr/share/doc/{package.name}/copyright"
    # Through the scratch tree, whose links stay inside it: a doc directory may be a link.
    copyright_file = tree.scratch_path(copyright_path)
    has_copyright = copyright_file.is_file()
    licenses = (
        declared_licenses(copyright_file.read_bytes().decode("utf-8", "replace"))
        if has_copyright
        else []
    )
    return {
        **package.to_json(),
        "source": source,
        "sourceVersion": source_version.strip("()") or package.version,
        "maintainer": control.get("Maintainer"),
        "homepage": control.get("Homepage"),
        "copyright": f"/{copyright_path}" if has_copyright else None,
        "licenses": licenses,
    }


# The tree --------------------------------------------------------------------------------------


class _Tree:
    """The entries of the image so far, which package added each, and the scratch copy."""

    def __init__(self, scratch_root: Path) -> None:
        self.root = scratch_root
        self.root.mkdir(parents=True, exist_ok=False)
        self.entries: Dict[str, Entry] = {}
        self.origins: Dict[str, str] = {}

    def add(self, entry: Entry, origin: str) -> None:
        """Add `entry`; a directory given again keeps its first mode unless the later one is
        generated (maintainer scripts run last), anything else given twice is an error."""
        self._check_parents(entry.path, origin)
        existing = self.entries.get(entry.path)
        if existing is not None:
            if existing.kind == DIRECTORY and entry.kind == DIRECTORY:
                if origin == GENERATED:
                    self.entries[entry.path] = entry
                return
            if existing.kind == SYMLINK and entry.kind == SYMLINK:
                if existing.target == entry.target:
                    return
            raise RootfsError(
                f"/{entry.path} is shipped by both {self.origins[entry.path]} and {origin};"
                " exclude one of the two packages"
            )
        self.entries[entry.path] = entry
        self.origins[entry.path] = origin

    def _check_parents(self, path: str, origin: str) -> None:
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            existing = self.entries.get(parent)
            if existing is not None:
                if existing.kind != DIRECTORY:
                    raise RootfsError(
                        f"{origin} ships /{path}, but /{parent} is a {existing.kind} from"
                        f" {self.origins[parent]}"
                    )
                return

    def scratch_path(self, path: str) -> Path:
        return self.root / path

    def directory(
        self, path: str, origin: str, mode: int = 0o755, uid: int = 0, gid: int = 0
    ) -> None:
        self.add(Entry.directory(path, mode=mode, uid=uid, gid=gid), origin)
        self.scratch_path(path).mkdir(parents=True, exist_ok=True)

    def file(
        self, path: str, content: IO[bytes], origin: str, mode: int, uid: int = 0, gid: int = 0
    ) -> None:
        """A regular file streamed from `content` into the scratch tree."""
        target = self.scratch_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.add(Entry.file(path, target, mode=mode, uid=uid, gid=gid), origin)
        with open(target, "wb") as output:
            shutil.copyfileobj(content, output, 1 << 20)
        target.chmod((mode & 0o777) | 0o600)

    def content(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """A generated file, also written to the scratch tree for what runs there."""
        target = self.scratch_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.add(Entry.content(path, data, mode=mode), GENERATED)
        target.write_bytes(data)

    def symlink(self, path: str, link_target: str, origin: str) -> None:
        """A symlink; in the scratch tree an absolute target is made relative, so that what
        runs there resolves it inside the tree, never on the host."""
        if link_target.startswith("/"):
            inside = os.path.normpath(link_target).lstrip("/")
        else:
            inside = os.path.normpath(os.path.join(os.path.dirname(path), link_target))
            if inside == ".." or inside.startswith("../"):
                raise RootfsError(
                    f"{origin} ships /{path} as a symlink to {link_target}, outside the root"
                )
        self.add(Entry.symlink(path, link_target), origin)
        link = self.scratch_path(path)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(self.root / inside, link.parent))

    def hard_link(
        self, path: str, existing_path: str, origin: str, mode: int, uid: int, gid: int
    ) -> None:
        source = self.entries.get(existing_path)
        if source is None or source.kind != FILE:
            raise RootfsError(f"{origin}: /{path} is a hard link to /{existing_path}, not a file")
        target = self.scratch_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.add(
            Entry.file(path, self.scratch_path(existing_path), mode=mode, uid=uid, gid=gid), origin
        )
        os.link(self.scratch_path(existing_path), target)

    def is_file(self, path: str) -> bool:
        entry = self.entries.get(path)
        return entry is not None and entry.kind == FILE

    def under(self, directory: str) -> Iterable[Entry]:
        prefix = directory + "/"
        return (entry for path, entry in self.entries.items() if path.startswith(prefix))

    def read(self, path: str) -> bytes:
        entry = self.entries[path]
        if entry.data is not None:
            return entry.data
        return self.scratch_path(path).read_bytes()

    def sorted_entries(self) -> List[Entry]:
        return [self.entries[path] for path in sorted(self.entries, key=lambda p: p.split("/"))]


# Unpacking -------------------------------------------------------------------------------------


def _member_path(name: str, deb: Deb) -> str:
    """A data.tar member name (`./usr/bin/x`) as a path relative to the root (`usr/bin/x`)."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise RootfsError(f"{deb.path.name}: member {name!r} would land outside the root")
    return "/".join(parts)


def _usr_merged(path: str) -> str:
    """Where `path` lives on a merged-/usr system: `lib/x` is `usr/lib/x`."""
    top = path.split("/", 1)[0]
    return f"usr/{path}" if top in USR_MERGED_DIRECTORIES else path


def _unpack(tree: _Tree, package: LockedPackage, path: Path) -> Tuple[str, Stanza]:
    """Add `package`'s files to `tree` and its dpkg info files; return its status stanza and its
    control fields."""
    try:
        deb = open_deb(path)
        if (deb.name, deb.version, deb.architecture) != (
            package.name,
            package.version,
            package.architecture,
        ):
            raise RootfsError(
                f"{path.name} holds {deb.name} {deb.version} ({deb.architecture}), but the lock"
                f" pins {package.name} {package.version} ({package.architecture})"
            )
        listed = ["/."]
        for member, content in deb.data_members():
            original = _member_path(member.name, deb)
            if not original:
                continue
            listed.append("/" + original)
            _add_member(tree, deb, member, content, _usr_merged(original))
    except DebError as error:
        raise RootfsError(f"cannot unpack {package.name}: {error}") from None
    info_name = (
        deb.name if deb.control.get("Multi-Arch") != "same" else f"{deb.name}:{deb.architecture}"
    )
    tree.content(f"{DPKG_INFO}/{info_name}.list", "".join(f"{line}\n" for line in listed).encode())
    for control_file, data in sorted(deb.control_files.items()):
        tree.content(f"{DPKG_INFO}/{info_name}.{control_file}", data)
    return _status_stanza(deb.control, _conffiles(tree, deb)), deb.control


def _add_member(
    tree: _Tree, deb: Deb, member: tarfile.TarInfo, content: Optional[IO[bytes]], path: str
) -> None:
    mode = member.mode & 0o7777 & ~PRIVILEGE_BITS
    if member.isdir():
        tree.directory(path, deb.name, mode, member.uid, member.gid)
    elif member.isreg():
        assert content is not None, "tarfile gives regular members a stream"
        tree.file(path, content, deb.name, mode, member.uid, member.gid)
    elif member.issym():
        tree.symlink(path, member.linkname, deb.name)
    elif member.islnk():
        existing = _usr_merged(_member_path(member.linkname, deb))
        tree.hard_link(path, existing, deb.name, mode, member.uid, member.gid)
    else:
        raise RootfsError(
            f"{deb.name} ships /{path} as a device, FIFO or other special file; a layer can"
            " only hold files, directories and symlinks"
        )


def _conffiles(tree: _Tree, deb: Deb) -> List[str]:
    """`/path md5` lines for the status' Conffiles field, as dpkg records them at install."""
    lines = []
    for line in deb.control_files.get("conffiles", b"").decode("utf-8").splitlines():
        words = line.split()
        if not words:
            continue
        path = _usr_merged(words[-1].lstrip("/"))
        if tree.is_file(path):
            digest = hashlib.md5(tree.read(path), usedforsecurity=False).hexdigest()
            lines.append(f" {words[-1]} {digest}")
    return lines


def _status_stanza(control: Stanza, conffiles: Sequence[str]) -> str:
    fields = dict(control)
    fields["Status"] = "install ok installed"
    if conffiles:
        fields["Conffiles"] = "\n" + "\n".join(conffiles)
    ordered = {name: fields.pop(name) for name in DPKG_STATUS_FIELDS if name in fields}
    ordered.update(fields)
    return format_stanza(ordered)


# What maintainer scripts would have written -----------------------------------------------------


def _add_usr_merge_links(tree: _Tree) -> None:
    for directory in USR_MERGED_DIRECTORIES:
        merged = f"usr/{directory}"
        if directory in ALWAYS_LINKED_DIRECTORIES or merged in tree.entries:
            if merged not in tree.entries:
                tree.directory(merged, GENERATED)
            tree.symlink(directory, merged, GENERATED)


def _add_system_files(tree: _Tree) -> None:
    tree.content("etc/passwd", PASSWD.encode())
    tree.content("etc/group", GROUP.encode())
    tree.content("etc/nsswitch.conf", NSSWITCH.encode())
    tree.directory("root", GENERATED, 0o700)
    tree.directory("home/nonroot", GENERATED, 0o700, NONROOT_UID, NONROOT_UID)
    tree.directory("tmp", GENERATED, 0o1777)
    if UTC_ZONE in tree.entries:
        tree.symlink("etc/localtime", f"/{UTC_ZONE}", GENERATED)
    interpreters = _interpreters(tree)
    if interpreters and "usr/bin/python3" not in tree.entries:
        tree.symlink("usr/bin/python3", interpreters[-1].rsplit("/", 1)[1], GENERATED)


def _interpreters(tree: _Tree) -> List[str]:
    """The `usr/bin/python3.N` executables installed, oldest first."""
    found = [
        (int(match.group(1)), path)
        for path in tree.entries
        for match in [_PYTHON.match(path)]
        if match and tree.is_file(path)
    ]
    return [path for _, path in sorted(found)]


def _add_os_release(tree: _Tree, lock: Lock) -> None:
    """What base-files ships, so scanners know the distribution; base-files' own wins."""
    if "usr/lib/os-release" in tree.entries or "etc/os-release" in tree.entries:
        return
    codename = lock.request.suite
    major = lock.index(codename).version.split(".")[0]
    numbered = f"{major} ({codename})" if major.isdigit() else codename
    lines = [f'PRETTY_NAME="Debian GNU/Linux {numbered}"', 'NAME="Debian GNU/Linux"']
    if major.isdigit():
        lines += [f'VERSION_ID="{major}"', f'VERSION="{numbered}"']
    lines += [
        f"VERSION_CODENAME={codename}",
        "ID=debian",
        'HOME_URL="https://www.debian.org/"',
        'SUPPORT_URL="https://www.debian.org/support"',
        'BUG_REPORT_URL="https://bugs.debian.org/"',
    ]
    tree.content("usr/lib/os-release", "".join(f"{line}\n" for line in lines).encode())
    tree.symlink("etc/os-release", "../usr/lib/os-release", GENERATED)


def _add_ca_bundle(tree: _Tree) -> None:
    certificates = [
        (entry.path, tree.read(entry.path))
        for entry in tree.under(CA_CERTIFICATES)
        if entry.kind == FILE and entry.path.endswith(".crt")
    ]
    if certificates:
        tree.content(CA_BUNDLE, ca_bundle(certificates))


def ca_bundle(certificates: Iterable[Tuple[str, bytes]]) -> bytes:
    """What update-ca-certificates writes for Debian's default selection: every certificate
    (path, PEM bytes) in byte order of its path, each ending in a newline."""
    return b"".join(
        data if data.endswith(b"\n") else data + b"\n" for _, data in sorted(certificates)
    )


def _add_ld_cache(tree: _Tree, target: TargetArchitecture) -> None:
    """With libc-bin (ldconfig) installed, the cache `ldconfig -p` lists and
    `ctypes.util.find_library` reads; the dynamic loader itself does not need one."""
    if not tree.is_file("usr/sbin/ldconfig"):
        return
    tree.content("etc/ld.so.cache", build_ld_cache(tree.root, target.name))


def _add_dpkg_status(tree: _Tree, stanzas: Sequence[str]) -> None:
    tree.content("var/lib/dpkg/status", "".join(f"{stanza}\n" for stanza in stanzas).encode())
    tree.content(f"{DPKG_INFO}/format", b"1\n")


# Bytecode ---------------------------------------------------------------------------------------


def _add_bytecode(tree: _Tree, target: TargetArchitecture, mode: str) -> None:
    """Compile every installed interpreter's standard library (and, with the newest, Debian's
    dist-packages) with that interpreter, and add the .pyc files."""
    interpreters = _interpreters(tree)
    if mode == "no" or not interpreters:
        return
    machine = platform.machine()
    if machine not in target.host_machines or platform.system() != "Linux":
        message = (
            f"not compiling Python bytecode: this host ({platform.system()} {machine}) cannot run"
            f" {target.name} binaries; the image will compile modules at import time (slower cold"
            " starts on a read-only root). Build on a Linux host of the target architecture."
        )
        if mode == "yes":
            raise BytecodeUnavailable(message)
        logger.warning(message)
        return
    for interpreter in interpreters:
        directories = [f"usr/lib/{interpreter.rsplit('/', 1)[1]}"]
        if interpreter == interpreters[-1] and "usr/lib/python3/dist-packages" in tree.entries:
            directories.append("usr/lib/python3/dist-packages")
        _compile(tree, target, interpreter, directories)
        for directory in directories:
            _add_compiled(tree, directory)


def _compile(
    tree: _Tree, target: TargetArchitecture, interpreter: str, directories: Sequence[str]
) -> None:
    library_directory = f"usr/lib/{target.triplet}"
    command = [
        str(tree.scratch_path(f"{library_directory}/{target.dynamic_loader}")),
        # Only the image's libraries: never the host's ld.so.cache.
        "--inhibit-cache",
        "--library-path",
        f"{tree.scratch_path(library_directory)}:{tree.scratch_path('usr/lib')}",
        str(tree.scratch_path(interpreter)),
        # No user site, no stray bytecode of compileall's own imports (its paths would differ).
        "-s",
        "-B",
        *compileall_arguments(
            tree.root, (tree.scratch_path(directory) for directory in directories)
        ),
    ]
    # A fixed hash seed: before 3.11, marshal wrote frozenset constants in hash order. The
    # working directory (on sys.path with -m) is the image root, never the host's.
    environment = {"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        command,
        env=environment,
        cwd=tree.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if result.returncode != 0:
        output = result.stdout.decode("utf-8", "replace").replace(str(tree.root), "")
        raise RootfsError(
            f"compiling the bytecode of /{interpreter} failed (exit {result.returncode}):"
            f" {output[-2000:]}"
        )


def _add_compiled(tree: _Tree, directory: str) -> None:
    for host_directory, subdirectories, files in os.walk(tree.scratch_path(directory)):
        subdirectories.sort()
        if os.path.basename(host_directory) != "__pycache__":
            continue
        relative = os.path.relpath(host_directory, tree.root)
        tree.directory(relative, GENERATED)
        for name in sorted(files):
            if name.endswith(".pyc"):
                tree.add(
                    Entry.file(
                        f"{relative}/{name}", os.path.join(host_directory, name), mode=0o644
                    ),
                    GENERATED,
                )

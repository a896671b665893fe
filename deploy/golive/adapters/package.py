"""golive package: a release artifact any golive deploys, from a directory, byte for byte reproducible.

The same directory, version and name always give the same bytes: members sorted, every mtime fixed,
owner root with empty names, modes normalised (directories 0755, files 0755 when the owner may
execute them, else 0644), gzip header without file name or time. The release manifest
(golive.agent.archive.MANIFEST, docs/design.md) lists every other member with its type, mode,
size and sha256 or link target, so a host can tell a whole release from a cut-short one.

Standard library only: scripts/build-release imports it without golive's dependencies.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from golive.agent import archive as archive_rules
from golive.core.errors import BadInput, Problem

# 2024-01-01T00:00:00Z for every member: fixed for reproducibility, and recent enough that GNU tar
# does not warn about implausibly old time stamps when unpacking.
MEMBER_MTIME = 1704067200
RESERVED = ("config", archive_rules.MANIFEST)  # golive writes config/; the packager writes the manifest


@dataclass(frozen=True)
class Entry:
    path: str
    type: str  # file | dir | symlink
    mode: int = 0o644
    data: bytes = b""
    target: str = ""


@dataclass(frozen=True)
class Packaged:
    path: Path
    sha256: str
    members: int


def tree_entries(source: Path, skip=lambda relative: False) -> list[Entry]:
    """Every file, directory and symlink under source, as members (links are kept as links)."""
    if not source.is_dir():
        raise BadInput(f"package: {source} is not a directory")
    entries = []
    for directory, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(directory) / name
            relative = path.relative_to(source).as_posix()
            try:
                relative.encode("utf-8")
            except UnicodeEncodeError:
                raise BadInput(Problem(os.fsdecode(bytes(path)), "package: the name is not valid UTF-8")) from None
            if skip(relative):
                if name in dirs:
                    dirs.remove(name)
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries.append(Entry(relative, "symlink", 0o777, target=os.readlink(path)))
                if name in dirs:
                    dirs.remove(name)  # never followed
            elif stat.S_ISDIR(info.st_mode):
                entries.append(Entry(relative, "dir", 0o755))
            elif stat.S_ISREG(info.st_mode):
                entries.append(Entry(relative, "file", 0o755 if info.st_mode & stat.S_IXUSR else 0o644,
                                     path.read_bytes()))
            else:
                raise BadInput(Problem(str(path), "package: not a regular file, directory or symlink (a device, "
                                                  "FIFO or socket cannot be part of a release)"))
    return entries


def manifest(entries: list[Entry], name: str, version: str, requires: dict[str, object] | None = None) -> bytes:
    members = []
    for entry in sorted(entries, key=lambda e: e.path):
        item: dict[str, object] = {"path": entry.path, "type": entry.type}
        if entry.type == "symlink":
            item["target"] = entry.target
        else:
            item["mode"] = f"{entry.mode:04o}"
        if entry.type == "file":
            item.update(size=len(entry.data), sha256=hashlib.sha256(entry.data).hexdigest())
        members.append(item)
    # One member a line: readable, and a diff of two releases' manifests is a diff of their files.
    # `requires`: what the release needs from a host (golive.core.requires; docs/artifacts.md)
    head = json.dumps({"format": archive_rules.MANIFEST_FORMAT, "name": name, "version": version,
                       **({"requires": requires} if requires else {})})[:-1]
    lines = ",\n".join(json.dumps(item, sort_keys=True) for item in members)
    return f'{head}, "members": [\n{lines}\n]}}\n'.encode()


def archive_bytes(entries: list[Entry], name: str, version: str, compressed: bool = True,
                  requires: dict[str, object] | None = None) -> bytes:
    """The artifact: the entries and their manifest, sorted, with fixed metadata."""
    for entry in entries:
        if entry.path.split("/", 1)[0] in RESERVED:
            raise BadInput(f"package: {entry.path!r}: the top-level {entry.path.split('/', 1)[0]!r} is reserved "
                           f"(golive writes the rendered config/ and the manifest itself)")
    paths = {e.path for e in entries}
    parents = {str(p) for e in entries for p in Path(e.path).parents if str(p) != "."} - paths
    members = [*entries, *(Entry(p, "dir", 0o755) for p in parents)]
    members.append(Entry(archive_rules.MANIFEST, "file", 0o644, manifest(members, name, version, requires)))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(members, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path)
            info.mode, info.mtime = entry.mode, MEMBER_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.type == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif entry.type == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                archive.addfile(info)
            else:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
    if not compressed:
        return tar.getvalue()
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as stream:
        stream.write(tar.getvalue())
    return out.getvalue()


def check_package(data: bytes, name: str, version: str, limits: tuple[int, int]) -> None:
    """What deploy would refuse is refused here, before anything is written (a symlink leaving the
    release, a name that is not UTF-8, ...)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            checked = archive_rules.check_archive(archive.getmembers(), *limits)
            entries = archive_rules.manifest_of(archive, checked, name, version)
            archive_rules.compare_manifest(entries, checked)
    except archive_rules.ArchiveRefused as error:
        raise BadInput(f"package: {error}; golive would refuse to deploy it") from None


def package(source: Path, version: str, name: str, store: Path, file_name: str,
            limits: tuple[int, int] = (20000, 1 << 30), skip=lambda relative: False,
            requires: dict[str, object] | None = None) -> Packaged:
    """Write STORE/file_name and STORE/file_name.sha256 (sha256sum format; written last, so a .sha256
    always describes a complete artifact)."""
    kind = archive_rules.declared_format(file_name)
    if kind is None:
        raise BadInput(f"package: {file_name!r} must end in .tar.gz, .tgz or .tar")
    entries = tree_entries(source, skip)
    return write_artifact(entries, name, version, store, file_name, limits, requires)


def write_artifact(entries: list[Entry], name: str, version: str, store: Path, file_name: str,
                   limits: tuple[int, int] = (20000, 1 << 30), requires: dict[str, object] | None = None) -> Packaged:
    """The artifact of these entries, checked as deploy checks it, written with its .sha256;
    `requires`: the manifest's declaration of what the release needs from a host, as
    golive.core.requires.Requirements.declared() gives it (validated by the caller)."""
    data = archive_bytes(entries, name, version, compressed=archive_rules.declared_format(file_name) == "gzip",
                         requires=requires)
    check_package(data, name, version, limits)
    digest = hashlib.sha256(data).hexdigest()
    store.mkdir(parents=True, exist_ok=True)
    artifact = store / file_name
    _write_atomically(artifact, data)
    _write_atomically(store / f"{file_name}.sha256", f"{digest}  {file_name}\n".encode())
    return Packaged(artifact, digest, len(entries))


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)

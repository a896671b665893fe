#!/usr/bin/env python3
"""Refuse a tampered, hostile or incomplete release artifact on the controller, before any host is
touched; and, on a host, check an unpacked release against its manifest.

    golive_artifact_gate.py ARTIFACT MAX_MEMBERS MAX_BYTES PRODUCT VERSION [--ignore=PATTERN ...] [RESERVED_NAME ...]
    golive_artifact_gate.py --verify-unpacked DIR PRODUCT VERSION

The first form checks the artifact against the `<hex>  <name>` line of ARTIFACT.sha256, that it is
the format its name declares (.tar.gz/.tgz: gzip, .tar: plain tar) and whole (tar's end-of-archive
blocks, the gzip trailer), then every archive member exactly as golive's host agent does
(golive.agent.archive: absolute paths, '..', links leaving the release, devices/FIFOs,
setuid/setgid, duplicate members, member and size limits), that no top-level member uses a
RESERVED_NAME (golive writes the release's `config/` itself), and the release manifest
(golive-manifest.json: every member listed with its type, mode, size and sha256 or link target,
every listed member present, for PRODUCT VERSION). Prints one JSON document {"sha256", "size",
"members", "top_level", "entries", "ignore_regex"}, or exits 1 with the reason on stderr.
"entries" are the release's files as the host agent unpacks them (golive.workspace.archive_entries:
path -> {type, mode, sha256, size | link}; every directory 0755, a file's mode & 0o755 | 0o600, a
hardlink what it links to), without what golive.yml's drift.ignore PATTERNs name; "ignore_regex"
matches a path exactly when golive.agent.shared.ignored says the patterns ignore it (the role
filters what it finds on a host with it).

The second form runs on the host after unpacking (tasks/unpack.yml): every manifest entry is in DIR
as what the manifest says (content hashed), and DIR holds nothing else (but the empty config/).

The role ships this copy so that it needs nothing but ansible-core on the controller;
tests/integration/test_ansible_engine.py holds it to the host agent's verdicts, and
tests/unit/test_drift_core.py its entries and ignore_regex to golive's. Standard library only,
Python >= 3.6 (it runs on the hosts too).
"""

import hashlib
import json
import os
import re
import stat
import sys
import tarfile

CHUNK = 1 << 20
MANIFEST = "golive-manifest.json"
MANIFEST_FORMAT = 1
MANIFEST_HINT = ("make the artifact with `golive package DIR --version V` (it writes %s with every member and "
                 "its sha256)" % MANIFEST)
ALLOWED_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
SPECIAL_TYPES = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                 tarfile.FIFOTYPE: "a FIFO", tarfile.CONTTYPE: "a contiguous file"}


class Refused(Exception):
    """The artifact must not be deployed; the message says why."""


def expected_digest(artifact):
    """The digest the store's .sha256 file promises for the artifact (sha256sum format)."""
    name = os.path.basename(artifact)
    try:
        with open(artifact + ".sha256", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise Refused(f"checksum file {name}.sha256: {error.strerror}") from None
    for line in lines:
        parts = line.strip().split()
        if not parts:
            continue
        if not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            break
        if len(parts) == 1 or parts[-1].lstrip("*") == name:
            return parts[0].lower()
    raise Refused(f"malformed checksum file {name}.sha256: expected '<64 hex digits>  {name}'")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def inside(path):
    normal = os.path.normpath(path)
    return not (normal == ".." or normal.startswith("../") or os.path.isabs(normal))


def check_members(members, max_members, max_bytes):
    """The host agent's check_archive: the first hostile or oversized member is refused."""
    if len(members) > max_members:
        raise Refused(f"archive has {len(members)} members, over the limit of {max_members}")
    total = 0
    names, links = set(), set()
    for member in members:
        name = member.name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused(f"archive member name {name!r} is not valid UTF-8") from None
        if "\x00" in name or "\\" in name:
            raise Refused(f"archive member name {name!r} has a NUL or backslash")
        if name.startswith("/") or os.path.isabs(name):
            raise Refused(f"archive member {name!r} has an absolute path")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            if member.isdir():
                continue
            raise Refused(f"archive member {name!r} has an empty path")
        if ".." in parts:
            raise Refused(f"archive member {name!r} has a '..' component")
        relative = "/".join(parts)
        if member.type not in ALLOWED_TYPES:
            raise Refused("archive member {!r} is {}".format(name, SPECIAL_TYPES.get(member.type, "a special file")))
        if member.mode & (stat.S_ISUID | stat.S_ISGID):
            raise Refused(f"archive member {name!r} has a setuid/setgid bit")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                through = "/".join(parts[:depth])
                raise Refused(f"archive member {name!r} is written through the symlink {through!r}")
        if member.issym():
            target = member.linkname
            if not target or os.path.isabs(target):
                raise Refused(f"archive symlink {name!r} points to the absolute path {target!r}")
            if not inside(os.path.join(os.path.dirname(relative), target)):
                raise Refused(f"archive symlink {name!r} points outside the release ({target!r})")
            links.add(relative)
        elif member.islnk():
            target = "/".join(p for p in member.linkname.split("/") if p not in ("", "."))
            if os.path.isabs(member.linkname) or not inside(target) or target not in names:
                raise Refused(f"archive hardlink {name!r} points outside the release or to a later member "
                              f"({member.linkname!r})")
        if relative in names and not member.isdir():
            raise Refused(f"archive member {name!r} appears twice")
        if member.isreg():
            total += member.size
            if total > max_bytes:
                raise Refused(f"archive unpacks to more than {max_bytes // (1 << 20)} MB, over the limit")
        names.add(relative)
    return names


def open_declared(artifact):
    """The artifact opened as the format its name declares (golive.agent.archive.open_declared)."""
    name = os.path.basename(artifact)
    kind = "gzip" if name.endswith((".tar.gz", ".tgz")) else "tar" if name.endswith(".tar") else None
    with open(artifact, "rb") as handle:
        magic = handle.read(2)
    if kind == "gzip" and magic != b"\x1f\x8b":
        raise Refused(f"{name} is not gzip-compressed, as its name declares")
    if kind == "tar" and magic == b"\x1f\x8b":
        raise Refused(f"{name} is gzip-compressed, but its name declares a plain .tar")
    if kind is None:
        raise Refused(f"{name}: the name declares no format golive knows (.tar.gz, .tgz, .tar)")
    return tarfile.open(artifact, "r:gz" if kind == "gzip" else "r:")


def check_complete(archive):
    """tar's end-of-archive blocks, and a gzip stream read to its end (golive.agent.archive.check_complete)."""
    fileobj = archive.fileobj
    fileobj.seek(archive.offset)
    end = fileobj.read(1024)
    if len(end) < 1024 or end.strip(b"\0"):
        raise Refused("the archive is cut short: it ends without tar's end-of-archive blocks")
    try:
        while fileobj.read(CHUNK):
            pass
    except EOFError:
        raise Refused("the archive is cut short: its gzip stream ends early") from None


def parse_manifest(data, product, version):
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as error:
        raise Refused(f"{MANIFEST} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise Refused(f'{MANIFEST} has no "format": {MANIFEST_FORMAT}; {MANIFEST_HINT}')
    if manifest.get("name") != product or manifest.get("version") != version:
        raise Refused(f"{MANIFEST} is for {manifest.get('name')} {manifest.get('version')}, not {product} {version}")
    entries = {}
    for entry in manifest.get("members") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or entry.get("type") not in ("file", "dir", "symlink"):
            raise Refused(f"{MANIFEST} has a malformed member entry {entry!r}")
        entries[entry["path"]] = entry
    return entries


def check_manifest(archive, members, product, version):
    """golive.agent.archive.manifest_of + compare_manifest + hash_members, on the controller."""
    relative = {}
    for member in members:
        parts = [p for p in member.name.split("/") if p not in ("", ".")]
        if parts:
            relative[member.name] = "/".join(parts)
    found = [m for m in members if relative.get(m.name) == MANIFEST]
    if not found or not found[0].isreg():
        raise Refused(f"the artifact has no {MANIFEST} at its root: golive cannot tell whether it is the whole "
                      f"release; {MANIFEST_HINT}")
    entries = parse_manifest(archive.extractfile(found[0]).read(), product, version)
    seen = set()
    hashes = {}
    for member in members:
        path = relative.get(member.name)
        if path is None or path == MANIFEST:
            continue
        entry = entries.get(path)
        if entry is None:
            raise Refused(f"archive member {path!r} is not in {MANIFEST}")
        kind = "dir" if member.isdir() else "symlink" if member.issym() else "file"
        if entry["type"] != kind:
            raise Refused(f"archive member {path!r} is a {kind}, {MANIFEST} says {entry['type']}")
        if kind == "symlink" and entry.get("target") != member.linkname:
            raise Refused(f"archive symlink {path!r} points to {member.linkname!r}, {MANIFEST} says "
                          f"{entry.get('target')!r}")
        if member.isreg() and entry.get("size") != member.size:
            raise Refused(f"archive member {path!r} has {member.size} bytes, {MANIFEST} says {entry.get('size')}")
        if kind != "symlink" and entry.get("mode") != "%04o" % (member.mode & 0o7777):
            raise Refused(f"archive member {path!r} has mode {member.mode & 0o7777:04o}, {MANIFEST} says "
                          f"{entry.get('mode')}")
        seen.add(path)
    missing = sorted(set(entries) - seen)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise Refused(f"the archive lacks {len(missing)} member(s) that {MANIFEST} lists ({shown}): it is not the "
                      f"whole release")
    for member in members:  # in archive order: a gzip stream is read once
        path = relative.get(member.name)
        if member.isreg() and path != MANIFEST:
            digest = hashlib.sha256()
            source = archive.extractfile(member)
            for block in iter(lambda: source.read(CHUNK), b""):  # noqa: B023 - used at once
                digest.update(block)
            hashes[path] = digest.hexdigest()
        elif member.islnk():
            hashes[path] = hashes.get("/".join(p for p in member.linkname.split("/") if p not in ("", ".")))
        else:
            continue
        if hashes[path] != entries[path].get("sha256"):
            raise Refused(f"archive member {path!r} has sha256 {str(hashes[path])[:16]}, {MANIFEST} says "
                          f"{str(entries[path].get('sha256'))[:16]}")


def verify_unpacked(directory, product, version):
    """On the host: the unpacked tree is exactly the manifest (the host agent checks the same while
    it writes each file)."""
    try:
        with open(os.path.join(directory, MANIFEST), "rb") as handle:
            entries = parse_manifest(handle.read(), product, version)
    except OSError:
        raise Refused(f"the unpacked release has no {MANIFEST}; {MANIFEST_HINT}") from None
    found = set()
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory)
            if relative in (MANIFEST, "config"):
                continue
            entry = entries.get(relative)
            if entry is None:
                raise Refused(f"the unpacked release has {relative!r}, which {MANIFEST} does not list")
            info = os.lstat(path)
            kind = ("symlink" if stat.S_ISLNK(info.st_mode) else "dir" if stat.S_ISDIR(info.st_mode)
                    else "file" if stat.S_ISREG(info.st_mode) else "special")
            if kind != entry["type"]:
                raise Refused(f"the unpacked {relative!r} is a {kind}, {MANIFEST} says {entry['type']}")
            if kind == "symlink" and os.readlink(path) != entry.get("target"):
                raise Refused(f"the unpacked symlink {relative!r} points to {os.readlink(path)!r}, {MANIFEST} "
                              f"says {entry.get('target')!r}")
            if kind == "file":
                if sha256_file(path) != entry.get("sha256"):
                    raise Refused(f"the unpacked {relative!r} differs from {MANIFEST} (sha256)")
                if bool(info.st_mode & stat.S_IXUSR) != bool(int(entry.get("mode", "0"), 8) & stat.S_IXUSR):
                    raise Refused(f"the unpacked {relative!r} has mode {info.st_mode & 0o7777:04o}, {MANIFEST} says "
                                  f"{entry.get('mode')}")
            found.add(relative)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    missing = sorted(set(entries) - found)
    if missing:
        raise Refused(f"the unpacked release lacks {len(missing)} member(s) that {MANIFEST} lists "
                      f"({', '.join(repr(m) for m in missing[:3])})")
    print(json.dumps({"verified": len(found)}))


def archive_entries(archive, patterns):
    """golive.workspace.archive_entries, without what the patterns ignore."""
    entries = {}
    for member in archive.getmembers():
        parts = [p for p in member.name.split("/") if p not in ("", ".")]
        if not parts:
            continue
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]), {"type": "dir", "mode": "0755"})
        name = "/".join(parts)
        if member.isdir():
            entries[name] = {"type": "dir", "mode": "0755"}
        elif member.issym():
            entries[name] = {"type": "link", "link": member.linkname}
        elif member.islnk():
            target = "/".join(p for p in member.linkname.split("/") if p not in ("", "."))
            entries[name] = dict(entries.get(target) or {"type": "file"})
        else:
            digest = hashlib.sha256()
            handle = archive.extractfile(member)
            for block in iter(lambda: handle.read(CHUNK) if handle is not None else b"", b""):  # noqa: B023
                digest.update(block)
            entries[name] = {"type": "file", "mode": "%04o" % (member.mode & 0o755 | 0o600), "size": member.size,
                             "sha256": digest.hexdigest()}
    pattern = re.compile(ignore_regex(patterns)) if patterns else None
    return {p: e for p, e in entries.items() if pattern is None or not pattern.match(p)}


def ignore_regex(patterns):
    """One regular expression matching a path when it, or a directory above it, matches one of the
    drift.ignore patterns: "/"-separated segments, `*` and `?` within a segment, `**` any number of
    segments (golive.agent.shared.ignored)."""
    alternatives = []
    for pattern in patterns:
        pieces = []
        segments = pattern.split("/")
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if segment == "**":
                pieces.append("(?:[^/]+(?:/[^/]+)*)?" if last else "(?:[^/]+/)*")
                continue
            text = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in segment)
            pieces.append(text if last else text + "/")
        body = "".join(pieces)
        if body.endswith("/(?:[^/]+(?:/[^/]+)*)?"):  # a/**: a itself too
            body = body[:-len("/(?:[^/]+(?:/[^/]+)*)?")] + "(?:/[^/]+)*"
        alternatives.append(body)
    if not alternatives:
        return "(?!)"
    return "^(?:{})(?:/.*)?$".format("|".join(f"(?:{a})" for a in alternatives))


def main(argv):
    if argv[0] == "--verify-unpacked":
        verify_unpacked(argv[1], argv[2], argv[3])
        return
    patterns = [a[len("--ignore="):] for a in argv[5:] if a.startswith("--ignore=")]
    reserved = {a for a in argv[5:] if not a.startswith("--ignore=")}
    artifact, max_members, max_bytes, product, version = argv[0], int(argv[1]), int(argv[2]), argv[3], argv[4]
    name = os.path.basename(artifact)
    expected = expected_digest(artifact)
    actual = sha256_file(artifact)
    if actual != expected:
        raise Refused(f"checksum mismatch: {name} hashes to {actual[:16]}..., {name}.sha256 says {expected[:16]}...")
    try:
        with open_declared(artifact) as archive:
            members = archive.getmembers()
            names = check_members(members, max_members, max_bytes)
            check_complete(archive)
            top_level = sorted({n.split("/", 1)[0] for n in names})
            clashing = sorted(reserved.intersection(top_level))
            if clashing:
                shown = ", ".join(repr(c) for c in clashing)
                raise Refused(f"the artifact contains {shown}, which golive reserves for the rendered config")
            check_manifest(archive, members, product, version)
            entries = archive_entries(archive, patterns)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise Refused(f"not a readable tar archive: {error}") from None
    print(json.dumps({"sha256": actual, "size": os.path.getsize(artifact), "members": len(names),
                      "top_level": top_level, "entries": entries, "ignore_regex": ignore_regex(patterns)}))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Refused as refusal:
        what = sys.argv[2] if sys.argv[1:2] == ["--verify-unpacked"] else sys.argv[1]
        where = "" if sys.argv[1:2] == ["--verify-unpacked"] else ", nothing was sent to any host"
        sys.stderr.write(f"{os.path.basename(what)}: refused{where}: {refusal}\n")
        sys.exit(1)

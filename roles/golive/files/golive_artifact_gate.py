#!/usr/bin/env python3
"""Refuse a tampered or hostile release artifact on the controller, before any host is touched.

    golive_artifact_gate.py ARTIFACT MAX_MEMBERS MAX_BYTES [--ignore=PATTERN ...] [RESERVED_NAME ...]

Checks the artifact against the `<hex>  <name>` line of ARTIFACT.sha256, then every archive member
exactly as golive's host agent does (golive.agent.hostagent.check_archive: absolute paths, '..',
links leaving the release, devices/FIFOs, setuid/setgid, duplicate members, member and size limits),
and that no top-level member uses a RESERVED_NAME (golive writes the release's `config/` itself).
Prints one JSON document {"sha256", "size", "members", "top_level", "entries", "ignore_regex"}, or
exits 1 with the reason on stderr. "entries" are the release's files as the host agent unpacks them
(golive.workspace.archive_entries: path -> {type, mode, sha256, size | link}; every directory 0755,
a file's mode & 0o755 | 0o600, a hardlink what it links to), without what golive.yml's
drift.ignore PATTERNs name; "ignore_regex" matches a path exactly when golive.agent.shared.ignored
says the patterns ignore it (the role filters what it finds on a host with it). The role ships
this copy so that it needs nothing but ansible-core on the controller;
tests/integration/test_ansible_engine.py holds it to the host agent's verdicts, and
tests/unit/test_drift_core.py its entries and ignore_regex to golive's.
Standard library only.
"""

import hashlib
import json
import os
import re
import stat
import sys
import tarfile

CHUNK = 1 << 20
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
            while handle is not None and (block := handle.read(CHUNK)):
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
    patterns = [a[len("--ignore="):] for a in argv[3:] if a.startswith("--ignore=")]
    rest = [a for a in argv[3:] if not a.startswith("--ignore=")]
    artifact, max_members, max_bytes, reserved = argv[0], int(argv[1]), int(argv[2]), set(rest)
    name = os.path.basename(artifact)
    expected = expected_digest(artifact)
    actual = sha256_file(artifact)
    if actual != expected:
        raise Refused(f"checksum mismatch: {name} hashes to {actual[:16]}..., {name}.sha256 says {expected[:16]}...")
    try:
        with tarfile.open(artifact, "r:*") as archive:
            names = check_members(archive.getmembers(), max_members, max_bytes)
            entries = archive_entries(archive, patterns)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise Refused(f"not a readable tar archive: {error}") from None
    top_level = sorted({n.split("/", 1)[0] for n in names})
    clashing = sorted(reserved.intersection(top_level))
    if clashing:
        shown = ", ".join(repr(c) for c in clashing)
        raise Refused(f"the artifact contains {shown}, which golive reserves for the rendered config")
    print(json.dumps({"sha256": actual, "size": os.path.getsize(artifact), "members": len(names),
                      "top_level": top_level, "entries": entries, "ignore_regex": ignore_regex(patterns)}))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Refused as refusal:
        sys.stderr.write(f"{os.path.basename(sys.argv[1])}: refused, nothing was sent to any host: {refusal}\n")
        sys.exit(1)

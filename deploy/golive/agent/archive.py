"""Archive safety, for the host agent and the controller alike: every member of a release archive is
checked before anything is written, and what is written never follows a link.

Runs on the hosts (sent with the host agent, standard library only, Python >= 3.6) and on the
controller, which checks an artifact before any host is contacted.
"""

import os
import stat

if __name__ != "golive_agent":  # on the controller; on a host golive.agent sends shared.py ahead of this
    from golive.agent.shared import CHUNK


# The release manifest (docs/design.md): written by the build (golive package) at the archive root,
# listing every other member with its type, mode, size and sha256 or link target.
MANIFEST = "golive-manifest.json"
MANIFEST_FORMAT = 1
MANIFEST_HINT = ("make the artifact with `golive package DIR --version V` (it writes %s with every member and "
                 "its sha256)" % MANIFEST)
# What an artifact's name declares it is (release_store.artifact's extension).
FORMATS = ((".tar.gz", "gzip"), (".tgz", "gzip"), (".tar", "tar"))


class ArchiveRefused(Exception):
    """The archive holds a member golive will not unpack; the message names it."""


def declared_format(name):
    """'gzip' or 'tar', from the artifact's name; None for a name golive.yml would have refused."""
    for suffix, kind in FORMATS:
        if name.endswith(suffix):
            return kind
    return None


def open_declared(path, name):
    """The artifact opened as the format its name declares; anything else is refused (a .tar.gz that
    is not gzip, a .tar that is compressed). Raises tarfile.TarError/OSError for unreadable files."""
    import tarfile

    kind = declared_format(name)
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if kind == "gzip" and magic != b"\x1f\x8b":
        raise ArchiveRefused("%s is not gzip-compressed, as its name declares" % name)
    if kind == "tar" and magic == b"\x1f\x8b":
        raise ArchiveRefused("%s is gzip-compressed, but its name declares a plain .tar" % name)
    if kind is None:
        raise ArchiveRefused("%s: the name declares no format golive knows (.tar.gz, .tgz, .tar)" % name)
    return tarfile.open(path, "r:gz" if kind == "gzip" else "r:")


def check_complete(archive):
    """After getmembers(): the tar stream must end with its end-of-archive blocks (two zero blocks),
    and a gzip stream must end whole (its trailer and CRC are read). A tar cut at a member boundary
    reads as a shorter valid archive otherwise."""
    fileobj = archive.fileobj
    fileobj.seek(archive.offset)
    end = fileobj.read(1024)
    if len(end) < 1024 or end.strip(b"\0"):
        raise ArchiveRefused("the archive is cut short: it ends without tar's end-of-archive blocks")
    try:
        while fileobj.read(CHUNK):
            pass
    except EOFError:
        raise ArchiveRefused("the archive is cut short: its gzip stream ends early") from None


def parse_manifest(data, product, version):
    """The manifest's entries by path, or ArchiveRefused saying what is wrong with it."""
    import json

    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as error:
        raise ArchiveRefused("%s is not valid JSON (%s)" % (MANIFEST, error)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ArchiveRefused("%s has no \"format\": %d; %s" % (MANIFEST, MANIFEST_FORMAT, MANIFEST_HINT))
    if manifest.get("name") != product or manifest.get("version") != version:
        raise ArchiveRefused("%s is for %s %s, not %s %s" % (MANIFEST, manifest.get("name"), manifest.get("version"),
                                                             product, version))
    entries = {}
    for entry in manifest.get("members") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or entry.get("type") not in ("file", "dir", "symlink"):
            raise ArchiveRefused("%s has a malformed member entry %r" % (MANIFEST, entry))
        entries[entry["path"]] = entry
    return entries


def manifest_bytes(archive, checked):
    """The manifest member of a checked archive, as bytes."""
    found = [member for relative, member in checked if relative == MANIFEST]
    if not found or not found[0].isreg():
        raise ArchiveRefused("the artifact has no %s at its root: golive cannot tell whether it is the whole "
                             "release; %s" % (MANIFEST, MANIFEST_HINT))
    return archive.extractfile(found[0]).read()


def manifest_of(archive, checked, product, version):
    """Read and parse the manifest member of a checked archive."""
    return parse_manifest(manifest_bytes(archive, checked), product, version)


def compare_manifest(entries, checked):
    """Every member is in the manifest as what it is, and every manifest entry is a member (content
    hashes are compared as the data is read: see extract_checked and hash_members)."""
    kinds = {}
    for relative, member in checked:
        if relative == MANIFEST:
            continue
        entry = entries.get(relative)
        if entry is None:
            raise ArchiveRefused("archive member %r is not in %s" % (relative, MANIFEST))
        kind = "dir" if member.isdir() else "symlink" if member.issym() else "file"
        if entry["type"] != kind:
            raise ArchiveRefused("archive member %r is a %s, %s says %s" % (relative, kind, MANIFEST, entry["type"]))
        if kind == "symlink" and entry.get("target") != member.linkname:
            raise ArchiveRefused("archive symlink %r points to %r, %s says %r"
                                 % (relative, member.linkname, MANIFEST, entry.get("target")))
        if member.isreg() and entry.get("size") != member.size:
            raise ArchiveRefused("archive member %r has %d bytes, %s says %s"
                                 % (relative, member.size, MANIFEST, entry.get("size")))
        if kind != "symlink" and entry.get("mode") != "%04o" % (member.mode & 0o7777):
            raise ArchiveRefused("archive member %r has mode %04o, %s says %s"
                                 % (relative, member.mode & 0o7777, MANIFEST, entry.get("mode")))
        kinds[relative] = kind
    missing = sorted(set(entries) - set(kinds))
    if missing:
        raise ArchiveRefused("the archive lacks %d member(s) that %s lists (%s): it is not the whole release"
                             % (len(missing), MANIFEST, ", ".join(repr(m) for m in missing[:3])
                                + (", ..." if len(missing) > 3 else "")))


def content_mismatch(relative, actual, entries):
    expected = (entries.get(relative) or {}).get("sha256")
    if expected != actual:
        return ArchiveRefused("archive member %r has sha256 %s, %s says %s"
                              % (relative, actual[:16], MANIFEST, str(expected)[:16]))
    return None


def _inside(path):
    """True when a normalised relative path stays inside the release directory."""
    normal = os.path.normpath(path)
    return not (normal == ".." or normal.startswith("../") or os.path.isabs(normal))


def normal_link_target(linkname):
    """A hardlink's target, relative to the archive root."""
    return "/".join(p for p in linkname.split("/") if p not in ("", "."))


def check_archive(members, max_members, max_bytes):
    """Raise ArchiveRefused naming the first hostile or oversized member; return the checked list."""
    import tarfile

    allowed_types = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
    if len(members) > max_members:
        raise ArchiveRefused("archive has %d members, over the limit of %d" % (len(members), max_members))
    total = 0
    names = set()
    links = set()
    checked = []
    for member in members:
        name = member.name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ArchiveRefused("archive member name %r is not valid UTF-8" % name) from None
        if "\x00" in name or "\\" in name:
            raise ArchiveRefused("archive member name %r has a NUL or backslash" % name)
        if name.startswith("/") or os.path.isabs(name):
            raise ArchiveRefused("archive member %r has an absolute path" % name)
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            if member.isdir():
                continue
            raise ArchiveRefused("archive member %r has an empty path" % name)
        if ".." in parts:
            raise ArchiveRefused("archive member %r has a '..' component" % name)
        relative = "/".join(parts)
        if member.type not in allowed_types:
            kinds = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                     tarfile.FIFOTYPE: "a FIFO", tarfile.CONTTYPE: "a contiguous file"}
            kind = kinds.get(member.type, "a special file")
            raise ArchiveRefused("archive member %r is %s" % (name, kind))
        if member.mode & (stat.S_ISUID | stat.S_ISGID):
            raise ArchiveRefused("archive member %r has a setuid/setgid bit" % name)
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                raise ArchiveRefused("archive member %r is written through the symlink %r"
                                     % (name, "/".join(parts[:depth])))
        if member.issym():
            target = member.linkname
            if not target or os.path.isabs(target):
                raise ArchiveRefused("archive symlink %r points to the absolute path %r" % (name, target))
            if not _inside(os.path.join(os.path.dirname(relative), target)):
                raise ArchiveRefused("archive symlink %r points outside the release (%r)" % (name, target))
            links.add(relative)
        elif member.islnk():
            target = normal_link_target(member.linkname)
            if os.path.isabs(member.linkname) or not _inside(target) or target not in names:
                raise ArchiveRefused("archive hardlink %r points outside the release or to a later member (%r)"
                                % (name, member.linkname))
        if relative in names and not member.isdir():
            raise ArchiveRefused("archive member %r appears twice" % name)
        if member.isreg():
            total += member.size
            if total > max_bytes:
                raise ArchiveRefused("archive unpacks to more than %d MB, over the limit" % (max_bytes // (1 << 20)))
        names.add(relative)
        checked.append((relative, member))
    return checked


def extract_checked(archive, checked, destination, resume=False, entries=None):
    """Write the checked members; O_EXCL|O_NOFOLLOW so nothing is ever written through a link. With
    the manifest's entries, each file's content is hashed as it is written and must match them."""
    import hashlib

    if not resume:
        os.mkdir(destination, 0o755)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    for relative, member in checked:
        path = os.path.join(destination, relative)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        mode = member.mode & 0o755 | 0o600 if not member.isdir() else 0o755
        if member.isdir():
            if not os.path.isdir(path):
                os.mkdir(path, 0o755)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            os.link(os.path.join(destination, normal_link_target(member.linkname)), path)
        else:
            source = archive.extractfile(member)
            digest = hashlib.sha256()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, mode)
            with os.fdopen(fd, "wb") as handle:
                while True:
                    block = source.read(CHUNK)
                    if not block:
                        break
                    digest.update(block)
                    handle.write(block)
            if entries is not None and relative != MANIFEST:
                refused = content_mismatch(relative, digest.hexdigest(), entries)
                if refused:
                    raise refused
        if member.islnk() and entries is not None:
            refused = content_mismatch(relative, sha256_path(path), entries)
            if refused:
                raise refused


def sha256_path(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_members(archive, checked, entries):
    """The controller's content check: every file's sha256 against the manifest, read in archive
    order (a gzip stream is read once, never rewound per member)."""
    import hashlib

    by_name = {}
    for relative, member in checked:
        if member.isreg() and relative != MANIFEST:
            source = archive.extractfile(member)
            digest = hashlib.sha256()
            while True:
                block = source.read(CHUNK)
                if not block:
                    break
                digest.update(block)
            by_name[relative] = digest.hexdigest()
            refused = content_mismatch(relative, by_name[relative], entries)
            if refused:
                raise refused
        elif member.islnk():
            target = normal_link_target(member.linkname)
            if target in by_name:
                refused = content_mismatch(relative, by_name[target], entries)
                if refused:
                    raise refused

"""Archive safety, for the host agent and the controller alike: every member of a release archive is
checked before anything is written, and what is written never follows a link.

Runs on the hosts (sent with the host agent, standard library only, Python >= 3.6) and on the
controller, which checks an artifact before any host is contacted.
"""

import os
import stat

if __name__ != "golive_agent":  # on the controller; on a host golive.agent sends shared.py ahead of this
    from golive.agent.shared import CHUNK


class ArchiveRefused(Exception):
    """The archive holds a member golive will not unpack; the message names it."""


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


def extract_checked(archive, checked, destination, resume=False):
    """Write the checked members; O_EXCL|O_NOFOLLOW so nothing is ever written through a link."""
    import shutil

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
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, mode)
            with os.fdopen(fd, "wb") as handle:
                shutil.copyfileobj(source, handle, CHUNK)

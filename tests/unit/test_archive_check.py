"""The archive checks the host agent (and the controller) run before writing anything."""

from __future__ import annotations

import io
import tarfile

import pytest

from golive.agent.archive import ArchiveRefused, check_archive, extract_checked

MB = 1 << 20


def archive(*members: tuple[str, bytes | None, dict]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, attrs in members:
            info = tarfile.TarInfo(name)
            for key, value in attrs.items():
                setattr(info, key, value)
            if data is not None and info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r")


def file(name: str, data: bytes = b"x", **attrs) -> tuple[str, bytes, dict]:
    return name, data, attrs


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[str, None, dict]:
    return name, None, {"type": kind, "linkname": target}


HOSTILE = {
    "dot-dot": ([file("../evil")], "'..' component"),
    "nested dot-dot": ([file("app/../../evil")], "'..' component"),
    "absolute path": ([file("/etc/passwd")], "absolute path"),
    "symlink outside": ([link("out", "../../etc")], "points outside"),
    "absolute symlink": ([link("out", "/etc")], "absolute path"),
    "write through symlink": ([link("dir", "sub"), file("dir/evil")], "through the symlink"),
    "hardlink outside": ([link("h", "/etc/shadow", tarfile.LNKTYPE)], "hardlink"),
    "hardlink to missing": ([link("h", "nothing", tarfile.LNKTYPE)], "hardlink"),
    "character device": ([("dev", None, {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})], "character device"),
    "block device": ([("blk", None, {"type": tarfile.BLKTYPE})], "block device"),
    "fifo": ([("pipe", None, {"type": tarfile.FIFOTYPE})], "FIFO"),
    "setuid": ([file("bin/su", mode=0o4755)], "setuid"),
    "setgid": ([file("bin/sg", mode=0o2755)], "setuid/setgid"),
    "duplicate member": ([file("a"), file("a")], "appears twice"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE), ids=sorted(HOSTILE))
def test_hostile_archives_are_refused(case, tmp_path):
    members, message = HOSTILE[case]
    with archive(*members) as tar, pytest.raises(ArchiveRefused, match=message):
        check_archive(tar.getmembers(), 1000, 100 * MB)
    assert list(tmp_path.iterdir()) == []


def test_limits_on_member_count_and_unpacked_size():
    with archive(*(file(f"f{i}") for i in range(11))) as tar, \
            pytest.raises(ArchiveRefused, match="over the limit of 10"):
        check_archive(tar.getmembers(), 10, MB)
    with archive(file("big", b"x" * 2048)) as tar, pytest.raises(ArchiveRefused, match="more than"):
        check_archive(tar.getmembers(), 10, 1024)


def test_names_that_are_not_utf8_are_refused():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("caf\xe9")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r", encoding="utf-8", errors="surrogateescape") as tar, \
            pytest.raises(ArchiveRefused, match="UTF-8"):
        check_archive(tar.getmembers(), 10, MB)


def test_a_normal_release_unpacks_with_links_inside(tmp_path):
    members = [("bin", None, {"type": tarfile.DIRTYPE, "mode": 0o755}), file("bin/run", b"#!/bin/sh\n", mode=0o755),
               link("bin/alias", "run"), link("hard", "bin/run", tarfile.LNKTYPE), file("data/x.txt", b"hello")]
    with archive(*members) as tar:
        checked = check_archive(tar.getmembers(), 100, MB)
        extract_checked(tar, checked, str(tmp_path / "release"))
    root = tmp_path / "release"
    assert (root / "bin" / "run").stat().st_mode & 0o777 == 0o755
    assert (root / "bin" / "alias").resolve() == (root / "bin" / "run").resolve()
    assert (root / "hard").read_bytes() == b"#!/bin/sh\n"
    assert (root / "data" / "x.txt").read_bytes() == b"hello"

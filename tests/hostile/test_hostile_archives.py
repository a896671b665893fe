"""Hostile release archives, on real hosts. Each one is refused before anything is written:

1. by the controller, before any host is contacted (golive deploy exits 2, every host unchanged);
2. by the host agent itself when the controller's check is bypassed (the archive is sent straight
   to the agent through golive's own transport): the unpack step refuses it, no release directory
   appears, nothing outside the release path changes, and the refused archive is not kept in the
   host's artifact cache.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from golive.adapters.package import Entry
from golive.adapters.package import manifest as package_manifest
from golive.agent.archive import MANIFEST
from tests.conftest import REPO, WAIT_BOUND_SECONDS, host_view, run_golive, snapshot_difference, snapshot_hosts

STG = ("mfg-stg-1", 11)
VERSION = "6.6"
MAX_MEMBERS, MAX_UNPACKED_MB = 200, 5  # set in the test workspace's golive.yml

# What a plain release carries, so each hostile archive otherwise looks like the real thing.
PLAIN = [("VERSION", tarfile.REGTYPE, b"6.6\n", {}), ("bin", tarfile.DIRTYPE, None, {"mode": 0o755}),
         ("bin/northwind-ctl", tarfile.REGTYPE, b"#!/bin/sh\n", {"mode": 0o755})]


def member(name, kind=tarfile.REGTYPE, data=b"owned\n", **attrs):
    return (name, kind, data, attrs)


# case -> (hostile members, words the refusal must contain, paths outside the release that must not appear)
HOSTILE = {
    "dot-dot path": ([member("../../escaped")], "'..' component", ["/opt/escaped"]),
    "nested dot-dot path": ([member("assets/../../../etc/northwind/escaped")], "'..' component",
                            ["/etc/northwind/escaped"]),
    "absolute path": ([member("/etc/northwind/absolute")], "absolute path", ["/etc/northwind/absolute"]),
    "symlink to outside, then a file through it": (
        [member("etc-link", tarfile.SYMTYPE, None, linkname="../../../etc/northwind"),
         member("etc-link/through-symlink")],
        "points outside", ["/etc/northwind/through-symlink"]),
    "absolute symlink, then a file through it": (
        [member("etc-link", tarfile.SYMTYPE, None, linkname="/etc/northwind"),
         member("etc-link/through-symlink")],
        "absolute path", ["/etc/northwind/through-symlink"]),
    "inside symlink, then a file through it": (
        [member("bin-link", tarfile.SYMTYPE, None, linkname="bin"), member("bin-link/through-symlink")],
        "through the symlink", []),
    "hardlink to outside": ([member("passwd", tarfile.LNKTYPE, None, linkname="/etc/passwd")], "hardlink", []),
    "relative hardlink to outside": (
        [member("hosts", tarfile.LNKTYPE, None, linkname="../../../etc/hosts")], "hardlink", []),
    "character device": ([member("dev/mem", tarfile.CHRTYPE, None, devmajor=1, devminor=1)],
                         "character device", []),
    "block device": ([member("dev/sda", tarfile.BLKTYPE, None, devmajor=8, devminor=0)], "block device", []),
    "FIFO": ([member("run/pipe", tarfile.FIFOTYPE, None)], "FIFO", []),
    "setuid binary": ([member("bin/rootshell", data=b"#!/bin/sh\nexec sh\n", mode=0o4755)], "setuid", []),
    "setgid binary": ([member("bin/groupshell", data=b"#!/bin/sh\n", mode=0o2755)], "setuid/setgid", []),
    "member count far over max_members": (
        [member(f"assets/many/{index:05d}", data=b"") for index in range(MAX_MEMBERS * 10)],
        f"over the limit of {MAX_MEMBERS}", []),
    "unpacked size far over max_unpacked_mb": (
        [member("assets/zeros.bin", data=bytes(MAX_UNPACKED_MB * 20 << 20))], "over the limit", []),
    "name that is not valid UTF-8": ([member("assets/caf\udce9.txt")], "not valid UTF-8", []),
}
CASES = sorted(HOSTILE)

# -- archives that are not what they say, or not the whole release --------------------------------
# The release such an archive should be: the plain members above, as golive package lists them.
RELEASE = [Entry("VERSION", "file", 0o644, b"6.6\n"), Entry("bin", "dir", 0o755),
           Entry("bin/northwind-ctl", "file", 0o755, b"#!/bin/sh\n"),
           *(Entry(f"assets/a{index:02d}.txt", "file", 0o644, b"asset %d\n" % index) for index in range(28))]


def replaced(entries, path, **changes):
    return [dataclasses.replace(e, **changes) if e.path == path else e for e in entries]


def tar_of(entries, manifest_bytes: bytes | None) -> bytes:
    """A plain tar of the entries (and a manifest member), as golive package lays it out."""
    buffer = io.BytesIO()
    members = [*entries, *([Entry(MANIFEST, "file", 0o644, manifest_bytes)] if manifest_bytes is not None else [])]
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(members, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.mode
            if entry.type == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif entry.type == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                archive.addfile(info)
            else:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def cut_at_member(data: bytes, keep: int) -> bytes:
    """The tar up to the end of its `keep`th member: what a copy that stopped early leaves."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        members = archive.getmembers()
    end = members[keep].offset  # where the next member's header starts
    return data[:end]


def manifest_of(entries, name="northwind", version=VERSION) -> bytes:
    return package_manifest(entries, name, version)


WITH_LINK = [*RELEASE, Entry("bin/ctl", "symlink", 0o777, target="northwind-ctl")]
# case -> (artifact bytes, the file name's extension, words the refusal must contain)
INCOMPLETE = {
    "no manifest": (gzip.compress(tar_of(RELEASE, None)), ".tar.gz", "no golive-manifest.json"),
    "tar cut at a member boundary, gzip-compressed": (
        gzip.compress(cut_at_member(tar_of(RELEASE, manifest_of(RELEASE)), 13)), ".tar.gz", "cut short"),
    "gzip stream cut short": (gzip.compress(tar_of(RELEASE, manifest_of(RELEASE)))[:-8], ".tar.gz", "cut short"),
    "named .tar.gz but not gzip": (tar_of(RELEASE, manifest_of(RELEASE)), ".tar.gz", "not gzip-compressed"),
    "a listed member missing": (gzip.compress(tar_of(RELEASE[:-1], manifest_of(RELEASE))), ".tar.gz",
                                "lacks 1 member"),
    "a member the manifest does not list": (
        gzip.compress(tar_of([*RELEASE, Entry("bin/extra", "file", 0o755, b"#!/bin/sh\n")], manifest_of(RELEASE))),
        ".tar.gz", "not in golive-manifest.json"),
    "content differs from the manifest": (
        gzip.compress(tar_of(replaced(RELEASE, "VERSION", data=b"6.7\n"), manifest_of(RELEASE))), ".tar.gz",
        "sha256"),
    "size differs from the manifest": (
        gzip.compress(tar_of(replaced(RELEASE, "VERSION", data=b"6.66\n"), manifest_of(RELEASE))), ".tar.gz",
        "bytes, golive-manifest.json says"),
    "mode differs from the manifest": (
        gzip.compress(tar_of(replaced(RELEASE, "VERSION", mode=0o755), manifest_of(RELEASE))), ".tar.gz",
        "has mode 0755"),
    "type differs from the manifest": (
        gzip.compress(tar_of(replaced(RELEASE, "bin/northwind-ctl", type="symlink", target="../VERSION"),
                             manifest_of(RELEASE))), ".tar.gz", "is a symlink"),
    "symlink target differs from the manifest": (
        gzip.compress(tar_of(replaced(WITH_LINK, "bin/ctl", target="../VERSION"), manifest_of(WITH_LINK))),
        ".tar.gz", "points to '../VERSION'"),
    "manifest of another version": (gzip.compress(tar_of(RELEASE, manifest_of(RELEASE, version="6.5"))), ".tar.gz",
                                    "is for northwind 6.5"),
    "manifest of another product": (gzip.compress(tar_of(RELEASE, manifest_of(RELEASE, name="southwind"))),
                                    ".tar.gz", "is for southwind"),
    "manifest that is not JSON": (gzip.compress(tar_of(RELEASE, b"{not json")), ".tar.gz", "not valid JSON"),
    "manifest without its format": (gzip.compress(tar_of(RELEASE, b'{"name": "northwind", "version": "6.6"}')),
                                    ".tar.gz", 'no "format": 1'),
}
INCOMPLETE_CASES = sorted(INCOMPLETE)


def write_artifact(store: Path, members) -> Path:
    """northwind-6.6.tar.gz (GNU format, so raw non-UTF-8 bytes survive) and its .sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as archive:
        for name, kind, data, attrs in [*PLAIN, *members]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o644
            for key, value in attrs.items():
                setattr(info, key, value)
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    artifact = store / f"northwind-{VERSION}.tar.gz"
    artifact.write_bytes(buffer.getvalue())
    (store / f"{artifact.name}.sha256").write_text(f"{hashlib.sha256(buffer.getvalue()).hexdigest()}  "
                                                   f"{artifact.name}\n")
    return artifact


@pytest.fixture(scope="module")
def staged(tmp_path_factory, test_hosts, release_store):
    """One workspace with strict limits and staging on 1.0, shared by every case of this module
    (each case compares snapshots taken around its own run)."""
    from tests.conftest import copy_workspace

    test_hosts.reset()
    ws = copy_workspace(tmp_path_factory.mktemp("hostile") / "ws", test_hosts, release_store)
    app = ws / "golive.yml"
    app.write_text(app.read_text().replace("max_members: 20000", f"max_members: {MAX_MEMBERS}")
                   .replace("max_unpacked_mb: 1024", f"max_unpacked_mb: {MAX_UNPACKED_MB}"))
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    return ws


@pytest.mark.parametrize("case", CASES)
def test_the_controller_refuses_before_any_host_is_contacted(case, staged, test_hosts):
    members, refusal, outside = HOSTILE[case]
    write_artifact(staged / "build" / "releases", members)
    before = snapshot_hosts(test_hosts)
    result = run_golive(staged, "deploy", "manufacturer", "staging", "--release", VERSION)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    assert refusal in result.stderr and "nothing was sent to any host" in result.stderr, result.stderr
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    for path in outside:
        assert not os.path.lexists(host_view(test_hosts, STG[1], path))


@pytest.mark.parametrize("case", CASES)
def test_the_host_refuses_when_the_controller_check_is_bypassed(case, staged, test_hosts):
    members, refusal, outside = HOSTILE[case]
    write_artifact(staged / "build" / "releases", members)
    before = snapshot_hosts(test_hosts)
    answer = send_straight_to_agent(staged)
    assert answer["failed_step"] == "unpack" and refusal in answer["error"], answer
    # The upload passed through the artifact cache and the refused archive was removed from it:
    # only the cache directory's time stamp shows that anything happened.
    changes = snapshot_difference(before, snapshot_hosts(test_hosts))
    assert changes in ([], [f"{test_hosts.hosts[0].name}: changed /opt/northwind/.golive/artifacts"]), changes
    for path in outside:
        assert not os.path.lexists(host_view(test_hosts, STG[1], path))


BYPASS = textwrap.dedent("""
    # Upload and unpack an artifact through golive's own transport and agent, skipping the
    # controller's archive check: what a compromised or buggy controller could send.
    import json, sys
    from golive.adapters.concurrency import patch_for_parallel_ssh
    patch_for_parallel_ssh()
    from golive.adapters.remote import call_agent
    from golive.adapters.transport import Fleet
    from golive.flows import steps
    from golive.flows.session import chunks
    from golive.workspace import Workspace

    ws = Workspace(sys.argv[1])
    artifact = ws.artifact(sys.argv[2])  # checksum verified; the archive itself is NOT checked
    host = ws.hosts("manufacturer", "staging")[0]
    fleet = Fleet([host])
    connected = fleet.connect()[host.name]
    unpack = {"op": "unpack", "release": sys.argv[2] + "-hostile", "artifact": artifact.name,
              "sha256": artifact.sha256, "max_members": ws.app.store.max_members,
              "max_bytes": ws.app.store.max_unpacked_bytes, "product": ws.app.name, "version": sys.argv[2]}
    request = {"root": ws.app.root, "token": "bypass", "steps": [steps.upload(artifact), unpack]}
    answer = call_agent(connected, request, chunks(artifact.path))
    fleet.close()
    print(json.dumps({"ok": answer.ok, "failed_step": answer.failed_step, "error": answer.error}))
""")


def write_raw(store: Path, data: bytes, extension: str) -> None:
    artifact = store / f"northwind-{VERSION}{extension}"
    artifact.write_bytes(data)
    (store / f"{artifact.name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {artifact.name}\n")


def host_changes_after_refusal(before, after, test_hosts) -> list[str]:
    """What a refused unpack may leave: the artifact cache's and the releases folder's time stamps (a
    .partial made and removed again when content was found to differ while writing), nothing else."""
    allowed = {f"{test_hosts.hosts[0].name}: changed {ROOT}" for ROOT in
               ("/opt/northwind/.golive/artifacts", "/opt/northwind/releases")}
    return [change for change in snapshot_difference(before, after) if change not in allowed]


@pytest.mark.parametrize("case", INCOMPLETE_CASES)
def test_an_incomplete_or_mislabelled_archive_is_refused_by_the_controller(case, staged, test_hosts):
    data, extension, refusal = INCOMPLETE[case]
    write_raw(staged / "build" / "releases", data, extension)
    before = snapshot_hosts(test_hosts)
    result = run_golive(staged, "deploy", "manufacturer", "staging", "--release", VERSION)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    assert refusal in result.stderr and "nothing was sent to any host" in result.stderr, result.stderr
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []


@pytest.mark.parametrize("case", INCOMPLETE_CASES)
def test_an_incomplete_or_mislabelled_archive_is_refused_by_the_host(case, staged, test_hosts):
    data, extension, refusal = INCOMPLETE[case]
    write_raw(staged / "build" / "releases", data, extension)
    before = snapshot_hosts(test_hosts)
    answer = send_straight_to_agent(staged)
    assert answer["failed_step"] == "unpack" and refusal in answer["error"], answer
    assert host_changes_after_refusal(before, snapshot_hosts(test_hosts), test_hosts) == []
    assert not os.path.lexists(host_view(test_hosts, STG[1], f"/opt/northwind/releases/{VERSION}-hostile"))


def test_a_plain_tar_cut_at_a_member_boundary_never_goes_live(tmp_path, test_hosts, release_store):
    """The issue's case: a `.tar` store, an archive cut after 13 of its 31 members, a matching .sha256,
    a host with nothing on it yet. Refused by the controller, and by the host."""
    from tests.conftest import copy_workspace

    test_hosts.reset()
    ws = copy_workspace(tmp_path / "ws", test_hosts, release_store)
    app = ws / "golive.yml"
    app.write_text(app.read_text().replace('artifact: "{app}-{version}.tar.gz"', 'artifact: "{app}-{version}.tar"'))
    whole = tar_of(RELEASE, manifest_of(RELEASE))
    with tarfile.open(fileobj=io.BytesIO(whole)) as archive:
        assert len(archive.getmembers()) == 32  # 31 and the manifest
    write_raw(ws / "build" / "releases", cut_at_member(whole, 13), ".tar")
    before = snapshot_hosts(test_hosts)
    result = run_golive(ws, "deploy", "manufacturer", "staging", "--release", VERSION)
    assert result.returncode == 2 and "cut short" in result.stderr, result.output
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    answer = send_straight_to_agent(ws)
    assert answer["failed_step"] == "unpack" and "cut short" in answer["error"], answer
    assert not os.path.lexists(host_view(test_hosts, STG[1], "/opt/northwind/current"))


def send_straight_to_agent(ws: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", BYPASS, str(ws), VERSION], capture_output=True, text=True,
                          timeout=WAIT_BOUND_SECONDS, env={**os.environ, "PYTHONPATH": str(REPO / "deploy")})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)

"""Hostile release archives, on real hosts. Each one is refused before anything is written:

1. by the controller, before any host is contacted (golive deploy exits 2, every host unchanged);
2. by the host agent itself when the controller's check is bypassed (the archive is sent straight
   to the agent through golive's own transport): the unpack step refuses it, no release directory
   appears, nothing outside the release path changes, and the refused archive is not kept in the
   host's artifact cache.
"""

from __future__ import annotations

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

from tests.conftest import REPO, host_view, run_golive, snapshot_difference, snapshot_hosts

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
              "max_bytes": ws.app.store.max_unpacked_bytes}
    request = {"root": ws.app.root, "token": "bypass", "steps": [steps.upload(artifact), unpack]}
    answer = call_agent(connected, request, chunks(artifact.path))
    fleet.close()
    print(json.dumps({"ok": answer.ok, "failed_step": answer.failed_step, "error": answer.error}))
""")


def send_straight_to_agent(ws: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", BYPASS, str(ws), VERSION], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO / "deploy")})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)

"""One production host goes wrong during a deploy; the other proceeds.

For each fault: exit 3, the report names the faulty host and the cause, and the faulty host is
left on a complete release that its service serves whole (code and config of one release)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    WAIT_BOUND_SECONDS,
    build_release,
    host_view,
    live_release_problems,
    live_version,
    run_golive,
    set_hook,
    snapshot_difference,
    snapshot_hosts,
    wait_until,
)

HEALTHY, FAULTY = ("mfg-prod-1", 12), ("mfg-prod-2", 13)
FAULTY_HOST = "h13"
OVERRIDE = ("--override-promotion", "host fault test")
# A health command that hangs this long: a deploy that ends in under half of it did not wait for
# the hang (each attempt was cut at its timeout), however slow the machine is.
HANG_SECONDS = 3600  # a health check that never answers: only a bounded deploy finishes
GO_ON, HOOK_DONE = "hook-go-on", "hook-done"  # in shared/: the test lets the hook end; the hook ended


def deploy(ws, version: str, *extra: str, check: int | None = None):
    return run_golive(ws, "deploy", "manufacturer", "production", "--release", version, *OVERRIDE, "--json",
                      *extra, check=check)


def reports(result) -> dict[str, dict]:
    return {h["host"]: h for h in result.json()["hosts"]}


def assert_faulty_host_reported(result, version_left: str, *causes: str) -> dict:
    """Exit 3; the healthy host deployed; the faulty one named with its cause and left whole."""
    assert result.returncode == 3, result.output
    assert "Traceback" not in result.output
    by_host = reports(result)
    assert by_host[HEALTHY[0]]["status"] == "deployed", by_host
    faulty = by_host[FAULTY[0]]
    assert faulty["status"] != "deployed", faulty
    for cause in causes:
        assert cause in faulty["error"], faulty
    return faulty


def assert_whole(test_hosts, version: str) -> None:
    for name, suffix in (HEALTHY, FAULTY):
        assert live_release_problems(test_hosts, suffix) == [], name
    assert live_version(test_hosts, FAULTY[1]) == version


@pytest.fixture
def production(workspace):
    """Production on 1.0; release 2.0 (1.5 MB) in the store."""
    build_release(workspace / "build" / "releases", "2.0", "--files", "40", "--size-kb", "1500")
    return workspace


def tiny_app_root(test_hosts, size: str) -> None:
    """The faulty host's application root becomes a tmpfs of `size`, inside its own namespace."""
    test_hosts.exec(FAULTY_HOST, ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", "/opt/northwind"],
                    check=True)


@pytest.fixture
def unmount_after(test_hosts):
    yield
    # the service started from the tmpfs must stop before the tmpfs can go
    test_hosts.reset([FAULTY_HOST])
    test_hosts.exec(FAULTY_HOST, ["umount", "-l", "/opt/northwind"])


def deploy_losing_the_faulty_host(production, test_hosts, *options: str) -> dict[str, dict]:
    """Deploy 1.1 over 1.0 and stop the faulty host's sshd (every sshd process of the host, its open
    session included) while its before_cutover hook runs; the deploy's report per host (exit 3)."""
    # a before_cutover hook that says when it runs and waits until the test lets it go on (GO_ON):
    # sshd dies right then, however loaded the machine is; it says when it ends (HOOK_DONE)
    set_hook(production, "before_cutover",
             f"touch $GOLIVE_APP_ROOT/shared/cutover-next; i=0; while [ ! -e $GOLIVE_APP_ROOT/shared/{GO_ON} ] "
             f"&& [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done; touch $GOLIVE_APP_ROOT/shared/{HOOK_DONE}")
    for _, suffix in (HEALTHY, FAULTY):
        shared = host_view(test_hosts, suffix, "/opt/northwind/shared")
        shared.mkdir(parents=True, exist_ok=True)
        (shared / GO_ON).touch()
    deploy(production, "1.0", check=0)
    marker = host_view(test_hosts, FAULTY[1], "/opt/northwind/shared/cutover-next")
    for name in ("cutover-next", GO_ON, HOOK_DONE):
        host_view(test_hosts, FAULTY[1], f"/opt/northwind/shared/{name}").unlink()
    env = {**os.environ, "PYTHONPATH": str(REPO / "deploy")}
    running = subprocess.Popen([sys.executable, "-m", "golive", "deploy", "manufacturer", "production",
                                "--release", "1.1", *OVERRIDE, "--json", *options, "--workspace", str(production)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # the event: the hook starts on the faulty host, or the deploy ends without getting there
        wait_until(lambda: marker.exists() or running.poll() is not None, "the deploy reaching the hook", pause=0.02)
        if not marker.exists():
            stdout, stderr = running.communicate()
            raise AssertionError(f"the deploy ended before the before_cutover hook ran:\n{stdout}{stderr}")
        test_hosts.stop(FAULTY_HOST)
        host_view(test_hosts, FAULTY[1], f"/opt/northwind/shared/{GO_ON}").touch()
        stdout, stderr = running.communicate(timeout=WAIT_BOUND_SECONDS)
    finally:
        if running.poll() is None:
            running.kill()
        host_view(test_hosts, FAULTY[1], f"/opt/northwind/shared/{GO_ON}").touch()
        test_hosts.start(FAULTY_HOST)
    assert running.returncode == 3, stdout + stderr
    assert "Traceback" not in stdout + stderr
    by_host = {h["host"]: h for h in json.loads(stdout)["hosts"]}
    assert by_host[HEALTHY[0]]["status"] == "deployed"
    return by_host


def test_sshd_stopped_mid_deploy(production, test_hosts):
    faulty = deploy_losing_the_faulty_host(production, test_hosts)[FAULTY[0]]
    assert faulty["status"] == "unknown" and "connection lost" in faulty["error"], faulty
    # the agent finished the batch on its own once its controller lost it: wait until it has
    lock = host_view(test_hosts, FAULTY[1], "/opt/northwind/.golive/lock")
    wait_until(lambda: not lock.exists(), "the agent finishing the batch and releasing the lock")
    for name, suffix in (HEALTHY, FAULTY):
        assert live_release_problems(test_hosts, suffix) == [], name
    status = run_golive(production, "status", "manufacturer", "production", "--json", check=0).json()
    assert {r["host"]: r["version"] for r in status["hosts"]} == {HEALTHY[0]: "1.1", FAULTY[0]: "1.1"}


def test_app_root_fills_up_during_upload(production, test_hosts, unmount_after):
    tiny_app_root(test_hosts, "4m")  # 1.0 takes ~2.5 MB (its driver, vendor/, included)
    deploy(production, "1.0", check=0)
    result = deploy(production, "2.0")  # ~2.1 MB: does not fit beside 1.0
    faulty = assert_faulty_host_reported(result, "1.0", "upload", "No space left on device")
    assert faulty["live_release"].startswith("1.0-")
    assert_whole(test_hosts, "1.0")
    artifacts = host_view(test_hosts, FAULTY[1], "/opt/northwind/.golive/artifacts")
    assert not [p.name for p in artifacts.iterdir() if p.name.endswith(".part")], "a partial upload was left"


def test_app_root_fills_up_during_unpack(production, test_hosts, unmount_after):
    compressible_release(production / "build" / "releases", "3.0", unpacked_mb=3)
    tiny_app_root(test_hosts, "4m")  # 1.0 takes ~2.5 MB (its driver, vendor/, included)
    deploy(production, "1.0", check=0)
    result = deploy(production, "3.0")  # a few KB to upload, 3 MB once unpacked
    faulty = assert_faulty_host_reported(result, "1.0", "unpack", "No space left on device")
    assert faulty["live_release"].startswith("1.0-")
    assert_whole(test_hosts, "1.0")
    releases = host_view(test_hosts, FAULTY[1], "/opt/northwind/releases")
    assert not [p.name for p in releases.iterdir() if ".partial" in p.name], "a partial release was left"


def test_permission_denied_while_unpacking(production, test_hosts):
    deploy(production, "1.0", check=0)
    releases = host_view(test_hosts, FAULTY[1], "/opt/northwind/releases")
    subprocess.run(["chattr", "+i", str(releases)], check=True)  # even root may not add an entry
    try:
        result = deploy(production, "1.1")
    finally:
        subprocess.run(["chattr", "-i", str(releases)], check=True)
    faulty = assert_faulty_host_reported(result, "1.0", "unpack", "Operation not permitted")
    assert faulty["live_release"].startswith("1.0-")
    assert_whole(test_hosts, "1.0")


def test_changed_host_key_is_refused_and_nothing_is_sent(production, test_hosts):
    deploy(production, "1.0", check=0)
    record = next(h for h in json.loads((test_hosts.dir / "hosts.json").read_text())["hosts"]
                  if h["name"] == FAULTY_HOST)
    key = Path(record["host_key"])
    saved = {p: p.read_bytes() for p in (key, Path(f"{key}.pub"))}
    before = snapshot_hosts(test_hosts)
    test_hosts.rekey(FAULTY_HOST)
    try:
        result = deploy(production, "1.1")
        after = snapshot_hosts(test_hosts)
    finally:
        test_hosts.stop(FAULTY_HOST)
        for path, data in saved.items():
            path.write_bytes(data)
        test_hosts.start(FAULTY_HOST)
    faulty = assert_faulty_host_reported(result, "1.0", "REFUSED", "host key does not match",
                                         f"{test_hosts.net}.{FAULTY[1]}")
    assert faulty["status"] == "unreachable"
    assert [c for c in snapshot_difference(before, after) if c.startswith(FAULTY_HOST)] == []
    assert_whole(test_hosts, "1.0")


def hanging_health_check(app_definition: str) -> str:
    """golive.yml with a health command that hangs on the faulty host (the others check the usual
    URL), 2 attempts of 1 s; `{% if golive_host != 'mfg-prod-2' %}` marks where the hang is chosen."""
    text = app_definition.replace(
        'url: "http://{{ listen_address }}:{{ http_port }}/health"',
        "url: \"{% if golive_host != 'mfg-prod-2' %}http://{{ listen_address }}:{{ http_port }}/health{% endif %}\"\n"
        f'  command: "sleep {HANG_SECONDS}"')
    return text.replace("timeout: 2          # seconds per attempt", "timeout: 1").replace("retries: 25", "retries: 2")


def test_a_hanging_health_check_is_bounded_by_its_timeout(production, test_hosts):
    app = production / "golive.yml"
    text = app.read_text()
    # the faulty host checks health with a command that hangs; the others with the usual URL
    text = hanging_health_check(text)
    app.write_text(text)
    deploy(production, "1.0", "--host", HEALTHY[0], check=0)
    # the faulty host gets 1.0 with a health check that answers, then 1.1 with the one that hangs
    good = text.replace("{% if golive_host != 'mfg-prod-2' %}", "{% if true %}")
    app.write_text(good)
    deploy(production, "1.0", "--host", FAULTY[0], check=0)
    app.write_text(text)
    started = time.monotonic()
    result = deploy(production, "1.1")
    took = time.monotonic() - started
    faulty = assert_faulty_host_reported(result, "1.0", "verify", "timed out after 1")
    assert faulty["status"] == "rolled_back" and faulty["live_release"].startswith("1.0-")
    assert took < HANG_SECONDS / 2, f"a hanging health check held the deploy for {took:.0f} s"
    assert_whole(test_hosts, "1.0")


def compressible_release(store: Path, version: str, unpacked_mb: int) -> None:
    """A valid release (made by golive's own packager, manifest and all) whose archive is tiny but
    unpacks to unpacked_mb of zeros: 1.0's files, its VERSION changed, plus a file of zeros."""
    from golive.adapters.package import Entry, write_artifact

    entries = []
    with tarfile.open(store / "northwind-1.0.tar.gz", "r:gz") as original:
        for member in original.getmembers():
            if member.name in ("golive-manifest.json", "."):
                continue
            if member.isdir():
                entries.append(Entry(member.name, "dir", member.mode & 0o777))
            elif member.issym():
                entries.append(Entry(member.name, "symlink", target=member.linkname))
            else:
                data = f"{version}\n".encode() if member.name == "VERSION" else original.extractfile(member).read()
                entries.append(Entry(member.name, "file", member.mode & 0o777, data))
    entries.append(Entry("assets/zeros.bin", "file", 0o644, bytes(unpacked_mb << 20)))
    write_artifact(sorted(entries, key=lambda e: e.path), "northwind", version, store,
                   f"northwind-{version}.tar.gz")


# -- the Ansible engine ----------------------------------------------------------------------------

def test_ansible_sshd_stopped_mid_deploy(production, test_hosts):
    """--serial 1: the faulty host (alone in the second batch) loses sshd during its before_cutover
    hook. ansible-playbook reports it unreachable and, the whole batch being lost, stops before its
    last play: golive gives the environment lock (the healthy leader's) back itself. The faulty host
    keeps its complete old release; its own lock outlives the run, reported STALE."""
    faulty = deploy_losing_the_faulty_host(production, test_hosts, "--engine", "ansible", "--serial", "1")[FAULTY[0]]
    assert faulty["status"] == "unreachable" and f"{test_hosts.net}.{FAULTY[1]}" in faulty["error"], faulty
    assert not host_view(test_hosts, HEALTHY[1], "/opt/northwind/.golive/lock").exists(), "environment lock kept"
    done = host_view(test_hosts, FAULTY[1], f"/opt/northwind/shared/{HOOK_DONE}")
    wait_until(done.exists, "the hook the host was running when it dropped off finishing")
    assert_whole(test_hosts, "1.0")
    status = run_golive(production, "status", "manufacturer", "production", "--json", check=0).json()
    row = next(r for r in status["hosts"] if r["host"] == FAULTY[0])
    assert row["lock"] == "stale", row
    run_golive(production, "unlock", "manufacturer", "production", "--reason", "sshd died", check=0)
    again = deploy(production, "1.1", check=0)
    assert {h["status"] for h in again.json()["hosts"]} == {"deployed", "unchanged"}
    for _, suffix in (HEALTHY, FAULTY):
        assert live_release_problems(test_hosts, suffix) == []


def test_ansible_unreachable_leader_the_next_host_leads(production, test_hosts):
    """sshd of the first host (the would-be leader) is down from the start: reported unreachable,
    exit 3; the next host leads, deploys, and no lock is left behind."""
    deploy(production, "1.0", check=0)
    test_hosts.stop("h12")
    try:
        result = deploy(production, "1.1", "--engine", "ansible")
    finally:
        test_hosts.start("h12")
    assert result.returncode == 3 and "Traceback" not in result.output, result.output
    by_host = reports(result)
    assert by_host[HEALTHY[0]]["status"] == "unreachable" and "Connection refused" in by_host[HEALTHY[0]]["error"]
    assert by_host[FAULTY[0]]["status"] == "deployed", by_host
    assert live_version(test_hosts, HEALTHY[1]) == "1.0" and live_version(test_hosts, FAULTY[1]) == "1.1"
    for _, suffix in (HEALTHY, FAULTY):
        assert live_release_problems(test_hosts, suffix) == []
        assert not host_view(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()


def test_ansible_failing_health_check_is_bounded_and_rolled_back(production, test_hosts):
    """The faulty host's health check hangs: each attempt is cut at its timeout, the host is rolled
    back and reported, exit 3; the other host deploys."""
    app = production / "golive.yml"
    text = app.read_text()
    text = hanging_health_check(text)
    app.write_text(text.replace("{% if golive_host != 'mfg-prod-2' %}", "{% if true %}"))
    deploy(production, "1.0", check=0)
    app.write_text(text)
    started = time.monotonic()
    result = deploy(production, "1.1", "--engine", "ansible")
    took = time.monotonic() - started
    faulty = assert_faulty_host_reported(result, "1.0", "verify")
    assert faulty["status"] == "rolled_back" and faulty["live_release"].startswith("1.0-"), faulty
    assert took < HANG_SECONDS / 2, f"a hanging health check held the deploy for {took:.0f} s"
    assert_whole(test_hosts, "1.0")

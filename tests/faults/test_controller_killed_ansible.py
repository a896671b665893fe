"""SIGKILL the controller of `golive deploy --engine ansible` (golive, ansible-playbook, its workers
and their ssh clients) at every step boundary and inside the long steps.

golive.adapters.faultpoints names the point: golive's callback plugin kills the whole run when the named
task of the role starts, ends, or has run for a given time (the two timed points run against a
step slowed down for the purpose, so they land inside it). Unlike the pyinfra engine there is no
host agent to finish the step: what a host was running (a module, the restart command) finishes
on the host by itself, and nothing after it runs. The invariant after each kill, on every host:

- `current` resolves to a complete release (never a .partial; VERSION, metadata and every
  rendered config file as recorded);
- the service serves one release whole: that release's code AND its config, as its /health
  reports them together. That is the release `current` points to, or - only when the kill fell
  between the cutover and the end of the restart - the release live before, still running as it
  was; then the release `current` points to is not marked good (it is `unverified`), so the next
  run of either engine sees it unverified and repairs it (restart, verify, mark good);
- the lock is gone, or `golive status` reports it STALE and the re-run takes it over;
- the same deploy run again, with either engine, converges to the intended release.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from tests.conftest import (
    WAIT_BOUND_SECONDS,
    health_of,
    health_retries,
    host_view,
    live_release_problems,
    live_version,
    run_golive,
    wait_until,
)
from tests.faults.test_controller_killed import (  # noqa: F401 (big_release: a fixture)
    NEW,
    OLD,
    OVERRIDE,
    PATIENT,
    PROD,
    assert_the_deploy_run_again_converges,
    big_release,
)

# (kill point: the beginning of a task name of the role, and when; the version `current` settles
# on; the engine that runs the deploy again: Ansible once over a half-built release, once over a
# release switched to but never restarted). `:end` fires on the first host's result: the other
# host is still in that step.
KILL_POINTS = [
    ("Lock | Take the other hosts' locks:start", OLD, "pyinfra"),  # only the leader locked
    ("Upload | Copy the artifact to the host:start+0.8", OLD, "pyinfra"),  # during the upload (slow link)
    ("Unpack | Unpack the artifact:start", OLD, "pyinfra"),  # artifact uploaded and checked
    ("Unpack | Unpack the artifact:end", OLD, "ansible"),  # one host unpacked, the other unpacking
    ("Configure | Link the shared directories:end", OLD, "pyinfra"),  # after configure: complete, not live
    ("Cutover | Make the release live:start", OLD, "pyinfra"),  # immediately before the cutover
    ("Cutover | Make the release live:end", NEW, "ansible"),  # immediately after: the old service still runs
    ("Restart | Restart the service:start+1", NEW, "pyinfra"),  # during the restart (stopped, not started)
    ("Verify | Ask the health URL:end", NEW, "pyinfra"),  # one host verified, the other verifying
    ("Finish | Record the run in the host's ledger:end", NEW, "pyinfra"),  # recorded; prune, unlock not done
    ("End | Fail the host unless:start", NEW, "pyinfra"),  # every lock given back, not yet reported
]
REFUSAL_POINT = "Cutover | Make the release live:end"  # where the Ansible engine re-runs over the stale lock

# Each point costs a (partial) Ansible run or two: together the slowest tests of the suite, run as a
# stage of their own (`scripts/test --slow`; CI runs it after the main one).
pytestmark = pytest.mark.slow_kill_points


def slow_link(ws) -> None:
    """ansible-playbook uploads at 1 MB/s (release 2.0: 1.5 s), so a kill 0.8 s in lands mid-transfer."""
    connection = ws / "inventories" / "manufacturer" / "group_vars" / "all" / "connection.yml"
    connection.write_text(connection.read_text() + 'ansible_sftp_extra_args: "-l 8000"\n')


def slow_restart(ws) -> None:
    """The restart waits two seconds between stop and start, so a kill 1 s in lands while it is down."""
    app = ws / "golive.yml"
    app.write_text(app.read_text().replace(
        'restart: "{{ golive_app_root }}/current/bin/northwind-ctl restart"',
        'restart: "{{ golive_app_root }}/current/bin/northwind-ctl stop && sleep 2 && '
        '{{ golive_app_root }}/current/bin/northwind-ctl start"'))


SLOWED = {"Upload | Copy the artifact to the host:start+0.8": slow_link,
          "Restart | Restart the service:start+1": slow_restart}


@pytest.fixture
def ansible_fault_workspace(workspace, big_release):  # noqa: F811 (the imported fixture)
    """Production on 1.0 (deployed by pyinfra), release 2.0 (1.5 MB, 40 files) in the store."""
    for artifact in big_release:
        shutil.copy2(artifact, workspace / "build" / "releases" / artifact.name)
    health_retries(workspace, PATIENT)
    run_golive(workspace, "deploy", "manufacturer", "production", "--release", OLD, *OVERRIDE, check=0)
    return workspace


@pytest.mark.parametrize("point, settles_on, rerun_engine", KILL_POINTS, ids=[p for p, _, _ in KILL_POINTS])
def test_a_killed_ansible_deploy_leaves_whole_releases_and_converges(point, settles_on, rerun_engine,
                                                                    ansible_fault_workspace, test_hosts):
    ws = ansible_fault_workspace
    SLOWED.get(point, lambda _: None)(ws)
    killed = run_golive(ws, "deploy", "manufacturer", "production", "--release", NEW, *OVERRIDE, "--engine", "ansible",
                        env={"GOLIVE_FAULT_KILL": point}, timeout=WAIT_BOUND_SECONDS)
    assert killed.returncode == -signal.SIGKILL, f"the controller was not killed at {point}:\n{killed.output}"
    assert survivors(ws) == [], f"a process of the run killed at {point} outlived it"

    # What the hosts were running when the controller died finishes on its own: wait for it.
    wait_for_remote_commands(test_hosts)
    for suffix in PROD:
        assert served_whole_after_kill(test_hosts, suffix) == [], f"after a kill at {point}"
        assert live_version(test_hosts, suffix) == settles_on, f"after a kill at {point}"

    rows = {r["host"]: r for r in run_golive(ws, "status", "manufacturer", "production", "--json").json()["hosts"]}
    locked = [name for name, row in rows.items() if row.get("lock")]
    for name in locked:
        assert rows[name]["lock"] == "stale" and "STALE" in rows[name]["lock_detail"], rows[name]
    if locked and point == REFUSAL_POINT:
        assert rerun_engine == "ansible", "the role's takeover of its own killed run is tested here"

    # The re-run takes the killed run's stale locks over (it ran here, its process is gone).
    assert_the_deploy_run_again_converges(ws, test_hosts, point, "--engine", rerun_engine, locked=locked)


def served_whole_after_kill(test_hosts, suffix: int) -> list[str]:
    """The invariant after a kill (module docstring): live_release_problems, except that the
    service may still run the release live before the cutover - whole, code and config of that
    one release - while `current` points to a release not marked good."""
    problems = live_release_problems(test_hosts, suffix)
    if not problems or any(not p.startswith("the service runs release") for p in problems):
        return problems
    health = health_of(f"{test_hosts.net}.{suffix}") or {}
    served = host_view(test_hosts, suffix, f"/opt/northwind/.golive/releases/{health.get('release')}.json")
    current = os.readlink(host_view(test_hosts, suffix, "/opt/northwind/current")).rsplit("/", 1)[-1]
    current_meta = json.loads(host_view(test_hosts, suffix, f"/opt/northwind/.golive/releases/{current}.json")
                              .read_text())
    if not served.is_file():
        return problems + [f"the service runs release {health.get('release')}, which is not on the host"]
    meta = json.loads(served.read_text())
    if (health.get("version"), health.get("config_hash")) != (meta["version"], meta["config_hash"]):
        return problems + ["the service mixes the code and the config of two releases"]
    if current_meta.get("state") == "good":
        return problems + [f"current ({current}) is marked good but its service never ran"]
    return []


def survivors(ws) -> list[str]:
    """Processes of the killed run still alive a moment after it: golive, ansible-playbook and its
    workers all name the workspace on their command line. (ssh's ControlPersist masters do not:
    they left the run's process tree when they started, as after a real crash.)"""
    # SIGKILLed processes vanish as soon as the kernel reaps them; on a loaded machine that takes a while.
    deadline = time.monotonic() + WAIT_BOUND_SECONDS
    while True:
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if str(ws).encode() in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def wait_for_remote_commands(test_hosts) -> None:
    """Wait until nothing started over SSH runs on the test hosts any more (the service aside)."""
    wait_until(lambda: not remote_commands(test_hosts),
               lambda: f"still running on a host: {remote_commands(test_hosts)}")


def remote_commands(test_hosts) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:  # not a process, or it just ended
            continue
        connection = next((v for v in variables if v.startswith(b"SSH_CONNECTION=")), b"").split()
        if len(connection) == 4 and connection[2].startswith(f"{test_hosts.net}.".encode()) \
                and b"northwind.server" not in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found

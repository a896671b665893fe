"""SIGKILL the controller at every step boundary and inside the long steps of a deploy.

golive.adapters.faultpoints stops the controller dead at one named point (GOLIVE_FAULT_KILL): at the
controller's own points it kills itself; at a host point the agent announces the point and waits
until the controller is gone, so the kill lands exactly there and the agent then carries on as it
would after a real crash. After each kill, on every host:
- `current` resolves to a complete release, and the service serves that release's code AND config;
- the lock is gone, or `golive status` reports it STALE;
- running the same deploy again converges to the intended release, taking over the stale locks of
  the killed run (it ran here and its process is gone: no `golive unlock` needed) and recording
  each takeover in the host's ledger and its output.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import (
    WAIT_BOUND_SECONDS,
    build_release,
    health_retries,
    host_path,
    live_release_problems,
    live_version,
    run_golive,
    wait_until,
)

PROD = (12, 13)  # manufacturer production: mfg-prod-1 (the lock leader), mfg-prod-2
OLD, NEW = "1.0", "2.0"
OVERRIDE = ("--override-promotion", "fault test")
# Every release here is good: its health check waits as long as a loaded machine needs for the
# restart, so a slow start never turns a kill test into an automatic rollback.
PATIENT = 250

# (kill point, the version every host must run once the dust settles). Until the activate batch
# starts, the host keeps the old release; once it started, the agent finishes it without the
# controller and the new release is live and verified.
KILL_POINTS = [
    ("begin:done", OLD),         # every host locked and inspected, nothing else done
    ("upload:half", OLD),        # half of the artifact sent
    ("upload:done", OLD),        # artifact on the host, not unpacked
    ("unpack:half", OLD),        # half of the archive members written into releases/<id>.partial
    ("unpack:done", OLD),
    ("configure:done", OLD),     # release complete and published, not live
    ("install:done", OLD),       # controller between the install and the activate batches
    ("cutover:before", NEW),
    ("cutover:done", NEW),       # `current` switched, the service still runs the old release
    ("restart:running", NEW),    # the restart command is running (stop done, start under way)
    ("verify:running", NEW),     # the first health check answered
    # The begin batch's no-change check is also named `record`, so the activate batch's ledger
    # record is reached through its neighbours: right before it, and right after it.
    ("mark_good:done", NEW),     # verified and marked good; the ledger record comes next
    ("prune:before", NEW),       # ledger record written; retention and unlock not yet done
    ("unlock:done", NEW),
    ("activate:done", NEW),      # everything done, the controller dies before reporting
]


@pytest.fixture(scope="module")
def big_release(tmp_path_factory) -> list[Path]:
    """Release 2.0, big enough (1.5 MB: 6 upload chunks) to be killed in the middle of its upload."""
    store = tmp_path_factory.mktemp("big-release")
    build_release(store, NEW, "--files", "40", "--size-kb", "1500")
    return list(store.iterdir())


@pytest.fixture
def fault_workspace(workspace, big_release):
    """Production on 1.0, release 2.0 in the store.

    The restart waits a second between stop and start, so a kill 'during restart' lands while the
    service is down."""
    for artifact in big_release:
        shutil.copy2(artifact, workspace / "build" / "releases" / artifact.name)
    app = workspace / "golive.yml"
    app.write_text(app.read_text().replace(
        'restart: "{{ golive_app_root }}/current/bin/northwind-ctl restart"',
        'restart: "{{ golive_app_root }}/current/bin/northwind-ctl stop && sleep 1 && '
        '{{ golive_app_root }}/current/bin/northwind-ctl start"'))
    health_retries(workspace, PATIENT)
    run_golive(workspace, "deploy", "manufacturer", "production", "--release", OLD, *OVERRIDE, check=0)
    return workspace


@pytest.mark.parametrize("point, settles_on", KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_a_killed_deploy_leaves_complete_releases_and_converges(point, settles_on, fault_workspace, test_hosts):
    ws = fault_workspace
    killed = run_golive(ws, "deploy", "manufacturer", "production", "--release", NEW, *OVERRIDE,
                        env={"GOLIVE_FAULT_KILL": point}, timeout=WAIT_BOUND_SECONDS)
    assert killed.returncode == -signal.SIGKILL, f"the controller was not killed at {point}:\n{killed.output}"

    # The agents finish (or clean up) on their own; the leader's lock, or every lock, may outlive
    # the controller. Wait until no agent runs any more, then look.
    status = wait_for_agents(ws, test_hosts)
    rows = {r["host"]: r for r in status["hosts"]}
    for suffix in PROD:
        assert live_release_problems(test_hosts, suffix) == [], f"after a kill at {point}"
        assert live_version(test_hosts, suffix) == settles_on, f"after a kill at {point}"
        # the agent either finished the release it was building or removed it: nothing half-made stays
        assert not list(host_path(test_hosts, suffix, "/opt/northwind/releases").glob("*.partial")), point
    locked = [name for name, row in rows.items() if row.get("lock")]
    for name in locked:
        assert rows[name]["lock"] == "stale", f"{name}: {rows[name].get('lock_detail')}"
        assert "STALE" in rows[name]["lock_detail"] and "takes it over" in rows[name]["lock_detail"]

    assert_the_deploy_run_again_converges(ws, test_hosts, point, locked=locked)


def assert_the_deploy_run_again_converges(ws, test_hosts, point: str, *options: str,
                                          locked: list[str] = ()) -> None:
    """The deploy killed at `point`, run again, leaves every host on NEW, whole, unlocked, tidy; it
    took over the `locked` hosts' stale locks (and no other), said so and recorded it."""
    held = {name: ledger_of(test_hosts, name) for name in locked}
    again = run_golive(ws, "deploy", "manufacturer", "production", "--release", NEW, *OVERRIDE, *options, "--json",
                       check=0)
    hosts = again.json()["hosts"]
    assert {h["status"] for h in hosts} <= {"deployed", "unchanged"}
    assert sorted(h["host"] for h in hosts if h.get("details", {}).get("lock_takeover")) == sorted(locked), \
        again.output
    for name, before in held.items():
        taken = [e for e in ledger_of(test_hosts, name)[len(before):] if e["action"] == "takeover"]
        assert len(taken) == 1, f"{name}: no single takeover recorded after the kill at {point}"
        dead = taken[0]["stale_lock"]
        assert dead["controller"] == socket.gethostname() and not os.path.exists(f"/proc/{dead['pid']}"), dead
        assert "took over the lock of" in taken[0]["detail"] and "that process is gone" in taken[0]["detail"]
    for suffix in PROD:
        assert live_release_problems(test_hosts, suffix) == [], f"after re-running the deploy killed at {point}"
        assert live_version(test_hosts, suffix) == NEW
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()
        assert not list(host_path(test_hosts, suffix, "/opt/northwind/releases").glob("*.partial"))


SUFFIX_OF = {"mfg-prod-1": 12, "mfg-prod-2": 13}


def ledger_of(test_hosts, host: str) -> list[dict]:
    import json

    path = host_path(test_hosts, SUFFIX_OF[host], "/opt/northwind/.golive/ledger.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_agents(ws, test_hosts) -> dict:
    """`golive status --json` once no golive agent runs on the test hosts any more."""
    wait_until(lambda: not agents_running(test_hosts), "every agent finishing after its controller was killed")
    return run_golive(ws, "status", "manufacturer", "production", "--json", check=0).json()


def agents_running(test_hosts) -> bool:
    """True while a golive agent (a python3 started over SSH) runs on a host of this test net."""
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"golive_agent" not in handle.read():
                    continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:  # not a process, or it just ended
            continue
        connection = next((v for v in variables if v.startswith(b"SSH_CONNECTION=")), b"").split()
        if len(connection) == 4 and connection[2].startswith(f"{test_hosts.net}.".encode()):
            return True
    return False

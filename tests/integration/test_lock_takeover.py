"""A stale lock whose holder is provably gone - it ran on this controller and its process is dead -
is taken over by the next deploy or rollback, with both engines, and the takeover is recorded (the
host's ledger names the dead holder; the output says it). A lock of another controller or of a
live process still needs `golive unlock --reason`: nothing is touched.
(The SIGKILLed runs that leave such locks behind: tests/faults/test_controller_killed*.py.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from golive.adapters.locks import process_start
from tests.conftest import host_path, run_golive

STG, PROD1, PROD2 = 11, 12, 13
NAMES = {STG: "mfg-stg-1", PROD1: "mfg-prod-1", PROD2: "mfg-prod-2"}
OVERRIDE = ("--override-promotion", "lock tests")
ENGINES = ["pyinfra", "ansible"]


def ledger(hosts, suffix: int) -> list[dict]:
    path = host_path(hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def dead_process() -> tuple[int, str]:
    """The pid and start time of a process of this machine that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = process_start(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.pid, started


def plant_lock(hosts, suffix: int, **owner) -> dict:
    """A lock as a run leaves it (owner.json with its token); the holder as golive reports it."""
    holder = {"operator": "night-shift", "controller": socket.gethostname(), "action": "deploy",
              "since": "2026-11-25T22:00:00.000Z", "customer": "manufacturer", "engine": "pyinfra", **owner}
    lock = host_path(hosts, suffix, "/opt/northwind/.golive/lock")
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps({**holder, "token": "ab" * 16}, sort_keys=True))
    return holder


def engine_args(engine: str) -> tuple[str, ...]:
    return ("--engine", engine) if engine != "pyinfra" else ()


def assert_taken_over(result, hosts, suffix: int, holder: dict, engine: str) -> None:
    """The report says it (text: a line; --json: the host's details), and the ledger records it."""
    name = NAMES[suffix]
    if result.stdout.startswith("{"):
        report = next(h for h in result.json()["hosts"] if h["host"] == name)
        assert report["details"]["lock_takeover"] == holder, result.output
    else:
        line = f"{name}: took over the lock of night-shift on {holder['controller']} (pid {holder['pid']}"
        assert line in result.stdout, result.output
    taken = [e for e in ledger(hosts, suffix) if e["action"] == "takeover"]
    assert len(taken) == 1, ledger(hosts, suffix)
    assert taken[0]["stale_lock"] == holder and taken[0]["engine"] == engine and taken[0]["result"] == "ok"
    assert taken[0]["detail"] == (f"took over the lock of night-shift on {holder['controller']} (pid {holder['pid']}, "
                                  f"deploy since {holder['since']}): that process is gone")
    assert {"host", "customer", "environment", "operator", "controller", "time"} <= set(taken[0])
    assert not host_path(hosts, suffix, "/opt/northwind/.golive/lock").exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_deploy_takes_over_the_lock_of_a_dead_run_on_this_controller(workspace, test_hosts, engine):
    pid, started = dead_process()
    holder = plant_lock(test_hosts, STG, pid=pid, pid_start=started)
    result = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", *engine_args(engine))
    assert result.returncode == 0, result.output
    assert_taken_over(result, test_hosts, STG, holder, engine)
    deployed = [e for e in ledger(test_hosts, STG) if e["action"] == "deploy"]
    assert [e["result"] for e in deployed] == ["ok"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_pid_now_used_by_another_process_counts_as_gone(workspace, test_hosts, engine):
    """The recorded pid runs, but it started at another time than the lock's holder did."""
    holder = plant_lock(test_hosts, STG, pid=os.getpid(), pid_start="1")
    result = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", "--json",
                        *engine_args(engine))
    assert result.returncode == 0, result.output
    assert_taken_over(result, test_hosts, STG, holder, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_rollback_takes_over_stale_locks_leader_and_others(workspace, test_hosts, engine):
    for version in ("1.0", "1.1"):
        run_golive(workspace, "deploy", "manufacturer", "production", "--release", version, *OVERRIDE, check=0)
    pid, started = dead_process()
    holders = {suffix: plant_lock(test_hosts, suffix, pid=pid, pid_start=started, action="rollback")
               for suffix in (PROD1, PROD2)}
    result = run_golive(workspace, "rollback", "manufacturer", "production", "--json", *engine_args(engine))
    assert result.returncode == 0, result.output
    for suffix, holder in holders.items():
        report = next(h for h in result.json()["hosts"] if h["host"] == NAMES[suffix])
        assert report["details"]["lock_takeover"] == holder and report["status"] == "deployed", result.output
        taken = [e for e in ledger(test_hosts, suffix) if e["action"] == "takeover"]
        assert len(taken) == 1 and taken[0]["stale_lock"] == holder and taken[0]["engine"] == engine
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()


def live_holder() -> dict:
    return {"pid": os.getpid(), "pid_start": process_start(os.getpid())}


def other_controller() -> dict:
    pid, started = dead_process()  # dead here, but it ran elsewhere: only that machine can tell
    return {"controller": "laptop-of-someone-else", "pid": pid, "pid_start": started}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["live-process", "other-controller"])
def test_a_lock_of_a_live_process_or_of_another_controller_is_still_refused(workspace, test_hosts, engine, kind):
    holder = plant_lock(test_hosts, STG, **(live_holder() if kind == "live-process" else other_controller()))
    lock = host_path(test_hosts, STG, "/opt/northwind/.golive/lock/owner.json")
    before = lock.read_text()
    result = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", "--json",
                        *engine_args(engine))
    assert result.returncode == 3, result.output
    report = result.json()["hosts"][0]
    assert report["status"] == "locked" and "lock_takeover" not in report.get("details", {}), result.output
    assert holder["controller"] in report["error"]
    assert "took over" not in result.output
    assert lock.read_text() == before  # the holder's lock, untouched
    assert not host_path(test_hosts, STG, "/opt/northwind/releases").exists()
    assert [e for e in ledger(test_hosts, STG) if e["action"] == "takeover"] == []
    run_golive(workspace, "unlock", "manufacturer", "staging", "--reason", "test", "--force", check=0)


def test_a_killed_deploy_rerun_with_the_ansible_engine_takes_over_its_locks(workspace, test_hosts):
    """SIGKILLed right after every host was locked (the pyinfra engine), re-run with the Ansible
    engine: the role proves the holder dead on this controller and takes both locks over."""
    killed = run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE,
                        env={"GOLIVE_FAULT_KILL": "begin:done"}, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.output
    for suffix in (PROD1, PROD2):
        assert host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()
    again = run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, "--json",
                       "--engine", "ansible")
    assert again.returncode == 0, again.output
    for suffix in (PROD1, PROD2):
        report = next(h for h in again.json()["hosts"] if h["host"] == NAMES[suffix])
        dead = report["details"]["lock_takeover"]
        assert dead["controller"] == socket.gethostname() and not os.path.exists(f"/proc/{dead['pid']}"), dead
        assert [e["stale_lock"] for e in ledger(test_hosts, suffix) if e["action"] == "takeover"] == [dead]
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()

"""Two runs against one environment started at the same instant: exactly one proceeds; the other
fails fast naming the holder and touches nothing (no release, no ledger line, no lock left).
Both engines take the same locks the same way (the leader's first, held to the end of the run),
so the races run with one side on each engine too.

Repeated, because a race that loses one time in ten is still a race."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import (
    RELEASE_FILES,
    RELEASE_KB,
    REPO,
    WAIT_BOUND_SECONDS,
    build_release,
    host_path,
    live_release_problems,
    run_golive,
    set_hook,
)

PROD = {"mfg-prod-1": 12, "mfg-prod-2": 13}
REPEATS = 8
OVERRIDE = ("--override-promotion", "concurrency test")


def start_golive(ws, operator: str, *args: str) -> subprocess.Popen:
    env = {"PYTHONPATH": str(REPO / "deploy"), "GOLIVE_OPERATOR": operator}
    return subprocess.Popen([sys.executable, "-m", "golive", args[0], "--workspace", str(ws), *args[1:], "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ws),
                            env={**os.environ, **env})


def ledger_lines(test_hosts) -> dict[str, list[dict]]:
    lines = {}
    for name, suffix in PROD.items():
        path = host_path(test_hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
        lines[name] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return lines


def let_go_files(test_hosts) -> list:
    return [host_path(test_hosts, suffix, f"/opt/northwind/shared/{LET_GO}") for suffix in PROD.values()]


def race(ws, test_hosts, first: tuple[str, ...], second: tuple[str, ...], delay: float = 0) -> tuple[str, dict]:
    """Start both runs together (the second `delay` seconds later); return the winner's operator and
    both results. The winner holds its locks (HOLD) until the first run to end has ended: the loser,
    unless both proceeded, which the assertions below then show."""
    let_go = let_go_files(test_hosts)
    for path in let_go:
        path.unlink(missing_ok=True)
    before = ledger_lines(test_hosts)
    runs = {"alice": start_golive(ws, "alice", *first)}
    time.sleep(delay)
    runs["bob"] = start_golive(ws, "bob", *second)
    bound = time.monotonic() + WAIT_BOUND_SECONDS
    while all(process.poll() is None for process in runs.values()) and time.monotonic() < bound:
        time.sleep(0.05)
    for path in let_go:
        path.touch()
    results = {}
    for operator, process in runs.items():
        stdout, stderr = process.communicate(timeout=WAIT_BOUND_SECONDS)
        results[operator] = (process.returncode, stdout, stderr)
    codes = {operator: result[0] for operator, result in results.items()}
    assert sorted(codes.values()) == [0, 3], f"not exactly one run proceeded: {codes}\n{results}"
    winner = next(o for o, c in codes.items() if c == 0)
    loser = next(o for o, c in codes.items() if c == 3)
    code, stdout, stderr = results[loser]
    assert "Traceback" not in stdout + stderr
    report = json.loads(stdout)
    assert all(h["status"] in ("locked", "skipped") for h in report["hosts"]), report
    assert any(f"locked by {winner}" in (h.get("error") or "") for h in report["hosts"]), json.dumps(results, indent=1)
    assert any("still running" in (h.get("error") or "") for h in report["hosts"]), report
    # the loser wrote nothing: every new ledger line is the winner's, one per host
    after = ledger_lines(test_hosts)
    for host in PROD:
        new = after[host][len(before[host]):]
        assert [e["operator"] for e in new] == [winner], f"{host}: {new}"
    for suffix in PROD.values():
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()
        assert live_release_problems(test_hosts, suffix) == []
    return winner, results


# Each winner holds its locks in a hook (before_cutover for a deploy, on_rollback of the release it
# leaves for a rollback) until the test lets it go, once the other run has ended: so the other run
# always meets them, however loaded the machine (a rollback needs much less work before it locks
# than a deploy, and could otherwise be over before the deploy locks anything). Bounded, so that a
# broken run cannot hang the suite.
LET_GO = "golive-race-let-go"
HOLD = f"i=0; while [ ! -e $GOLIVE_APP_ROOT/shared/{LET_GO} ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done"


@pytest.fixture
def production(workspace):
    """Production on 1.1 (1.0 kept; leaving 1.1 holds a rollback for a while)."""
    store = workspace / "build" / "releases"
    build_release(store, "1.2", "--files", RELEASE_FILES, "--size-kb", RELEASE_KB)
    set_hook(workspace, "on_rollback", HOLD)  # releases deployed from now on hold a rollback leaving them
    run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, check=0)
    run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.1", *OVERRIDE, check=0)
    return workspace


def held_race(ws, test_hosts, first: tuple[str, ...], second: tuple[str, ...], delay: float = 0) -> str:
    """A race whose winner holds its locks (HOLD), then production back on 1.1; the winner."""
    set_hook(ws, "before_cutover", HOLD)
    winner, _ = race(ws, test_hosts, first, second, delay)
    set_hook(ws, "before_cutover", "")
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.1", *OVERRIDE, check=0)
    return winner


def test_two_deploys_started_together_exactly_one_proceeds(production, test_hosts):
    winners = []
    for repeat in range(REPEATS):
        # both change every host (1.1 is live)
        serial = ("--serial", "1") if repeat % 2 else ()
        winners.append(held_race(production, test_hosts,
                                 ("deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, *serial),
                                 ("deploy", "manufacturer", "production", "--release", "1.2", *OVERRIDE, *serial)))
    print("winners:", winners)


def test_a_deploy_and_a_rollback_started_together_exactly_one_proceeds(production, test_hosts):
    winners = [held_race(production, test_hosts,
                         ("deploy", "manufacturer", "production", "--release", "1.2", *OVERRIDE),
                         ("rollback", "manufacturer", "production"))
               for _ in range(REPEATS)]
    print("winners:", winners)


# -- one side on the Ansible engine -------------------------------------------------------------
# ansible-playbook needs seconds before it takes its first lock, the pyinfra engine tenths, so the
# pyinfra run starts when the Ansible run is about to lock (measured on a real run): a little
# before, and a little after, so that either may win.

SHIFTS = (-0.3, 0.3)


@pytest.fixture
def ansible_production(workspace, test_hosts):
    """Production on 1.1 (1.0 kept; leaving 1.1 runs the on_rollback hook that holds the locks); how
    long an Ansible deploy takes to lock the leader, measured as 1.1 goes live with Ansible."""
    store = workspace / "build" / "releases"
    build_release(store, "1.2", "--files", RELEASE_FILES, "--size-kb", RELEASE_KB)
    set_hook(workspace, "on_rollback", HOLD)
    run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, check=0)
    lock = host_path(test_hosts, PROD["mfg-prod-1"], "/opt/northwind/.golive/lock")
    started = time.monotonic()
    deploying = start_golive(workspace, "setup", "deploy", "manufacturer", "production", "--release", "1.1",
                             *OVERRIDE, "--engine", "ansible")
    while not lock.exists() and deploying.poll() is None:
        time.sleep(0.01)
    to_lock = time.monotonic() - started
    assert deploying.wait(timeout=WAIT_BOUND_SECONDS) == 0, deploying.communicate()
    return workspace, to_lock


def test_an_ansible_deploy_raced_by_a_pyinfra_deploy_or_rollback_exactly_one_proceeds(ansible_production,
                                                                                     test_hosts):
    """An Ansible deploy of 1.2 (in --serial 1 batches the first time) against a pyinfra deploy of
    1.0 started a little before it locks, then against a pyinfra rollback started a little after."""
    ws, to_lock = ansible_production
    others = [("deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, "--serial", "1"),
              ("rollback", "manufacturer", "production")]
    winners = []
    for other, shift, serial in zip(others, SHIFTS, (("--serial", "1"), ()), strict=True):
        winner = held_race(ws, test_hosts,
                           ("deploy", "manufacturer", "production", "--release", "1.2", *OVERRIDE, *serial,
                            "--engine", "ansible"),
                           other, delay=max(0.0, to_lock + shift))
        winners.append({"alice": "ansible", "bob": "pyinfra"}[winner])
    print("winners:", winners)

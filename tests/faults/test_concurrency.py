"""Two runs against one environment started at the same instant: exactly one proceeds; the other
fails fast naming the holder and touches nothing (no release, no ledger line, no lock left).

Repeated, because a race that loses one time in ten is still a race."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import RELEASE_FILES, RELEASE_KB, REPO, build_release, host_path, live_release_problems, run_golive

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


def race(ws, test_hosts, first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, dict]:
    """Start both runs together; return the winner's operator and both results."""
    before = ledger_lines(test_hosts)
    runs = {"alice": start_golive(ws, "alice", *first), "bob": start_golive(ws, "bob", *second)}
    results = {}
    for operator, process in runs.items():
        stdout, stderr = process.communicate(timeout=120)
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


@pytest.fixture
def production(workspace):
    store = workspace / "build" / "releases"
    build_release(store, "1.2", "--files", RELEASE_FILES, "--size-kb", RELEASE_KB)
    run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, check=0)
    run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.1", *OVERRIDE, check=0)
    return workspace


def test_two_deploys_started_together_exactly_one_proceeds(production, test_hosts):
    winners = []
    for repeat in range(REPEATS):
        # both change every host (1.1 is live), so neither could finish before the other starts
        serial = ("--serial", "1") if repeat % 2 else ()
        winner, _ = race(production, test_hosts,
                         ("deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, *serial),
                         ("deploy", "manufacturer", "production", "--release", "1.2", *OVERRIDE, *serial))
        winners.append(winner)
        run_golive(production, "deploy", "manufacturer", "production", "--release", "1.1", *OVERRIDE, check=0)
    print("winners:", winners)


def test_a_deploy_and_a_rollback_started_together_exactly_one_proceeds(production, test_hosts):
    winners = []
    for _ in range(REPEATS):
        winner, _ = race(production, test_hosts,
                         ("deploy", "manufacturer", "production", "--release", "1.2", *OVERRIDE),
                         ("rollback", "manufacturer", "production"))
        winners.append(winner)
        run_golive(production, "deploy", "manufacturer", "production", "--release", "1.1", *OVERRIDE, check=0)
    print("winners:", winners)

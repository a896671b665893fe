"""A rollback leaves a host that runs no release as it is (golive.core.rollback: NOTHING_LIVE).

A rollback returns hosts to what they ran before; a host with nothing live (never deployed there,
or its first install failed and was withdrawn) has nothing to go back from. With either engine,
plain or `--to`, whichever host of the run it is (the leader too: then the first host that runs a
release chooses the target), it is named in the report, nothing is written there (no `current`,
no intent, no ledger entry, no lock left), and it does not fail the run: the exit says whether
the others rolled back. An environment where no host runs a release has nothing to roll back.
"""

from __future__ import annotations

import json

import pytest

from golive.core.rollback import NOTHING_LIVE
from tests.conftest import host_path, live_release_problems, live_version, run_golive

OVERRIDE = ("--override-promotion", "rollback test")
NAMES = {12: "mfg-prod-1", 13: "mfg-prod-2"}  # mfg-prod-1 leads the run


def deploy(ws, version: str, suffix: int, check: int = 0):
    return run_golive(ws, "deploy", "manufacturer", "production", "--release", version, "--host", NAMES[suffix],
                      *OVERRIDE, check=check)


def rollback(ws, engine: str, *extra: str, check: int | None = None):
    return run_golive(ws, "rollback", "manufacturer", "production", "--engine", engine, "--json", *extra,
                      check=check, timeout=180)


def on_host(test_hosts, suffix: int) -> dict:
    """What a rollback could have written on a host: its `current`, intent, ledger, lock."""
    root = "/opt/northwind"
    ledger = host_path(test_hosts, suffix, f"{root}/.golive/ledger.jsonl")
    return {"current": host_path(test_hosts, suffix, f"{root}/current").is_symlink(),
            "intent": host_path(test_hosts, suffix, f"{root}/.golive/rollback.json").exists(),
            "ledger": ledger.read_text().splitlines() if ledger.exists() else [],
            "lock": host_path(test_hosts, suffix, f"{root}/.golive/lock").exists()}


def assert_left_as_it_is(result, test_hosts, suffix: int, before: dict) -> None:
    reports = {h["host"]: h for h in result.json()["hosts"]}
    report = reports[NAMES[suffix]]
    assert report["status"] == "nothing_live", result.output
    assert report["details"] == {"nothing_live": True, "reason": NOTHING_LIVE}, result.output
    assert on_host(test_hosts, suffix) == {**before, "lock": False}, "nothing is written on a host that runs nothing"


def intent(test_hosts, suffix: int) -> dict:
    return json.loads(host_path(test_hosts, suffix, "/opt/northwind/.golive/rollback.json").read_text())


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_a_never_deployed_leader_is_left_as_it_is_and_the_next_host_chooses(engine, workspace, test_hosts):
    """mfg-prod-1 (the leader) never had a release; mfg-prod-2 runs 1.1 and keeps 1.0: the rollback
    takes mfg-prod-2 to 1.0 (chosen there), says mfg-prod-1 has nothing to roll back, exits 0, and
    marks the rollback finished on mfg-prod-2 (the next one goes further back, not "continue")."""
    for version in ("1.0", "1.1"):
        deploy(workspace, version, 13)
    before = on_host(test_hosts, 12)
    result = rollback(workspace, engine)
    assert result.returncode == 0, result.output
    assert_left_as_it_is(result, test_hosts, 12, before)
    data = result.json()
    assert data["target"]["chosen_on"] == "mfg-prod-2" and data["target"]["version"] == "1.0", result.output
    assert live_version(test_hosts, 13) == "1.0" and live_release_problems(test_hosts, 13) == []
    assert intent(test_hosts, 13).get("finished_at"), "the chooser marks the rollback finished"
    assert not host_path(test_hosts, 13, "/opt/northwind/.golive/lock").exists()


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_a_host_whose_first_install_failed_is_left_as_it_is_with_to(engine, workspace, test_hosts):
    """mfg-prod-2's only release, 1.1, failed its first install (marked bad, withdrawn: no current);
    mfg-prod-1 runs 1.1 and keeps 1.0. `rollback --to 1.0` is not refused because mfg-prod-2 does
    not keep 1.0: mfg-prod-1 goes to 1.0, mfg-prod-2 is left as it is, exit 0."""
    for version in ("1.0", "1.1"):
        deploy(workspace, version, 12)
    # what a failed first install leaves (Agent.step_withdraw, the role's withdraw): its release
    # marked bad, `current` removed (a real failed install is tests/integration/test_first_install.py's)
    deploy(workspace, "1.1", 13)
    link = host_path(test_hosts, 13, "/opt/northwind/current")
    release = link.resolve().name
    link.unlink()
    meta_path = host_path(test_hosts, 13, f"/opt/northwind/.golive/releases/{release}.json")
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "state": "bad"}))
    before = on_host(test_hosts, 13)
    result = rollback(workspace, engine, "--to", "1.0")
    assert result.returncode == 0, result.output
    assert_left_as_it_is(result, test_hosts, 13, before)
    assert live_version(test_hosts, 12) == "1.0" and live_release_problems(test_hosts, 12) == []


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_an_environment_where_no_host_runs_a_release_has_nothing_to_roll_back(engine, workspace, test_hosts):
    before = {s: on_host(test_hosts, s) for s in NAMES}
    result = rollback(workspace, engine)
    assert result.returncode == 3, result.output
    assert {h["host"]: h["status"] for h in result.json()["hosts"]} == {n: "nothing_live" for n in NAMES.values()}
    assert "nothing to roll back" in result.output and "Traceback" not in result.output
    assert {s: on_host(test_hosts, s) for s in NAMES} == {s: {**before[s], "lock": False} for s in NAMES}

"""A rollback that changes the database, interrupted and run again, converges on what it meant.

Production (mfg-prod-1, the run's leader, and mfg-prod-2, one PostgreSQL database on mfg-db-prod)
deployed 1.0 (0001), 1.1 (+0002, expand) and 1.2 (+0003, contract), each backed up first. 1.2's
code is live; `golive rollback --restore-db` means "back to 1.1, database restored from the backup
taken before 0003". Killed at any point of it (before the restore, in the restore's swap, after
it, while the hosts start), then run again with the same command, it

- completes that rollback: the same target 1.1 (reason "continue"), never one release further
  back (1.0) nor forth to 1.2;
- restores the database once in all: a restore that completed (its swap marked the live database,
  the database host's ledger records it) is not done again, one that did not happen is done now;
- finishes it: the next plain rollback goes further back (to 1.0, code-only: 0002 is additive).

The same for `--down` (the down-migrations run once, in one transaction), a host that runs no
release is not rolled back (said per host), and --engine ansible refuses every verb of a product
with a database before any host is touched.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from golive.core.rollback import NOTHING_LIVE
from tests.conftest import (
    TEST_NET,
    health_of,
    host_path,
    host_view,
    live_release_problems,
    live_version,
    run_golive,
    snapshot_difference,
    snapshot_hosts,
    wait_until,
    work_orders,
)
from tests.faults.test_controller_killed import agents_running

PROD = (12, 13)
DB_PROD = 17
OVERRIDE = ("--override-promotion", "rollback test")


def deploy(ws, version: str, *extra: str, check: int | None = 0):
    return run_golive(ws, "deploy", "manufacturer", "production", "--release", version, *OVERRIDE, *extra,
                      check=check)


def rollback(ws, *extra: str, check: int | None = 0, env: dict | None = None):
    return run_golive(ws, "rollback", "manufacturer", "production", "--json", *extra, check=check, env=env,
                      timeout=300)


def db_ledger(test_hosts) -> list[dict]:
    path = host_view(test_hosts, DB_PROD, "/opt/northwind/.golive/ledger.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def restores(test_hosts) -> list[dict]:
    return [e for e in db_ledger(test_hosts) if e["action"] == "restore"]


def replaced(production) -> list[str]:
    return [r[0] for r in production.server.query("SELECT datname FROM pg_database WHERE datname LIKE "
                                                  "'northwind\\_\\_golive\\_replaced%'", "postgres")]


def wait_until_served(address: str, version: str) -> None:
    """A killed run's agents start the service before they end; it answers a moment after."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (health_of(address) or {}).get("version") == version:
            return
        time.sleep(0.2)


def assert_on(test_hosts, version: str, schema: str, why: str) -> None:
    for suffix in PROD:
        assert live_version(test_hosts, suffix) == version, why
        assert live_release_problems(test_hosts, suffix) == [], why
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists(), why
        report = health_of(f"{TEST_NET}.{suffix}") or {}
        assert (report.get("version"), report.get("schema_version"), report.get("status")) == \
            (version, schema, "ok"), (why, report)


def wait_for_agents(ws, test_hosts) -> dict:
    """`golive status --json` once no agent runs any more (exit 1: a host may be stopped, waiting for
    the rollback to complete)."""
    wait_until(lambda: not agents_running(test_hosts), "every agent finishing after its controller was killed")
    status = run_golive(ws, "status", "manufacturer", "production", "--json", check=None)
    assert status.returncode in (0, 1), status.output
    return status.json()


def unlock_stale(ws, status: dict, why: str) -> None:
    """After a kill the locks the run held outlive it: stale, cleared by unlock."""
    locked = [row for row in status["hosts"] if row.get("lock")]
    for row in locked:
        assert row["lock"] == "stale", row
    if locked:
        run_golive(ws, "unlock", "manufacturer", "production", "--reason", why, check=0)


@pytest.fixture
def on_1_2(db_workspace, databases):
    (production,) = databases.start("manufacturer", "production")
    for version in ("1.0", "1.1", "1.2"):
        deploy(db_workspace, version)
    assert production.history() == ["0001", "0002", "0003"]
    return db_workspace, production


# Points of `rollback --restore-db`: in the hosts' first round trip (intent, stop, switch), before
# the restore; in the restore's swap (the database agent goes on and completes it); after the
# database changed; while the hosts start the target; after every host ended on it.
KILL_POINTS = ["choose:done", "cutover:done", "db_restore:swap", "database:done", "restart:running",
               "rollback:done"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_restore_rollback_run_again_completes_it_restoring_once(point, on_1_2, test_hosts):
    ws, production = on_1_2
    killed = rollback(ws, "--restore-db", check=None, env={"GOLIVE_FAULT_KILL": point})
    assert killed.returncode == -signal.SIGKILL, f"the controller was not killed at {point}:\n{killed.output}"
    unlock_stale(ws, wait_for_agents(ws, test_hosts), f"killed at {point}")
    for suffix in PROD:
        assert live_version(test_hosts, suffix) in ("1.1", "1.2"), point
    assert len(restores(test_hosts)) <= 1, point

    again = rollback(ws, "--restore-db")
    data = again.json()
    assert data["target"]["version"] == "1.1" and data["target"]["reason"] == "continue", again.output
    assert {h["status"] for h in data["hosts"]} <= {"deployed", "unchanged"}, again.output
    for suffix in PROD:
        wait_until_served(f"{TEST_NET}.{suffix}", "1.1")
    assert_on(test_hosts, "1.1", "0002", f"the rollback killed at {point}, run again")
    assert production.history() == ["0001", "0002"] and "product" in production.columns()
    done = restores(test_hosts)
    assert [(e["result"], e["backup"]) for e in done] == [("ok", data["database"]["continues"]["database"]
                                                           ["backup"])], (point, done)
    assert len(replaced(production)) == 1, point  # one restore swapped in: one database kept aside
    if point in ("choose:done", "cutover:done"):  # nothing was restored before the kill: restored now
        assert data["database"]["path"] == "restore", again.output
    else:  # the restore completed before the kill: not done again
        assert data["database"]["path"] == "code-only", again.output
        assert "not restored again" in data["database"]["reason"], again.output
        assert data["database"]["continues"]["done_before"], again.output

    # that rollback is finished: the next plain one goes further back (0002 is additive: code-only)
    further = rollback(ws)
    assert further.json()["target"]["reason"] == "previous", further.output
    assert_on(test_hosts, "1.0", "0002", f"a rollback after the one killed at {point} was completed")
    assert len(restores(test_hosts)) == 1


def test_the_re_run_takes_over_the_locks_its_own_killed_run_left(on_1_2, test_hosts):
    """Killed before the restore, every host's lock outlives the run: the same controller's re-run
    takes them over (as a host-by-host rollback does) and completes the rollback, no unlock needed."""
    ws, production = on_1_2
    killed = rollback(ws, "--restore-db", check=None, env={"GOLIVE_FAULT_KILL": "cutover:done"})
    assert killed.returncode == -signal.SIGKILL, killed.output
    status = wait_for_agents(ws, test_hosts)
    assert {row["host"] for row in status["hosts"] if row.get("lock") == "stale"} == {"mfg-prod-1", "mfg-prod-2"}

    again = rollback(ws, "--restore-db")
    data = again.json()
    assert data["target"]["reason"] == "continue", again.output
    assert all(h["details"].get("lock_takeover") for h in data["hosts"]), again.output
    assert_on(test_hosts, "1.1", "0002", "the re-run that took its dead run's locks over")
    assert production.history() == ["0001", "0002"] and len(restores(test_hosts)) == 1


@pytest.mark.parametrize("point", ["cutover:done", "database:done"])
def test_a_killed_down_rollback_run_again_completes_it_undoing_once(point, on_1_2, test_hosts):
    ws, production = on_1_2
    killed = rollback(ws, "--down", check=None, env={"GOLIVE_FAULT_KILL": point})
    assert killed.returncode == -signal.SIGKILL, killed.output
    unlock_stale(ws, wait_for_agents(ws, test_hosts), f"killed at {point}")
    undone_before = point == "database:done"
    assert production.history() == (["0001", "0002"] if undone_before else ["0001", "0002", "0003"])

    again = rollback(ws, "--down")
    data = again.json()
    assert data["target"]["version"] == "1.1" and data["target"]["reason"] == "continue", again.output
    if undone_before:  # nothing left to undo: the completion is code-only
        assert data["database"]["path"] == "code-only" and "nothing to undo" in data["database"]["reason"]
    else:
        assert data["database"]["path"] == "down" and data["database"]["down"] == ["0003_item_codes"], again.output
    for suffix in PROD:
        wait_until_served(f"{TEST_NET}.{suffix}", "1.1")
    assert_on(test_hosts, "1.1", "0002", f"the --down rollback killed at {point}, run again")
    assert production.history() == ["0001", "0002"]
    assert [e["action"] for e in db_ledger(test_hosts)].count("down") == 1

    further = rollback(ws)
    assert further.json()["target"]["reason"] == "previous", further.output
    assert_on(test_hosts, "1.0", "0002", "a rollback after the --down one was completed")


def test_a_host_with_no_live_release_is_not_rolled_back_and_is_named(on_1_2, test_hosts):
    """mfg-prod-2's `current` is gone (as after a withdrawn first install): a database rollback
    takes mfg-prod-1 back and says, for mfg-prod-2, why it is not rolled back; nothing is switched
    or started there."""
    ws, production = on_1_2
    link = host_path(test_hosts, 13, "/opt/northwind/current")
    os.unlink(link)
    result = rollback(ws, "--restore-db", check=None)
    data = result.json()
    reports = {h["host"]: h for h in data["hosts"]}
    assert reports["mfg-prod-1"]["status"] == "deployed" and reports["mfg-prod-1"]["to_release"].startswith("1.1-")
    assert reports["mfg-prod-2"]["status"] == "nothing_live", result.output
    assert reports["mfg-prod-2"]["details"]["reason"] == NOTHING_LIVE, result.output
    assert not link.is_symlink()  # nothing switched there
    assert production.history() == ["0001", "0002"]
    assert live_version(test_hosts, 12) == "1.1"
    assert data["database"]["skipped"] == {"mfg-prod-2": NOTHING_LIVE}
    # said per host, not a failure: the exit says whether the hosts that run a release rolled back
    assert result.returncode == 0, result.output


def test_a_restore_with_an_application_host_unreachable_is_refused_before_anything_changes(on_1_2, test_hosts):
    """mfg-prod-2's sshd is stopped (its service goes on serving 1.2): `rollback --restore-db` would
    restore the database under it, and it would serve 1.2 against the restored 0002 schema. Refused
    (exit 3) before the database or any host's code changes: the row written after the backup is
    still there, no host switched, nothing restored, no lock left; the message names the host, why,
    and what to do. Once the host is back the same command rolls back."""
    ws, production = on_1_2
    address = f"{TEST_NET}.13"
    assert work_orders(address, order={"plant": "SH01", "item_code": "GX-9", "quantity": 9})[0] == 201
    name = next(h.name for h in test_hosts.hosts if h.address == address)
    test_hosts.stop(name)
    try:
        refused = rollback(ws, "--restore-db", check=None)
        after = {suffix: live_version(test_hosts, suffix) for suffix in PROD}
    finally:
        test_hosts.start(name)
    assert refused.returncode == 3, refused.output
    assert "Traceback" not in refused.output
    assert "mfg-prod-2" in refused.stderr and "could not be reached" in refused.stderr, refused.stderr
    assert "against the schema of 1.1" in refused.stderr and "what to do: bring mfg-prod-2 back" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert production.history() == ["0001", "0002", "0003"]
    assert production.server.query("SELECT count(*) FROM work_orders", "northwind") == [["1"]]
    assert after == {12: "1.2", 13: "1.2"} and restores(test_hosts) == [] and replaced(production) == []
    for suffix in PROD:
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/rollback.json").exists()

    rollback(ws, "--restore-db", check=0)
    assert_on(test_hosts, "1.1", "0002", "the restore once every host is reachable")


@pytest.mark.parametrize("verb", [("deploy", "--release", "1.2", *OVERRIDE), ("rollback",),
                                  ("rollback", "--to", "1.1"), ("rollback", "--restore-db"), ("rollback", "--down"),
                                  ("deploy", "--release", "1.1", "--check", *OVERRIDE)],
                         ids=lambda v: " ".join(v[:3]))
def test_the_ansible_engine_refuses_every_verb_of_a_product_with_a_database(verb, db_workspace, databases,
                                                                            test_hosts):
    databases.start("manufacturer", "production")
    deploy(db_workspace, "1.0")
    deploy(db_workspace, "1.1")
    before = snapshot_hosts(test_hosts)
    refused = run_golive(db_workspace, verb[0], "manufacturer", "production", *verb[1:], "--engine", "ansible",
                         check=2)
    assert "golive.yml `database:`" in refused.stderr and "--engine ansible" in refused.stderr, refused.output
    assert "use the default engine" in refused.stderr and "nothing was changed" in refused.stderr, refused.output
    assert refused.stderr.count("--engine ansible does not") == 1, refused.stderr  # one message
    assert "Traceback" not in refused.output
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []

"""A rollback run again, interrupted or not, converges on what it meant (issue 12 section 2).

Production (mfg-prod-1, the run's leader, and mfg-prod-2) runs 1.2 and keeps 1.1 and 1.0, all three
deployed and verified in that order. A rollback means "back to 1.1" there, and then:

- killed at any point between the leader's lock and the last record, or after its first --serial
  batch, a plain `golive rollback` run again puts every host on 1.1 and none back on 1.2 (the
  release it rolled back from), with either engine, whichever engine was killed;
- a partial rollback (--host) followed by a plain one leaves the whole environment on 1.1;
- `--to 1.0` twice: the second is a success, "already on";
- a rollback after a finished rollback goes further back (1.2 -> 1.1 -> 1.0), never forth;
- a host whose clock was days behind when 1.1 and 1.2 were deployed chooses what its peers choose;
- hosts whose histories differ go to one release, the leader's choice, and the report says so;
- `--to` a release no host keeps is refused (exit 2) before any lock is taken or anything is written.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import (
    build_release,
    health_of,
    host_path,
    live_release_problems,
    live_version,
    run_golive,
    snapshot_difference,
    snapshot_hosts,
)
from tests.faults.test_controller_killed import wait_for_agents
from tests.faults.test_controller_killed_ansible import wait_for_remote_commands

PROD = (12, 13)
LEADER, OTHER = 12, 13
OVERRIDE = ("--override-promotion", "rollback test")
NAMES = {12: "mfg-prod-1", 13: "mfg-prod-2"}


@pytest.fixture(scope="module")
def release_1_2(tmp_path_factory) -> list[Path]:
    store = tmp_path_factory.mktemp("release-1.2")
    build_release(store, "1.2", "--files", "20", "--size-kb", "200")
    return list(store.iterdir())


@pytest.fixture
def on_1_2(workspace, release_1_2):
    """Production deployed 1.0, 1.1, 1.2 in that order (each verified): 1.2 is live."""
    for artifact in release_1_2:
        (workspace / "build" / "releases" / artifact.name).write_bytes(artifact.read_bytes())
    for version in ("1.0", "1.1", "1.2"):
        deploy(workspace, version)
    return workspace


def deploy(ws: Path, version: str, *extra: str, check: int = 0):
    return run_golive(ws, "deploy", "manufacturer", "production", "--release", version, *OVERRIDE, *extra,
                      check=check)


def rollback(ws: Path, *extra: str, engine: str = "pyinfra", check: int | None = 0, env: dict | None = None):
    return run_golive(ws, "rollback", "manufacturer", "production", "--engine", engine, "--json", *extra,
                      check=check, env=env, timeout=180)


def versions(test_hosts) -> dict[int, str | None]:
    return {suffix: live_version(test_hosts, suffix) for suffix in PROD}


def assert_on(test_hosts, version: str, why: str) -> None:
    assert versions(test_hosts) == {s: version for s in PROD}, why
    for suffix in PROD:
        assert live_release_problems(test_hosts, suffix) == [], why
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists(), why


def metas(test_hosts, suffix: int) -> dict[str, dict]:
    directory = host_path(test_hosts, suffix, "/opt/northwind/.golive/releases")
    return {p.stem: json.loads(p.read_text()) for p in directory.glob("*.json") if not p.name.endswith(".run.json")}


def unlock_stale(ws: Path, test_hosts, status: dict, why: str) -> None:
    """After a kill the leader's lock (the environment's) outlives the run: stale, cleared by unlock."""
    locked = [row for row in status["hosts"] if row.get("lock")]
    for row in locked:
        assert row["lock"] == "stale", row
    if locked:
        run_golive(ws, "unlock", "manufacturer", "production", "--reason", why, check=0)


def served_whole(test_hosts, suffix: int) -> list[str]:
    """After an Ansible run was killed (nothing finishes the step for it): the host is on one complete
    release, and its service serves one release whole, code and config: the one `current` points to,
    or - killed between the cutover and the restart - the one it was leaving, still running."""
    problems = live_release_problems(test_hosts, suffix)
    if not problems or any(not p.startswith("the service runs release") for p in problems):
        return problems
    health = health_of(f"{test_hosts.net}.{suffix}") or {}
    meta = metas(test_hosts, suffix).get(health.get("release"))
    if meta is None or (health.get("version"), health.get("config_hash")) != (meta["version"], meta["config_hash"]):
        return problems + ["the service does not serve one kept release whole"]
    return []


def hosts_of(result) -> dict[str, dict]:
    return {h["host"]: h for h in result.json()["hosts"]}


# -- killed, then run again -------------------------------------------------------------------

# Every point of a pyinfra rollback between the leader's lock and the last record. The agents go on
# without their controller, so each host finishes (or undoes) the batch it received.
KILL_POINTS = ["lock:done", "begin:done", "choose:before", "choose:done", "on_rollback:done", "cutover:before",
               "cutover:done", "restart:running", "verify:running", "mark_good:done", "mark_left:done",
               "record:before", "record:done", "unlock:done", "rollback:done"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_rollback_run_again_completes_it(point, on_1_2, test_hosts):
    ws = on_1_2
    killed = rollback(ws, check=None, env={"GOLIVE_FAULT_KILL": point})
    assert killed.returncode == -signal.SIGKILL, f"the controller was not killed at {point}:\n{killed.output}"
    unlock_stale(ws, test_hosts, wait_for_agents(ws, test_hosts), f"killed at {point}")
    for suffix in PROD:
        assert live_release_problems(test_hosts, suffix) == [], point
        assert live_version(test_hosts, suffix) in ("1.1", "1.2"), point

    again = rollback(ws)
    assert {h["status"] for h in again.json()["hosts"]} <= {"deployed", "unchanged"}, again.output
    assert_on(test_hosts, "1.1", f"the rollback killed at {point}, run again")
    # completed, it is finished: the next plain rollback goes further back, never forth to 1.2
    rollback(ws)
    assert_on(test_hosts, "1.0", f"a rollback after the one killed at {point} was completed")


def test_a_rollback_killed_after_its_first_serial_batch_converges_then_goes_further(on_1_2, test_hosts):
    ws = on_1_2
    killed = rollback(ws, "--serial", "1", check=None, env={"GOLIVE_FAULT_KILL": "rollback:done"})
    assert killed.returncode == -signal.SIGKILL, killed.output
    assert versions(test_hosts) == {LEADER: "1.1", OTHER: "1.2"}  # split: the run stopped half way
    unlock_stale(ws, test_hosts, wait_for_agents(ws, test_hosts), "killed after the first batch")

    again = rollback(ws, "--serial", "1")
    reports = hosts_of(again)
    assert reports["mfg-prod-1"]["status"] == "unchanged" and reports["mfg-prod-1"]["details"]["already"]
    assert reports["mfg-prod-2"]["status"] == "deployed" and reports["mfg-prod-2"]["to_release"].startswith("1.1-")
    assert again.json()["target"]["reason"] == "continue"
    assert "already on 1.1-" in run_golive(ws, "rollback", "manufacturer", "production", "--to", "1.1", check=0).stdout
    assert_on(test_hosts, "1.1", "the interrupted rollback completed")

    # that rollback is finished now: the next one goes further back, not forth
    further = rollback(ws)
    assert further.json()["target"]["reason"] == "previous"
    assert_on(test_hosts, "1.0", "a rollback after a finished rollback")


def test_rollback_after_rollback_goes_further_back_never_forth(on_1_2, test_hosts):
    ws = on_1_2
    rollback(ws)
    assert_on(test_hosts, "1.1", "first rollback")
    for suffix in PROD:
        left = next(m for m in metas(test_hosts, suffix).values() if m["version"] == "1.2")
        assert left["state"] == "good" and left["rolled_back_at"], "the release left is marked, still verified"
    rollback(ws)
    assert_on(test_hosts, "1.0", "second rollback")
    refused = rollback(ws, check=3)  # nothing older than 1.0: a rollback goes back, never forth
    assert "no earlier good release" in refused.stdout and "--to" in refused.stdout, refused.output
    assert_on(test_hosts, "1.0", "a refused rollback changes nothing")
    # --to still names a release a rollback left; deploying it again clears the mark
    rollback(ws, "--to", "1.2")
    assert_on(test_hosts, "1.2", "--to a release rolled back from")
    for suffix in PROD:
        again = next(m for m in metas(test_hosts, suffix).values() if m["version"] == "1.2")
        assert "rolled_back_at" not in again


def test_a_partial_rollback_then_a_plain_one_converges_the_environment(on_1_2, test_hosts):
    ws = on_1_2
    rollback(ws, "--host", "mfg-prod-2")
    assert versions(test_hosts) == {LEADER: "1.2", OTHER: "1.1"}
    result = rollback(ws)
    reports = hosts_of(result)
    assert reports["mfg-prod-1"]["status"] == "deployed"
    assert reports["mfg-prod-2"]["status"] == "unchanged" and reports["mfg-prod-2"]["details"]["already"]
    assert_on(test_hosts, "1.1", "a plain rollback after a partial one")


def test_rollback_to_twice_the_second_is_already_on(on_1_2, test_hosts):
    ws = on_1_2
    rollback(ws, "--to", "1.0")
    assert_on(test_hosts, "1.0", "first --to 1.0")
    again = rollback(ws, "--to", "1.0")
    assert {h["status"] for h in again.json()["hosts"]} == {"unchanged"}, again.output
    text = run_golive(ws, "rollback", "manufacturer", "production", "--to", "1.0", check=0).stdout
    assert text.count("already on 1.0-") == 2, text
    for suffix in PROD:
        last = json.loads(host_path(test_hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
                          .read_text().splitlines()[-1])
        assert (last["action"], last["result"], last["version"]) == ("rollback", "unchanged", "1.0")
    assert_on(test_hosts, "1.0", "--to 1.0 again")


def test_a_host_whose_clock_was_behind_chooses_what_its_peers_choose(on_1_2, test_hosts):
    """mfg-prod-2's clock went two days back after 1.0 was deployed: by its own clock 1.0 is its newest
    release. Releases are ordered by the deploy sequence, so it rolls back to 1.1 like its peer."""
    for release, meta in metas(test_hosts, OTHER).items():
        if meta["version"] in ("1.1", "1.2"):
            meta["created_at"] = meta["created_at"].replace("20", "19", 1)  # decades back, even
            path = host_path(test_hosts, OTHER, f"/opt/northwind/.golive/releases/{release}.json")
            path.write_text(json.dumps(meta, sort_keys=True))
    result = rollback(on_1_2)
    assert hosts_of(result)["mfg-prod-2"]["to_release"].startswith("1.1-"), result.output
    assert result.json()["disagree"] == []
    assert_on(test_hosts, "1.1", "a host with its clock behind")


def test_hosts_that_disagree_go_to_the_leaders_choice_and_are_named(workspace, test_hosts, release_1_2):
    """1.2 went to mfg-prod-1 only: on its own, mfg-prod-2 (on 1.1) would go back to 1.0."""
    for artifact in release_1_2:
        (workspace / "build" / "releases" / artifact.name).write_bytes(artifact.read_bytes())
    deploy(workspace, "1.0")
    deploy(workspace, "1.1")
    deploy(workspace, "1.2", "--host", "mfg-prod-1")
    result = rollback(workspace)
    data = result.json()
    assert data["target"]["version"] == "1.1" and data["target"]["chosen_on"] == "mfg-prod-1"
    assert [d["host"] for d in data["disagree"]] == ["mfg-prod-2"]
    assert data["disagree"][0]["would_choose"].startswith("1.0-")
    assert hosts_of(result)["mfg-prod-2"]["status"] == "unchanged"
    assert_on(test_hosts, "1.1", "hosts that disagree")
    text = run_golive(workspace, "rollback", "manufacturer", "production", "--to", "1.1", check=0).stdout
    assert "already on 1.1-" in text


# -- refused before anything changes ----------------------------------------------------------

@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_rollback_to_a_release_no_host_keeps_is_refused_before_any_lock(engine, on_1_2, test_hosts):
    before = snapshot_hosts(test_hosts)
    refused = rollback(on_1_2, "--to", "0.9", engine=engine, check=2)
    assert "0.9" in refused.stderr and "is not kept on mfg-prod-1" in refused.stderr, refused.output
    assert "1.2 (live), 1.1, 1.0" in refused.stderr and "nothing was changed" in refused.stderr, refused.output
    assert "Traceback" not in refused.output
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []  # no lock, no ledger entry


# -- either engine completes what the other interrupted ---------------------------------------

# (engine killed, where, engine that runs it again). Ansible points are the role's task names
# (golive.adapters.faultpoints): `:end` fires on the first host's result while the other is still
# in that task; after "Cutover ...:end" a host is switched but its service still runs 1.2.
CROSS_ENGINE = [
    ("ansible", "Choose | Record the rollback's intent:end", "pyinfra"),
    ("ansible", "Cutover | Make the release live:end", "pyinfra"),
    ("ansible", "Finish | Record the run in the host's ledger:end", "pyinfra"),
    ("pyinfra", "cutover:done", "ansible"),
    ("pyinfra", "rollback:done", "ansible"),  # with --serial 1: the leader rolled back, the other not
]


@pytest.mark.parametrize("killed_engine, point, rerun_engine", CROSS_ENGINE, ids=[p for _, p, _ in CROSS_ENGINE])
def test_either_engine_completes_a_rollback_the_other_interrupted(killed_engine, point, rerun_engine, on_1_2,
                                                                    test_hosts):
    ws = on_1_2
    serial = ("--serial", "1") if point == "rollback:done" else ()
    killed = rollback(ws, *serial, engine=killed_engine, check=None, env={"GOLIVE_FAULT_KILL": point})
    assert killed.returncode == -signal.SIGKILL, f"the controller was not killed at {point}:\n{killed.output}"
    if killed_engine == "ansible":
        wait_for_remote_commands(test_hosts)
        for suffix in PROD:
            assert served_whole(test_hosts, suffix) == [], point
        if point.startswith("Cutover"):  # the first host switched to 1.1, its service still runs 1.2
            assert any(health_of(f"{test_hosts.net}.{s}")["version"] == "1.2" and live_version(test_hosts, s) == "1.1"
                       for s in PROD)
        # killed between the cutover and the restart, a host serves another release than it records:
        # status says so, a finding (exit 1)
        status = run_golive(ws, "status", "manufacturer", "production", "--json",
                            check=1 if point.startswith("Cutover") else 0).json()
    else:
        status = wait_for_agents(ws, test_hosts)
    unlock_stale(ws, test_hosts, status, f"killed at {point}")

    again = rollback(ws, engine=rerun_engine)
    assert {h["status"] for h in again.json()["hosts"]} <= {"deployed", "unchanged"}, again.output
    if point.startswith("Cutover"):  # "already on 1.1" but not serving it: restarted, then verified
        assert any(h.get("details", {}).get("restarted") for h in again.json()["hosts"]), again.output
    assert_on(test_hosts, "1.1", f"killed at {point} ({killed_engine}), run again with {rerun_engine}")
    further = rollback(ws, engine=killed_engine)  # finished now, whichever engine finished it
    assert further.json()["target"]["version"] == "1.0", further.output
    assert_on(test_hosts, "1.0", "the next rollback")


# -- both engines leave the same state ----------------------------------------------------------

RUN_SPECIFIC = ("rolled_back_at", "started_at", "finished_at", "run", "engine")


def comparable(value):
    """host_layout's documents without the times and the names of runs, which differ run to run."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in RUN_SPECIFIC}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def test_both_engines_leave_the_same_sequences_marks_intent_and_retention(workspace, release_1_2, test_hosts):
    """keep_releases 2 and a history of deploys and rollbacks (a re-deploy of a release rolled back
    from, a named rollback): every host's layout, release metadata (deploy sequence, marks), ledger
    and rollback intent are the same whichever engine ran it."""
    from tests.integration.test_ansible_engine import host_layout

    for artifact in release_1_2:
        (workspace / "build" / "releases" / artifact.name).write_bytes(artifact.read_bytes())
    app = workspace / "golive.yml"
    app.write_text(app.read_text().replace("keep_releases: 5", "keep_releases: 2"))

    def history(engine: str) -> dict:
        deploy(workspace, "1.0", "--engine", engine)
        deploy(workspace, "1.1", "--engine", engine)
        rollback(workspace, engine=engine)  # 1.1 is rolled back from
        deploy(workspace, "1.2", "--engine", engine)  # retention keeps 1.0: the next rollback's target
        deploy(workspace, "1.1", "--engine", engine)  # 1.1 again: its mark goes, it takes a new sequence
        assert_on(test_hosts, "1.1", engine)
        rollback(workspace, engine=engine)
        assert_on(test_hosts, "1.2", engine)
        rollback(workspace, "--to", "1.1", engine=engine)  # forth, by name
        assert_on(test_hosts, "1.1", engine)
        found = {}
        for suffix in PROD:
            intent = json.loads(host_path(test_hosts, suffix, "/opt/northwind/.golive/rollback.json").read_text())
            assert intent["finished_at"] if suffix == LEADER else "finished_at" not in intent
            found[suffix] = comparable({**host_layout(test_hosts, suffix), "intent": intent})
        return found

    by_pyinfra = history("pyinfra")
    test_hosts.reset()
    by_ansible = history("ansible")
    for suffix in PROD:
        assert by_ansible[suffix] == by_pyinfra[suffix], f"host .{suffix}"
    left = {m["version"]: (m.get("seq"), bool(m.get("rolled_back_at"))) for m in metas(test_hosts, LEADER).values()}
    assert left == {"1.1": (4, False), "1.2": (3, True)}, left  # 1.0 pruned by the second 1.1: nobody's target

"""The rollback target: golive.core.rollback on JSON fixtures (facts in, choice out), and the host
agent's half of the same rules on a real application root in a temporary directory: its release
order, its resolution of the environment's target, the intent it records, and retention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golive.agent.hostagent import Agent, StepError
from golive.core.rollback import NOTHING_LIVE, RollbackFacts, choose, newest_first, next_sequence

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "rollback").glob("*.json"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_rollback_choice_fixture(fixture):
    case = json.loads(fixture.read_text())
    choice = choose(RollbackFacts.from_agent(case["facts"]), to=case["to"], force=case["force"])
    expect = case["expect"]
    if "problem" in expect:
        assert choice.release is None and choice.problem == expect["problem"]
        return
    assert choice.problem is None, choice.problem
    assert (choice.release.id, choice.reason, choice.already) == (expect["release"], expect["reason"],
                                                                 expect["already"])


def test_next_sequence_is_one_more_than_the_highest_any_host_keeps():
    states = [{"releases": [{"id": "a", "seq": 3}, {"id": "b"}]}, {"releases": [{"id": "c", "seq": 7}]}, {}]
    assert next_sequence(states) == 8
    assert next_sequence([{"releases": [{"id": "old", "created_at": "2020-01-01"}]}]) == 1  # an older golive's


# -- the agent on a real application root -------------------------------------------------------

def host(tmp_path: Path, fixture: str, token: str = "t") -> Agent:
    """An application root holding the fixture's releases (directories and metadata) and intent,
    with `current` pointing to its live release."""
    case = json.loads((Path(__file__).parent / "fixtures" / "rollback" / f"{fixture}.json").read_text())
    root = tmp_path / "app"
    (root / ".golive" / "releases").mkdir(parents=True)
    for meta in case["facts"]["releases"]:
        (root / "releases" / meta["id"]).mkdir(parents=True)
        (root / ".golive" / "releases" / f"{meta['id']}.json").write_text(json.dumps(meta))
    if case["facts"].get("rollback"):
        (root / ".golive" / "rollback.json").write_text(json.dumps(case["facts"]["rollback"]))
    if case["facts"]["current"]:  # none: the host runs no release (never deployed, first install withdrawn)
        (root / "current").symlink_to(f"releases/{case['facts']['current']}")
    return Agent({"root": str(root), "token": token}, None)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_the_agent_orders_releases_as_the_core_does(fixture, tmp_path):
    agent = host(tmp_path, fixture.stem)
    facts = json.loads(fixture.read_text())["facts"]
    assert [m["id"] for m in agent.releases()] == [m["id"] for m in newest_first(facts["releases"])]


def select(agent: Agent, release: str, version: str, seq: int | None, match: str = "version",
           force: bool = False) -> dict:
    step = {"target": {"release": release, "version": version, "seq": seq, "match": match},
            "force": force, "by": {"operator": "op", "controller": "ctl", "engine": "pyinfra"}}
    return agent.step_select_rollback(step)


def test_the_agent_finds_the_environments_target_by_id_then_sequence_then_version(tmp_path):
    agent = host(tmp_path, "config_only_rollback")  # 1.0-a (1), 1.1-a (2), 1.1-b (3, live)
    assert select(agent, "1.1-a", "1.1", 2)["target"] == "1.1-a"  # the same id
    assert select(agent, "1.1-x", "1.1", 2)["target"] == "1.1-a"  # another host's id: the same deploy run
    chosen = select(agent, "1.1-x", "1.1", None)  # an older golive's release elsewhere: its version, live first
    assert (chosen["target"], chosen["already"]) == ("1.1-b", True)
    assert agent.vars["already"] and agent.vars["result"] == "unchanged" and agent.vars["previous"] is None
    with pytest.raises(StepError, match=r"release 1\.1-x is not kept on this host \(kept: 1\.1 \(live\), 1\.1, 1\.0\)"):
        select(agent, "1.1-x", "1.1", 2, match="id")
    with pytest.raises(StepError, match=r"release 0\.9 is not kept"):
        select(agent, "0.9-a", "0.9", 9)


def test_the_agent_refuses_a_target_marked_bad_unless_forced(tmp_path):
    agent = host(tmp_path, "named_bad")
    with pytest.raises(StepError, match="9.9-a is marked bad"):
        select(agent, "9.9-a", "9.9", None)
    assert select(agent, "9.9-a", "9.9", None, force=True)["target"] == "9.9-a"


def test_the_agent_records_the_intent_before_switching(tmp_path):
    agent = host(tmp_path, "previous_by_sequence", token="secret-token")
    select(agent, "1.1-a", "1.1", 2)
    intent = json.loads((Path(agent.state_dir) / "rollback.json").read_text())
    assert intent["target"] == "1.1-a" and intent["from"] == "1.2-a" and intent["epoch"] == 3
    assert intent["run"] == agent.run_id() and "secret-token" not in json.dumps(intent)
    assert (intent["operator"], intent["engine"]) == ("op", "pyinfra") and "finished_at" not in intent
    assert agent.step_finish_rollback({})["finished"]
    assert json.loads((Path(agent.state_dir) / "rollback.json").read_text())["finished_at"]
    other_run = Agent({"root": agent.root, "token": "another run"}, None)
    assert other_run.step_finish_rollback({}) == {"finished": False}


def test_an_already_on_host_keeps_what_the_interrupted_rollback_left(tmp_path):
    agent = host(tmp_path, "completes_an_unfinished_rollback_already_switched")
    select(agent, "1.1-a", "1.1", 2)
    assert json.loads((Path(agent.state_dir) / "rollback.json").read_text())["from"] == "1.2-a"


def test_marks_a_rollback_leaves_and_a_verification_clears(tmp_path):
    agent = host(tmp_path, "previous_by_sequence")
    agent.vars["target"] = "1.1-a"
    agent.step_mark_left({"release": "1.2-a"})
    assert agent.meta("1.2-a")["rolled_back_at"] and agent.meta("1.2-a")["state"] == "good"
    assert agent.step_mark_left({"release": "1.1-a"}) == {"skipped": True}  # never the target itself
    agent.step_mark({"release": "1.2-a", "state": "good", "seq": 4})  # a deploy makes it live again
    assert "rolled_back_at" not in agent.meta("1.2-a") and agent.meta("1.2-a")["seq"] == 4
    agent.step_mark({"release": "1.1-a", "state": "good"})  # a rollback's verification keeps the sequence
    assert agent.meta("1.1-a")["seq"] == 2


def prune(agent: Agent, keep: int) -> list[str]:
    return sorted(agent.step_prune({"keep": keep, "protect": []})["removed"])


def test_retention_keeps_the_next_rollbacks_target_past_releases_rolled_back_from(tmp_path):
    """1.3 live; 1.2 and 1.1 were rolled back from: a plain rollback goes to 1.0, which must stay."""
    agent = host(tmp_path, "previous_by_sequence")
    for release in ("1.2-a", "1.1-a"):
        agent.vars["target"] = None
        agent.step_mark_left({"release": release})
    (Path(agent.releases_dir) / "1.3-a").mkdir()
    Path(agent.meta_path("1.3-a")).write_text(json.dumps({"id": "1.3-a", "version": "1.3", "state": "good",
                                                          "seq": 4}))
    agent.step_cutover({"release": "1.3-a", "config_dir": str(tmp_path / "etc")})
    assert prune(agent, keep=2) == ["1.1-a"]  # 1.3 live, 1.2 the newest good ones; 1.0 the rollback target


def test_retention_keeps_what_an_unfinished_rollback_needs(tmp_path):
    """An unfinished rollback to 1.0 (recorded, not yet switched): its target and the release it
    leaves stay, though neither is among the newest."""
    agent = host(tmp_path, "previous_by_sequence")
    intent = {"run": "r", "target": "1.0-a", "version": "1.0", "from": "1.2-a", "epoch": 3}
    Path(agent.state_dir, "rollback.json").write_text(json.dumps(intent))
    assert prune(agent, keep=2) == []
    Path(agent.state_dir, "rollback.json").write_text(json.dumps({**intent, "finished_at": "2026-11-20T10:00:00Z"}))
    assert prune(agent, keep=2) == ["1.0-a"]  # finished: 1.0 is nobody's target any more


# -- a rollback with a database decides on the same target ----------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_the_database_decision_rolls_back_to_the_release_the_leader_chooses(fixture):
    """flows/database.py decides code-only, restore or down from the target's schema: that target is
    the one the rollback's leader chooses (an unfinished rollback's, never one a rollback left), a
    host already on it included (a rollback being completed switched it already)."""
    from golive.flows.database import environment_targets

    case = json.loads(fixture.read_text())
    choice = choose(RollbackFacts.from_agent(case["facts"]), to=case["to"], force=case["force"])
    found = environment_targets({"leader": case["facts"]}, case["to"], case["force"])
    if choice.release is None:
        assert isinstance(found, str) and choice.problem in found
        return
    assert not isinstance(found, str)
    assert found.targets["leader"]["id"] == choice.release.id
    intent = RollbackFacts.from_agent(case["facts"]).unfinished()
    left = intent.left if choice.already and intent is not None and intent.target == choice.release.id \
        and intent.left else case["facts"]["current"]
    assert found.leaves["leader"]["id"] == left


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_the_controller_resolves_the_environments_target_as_the_agent_does(fixture, tmp_path):
    """golive.core.rollback.resolve (the controller's plan of a database rollback) and
    Agent.step_select_rollback find the same release for each target spec a leader could send."""
    from golive.core.rollback import resolve

    case = json.loads(fixture.read_text())
    facts = RollbackFacts.from_agent(case["facts"])
    for meta in case["facts"]["releases"]:
        for spec in ({"release": meta["id"], "version": meta["version"], "seq": meta.get("seq"), "match": "id"},
                     {"release": meta["id"], "version": meta["version"], "seq": meta.get("seq"), "match": "version"},
                     {"release": "other-id", "version": meta["version"], "seq": meta.get("seq"), "match": "version"},
                     {"release": "other-id", "version": meta["version"], "seq": None, "match": "version"}):
            for force in (False, True):
                agent = host(tmp_path / f"{len(list(tmp_path.iterdir()))}", fixture.stem)
                try:
                    found = agent.step_select_rollback({"target": spec, "force": force, "by": {}})["target"]
                except StepError:
                    found = None
                kept = resolve(facts, spec, force=force)
                assert (kept.id if kept else None) == found, (spec, force)


def test_a_host_with_no_live_release_is_not_rolled_back(tmp_path):
    """A host that never had a release live (or whose first install was withdrawn) is skipped, with
    why; the others go to the leader's target."""
    from golive.flows.database import NOTHING_LIVE, environment_targets

    case = json.loads((Path(__file__).parent / "fixtures" / "rollback" / "previous_by_sequence.json").read_text())
    nothing = {**case["facts"], "current": None}
    found = environment_targets({"leader": case["facts"], "empty": nothing}, None, False)
    assert not isinstance(found, str)
    assert found.skipped == {"empty": NOTHING_LIVE} and "empty" not in found.targets
    assert NOTHING_LIVE.startswith("no live release: nothing to roll back")


NOTHING_LIVE_FIXTURES = [f for f in FIXTURES if f.stem.startswith("nothing_live")]


@pytest.mark.parametrize("fixture", NOTHING_LIVE_FIXTURES, ids=[f.stem for f in NOTHING_LIVE_FIXTURES])
@pytest.mark.parametrize("named", [False, True], ids=["plain", "named"])
def test_the_agent_leaves_a_host_that_runs_no_release_as_it_is(fixture, named, tmp_path):
    """Agent.step_select_rollback, for any target the environment could send (its id, its version,
    --to, forced or not): no target, no intent, the batch stops, the host's lock is given back
    (the leader's kept), as golive.core.rollback.resolve says (None, facts.nothing_live)."""
    from golive.core.rollback import resolve

    case = json.loads(fixture.read_text())
    facts = RollbackFacts.from_agent(case["facts"])
    assert facts.nothing_live
    for keep_lock in (False, True):
        agent = host(tmp_path / f"{keep_lock}", fixture.stem)
        lock = Path(agent.root) / ".golive" / "lock"
        lock.mkdir(parents=True)
        (lock / "owner.json").write_text(json.dumps({"token": "t"}))
        spec = {"release": "1.0-a", "version": "1.0", "seq": 1, "match": "id" if named else "version"}
        found = agent.step_select_rollback({"target": spec, "force": True, "by": {}, "keep_lock": keep_lock})
        assert found["nothing_live"] and found["target"] is None and found["from"] is None
        assert agent.vars["stop"] and agent.vars["result"] == "nothing_live"
        assert "target" not in agent.vars
        assert not (Path(agent.state_dir) / "rollback.json").exists()  # no intent: nothing to complete
        assert lock.exists() == keep_lock
        assert resolve(facts, spec, force=True) is None


def test_the_first_host_that_runs_a_release_chooses_for_the_environment():
    """golive.core.rollback.chooser: the leader, unless it runs no release; then the next that runs
    one (a database rollback's environment_targets follows it too)."""
    from golive.core.rollback import chooser
    from golive.flows.database import environment_targets

    live = json.loads((Path(__file__).parent / "fixtures" / "rollback" / "previous_by_sequence.json").read_text())
    idle = json.loads((Path(__file__).parent / "fixtures" / "rollback" / "nothing_live_first_install_failed.json")
                      .read_text())
    facts = {"a": RollbackFacts.from_agent(idle["facts"]), "b": RollbackFacts.from_agent(live["facts"]),
             "c": RollbackFacts.from_agent(live["facts"])}
    assert chooser(facts) == "b"
    assert chooser({"a": facts["b"], "b": facts["a"]}) == "a"
    assert chooser({"a": facts["a"]}) is None
    found = environment_targets({"a": idle["facts"], "b": live["facts"]}, None, False)
    assert not isinstance(found, str)
    assert (found.leader, found.targets["b"]["id"], list(found.skipped)) == ("b", "1.1-a", ["a"])
    nothing = environment_targets({"a": idle["facts"]}, None, False)
    assert isinstance(nothing, str) and "no host runs a release" in nothing


def test_the_intent_records_how_a_rollback_changes_the_database_and_a_re_run_keeps_it(tmp_path):
    agent = host(tmp_path, "previous_by_sequence")
    how = {"host": "db", "path": "restore", "backup": "b1", "schema_after": "0002"}
    agent.step_select_rollback({"target": {"release": "1.1-a", "version": "1.1", "seq": 2, "match": "id"},
                                "force": False, "by": {}, "database": how})
    intent = json.loads((Path(agent.state_dir) / "rollback.json").read_text())
    assert intent["database"] == how
    assert RollbackFacts.from_agent({"current": "1.2-a", "releases": [], "rollback": intent}).intent.database == how
    agent.step_cutover({"release": "1.1-a", "config_dir": str(tmp_path / "etc")})
    again = Agent({"root": agent.root, "token": "the re-run"}, None)
    again.step_select_rollback({"target": {"release": "1.1-a", "version": "1.1", "seq": 2, "match": "version"},
                                "force": False, "by": {}})  # a code-only completion carries it on
    intent = json.loads((Path(agent.state_dir) / "rollback.json").read_text())
    assert intent["database"] == how and intent["from"] == "1.2-a" and intent["run"] == again.run_id()


def test_every_verification_of_a_rollback_expects_the_databases_schema():
    """with_database: the verify steps and `serve` (a host already on the target) alike."""
    from golive.core.model import AppDefinition
    from golive.flows import steps
    from golive.flows.session import run_context

    app = AppDefinition(name="northwind", root="/opt/northwind", config_dir="/etc/northwind", environments=(),
                        templates=())
    run = run_context("rollback", "c", "e", "op")
    batch = steps.rollback_batch(run, app, {"release": "r1", "version": "1.0", "seq": 1, "match": "version"},
                                 False, "h")
    annotated = steps.with_database(batch, {"expect": {"schema_version": "0002"}})
    verifying = [s for key in ("steps", "on_failure") for s in annotated[key] if s["op"] in ("verify", "serve")]
    assert {s["op"] for s in verifying} == {"verify", "serve"}
    assert all(s.get("expect") == {"schema_version": "0002"} for s in verifying), verifying


def test_a_host_left_running_nothing_is_said_and_does_not_fail_the_run():
    from golive.core.model import Connection, Host
    from golive.flows.deploy import Target, describe_report, rollback_outcome
    from golive.flows.session import HostReport, nothing_live_report

    def a_host(name: str) -> Host:
        return Host(name=name, customer="c", environment="production", groups=(), vars={},
                    connection=Connection(address="127.0.0.1"))

    idle = nothing_live_report("production", "h1")
    assert not idle.failed and describe_report(idle) == f"h1: {NOTHING_LIVE}"
    done = HostReport(host="h2", environment="production", status="deployed", action="rollback",
                      from_release="1.1-a", to_release="1.0-a", live_release="1.0-a")
    targets = [Target(a_host("h1"), report=idle), Target(a_host("h2"), report=done)]
    outcome = rollback_outcome("c", "production", None, targets, {}, [])
    assert not outcome.failed and f"h1: {NOTHING_LIVE}" in outcome.text
    nothing = rollback_outcome("c", "production", None, targets[:1], {}, [])
    assert nothing.failed and "there is nothing to roll back" in nothing.text

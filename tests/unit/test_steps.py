"""Inputs in, agent request out: the batch builders of golive.flows.steps on JSON fixtures.

Each fixture in fixtures/steps/ names one builder (`builder`) and holds its inputs: the app
settings that matter (`app`: config_dir, shared, keep_releases, timeouts, store limits), the run
context (`run`), the desired release (`desired`: version, files with content/mode/secret), the
host's plan (`plan`: action, steps, from_release, file_changes), the artifact, the release's run
file (`release_run`: service, health, hooks, from which release_meta and release_run are built),
and the builder's own arguments (`args`: keep_lock, takeover, hooks, seq, target, ...). `expect`
is the whole request the builder must return, exactly: every step with its fields, `on_failure`,
`always`. Nothing in a request depends on the clock or the machine (times, the lock token and the
controller's paths are added on the host or by the session), so the expected requests are literal.

Regenerating: `GOLIVE_REGENERATE_FIXTURES=1 python -m pytest tests/unit/test_steps.py` rewrites the
`expect` of every fixture from what the builders return now (and writes it for a new fixture that
has none). A regenerated fixture states what the code does, not what it should do: read every
changed request (git diff) and check it is what a host must be sent before committing it.

Beside the fixtures, properties every request of every fixture must have: each op is one the host
agent implements, hook/restart steps carry golive.yml's timeouts, directions say "deploy" going
forward and "rollback" for the undo steps, a recovery step names a step of its own batch, and a
batch unlocks the host exactly when it does not keep the run's lock."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from golive.core.model import AppDefinition, EnvironmentSpec, ReleaseStore, Timeouts
from golive.core.plan import DesiredRelease, FileChange, HostPlan
from golive.core.release import Artifact, RenderedConfig, RenderedFile, release_id, run_settings_hash
from golive.flows import steps

HERE = Path(__file__).parent
FIXTURES = sorted((HERE / "fixtures" / "steps").glob("*.json"))
AGENT = HERE.parents[1] / "deploy" / "golive" / "agent" / "hostagent.py"
REGENERATE = os.environ.get("GOLIVE_REGENERATE_FIXTURES") == "1"
ARTIFACT_PATH = "/controller/workspace/build/releases"  # where the artifact is on the controller: never sent

BATCHES = ("begin_batch", "install_batch", "activate_batch", "rollback_begin_batch", "rollback_batch",
           "abort_batch", "release_batch", "read_state")
SECTIONS = ("steps", "on_failure", "always")


# -- the inputs, built as the flows build them ----------------------------------------------------

def app_from(data: dict[str, Any]) -> AppDefinition:
    store = data.get("store", {})
    return AppDefinition(name=data["name"], root=data["root"], config_dir=data["config_dir"],
                         environments=(EnvironmentSpec("prod"),), templates=(), shared=tuple(data.get("shared", ())),
                         keep_releases=data.get("keep_releases", 5), timeouts=Timeouts(**data.get("timeouts", {})),
                         store=ReleaseStore(max_members=store.get("max_members", 20000),
                                            max_unpacked_bytes=store.get("max_unpacked_bytes", 1024 ** 3)))


def desired_from(data: dict[str, Any]) -> DesiredRelease:
    files = tuple(RenderedFile(f["dest"], f["content"].encode(), int(f["mode"], 8), f.get("secret", False))
                  for f in data["files"])
    config = RenderedConfig("h", files)
    return DesiredRelease(release_id(data["version"], config.hash, run_settings_hash({}, {}, {})), data["version"],
                          f"northwind-{data['version']}.tar.gz", data["sha256"], config,
                          data.get("release_files", {}), tuple(data.get("ignore", ())))


def plan_from(data: dict[str, Any], host: str, desired: DesiredRelease) -> HostPlan:
    """`from_release` "$desired": the desired release itself (a repair's, which is live already)."""
    previous = desired.release if data["from_release"] == "$desired" else data["from_release"]
    changes = tuple(FileChange(dest, change, secret, "" if secret else f"--- {dest}\n+++ {dest}\n")
                    for dest, change, secret in data.get("file_changes", ()))
    return HostPlan(host, data["action"], tuple(data["steps"]), previous, desired.release,
                    data.get("reason", ""), changes)


def artifact_from(data: dict[str, Any] | None, desired: DesiredRelease) -> Artifact | None:
    if data is None:
        return None
    return Artifact(desired.version, desired.artifact_name, f"{ARTIFACT_PATH}/{desired.artifact_name}",
                    desired.artifact_sha256, data["size"])


def build(case: dict[str, Any]) -> dict[str, Any]:
    """The request the fixture's builder returns for the fixture's inputs."""
    builder, host = case["builder"], case.get("host", "web-1")
    app, run = app_from(case["app"]), steps.RunContext(**case["run"])
    desired = desired_from(case["desired"]) if "desired" in case else None
    args = dict(case.get("args", {}))
    known = {"keep_lock", "takeover", "hooks", "earlier_steps", "seq", "target", "force", "reason",
             "finished_rollback", "with_text", "history"}
    assert set(args) <= known, f"unknown args in the fixture: {sorted(set(args) - known)}"
    if builder == "begin_batch":
        return steps.begin_batch(run, app, desired, host, keep_lock=args.get("keep_lock", False),
                                 takeover=args.get("takeover"))
    if builder == "install_batch":
        plan = plan_from(case["plan"], host, desired)
        artifact = artifact_from(case["artifact"], desired)
        spec = case["release_run"]
        meta = steps.release_meta(app, desired)
        run_file = steps.release_run(desired, spec["service"], spec["health"], spec["hooks"])
        return steps.install_batch(run, app, plan, desired, artifact, meta, run_file, host,
                                   keep_lock=args.get("keep_lock", False))
    if builder == "activate_batch":
        plan = plan_from(case["plan"], host, desired)
        return steps.activate_batch(run, app, plan, desired, args["hooks"], args.get("earlier_steps", {}), host,
                                    keep_lock=args.get("keep_lock", False), seq=args.get("seq"),
                                    artifact=artifact_from(case.get("artifact"), desired))
    if builder == "rollback_begin_batch":
        return steps.rollback_begin_batch(run, app, host, takeover=args.get("takeover"))
    if builder == "rollback_batch":
        return steps.rollback_batch(run, app, args["target"], args["force"], host,
                                    keep_lock=args.get("keep_lock", False), takeover=args.get("takeover"))
    if builder == "abort_batch":
        return steps.abort_batch(run, host, args["reason"], keep_lock=args.get("keep_lock", False))
    if builder == "release_batch":
        return steps.release_batch(finished_rollback=args.get("finished_rollback", False))
    if builder == "read_state":
        return {"steps": [steps.read_state(app, desired, with_text=args.get("with_text", False),
                                           history=args.get("history", False))]}
    raise AssertionError(f"unknown builder {builder!r}")


def dump_case(case: dict[str, Any]) -> str:
    """A fixture as a person reads it: one input per line, one step of the request per line."""
    lines = []
    for key, value in case.items():
        if key == "expect":
            parts = []
            for section, content in value.items():
                if isinstance(content, list) and content:
                    items = ",\n".join(f"    {json.dumps(item)}" for item in content)
                    parts.append(f"  {json.dumps(section)}: [\n{items}]")
                else:
                    parts.append(f"  {json.dumps(section)}: {json.dumps(content)}")
            text = "{\n" + ",\n".join(parts) + "}"
        else:
            text = json.dumps(value)
        lines.append(f"{json.dumps(key)}: {text}")
    return "{" + ",\n ".join(lines) + "}\n"


CASES = {f.stem: json.loads(f.read_text()) for f in FIXTURES}


def all_steps(request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(section, step) for section in SECTIONS for step in request.get(section, [])]


# -- the fixtures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_request_fixture(fixture):
    case = json.loads(fixture.read_text())
    request = build(case)
    assert json.loads(json.dumps(request)) == request, "a request travels as JSON: it must survive it unchanged"
    if REGENERATE and case.get("expect") != request:
        case["expect"] = request
        fixture.write_text(dump_case(case))
    assert "expect" in case, f"{fixture.name} has no expect: GOLIVE_REGENERATE_FIXTURES=1 writes it (then read it)"
    assert request == case["expect"]


def test_every_batch_builder_has_fixtures():
    assert {case["builder"] for case in CASES.values()} == set(BATCHES)
    assert len(CASES) >= 12


# -- properties of every request -------------------------------------------------------------------

def test_every_op_is_one_the_host_agent_implements():
    """A builder can never send an op the agent lacks (it would fail on the host as an AttributeError)."""
    implemented = set(re.findall(r"^    def step_(\w+)\(self, args\):", AGENT.read_text(), re.MULTILINE))
    assert {"lock", "state", "cutover", "record", "unlock"} <= implemented  # the pattern still finds them
    sent = {step["op"] for case in CASES.values() for _, step in all_steps(build(case))}
    assert sent - implemented == set()


def test_hook_and_restart_steps_carry_the_timeouts_of_golive_yml():
    checked = 0
    for name, case in CASES.items():
        timeouts = app_from(case["app"]).timeouts
        # golive.yml's values, not the defaults: a builder falling back to a default would pass otherwise
        assert (timeouts.hook, timeouts.restart, timeouts.status) != (Timeouts().hook, Timeouts().restart,
                                                                      Timeouts().status), name
        for section, step in all_steps(build(case)):
            where = f"{name}: {section} {step.get('name')}"
            if step["op"] == "hook":
                assert step["timeout"] == timeouts.hook, where
            elif step["op"] in ("restart", "serve", "withdraw"):
                assert step["timeout"] == timeouts.restart, where
            elif step["op"] in ("state", "finish_if_unchanged"):
                assert step["status_timeout"] == timeouts.status, where
            else:
                assert "timeout" not in step, where
                continue
            checked += 1
    assert checked >= 20


def test_directions_say_deploy_going_forward_and_rollback_for_the_undo_steps():
    """GOLIVE_DIRECTION: a deploy's own steps go forward; its recovery and every step of a rollback go back."""
    checked = 0
    for name, case in CASES.items():
        for section, step in all_steps(build(case)):
            if step["op"] not in ("hook", "restart", "verify", "serve", "withdraw"):
                assert "direction" not in step, f"{name}: {step}"
                continue
            expected = "rollback" if case["builder"] == "rollback_batch" or section == "on_failure" else "deploy"
            assert step["direction"] == expected, f"{name}: {section} {step['name']}"
            checked += 1
    assert checked >= 30


def test_every_recovery_step_follows_a_step_of_its_own_batch():
    """An `after` naming no step of the batch would never run: a recovery silently lost."""
    for name, case in CASES.items():
        request = build(case)
        names = {step.get("name") or step["op"] for step in request["steps"]}
        for step in request.get("on_failure", []):
            assert set(step.get("after", ())) <= names, f"{name}: {step['name']} after {step.get('after')}"


def test_a_batch_unlocks_exactly_when_it_does_not_keep_the_runs_lock():
    """The leader keeps the environment's lock until release_batch frees it; every other host unlocks
    in the batch that ends its part (after a failure, or always)."""
    seen = set()
    for name, case in CASES.items():
        keep_lock = case.get("args", {}).get("keep_lock", False)
        request = build(case)
        unlocks = [(section, step) for section, step in all_steps(request) if step["op"] == "unlock"]
        builder = case["builder"]
        if builder in ("rollback_begin_batch", "read_state"):
            assert unlocks == [], name
        elif builder == "release_batch":
            # in `always`: freed even when marking a finished rollback fails
            assert [s for s, _ in unlocks] == ["always"], name
        else:
            section = {"begin_batch": "on_failure", "install_batch": "on_failure"}.get(builder, "always")
            assert [s for s, _ in unlocks] == ([] if keep_lock else [section]), name
            # never forced: the host refuses to remove another run's lock
            assert all(step["force"] is False for _, step in unlocks), name
            seen.add((builder, keep_lock))
    assert {(b, k) for b in ("begin_batch", "install_batch", "activate_batch", "rollback_batch", "abort_batch")
            for k in (True, False)} <= seen


def test_a_request_holds_nothing_the_session_adds_or_the_controller_keeps():
    """The lock token travels once, beside the request (HostSession.call); the artifact's path and a
    plan's diffs stay on the controller."""
    for name, case in CASES.items():
        text = json.dumps(build(case))
        assert case["run"]["token"] not in text, name
        assert ARTIFACT_PATH not in text, name
        assert "+++ " not in text, name



# -- what the host agent does with two of these requests (both were defects these tests found) ---------

def agent_root(tmp_path: Path, releases: tuple[str, ...], live: str | None) -> Path:
    root = tmp_path / "app"
    (root / ".golive" / "releases").mkdir(parents=True)
    for release in releases:
        (root / "releases" / release).mkdir(parents=True)
        (root / ".golive" / "releases" / f"{release}.json").write_text(json.dumps({"id": release, "state": "good"}))
    if live:
        (root / "current").symlink_to(f"releases/{live}")
    return root


def test_the_leader_is_unlocked_even_when_marking_the_rollback_finished_fails(tmp_path, monkeypatch):
    from golive.agent import hostagent

    root = agent_root(tmp_path, ("0.9-11111111",), "0.9-11111111")
    run = steps.RunContext(**CASES["release_after_a_finished_rollback"]["run"])
    agent = hostagent.Agent({"root": str(root), "token": "tok", "steps": [steps.lock(run)]}, None)
    assert agent.run()["ok"]
    (root / ".golive" / "rollback.json").write_text(json.dumps({"run": agent.run_id(), "target": "0.9-11111111"}))
    write_atomic = hostagent.write_atomic

    def disk_full_for_the_intent(path, data, mode=0o644):
        if path.endswith("rollback.json"):
            raise OSError(28, "No space left on device", path)
        return write_atomic(path, data, mode)

    monkeypatch.setattr(hostagent, "write_atomic", disk_full_for_the_intent)
    answer = hostagent.Agent({**steps.release_batch(finished_rollback=True), "root": str(root), "token": "tok"},
                             None).run()
    assert answer["failed_step"] == "finish"  # the failure this test is about did happen
    assert not (root / ".golive" / "lock").exists(), [(s["name"], s["ok"], s.get("error")) for s in answer["steps"]]


def test_on_rollback_after_a_failed_before_cutover_hook_is_told_the_live_release(tmp_path):
    """roles/golive runs it in the live release (golive_previous: golive_current): both engines alike."""
    case = CASES["activate_install_over_previous_with_hooks"]
    app, run, desired = app_from(case["app"]), steps.RunContext(**case["run"]), desired_from(case["desired"])
    previous = case["plan"]["from_release"]
    root = agent_root(tmp_path, (previous, desired.release), previous)
    hooks = {"before_cutover": "exit 3", "after_cutover": "", "on_rollback": 'echo "$GOLIVE_RELEASE $(pwd)"'}
    request = steps.activate_batch(run, app, plan_from(case["plan"], "web-2", desired), desired, hooks, {}, "web-2",
                                   keep_lock=True, seq=7)
    from golive.agent.hostagent import Agent

    answer = Agent({**request, "root": str(root), "token": "tok"}, None).run()
    assert answer["failed_step"] == "before_cutover"
    on_rollback = next(s for s in answer["steps"] if s["name"] == "on_rollback")
    assert on_rollback["data"]["output"].split() == [previous, os.path.realpath(root / "releases" / previous)]

"""The host lock itself, driven through the agent's steps on a local directory: taken whole or not
at all, re-entrant for its own run only, released whole. (The races over SSH are in
test_concurrency.py; this pins the protocol that the Ansible roles follow too.)"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest

from golive.agent.hostagent import Agent, LockHeld, StepError

REPO = Path(__file__).resolve().parents[2]

OWNER = {"operator": "alice", "controller": "laptop", "pid": 1, "pid_start": "", "action": "deploy",
         "customer": "c", "environment": "e", "engine": "pyinfra"}


def agent(root, token: str) -> Agent:
    return Agent({"root": str(root), "token": token, "steps": []}, None)


def test_a_lock_is_taken_once_and_names_its_holder(tmp_path):
    assert agent(tmp_path, "run-a").step_lock({"owner": OWNER}) == {"locked": True}
    with pytest.raises(LockHeld) as held:
        agent(tmp_path, "run-b").step_lock({"owner": {**OWNER, "operator": "bob"}})
    assert held.value.holder["operator"] == "alice" and "token" not in held.value.holder
    assert agent(tmp_path, "run-a").step_lock({"owner": OWNER})["already"] is True  # its own run: re-entrant
    assert sorted(os.listdir(tmp_path / ".golive")) == ["lock"]  # no prepared directory left behind


def test_only_its_own_run_releases_a_lock_and_the_lock_goes_whole(tmp_path):
    agent(tmp_path, "run-a").step_lock({"owner": OWNER})
    with pytest.raises(StepError, match="another run"):
        agent(tmp_path, "run-b").step_unlock({})
    released = agent(tmp_path, "run-a").step_unlock({})
    assert released["unlocked"] is True and released["holder"]["operator"] == "alice"
    assert os.listdir(tmp_path / ".golive") == []


def test_an_empty_lock_directory_is_never_taken_over(tmp_path):
    """A lock directory without its owner (left by an older golive) stays a lock: reported, not replaced."""
    (tmp_path / ".golive" / "lock").mkdir(parents=True)
    with pytest.raises(LockHeld) as held:
        agent(tmp_path, "run-a").step_lock({"owner": OWNER})
    assert held.value.holder == {"incomplete": True}


def _take(root: str, token: str, start, results) -> None:
    start.wait()
    try:
        agent(root, token).step_lock({"owner": {**OWNER, "operator": token}})
        results.put((token, "locked"))
    except LockHeld as held:
        results.put((token, held.holder.get("operator", "INCOMPLETE")))
    except Exception as error:  # anything else is a failure of the protocol: report it
        results.put((token, repr(error)))


def test_many_runs_racing_for_one_lock_exactly_one_wins_and_all_see_it_whole(tmp_path):
    for attempt in range(20):
        root = tmp_path / str(attempt)
        start, results = multiprocessing.Event(), multiprocessing.Queue()
        racers = [multiprocessing.Process(target=_take, args=(str(root), f"run-{i}", start, results))
                  for i in range(6)]
        for racer in racers:
            racer.start()
        start.set()
        for racer in racers:
            racer.join(10)
        outcomes = dict(results.get(timeout=5) for _ in racers)
        winners = [token for token, outcome in outcomes.items() if outcome == "locked"]
        assert len(winners) == 1, outcomes
        # every loser read the winner's name: nobody ever saw a lock without its owner
        assert {outcome for token, outcome in outcomes.items() if token not in winners} == set(winners), outcomes


# -- taking over the lock of a run that is gone ----------------------------------------------------
# The controller proves the holder dead (golive.adapters.locks.takeover_allowed) and names it; the
# agent (and the role's takeover script, raced against it below) replaces exactly that lock, or
# reports whoever holds the host by then. Nobody ever removes a live lock.

STALE = {**OWNER, "operator": "crashed", "since": "2026-11-25T10:00:00.000Z"}
ENTRY = {"action": "takeover", "host": "h", "detail": "took over"}


def stale_lock(root) -> dict:
    """A lock left by a run that died (its owner file as the agent writes it), and its holder as
    the agent reports it (without the token)."""
    lock = root / ".golive" / "lock"
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps({**STALE, "token": "dead" * 8}, sort_keys=True))
    return dict(STALE)


def test_a_named_stale_lock_is_taken_over_and_recorded(tmp_path):
    stale = stale_lock(tmp_path)
    with pytest.raises(LockHeld) as held:
        agent(tmp_path, "run-a").step_lock({"owner": OWNER})  # without the controller's word: held
    assert held.value.holder == stale
    taken = agent(tmp_path, "run-a").step_lock({"owner": OWNER, "takeover": stale, "entry": ENTRY})
    assert taken == {"locked": True, "took_over": stale}
    owner = json.loads((tmp_path / ".golive" / "lock" / "owner.json").read_text())
    assert owner["token"] == "run-a" and owner["operator"] == "alice"
    entry = json.loads((tmp_path / ".golive" / "ledger.jsonl").read_text().splitlines()[-1])
    assert entry["action"] == "takeover" and entry["stale_lock"] == stale and entry["result"] == "ok"
    assert sorted(os.listdir(tmp_path / ".golive")) == ["ledger.jsonl", "lock"]  # nothing else left behind


@pytest.mark.parametrize("named", [
    {**STALE, "pid": 2},                      # another process of that controller
    {**STALE, "since": "2026-11-25T11:00Z"},  # a later run of the same pid
    {**STALE, "controller": "elsewhere"},
    {"incomplete": True},
], ids=["other-pid", "other-since", "other-controller", "incomplete"])
def test_only_the_very_lock_named_is_taken_over(tmp_path, named):
    stale = stale_lock(tmp_path)
    with pytest.raises(LockHeld) as held:
        agent(tmp_path, "run-a").step_lock({"owner": OWNER, "takeover": named, "entry": ENTRY})
    assert held.value.holder == stale
    assert json.loads((tmp_path / ".golive" / "lock" / "owner.json").read_text())["operator"] == "crashed"
    assert not (tmp_path / ".golive" / "ledger.jsonl").exists()


def role_script(name: str) -> str:
    import yaml

    variables = yaml.safe_load((REPO / "roles" / "golive" / "vars" / "main.yml").read_text())
    return variables[name]


def role_takeover_script() -> str:
    return role_script("golive_takeover_script")


def _take_over(root: str, token: str, engine: str, stale: dict, stale_text: str, start, results) -> None:
    start.wait()
    owner = {**OWNER, "operator": token}
    try:
        if engine == "agent":
            agent(root, token).step_lock({"owner": owner, "takeover": stale, "entry": {**ENTRY, "by": token}})
            results.put((token, "locked"))
            return
        state = os.path.join(root, ".golive")
        done = subprocess.run(
            ["/bin/sh", "-c", role_takeover_script()], input=json.dumps({**owner, "token": token}), text=True,
            capture_output=True,
            env={"PATH": os.environ["PATH"], "GOLIVE_STATE_DIR": state, "GOLIVE_LOCK_DIR": state + "/lock",
                 "GOLIVE_STALE_OWNER": base64.b64encode(stale_text.encode()).decode(),
                 "GOLIVE_LEDGER": state + "/ledger.jsonl",
                 "GOLIVE_TAKEOVER_ENTRY": base64.b64encode(json.dumps({**ENTRY, "by": token}).encode()).decode()})
        if done.returncode == 0:
            results.put((token, "locked"))
        elif done.returncode == 75:
            results.put((token, json.loads(done.stdout).get("operator", "INCOMPLETE") if done.stdout else "EMPTY"))
        else:
            results.put((token, f"exit {done.returncode}: {done.stderr}"))
    except LockHeld as held:
        results.put((token, held.holder.get("operator", "INCOMPLETE")))
    except Exception as error:  # anything else is a failure of the protocol: report it
        results.put((token, repr(error)))


def test_runs_of_both_engines_racing_to_take_over_one_stale_lock_exactly_one_does(tmp_path):
    """Six runs (three agents, three role scripts) take over the same stale lock at once: one wins,
    the others report the winner, one takeover is in the ledger."""
    for attempt in range(12):
        root = tmp_path / str(attempt)
        stale = stale_lock(root)
        stale_text = (root / ".golive" / "lock" / "owner.json").read_text()
        start, results = multiprocessing.Event(), multiprocessing.Queue()
        racers = [multiprocessing.Process(target=_take_over, args=(str(root), f"run-{i}", engine, stale, stale_text,
                                                                   start, results))
                  for i, engine in enumerate(["agent", "role"] * 3)]
        for racer in racers:
            racer.start()
        start.set()
        for racer in racers:
            racer.join(30)
        outcomes = dict(results.get(timeout=5) for _ in racers)
        winners = [token for token, outcome in outcomes.items() if outcome == "locked"]
        assert len(winners) == 1, outcomes
        assert {outcome for token, outcome in outcomes.items() if token not in winners} == set(winners), outcomes
        ledger = (root / ".golive" / "ledger.jsonl").read_text().splitlines()
        assert [json.loads(line)["by"] for line in ledger] == winners
        assert sorted(os.listdir(root / ".golive")) == ["ledger.jsonl", "lock"]


# -- the role's scripts read what the command module writes to them ---------------------------------
# ansible.builtin.command writes `stdin:` to the script right after starting it. A script that can
# exit before reading it (a lock found held) makes that write fail with EPIPE when the script wins
# the race, and the task fails with "Error executing command." instead of the script's answer.

@pytest.mark.parametrize("script, situation", [
    ("golive_lock_script", "free"),
    ("golive_lock_script", "held"),
    ("golive_takeover_script", "stale"),
    ("golive_takeover_script", "taken by another run since"),
])
def test_a_role_lock_script_reads_its_owner_whole_on_every_path(tmp_path, script, situation):
    state = tmp_path / ".golive"
    stale_text = ""
    if situation != "free":
        stale_lock(tmp_path)
        stale_text = (state / "lock" / "owner.json").read_text()
    named = stale_text if situation == "stale" else stale_text.replace("crashed", "someone else")
    reader, writer = os.pipe()
    os.write(writer, json.dumps({**OWNER, "token": "run-a"}).encode())
    os.close(writer)
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", role_script(script)], stdin=reader, capture_output=True, text=True,
            env={"PATH": os.environ["PATH"], "GOLIVE_STATE_DIR": str(state), "GOLIVE_LOCK_DIR": f"{state}/lock",
                 "GOLIVE_STALE_OWNER": base64.b64encode(named.encode()).decode(),
                 "GOLIVE_LEDGER": f"{state}/ledger.jsonl",
                 "GOLIVE_TAKEOVER_ENTRY": base64.b64encode(json.dumps(ENTRY).encode()).decode()})
        os.set_blocking(reader, False)
        assert os.read(reader, 1 << 16) == b"", f"{script} ({situation}) left its stdin unread"
    finally:
        os.close(reader)
    assert done.returncode == (75 if situation in ("held", "taken by another run since") else 0), done.stderr
    if done.returncode == 0:
        owner = json.loads((state / "lock" / "owner.json").read_text())
        assert owner["token"] == "run-a" and owner["operator"] == "alice"  # the owner as it came, byte for byte

"""The host lock itself, driven through the agent's steps on a local directory: taken whole or not
at all, re-entrant for its own run only, released whole. (The races over SSH are in
test_concurrency.py; this pins the protocol that the Ansible roles follow too.)"""

from __future__ import annotations

import multiprocessing
import os

import pytest

from golive.agent.hostagent import Agent, LockHeld, StepError

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

"""The fault tests' kill at a host point lands when every host of the batch is at that point.

Killed at the first host's announcement, a host whose agent session had not started yet stays
before the point: a kill 'at cutover:before' then left one host on the old release and one on the
new, by chance (a CI run showed it). golive.adapters.faultpoints.AgentSession waits for every open
session to announce the point, or to end."""

from __future__ import annotations

import os
import signal

import pytest

from golive.adapters import faultpoints

POINT = "cutover:before"
SAID = faultpoints.ANNOUNCEMENT + POINT.encode() + b"\n"


@pytest.fixture
def kills(monkeypatch):
    """The SIGKILLs the controller would send itself, recorded instead."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setenv(faultpoints.ENV, POINT)
    monkeypatch.setattr(faultpoints.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(faultpoints.AgentSession, "open", set())
    monkeypatch.setattr(faultpoints.AgentSession, "announced", set())
    return sent


def test_no_session_without_an_armed_point(monkeypatch):
    monkeypatch.delenv(faultpoints.ENV, raising=False)
    assert faultpoints.agent_session() is None


def test_the_kill_waits_for_every_open_session_to_announce(kills):
    first, second = faultpoints.agent_session(), faultpoints.agent_session()
    first.output(b"golive-progress {}\n" + SAID)
    first.output(b"golive-progress {}\n" + SAID + b"\n\n")  # the agent repeats itself while it waits
    assert kills == []
    second.output(b"golive-progress {}\n")
    assert kills == []
    second.output(SAID)
    assert kills == [(os.getpid(), signal.SIGKILL)]


def test_a_session_that_ends_without_the_point_is_not_waited_for(kills):
    first, second, third = (faultpoints.agent_session() for _ in range(3))
    first.output(SAID)
    second.ended()  # that host's batch ended before the point (a failure, an unchanged host)
    assert kills == []
    third.ended()
    assert kills == [(os.getpid(), signal.SIGKILL)]


def test_sessions_that_end_before_anyone_announced_kill_nothing(kills):
    begin = [faultpoints.agent_session() for _ in range(2)]  # the begin batch: no host reaches cutover
    for session in begin:
        session.output(b'{"ok": true}\n')
        session.ended()
    assert kills == []
    activate = faultpoints.agent_session()
    activate.output(SAID)
    assert kills == [(os.getpid(), signal.SIGKILL)]


def test_another_points_announcement_is_not_this_one(kills):
    session = faultpoints.agent_session()
    session.output(faultpoints.ANNOUNCEMENT + b"cutover:done\n")
    assert kills == []

"""What the controller makes of what an agent's SSH channel returned (golive.adapters.remote.call_agent):
the channel's exit code and output in, the answer out. A session that ends without the agent's answer
is a lost connection (the host finishes or rolls back on its own), whatever progress lines came first."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from golive.adapters.remote import PROGRESS, call_agent
from golive.core.model import Connection, Host

ANSWER = json.dumps({"ok": True, "steps": [{"name": "lock", "ok": True, "seconds": 0.01}], "result": "ok"}).encode()
STEP = PROGRESS + b'{"step": "restart", "state": "running"}'


def answer_of(code: int, stdout: bytes, stderr: bytes = b""):
    connector = SimpleNamespace(exec_stream=lambda *args, **kwargs: (code, stdout, stderr))
    host = Host(name="h1", customer="c", environment="staging", groups=("staging",), vars={},
                connection=Connection(address="127.0.0.1"))
    connected = SimpleNamespace(host=host, pyinfra_host=SimpleNamespace(connector=connector))
    return call_agent(connected, {"steps": []}, on_step=lambda *event: None)  # a stand-in for Connected


@pytest.mark.parametrize("stdout", [b"", STEP + b"\n", STEP + b"\n" + STEP + b"\n"],
                         ids=["nothing", "one progress line", "progress lines"])
def test_a_session_that_ends_without_the_answer_is_a_lost_connection(stdout):
    answer = answer_of(-1, stdout)
    assert answer.transport_error and answer.result == "unknown"
    assert answer.error.startswith("connection lost: the SSH session ended before the host answered"), answer.error


def test_the_answer_after_progress_lines_is_read():
    answer = answer_of(0, STEP + b"\n" + ANSWER + b"\n")
    assert answer.ok and [s.name for s in answer.steps] == ["lock"]


def test_an_agent_that_dies_saying_why_is_reported_with_its_words():
    answer = answer_of(1, STEP + b"\n", b"Traceback ...\nMemoryError\n")
    assert answer.transport_error and answer.error == "agent failed (exit 1): MemoryError"

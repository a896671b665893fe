"""Runs the host agent over a connected host: one exec channel, one JSON answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from golive.adapters import faultpoints
from golive.adapters.transport import Connected
from golive.agent import command_line, request_header


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class AgentAnswer:
    """What one agent batch did on one host."""

    ok: bool
    steps: list[StepResult]
    result: str = "ok"
    failed_step: str | None = None
    error: str | None = None
    holder: dict[str, Any] | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    current: str | None = None  # the live release when the batch ended
    transport_error: bool = False  # the batch's outcome is unknown (connection lost)

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def data(self, name: str) -> dict[str, Any]:
        step = self.step(name)
        return step.data if step and step.data else {}


PROGRESS = b"golive-progress "


def call_agent(connected: Connected, request: dict[str, Any], payload: Iterable[bytes] = (),
               timeout: float | None = 300, module: str = "hostagent",
               on_progress: Callable[[str], None] | None = None,
               on_step: Callable[[str, str, float | None], None] | None = None) -> AgentAnswer:
    """Run one agent batch. `on_progress` sees each progress line a long step writes (a migration
    reporting what it applies) as it arrives; `on_step` (name, running|ok|failed, seconds) each step
    of the batch starting and ending, as the host runs it (Agent.report_step)."""
    host = connected.host
    command = command_line(host.connection.python, sudo=bool(host.vars.get("ansible_become")))
    watch = None
    fault = faultpoints.agent_session()  # test hook only: see golive.adapters.faultpoints
    if fault is not None:
        request = {**request, "fault_point": faultpoints.armed()}
        watch = fault.output
    if on_step is not None:
        request = {**request, "report_steps": True}  # Agent.report_step
    if on_progress is not None or on_step is not None:
        watch = _progress_watch(on_progress, watch, on_step)
    try:
        code, stdout, stderr = connected.pyinfra_host.connector.exec_stream(
            command, request_header(request, module), payload, timeout=timeout, on_output=watch)
    except Exception as error:  # the connection broke mid-batch: the host finishes or rolls back alone
        return AgentAnswer(False, [], "unknown", error=f"connection lost: {error or type(error).__name__}",
                           transport_error=True)
    finally:
        if fault is not None:
            fault.ended()
    if code == 127 or (code != 0 and b"not found" in stderr):
        return AgentAnswer(False, [], "failed", error=f"{host.connection.python} not found on the host "
                                                      f"(set ansible_python_interpreter)", transport_error=True)
    # progress lines (PROGRESS, fault-point announcements) come before the answer, the last line
    answered = [line for line in stdout.strip().split(b"\n") if line and not line.startswith(PROGRESS)]
    if code == -1 and not answered:  # the channel closed without an exit status or an answer
        return AgentAnswer(False, [], "unknown", error="connection lost: the SSH session ended before the host "
                                                      "answered (sshd stopped, host down or network failure)",
                           transport_error=True)
    try:
        # The answer is the last line (a fault-point announcement may precede it, see golive.adapters.faultpoints).
        answer = json.loads(stdout.strip().rsplit(b"\n", 1)[-1].decode("utf-8"))
    except ValueError:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return AgentAnswer(False, [], "unknown", error=f"agent failed (exit {code}): {detail[0]}",
                           transport_error=True)
    steps = [StepResult(s["name"], s["ok"], s["seconds"], s.get("data") or {}, s.get("error")) for s in answer["steps"]]
    return AgentAnswer(answer["ok"], steps, answer.get("result", "ok"), answer.get("failed_step"),
                       answer.get("error"), answer.get("holder"), answer.get("vars") or {},
                       answer.get("current"))


def _progress_watch(on_progress: Callable[[str], None] | None, then: Callable[[bytes], None] | None,
                    on_step: Callable[[str, str, float | None], None] | None = None) -> Callable[[bytes], None]:
    seen = [0]

    def watch(data: bytes) -> None:
        lines = data.split(b"\n")
        for line in lines[seen[0]:len(lines) - 1]:  # complete lines not seen yet
            if line.startswith(PROGRESS):
                with contextlib.suppress(ValueError, AttributeError, TypeError):  # not a progress line after all
                    event = json.loads(line[len(PROGRESS):])
                    if "step" in event:
                        if on_step is not None:
                            seconds = event.get("seconds")
                            on_step(str(event["step"]), str(event.get("state")),
                                    float(seconds) if seconds is not None else None)
                    elif on_progress is not None:
                        on_progress(str(event.get("text", "")))
        seen[0] = max(seen[0], len(lines) - 1)
        if then is not None:
            then(data)

    return watch

"""Test hook: kill the controller dead at one named point of a deploy (tests/faults uses it).

Active only while the environment variable GOLIVE_FAULT_KILL names a point; otherwise every
function here does nothing. A real crash cannot be timed to the millisecond, so the fault tests
ask golive to SIGKILL itself exactly there.

pyinfra engine:

- controller points (``begin:done``, ``upload:half``, ``install:done``, ``activate:done``): the
  controller kills itself when its flow calls ``reached(point)``;
- host points (``<step>:before`` and ``<step>:done`` for any agent step, plus ``unpack:half``,
  ``restart:running`` and ``verify:running`` inside those steps): the point travels in the agent
  request; the agent, on reaching it, announces it on its output and waits until its controller
  is gone. The controller kills itself once every agent session it has open has announced the
  point or ended: every host of the batch is then at that point, whichever host got there first
  (killed at the first announcement, a host whose session had not started yet would be left
  before it). The agents then go on exactly as they would after a real crash of the controller.

Ansible engine (``--engine ansible``): the points are the role's task names. golive's stdout
callback (engines/callback_plugins/golive_events.py) hands every task start and task result to
``AnsiblePoint``, which kills the whole run (golive, ansible-playbook, its workers and their ssh
clients: ``kill_run``) at

- ``<task>:start`` - the task starts, before any host runs it;
- ``<task>:end`` - the first result of the task arrives from a host that ran it;
- ``<task>:start+<seconds>`` - that long after the task started: inside a step that runs for a
  while on the host (a restart, an upload the test slowed down);

where ``<task>`` is the beginning of a task name as the role writes it, e.g.
``Cutover | Make the release live:end``; the first task that matches is the point. What runs on
a host at that moment keeps running without its controller, as after a real crash.

SIGKILL cannot be caught or cleaned up after, so what the tests see is what a power cut or an
OOM kill of the controller would leave.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import ClassVar

ENV = "GOLIVE_FAULT_KILL"
ANNOUNCEMENT = b"golive-fault-point "


def armed() -> str | None:
    """The point named in GOLIVE_FAULT_KILL, or None (the normal case)."""
    return os.environ.get(ENV) or None


def reached(point: str) -> None:
    """A controller point: SIGKILL this process when it is the armed one."""
    if armed() == point:
        os.kill(os.getpid(), signal.SIGKILL)


class AgentSession:
    """One agent session of an armed run (adapters/remote.call_agent opens one per batch and host)."""

    open: ClassVar[set[AgentSession]] = set()  # the sessions still running
    announced: ClassVar[set[AgentSession]] = set()  # the open sessions whose agent announced the point

    def __init__(self, point: str) -> None:
        self.announcement = ANNOUNCEMENT + point.encode()
        AgentSession.open.add(self)

    def output(self, data: bytes) -> None:
        """The agent's output so far, as it arrives."""
        if self not in AgentSession.announced and self.announcement in data:
            AgentSession.announced.add(self)
            self._kill_when_all_there()

    def ended(self) -> None:
        was_waited_for = bool(AgentSession.announced)
        AgentSession.open.discard(self)
        AgentSession.announced.discard(self)
        if was_waited_for:
            self._kill_when_all_there()

    @staticmethod
    def _kill_when_all_there() -> None:
        if AgentSession.open <= AgentSession.announced:
            os.kill(os.getpid(), signal.SIGKILL)


def agent_session() -> AgentSession | None:
    """A session that watches for the armed point, or None (the normal case)."""
    point = armed()
    return AgentSession(point) if point else None


# -- Ansible engine ---------------------------------------------------------------------------

class AnsiblePoint:
    """The armed Ansible point, fed by golive's callback plugin inside ansible-playbook."""

    def __init__(self, point: str) -> None:
        self.task, _, moment = point.rpartition(":")
        self.moment, _, delay = moment.partition("+")
        self.delay = float(delay or 0)
        self.fired = False

    @classmethod
    def from_environment(cls) -> AnsiblePoint | None:
        point = armed()
        return cls(point) if point and ":" in point else None

    def task_started(self, name: str) -> None:
        if self.fired or self.moment != "start" or not name.startswith(self.task):
            return
        self.fired = True
        if self.delay:
            threading.Timer(self.delay, kill_run).start()
        else:
            kill_run()

    def task_result(self, name: str) -> None:
        if not self.fired and self.moment == "end" and name.startswith(self.task):
            self.fired = True
            kill_run()


def kill_run() -> None:
    """SIGKILL golive's Ansible run, from inside ansible-playbook: golive (its parent), every
    process ansible-playbook started (workers, their ssh clients), then ansible-playbook itself.
    ssh's ControlPersist master is not among them: it left the process tree when it started, and
    a real crash of the controller would leave it too."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            if b"golive" in handle.read():
                os.kill(os.getppid(), signal.SIGKILL)
    except OSError:
        pass
    for _ in range(5):  # a worker may fork while we look
        children = _descendants(os.getpid())
        if not children:
            break
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found

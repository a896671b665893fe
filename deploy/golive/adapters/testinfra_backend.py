"""How a Testinfra check's command runs on a host: over golive's own SSH sessions.

Testinfra's paramiko:// backend accepts any host key, and its ssh:// backend opens a connection per
assertion unless a ControlPath is set. golive therefore gives Testinfra a backend of its own,
`golive://HOST`: every host is connected once, in parallel, before the first check (pyinfra's
connector with TCP_NODELAY and strict host keys against the inventory's known_hosts), and each
Testinfra command is one exec channel on that connection (a few milliseconds). This is Testinfra's
own split: modules say what to test (checks/), a backend says how a command runs (here).

pytest runs one check on one host at a time; CommandFanOut lets the hosts' commands run side by
side anyway (checks are read-only, Testinfra's habit, and every host of a run goes through the
same checks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import testinfra.backend
from testinfra.backend import base

from golive.adapters.transport import Connected
from golive.core.model import Host

COMMAND_TIMEOUT = 120

Answer = tuple[int, bytes, bytes]


@dataclass
class _Batch:
    """One command run on several hosts at once."""

    answers: dict[str, Answer | BaseException] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)  # gevent's, once patched


class CommandFanOut:
    """Testinfra's commands over golive's connections, the hosts' side by side where they can be.

    A command that a second host asks for word for word is one every host of the run will ask for
    (the same checks, and nothing host-specific in it): it then runs at once on every host that has
    not run it yet, and each of them takes its own answer when its check asks (once: asked again,
    a command runs again). A command only one host asks for (one naming the host's address, release
    or process) runs on that host alone. So a check costs about two round trips for the whole
    fleet instead of one per host, and every answer is still the host's own, seconds old at most.
    """

    def __init__(self, connections: dict[str, Connected], parallel: Any) -> None:
        self.connections = connections
        self.parallel = parallel
        self.asked: dict[str, set[str]] = {}  # command -> hosts it ran (or runs) on
        self.ready: dict[tuple[str, str], _Batch] = {}  # answers nobody has taken yet

    def run(self, host: str, command: str) -> Answer:
        batch = self.ready.pop((host, command), None)
        if batch is None:
            asked = self.asked.setdefault(command, set())
            rest = [h for h in self.connections if h != host and h not in asked] if asked else []
            asked.update([host, *rest])
            batch = _Batch()
            self.ready.update(((name, command), batch) for name in rest)
            try:
                batch.answers.update(zip([host, *rest], self.parallel(lambda name: self._exec(name, command),
                                                                      [host, *rest]), strict=True))
            finally:
                batch.done.set()
        batch.done.wait()  # the facts are fetched in parallel greenlets: a batch may still be running
        answer = batch.answers.get(host, RuntimeError(f"{host}: no answer to {command!r}"))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _exec(self, host: str, command: str) -> Answer:
        connected = self.connections.get(host)
        if connected is None or connected.pyinfra_host is None:
            raise RuntimeError(f"{host}: not connected by golive")
        return connected.pyinfra_host.connector.exec_stream(command, b"", (), timeout=COMMAND_TIMEOUT)


class GoliveBackend(base.BaseBackend):
    """Runs Testinfra's commands over the connection golive opened (and verified) for the host."""

    NAME = "golive"
    fan_out: CommandFanOut | None = None  # handed over per run by `golive check` (through its check plugin)

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        command = self.get_command(command, *args)
        if self.fan_out is None:
            raise RuntimeError(f"{self.hostname}: not connected by golive")
        code, out, err = self.fan_out.run(self.hostname, command)
        return self.result(code, self.encode(command), out, err)

    def get_encoding(self) -> str:
        return "utf-8"  # asking the host would cost a command; golive's hosts run UTF-8 Pythons


testinfra.backend.BACKENDS["golive"] = f"{__name__}.GoliveBackend"


def host_spec(host: Host) -> str:
    """The Testinfra host spec that reaches `host` through golive's own connection."""
    return f"golive://{host.name}" + ("?sudo=true" if host.vars.get("ansible_become") else "")


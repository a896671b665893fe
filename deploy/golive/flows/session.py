"""What every flow that reaches hosts shares: the run context, the host session, per-host reports."""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from golive.adapters import faultpoints
from golive.adapters.locks import controller_name, describe, liveness, process_start
from golive.adapters.progress import Progress
from golive.adapters.remote import AgentAnswer, call_agent
from golive.adapters.transport import Connected, Fleet
from golive.core.model import AppDefinition, Host
from golive.core.redact import forms_of
from golive.core.rollback import NOTHING_LIVE
from golive.flows import steps


def operator_name(explicit: str | None = None) -> str:
    return explicit or os.environ.get("GOLIVE_OPERATOR") or getpass.getuser()


def run_context(action: str, customer: str, environment: str, operator: str | None, engine: str = "pyinfra",
                reason: str = "") -> steps.RunContext:
    return steps.RunContext(action=action, customer=customer, environment=environment,
                            operator=operator_name(operator), controller=controller_name(), pid=os.getpid(),
                            pid_start=process_start(os.getpid()), token=secrets.token_hex(16), engine=engine,
                            reason=reason)


# Where a host ended up after a run; the first four keep the run going, the others are failures.
# nothing_live: a rollback left a host that runs no release as it is (golive.core.rollback.NOTHING_LIVE).
HostStatus = Literal["deployed", "unchanged", "planned", "nothing_live", "rolled_back", "failed", "unreachable",
                     "locked", "skipped", "unknown"]
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "unreachable", "locked", "rolled_back", "skipped", "unknown"})


@dataclass(kw_only=True)
class HostReport:
    """Where one host ended up, in words and data."""

    host: str
    environment: str
    status: HostStatus
    action: str | None = None
    from_release: str | None = None
    to_release: str | None = None
    live_release: str | None = None
    error: str | None = None
    lock: str | None = None
    steps: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, [])}


def nothing_live_report(environment: str, host: str) -> HostReport:
    """A host a rollback left as it is: it runs no release, there is nothing to go back from (by
    either engine, with or without a database: golive.core.rollback). Not a failure of the run."""
    return HostReport(host=host, environment=environment, status="nothing_live", action="rollback",
                      details={"nothing_live": True, "reason": NOTHING_LIVE})


def step_seconds(*answers: AgentAnswer | None) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for answer in answers:
        for step in (answer.steps if answer else []):
            seconds[step.name] = round(seconds.get(step.name, 0.0) + step.seconds, 4)
    return seconds


class HostSession:
    """A connected fleet plus the helpers to run agent batches on it in parallel."""

    def __init__(self, hosts: Iterable[Host], progress: Progress, app: AppDefinition, token: str = "") -> None:
        self.hosts = list(hosts)
        self.fleet = Fleet(self.hosts)
        self.progress = progress
        self.root = app.root
        self.config_dir = app.config_dir
        self.timeouts = app.timeouts  # golive.yml `timeouts:`: how long a round trip may take
        self.token = token or secrets.token_hex(16)

    def connect(self, hosts: Iterable[Host] | None = None) -> dict[str, Connected]:
        return self.fleet.connect(list(hosts) if hosts is not None else None)

    def call(self, connected: Connected, request: dict[str, Any], payload: Iterable[bytes] = (),
             timeout: float = 300, module: str = "hostagent",
             on_progress: Callable[[str], None] | None = None,
             on_step: Callable[[str, str, float | None], None] | None = None) -> AgentAnswer:
        host = connected.host
        # Who and where, for the GOLIVE_* environment of the host's commands (Agent.command_env).
        context = {"customer": host.customer, "environment": host.environment, "host": host.name,
                   "config_dir": self.config_dir}
        # every form of the host's secrets, and of what the request adds (a database's password)
        mask = mask_for(host) if not request.get("mask") else \
            forms_of(set(host.secret_values) | set(request.get("mask") or ()))
        return call_agent(connected, {**request, "root": self.root, "token": self.token, "mask": mask,
                                      "context": context}, payload, timeout, module=module, on_progress=on_progress,
                          on_step=on_step)

    def call_all(self, requests: Mapping[str, tuple[Connected, dict[str, Any]]],
                 timeout: float = 300, module: str = "hostagent") -> dict[str, AgentAnswer]:
        names = list(requests)

        def one(name: str) -> AgentAnswer:
            connected, request = requests[name]
            return self.call(connected, request, timeout=timeout, module=module)

        answers = self.fleet.map(one, names)
        return {name: as_answer(answer) for name, answer in zip(names, answers, strict=True)}

    def close(self) -> None:
        self.fleet.close()


def as_answer(value: Any) -> AgentAnswer:
    """What a fan-out (Fleet.map) gave back for one host: its answer, or the exception as a failed one."""
    if isinstance(value, AgentAnswer):
        return value
    return AgentAnswer(False, [], "unknown", error=f"{type(value).__name__}: {value}", transport_error=True)


def mask_for(host: Host) -> list[str]:
    """What the agent masks for a host: every form of its secret values (golive.core.redact.forms).
    They travel over SSH to a host that holds them anyway, so that the agent masks command output
    (a hook may echo a rendered secret) before it answers, cuts it or writes it into the ledger."""
    return forms_of(host.secret_values)


def lock_report(holder: Mapping[str, Any] | None) -> tuple[str, str]:
    """(liveness, sentence) for a lock holder."""
    return liveness(holder), describe(holder or {})


def chunks(path: str, size: int = 1 << 18) -> Iterable[bytes]:
    half, sent = os.path.getsize(path) // 2, 0
    with open(path, "rb") as handle:
        while block := handle.read(size):
            yield block
            sent += len(block)
            if sent >= half:
                faultpoints.reached("upload:half")  # test hook; see golive.adapters.faultpoints

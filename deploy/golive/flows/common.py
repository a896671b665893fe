"""What every flow that reaches hosts shares: the run context, the fleet, per-host reports."""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from golive import faultpoints
from golive.adapters.locks import controller_name, describe, liveness, process_start
from golive.adapters.remote import AgentAnswer, call_agent
from golive.adapters.transport import Connected, Fleet
from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Host
from golive.core.plan import Desired
from golive.core.release import Artifact, release_id
from golive.flows import steps
from golive.progress import Progress
from golive.workspace import Workspace


def operator_name(explicit: str | None = None) -> str:
    return explicit or os.environ.get("GOLIVE_OPERATOR") or getpass.getuser()


def run_context(action: str, customer: str, environment: str, operator: str | None, engine: str = "pyinfra",
                reason: str = "") -> steps.RunContext:
    return steps.RunContext(action=action, customer=customer, environment=environment,
                            operator=operator_name(operator), controller=controller_name(), pid=os.getpid(),
                            pid_start=process_start(os.getpid()), token=secrets.token_hex(16), engine=engine,
                            reason=reason)


@dataclass
class HostReport:
    """Where one host ended up, in words and data."""

    host: str
    environment: str
    status: str  # deployed|unchanged|rolled_back|failed|unreachable|locked|skipped|planned|ok
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
        return self.status in ("failed", "unreachable", "locked", "rolled_back", "skipped", "unknown")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, [])}


def step_seconds(*answers: AgentAnswer | None) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for answer in answers:
        for step in (answer.steps if answer else []):
            seconds[step.name] = round(seconds.get(step.name, 0.0) + step.seconds, 4)
    return seconds


def check_artifact_archive(app: AppDefinition, artifact: Artifact, cache_dir: Path | None = None) -> None:
    """Refuse a hostile archive on the controller, before any host is touched (the host checks again).

    A pass is remembered in cache_dir under the archive's sha256 (which Workspace.artifact has just
    verified against the file), the limits and the checker's own code: a re-deploy or rollforward
    of the same artifact need not decompress it again (~30 ms for 5 MB)."""
    from golive.agent import hostagent

    limits = (app.store.max_members, app.store.max_unpacked_bytes)
    passed = None
    if cache_dir is not None:
        checker = hashlib.sha256(Path(hostagent.__file__).read_bytes()).hexdigest()[:16]
        passed = cache_dir / "archives-checked" / f"{artifact.sha256}-{limits[0]}-{limits[1]}-{checker}"
        if passed.is_file():
            return
    try:
        with tarfile.open(artifact.path, "r:*") as archive:
            hostagent.check_archive(archive.getmembers(), *limits)
    except hostagent.StepError as error:
        raise BadInput(Problem(artifact.name, f"refused, nothing was sent to any host: {error}")) from None
    except (tarfile.TarError, OSError, EOFError) as error:
        reason = str(error).splitlines()[0].rstrip(":")  # tarfile lists every method it tried, one a line
        raise BadInput(Problem(artifact.name, f"not a readable tar archive ({reason}); nothing was sent to any "
                                              f"host")) from None
    if passed is not None:
        try:
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.touch()
        except OSError:
            pass  # a read-only workspace checks every time


def rendered_meta(ws: Workspace, host: Host, version: str, desired: Desired) -> dict[str, Any]:
    app = ws.app

    def render(text: str, what: str) -> str:
        return ws.render_string(text, host, version, what)

    service = {k: render(getattr(app.service, k), f"service.{k}")
               for k in ("start", "stop", "restart", "status", "systemd_unit")}
    health = {"url": render(app.health.url, "health.url"), "command": render(app.health.command, "health.command"),
              "timeout": app.health.timeout, "retries": app.health.retries, "interval": app.health.interval}
    hooks = {k: render(getattr(app.hooks, k), f"hooks.{k}") for k in ("before_cutover", "after_cutover", "on_rollback")}
    return steps.release_meta(app, desired, service, health, hooks)


def desired_state(ws: Workspace, host: Host, artifact: Artifact) -> tuple[Desired, dict[str, Any]]:
    config = ws.render(host, artifact.version)
    desired = Desired(release_id(artifact.version, config.hash), artifact.version, artifact.name, artifact.sha256,
                      config)
    return desired, rendered_meta(ws, host, artifact.version, desired)


class HostSession:
    """A connected fleet plus the helpers to run agent batches on it in parallel."""

    def __init__(self, hosts: Iterable[Host], progress: Progress, app: AppDefinition, token: str = "") -> None:
        self.hosts = list(hosts)
        self.fleet = Fleet(self.hosts)
        self.progress = progress
        self.root = app.root
        self.token = token or secrets.token_hex(16)

    def connect(self, hosts: Iterable[Host] | None = None) -> dict[str, Connected]:
        return self.fleet.connect(list(hosts) if hosts is not None else None)

    def call(self, connected: Connected, request: dict[str, Any], payload: Iterable[bytes] = (),
             timeout: float = 300) -> AgentAnswer:
        # The host's secret values travel (over SSH, to a host that holds them anyway) so that the agent
        # can mask them in what it records and answers: command output may echo a rendered secret.
        mask = sorted(connected.host.secret_values)
        return call_agent(connected, {**request, "root": self.root, "token": self.token, "mask": mask}, payload,
                          timeout)

    def call_all(self, requests: Mapping[str, tuple[Connected, dict[str, Any]]],
                 timeout: float = 300) -> dict[str, AgentAnswer]:
        names = list(requests)

        def one(name: str) -> AgentAnswer:
            connected, request = requests[name]
            return self.call(connected, request, timeout=timeout)

        answers = self.fleet.map(one, names)
        return {name: _as_answer(answer) for name, answer in zip(names, answers, strict=True)}

    def close(self) -> None:
        self.fleet.close()


def _as_answer(value: Any) -> AgentAnswer:
    if isinstance(value, AgentAnswer):
        return value
    return AgentAnswer(False, [], "unknown", error=f"{type(value).__name__}: {value}", transport_error=True)


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
                faultpoints.reached("upload:half")  # test hook; see golive.faultpoints

"""The deploy and rollback flows, as named steps. Read this file to know what golive does.

Deploy, per host:

    lock -> upload -> unpack -> configure -> hooks -> cutover -> restart -> verify -> record
    on failure in hooks .. verify: mark bad -> switch back -> restart -> verify -> on_rollback hook

Rollback, per host (the same skeleton):

    lock -> choose target -> on_rollback hook -> cutover -> restart -> verify -> record

Steps travel to the host in batches, one round trip each (the host agent runs them in order):

    begin    = lock + state, and when nothing changed: record 'unchanged' + unlock
    install  = upload + unpack + configure      (all hosts of a batch finish before any cutover)
    activate = hooks + cutover + restart + verify + record + prune + unlock
    rollback = lock + choose + hook + cutover + restart + verify + record + unlock

The environment lock: the run's first host (its leader) is locked before any other host and
stays locked until the whole run ends (its batches are built with keep_lock, and `release_batch`
frees it last), so of two runs started together the second stops at the leader, touching nothing.

Each function below builds one step of a request for golive.agent.hostagent.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from golive.core.model import AppDefinition
from golive.core.plan import INSTALL, REPAIR, DesiredRelease, HostPlan
from golive.core.release import Artifact

DEPLOY_COLUMNS = ("lock", "upload", "unpack", "configure", "cutover", "restart", "verify", "result")
# With a database: its host's row fills backup and migrate (once per environment, flows/database.py).
DATABASE_DEPLOY_COLUMNS = ("lock", "upload", "unpack", "configure", "stop", "backup", "migrate", "cutover", "restart",
                           "verify", "result")
ROLLBACK_COLUMNS = ("lock", "choose", "cutover", "restart", "verify", "result")
ACTIVATE_FAILURES = ("before_cutover", "cutover", "restart", "verify", "after_cutover")
SWITCHED_FAILURES = ("cutover", "restart", "verify", "after_cutover")


@dataclass(frozen=True)
class RunContext:
    """Who is running what, written into the lock and every ledger entry."""

    action: str  # deploy | rollback | unlock
    customer: str
    environment: str
    operator: str
    controller: str
    pid: int
    pid_start: str
    token: str
    engine: str = "pyinfra"
    reason: str = ""

    def owner(self) -> dict[str, Any]:
        return {"operator": self.operator, "controller": self.controller, "pid": self.pid,
                "pid_start": self.pid_start, "action": self.action, "customer": self.customer,
                "environment": self.environment, "engine": self.engine}

    def entry(self, host: str, **fields: Any) -> dict[str, Any]:
        entry = {"action": self.action, "customer": self.customer, "environment": self.environment,
                 "host": host, "operator": self.operator, "controller": self.controller, "engine": self.engine}
        if self.reason:
            entry["reason"] = self.reason
        entry.update({k: v for k, v in fields.items() if v is not None})
        return entry


# -- the steps ------------------------------------------------------------------------------

def lock(run: RunContext) -> dict[str, Any]:
    return {"op": "lock", "owner": run.owner()}


def read_state(app: AppDefinition, desired: DesiredRelease | None = None, with_text: bool = False,
               history: bool = False, health: bool = False) -> dict[str, Any]:
    """The host's facts; `history` adds the ledger entry that made the live release live, `health`
    the service's answer now."""
    step: dict[str, Any] = {"op": "state", "name": "state", "config_dir": app.config_dir, "history": history,
                            "health": health}
    if desired is not None:
        step.update(_desired_fields(app, desired))
        step["artifact"] = {"name": desired.artifact_name, "sha256": desired.artifact_sha256}
        for item in step["live_files"]:
            item["text"] = with_text and not item["secret"]
    return step


def _desired_fields(app: AppDefinition, desired: DesiredRelease) -> dict[str, Any]:
    return {
        "desired_release": desired.release,
        "config_dir": app.config_dir,
        "live_files": [{"dest": f.dest, "sha256": f.sha256, "secret": f.secret} for f in desired.config.files],
    }


def finish_if_unchanged(run: RunContext, app: AppDefinition, desired: DesiredRelease, host: str,
                        keep_lock: bool = False) -> dict[str, Any]:
    return {"op": "finish_if_unchanged", "name": "record", **_desired_fields(app, desired),
            "entry": run.entry(host, **_release_fields(desired)), "keep_lock": keep_lock}


def upload(artifact: Artifact) -> dict[str, Any]:
    """The artifact follows the request on the same channel; the host hashes it as it arrives."""
    return {"op": "upload", "artifact": artifact.name, "size": artifact.size, "sha256": artifact.sha256}


def unpack(app: AppDefinition, desired: DesiredRelease) -> dict[str, Any]:
    return {"op": "unpack", "release": desired.release, "artifact": desired.artifact_name,
            "sha256": desired.artifact_sha256, "max_members": app.store.max_members,
            "max_bytes": app.store.max_unpacked_bytes}


def configure(app: AppDefinition, desired: DesiredRelease, release_meta: Mapping[str, Any],
              in_place: bool = False) -> dict[str, Any]:
    files = [{"dest": f.dest, "mode": f"{f.mode:04o}", "data": base64.b64encode(f.content).decode()}
             for f in desired.config.files]
    return {"op": "configure", "release": desired.release, "files": files, "shared": list(app.shared),
            "meta": dict(release_meta), "in_place": in_place}


def hook(name: str, command: str, release: str, *, run: RunContext | None = None, direction: str = "deploy",
         previous: str | None = None, timeout: float = 600) -> dict[str, Any]:
    """A hook runs in the directory of `release` with GOLIVE_RELEASE (the release it concerns),
    GOLIVE_PREVIOUS_RELEASE (the one live before the step that calls it: for on_rollback the one being
    left), GOLIVE_DIRECTION, GOLIVE_ENVIRONMENT and GOLIVE_CUSTOMER; "$name" values are the agent's."""
    env = {"GOLIVE_DIRECTION": direction}
    if previous is not None:
        env["GOLIVE_PREVIOUS_RELEASE"] = previous
    if run is not None:
        env.update(GOLIVE_ENVIRONMENT=run.environment, GOLIVE_CUSTOMER=run.customer)
    return {"op": "hook", "name": name, "command": command, "release": release, "env": env, "timeout": timeout}


def cutover(app: AppDefinition, release: str, name: str = "cutover") -> dict[str, Any]:
    return {"op": "cutover", "name": name, "release": release, "config_dir": app.config_dir}


def restart(release: str, name: str = "restart") -> dict[str, Any]:
    return {"op": "restart", "name": name, "release": release}


def verify(release: str, name: str = "verify") -> dict[str, Any]:
    return {"op": "verify", "name": name, "release": release}


def mark(release: str, state: str, name: str) -> dict[str, Any]:
    return {"op": "mark", "name": name, "release": release, "state": state}


def record(entry: dict[str, Any]) -> dict[str, Any]:
    return {"op": "record", "name": "record", "entry": entry}


def prune(app: AppDefinition, protect: list[str]) -> dict[str, Any]:
    return {"op": "prune", "name": "prune", "keep": app.keep_releases, "protect": protect}


def unlock(force: bool = False) -> dict[str, Any]:
    return {"op": "unlock", "name": "unlock", "force": force}


def choose_rollback_target(version: str | None, force: bool) -> dict[str, Any]:
    return {"op": "select_rollback", "name": "choose", "version": version, "force": force}


def after(step: dict[str, Any], failures: tuple[str, ...]) -> dict[str, Any]:
    """A recovery step that runs only when one of these steps failed."""
    return {**step, "after": list(failures)}


def _release_fields(desired: DesiredRelease) -> dict[str, Any]:
    return {"release": desired.release, "version": desired.version,
            "artifact_sha256": desired.artifact_sha256, "config_hash": desired.config.hash}


def release_meta(app: AppDefinition, desired: DesiredRelease, service: Mapping[str, str],
                 health: Mapping[str, Any], hooks: Mapping[str, str]) -> dict[str, Any]:
    """Everything a release needs to be restarted, verified or rolled back to, by either engine."""
    return {
        "version": desired.version,
        "artifact": desired.artifact_name,
        "artifact_sha256": desired.artifact_sha256,
        "config_hash": desired.config.hash,
        "config_files": [{"dest": f.dest, "mode": f"{f.mode:04o}", "sha256": f.sha256, "secret": f.secret}
                         for f in desired.config.files],
        "service": dict(service),
        "health": dict(health),
        "hooks": dict(hooks),
        "app": app.name,
    }


# -- the batches ----------------------------------------------------------------------------

def _unlock_unless(keep_lock: bool) -> list[dict[str, Any]]:
    return [] if keep_lock else [unlock()]


def begin_batch(run: RunContext, app: AppDefinition, desired: DesiredRelease, host: str,
                keep_lock: bool = False) -> dict[str, Any]:
    return {"steps": [lock(run), read_state(app, desired), finish_if_unchanged(run, app, desired, host, keep_lock)],
            # a lock this batch took is not left behind when reading the state fails
            "on_failure": [after(u, ("state", "record")) for u in _unlock_unless(keep_lock)]}


def install_batch(run: RunContext, app: AppDefinition, plan: HostPlan, desired: DesiredRelease, artifact: Artifact,
                  meta: Mapping[str, Any], host: str, keep_lock: bool = False) -> dict[str, Any]:
    steps = []
    if "upload" in plan.steps:
        steps.append(upload(artifact))
    steps += [unpack(app, desired), configure(app, desired, meta)]
    failed_entry = run.entry(host, previous_release=plan.from_release, **_release_fields(desired))
    return {"steps": steps, "on_failure": [{"op": "cleanup", "name": "cleanup", "release": desired.release},
                                           record(failed_entry), *_unlock_unless(keep_lock)]}


def activate_batch(run: RunContext, app: AppDefinition, plan: HostPlan, desired: DesiredRelease,
                   hooks: Mapping[str, str], earlier_steps: Mapping[str, float], host: str,
                   keep_lock: bool = False) -> dict[str, Any]:
    target = desired.release
    steps: list[dict[str, Any]] = []
    if plan.action == REPAIR and plan.file_changes:
        steps.append({**configure(app, desired, {}, in_place=True), "name": "configure"})
    previous = plan.from_release or ""
    timeout = float(hooks.get("timeout") or app.hooks.timeout)
    if plan.action != REPAIR:
        steps.append(hook("before_cutover", hooks.get("before_cutover", ""), target, run=run, previous=previous,
                          timeout=timeout))
    steps += [cutover(app, target), restart(target), verify(target)]
    if plan.action != REPAIR:
        steps.append(hook("after_cutover", hooks.get("after_cutover", ""), target, run=run, previous=previous,
                          timeout=timeout))
    steps.append(mark(target, "good", "mark_good"))
    # on_rollback concerns the release that is live again (named here: after a before_cutover failure
    # no cutover has set $previous), and the service is verified again once it ran.
    on_failure = [
        after(mark(target, "bad", "mark_bad"), ACTIVATE_FAILURES),
        after(cutover(app, "$previous", "switch_back"), SWITCHED_FAILURES),
        after(restart("$previous", "restart_previous"), SWITCHED_FAILURES),
        after(verify("$previous", "verify_previous"), SWITCHED_FAILURES),
        after(hook("on_rollback", hooks.get("on_rollback", ""), previous or "$previous", run=run,
                   direction="rollback", previous=target, timeout=timeout), ACTIVATE_FAILURES),
        after(verify(previous or "$previous", "verify_after_hook"), ACTIVATE_FAILURES)
        if hooks.get("on_rollback") and previous else None,
    ] if plan.action != REPAIR else []
    on_failure = [step for step in on_failure if step]
    entry = run.entry(host, previous_release=plan.from_release, steps=dict(earlier_steps), **_release_fields(desired))
    return {"steps": steps, "on_failure": on_failure,
            "always": [record(entry), prune(app, [plan.from_release or ""]), *_unlock_unless(keep_lock)]}


def rollback_batch(run: RunContext, app: AppDefinition, version: str | None, force: bool,
                   host: str, keep_lock: bool = False) -> dict[str, Any]:
    entry = run.entry(host, release="$target", previous_release="$previous")
    return {
        "steps": [lock(run), choose_rollback_target(version, force),
                  {**hook("on_rollback", "", "$target", run=run, direction="rollback", previous="$previous",
                          timeout=app.hooks.timeout), "meta_of": "$previous"},
                  cutover(app, "$target"), restart("$target"), verify("$target"), mark("$target", "good", "mark_good")],
        "on_failure": [
            after(mark("$target", "bad", "mark_bad"), ("verify",)),
            after(cutover(app, "$previous", "switch_back"), ("restart", "verify")),
            after(restart("$previous", "restart_previous"), ("restart", "verify")),
            after(verify("$previous", "verify_previous"), ("restart", "verify")),
        ],
        "always": [record(entry), *_unlock_unless(keep_lock)],
    }


def abort_batch(run: RunContext, host: str, reason: str, keep_lock: bool = False) -> dict[str, Any]:
    """Release a host locked at begin but never deployed (max-fail crossed)."""
    return {"steps": [], "always": [record(run.entry(host, detail=reason)), *_unlock_unless(keep_lock)],
            "result": "skipped"}


def lock_batch(run: RunContext) -> dict[str, Any]:
    """Take a host's lock and nothing else (rollback takes every lock before it changes anything)."""
    return {"steps": [lock(run)]}


def release_batch() -> dict[str, Any]:
    """Free a lock this run holds (the leader's, at the end of the run; or every one, when the run
    stops before changing anything because another run holds some host)."""
    return {"steps": [unlock()]}


def with_database(request: dict[str, Any], database: Mapping[str, Any] | None) -> dict[str, Any]:
    """A batch for an environment with a database: every verification also expects the schema
    version the database is at ("expect"), every ledger entry links the database steps of the run
    ("entry"); "no_switch_back" drops the recovery steps that would put the code that was live back
    on a schema it was not written for (after a restore or down-migrations)."""
    if not database:
        return request
    expect, extra = database.get("expect") or {}, database.get("entry") or {}

    def annotate(step: dict[str, Any]) -> dict[str, Any]:
        if step.get("op") == "verify" and expect:
            return {**step, "expect": dict(expect)}
        if step.get("op") == "record" and extra:
            return {**step, "entry": {**step["entry"], **extra}}
        return step

    annotated = {key: [annotate(s) for s in value] if key in ("steps", "on_failure", "always") else value
                 for key, value in request.items()}
    if database.get("no_switch_back"):
        annotated["on_failure"] = [s for s in annotated.get("on_failure", []) if s.get("op") == "mark"]
    return annotated


def install_needed(plan: HostPlan) -> bool:
    return plan.action == INSTALL

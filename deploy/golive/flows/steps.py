"""The deploy and rollback flows, as named steps. Read this file to know what golive does.

Deploy, per host:

    lock -> upload -> unpack -> configure -> hooks -> cutover -> restart -> verify -> record
    on failure in hooks .. verify: mark bad -> switch back -> restart -> verify -> on_rollback hook

Rollback, per host (the same skeleton):

    lock -> choose target (record the intent) -> on_rollback hook -> cutover -> restart -> verify
         -> mark the target good and the release left rolled back from -> record
    a host already on the target: lock -> choose -> verify (restart first if it is not served) -> record

Steps travel to the host in batches, one round trip each (the host agent runs them in order).
Both verbs go through one skeleton (golive.flows.deploy.run_rollout): begin (the leader first),
rolling batches under one --max-fail rule, and the leader's release last:

    begin    = deploy:   lock + state on every host, and when nothing changed: record 'unchanged' + unlock
               rollback: lock + state on the leader only: the environment's target is chosen from it
    install  = upload + unpack + configure      (all hosts of a batch finish before any cutover)
    activate = hooks + cutover + restart + verify + mark good (deploy sequence) + record + prune + unlock
    (repair: the release is live but differs from what it should be: [upload] + repair + cutover
     + restart + verify + record + unlock; a switch to a kept release that differs from what it
     should be repairs it the same way first: [upload] + repair + hooks + cutover + ...)
    rollback = lock + choose + hook + cutover + restart + verify + marks + record + unlock
    release  = (rollback: mark the rollback finished, when every host ended on its target) + unlock

"Nothing changed" means every entry of the live release directory is what it should be, compared
by content, mode and owner (state hashes every file), every config link leads into it, it is
verified good and its service runs: so a plain re-deploy repairs whatever drift reports on a host.

The environment lock: the run's first host (its leader) is locked before any other host and
stays locked until the whole run ends (its batches are built with keep_lock, and `release_batch`
frees it last), so of two runs started together the second stops at the leader, touching nothing.

Each function below builds one step of a request for golive.agent.hostagent.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from golive.adapters.locks import takeover_detail
from golive.core.model import AppDefinition
from golive.core.plan import INSTALL, REPAIR, SWITCH, DesiredRelease, HostPlan
from golive.core.release import Artifact

# "undo": the automatic rollback after a failed step (mark bad, switch back, restart and verify the
# previous release; a first install's withdraw), shown step by step while it runs.
DEPLOY_COLUMNS = ("lock", "upload", "unpack", "configure", "cutover", "restart", "verify", "undo", "result")
# With a database: its host's row fills backup and migrate (once per environment, flows/database.py).
DATABASE_DEPLOY_COLUMNS = ("lock", "upload", "unpack", "configure", "stop", "backup", "migrate", "cutover", "restart",
                           "verify", "undo", "result")
ROLLBACK_COLUMNS = ("lock", "choose", "cutover", "restart", "verify", "undo", "result")
# Which column shows a step of a deploy's or a rollback's batch while it runs (both engines: the
# Ansible role tags its tasks with these step names); once a step failed, what runs to undo it is
# shown in "undo" (golive.adapters.progress.StepFeed).
STEP_COLUMNS = {"before_cutover": "cutover", "on_rollback": "cutover", "repair": "configure",
                "after_cutover": "verify"}
UNDO_STEPS = frozenset({"mark_bad", "switch_back", "restart_previous", "verify_previous", "on_rollback",
                        "verify_after_hook", "withdraw"})
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

    @property
    def run_id(self) -> str:
        """The run's public name, as the hosts record it in a rollback intent (Agent.run_id)."""
        return hashlib.sha256(self.token.encode()).hexdigest()[:12]

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

def lock(run: RunContext, takeover: Mapping[str, Any] | None = None, host: str = "") -> dict[str, Any]:
    """Take the host's lock; `takeover`: the holder of a stale lock this run may replace (the
    controller proved it dead: golive.adapters.locks.takeover_allowed), recorded in the ledger."""
    step: dict[str, Any] = {"op": "lock", "owner": run.owner()}
    if takeover:
        step["takeover"] = dict(takeover)
        step["entry"] = takeover_entry(run, host, takeover)
    return step


def takeover_entry(run: RunContext, host: str, holder: Mapping[str, Any]) -> dict[str, Any]:
    """The ledger line of a takeover (the agent adds time, result and the stale holder; the role
    writes the same keys)."""
    return {"action": "takeover", "customer": run.customer, "environment": run.environment, "host": host,
            "operator": run.operator, "controller": run.controller, "engine": run.engine,
            "detail": takeover_detail(holder)}


def read_state(app: AppDefinition, desired: DesiredRelease | None = None, with_text: bool = False,
               history: bool = False) -> dict[str, Any]:
    """The host's facts; `history` adds the ledger entry that made the live release live."""
    step: dict[str, Any] = {"op": "state", "name": "state", "config_dir": app.config_dir, "history": history,
                            "status_timeout": app.timeouts.status}
    if desired is not None:
        step.update(_desired_fields(app, desired))
        step.update(release_files=dict(desired.files), ignore=list(desired.ignore))
        step["artifact"] = {"name": desired.artifact_name, "sha256": desired.artifact_sha256}
        for item in step["live_files"]:
            item["text"] = with_text and not item["secret"]
    return step


def _desired_fields(app: AppDefinition, desired: DesiredRelease) -> dict[str, Any]:
    return {
        "desired_release": desired.release,
        "config_dir": app.config_dir,
        "status_timeout": app.timeouts.status,
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
            "max_bytes": app.store.max_unpacked_bytes, "product": app.name, "version": desired.version}


def configure(app: AppDefinition, desired: DesiredRelease, release_meta: Mapping[str, Any],
              release_run: Mapping[str, Any] | None = None, in_place: bool = False) -> dict[str, Any]:
    files = [{"dest": f.dest, "mode": f"{f.mode:04o}", "data": base64.b64encode(f.content).decode()}
             for f in desired.config.files]
    return {"op": "configure", "release": desired.release, "files": files, "shared": list(app.shared),
            "meta": dict(release_meta), "run": dict(release_run or {}), "in_place": in_place}


def repair(app: AppDefinition, desired: DesiredRelease) -> dict[str, Any]:
    """Put the live release's entries back as they should be (the host decides what differs, as its
    state step did for the plan); the rendered config travels along, code comes from the artifact."""
    files = [{"dest": f.dest, "data": base64.b64encode(f.content).decode()} for f in desired.config.files]
    return {"op": "repair", "name": "repair", "release": desired.release, "release_files": dict(desired.files),
            "ignore": list(desired.ignore), "files": files, "artifact": desired.artifact_name,
            "sha256": desired.artifact_sha256, "max_members": app.store.max_members,
            "max_bytes": app.store.max_unpacked_bytes}


Direction = Literal["deploy", "rollback"]


def hook(app: AppDefinition, name: str, command: str, release: str, direction: Direction = "deploy", *,
         previous: str | None = None) -> dict[str, Any]:
    """A hook runs in the directory of `release` with the GOLIVE_* environment of every command
    (Agent.command_env: GOLIVE_RELEASE, GOLIVE_PREVIOUS_RELEASE, GOLIVE_DIRECTION, GOLIVE_ENVIRONMENT,
    GOLIVE_CUSTOMER, ...); `previous` names GOLIVE_PREVIOUS_RELEASE when it is not the run's (for an
    on_rollback: the release being left). "$name" values are the agent's."""
    step: dict[str, Any] = {"op": "hook", "name": name, "command": command, "release": release,
                            "direction": direction, "timeout": app.timeouts.hook}
    if previous is not None:
        step["env"] = {"GOLIVE_PREVIOUS_RELEASE": previous}
    return step


# cutover, restart, verify: a release None (a host that ran none, put back after a database rollback
# failed) is one the agent refuses, as any release not on the host.
def cutover(app: AppDefinition, release: str | None, name: str = "cutover") -> dict[str, Any]:
    return {"op": "cutover", "name": name, "release": release, "config_dir": app.config_dir}


def restart(app: AppDefinition, release: str | None, name: str = "restart",
            direction: Direction = "deploy") -> dict[str, Any]:
    """GOLIVE_DIRECTION tells the command whether it runs going forward or going back."""
    return {"op": "restart", "name": name, "release": release, "direction": direction,
            "timeout": app.timeouts.restart}


def verify(release: str | None, name: str = "verify", direction: Direction = "deploy") -> dict[str, Any]:
    return {"op": "verify", "name": name, "release": release, "direction": direction}


def withdraw(app: AppDefinition, release: str) -> dict[str, Any]:
    """A failed first install: stop the release's service (its stop command) and remove `current`,
    when the release is live (Agent.step_withdraw); it stays on the host, marked bad."""
    return {"op": "withdraw", "name": "withdraw", "release": release, "direction": "rollback",
            "timeout": app.timeouts.restart}


def when_previous(step: dict[str, Any]) -> dict[str, Any]:
    """A recovery step that needs a release to go back to (the cutover found one live)."""
    return {**step, "when": "previous"}


def mark(release: str, state: str, name: str, seq: int | None = None) -> dict[str, Any]:
    """`seq`: the deploy sequence a deploy gives the release it made live (rollbacks keep it)."""
    step: dict[str, Any] = {"op": "mark", "name": name, "release": release, "state": state}
    if seq is not None:
        step["seq"] = seq
    return step


def mark_left(release: str) -> dict[str, Any]:
    """A rollback left this release: a plain rollback does not go back to it."""
    return {"op": "mark_left", "name": "mark_left", "release": release}


def record(entry: dict[str, Any]) -> dict[str, Any]:
    return {"op": "record", "name": "record", "entry": entry}


def prune(app: AppDefinition, protect: list[str]) -> dict[str, Any]:
    return {"op": "prune", "name": "prune", "keep": app.keep_releases, "protect": protect}


def unlock(force: bool = False) -> dict[str, Any]:
    return {"op": "unlock", "name": "unlock", "force": force}


def choose_rollback_target(run: RunContext, target: Mapping[str, Any], force: bool,
                           database: Mapping[str, Any] | None = None, keep_lock: bool = False) -> dict[str, Any]:
    """Find the environment's target (golive.core.rollback.Choice.spec) among this host's releases and
    record the rollback's intent before anything switches; `database`: how a rollback that changes
    the database does it (flows/database.apply_rollback), recorded in the intent too. On a host that
    runs no release the batch ends there, its lock given back unless `keep_lock` (the leader's)."""
    step = {"op": "select_rollback", "name": "choose", "target": dict(target), "force": force,
            "by": {"operator": run.operator, "controller": run.controller, "engine": run.engine}}
    if keep_lock:
        step["keep_lock"] = True
    if database:
        step["database"] = dict(database)
    return step


def finish_rollback() -> dict[str, Any]:
    return {"op": "finish_rollback", "name": "finish"}


def unless_already(step: dict[str, Any]) -> dict[str, Any]:
    """A step skipped on a host that is already on the rollback's target."""
    return {**step, "unless": "already"}


def serve(app: AppDefinition, release: str) -> dict[str, Any]:
    """On a host already on the rollback's target: verify it, and restart it first if it is not served."""
    return {"op": "serve", "name": "verify", "release": release, "when": "already", "direction": "rollback",
            "timeout": app.timeouts.restart}


def after(step: dict[str, Any], failures: tuple[str, ...]) -> dict[str, Any]:
    """A recovery step that runs only when one of these steps failed."""
    return {**step, "after": list(failures)}


def _release_fields(desired: DesiredRelease) -> dict[str, Any]:
    return {"release": desired.release, "version": desired.version,
            "artifact_sha256": desired.artifact_sha256, "config_hash": desired.config.hash}


def release_meta(app: AppDefinition, desired: DesiredRelease) -> dict[str, Any]:
    """What anyone on the host may read about a release (`.golive/releases/<id>.json`, 0644): no
    rendered command, URL or hook (they may hold a secret), no digest of a secret file."""
    return {
        "version": desired.version,
        "artifact": desired.artifact_name,
        "artifact_sha256": desired.artifact_sha256,
        "config_hash": desired.config.hash,
        "config_files": [{"dest": f.dest, "mode": f"{f.mode:04o}", "secret": f.secret,
                          **({} if f.secret else {"sha256": f.sha256})} for f in desired.config.files],
        "app": app.name,
    }


def release_run(desired: DesiredRelease, service: Mapping[str, str], health: Mapping[str, Any],
                hooks: Mapping[str, str]) -> dict[str, Any]:
    """What a release needs to be restarted, verified or rolled back to, by either engine, rendered
    with the host's variables (`.golive/releases/<id>.run.json`, 0600: it may hold secrets)."""
    return {
        "service": dict(service),
        "health": dict(health),
        "hooks": dict(hooks),
        "secret_files": {f.dest: f.sha256 for f in desired.config.files if f.secret},
    }


# -- the batches ----------------------------------------------------------------------------

def _unlock_unless(keep_lock: bool) -> list[dict[str, Any]]:
    return [] if keep_lock else [unlock()]


def begin_batch(run: RunContext, app: AppDefinition, desired: DesiredRelease, host: str,
                keep_lock: bool = False, takeover: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"steps": [lock(run, takeover, host), read_state(app, desired),
                      finish_if_unchanged(run, app, desired, host, keep_lock)],
            # a lock this batch took is not left behind when reading the state fails
            "on_failure": [after(u, ("state", "record")) for u in _unlock_unless(keep_lock)]}


def install_batch(run: RunContext, app: AppDefinition, plan: HostPlan, desired: DesiredRelease, artifact: Artifact,
                  meta: Mapping[str, Any], release_run: Mapping[str, Any], host: str,
                  keep_lock: bool = False) -> dict[str, Any]:
    steps = []
    if "upload" in plan.steps:
        steps.append(upload(artifact))
    steps += [unpack(app, desired), configure(app, desired, meta, release_run)]
    failed_entry = run.entry(host, previous_release=plan.from_release, **_release_fields(desired))
    return {"steps": steps, "on_failure": [{"op": "cleanup", "name": "cleanup", "release": desired.release},
                                           record(failed_entry), *_unlock_unless(keep_lock)]}


def activate_batch(run: RunContext, app: AppDefinition, plan: HostPlan, desired: DesiredRelease,
                   hooks: Mapping[str, str], earlier_steps: Mapping[str, float], host: str,
                   keep_lock: bool = False, seq: int | None = None,
                   artifact: Artifact | None = None) -> dict[str, Any]:
    """Make the release live; a repair first uploads the artifact when it must restore code files
    the host's cache no longer has (the artifact then follows the request), then repairs."""
    target = desired.release
    steps: list[dict[str, Any]] = []
    if plan.action in (REPAIR, SWITCH) and "upload" in plan.steps and artifact is not None:
        steps.append(upload(artifact))
    if plan.action in (REPAIR, SWITCH) and "repair" in plan.steps:
        steps.append(repair(app, desired))  # a kept release is repaired before anything switches to it
    previous = plan.from_release or ""
    # both hooks name the release live before the run (before_cutover runs before any cutover has
    # set $previous)
    if plan.action != REPAIR:
        steps.append(hook(app, "before_cutover", hooks.get("before_cutover", ""), target, previous=previous))
    steps += [cutover(app, target), restart(app, target), verify(target)]
    if plan.action != REPAIR:
        steps.append(hook(app, "after_cutover", hooks.get("after_cutover", ""), target, previous=previous))
    steps.append(mark(target, "good", "mark_good", seq=seq))
    # on_rollback concerns the release that is live again (named here: after a before_cutover failure
    # no cutover has set $previous), and the service is verified again once it ran.
    # A first install has no earlier release to go back to (the cutover found no `current`): its
    # service is stopped and `current` removed instead (withdraw), the host runs nothing, as before.
    on_failure = [
        after(mark(target, "bad", "mark_bad"), ACTIVATE_FAILURES),
        after(when_previous(cutover(app, "$previous", "switch_back")), SWITCHED_FAILURES),
        after(when_previous(restart(app, "$previous", "restart_previous", "rollback")), SWITCHED_FAILURES),
        after(when_previous(verify("$previous", "verify_previous", "rollback")), SWITCHED_FAILURES),
        after(withdraw(app, target), SWITCHED_FAILURES) if not previous else None,
        after(hook(app, "on_rollback", hooks.get("on_rollback", ""), previous, "rollback",
                   previous=target), ACTIVATE_FAILURES) if previous else None,
        after(verify(previous, "verify_after_hook", "rollback"), ACTIVATE_FAILURES)
        if hooks.get("on_rollback") and previous else None,
    ] if plan.action != REPAIR else []
    on_failure = [step for step in on_failure if step]
    entry = run.entry(host, previous_release=plan.from_release, steps=dict(earlier_steps), **_release_fields(desired))
    return {"steps": steps, "on_failure": on_failure,
            "always": [record(entry), prune(app, [plan.from_release or ""]), *_unlock_unless(keep_lock)]}


def rollback_begin_batch(run: RunContext, app: AppDefinition, host: str = "",
                         takeover: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The leader's first round trip: its lock (the environment's, kept to the end) and what it keeps,
    from which the environment's target is chosen."""
    return {"steps": [lock(run, takeover, host), read_state(app)]}


def rollback_batch(run: RunContext, app: AppDefinition, target: Mapping[str, Any], force: bool,
                   host: str, keep_lock: bool = False, takeover: Mapping[str, Any] | None = None) -> dict[str, Any]:
    entry = run.entry(host, release="$target", previous_release="$previous")
    return {
        "steps": [lock(run, takeover, host), choose_rollback_target(run, target, force, keep_lock=keep_lock),
                  unless_already({"op": "hook", "name": "on_rollback", "meta_of": "$previous", "release": "$target",
                                  "direction": "rollback", "timeout": app.timeouts.hook}),
                  unless_already(cutover(app, "$target")),
                  unless_already(restart(app, "$target", direction="rollback")),
                  unless_already(verify("$target", direction="rollback")), serve(app, "$target"),
                  unless_already(mark("$target", "good", "mark_good")), unless_already(mark_left("$previous"))],
        "on_failure": [unless_already(s) for s in (
            after(mark("$target", "bad", "mark_bad"), ("verify",)),
            after(cutover(app, "$previous", "switch_back"), ("restart", "verify")),
            after(restart(app, "$previous", "restart_previous", "rollback"), ("restart", "verify")),
            after(verify("$previous", "verify_previous", "rollback"), ("restart", "verify")),
        )],
        "always": [record(entry), *_unlock_unless(keep_lock)],
    }


def abort_batch(run: RunContext, host: str, reason: str, keep_lock: bool = False) -> dict[str, Any]:
    """Release a host locked at begin but never deployed (max-fail crossed)."""
    return {"steps": [], "always": [record(run.entry(host, detail=reason)), *_unlock_unless(keep_lock)],
            "result": "skipped"}


def lock_batch(run: RunContext, takeover: Mapping[str, Any] | None = None, host: str = "") -> dict[str, Any]:
    """Take a host's lock and nothing else (a rollback that changes the database takes every host's
    lock before it changes anything); `takeover`: a stale lock of this controller's own dead run."""
    return {"steps": [lock(run, takeover, host)]}


def stop(app: AppDefinition, release: str = "", name: str = "stop") -> dict[str, Any]:
    """Stop the service of a release (the live one by default): before a migration, a restore, or
    the environment's recovery (golive.agent.dbagent)."""
    return {"op": "stop", "name": name, "release": release, "timeout": app.timeouts.restart}


def release_batch(finished_rollback: bool = False) -> dict[str, Any]:
    """Free a lock this run holds (the leader's, at the end of the run; or every one, when the run
    stops before changing anything because another run holds some host). A rollback whose every
    host ended on its target is marked finished on the leader first; the lock is freed whether or not
    that mark could be written (`always`): the re-run finds the rollback unfinished and completes it."""
    return {"steps": [finish_rollback()] if finished_rollback else [], "always": [unlock()]}


def with_database(request: dict[str, Any], database: Mapping[str, Any] | None) -> dict[str, Any]:
    """A batch for an environment with a database: every verification also expects the schema
    version the database is at ("expect"), every ledger entry links the database steps of the run
    ("entry"); "no_switch_back" drops the recovery steps that would put the code that was live back
    on a schema it was not written for (after a restore or down-migrations)."""
    if not database:
        return request
    expect, extra = database.get("expect") or {}, database.get("entry") or {}

    def annotate(step: dict[str, Any]) -> dict[str, Any]:
        if step.get("op") in ("verify", "serve") and expect:
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

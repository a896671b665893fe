"""golive plan / deploy / rollback over pyinfra: the controller's side of golive.flows.steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from golive.adapters import faultpoints
from golive.adapters.progress import Progress
from golive.adapters.remote import AgentAnswer
from golive.adapters.transport import Connected
from golive.core.errors import BadInput, Problem
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.plan import INSTALL, UNCHANGED, DesiredRelease, HostFacts, HostPlan, plan_host
from golive.core.release import Artifact
from golive.core.rollout import batches, crossed, max_fail_threshold
from golive.flows import database, steps
from golive.flows.desired import check_artifact_archive, desired_release
from golive.flows.session import HostReport, HostSession, chunks, lock_report, run_context, step_seconds
from golive.workspace import Workspace

BEGIN_TIMEOUT, INSTALL_TIMEOUT, ACTIVATE_TIMEOUT = 120, 900, 1800
LEADER_HEAD_START = 1.0  # seconds the leader has the wire to itself (see Fleet.first_alone)


@dataclass
class Target:
    """One host of the run: what it should become and what is known of it so far."""

    host: Host
    desired: DesiredRelease
    meta: dict[str, Any]
    connected: Connected | None = None
    plan: HostPlan | None = None
    report: HostReport | None = None
    answers: tuple[AgentAnswer, ...] = ()
    leads: bool = False  # the run's leader: its lock is the environment's, held until the run ends
    database: dict[str, Any] = field(default_factory=dict)  # steps.with_database: what verify expects, ...


# -- promotion gate -------------------------------------------------------------------------

def promotion_problems(ws: Workspace, customer: str, environment: str, artifact: Artifact,
                       progress: Progress) -> tuple[str | None, list[str]]:
    """(source environment, reasons the artifact is not promotable); no source -> (None, [])."""
    spec = ws.app.environment(environment)
    if spec is None or not spec.promote_from:
        return None, []
    source = spec.promote_from
    hosts = ws.hosts(customer, source)
    session = HostSession(hosts, progress, ws.app)
    problems: list[str] = []
    try:
        connected = session.connect()
        requests = {}
        for host in hosts:
            if not connected[host.name].ok:
                problems.append(f"cannot confirm {source} host: {connected[host.name].error}")
                continue
            requests[host.name] = (connected[host.name], {"steps": [steps.read_state(ws.app, history=True)]})
        for name, answer in session.call_all(requests, BEGIN_TIMEOUT).items():
            meta = answer.data("state").get("current_meta") or {}
            check = answer.data("state").get("last_check") or {}
            if not answer.ok:
                problems.append(f"{source} host {name}: {answer.error}")
            elif meta.get("artifact_sha256") != artifact.sha256:
                sha = str(meta.get("artifact_sha256"))[:12]
                running = f"{meta.get('version')} (sha256 {sha})" if meta else "nothing"
                problems.append(f"{source} host {name} runs {running}, not {artifact.version} "
                                f"(sha256 {artifact.sha256[:12]})")
            elif meta.get("state") != "good":
                problems.append(f"{source} host {name} runs {artifact.version} but it is {meta.get('state')}, "
                                f"not verified")
            elif check.get("result") != "passed":
                done = f"its last check run {check.get('result')}" if check else "no check has run"
                problems.append(f"{source} host {name} runs {artifact.version}, but {done}: "
                                f"run golive check {customer} {source}")
    finally:
        session.close()
    return source, problems


def enforce_promotion(ws: Workspace, customer: str, environment: str, artifact: Artifact, override: str | None,
                      progress: Progress) -> dict[str, Any]:
    if override is not None and not override.strip():
        raise BadInput("--override-promotion needs a reason")
    if override:
        return {"required": ws.app.environment(environment).promote_from if ws.app.environment(environment)
                else None, "overridden": override}
    source, problems = promotion_problems(ws, customer, environment, artifact, progress)
    if problems:
        raise BadInput([Problem("promotion", f"{environment} only accepts an artifact that {source} runs, "
                                             f"verified and checked: {p}") for p in problems]
                       + [Problem("promotion", "deploy it to staging and run golive check there first, or pass "
                                               "--override-promotion \"reason\" (recorded in the ledger)")])
    return {"required": source, "passed": source is not None}


# -- deploy ---------------------------------------------------------------------------------

def prepare(ws: Workspace, customer: str, environment: str, version: str,
            only: list[str] | None) -> tuple[Artifact, list[Target]]:
    """Everything that can be refused without touching a host."""
    hosts = ws.hosts(customer, environment, only)
    artifact = ws.artifact(version)
    check_artifact_archive(ws.app, artifact, ws.cache_dir)
    targets = []
    problems: list[Problem] = []
    for host in hosts:
        try:
            desired, meta = desired_release(ws, host, artifact)
        except BadInput as error:
            problems.extend(p for p in error.problems if p not in problems)
            continue
        targets.append(Target(host, desired, meta))
    if problems:
        raise BadInput(problems)
    return artifact, targets


def begin(session: HostSession, run: steps.RunContext, ws: Workspace, targets: list[Target]) -> Target | None:
    """Lock every host, leader first: whoever holds the leader's lock owns the environment. The
    leader connects and answers alone (for up to LEADER_HEAD_START seconds), the others connect
    meanwhile, and each one's round trip starts as soon as it is connected.

    Returns the host another run holds, when there is one; then this run has released every lock
    it took and changed nothing (a host held by another run, even a stale lock of a crashed one,
    means the environment is not this run's to change until `golive unlock`)."""
    def lead() -> Target | None:
        leader = next((t for t in targets if _reachable(session, t)), None)
        if leader is not None:
            leader.leads = True
            _begin_one(session, run, ws, leader)
        return leader

    leader = session.fleet.first_alone(lead, LEADER_HEAD_START)
    if leader is None:
        return None
    if leader.report is not None and leader.report.status == "locked":
        return leader
    rest = targets[targets.index(leader) + 1:]
    session.fleet.map(lambda t: _begin_one(session, run, ws, t) if _reachable(session, t) else None, rest)
    blocked = [t for t in rest if t.report is not None and t.report.status == "locked"]
    if not blocked:
        return None
    ours = [t for t in rest if t.plan is not None and t.report is None]
    session.call_all({t.host.name: (t.connected, steps.release_batch()) for t in ours}, BEGIN_TIMEOUT)
    return blocked[0]


def _reachable(session: HostSession, target: Target) -> bool:
    target.connected = session.fleet.wait_connected(target.host)
    if not target.connected.ok:
        target.report = HostReport(host=target.host.name, environment=target.host.environment, status="unreachable",
                                   error=target.connected.error)
        session.progress.update(target.host.name, "lock", "failed", "unreachable")
    return target.connected.ok


def holds_lock(target: Target) -> bool:
    """This run took the target's lock (its begin batch got past the lock step)."""
    lock_step = target.answers[0].step("lock") if target.answers else None
    return bool(lock_step and lock_step.ok)


def release_locks(session: HostSession, targets: list[Target]) -> None:
    """The end of a run: a migrating deploy kept every host's lock (its recovery is the environment's),
    then the leader's goes back last."""
    held = [t for t in targets if not t.leads and t.database.get("keep_locks") and holds_lock(t)]
    if held:
        session.call_all({t.host.name: (t.connected, steps.release_batch()) for t in held}, BEGIN_TIMEOUT)
    release_leader(session, targets)


def release_leader(session: HostSession, targets: list[Target]) -> None:
    """The last round trip of a run: free the environment lock the leader held throughout."""
    leader = next((t for t in targets if t.leads and holds_lock(t)), None)
    if leader is None:
        return
    answer = session.call(leader.connected, steps.release_batch(), timeout=BEGIN_TIMEOUT)
    if not answer.ok:
        session.progress.note(f"{leader.host.name}: could not release the environment lock ({answer.error}); "
                              f"`golive status` will show it, `golive unlock` clears it")


def _begin_one(session: HostSession, run: steps.RunContext, ws: Workspace, target: Target) -> None:
    name = target.host.name
    session.progress.update(name, "lock", "running")
    answer = session.call(target.connected, steps.begin_batch(run, ws.app, target.desired, name, target.leads),
                          timeout=BEGIN_TIMEOUT)
    target.answers = (answer,)
    if not answer.ok:
        if answer.holder is not None or answer.error == "locked":
            state, sentence = lock_report(answer.holder)
            target.report = HostReport(host=name, environment=run.environment, status="locked", error=sentence,
                                       lock=state)
            session.progress.update(name, "lock", "failed", "locked")
        else:
            target.report = HostReport(host=name, environment=run.environment, status="failed", error=answer.error)
            session.progress.update(name, "lock", "failed")
        return
    state = answer.data("state")
    facts = HostFacts.from_agent({**state, "desired_live": not state.get("desired_live_problems"),
                                  "desired_live_problems": state.get("desired_live_problems") or ()})
    target.plan = plan_host(name, facts, target.desired)
    session.progress.update(name, "lock", "ok")
    if target.plan.action == UNCHANGED:
        if not answer.data("record").get("unchanged"):  # the host changed between state and finish
            target.report = HostReport(host=name, environment=run.environment, status="failed",
                                       error="host state changed during the run")
            return
        target.report = HostReport(host=name, environment=run.environment, status="unchanged", action=UNCHANGED,
                                   from_release=facts.current, to_release=target.desired.release,
                                   live_release=facts.current, steps=step_seconds(answer))
        session.progress.update(name, "result", "unchanged")


def install(session: HostSession, run: steps.RunContext, ws: Workspace, artifact: Artifact, target: Target) -> None:
    name = target.host.name
    request = steps.install_batch(run, ws.app, target.plan, target.desired, artifact, target.meta, name,
                                  keep_lock=target.leads)
    uploading = "upload" in target.plan.steps
    session.progress.update(name, "upload" if uploading else "unpack", "running")
    answer = session.call(target.connected, request, chunks(artifact.path) if uploading else (), INSTALL_TIMEOUT)
    target.answers += (answer,)
    for step in answer.steps:
        if step.name in ("upload", "unpack", "configure"):
            session.progress.update(name, step.name, "ok" if step.ok else "failed", f"{step.seconds:.2f}s")
    if not answer.ok:
        target.report = HostReport(host=name, environment=run.environment, status="failed", action=target.plan.action,
                                   from_release=target.plan.from_release,
                                   to_release=target.desired.release, live_release=target.plan.from_release,
                                   error=f"{answer.failed_step or 'install'}: {answer.error}",
                                   steps=step_seconds(*target.answers))


def activate(session: HostSession, run: steps.RunContext, ws: Workspace, target: Target) -> None:
    name = target.host.name
    hooks = target.meta.get("hooks", {})
    earlier = step_seconds(*target.answers)
    request = steps.with_database(steps.activate_batch(run, ws.app, target.plan, target.desired, hooks, earlier, name,
                                                       keep_lock=target.leads), target.database)
    session.progress.update(name, "cutover", "running")
    answer = session.call(target.connected, request, timeout=ACTIVATE_TIMEOUT)
    target.answers += (answer,)
    for step in answer.steps:
        if step.name in ("cutover", "restart", "verify", "switch_back"):
            session.progress.update(name, step.name if step.name != "switch_back" else "cutover",
                                    "ok" if step.ok else "failed", f"{step.seconds:.2f}s")
    seconds = step_seconds(*target.answers)
    plan = target.plan
    if answer.ok:
        target.report = HostReport(host=name, environment=run.environment, status="deployed", action=plan.action,
                                   from_release=plan.from_release, to_release=target.desired.release,
                                   live_release=target.desired.release, steps=seconds)
        session.progress.update(name, "result", "ok")
        return
    if answer.transport_error:
        # The agent goes on without us: it finishes the batch or rolls it back, and records which.
        target.report = HostReport(host=name, environment=run.environment, status="unknown", action=plan.action,
                                   from_release=plan.from_release, to_release=target.desired.release,
                                   live_release=None, steps=seconds,
                                   error=f"{answer.error}; the host finishes or rolls back the cutover on its "
                                         f"own and records the outcome: see `golive status` once it is reachable")
        session.progress.update(name, "result", "failed")
        return
    rolled_back = answer.result == "rolled_back"
    # Every recovery step ran; the ones that failed (an on_rollback hook, the old release's health) are said.
    recovery = [f"{s.name}: {s.error}" for s in answer.steps if not s.ok and s.name != answer.failed_step]
    target.report = HostReport(
        host=name, environment=run.environment, status="rolled_back" if rolled_back else "failed",
        action=plan.action, from_release=plan.from_release, to_release=target.desired.release,
        live_release=answer.current,
        error=f"{answer.failed_step}: {answer.error}" + (f"; recovery: {'; '.join(recovery)}" if recovery else ""),
        steps=seconds,
        details={**({"marked_bad": target.desired.release} if answer.step("mark_bad") else {}),
                 **({"recovery_failures": recovery} if recovery else {})})
    session.progress.update(name, "result", "rolled_back" if rolled_back else "failed")


def deploy(ws: Workspace, customer: str, environment: str, version: str, *, serial: str | None = None,
           max_fail: str | None = None, only: list[str] | None = None, operator: str | None = None,
           override_promotion: str | None = None, progress: Progress) -> Outcome:
    threshold = max_fail_threshold(max_fail)
    artifact, targets = prepare(ws, customer, environment, version, only)
    planned_batches = batches(targets, serial)
    db = database.for_environment(ws, customer, environment)
    promotion = enforce_promotion(ws, customer, environment, artifact, override_promotion, progress)
    run = run_context("deploy", customer, environment, operator, reason=override_promotion or "")
    session = HostSession([t.host for t in targets] + ([db.host] if db else []), progress, ws.app, run.token)
    progress.start(f"deploy {artifact.version} to {customer}/{environment}",
                   [t.host.name for t in targets] + ([db.host.name] if db else []),
                   steps.DATABASE_DEPLOY_COLUMNS if db else steps.DEPLOY_COLUMNS)
    db_plan = None
    try:
        if db is not None:  # read before any host is locked: what it refuses touches nothing
            db_plan = database.plan_deploy(session, ws, db, artifact, serial=len(planned_batches) > 1,
                                           hosts=[t.host for t in targets])
            for target in targets:
                target.meta["schema_version"] = db_plan.release_schema
                target.database = db_plan.annotation()
        blocked_by = begin(session, run, ws, targets)
        faultpoints.reached("begin:done")
        if blocked_by is not None:
            held = f"{blocked_by.host.name}: {blocked_by.report.error}"
            for target in targets:
                if target.report is None:
                    target.report = HostReport(host=target.host.name, environment=environment, status="skipped",
                                               error=f"not touched: the environment is locked ({held})")
        elif db_plan is not None and db_plan.decision.migrates:
            database.roll_out(session, run, ws, artifact, targets, db_plan,
                              database.Hooks(install=install, activate=activate, abort=stop_remaining))
        else:
            roll_out(session, run, ws, artifact, planned_batches, threshold, len(targets))
    finally:
        release_locks(session, targets)
        session.close()
        progress.stop()
    extra = {**promotion, **({"database": db_plan.outcome()} if db_plan else {})}
    outcome = deploy_outcome("deploy", customer, environment, artifact.version, targets, extra)
    if db_plan is not None:
        outcome.text += "\n" + "\n".join(db_plan.describe_outcome())
    return outcome


def roll_out(session: HostSession, run: steps.RunContext, ws: Workspace, artifact: Artifact,
             planned_batches: list[list[Target]], threshold: float, total: int) -> None:
    """Batch after batch: every host of a batch installs before any cuts over; max-fail is global."""
    for index, batch in enumerate(planned_batches):
        failed = sum(1 for b in planned_batches[:index] for t in b if t.report and t.report.failed)
        if crossed(failed, total, threshold):
            stop_remaining(session, run, [t for b in planned_batches[index:] for t in b],
                           f"not deployed: {failed} of {total} hosts failed, over --max-fail")
            return
        working = [t for t in batch if t.report is None and t.plan is not None]
        session.fleet.map(lambda t: install(session, run, ws, artifact, t),
                          [t for t in working if t.plan.action == INSTALL])
        faultpoints.reached("install:done")
        session.fleet.map(lambda t: activate(session, run, ws, t), [t for t in working if t.report is None])
        faultpoints.reached("activate:done")


def stop_remaining(session: HostSession, run: steps.RunContext, targets: list[Target], reason: str) -> None:
    pending = [t for t in targets if t.report is None and t.plan is not None]
    requests = {t.host.name: (t.connected, steps.abort_batch(run, t.host.name, reason, keep_lock=t.leads))
                for t in pending}
    session.call_all(requests, BEGIN_TIMEOUT)
    for target in pending:
        target.report = HostReport(host=target.host.name, environment=run.environment, status="skipped",
                                   action=target.plan.action, from_release=target.plan.from_release,
                                   to_release=target.desired.release, live_release=target.plan.from_release,
                                   error=reason)
        session.progress.update(target.host.name, "result", "skipped")


def deploy_outcome(verb: str, customer: str, environment: str, version: str | None, targets: list[Target],
                   extra: Mapping[str, Any]) -> Outcome:
    reports = [t.report or HostReport(host=t.host.name, environment=environment, status="unknown",
                                      error="no result") for t in targets]
    failed = [r for r in reports if r.failed]
    what = f"{verb} {version} to" if version else verb
    lines = [f"{what} {customer}/{environment}: {len(reports) - len(failed)} of {len(reports)} host(s) ok"]
    for r in reports:
        lines.append("  " + describe_report(r))
    if failed:
        lines.append("Hosts that failed are on the release shown; nothing is left half-switched.")
    data = {"verb": verb, "customer": customer, "environment": environment, "release": version,
            "ok": not failed, "hosts": [r.as_dict() for r in reports], **dict(extra)}
    return Outcome(data, "\n".join(lines), failed=bool(failed))


def describe_report(r: HostReport) -> str:
    took = f" ({sum(r.steps.values()):.2f}s on host)" if r.steps else ""
    if r.status == "deployed":
        return f"{r.host}: {r.from_release or '(nothing)'} -> {r.to_release}, {r.action}, verified{took}"
    if r.status == "unchanged":
        return f"{r.host}: unchanged, {r.live_release} is live and verified{took}"
    if r.status == "rolled_back":
        return (f"{r.host}: FAILED at {r.error}; rolled back to {r.live_release} (verified); "
                f"{r.to_release} marked bad")
    if r.status == "locked":
        return f"{r.host}: {r.error}"
    if r.status == "unreachable":
        return f"{r.host}: {r.error}"
    live = f"; live: {r.live_release}" if r.live_release else ""
    return f"{r.host}: {r.status.upper()}: {r.error}{live}"


# -- plan -----------------------------------------------------------------------------------

def plan(ws: Workspace, customer: str, environment: str, version: str, *, only: list[str] | None = None,
         progress: Progress) -> Outcome:
    artifact, targets = prepare(ws, customer, environment, version, only)
    source, promotion = promotion_problems(ws, customer, environment, artifact, progress)
    db = database.for_environment(ws, customer, environment)
    session = HostSession([t.host for t in targets] + ([db.host] if db else []), progress, ws.app)
    db_plan = None
    try:
        if db is not None:  # what the deploy would do with the database: the same decision, read-only
            db_plan = database.plan_deploy(session, ws, db, artifact, serial=False, hosts=[t.host for t in targets])
        connected = session.connect()
        requests = {}
        for target in targets:
            target.connected = connected[target.host.name]
            if target.connected.ok:
                requests[target.host.name] = (target.connected,
                                              {"steps": [steps.read_state(ws.app, target.desired, with_text=True)]})
            else:
                target.report = HostReport(host=target.host.name, environment=environment, status="unreachable",
                                           error=target.connected.error)
        answers = session.call_all(requests, BEGIN_TIMEOUT)
    finally:
        session.close()
    host_plans = []
    lines = [f"plan: {artifact.version} to {customer}/{environment} (artifact sha256 {artifact.sha256[:16]})"]
    if source:
        lines.append(f"  promotion from {source}: " + ("ok" if not promotion else "REFUSED - " + "; ".join(promotion)))
    for target in targets:
        name = target.host.name
        answer = answers.get(name)
        if answer is None or not answer.ok:
            error = target.report.error if target.report else answer.error if answer else "no answer"
            host_plans.append({"host": name, "error": error})
            lines.append(f"  {name}: cannot plan: {error}")
            continue
        state = answer.data("state")
        facts = HostFacts.from_agent({**state, "desired_live": not state.get("desired_live_problems")})
        host_plan = plan_host(name, facts, target.desired)
        lock_state, lock_sentence = lock_report(state.get("lock"))
        host_plans.append({
            "host": name, "action": host_plan.action, "steps": list(host_plan.steps),
            "from_release": host_plan.from_release, "to_release": host_plan.to_release, "reason": host_plan.reason,
            "files": [{"dest": c.dest, "change": c.change, "secret": c.secret, "diff": c.diff}
                      for c in host_plan.file_changes],
            "lock": lock_state if state.get("lock") else None,
        })
        lines.append(f"  {name}: {host_plan.action.upper()} - {host_plan.reason}")
        if host_plan.changes:
            lines.append(f"    steps: {' -> '.join(host_plan.steps)}")
        for change in host_plan.file_changes:
            hidden = " (secret: contents not shown)" if change.secret else ""
            lines.append(f"    {change.change} {change.dest}{hidden}")
            if change.diff:
                lines.extend("      " + line for line in change.diff.rstrip("\n").splitlines())
        if state.get("lock"):
            lines.append(f"    {lock_sentence}")
    unreachable = any("error" in p for p in host_plans)
    data = {"customer": customer, "environment": environment, "release": artifact.version,
            "artifact_sha256": artifact.sha256, "promotion": {"source": source, "problems": promotion},
            "hosts": host_plans}
    if db_plan is not None:
        data["database"] = db_plan.as_dict()
        lines += database.describe_plan(db_plan)
    return Outcome(data, "\n".join(lines), failed=unreachable)


# -- rollback -------------------------------------------------------------------------------

def rollback(ws: Workspace, customer: str, environment: str, to_version: str | None, *, force: bool = False,
             serial: str | None = None, max_fail: str | None = None, only: list[str] | None = None,
             operator: str | None = None, restore_db: bool = False, down: bool = False,
             progress: Progress) -> Outcome:
    """The leader's lock first (the environment's, held to the end), then every host locks and rolls
    back in one round trip: a rollback during a cutover costs little more than one round trip. With
    a database, flows/database.py decides first (code only, --restore-db, --down, or refused)."""
    threshold = max_fail_threshold(max_fail)
    hosts = list(ws.hosts(customer, environment, only))
    planned_batches = batches(hosts, serial)
    db = database.for_environment(ws, customer, environment)
    if db is None and (restore_db or down):
        raise BadInput("--restore-db and --down need a database: golive.yml has no database section")
    if restore_db and down:
        raise BadInput("--restore-db and --down are two ways back: choose one")
    run = run_context("rollback", customer, environment, operator)
    session = HostSession(hosts + ([db.host] if db else []), progress, ws.app, run.token)
    reports: dict[str, HostReport] = {}
    leader: Host | None = None
    db_plan = None
    progress.start(f"rollback {customer}/{environment}" + (f" to {to_version}" if to_version else ""),
                   [h.name for h in hosts] + ([db.host.name] if db else []), steps.ROLLBACK_COLUMNS)
    try:
        connected = session.connect(hosts)
        for host in hosts:
            if not connected[host.name].ok:
                reports[host.name] = HostReport(host=host.name, environment=environment, status="unreachable",
                                                error=connected[host.name].error)
        if db is not None:  # decided before any lock: a refusal touches nothing
            db_plan = database.plan_rollback(session, ws, db, hosts, connected, to_version=to_version, force=force,
                                             restore_db=restore_db, down=down, serial=len(planned_batches) > 1,
                                             only=only)
        leader = take_environment_lock(session, run, [h for h in hosts if h.name not in reports], connected, reports)
        if leader is not None and db_plan is not None and db_plan.decision.changes_database:
            # The database changes: the environment goes back together (flows/database.py), not host by host.
            reports.update(database.apply_rollback(session, run, ws, db_plan,
                                                   [h for h in hosts if h.name not in reports], connected, leader))
        for index, batch in enumerate(planned_batches if leader else []):
            failed = sum(1 for r in reports.values() if r.failed)
            if crossed(failed, len(hosts), threshold):
                for host in (h for b in planned_batches[index:] for h in b):
                    reports.setdefault(host.name, HostReport(host=host.name, environment=environment, status="skipped",
                                                             error="not rolled back: over --max-fail"))
                break
            requests = {h.name: (connected[h.name], steps.with_database(
                steps.rollback_batch(run, ws.app, to_version, force, h.name, keep_lock=h is leader),
                db_plan.annotation() if db_plan else None)) for h in batch if h.name not in reports}
            for name, answer in session.call_all(requests, ACTIVATE_TIMEOUT).items():
                reports[name] = rollback_report(environment, name, answer)
                for step in answer.steps:
                    if step.name in steps.ROLLBACK_COLUMNS:
                        progress.update(name, step.name, "ok" if step.ok else "failed", f"{step.seconds:.2f}s")
                progress.update(name, "result", "ok" if answer.ok else "failed")
    finally:
        if leader is not None:
            answer = session.call(connected[leader.name], steps.release_batch(), timeout=BEGIN_TIMEOUT)
            if not answer.ok:
                progress.note(f"{leader.name}: could not release the environment lock ({answer.error}); "
                              f"`golive unlock` clears it")
        session.close()
        progress.stop()
    targets = [Target(h, None, {}, report=reports.get(h.name)) for h in hosts]  # type: ignore[arg-type]
    extra = {"to": to_version, "force": force, **({"database": db_plan.as_dict()} if db_plan else {})}
    outcome = deploy_outcome("rollback", customer, environment, to_version, targets, extra)
    if db_plan is not None:
        outcome.text += "\n" + "\n".join(db_plan.describe())
    return outcome


def take_environment_lock(session: HostSession, run: steps.RunContext, hosts: list[Host],
                          connected: Mapping[str, Connected], reports: dict[str, HostReport]) -> Host | None:
    """Lock the first reachable host, the environment's leader, and keep it to the end of the run:
    of two runs started together exactly one gets it. When another run holds it, every host is
    reported untouched and None is returned."""
    if not hosts:
        return None
    leader = hosts[0]
    answer = session.call(connected[leader.name], steps.lock_batch(run), timeout=BEGIN_TIMEOUT)
    if answer.ok:
        return leader
    if answer.holder is not None or answer.error == "locked":
        state, held = lock_report(answer.holder)
        reports[leader.name] = HostReport(host=leader.name, environment=run.environment, status="locked", error=held,
                                          lock=state)
    else:
        reports[leader.name] = HostReport(host=leader.name, environment=run.environment, status="failed",
                                          error=answer.error)
    for host in hosts[1:]:
        reports[host.name] = HostReport(host=host.name, environment=run.environment, status="skipped",
                                        error=f"not touched: the environment is locked ({leader.name}: "
                                              f"{reports[leader.name].error})")
    return None


def rollback_report(environment: str, name: str, answer: AgentAnswer) -> HostReport:
    chosen = answer.data("choose")
    target, previous = chosen.get("target"), chosen.get("from")
    if answer.ok:
        return HostReport(host=name, environment=environment, status="deployed", action="rollback",
                          from_release=previous, to_release=target, live_release=target,
                          steps=step_seconds(answer))
    if answer.holder is not None or answer.error == "locked":
        state, sentence = lock_report(answer.holder)
        return HostReport(host=name, environment=environment, status="locked", error=sentence, lock=state)
    return HostReport(host=name, environment=environment, status="failed", action="rollback", from_release=previous,
                      to_release=target, live_release=answer.current,
                      error=f"{answer.failed_step}: {answer.error}", steps=step_seconds(answer))

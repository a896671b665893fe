"""golive plan / deploy / rollback over pyinfra: the controller's side of golive.flows.steps.

Deploy and rollback run one skeleton (run_rollout), as Capistrano's deploy and rollback share their
hook points: begin (the leader's lock first, the environment's, held to the end), rolling batches
under one --max-fail rule, the leader's release last. A Rollout says what each verb does there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from golive.adapters import faultpoints
from golive.adapters.locks import takeover_allowed, takeover_detail
from golive.adapters.progress import Progress, StepFeed
from golive.adapters.remote import AgentAnswer
from golive.adapters.transport import Connected
from golive.core.errors import BadInput, Problem
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.plan import INSTALL, UNCHANGED, DesiredRelease, HostFacts, HostPlan, plan_host
from golive.core.release import Artifact
from golive.core.requires import Requirements
from golive.core.rollback import NOTHING_LIVE, Choice, RollbackFacts, choose, next_sequence
from golive.core.rollout import batches, crossed, max_fail_threshold
from golive.flows import database, steps
from golive.flows.desired import check_artifact_archive, desired_release, requirement_problems
from golive.flows.session import (
    HostReport,
    HostSession,
    chunks,
    lock_report,
    nothing_live_report,
    run_context,
    step_seconds,
)
from golive.workspace import Workspace

LEADER_HEAD_START = 1.0  # seconds the leader has the wire to itself (see Fleet.first_alone)


@dataclass
class Target:
    """One host of the run: what it should become and what is known of it so far."""

    host: Host
    desired: DesiredRelease | None = None  # a deploy's; a rollback's target is chosen on the leader
    meta: dict[str, Any] = field(default_factory=dict)
    connected: Connected | None = None
    plan: HostPlan | None = None
    report: HostReport | None = None
    answers: tuple[AgentAnswer, ...] = ()
    leads: bool = False  # the run's leader: its lock is the environment's, held until the run ends
    run: dict[str, Any] = field(default_factory=dict)  # its service, health and hooks (steps.release_run)
    takeover: dict[str, Any] | None = None  # the stale lock this run took over on the host
    database: dict[str, Any] = field(default_factory=dict)  # steps.with_database: what verify expects, ...

    @property
    def link(self) -> Connected:
        """`connected`, for a round trip: _reachable set it first (every caller has been past it)."""
        assert self.connected is not None, f"{self.host.name}: a round trip before its connection"
        return self.connected


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
        for name, answer in session.call_all(requests, ws.app.timeouts.begin).items():
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
        spec = ws.app.environment(environment)
        return {"required": spec.promote_from if spec else None, "overridden": override}
    source, problems = promotion_problems(ws, customer, environment, artifact, progress)
    if problems:
        raise BadInput([Problem("promotion", f"{environment} only accepts an artifact that {source} runs, "
                                             f"verified and checked: {p}") for p in problems]
                       + [Problem("promotion", "deploy it to staging and run golive check there first, or pass "
                                               "--override-promotion \"reason\" (recorded in the ledger)")])
    return {"required": source, "passed": source is not None}


# -- the skeleton both verbs run ------------------------------------------------------------

class Rollout:
    """What one verb does at each hook point of run_rollout."""

    verb = ""
    done = ""  # how a host the run stopped before is reported: "not <done>: ..."
    # begin locks every host (a deploy: nothing changes while any host is another run's), or the
    # leader alone (a rollback: each other host locks in its own round trip, and one another run
    # holds is reported and left alone while the others go back)
    locks_every_host = True

    def __init__(self, session: HostSession, run: steps.RunContext, ws: Workspace) -> None:
        self.session, self.run, self.ws = session, run, ws

    def begin_request(self, target: Target, takeover: Mapping[str, Any] | None) -> dict[str, Any]:
        """The first round trip (the lock first); `takeover`: a stale lock of this controller's own
        dead run, to replace (call_taking_over)."""
        raise NotImplementedError

    def begun(self, target: Target, answer: AgentAnswer) -> None:
        """The begin round trip got past the lock: what the host said."""

    def prepared(self, targets: list[Target]) -> None:
        """Every begin round trip is back, no batch has started."""

    def ready(self, target: Target) -> bool:
        """The target takes part in its batch (it has no report yet)."""
        return True

    def run_batch(self, batch: list[Target]) -> None:
        raise NotImplementedError

    def run_batches(self, targets: list[Target], planned_batches: list[list[Target]], threshold: float) -> None:
        """Everything between begin and the leader's release: batch after batch (roll_out), unless a
        verb changes the environment as a whole (a database step once for every host)."""
        roll_out(self, planned_batches, threshold, len(targets))

    def release_request(self, targets: list[Target]) -> dict[str, Any]:
        return steps.release_batch()

    def closing(self, targets: list[Target]) -> None:
        """Just before the leader's lock is given back (a rollback finishes on its chooser)."""


def run_rollout(rollout: Rollout, targets: list[Target], planned_batches: list[list[Target]],
                threshold: float) -> None:
    """begin -> batches -> release the leader: the lock and --max-fail rules of every verb."""
    session = rollout.session
    interrupted = False
    try:
        blocked_by = begin(rollout, targets)
        faultpoints.reached("begin:done")
        if blocked_by is not None:
            assert blocked_by.report is not None  # begin returns the host whose report says it is locked
            held = f"{blocked_by.host.name}: {blocked_by.report.error}"
            for target in targets:
                if target.report is None:
                    target.report = HostReport(host=target.host.name, environment=rollout.run.environment,
                                               status="skipped", error=f"not touched: the environment is locked "
                                                                       f"({held})")
        else:
            rollout.prepared(targets)
            rollout.run_batches(targets, planned_batches, threshold)
    except KeyboardInterrupt:
        # Ctrl-C (often pressed because a host hangs): no more round trips, golive stops at once. The
        # leader keeps the environment lock while its agent finishes the batch it runs (no other run
        # starts beside it); its holder, this process, is then gone: the re-run takes it over.
        interrupted = True
        raise
    finally:
        if not interrupted:
            release_leader(rollout, targets)
        session.close()
        session.progress.stop()


def begin(rollout: Rollout, targets: list[Target]) -> Target | None:
    """Lock the leader, and for a deploy every host after it: whoever holds the leader's lock owns
    the environment. The leader connects and answers alone (for up to LEADER_HEAD_START seconds),
    the others connect meanwhile, and each one's round trip starts as soon as it is connected.

    Returns the host another run holds, when there is one; then this run has released every lock
    it took and changed nothing (a host held by another run, even a stale lock of a crashed one,
    means the environment is not this run's to change until `golive unlock`)."""
    session = rollout.session

    def lead() -> Target | None:
        leader = next((t for t in targets if _reachable(session, t)), None)
        if leader is not None:
            leader.leads = True
            _begin_one(rollout, leader)
        return leader

    leader = session.fleet.first_alone(lead, LEADER_HEAD_START)
    if leader is None:
        return None
    if leader.report is not None and leader.report.status == "locked":
        return leader
    if not rollout.locks_every_host:
        return None
    rest = targets[targets.index(leader) + 1:]
    session.fleet.map(lambda t: _begin_one(rollout, t) if _reachable(session, t) else None, rest)
    blocked = [t for t in rest if t.report is not None and t.report.status == "locked"]
    if not blocked:
        return None
    ours = [t for t in rest if holds_lock(t) and t.report is None]
    session.call_all({t.host.name: (t.link, steps.release_batch()) for t in ours}, session.timeouts.begin)
    return blocked[0]


def step_feed(session: HostSession, host: str, columns: tuple[str, ...]) -> StepFeed:
    """A host's batch shown step by step on the progress table while it runs (Agent.report_step)."""
    return StepFeed(session.progress, host, columns, steps.STEP_COLUMNS, steps.UNDO_STEPS)


def first_install_report(environment: str, name: str, action: str | None, release: str, failure: str,
                         *, withdrawn: bool, live: str | None, withdraw_error: str | None = None,
                         recovery: list[str] | None = None, seconds: dict[str, float] | None = None) -> HostReport:
    """A first install that failed after its cutover, by either engine: there was no earlier release
    to go back to, so its service was stopped and `current` removed (Agent.step_withdraw, the role's
    withdraw): the host runs nothing. When the stop failed, the failed release is still live and
    the report says so. `failure`: "<step>: <why>", the step that failed."""
    if withdrawn:
        now = "nothing running: first install failed"
        undone = f"no earlier release to roll back to: stopped {release}'s service and removed current; {now}"
    else:
        now = f"{live} is live but failed its check" if live else "nothing running: first install failed"
        undone = f"no earlier release to roll back to; {now}"
    error = f"{failure}; {undone}"
    if withdraw_error:
        error += f" (withdraw: {withdraw_error})"
    problems = [r for r in recovery or () if not r.startswith("withdraw:")]
    if problems:
        error += f"; recovery: {'; '.join(problems)}"
    return HostReport(host=name, environment=environment, status="failed", action=action, from_release=None,
                      to_release=release, live_release=live, error=error, steps=dict(seconds or {}),
                      details={"first_install": True, "running": now, "marked_bad": release,
                               "nothing_to_roll_back_to": True, "withdrawn": withdrawn,
                               **({"recovery_failures": problems} if problems else {})})


def call_taking_over(session: HostSession, connected: Connected,
                     request: Callable[[Mapping[str, Any] | None], dict[str, Any]],
                     *, timeout: float,
                     on_step: Callable[[str, str, float | None], None] | None = None,
                     ) -> tuple[AgentAnswer, dict[str, Any] | None]:
    """Run a batch that starts with the host's lock; when a run that died on this very controller
    holds it (takeover_allowed: its process is gone), run the batch again taking that lock over:
    go-live night's re-run needs no `golive unlock` for its own crashed run. Returns the answer and
    the stale holder taken over (None: no takeover); the takeover is in the host's ledger and on
    the progress display, and the run's report says it."""
    answer = session.call(connected, request(None), timeout=timeout, on_step=on_step)
    if answer.ok or answer.failed_step != "lock" or not takeover_allowed(answer.holder):
        return answer, None
    stale = dict(answer.holder or {})
    answer = session.call(connected, request(stale), timeout=timeout, on_step=on_step)
    lock_step = answer.step("lock")
    if lock_step is None or not lock_step.ok or not lock_step.data.get("took_over"):
        return answer, None
    session.progress.note(f"{connected.host.name}: {takeover_detail(stale)} (recorded in the host's ledger)")
    return answer, stale


def _begin_one(rollout: Rollout, target: Target) -> None:
    session, name, environment = rollout.session, target.host.name, rollout.run.environment
    session.progress.update(name, "lock", "running")
    answer, target.takeover = call_taking_over(session, target.link,
                                               lambda stale: rollout.begin_request(target, stale),
                                               timeout=session.timeouts.begin)
    target.answers = (answer,)
    if not answer.ok and not holds_lock(target):
        if answer.holder is not None or answer.error == "locked":
            state, sentence = lock_report(answer.holder)
            target.report = HostReport(host=name, environment=environment, status="locked", error=sentence,
                                       lock=state)
            session.progress.update(name, "lock", "failed", "locked")
        else:
            target.report = HostReport(host=name, environment=environment, status="failed", error=answer.error)
            session.progress.update(name, "lock", "failed")
        return
    session.progress.update(name, "lock", "ok")
    if not answer.ok:
        target.report = HostReport(host=name, environment=environment, status="failed",
                                   error=f"{answer.failed_step}: {answer.error}")
        return
    rollout.begun(target, answer)


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


def roll_out(rollout: Rollout, planned_batches: list[list[Target]], threshold: float, total: int) -> None:
    """Batch after batch; --max-fail counts the failed hosts of the whole run, before each batch."""
    for index, batch in enumerate(planned_batches):
        failed = sum(1 for b in planned_batches[:index] for t in b if t.report and t.report.failed)
        if crossed(failed, total, threshold):
            stop_remaining(rollout, [t for b in planned_batches[index:] for t in b],
                           f"not {rollout.done}: {failed} of {total} hosts failed, over --max-fail")
            return
        rollout.run_batch([t for t in batch if t.report is None and rollout.ready(t)])


def stop_remaining(rollout: Rollout, targets: list[Target], reason: str) -> None:
    """The hosts of the batches --max-fail stopped: those this run locked are recorded as skipped
    and unlocked (a deploy's); the others were never touched (a rollback's)."""
    session, run = rollout.session, rollout.run
    pending = [t for t in targets if t.report is None]
    locked = [t for t in pending if holds_lock(t)]
    session.call_all({t.host.name: (t.link, steps.abort_batch(run, t.host.name, reason, keep_lock=t.leads))
                      for t in locked}, session.timeouts.begin)
    for target in pending:
        plan = target.plan
        target.report = HostReport(host=target.host.name, environment=run.environment, status="skipped",
                                   action=plan.action if plan else None,
                                   from_release=plan.from_release if plan else None,
                                   to_release=target.desired.release if plan and target.desired else None,
                                   live_release=plan.from_release if plan else None, error=reason)
        session.progress.update(target.host.name, "result", "skipped")


def release_leader(rollout: Rollout, targets: list[Target]) -> None:
    """The last round trips of a run: the locks a migrating deploy kept on every host (the
    environment's recovery needed them all), then the environment lock the leader held throughout."""
    session = rollout.session
    rollout.closing(targets)
    held = [t for t in targets if not t.leads and t.database.get("keep_locks") and holds_lock(t)]
    if held:
        session.call_all({t.host.name: (t.link, steps.release_batch()) for t in held}, session.timeouts.begin)
    leader = next((t for t in targets if t.leads and holds_lock(t)), None)
    if leader is None:
        return
    answer = session.call(leader.link, rollout.release_request(targets), timeout=session.timeouts.begin)
    if not answer.ok:
        session.progress.note(f"{leader.host.name}: could not release the environment lock ({answer.error}); "
                              f"`golive status` will show it, `golive unlock` clears it")


# -- deploy ---------------------------------------------------------------------------------

# What a refusal for unmet requirements says about the run, by verb.
REQUIREMENTS_REFUSED = ("refused before anything was uploaded: no host was changed, the locks this run took are "
                        "released; deploy it to hosts that have what it requires, or ask its vendor for a build "
                        "these hosts can run")
REQUIREMENTS_PLAN = ("golive deploy would refuse it before uploading anything (nothing was changed); deploy it to "
                     "hosts that have what it requires, or ask its vendor for a build these hosts can run")


def prepare(ws: Workspace, customer: str, environment: str, version: str,
            only: list[str] | None) -> tuple[Artifact, list[Target], Requirements]:
    """Everything that can be refused without touching a host; and what the artifact requires of a
    host (checked against each host's facts once its state is read)."""
    hosts = ws.hosts(customer, environment, only)
    artifact = ws.artifact(version)
    requirements = check_artifact_archive(ws.app, artifact, ws.cache_dir)
    targets = []
    problems: list[Problem] = []
    for host in hosts:
        try:
            desired, meta, release_run = desired_release(ws, host, artifact)
        except BadInput as error:
            problems.extend(p for p in error.problems if p not in problems)
            continue
        targets.append(Target(host, desired, meta, run=release_run))
    if problems:
        raise BadInput(problems)
    return artifact, targets, requirements


def platforms(answers: Mapping[str, AgentAnswer]) -> dict[str, dict[str, Any]]:
    """Each host's facts from its state step (the begin batch's, or plan's), for the hosts whose
    answer has one: host name -> the answer holding its state step."""
    found = {}
    for name, answer in answers.items():
        state = answer.step("state")
        if state is not None and state.ok:
            found[name] = state.data.get("platform") or {}
    return found


class Deploy(Rollout):
    """lock + state everywhere; then per batch: install everywhere, then activate everywhere."""

    verb, done = "deploy", "deployed"

    def __init__(self, session: HostSession, run: steps.RunContext, ws: Workspace, artifact: Artifact,
                 db_plan: database.DeployPlan | None = None, requirements: Requirements | None = None) -> None:
        super().__init__(session, run, ws)
        self.artifact, self.db_plan = artifact, db_plan
        self.requirements = requirements or Requirements()
        self.seq: int | None = None  # the deploy sequence this run gives what it makes live

    def begin_request(self, target: Target, takeover: Mapping[str, Any] | None) -> dict[str, Any]:
        assert target.desired is not None  # prepare gives every target of a deploy its release
        return steps.begin_batch(self.run, self.ws.app, target.desired, target.host.name, target.leads,
                                 takeover=takeover)

    def begun(self, target: Target, answer: AgentAnswer) -> None:
        name, environment, desired = target.host.name, self.run.environment, target.desired
        assert desired is not None  # prepare gives every target of a deploy its release
        state = answer.data("state")
        facts = HostFacts.from_agent({**state, "desired_live": not state.get("desired_live_problems"),
                                      "desired_live_problems": state.get("desired_live_problems") or ()})
        target.plan = plan_host(name, facts, desired, mask=self.ws.redactor.text)
        if target.plan.action == UNCHANGED:
            if not answer.data("record").get("unchanged"):  # the host changed between state and finish
                target.report = HostReport(host=name, environment=environment, status="failed",
                                           error="host state changed during the run")
                return
            target.report = HostReport(host=name, environment=environment, status="unchanged", action=UNCHANGED,
                                       from_release=facts.current, to_release=desired.release,
                                       live_release=facts.current, steps=step_seconds(answer))
            self.session.progress.update(name, "result", "unchanged")

    def prepared(self, targets: list[Target]) -> None:
        """Every host's state is read, nothing is uploaded yet: an artifact a host cannot run is refused
        here, for every host at once (its requirements against the facts the state step read)."""
        begun = {t.host.name: t.answers[0] for t in targets if t.answers}
        problems = requirement_problems(self.requirements, self.artifact, platforms(begun), REQUIREMENTS_REFUSED)
        if problems:
            # the leader's lock is given back by run_rollout's release_leader; an unchanged host's
            # was given back by its begin batch (finish_if_unchanged)
            ours = [t for t in targets if holds_lock(t) and not t.leads and t.report is None]
            self.session.call_all({t.host.name: (t.link, steps.release_batch()) for t in ours},
                                  self.session.timeouts.begin)
            for name in {p.where for p in problems if p.where != self.artifact.name}:
                self.session.progress.update(name, "result", "failed", "requirements")
            raise BadInput(problems)
        self.seq = next_sequence(t.answers[0].data("state") for t in targets if t.answers)

    def ready(self, target: Target) -> bool:
        return target.plan is not None

    def run_batches(self, targets: list[Target], planned_batches: list[list[Target]], threshold: float) -> None:
        """A deploy that migrates the database is one step of the environment (flows/database.py:
        install everywhere, stop, backup, migrate once, activate everywhere, or put it all back)."""
        if self.db_plan is None or not self.db_plan.decision.migrates:
            super().run_batches(targets, planned_batches, threshold)
            return
        database.roll_out(self.session, self.run, self.ws, self.artifact, targets, self.db_plan,
                          database.Hooks(install=self.install, activate=self.activate,
                                         abort=lambda pending, reason: stop_remaining(self, pending, reason),
                                         seq=self.seq))

    def run_batch(self, batch: list[Target]) -> None:
        """Every host of a batch installs before any cuts over."""
        # the batch's hosts are the planned ones (ready)
        self.session.fleet.map(self.install, [t for t in batch if t.plan is not None and t.plan.action == INSTALL])
        faultpoints.reached("install:done")
        self.session.fleet.map(self.activate, [t for t in batch if t.report is None])
        faultpoints.reached("activate:done")

    def install(self, target: Target) -> None:
        session, run, ws, artifact, name = self.session, self.run, self.ws, self.artifact, target.host.name
        plan, desired = target.plan, target.desired
        assert plan is not None and desired is not None  # only a planned host installs
        request = steps.install_batch(run, ws.app, plan, desired, artifact, target.meta, target.run, name,
                                      keep_lock=target.leads)
        uploading = "upload" in plan.steps
        session.progress.update(name, "upload" if uploading else "unpack", "running")
        feed = step_feed(session, name, ("upload", "unpack", "configure"))
        answer = session.call(target.link, request, chunks(artifact.path) if uploading else (),
                              session.timeouts.install, on_step=feed.event)
        target.answers += (answer,)
        feed.settle(answer.steps)
        if not answer.ok:
            target.report = HostReport(host=name, environment=run.environment, status="failed",
                                       action=plan.action, from_release=plan.from_release,
                                       to_release=desired.release, live_release=plan.from_release,
                                       error=f"{answer.failed_step or 'install'}: {answer.error}",
                                       steps=step_seconds(*target.answers))

    def activate(self, target: Target) -> None:
        session, run, ws, artifact, name = self.session, self.run, self.ws, self.artifact, target.host.name
        plan, desired = target.plan, target.desired
        assert plan is not None and desired is not None  # only a planned host activates
        hooks = target.run.get("hooks", {})
        earlier = step_seconds(*target.answers)
        # a migrating deploy keeps every host's lock to the end: its recovery is the environment's
        keep_lock = target.leads or bool(target.database.get("keep_locks"))
        request = steps.with_database(steps.activate_batch(run, ws.app, plan, desired, hooks, earlier,
                                                           name, keep_lock=keep_lock, seq=self.seq, artifact=artifact),
                                      target.database)
        uploading = any(s["op"] == "upload" for s in request["steps"])  # a repair restoring a code file
        session.progress.update(name, "cutover", "running")
        feed = step_feed(session, name, ("configure", "cutover", "restart", "verify", "undo"))
        answer = session.call(target.link, request, chunks(artifact.path) if uploading else (),
                              timeout=session.timeouts.activate, on_step=feed.event)
        target.answers += (answer,)
        withdrawn = answer.data("withdraw").get("withdrawn")
        feed.settle(answer.steps, withdrawn=bool(withdrawn))
        seconds = step_seconds(*target.answers)
        if answer.ok:
            target.report = HostReport(host=name, environment=run.environment, status="deployed",
                                       action=plan.action, from_release=plan.from_release,
                                       to_release=desired.release, live_release=desired.release,
                                       steps=seconds)
            session.progress.update(name, "result", "ok")
            return
        if answer.transport_error:
            # The agent goes on without us: it finishes the batch or rolls it back, and records which.
            target.report = HostReport(host=name, environment=run.environment, status="unknown", action=plan.action,
                                       from_release=plan.from_release, to_release=desired.release,
                                       live_release=None, steps=seconds,
                                       error=f"{answer.error}; the host finishes or rolls back the cutover on its "
                                             f"own and records the outcome: see `golive status` once it is reachable")
            session.progress.update(name, "result", "failed")
            return
        rolled_back = answer.result == "rolled_back"
        # Every recovery step ran; the ones that failed (an on_rollback hook, the old release's health) are said.
        recovery = [f"{s.name}: {s.error}" for s in answer.steps if not s.ok and s.name != answer.failed_step]
        withdraw = answer.step("withdraw")
        if not plan.from_release and withdraw is not None:
            target.report = first_install_report(
                run.environment, name, plan.action, desired.release, f"{answer.failed_step}: {answer.error}",
                withdrawn=bool(withdrawn), live=answer.current, recovery=recovery, seconds=seconds,
                withdraw_error=withdraw.error if not withdraw.ok else None)
            session.progress.update(name, "result", "failed")
            return
        target.report = HostReport(
            host=name, environment=run.environment, status="rolled_back" if rolled_back else "failed",
            action=plan.action, from_release=plan.from_release, to_release=desired.release,
            live_release=answer.current,
            error=f"{answer.failed_step}: {answer.error}" + (f"; recovery: {'; '.join(recovery)}" if recovery else ""),
            steps=seconds,
            details={**({"marked_bad": desired.release} if answer.step("mark_bad") else {}),
                     **({"recovery_failures": recovery} if recovery else {})})
        session.progress.update(name, "result", "rolled_back" if rolled_back else "failed")


def deploy(ws: Workspace, customer: str, environment: str, version: str, *, serial: str | None = None,
           max_fail: str | None = None, only: list[str] | None = None, operator: str | None = None,
           override_promotion: str | None = None, progress: Progress) -> Outcome:
    threshold = max_fail_threshold(max_fail)
    artifact, targets, requirements = prepare(ws, customer, environment, version, only)
    planned_batches = batches(targets, serial)
    db = database.for_environment(ws, customer, environment)
    promotion = enforce_promotion(ws, customer, environment, artifact, override_promotion, progress)
    run = run_context("deploy", customer, environment, operator, reason=override_promotion or "")
    session = HostSession([t.host for t in targets] + ([db.host] if db else []), progress, ws.app, run.token)
    progress.start(f"deploy {artifact.version} to {customer}/{environment}",
                   [t.host.name for t in targets] + ([db.host.name] if db else []),
                   steps.DATABASE_DEPLOY_COLUMNS if db else steps.DEPLOY_COLUMNS)
    db_plan = None
    if db is not None:  # read before any host is locked: what it refuses touches nothing
        try:
            db_plan = database.plan_deploy(session, ws, db, artifact, serial=len(planned_batches) > 1,
                                           hosts=[t.host for t in targets])
        except BaseException:
            session.close()
            progress.stop()
            raise
        for target in targets:
            target.meta["schema_version"] = db_plan.release_schema
            target.database = db_plan.annotation()
    run_rollout(Deploy(session, run, ws, artifact, db_plan, requirements), targets, planned_batches, threshold)
    extra = {**promotion, **({"database": db_plan.outcome()} if db_plan else {})}
    outcome = deploy_outcome("deploy", customer, environment, artifact.version, targets, extra)
    if db_plan is not None:
        outcome.text += "\n" + "\n".join(db_plan.describe_outcome())
    return outcome


def deploy_outcome(verb: str, customer: str, environment: str, version: str | None, targets: list[Target],
                   extra: Mapping[str, Any], notes: list[str] | None = None) -> Outcome:
    reports = [t.report or HostReport(host=t.host.name, environment=environment, status="unknown",
                                      error="no result") for t in targets]
    for target, report in zip(targets, reports, strict=True):
        if target.takeover:
            report.details["lock_takeover"] = target.takeover
    failed = [r for r in reports if r.failed]
    what = f"{verb} {version} to" if version else verb
    lines = [f"{what} {customer}/{environment}: {len(reports) - len(failed)} of {len(reports)} host(s) ok"]
    lines += ["  " + note for note in notes or ()]
    for r in reports:
        lines.append("  " + describe_report(r))
        if r.details.get("lock_takeover"):
            lines.append(f"  {r.host}: {takeover_detail(r.details['lock_takeover'])} (recorded in the host's ledger)")
    if failed:
        lines.append("Hosts that failed are on the release shown; nothing is left half-switched.")
    data = {"verb": verb, "customer": customer, "environment": environment, "release": version,
            "ok": not failed, "hosts": [r.as_dict() for r in reports], **dict(extra)}
    return Outcome(data, "\n".join(lines), failed=bool(failed))


def describe_report(r: HostReport) -> str:
    took = f" ({sum(r.steps.values()):.2f}s on host)" if r.steps else ""
    if r.status == "deployed" and r.details.get("restarted"):
        return f"{r.host}: already on {r.live_release}, restarted (the service did not serve it), verified{took}"
    if r.status == "deployed":
        return f"{r.host}: {r.from_release or '(nothing)'} -> {r.to_release}, {r.action}, verified{took}"
    if r.status == "unchanged" and r.action == "rollback":
        return f"{r.host}: already on {r.live_release}, verified{took}"
    if r.status == "unchanged":
        return f"{r.host}: unchanged, {r.live_release} is live and verified{took}"
    if r.status == "rolled_back":
        return (f"{r.host}: FAILED at {r.error}; rolled back to {r.live_release} (verified); "
                f"{r.to_release} marked bad")
    if r.status == "locked":
        return f"{r.host}: {r.error}"
    if r.status == "unreachable":
        return f"{r.host}: {r.error}"
    if r.status == "nothing_live":
        return f"{r.host}: {NOTHING_LIVE}"
    if r.details.get("first_install"):
        return f"{r.host}: FAILED at {r.error}; {r.to_release} marked bad"
    live = f"; live: {r.live_release}" if r.live_release else ""
    return f"{r.host}: {r.status.upper()}: {r.error}{live}"


# -- plan -----------------------------------------------------------------------------------

def plan(ws: Workspace, customer: str, environment: str, version: str, *, only: list[str] | None = None,
         progress: Progress) -> Outcome:
    artifact, targets, requirements = prepare(ws, customer, environment, version, only)
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
        answers = session.call_all(requests, ws.app.timeouts.begin)
    finally:
        session.close()
    refused = requirement_problems(requirements, artifact, platforms(answers), REQUIREMENTS_PLAN)
    if refused:
        raise BadInput(refused)
    host_plans: list[dict[str, Any]] = []
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
        assert target.desired is not None  # prepare gives every target of a deploy its release
        host_plan = plan_host(name, facts, target.desired, mask=ws.redactor.text)
        lock_state, lock_sentence = lock_report(state.get("lock"))
        host_plans.append({
            "host": name, "action": host_plan.action, "steps": list(host_plan.steps),
            "from_release": host_plan.from_release, "to_release": host_plan.to_release, "reason": host_plan.reason,
            "files": [{"dest": c.dest, "change": c.change, "secret": c.secret, "diff": c.diff}
                      for c in host_plan.file_changes],
            "repairs": [{"path": r.path, "aspects": list(r.aspects), "action": r.action} for r in host_plan.repairs],
            "lock": lock_state if state.get("lock") else None,
        })
        lines.append(f"  {name}: {host_plan.action.upper()} - {host_plan.reason}")
        if host_plan.changes:
            lines.append(f"    steps: {' -> '.join(host_plan.steps)}")
        for item in host_plan.repairs:
            lines.append(f"    {item.describe()}")
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

class Rollback(Rollout):
    """The leader's lock + state: the environment's target is chosen there (golive.core.rollback);
    then each host locks, finds that target among its releases, records the intent and rolls back
    in one round trip; the leader marks the rollback finished when every host ended on the target.
    A host that runs no release is left as it is; when the leader runs none, the target is chosen
    on the first host that runs one (its chooser: read once, under the leader's lock), and that
    host marks the rollback finished."""

    verb, done, locks_every_host = "rollback", "rolled back", False

    def __init__(self, session: HostSession, run: steps.RunContext, ws: Workspace, to: str | None,
                 force: bool, db_plan: database.RollbackPlan | None = None) -> None:
        super().__init__(session, run, ws)
        self.to, self.force, self.db_plan = to, force, db_plan
        self.choice: Choice | None = None
        self.leader: Target | None = None
        self.chooser: Target | None = None  # the host whose releases decided the target

    def begin_request(self, target: Target, takeover: Mapping[str, Any] | None) -> dict[str, Any]:
        return steps.rollback_begin_batch(self.run, self.ws.app, target.host.name, takeover)

    def begun(self, target: Target, answer: AgentAnswer) -> None:
        self.leader = target
        facts = RollbackFacts.from_agent(answer.data("state"))
        if facts.nothing_live:  # its lock is still the environment's; the target is chosen elsewhere
            self.left_as_it_is(target)
            return
        self.decide(target, facts)

    def left_as_it_is(self, target: Target) -> None:
        target.report = nothing_live_report(self.run.environment, target.host.name)
        self.session.progress.update(target.host.name, "result", "skipped", "nothing live")

    def decide(self, target: Target, facts: RollbackFacts) -> None:
        self.chooser = target
        choice = choose(facts, to=self.to, force=self.force)
        if choice.release is None:
            target.report = HostReport(host=target.host.name, environment=self.run.environment, status="failed",
                                       action="rollback", from_release=facts.current, live_release=facts.current,
                                       error=f"choose: {choice.problem}")
            self.session.progress.update(target.host.name, "choose", "failed")
            return
        self.choice = choice

    def prepared(self, targets: list[Target]) -> None:
        if self.chooser is None and self.leader is not None:
            self.choose_elsewhere(targets)
        if self.choice is not None:
            return
        chooser = self.chooser
        why = (f"{chooser.host.name}: {chooser.report.error}" if chooser is not None and chooser.report
               else "no host could be read" if self.leader is None else "no host that could be read runs a release")
        for target in targets:
            if target.report is None:
                target.report = HostReport(host=target.host.name, environment=self.run.environment,
                                           status="skipped", error=f"not rolled back: the environment's target "
                                                                   f"could not be chosen ({why})")

    def choose_elsewhere(self, targets: list[Target]) -> None:
        """The leader runs no release: read the others (one read-only round trip, under the leader's
        lock) and choose on the first that runs one; those that run none are left as they are."""
        rest = [t for t in targets if t.report is None]
        self.session.fleet.map(lambda t: _reachable(self.session, t), rest)
        readable = [t for t in rest if t.report is None]
        answers = self.session.call_all({t.host.name: (t.link, {"steps": [steps.read_state(self.ws.app)]})
                                         for t in readable}, self.session.timeouts.begin)
        for target in readable:
            answer = answers[target.host.name]
            if not answer.ok:
                continue  # its own round trip says what is wrong there
            facts = RollbackFacts.from_agent(answer.data("state"))
            if facts.nothing_live:
                self.left_as_it_is(target)
            elif self.chooser is None:
                self.decide(target, facts)

    def run_batches(self, targets: list[Target], planned_batches: list[list[Target]], threshold: float) -> None:
        """A rollback that changes the database (a restore, down-migrations) takes the whole environment
        back together: every host stopped and switched, the database changed once, every host started."""
        if self.db_plan is None or not self.db_plan.decision.changes_database:
            super().run_batches(targets, planned_batches, threshold)
            return
        if self.choice is None or self.leader is None or self.choice.release is None:
            return  # prepared() reported every host
        chooser = self.chooser.host.name if self.chooser is not None else self.leader.host.name
        planned = self.db_plan.targets.get(chooser)
        if planned is not None and (self.db_plan.leader != chooser or planned != self.choice.release.id):
            # the database was decided for another target than the one chosen under the lock
            for target in targets:
                if target.report is None:
                    target.report = HostReport(
                        host=target.host.name, environment=self.run.environment, status="skipped",
                        action="rollback", error=f"not rolled back: the environment changed while the rollback was "
                                                 f"planned ({self.db_plan.leader} would go to {planned}, "
                                                 f"{chooser} chose {self.choice.release.id} under the leader's "
                                                 f"lock); nothing was changed, run it again")
            return
        pending = [t for t in targets if t.report is None]
        self.session.fleet.map(lambda t: _reachable(self.session, t), pending)
        reachable = [t for t in pending if t.report is None]
        by_name = {t.host.name: t for t in reachable}

        def lock(host: Host) -> AgentAnswer:
            # a stale lock of this controller's own dead run (a rollback killed half way) is taken over
            target = by_name[host.name]
            answer, target.takeover = call_taking_over(
                self.session, target.link, lambda stale: steps.lock_batch(self.run, stale, host.name),
                timeout=self.session.timeouts.begin)
            return answer

        reports = database.apply_rollback(self.session, self.run, self.ws, self.db_plan, [t.host for t in reachable],
                                          {t.host.name: t.link for t in reachable}, self.leader.host,
                                          lock=lock)
        for target in reachable:
            target.report = reports.get(target.host.name) or HostReport(
                host=target.host.name, environment=self.run.environment, status="skipped", action="rollback",
                error="not rolled back: it keeps no release the environment goes back to")
        faultpoints.reached("rollback:done")

    def run_batch(self, batch: list[Target]) -> None:
        self.session.fleet.map(self.roll_back, batch)
        faultpoints.reached("rollback:done")

    def roll_back(self, target: Target) -> None:
        session, name = self.session, target.host.name
        if not _reachable(session, target):
            return
        assert self.choice is not None
        spec = self.choice.spec(self.to)
        annotation = self.db_plan.annotation() if self.db_plan else None
        feed = step_feed(session, name, steps.ROLLBACK_COLUMNS)
        if target.leads:  # its lock is this run's since begin
            answer = session.call(target.link, steps.with_database(steps.rollback_batch(
                self.run, self.ws.app, spec, self.force, name, keep_lock=True), annotation),
                timeout=session.timeouts.activate, on_step=feed.event)
        else:
            answer, target.takeover = call_taking_over(session, target.link, lambda stale: steps.with_database(
                steps.rollback_batch(self.run, self.ws.app, spec, self.force, name, takeover=stale), annotation),
                timeout=session.timeouts.activate, on_step=feed.event)
        target.answers += (answer,)
        target.report = rollback_report(self.run.environment, name, answer, self.to, self.force)
        feed.settle(answer.steps)
        session.progress.update(name, "result", "ok" if answer.ok else "failed")

    def finished(self, targets: list[Target]) -> bool:
        """Every host of the run ended on the target; a host that runs nothing is not rolled back,
        and does not keep the rollback unfinished."""
        return self.choice is not None and all(
            t.report is not None and t.report.status in ("deployed", "unchanged", "nothing_live") for t in targets)

    def release_request(self, targets: list[Target]) -> dict[str, Any]:
        return steps.release_batch(finished_rollback=self.chooser is self.leader and self.finished(targets))

    def closing(self, targets: list[Target]) -> None:
        # the chooser's intent is the one the next rollback reads (the leader, running nothing, has none)
        chooser = self.chooser
        if chooser is not None and chooser is not self.leader and self.finished(targets):
            answer = self.session.call(chooser.link, {"steps": [steps.finish_rollback()]},
                                       timeout=self.session.timeouts.begin)
            if not answer.ok:
                self.session.progress.note(f"{chooser.host.name}: could not mark the rollback finished "
                                           f"({answer.error}); the next rollback completes it first")

    def notes(self) -> list[str]:
        if self.choice is None or self.chooser is None or self.leader is None:
            return []
        if self.chooser is self.leader:
            return [f"target: {self.choice.sentence()} (chosen on {self.leader.host.name}, which leads the run)"]
        return [f"target: {self.choice.sentence()} (chosen on {self.chooser.host.name}, the first host that runs a "
                f"release; {self.leader.host.name} leads the run)"]


def rollback(ws: Workspace, customer: str, environment: str, to_version: str | None, *, force: bool = False,
             serial: str | None = None, max_fail: str | None = None, only: list[str] | None = None,
             operator: str | None = None, restore_db: bool = False, down: bool = False,
             progress: Progress) -> Outcome:
    """The leader's lock and state first (the environment's lock, held to the end; its releases
    decide the target), then every host locks and rolls back in one round trip: a rollback during a
    cutover costs little more than one round trip per host. With a database, flows/database.py
    decides first, before any lock (code only, --restore-db, --down, or refused); when the database
    changes, the environment goes back together (database.apply_rollback), not host by host."""
    threshold = max_fail_threshold(max_fail)
    targets = [Target(h) for h in ws.hosts(customer, environment, only)]
    planned_batches = batches(targets, serial)
    db = database.for_environment(ws, customer, environment)
    if db is None and (restore_db or down):
        raise BadInput("--restore-db and --down need a database: golive.yml has no database section")
    if restore_db and down:
        raise BadInput("--restore-db and --down are two ways back: choose one")
    run = run_context("rollback", customer, environment, operator)
    session = HostSession([t.host for t in targets] + ([db.host] if db else []), progress, ws.app, run.token)
    db_plan = None
    try:
        if to_version:
            refuse_unkept(session, ws, targets, to_version)
        if db is not None:  # decided before any lock: a refusal touches nothing
            connected = session.connect([t.host for t in targets])
            db_plan = database.plan_rollback(session, ws, db, [t.host for t in targets], connected,
                                             to_version=to_version, force=force, restore_db=restore_db, down=down,
                                             serial=len(planned_batches) > 1, only=only)
    except BaseException:
        session.close()
        raise
    progress.start(f"rollback {customer}/{environment}" + (f" to {to_version}" if to_version else ""),
                   [t.host.name for t in targets] + ([db.host.name] if db else []), steps.ROLLBACK_COLUMNS)
    rollout = Rollback(session, run, ws, to_version, force, db_plan)
    run_rollout(rollout, targets, planned_batches, threshold)
    disagree = disagreements(targets)
    notes = rollout.notes() + [f"hosts disagree on the target: {d['host']} on its own would choose "
                               f"{d['would_choose']}; the environment goes to one release, the leader's choice"
                               for d in disagree]
    choice = rollout.choice
    chosen = choice.release if choice and choice.release else None
    extra = {"to": to_version, "force": force, "disagree": disagree,
             "target": {"release": chosen.id, "version": chosen.version, "reason": choice.reason,
                        "chosen_on": rollout.chooser.host.name if rollout.chooser else None} if choice and chosen
             else None,
             **({"database": db_plan.as_dict()} if db_plan else {})}
    outcome = rollback_outcome(customer, environment, to_version, targets, extra, notes)
    if db_plan is not None:
        outcome.text += "\n" + "\n".join(db_plan.describe())
    return outcome


def rollback_outcome(customer: str, environment: str, to_version: str | None, targets: list[Target],
                     extra: Mapping[str, Any], notes: list[str]) -> Outcome:
    """deploy_outcome, for a rollback by either engine: a host that runs no release is left as it is and
    does not fail the run; an environment where no host runs one has nothing to roll back (a failure)."""
    nothing_anywhere = bool(targets) and all(t.report is not None and t.report.status == "nothing_live"
                                             for t in targets)
    if nothing_anywhere:
        notes = [*notes, f"no host of {customer}/{environment} runs a release: there is nothing to roll back "
                         f"(`golive deploy` installs one)"]
    outcome = deploy_outcome("rollback", customer, environment, to_version, targets, extra, notes)
    if nothing_anywhere:
        outcome.failed = True
        outcome.data["ok"] = False
    return outcome


def refuse_unkept(session: HostSession, ws: Workspace, targets: list[Target], named: str) -> None:
    """`--to` a release some host does not keep is bad input, refused before any lock is taken (one
    read-only round trip): the environment would be split between that release and the others."""
    connected = session.connect([t.host for t in targets])
    requests = {name: (c, {"steps": [steps.read_state(ws.app)]}) for name, c in connected.items() if c.ok}
    problems = []
    for name, answer in session.call_all(requests, session.timeouts.begin).items():
        if answer.ok:
            facts = RollbackFacts.from_agent(answer.data("state"))
            if facts.nothing_live:
                continue  # not rolled back at all (golive.core.rollback): it need not keep it
            if not any(named in (r.version, r.id) for r in facts.releases):
                problems.append(Problem("--to", f"release {named} is not kept on {name} (kept: {facts.kept_text()})"))
    if problems:
        raise BadInput(problems + [Problem("--to", "nothing was changed: name a release every host keeps, or limit "
                                                   "the rollback with --host to the hosts that keep it")])


def rollback_report(environment: str, name: str, answer: AgentAnswer, to: str | None, force: bool) -> HostReport:
    chosen = answer.data("choose") or answer.vars.get("choice") or {}
    if answer.ok and chosen.get("nothing_live"):
        return nothing_live_report(environment, name)
    target, previous = chosen.get("target"), chosen.get("from")
    details: dict[str, Any] = {}
    if chosen.get("kept") is not None and not to:  # a release named with --to is where every host goes
        own = choose(RollbackFacts.from_agent({"current": previous, "kept": chosen["kept"],
                                               "rollback": chosen.get("intent")}), to=to, force=force)
        if own.release is None or own.release.id != target:
            details["would_choose"] = own.release.id if own.release else own.problem
    if answer.ok and chosen.get("already"):
        restarted = answer.data("verify").get("restarted")
        return HostReport(host=name, environment=environment, status="deployed" if restarted else "unchanged",
                          action="rollback", from_release=target, to_release=target, live_release=target,
                          steps=step_seconds(answer),
                          details={**details, "already": True, **({"restarted": True} if restarted else {})})
    if answer.ok:
        return HostReport(host=name, environment=environment, status="deployed", action="rollback",
                          from_release=previous, to_release=target, live_release=target,
                          steps=step_seconds(answer), details=details)
    if answer.holder is not None or answer.error == "locked":
        state, sentence = lock_report(answer.holder)
        return HostReport(host=name, environment=environment, status="locked", error=sentence, lock=state)
    already = " (already on it)" if chosen.get("already") else ""
    return HostReport(host=name, environment=environment, status="failed", action="rollback", from_release=previous,
                      to_release=target, live_release=answer.current,
                      error=f"{answer.failed_step}: {answer.error}{already}", steps=step_seconds(answer),
                      details=details)


def disagreements(targets: list[Target]) -> list[dict[str, str]]:
    """Hosts that, choosing on their own, would have gone elsewhere than the environment's target."""
    return [{"host": t.host.name, "would_choose": t.report.details["would_choose"]}
            for t in targets if t.report is not None and t.report.details.get("would_choose")]

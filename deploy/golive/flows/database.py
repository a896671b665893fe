"""The environment's database in deploy, plan and rollback: once per environment, never per host.

With a `database:` section in golive.yml a deploy is

    lock -> upload -> unpack -> configure -> [stop] -> backup -> migrate -> hooks -> cutover -> restart
         -> verify -> record

where backup and migrate run once, on the environment's database host (pg_dump, psql there),
before any application host switches (golive.agent.dbagent). The rules are core/migrations.py's:

- no pending migration: the usual per-host deploy; every verification also expects the schema
  version the database is at;
- only additive (expand) migrations: backup, every application host stopped (unless golive.yml
  says `online: expand`), migrate, then the usual per-host activation: a host that fails goes back
  to its previous release, code only, which runs on the expanded schema;
- any other migration (contract): backup, every host stopped, migrate, every host activated; when
  any host fails its verification, the database is restored from this run's backup BEFORE the old
  code starts again, then every host is switched back and verified. --serial and --host refuse it.

Everything that can be refused is refused before any host is touched (exit 2): an unreachable
database host or server, a wrong password, a changed checksum, a migration out of order, too
little disk space for the backup, a --serial or --host that would leave old code on a new schema.
"""

from __future__ import annotations

import secrets
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from golive.adapters import faultpoints
from golive.adapters.progress import Progress
from golive.adapters.remote import AgentAnswer
from golive.adapters.transport import Connected
from golive.core.database import DatabaseConnection, DatabaseSpec
from golive.core.errors import BadInput, HostFailure, Problem
from golive.core.migrations import (
    Applied,
    DatabaseView,
    DeployDecision,
    HistoryCheck,
    Migration,
    RestoreCost,
    RollbackDecision,
    Want,
    check_history,
    deploy_decision,
    describe_cost,
    read_migrations,
    restore_cost,
    rollback_decision,
    schema_version,
)
from golive.core.model import AppDefinition, Host
from golive.core.outcome import Outcome
from golive.core.plan import INSTALL
from golive.core.release import Artifact
from golive.core.rollback import NOTHING_LIVE, Choice, Intent, RollbackFacts, choose, chooser, resolve
from golive.flows import steps
from golive.flows.session import HostReport, HostSession, HostStatus, as_answer, nothing_live_report, step_seconds
from golive.workspace import Workspace

MARGIN = 120  # seconds the controller waits beyond a step's own timeout


@dataclass
class Database:
    """One environment's database during one run."""

    spec: DatabaseSpec
    host: Host  # its database host
    connection: DatabaseConnection
    customer: str
    environment: str
    root: str
    connected: Connected | None = None
    state: dict[str, Any] = field(default_factory=dict)  # the last probe's answer

    @property
    def applied(self) -> list[Applied]:
        return [Applied.from_row(row) for row in self.state.get("history") or []]

    @property
    def schema(self) -> str | None:
        return schema_version(self.applied)

    @property
    def backups(self) -> list[dict[str, Any]]:
        return list(self.state.get("backups") or [])

    def request(self, batch: list[dict[str, Any]], always: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        t = self.spec.timeouts
        return {"steps": batch, "always": list(always), "mask": [self.connection.password],
                "database": {"connection": asdict(self.connection), "bin": self.spec.client_bin,
                             "history_table": self.spec.migrations.history_table,
                             "backup_dir": self.spec.backup.dir or f"{self.root}/.golive/backups",
                             "timeouts": {"connect": t.connect, "lock": t.lock, "migrate": t.migrate,
                                          "backup": t.backup, "restore": t.restore},
                             "connect_timeout": t.connect, "restore_jobs": self.spec.backup.jobs,
                             "customer": self.customer, "environment": self.environment}}

    def describe(self) -> str:
        return f"{self.connection.describe()} (on {self.host.name})"


def for_environment(ws: Workspace, customer: str, environment: str) -> Database | None:
    """The environment's database, or None when golive.yml declares none."""
    host = ws.database_host(customer, environment)
    if host is None or ws.app.database is None:
        return None
    return Database(ws.app.database, host, ws.database_connection(host), customer, environment, ws.app.root)


def call(session: HostSession, db: Database, batch: list[dict[str, Any]], timeout: float,
         always: Sequence[dict[str, Any]] = (), column: str = "") -> AgentAnswer:
    """One request to the database host's agent; progress lines go to the progress table."""
    def shown(text: str) -> None:
        if column:
            session.progress.update(db.host.name, column, "running", text[:60])

    assert db.connected is not None
    return session.call(db.connected, db.request(batch, always), timeout=timeout + MARGIN, module="dbagent",
                        on_progress=shown)


def probe(session: HostSession, db: Database, *, schema: bool = False) -> dict[str, Any]:
    """Read the database (nothing changes): reachable with the rendered credentials, its history,
    size, statistics, backups. Any failure here is bad input: no host has been touched."""
    db.connected = session.fleet.wait_connected(db.host)
    where = f"database of {db.customer}/{db.environment}"
    if not db.connected.ok:
        raise BadInput(Problem(where, f"its host is unreachable: {db.connected.error}; nothing was changed"))
    answer = call(session, db, [{"op": "db_probe", "name": "db_probe", "schema": schema}], session.timeouts.begin)
    if not answer.ok:
        raise BadInput(Problem(where, f"{db.describe()}: {answer.error}; nothing was changed"))
    db.state = answer.data("db_probe")
    return db.state


def release_migrations(ws: Workspace, artifact: Artifact) -> list[Migration]:
    """The migrations a release artifact carries (its database.migrations.dir), refused with the file
    and line when one is malformed."""
    spec = ws.app.database
    if spec is None or spec.migrations.kind != "sql":
        return []
    prefix = spec.migrations.dir.strip("/") + "/"
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(artifact.path, "r:*") as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("./")
                if member.isfile() and name.startswith(prefix) and "/" not in name[len(prefix):]:
                    handle = archive.extractfile(member)
                    files[name[len(prefix):]] = handle.read() if handle else b""
    except (tarfile.TarError, OSError) as error:
        raise BadInput(Problem(artifact.name, f"cannot read its migrations: {error}")) from None
    migrations, problems = read_migrations(files, f"{artifact.name}:{spec.migrations.dir}")
    if problems:
        raise BadInput(problems)
    return migrations


def release_file(artifact: Artifact, name: str) -> bytes | None:
    try:
        with tarfile.open(artifact.path, "r:*") as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.removeprefix("./") == name:
                    handle = archive.extractfile(member)
                    return handle.read() if handle else b""
    except (tarfile.TarError, OSError):
        return None
    return None


# -- deploy: planning --------------------------------------------------------------------------

@dataclass
class DeployPlan:
    """What a deploy does with the environment's database, decided before any host is touched."""

    db: Database
    migrations: list[Migration]
    check: HistoryCheck
    decision: DeployDecision
    version: str
    command: bool = False  # the vendor's migrate command (database.migrations.kind: command)
    backup_id: str | None = None
    backup: dict[str, Any] | None = None
    migrated: list[str] = field(default_factory=list)
    migration_log: str | None = None
    schema_after: str | None = None
    events: list[str] = field(default_factory=list)  # what happened, for the report
    restored: bool | None = None  # None: no restore was needed

    @property
    def release_schema(self) -> str | None:
        return schema_version(self.migrations) if self.migrations else self.check.schema_before

    def expectation(self) -> dict[str, Any]:
        """What every verification of this run expects of /health."""
        key = self.db.spec.health_key
        after = self.schema_after if self.schema_after is not None else self.decision.schema_after
        return {key: after} if key and after else {}

    def entry(self) -> dict[str, Any]:
        """What each application host's ledger entry links: the database steps of the run."""
        linked: dict[str, Any] = {"host": self.db.host.name, "schema_before": self.decision.schema_before,
                                  "schema_after": self.schema_after or self.decision.schema_after}
        if self.backup_id:
            linked.update(backup=self.backup_id, backup_dir=self.db.state.get("backup_dir"))
        if self.migrated:
            linked["applied"] = list(self.migrated)
        if self.migration_log:
            linked["migration_log"] = self.migration_log
        if self.restored is not None:
            linked["restored"] = self.restored
        return {"database": linked}

    def annotation(self, **extra: Any) -> dict[str, Any]:
        return {"expect": self.expectation(), "entry": self.entry(), **extra}

    def outcome(self) -> dict[str, Any]:
        """What the deploy did with the database, for the JSON document."""
        data = self.as_dict()
        data.update(backup_taken=self.backup_id, applied=list(self.migrated), migration_log=self.migration_log,
                    schema=self.schema_after or (self.decision.schema_before if not self.migrated else None),
                    restored=self.restored, events=list(self.events))
        return data

    def describe_outcome(self) -> list[str]:
        d = self.decision
        lines = [f"database {self.db.describe()}:"]
        if not d.migrates:
            lines.append(f"  schema {d.schema_before or '(none)'}: nothing to migrate")
            return lines
        if self.backup_id:
            lines.append(f"  backup {self.backup_id} on {self.db.host.name} ({self.db.state.get('backup_dir')})")
        if self.migrated:
            lines.append(f"  migrated {d.schema_before or '(none)'} -> {self.schema_after}: {', '.join(self.migrated)}"
                         + (f" (log {self.migration_log})" if self.migration_log else ""))
        lines.extend(f"  {event}" for event in self.events)
        return lines

    def as_dict(self) -> dict[str, Any]:
        backup_size = self.db.state.get("size")
        return {
            "host": self.db.host.name, "database": self.db.connection.describe(),
            "schema_before": self.decision.schema_before, "schema_after": self.decision.schema_after,
            "pending": [{**m.as_dict(), "compatible_with_previous": m.kind == "expand"} for m in self.decision.pending],
            "compatible_with_previous": self.decision.compatible,
            "stops_hosts": self.decision.stop_hosts,
            "backup": {"location": self.db.state.get("backup_dir"), "database_size": backup_size,
                       "disk_free": self.db.state.get("disk_free")} if self.decision.backup else None,
            "command": list(self.db.spec.migrations.command) if self.command else None,
        }


def plan_deploy(session: HostSession, ws: Workspace, db: Database, artifact: Artifact, *, serial: bool,
                hosts: Sequence[Host]) -> DeployPlan:
    """`serial`: the run has several batches; `hosts`: the application hosts it deploys."""
    """Read the database and decide; refuse (BadInput) what must not start."""
    migrations = release_migrations(ws, artifact)
    probe(session, db)
    spec = db.spec.migrations
    if spec.kind == "command":
        return _plan_command(ws, db, artifact, serial=serial, hosts=hosts)
    check = check_history(migrations, db.applied, f"{artifact.name}:{spec.dir}")
    all_hosts = [h.name for h in ws.hosts(db.customer, db.environment)]
    others = sorted(set(all_hosts) - {h.name for h in hosts})
    decision = deploy_decision(check, online=spec.online, serial=serial, subset=bool(others),
                               environment=db.environment, others=others, release=artifact.version)
    problems = list(decision.problems)
    if decision.backup:
        problems += _space_problems(db)
    if problems:
        raise BadInput(problems)
    return DeployPlan(db, migrations, check, decision, artifact.version)


def _plan_command(ws: Workspace, db: Database, artifact: Artifact, *, serial: bool,
                  hosts: Sequence[Host]) -> DeployPlan:
    """The vendor's migrate command: golive cannot know beforehand whether it changes anything, so a
    deploy always backs up, stops every host and runs it; whether the previous release's code runs
    on what it leaves is golive.yml's `compatible`."""
    spec = db.spec.migrations
    all_hosts = [h.name for h in ws.hosts(db.customer, db.environment)]
    others = sorted(set(all_hosts) - {h.name for h in hosts})
    fake = Migration(version=f"{artifact.version}", name="vendor_migrate", checksum="",
                     kind="expand" if spec.compatible else "contract", declared=True, transactional=False,
                     why="golive.yml database.migrations.compatible")
    check = HistoryCheck((fake,), tuple(db.applied), (), ())
    decision = deploy_decision(check, online=spec.online, serial=serial, subset=bool(others),
                               environment=db.environment, others=others, release=artifact.version)
    problems = list(decision.problems)
    if spec.pre_sql and release_file(artifact, spec.pre_sql) is None:
        problems.append(Problem(f"{ws.app.source} database.migrations.pre_sql",
                                f"{spec.pre_sql} is not in {artifact.name}"))
    problems += _space_problems(db)
    if problems:
        raise BadInput(problems)
    # What the database reports after the command is known only then: schema_after is set by migrate.
    decision = DeployDecision(decision.pending, decision.compatible, decision.stop_hosts, True,
                              decision.schema_before, None, ())
    return DeployPlan(db, [], check, decision, artifact.version, command=True)


def _space_problems(db: Database) -> list[Problem]:
    free, size = db.state.get("disk_free"), int(db.state.get("size") or 0)
    needed = size + db.spec.backup.min_free_mb * 1048576
    if free is not None and free < needed:
        return [Problem(f"database of {db.customer}/{db.environment}",
                        f"not enough disk space for the backup on {db.host.name} ({db.state.get('backup_dir')}): "
                        f"{free / 1048576:.1f} MB free, the database is {size / 1048576:.1f} MB and "
                        f"{db.spec.backup.min_free_mb} MB must stay free; nothing was changed")]
    return []


def describe_plan(plan: DeployPlan) -> list[str]:
    """The database part of `golive plan`: pending migrations, their kind, the backup it would take."""
    d = plan.decision
    lines = [f"  database {plan.db.describe()}: schema {d.schema_before or '(none)'}"]
    if plan.command:
        spec = plan.db.spec.migrations
        lines.append(f"    the vendor's migrate command: {' && '.join(spec.command)}"
                     + (f" (after {spec.pre_sql})" if spec.pre_sql else ""))
        lines.append("    the previous release's code " + ("runs" if spec.compatible else "does NOT run")
                     + " on what it leaves (golive.yml database.migrations.compatible)")
    elif not d.pending:
        lines.append("    no pending migration: code-only deploy, rollback code-only")
    for m in d.pending if not plan.command else ():
        compatible = "the previous code runs on it" if m.kind == "expand" else "the previous code does NOT run on it"
        lines.append(f"    pending {m.describe()}: {compatible}")
    if d.backup:
        state = plan.db.state
        size = int(state.get("size") or 0)
        free = state.get("disk_free")
        lines.append(f"    backup first: pg_dump -Fc of {size / 1048576:.1f} MB into {state.get('backup_dir')} on "
                     f"{plan.db.host.name}" + (f" ({free / 1048576:.0f} MB free)" if free is not None else ""))
        lines.append("    every application host stops before the migration" if d.stop_hosts
                     else "    the migration runs while the previous release serves (online: expand)")
        if not d.compatible:
            lines.append("    if a host fails its verification: the database is restored from that backup, then "
                         "every host goes back to its previous release")
            lines.append("    rollback afterwards: needs --restore-db (or --down where every migration has a "
                         "down file)")
        else:
            lines.append("    rollback afterwards: code-only (every pending migration is additive)")
    return lines


# -- deploy: doing -------------------------------------------------------------------------------

def new_backup_id(environment: str, version: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{environment}-{version}-{secrets.token_hex(2)}"


def _db_entry(run: steps.RunContext, db: Database, **fields: Any) -> dict[str, Any]:
    return run.entry(db.host.name, database=db.connection.describe(), run=run.run_id, **fields)


def backup(session: HostSession, run: steps.RunContext, db: Database, *, release: str | None,
           taken_for: str, column: str = "backup") -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, None) of a verified backup, or (None, error)."""
    backup_id = new_backup_id(db.environment, taken_for.split("-")[0] if taken_for else "manual")
    session.progress.update(db.host.name, column, "running")
    answer = call(session, db, [{"op": "db_backup", "name": "db_backup", "id": backup_id, "release": release,
                                 "taken_for": taken_for, "operator": run.operator,
                                 "min_free_mb": db.spec.backup.min_free_mb}],
                  db.spec.timeouts.backup,
                  always=[steps.record(_db_entry(run, db, action="backup", release=release, backup=backup_id,
                                                 detail=f"before {taken_for}"))], column=column)
    if not answer.ok:
        session.progress.update(db.host.name, column, "failed")
        return None, f"backup: {answer.error}"
    meta = answer.data("db_backup").get("backup") or {}
    session.progress.update(db.host.name, column, "ok", f"{answer.steps[0].seconds:.1f}s")
    return meta, None


def stop_hosts(session: HostSession, app: AppDefinition, targets: Sequence[Any], column: str = "stop") -> list[str]:
    """Stop every application host's service (the release live there); the errors, per host."""
    def stop(target: Any) -> AgentAnswer:
        session.progress.update(target.host.name, column, "running")
        answer = session.call(target.connected, {"steps": [steps.stop(app)]}, timeout=app.timeouts.restart + MARGIN,
                              module="dbagent")
        session.progress.update(target.host.name, column, "ok" if answer.ok else "failed")
        return answer

    answers = session.fleet.map(stop, list(targets))
    return [f"{t.host.name}: {getattr(a, 'error', a)}" for t, a in zip(targets, answers, strict=True)
            if not isinstance(a, AgentAnswer) or not a.ok]


def start_hosts(session: HostSession, app: AppDefinition, targets: Sequence[Any],
                expect: Mapping[str, Any]) -> dict[str, AgentAnswer]:
    """Restart the release live on each host and verify it (after a restore under the live release)."""
    requests = {t.host.name: (t.connected, {"steps": [steps.restart(app, ""),
                                                      {**steps.verify(""), "expect": dict(expect)}]})
                for t in targets}
    return session.call_all(requests, app.timeouts.activate)


def migrate(session: HostSession, run: steps.RunContext, ws: Workspace, plan: DeployPlan, targets: Sequence[Any],
            artifact: Artifact) -> tuple[bool, str | None]:
    """(ok, error): the pending migrations applied once, on the database host (or, for the vendor's
    command, on the first application host)."""
    db = plan.db
    session.progress.update(db.host.name, "migrate", "running")
    if plan.command:
        return _migrate_command(session, run, ws, plan, targets, artifact)
    migrations = [{"version": m.version, "name": m.name, "checksum": m.checksum, "kind": m.kind,
                   "transactional": m.transactional, "reversible": m.reversible, "sql": m.sql}
                  for m in plan.decision.pending]
    expect_applied = [[a.version, a.checksum] for a in plan.check.applied]
    answer = call(session, db, [{"op": "db_migrate", "name": "db_migrate", "migrations": migrations,
                                 "release": plan.version, "operator": run.operator, "engine": run.engine,
                                 "expect_applied": expect_applied}],
                  db.spec.timeouts.migrate, column="migrate",
                  always=[steps.record(_db_entry(run, db, action="migrate", release=plan.version,
                                                 migrations=[m.id for m in plan.decision.pending],
                                                 backup=plan.backup_id))])
    data = answer.data("db_migrate")
    plan.migrated = list(data.get("applied") or answer.vars.get("applied") or [])
    plan.migration_log = data.get("log") or answer.vars.get("migration_log")
    if not answer.ok:
        session.progress.update(db.host.name, "migrate", "failed")
        return False, f"migrate: {answer.error}"
    plan.schema_after = data.get("schema_version")
    db.state["history"] = data.get("history") or db.state.get("history")
    session.progress.update(db.host.name, "migrate", "ok", f"{answer.steps[0].seconds:.1f}s")
    return True, None


def _migrate_command(session: HostSession, run: steps.RunContext, ws: Workspace, plan: DeployPlan,
                     targets: Sequence[Any], artifact: Artifact) -> tuple[bool, str | None]:
    db, spec = plan.db, plan.db.spec.migrations
    if spec.pre_sql:
        sql = (release_file(artifact, spec.pre_sql) or b"").decode("utf-8", "replace")
        answer = call(session, db, [{"op": "db_sql", "name": "db_sql", "sql": sql, "file": spec.pre_sql}],
                      db.spec.timeouts.migrate, column="migrate",
                      always=[steps.record(_db_entry(run, db, action="migrate", release=plan.version,
                                                     detail=f"pre-migration script {spec.pre_sql}"))])
        if not answer.ok:
            session.progress.update(db.host.name, "migrate", "failed")
            return False, f"migrate: {answer.error}"
    runner = targets[0]
    commands = [ws.render_string(c, runner.host, plan.version, "database.migrations.command") for c in spec.command]
    version_command = ws.render_string(spec.version_command, runner.host, plan.version,
                                       "database.migrations.version_command")
    request = db.request([{"op": "db_command", "name": "db_command", "release": runner.desired.release,
                           "commands": commands, "version_command": version_command}])
    request["mask"] = sorted(set(request["mask"]) | set(runner.host.secret_values))
    answer = session.call(runner.connected, request, timeout=db.spec.timeouts.migrate * max(1, len(commands)) + MARGIN,
                          module="dbagent",
                          on_progress=lambda text: session.progress.update(db.host.name, "migrate", "running",
                                                                           f"{runner.host.name}: {text}"[:60]))
    data = answer.data("db_command")
    plan.migration_log = f"{runner.host.name}:{data.get('log') or answer.vars.get('migration_log')}"
    if not answer.ok:
        session.progress.update(db.host.name, "migrate", "failed")
        return False, f"migrate ({runner.host.name}): {answer.error}"
    before, after = data.get("version_before"), data.get("version_after")
    if after and after != before:
        kind = "expand" if spec.compatible else "contract"
        recorded = call(session, db, [{"op": "db_record", "name": "db_record", "release": plan.version,
                                       "operator": run.operator, "engine": run.engine,
                                       "migration": {"version": after, "name": "vendor_migrate",
                                                     "checksum": f"command:{before or ''}->{after}", "kind": kind,
                                                     "reversible": False}}],
                        db.spec.timeouts.connect * 6,
                        always=[steps.record(_db_entry(run, db, action="migrate", release=plan.version,
                                                       detail=f"vendor command: {before} -> {after}",
                                                       migration_log=plan.migration_log))])
        if not recorded.ok:
            return False, f"migrate: {recorded.error}"
        plan.migrated = [f"{after}_vendor_migrate"]
    plan.schema_after = after
    session.progress.update(db.host.name, "migrate", "ok", f"{before} -> {after}")
    return True, None


def restore(session: HostSession, run: steps.RunContext, db: Database, backup_id: str, *, reason: str,
            column: str = "backup", rehearsal: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """(result, None) or (None, error): the backup restored (or rehearsed) on the database host."""
    session.progress.update(db.host.name, column, "running", "restore" if not rehearsal else "rehearsal")
    answer = call(session, db, [{"op": "db_restore", "name": "db_restore", "backup": backup_id,
                                 "rehearsal": rehearsal, "operator": run.operator}],
                  db.spec.timeouts.restore, column=column,
                  always=[steps.record(_db_entry(run, db, action="rehearse" if rehearsal else "restore",
                                                 backup=backup_id, detail=reason))])
    if not answer.ok:
        session.progress.update(db.host.name, column, "failed", "restore")
        return None, f"restore of backup {backup_id}: {answer.error}"
    session.progress.update(db.host.name, column, "ok", f"restored {answer.steps[0].seconds:.1f}s")
    return answer.data("db_restore"), None


def prune(session: HostSession, run: steps.RunContext, db: Database, protect: Sequence[str]) -> None:
    """Retention on the database host: backups beyond database.backup.keep (never a protected one:
    this run's, the rollback target's), and every replaced database but the newest."""
    from golive.core.migrations import backups_to_prune

    state = probe_quietly(session, db)
    if state is None:
        return
    removed = backups_to_prune(db.backups, db.spec.backup.keep, protect)
    replaced = sorted(d for d in state.get("databases") or [] if "__golive_replaced_" in d)
    drop = replaced[:-1] + [d for d in state.get("databases") or [] if d.endswith(("__golive_restore",
                                                                                  "__golive_rehearsal"))]
    if removed or drop:
        call(session, db, [{"op": "db_prune", "name": "db_prune", "backups": removed, "databases": drop}],
             session.timeouts.begin)


def probe_quietly(session: HostSession, db: Database) -> dict[str, Any] | None:
    try:
        return probe(session, db)
    except BadInput:
        return None


@dataclass
class Hooks:
    """What the deploy rollout (flows/deploy.py Deploy) lends this module (it cannot import deploy.py:
    deploy.py imports it): install and activate one target, stop the pending ones with a reason
    (stop_remaining), and the deploy sequence the run gives what it makes live."""

    install: Callable[[Any], None]
    activate: Callable[[Any], None]
    abort: Callable[[list[Any], str], None]
    seq: int | None = None


def roll_out(session: HostSession, run: steps.RunContext, ws: Workspace, artifact: Artifact, targets: list[Any],
             plan: DeployPlan, hooks: Hooks) -> None:
    """A deploy that migrates: install everywhere -> stop everywhere -> backup -> migrate -> activate
    everywhere; when a host fails after a migration the previous code cannot run on, the database is
    restored before the previous release starts again on every host."""
    db = plan.db
    working = [t for t in targets if t.report is None and t.plan is not None]
    for target in working:  # every host stays locked until the environment's outcome is known
        target.database = {**target.database, "keep_locks": True}
    session.fleet.map(hooks.install, [t for t in working if t.plan.action == INSTALL])
    faultpoints.reached("install:done")
    broken = [t for t in working if t.report is not None]
    if broken:
        hooks.abort([t for t in working if t.report is None],
                    f"not deployed: {broken[0].host.name} could not install the release; the database was not "
                    f"migrated")
        session.progress.update(db.host.name, "result", "skipped")
        return
    stopped = False
    if plan.decision.stop_hosts:
        errors = stop_hosts(session, ws.app, working)
        stopped = True
        if errors:
            _give_back(session, run, ws, working, plan, f"stop: {errors[0]}; the database was not touched",
                       restore_db=False)
            return
    faultpoints.reached("stop:done")
    meta, error = backup(session, run, db, release=working[0].plan.from_release,
                         taken_for=working[0].desired.release)
    if meta is None:
        _give_back(session, run, ws, working, plan, f"{error}; the database was not touched", restore_db=False,
                   stopped=stopped)
        return
    plan.backup_id, plan.backup = meta.get("id"), meta
    faultpoints.reached("backup:done")
    ok, error = migrate(session, run, ws, plan, working, artifact)
    faultpoints.reached("migrate:done")
    if not ok:
        # A failed transaction left the database as it was; anything committed before the failure, or
        # run outside a transaction, is undone from the backup.
        partial = bool(plan.migrated) or any(not m.transactional for m in plan.decision.pending) or plan.command
        _give_back(session, run, ws, working, plan, error or "migrate failed", restore_db=partial, stopped=stopped)
        return
    for target in working:
        target.database = plan.annotation(keep_locks=True)
    if plan.decision.compatible:
        # Every migration is additive: a host that fails goes back to its previous release, code only.
        session.fleet.map(hooks.activate, working)
        failed = [t for t in working if t.report is not None and t.report.failed]
        session.progress.update(db.host.name, "result", "ok" if not failed else "failed",
                                "" if not failed else "hosts back on the previous code (schema kept: additive)")
        if not failed:
            prune(session, run, db, [plan.backup_id or ""])
        return
    session.fleet.map(lambda t: _activate_migrated(session, run, ws, t, plan, hooks.seq), working)
    faultpoints.reached("activate:done")
    failed = [t for t in working if t.report is not None and t.report.status != "deployed"]
    if not failed:
        session.progress.update(db.host.name, "result", "ok")
        prune(session, run, db, [plan.backup_id or ""])
        return
    first = failed[0]
    _give_back(session, run, ws, working, plan,
               f"{first.host.name} failed after the migration ({first.report.error})", restore_db=True, activated=True)


def _activate_migrated(session: HostSession, run: steps.RunContext, ws: Workspace, target: Any,
                       plan: DeployPlan, seq: int | None) -> None:
    """Cut over, start and verify one host on the migrated schema. On failure the release is marked
    bad and stopped, and nothing else: the previous code must not start before the database is
    restored (the environment's recovery does both)."""
    app, name, hooks = ws.app, target.host.name, target.run.get("hooks", {})  # the run file's (release_run)
    release = target.desired.release
    earlier = step_seconds(*target.answers)
    previous = target.plan.from_release or ""
    batch = [steps.hook(app, "before_cutover", hooks.get("before_cutover", ""), release, previous=previous),
             steps.cutover(app, release), steps.restart(app, release),
             {**steps.verify(release), "expect": plan.expectation()},
             steps.hook(app, "after_cutover", hooks.get("after_cutover", ""), release, previous=previous),
             steps.mark(release, "good", "mark_good", seq=seq)]
    entry = run.entry(name, previous_release=target.plan.from_release, steps=dict(earlier),
                      release=release, version=target.desired.version,
                      artifact_sha256=target.desired.artifact_sha256, config_hash=target.desired.config.hash,
                      **plan.entry())
    request = {"steps": batch,
               "on_failure": [steps.after(steps.mark(release, "bad", "mark_bad"), steps.ACTIVATE_FAILURES),
                              steps.after({"op": "stop", "name": "stop_new", "release": release},
                                          steps.SWITCHED_FAILURES)],
               "always": [steps.record(entry)]}
    session.progress.update(name, "cutover", "running")
    answer = session.call(target.connected, request, timeout=app.timeouts.activate, module="dbagent")
    target.answers += (answer,)
    for step in answer.steps:
        if step.name in ("cutover", "restart", "verify"):
            session.progress.update(name, step.name, "ok" if step.ok else "failed", f"{step.seconds:.2f}s")
    seconds = step_seconds(*target.answers)
    if answer.ok:
        target.report = HostReport(host=name, environment=run.environment, status="deployed",
                                   action=target.plan.action, from_release=target.plan.from_release,
                                   to_release=release, live_release=release, steps=seconds)
        return
    target.report = HostReport(host=name, environment=run.environment, status="failed", action=target.plan.action,
                               from_release=target.plan.from_release, to_release=release,
                               live_release=None if answer.transport_error else answer.current, steps=seconds,
                               error=f"{answer.failed_step or 'activate'}: {answer.error}")


def _give_back(session: HostSession, run: steps.RunContext, ws: Workspace, targets: list[Any], plan: DeployPlan,
               reason: str, *, restore_db: bool, stopped: bool = True, activated: bool = False) -> None:
    """The environment goes back to where it was, in three steps over all hosts:
    1. every host stops what it runs and points `current` at its previous release again (not started:
       a controller killed from here on leaves code and database consistent once step 2 finishes);
    2. the database is restored from this run's backup (when it changed);
    3. every host starts its previous release and verifies it (then on_rollback, verified again).
    Every step runs even when an earlier one failed, except one: the previous code is never started on
    a database that could not be restored."""
    db = plan.db
    session.progress.note(f"{db.environment}: {reason}; putting the environment back")
    first: dict[str, tuple[Connected, dict[str, Any]]] = {}
    for target in targets:
        previous, new = target.plan.from_release, target.desired.release
        batch: list[dict[str, Any]] = []
        if stopped or activated:
            batch.append(steps.stop(ws.app))
        if activated:
            batch.append(steps.mark(new, "bad", "mark_bad"))
            if previous:
                batch.append(steps.cutover(ws.app, previous, "switch_back"))
        if batch:
            first[target.host.name] = (target.connected, {"steps": [], "always": batch})
    answers = {name: [a] for name, a in (session.call_all(first, ws.app.timeouts.restart + MARGIN, module="dbagent")
                                         if first else {}).items()}
    restored_ok = True
    if restore_db and plan.backup_id:
        result, error = restore(session, run, db, plan.backup_id, reason=f"failed deploy of {plan.version}: {reason}")
        restored_ok = result is not None
        plan.restored = restored_ok
        if result is not None:
            plan.schema_after = plan.backup.get("schema_version") if plan.backup else plan.decision.schema_before
            plan.events.append(f"database restored from backup {plan.backup_id} ({result.get('seconds')} s); what it "
                               f"held is kept as {result.get('replaced_database')}")
        else:
            plan.events.append(str(error))
    elif not plan.migrated:
        plan.schema_after = plan.decision.schema_before
    expect_key = db.spec.health_key
    expect = {expect_key: plan.schema_after} if expect_key and plan.schema_after else {}
    second = {}
    for target in targets:
        previous, new = target.plan.from_release, target.desired.release
        entry = run.entry(target.host.name, previous_release=new, release=previous, result="rolled_back",
                          detail=reason, **plan.entry())
        batch = []
        if restored_ok and previous and (stopped or activated):
            batch += [steps.cutover(ws.app, previous, "switch_back"),
                      steps.restart(ws.app, previous, "restart_previous", "rollback"),
                      {**steps.verify(previous, "verify_previous", "rollback"), "expect": expect}]
            if activated:
                batch += [{**steps.hook(ws.app, "on_rollback", "", previous, "rollback", previous=new), "meta_of": new},
                          {**steps.verify(previous, "verify_after_hook", "rollback"), "expect": expect}]
        failed_before = [f"{s.name}: {s.error}" for a in answers.get(target.host.name, []) for s in a.steps
                         if not s.ok]
        detail = reason if restored_ok else (f"{reason}; the database could not be restored: the previous release "
                                             f"was not started")
        if failed_before:
            detail += "; " + "; ".join(failed_before)
        batch += [{"op": "settle", "name": "settle", "result": "rolled_back" if restored_ok and not failed_before
                   else "failed", "detail": detail}, steps.record({**entry, "detail": detail})]
        second[target.host.name] = (target.connected, {"steps": [], "always": batch})
    for name, answer in (session.call_all(second, ws.app.timeouts.activate, module="dbagent")
                         if second else {}).items():
        answers.setdefault(name, []).append(answer)
    for target in targets:
        replies = answers.get(target.host.name, [])
        failures = [f"{s.name}: {s.error}" for a in replies for s in a.steps if not s.ok]
        failures += [a.error or "no answer" for a in replies if not a.ok and a.transport_error]
        previous = target.plan.from_release
        status: HostStatus
        if restored_ok and not failures:
            status, live = "rolled_back", previous
        else:
            status, live = "failed", (replies[-1].current if replies else None)
        why = reason if restored_ok else f"{reason}; the database could not be restored, so the previous release " \
                                         f"was not started again (hosts are stopped)"
        target.report = HostReport(host=target.host.name, environment=run.environment, status=status,
                                   action=target.plan.action, from_release=previous,
                                   to_release=target.desired.release, live_release=live,
                                   error=why + ("; recovery: " + "; ".join(failures) if failures else ""),
                                   steps=step_seconds(*target.answers, *replies),
                                   details={**({"marked_bad": target.desired.release} if activated else {}),
                                            "database": plan.entry()["database"], "recovery_failures": failures})
        session.progress.update(target.host.name, "result", "rolled_back" if status == "rolled_back" else "failed")
    session.progress.update(db.host.name, "result", "rolled_back" if restored_ok else "failed")


# -- rollback ------------------------------------------------------------------------------------

@dataclass
class RollbackPlan:
    db: Database
    decision: RollbackDecision
    target_version: str
    targets: dict[str, str] = field(default_factory=dict)  # host -> the release it rolls back to
    currents: dict[str, str] = field(default_factory=dict)  # host -> the release it leaves
    cost: RestoreCost | None = None
    schema_after: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    force: bool = False
    leader: str | None = None  # the host whose choice the plan follows (the run's leader)
    continuing: Intent | None = None  # the unfinished rollback this one completes
    skipped: dict[str, str] = field(default_factory=dict)  # host -> why it is not rolled back
    # what the rollback being completed already did to the database (its restore swapped in):
    # not done again, and the code it left is never switched back on the database as it is now
    done_before: str | None = None

    @property
    def changed_database(self) -> bool:
        return self.decision.changes_database or self.done_before is not None

    def intent(self) -> dict[str, Any] | None:
        """What each host's rollback intent records of the database change (Agent.step_select_rollback)."""
        if not self.decision.changes_database:
            return None
        backup = self.decision.backup.get("id") if self.decision.backup else None
        return {"host": self.db.host.name, "path": self.decision.path, "backup": backup,
                "schema_after": self.schema_after}

    def annotation(self) -> dict[str, Any]:
        key = self.db.spec.health_key
        after = self.schema_after if self.schema_after is not None else self.db.schema
        entry = {"database": {"host": self.db.host.name, "path": self.decision.path,
                              "schema_before": self.db.schema, "schema_after": after}}
        if self.decision.backup:
            entry["database"]["backup"] = self.decision.backup.get("id")
        return {"expect": {key: after} if key and after else {}, "entry": entry,
                "no_switch_back": self.changed_database}

    def describe(self) -> list[str]:
        d = self.decision
        lines = [f"database {self.db.describe()}: {d.path} - {d.reason}"]
        if self.cost is not None and d.path == "restore":
            lines += ["  " + line for line in describe_cost(self.cost).splitlines()]
        if self.result and d.path == "restore":
            lines.append(f"  restored in {self.result.get('seconds')} s; what the database held is kept as "
                         f"{self.result.get('replaced_database')}")
        if self.result and d.path == "down":
            lines.append(f"  undone: {', '.join(self.result.get('undone') or [])} (log {self.result.get('log')})")
        if self.error:
            lines.append(f"  FAILED: {self.error}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"host": self.db.host.name, "path": self.decision.path,
                                "reason": self.decision.reason, "target": self.target_version,
                                "schema_before": self.db.schema, "target_schema": self.decision.target_schema,
                                "beyond": [a.id for a in self.decision.beyond]}
        if self.cost is not None:
            data["cost"] = self.cost.as_dict()
        if self.decision.down:
            data["down"] = [m.id for m in self.decision.down]
        if self.continuing is not None:
            data["continues"] = {"run": self.continuing.run, "started_at": self.continuing.started_at,
                                 "database": dict(self.continuing.database or {}), "done_before": self.done_before}
        if self.skipped:
            data["skipped"] = dict(self.skipped)
        if self.error:
            data["error"] = self.error
        return data


@dataclass
class EnvironmentTargets:
    """Where each host goes, by the rule of the rollback's chooser (golive.core.rollback: the first
    host that runs a release, the leader unless it runs none): its choice (an unfinished rollback's
    target first), found among each host's own releases."""

    leader: str  # the chooser
    choice: Choice
    targets: dict[str, Mapping[str, Any]]  # host -> the metadata of the release it goes back to
    leaves: dict[str, Mapping[str, Any]]  # host -> the metadata of the release it leaves (an unfinished
    # rollback's `from` on a host it already switched)
    skipped: dict[str, str]  # host -> why it is not rolled back (nothing live on it)
    missing: dict[str, str]  # host -> why it keeps no release of the target


def environment_targets(states: Mapping[str, Mapping[str, Any]], to: str | None,
                        force: bool) -> EnvironmentTargets | str:
    """`states`: each reachable host's state, the leader (the run's first reachable host) first. A
    problem (str) when the chooser has nothing to roll back to, or no host runs a release."""
    read = {name: RollbackFacts.from_agent(state) for name, state in states.items()}
    leader = chooser(read)
    if leader is None:
        return f"no host runs a release: {NOTHING_LIVE}"
    choice = choose(read[leader], to=to, force=force)
    if choice.release is None:
        return f"{leader}: {choice.problem}"
    spec = choice.spec(to)
    targets: dict[str, Mapping[str, Any]] = {}
    leaves: dict[str, Mapping[str, Any]] = {}
    skipped: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name, state in states.items():
        facts = read[name]
        metas = {str(m.get("id")): m for m in state.get("releases") or []}
        if facts.nothing_live:
            skipped[name] = NOTHING_LIVE
            continue
        target = resolve(facts, spec, force=force)
        if target is None:
            missing[name] = (f"{name} keeps no usable release of {spec['version']} (kept: {facts.kept_text()})")
            continue
        targets[name] = metas.get(target.id) or {"id": target.id, "version": target.version}
        intent = facts.unfinished()
        left = facts.current or ""
        if target.id == facts.current and intent is not None and intent.target == target.id and intent.left:
            left = intent.left  # switched by the rollback this one completes: it leaves what that one left
        leaves[name] = metas.get(left) or {"id": left}
    return EnvironmentTargets(leader, choice, targets, leaves, skipped, missing)


def plan_rollback(session: HostSession, ws: Workspace, db: Database, hosts: Sequence[Host],
                  connected: Mapping[str, Connected], *, to_version: str | None, force: bool, restore_db: bool,
                  down: bool, serial: bool, only: list[str] | None) -> RollbackPlan:
    """Decide, before anything changes, what a rollback does with the database; refuse (BadInput,
    with the cost of a restore stated) what must not happen. The target is the leader's choice, as
    the rollback's own (an unfinished rollback is completed: same target, and a restore it completed
    is not done again)."""
    probe(session, db)
    requests = {h.name: (connected[h.name], {"steps": [steps.read_state(ws.app)]}) for h in hosts
                if connected[h.name].ok}
    answers = session.call_all(requests, ws.app.timeouts.begin)
    states = {h.name: answers[h.name].data("state") for h in hosts if h.name in answers and answers[h.name].ok}
    # what each host that could not be read may be doing: serving whatever it runs, on this database
    unread = {h.name: str((connected[h.name].error or "unreachable") if not connected[h.name].ok
                          else answers[h.name].error or "no answer") for h in hosts if h.name not in states}
    if not states:
        raise BadInput(Problem("rollback", "no host could be read; nothing was changed"))
    found = environment_targets(states, to_version, force)
    if isinstance(found, str):
        raise BadInput(Problem("rollback", f"no release to roll back to: {found}"))
    if not found.targets:
        raise BadInput(Problem("rollback", "no host has a release to roll back to"
                                           + (f" ({to_version})" if to_version else "")))
    choice = found.choice
    assert choice.release is not None  # environment_targets returns a problem otherwise
    version = choice.release.version
    meta = found.targets.get(found.leader) or next(iter(found.targets.values()))
    target_schema = meta.get("schema_version")
    left = found.leaves.get(found.leader) or next(iter(found.leaves.values()))
    current_version = str(left.get("version")) if left.get("version") else None
    if db.spec.migrations.kind == "command":
        # What the vendor's command left is known only once it ran: the history says which release
        # applied what, so the target runs on the newest version its own deploy (or an earlier one) left.
        own = [a.version for a in db.applied if a.release == version]
        earlier = [a.version for a in db.applied if a.release != current_version]
        target_schema = max(own) if own else (max(earlier) if earlier else None)
    elif target_schema is None and "schema_version" not in meta:
        try:
            target_schema = schema_version(release_migrations(ws, ws.artifact(version)))
        except BadInput:
            target_schema = None
    down_files: dict[str, Migration] = {}
    if current_version and current_version != version:
        try:
            down_files = {m.version: m for m in release_migrations(ws, ws.artifact(current_version)) if m.reversible}
        except BadInput:
            down_files = {}
    want: Want = "restore" if restore_db else "down" if down else "auto"
    decision = rollback_decision(db.applied, target_schema, target=version, down=down_files, backups=db.backups,
                                 want=want)
    continuing = choice.intent if choice.reason == "continue" else None
    done_before = _done_before(db, continuing)
    if done_before is not None:
        decision = RollbackDecision("code-only", f"completing {continuing.describe() if continuing else ''}: "
                                                 f"{done_before}; not restored again", target_schema)
    plan = RollbackPlan(db, decision, version, targets={n: str(m.get("id")) for n, m in found.targets.items()},
                        currents={n: str(m.get("id")) for n, m in found.leaves.items() if m.get("id")},
                        force=force, leader=found.leader, continuing=continuing, skipped=dict(found.skipped),
                        done_before=done_before)
    if decision.backup is not None:
        plan.cost = restore_cost(decision.backup, db.state.get("stats") or {},
                                 rehearsals(ws, db, session.progress), datetime.now(UTC))
    if decision.path == "refused":
        problems = [Problem("rollback", decision.reason)]
        if plan.cost is not None:
            problems.append(Problem("rollback", "what --restore-db would cost: " + describe_cost(plan.cost)
                                    .replace("\n", "; ")))
        problems += [Problem("rollback", f"option: {o}") for o in decision.options]
        if continuing is not None and continuing.database:
            how = {"restore": "--restore-db", "down": "--down"}.get(str(continuing.database.get("path")), "")
            problems.append(Problem("rollback", f"this completes {continuing.describe()}, with {how}: its hosts may "
                                                f"be stopped until it completes; run `golive rollback {how}` again"))
        problems.append(Problem("rollback", "nothing was changed"))
        raise BadInput(problems)
    if decision.changes_database and (serial or only):
        raise BadInput(Problem("--serial" if serial else "--host",
                               f"this rollback changes the database ({decision.path}): every host of "
                               f"{db.environment} goes back together, or old and new code would share it"))
    if decision.changes_database and unread:
        refuse_unread(db, unread, decision.path, version)
    if plan.changed_database and found.missing:
        raise BadInput([Problem("rollback", why) for why in found.missing.values()]
                       + [Problem("rollback", f"this rollback changes the database ({decision.path}): a host left on "
                                              f"its release would run on a schema it was not written for; nothing "
                                              f"was changed")])
    if decision.path == "down":
        plan.schema_after = schema_version([a for a in db.applied if a.version not in {m.version for m in
                                                                                          decision.down}])
    elif decision.path == "restore" and decision.backup is not None:
        plan.schema_after = decision.backup.get("schema_version")
    return plan


def refuse_unread(db: Database, unread: Mapping[str, str], path: str, version: str) -> None:
    """A rollback that changes the database goes back with every application host of the
    environment, or not at all: a host golive cannot reach may still be serving, and would serve the
    release it runs against the schema the rollback puts back. Refused before anything changes."""
    how = "restores the database" if path == "restore" else "runs the down-migrations"
    lines = [f"rollback refused: this rollback {how}, and {len(unread)} application host(s) of {db.environment} "
             f"could not be reached; nothing was changed (the database is as it was, no host was switched)"]
    lines += [f"  {name}: {why}: it may still be serving its release, and would go on serving it against the "
              f"schema of {version} put back under it" for name, why in unread.items()]
    lines.append(f"  what to do: bring {', '.join(unread)} back (or stop its service there) and run the rollback "
                 f"again; a host retired for good is taken out of the inventory first")
    raise HostFailure("\n".join(lines))


def _done_before(db: Database, continuing: Intent | None) -> str | None:
    """What the unfinished rollback being completed already did to the database, in words; None:
    nothing (or it did not change the database). A restore is done once its swap took place: the
    live database carries the mark the swap set in its own transaction (Agent.step_db_restore: the
    backup and the run), and the database host's ledger records that run's restore as ok."""
    if continuing is None or not continuing.database or continuing.database.get("path") != "restore":
        return None
    mark = db.state.get("restored") or {}
    backup = continuing.database.get("backup")
    if not mark or mark.get("backup") != backup or mark.get("run") != continuing.run:
        return None
    ledger = f"{db.host.name}'s ledger records it" if mark.get("ledger") else \
        f"{db.host.name}'s ledger has no entry for it (the host stopped before writing it)"
    return (f"its restore of backup {backup} completed (the live database is that restore, swapped in at "
            f"{mark.get('at')} by run {mark.get('run')}; {ledger})")


def rehearsals(ws: Workspace, db: Database, progress: Progress) -> list[dict[str, Any]]:
    """Every measured restore of this environment's backups and of its source environment's (staging
    rehearses what production would have to do): what a restore's expected time is based on."""
    found = [r for b in db.backups for r in b.get("restores") or [] if r]
    spec = ws.app.environment(db.environment)
    if spec is not None and spec.promote_from:
        try:
            source = for_environment(ws, db.customer, spec.promote_from)
        except BadInput:
            source = None
        if source is not None:
            session = HostSession([source.host], progress, ws.app)
            try:
                probe(session, source)
                found += [r for b in source.backups for r in b.get("restores") or [] if r]
            except BadInput:
                pass  # no estimate from there; the cost says so
            finally:
                session.close()
    return found


def apply_rollback(session: HostSession, run: steps.RunContext, ws: Workspace, plan: RollbackPlan,
                   hosts: Sequence[Host], connected: Mapping[str, Connected], leader: Host, *,
                   lock: Callable[[Host], AgentAnswer]) -> dict[str, HostReport]:
    """A rollback that changes the database (a restore, down-migrations), for the whole environment:
    1. every host records the rollback's intent (its target, the release it leaves, how the database
       changes: a re-run completes this rollback), stops and points `current` at the release it goes
       back to (not started yet);
    2. the database is restored, or the down-migrations run;
    3. every host starts that release and verifies it on the database as it now is.
    When step 2 fails the database is as it was, and every host goes back to what it ran. The cost
    of a restore is said first. A host with no live release is not rolled back (said per host).
    `lock`: takes one host's lock (flows/deploy.py: taking over a stale lock of this controller's own
    dead run, as a host-by-host rollback does). Returns every host's report."""
    db = plan.db
    if plan.cost is not None:
        session.progress.note(f"{db.environment}: {describe_cost(plan.cost)}")
    reports: dict[str, HostReport] = {}
    for host in hosts:
        if connected[host.name].ok and host.name in plan.skipped:
            reports[host.name] = nothing_live_report(run.environment, host.name)
            session.progress.update(host.name, "result", "skipped", "nothing live")
    reachable = [h for h in hosts if connected[h.name].ok and h.name in plan.targets]
    others = [h for h in reachable if h.name != leader.name]
    begin = session.timeouts.begin
    locked = {h.name: as_answer(a) for h, a in zip(others, session.fleet.map(lock, others), strict=True)}
    refused = {name: answer for name, answer in locked.items() if not answer.ok}
    if refused:
        session.call_all({n: (connected[n], steps.release_batch()) for n, a in locked.items() if a.ok}, begin)
        name, answer = next(iter(refused.items()))
        why = f"{name} is locked by another run" if answer.holder is not None else f"{name}: {answer.error}"
        plan.error = f"{why}: the database was not touched, no host was rolled back"
        reports.update({h.name: HostReport(host=h.name, environment=run.environment,
                                           status="locked" if h.name in refused else "skipped", action="rollback",
                                           error=plan.error) for h in reachable})
        return reports
    intent = plan.intent()

    def first_batch(host: Host) -> dict[str, Any]:
        target = {"release": plan.targets[host.name], "version": plan.target_version, "seq": None, "match": "id",
                  "reason": "continue" if plan.continuing is not None else "previous"}
        return {"steps": [steps.choose_rollback_target(run, target, plan.force, intent), steps.stop(ws.app),
                          steps.cutover(ws.app, "$target")]}

    first = {h.name: (connected[h.name], first_batch(h)) for h in reachable}
    answers = {name: [a] for name, a in session.call_all(first, ws.app.timeouts.restart + MARGIN,
                                                          module="dbagent").items()}
    for name, replies in answers.items():
        session.progress.update(name, "cutover", "ok" if replies[0].ok else "failed")
    error = next((f"{n}: {a[0].failed_step}: {a[0].error}" for n, a in answers.items() if not a[0].ok), None)
    if error is None and plan.decision.path == "restore" and plan.decision.backup is not None:
        result, error = restore(session, run, db, str(plan.decision.backup.get("id")),
                                reason=f"rollback to {plan.target_version}", column="choose")
        plan.result = result
    elif error is None:
        migrations = [{"version": m.version, "name": m.name, "down_sql": m.down_sql} for m in plan.decision.down]
        session.progress.update(db.host.name, "choose", "running", "down-migrations")
        answer = call(session, db, [{"op": "db_down", "name": "db_down", "migrations": migrations}],
                      db.spec.timeouts.migrate,
                      always=[steps.record(_db_entry(run, db, action="down", release=plan.target_version,
                                                     migrations=[m.id for m in plan.decision.down]))])
        if not answer.ok:
            error = f"down-migrations: {answer.error}"
        plan.result = answer.data("db_down")
        session.progress.update(db.host.name, "choose", "ok" if answer.ok else "failed")
    faultpoints.reached("database:done")
    plan.error = error
    annotation = plan.annotation()
    expect = annotation["expect"] if not error else {}
    second = {}
    for host in reachable:
        target, current = plan.targets[host.name], plan.currents.get(host.name)
        live = current if error else target
        entry = run.entry(host.name, release=live, previous_release=current, **annotation["entry"],
                          **({"detail": f"{error}; not rolled back"} if error else {}))
        batch = [steps.cutover(ws.app, live), steps.restart(ws.app, live, direction="rollback"),
                 {**steps.verify(live, direction="rollback"), "expect": expect}]
        if not error:
            # the hook of the release being left, as a host-by-host rollback runs it; a plain
            # rollback does not come back to what it left (mark_left)
            if current and current != target:
                batch.append({**steps.hook(ws.app, "on_rollback", "", target, "rollback", previous=current),
                              "meta_of": current})
            batch.append(steps.mark(target, "good", "mark_good"))
            if current and current != target:
                batch.append(steps.mark_left(current))
        batch += [{"op": "settle", "name": "settle", "result": "failed" if error else "ok", "detail": error or ""},
                  steps.record(entry)]
        if host.name != leader.name:  # the leader's lock is the environment's: the run gives it back last
            batch.append(steps.unlock())
        second[host.name] = (connected[host.name], {"steps": [], "always": batch})
    for name, answer in session.call_all(second, ws.app.timeouts.activate, module="dbagent").items():
        answers.setdefault(name, []).append(answer)
    for host in reachable:
        replies = answers.get(host.name, [])
        failures = [f"{s.name}: {s.error}" for a in replies for s in a.steps if not s.ok]
        failures += [a.error or "no answer" for a in replies if not a.ok and a.transport_error]
        target, current = plan.targets[host.name], plan.currents.get(host.name)
        for step in (replies[-1].steps if replies else []):
            if step.name in ("restart", "verify"):
                session.progress.update(host.name, step.name, "ok" if step.ok else "failed", f"{step.seconds:.2f}s")
        ok = not error and not failures
        reports[host.name] = HostReport(
            host=host.name, environment=run.environment, status="deployed" if ok else "failed", action="rollback",
            from_release=current, to_release=target, live_release=target if ok else (replies[-1].current
                                                                                     if replies else None),
            error=None if ok else "; ".join(([error] if error else []) + failures + (
                ["not rolled back: every host is back on the release it ran"] if error else [])),
            steps=step_seconds(*replies))
        session.progress.update(host.name, "result", "ok" if ok else "failed")
    session.progress.update(db.host.name, "result", "failed" if error else "ok", plan.decision.path)
    return reports


@dataclass
class _Reach:
    host: Host
    connected: Connected


# -- backups verb --------------------------------------------------------------------------------

def describe_backup(backup: Mapping[str, Any]) -> str:
    restores = backup.get("restores") or []
    last = max(restores, key=lambda r: str(r.get("at", ""))) if restores else None
    rehearsed = f", last restored {str(last.get('at', ''))[:16]} in {last.get('seconds')} s ({last.get('kind')})" \
        if last else ", never restored"
    return (f"{backup.get('id')}: {str(backup.get('created_at', ''))[:19]} schema {backup.get('schema_version') or '-'}"
            f" release {backup.get('release') or '-'} {int(backup.get('size') or 0) / 1048576:.1f} MB"
            f"{'' if backup.get('present', True) else ' FILE MISSING'}{rehearsed}")


def backups_verb(ws: Workspace, customer: str, environment: str, *, restore_id: str | None = None,
                 rehearse: str | None = None, reason: str = "", operator: str | None = None,
                 progress: Progress) -> Outcome:
    """golive backups: list an environment's backups; --rehearse restores one into a scratch database
    and measures it (nothing live changes); --restore ID puts one back under the live release (every
    host stopped first, restarted and verified after), when that release runs on its schema."""
    from golive.flows.session import lock_report, run_context

    db = for_environment(ws, customer, environment)
    if db is None:
        raise BadInput("golive.yml declares no database: there are no backups")
    if restore_id and rehearse:
        raise BadInput("--restore and --rehearse: one at a time")
    if restore_id and not reason.strip():
        raise BadInput("--restore needs --reason, recorded in the history")
    hosts = list(ws.hosts(customer, environment))
    action = "restore" if restore_id else "rehearse" if rehearse else "backups"
    run = run_context(action, customer, environment, operator, reason=reason)
    session = HostSession(hosts + [db.host], progress, ws.app, run.token)
    try:
        state = probe(session, db)
        if not restore_id and not rehearse:
            return _list_backups(db, state)
        chosen = _choose_backup(db, restore_id or rehearse or "")  # one of them is given here
        connected = session.connect(hosts)
        unreachable = [h.name for h in hosts if not connected[h.name].ok]
        if unreachable:
            raise BadInput(Problem(environment, f"unreachable: {', '.join(unreachable)}; nothing was changed"))
        reachable = [_Reach(h, connected[h.name]) for h in hosts]
        if restore_id:
            _check_restorable(session, ws, db, chosen, reachable)
        leader = reachable[0]
        locked = session.call(leader.connected, steps.lock_batch(run), timeout=ws.app.timeouts.begin)
        if not locked.ok:
            _, sentence = lock_report(locked.holder)
            raise BadInput(Problem(environment, f"{leader.host.name}: {sentence if locked.holder else locked.error}"))
        progress.start(f"{action} backup {chosen.get('id')} of {customer}/{environment}",
                       [h.name for h in hosts] + [db.host.name], ("stop", "restore", "restart", "verify", "result"))
        interrupted = False
        try:
            return _restore_or_rehearse(session, run, ws, db, chosen, reachable, rehearsal=bool(rehearse))
        except KeyboardInterrupt:  # no more round trips (golive.flows.deploy.run_rollout)
            interrupted = True
            raise
        finally:
            if not interrupted:
                session.call(leader.connected, steps.release_batch(), timeout=ws.app.timeouts.begin)
            progress.stop()
    finally:
        session.close()


def _list_backups(db: Database, state: Mapping[str, Any]) -> Outcome:
    listed = sorted(db.backups, key=lambda b: str(b.get("created_at", "")), reverse=True)
    free = state.get("disk_free")
    lines = [f"backups of {db.customer}/{db.environment} on {db.host.name} in {state.get('backup_dir')}"
             + (f" ({free / 1048576:.0f} MB free)" if free is not None else "")]
    lines += [f"  {describe_backup(b)}" for b in listed] or ["  none"]
    replaced = [d for d in state.get("databases") or [] if "__golive_replaced_" in d]
    if replaced:
        lines.append(f"  databases replaced by restores (their rows kept): {', '.join(replaced)}")
    data = {"customer": db.customer, "environment": db.environment, "host": db.host.name,
            "backup_dir": state.get("backup_dir"), "disk_free": free, "schema_version": db.schema,
            "backups": listed, "replaced_databases": replaced}
    return Outcome(data, "\n".join(lines))


def _choose_backup(db: Database, wanted: str) -> dict[str, Any]:
    verified = [b for b in db.backups if b.get("verified") and b.get("present", True)]
    if wanted in ("", "latest"):
        if not verified:
            raise BadInput(Problem(db.environment, f"no verified backup on {db.host.name}"))
        return max(verified, key=lambda b: str(b.get("created_at", "")))
    found = next((b for b in db.backups if b.get("id") == wanted), None)
    if found is None:
        known = ", ".join(str(b.get("id")) for b in db.backups) or "none"
        raise BadInput(Problem(db.environment, f"no backup {wanted!r} on {db.host.name} (kept: {known})"))
    if not found.get("present", True):
        raise BadInput(Problem(db.environment, f"backup {wanted}: its file is missing on {db.host.name}"))
    return found


def _check_restorable(session: HostSession, ws: Workspace, db: Database, backup_meta: Mapping[str, Any],
                      reachable: Sequence[_Reach]) -> None:
    """A restore under the live release needs that release's code to run on the backup's schema."""
    answers = session.call_all({r.host.name: (r.connected, {"steps": [steps.read_state(ws.app)]})
                                for r in reachable}, ws.app.timeouts.begin)
    wanted = {str((a.data("state").get("current_meta") or {}).get("schema_version")) for a in answers.values()}
    schema = str(backup_meta.get("schema_version"))
    if wanted != {schema}:
        raise BadInput(Problem(db.environment, f"backup {backup_meta.get('id')} is at schema {schema}, but the live "
                                               f"release runs on {', '.join(sorted(wanted))}: to go back with its "
                                               f"code, use golive rollback --restore-db; nothing was changed"))


def _restore_or_rehearse(session: HostSession, run: steps.RunContext, ws: Workspace, db: Database,
                         backup_meta: Mapping[str, Any], reachable: Sequence[_Reach], *, rehearsal: bool) -> Outcome:
    backup_id = str(backup_meta.get("id"))
    data: dict[str, Any] = {"customer": db.customer, "environment": db.environment, "backup": backup_id,
                            "action": "rehearse" if rehearsal else "restore"}
    if rehearsal:
        result, error = restore(session, run, db, backup_id, reason=run.reason or "rehearsal", column="restore",
                                rehearsal=True)
        session.progress.update(db.host.name, "result", "ok" if result else "failed")
        data.update(result or {}, error=error)
        text = (f"rehearsed backup {backup_id} on {db.host.name}: restored into a scratch database in "
                f"{result.get('seconds')} s, checked, dropped; nothing live changed" if result else
                f"rehearsal of backup {backup_id} FAILED: {error}")
        return Outcome(data, text, failed=result is None)
    cost = restore_cost(backup_meta, db.state.get("stats") or {}, rehearsals(ws, db, session.progress),
                        datetime.now(UTC))
    session.progress.note(f"{db.environment}: {describe_cost(cost)}")
    data["cost"] = cost.as_dict()
    errors = stop_hosts(session, ws.app, reachable)
    result, error = (None, f"stop: {errors[0]}") if errors else restore(session, run, db, backup_id,
                                                                       reason=run.reason, column="restore")
    expect = {db.spec.health_key: backup_meta.get("schema_version")} if db.spec.health_key else {}
    answers = start_hosts(session, ws.app, reachable, expect)
    failed = [f"{name}: {a.error}" for name, a in answers.items() if not a.ok]
    for name, answer in answers.items():
        session.progress.update(name, "result", "ok" if answer.ok else "failed")
    session.progress.update(db.host.name, "result", "ok" if result else "failed")
    record = {r.host.name: (r.connected, {"steps": [steps.record(run.entry(r.host.name, backup=backup_id,
                                                                           result="ok" if result and answers[
                                                                               r.host.name].ok else "failed",
                                                                           detail=error or ""))]})
              for r in reachable}
    session.call_all(record, ws.app.timeouts.begin)
    data.update(result or {}, error=error, hosts=failed)
    lines = [describe_cost(cost)]
    lines.append(f"restored backup {backup_id} in {result.get('seconds')} s; the database it replaced is kept as "
                 f"{result.get('replaced_database')}" if result else f"restore FAILED: {error}; the live database "
                                                                     f"is untouched")
    lines += [f"  {line}" for line in failed]
    return Outcome(data, "\n".join(lines), failed=bool(error or failed))


# -- drift, checks, preflight ----------------------------------------------------------------------

def view(session: HostSession, db: Database, expects: Sequence[str] = ()) -> DatabaseView:
    """The database as drift compares it: applied migrations, the live schema and the one golive left."""
    from golive.core.migrations import DatabaseView, schema_objects

    try:
        state = probe(session, db, schema=True)
    except BadInput as error:
        return DatabaseView(db.environment, db.host.name, error="; ".join(p.message for p in error.problems))
    recorded = state.get("schema_recorded")
    return DatabaseView(db.environment, db.host.name,
                        applied=tuple((f"{a.version}_{a.name}", a.checksum) for a in db.applied),
                        objects=schema_objects(state.get("schema_dump") or ""),
                        recorded=schema_objects(recorded) if recorded is not None else None,
                        recorded_meta=state.get("schema_recorded_meta") or {},
                        expects=tuple(e for e in expects if e))


def drift_findings(ws: Workspace, customer: str, source: str, target: str,
                   live_schemas: Mapping[str, Sequence[str]], progress: Progress) -> tuple[list[Any], dict[str, str]]:
    """(findings, unreachable) for the two environments' databases; `live_schemas` gives, per
    environment, the schema versions its application hosts' live releases run on."""
    from golive.core.migrations import database_findings

    dbs = {env: for_environment(ws, customer, env) for env in (source, target)}
    if not any(dbs.values()):
        return [], {}
    hosts = [d.host for d in dbs.values() if d is not None]
    session = HostSession(hosts, progress, ws.app)
    try:
        views = {env: view(session, d, live_schemas.get(env, ())) if d else None for env, d in dbs.items()}
    finally:
        session.close()
    unreachable = {v.host: v.error for v in views.values() if v is not None and v.error}
    target_view = views[target]
    if target_view is None:
        return [], unreachable
    return database_findings(target_view, views[source]), unreachable


def preflight_items(ws: Workspace, customer: str, target: str, version: str | None,
                    progress: Progress) -> tuple[Any, list[str]]:
    """(the gate of the target environment's database host, "if we must roll back" in plain words):
    reachable with the rendered credentials, the pending migrations and their kind, space for the
    backup, a restore rehearsed on staging with its measured time."""
    from golive.core.gate import HostGate, Item

    db = for_environment(ws, customer, target)
    if db is None:
        return None, []
    gate = HostGate(db.host.name, target, db.host.connection.address)
    session = HostSession([db.host], progress, ws.app)
    try:
        try:
            probe(session, db)
        except BadInput as error:
            detail = "; ".join(p.message for p in error.problems)
            gate.items.append(Item("database", False, detail, "The database server must answer golive with the "
                                   "rendered credentials: check that it runs, the address and port in the inventory, "
                                   "and the password in the vault."))
            return gate, ["We cannot say what a rollback would cost: the database did not answer."]
    finally:
        session.close()
    gate.items.append(Item("database", True, f"{db.connection.describe()} answers; schema {db.schema or '(none)'}"))
    lines: list[str] = []
    decision = None
    if version:
        try:
            migrations = release_migrations(ws, ws.artifact(version))
            check = check_history(migrations, db.applied, f"{version}:{db.spec.migrations.dir}")
            decision = deploy_decision(check, online=db.spec.migrations.online, serial=False, subset=False,
                                       environment=target, release=version)
        except BadInput as error:
            gate.items.append(Item("migrations", False, "; ".join(str(p) for p in error.problems),
                                   "Fix the release's migrations (a migration that ran must not change) and build it "
                                   "again."))
    if decision is not None:
        pending = ", ".join(f"{m.id} ({m.kind}{', reversible' if m.reversible else ''})" for m in decision.pending)
        gate.items.append(Item("migrations", not decision.problems,
                               (f"pending: {pending}" if decision.pending else "no pending migration")
                               + ("; " + "; ".join(str(p) for p in decision.problems) if decision.problems else ""),
                               "Fix what the migrations check says before the go-live."))
        lines = _rollback_words(db, decision, rehearsals(ws, db, progress))
    problems = _space_problems(db)
    free = db.state.get("disk_free")
    gate.items.append(Item("backup space", not problems, problems[0].message if problems else
                           f"{(free or 0) / 1048576:.0f} MB free in {db.state.get('backup_dir')} for a backup of "
                           f"{int(db.state.get('size') or 0) / 1048576:.1f} MB",
                           "Free disk space on the database host (or set database.backup.dir elsewhere)."))
    measured = rehearsals(ws, db, progress)
    if measured:
        last = max(measured, key=lambda r: str(r.get("at", "")))
        detail = (f"{last.get('environment')} restored a {int(last.get('size') or 0) / 1048576:.1f} MB backup in "
                  f"{last.get('seconds')} s on {str(last.get('at', ''))[:16]}")
    else:
        detail = "no restore has been rehearsed"
    gate.items.append(Item("restore rehearsed", bool(measured), detail,
                           f"Rehearse a restore on staging: golive backups {customer} staging --rehearse (it restores "
                           f"the newest backup into a scratch database, measures it, and changes nothing live)."))
    return gate, lines


def _rollback_words(db: Database, decision: DeployDecision, measured: Sequence[Mapping[str, Any]]) -> list[str]:
    if not decision.pending:
        return ["If we must roll back after the go-live, the previous release goes back on every server in seconds: "
                "this release does not change the database, so nothing written meanwhile is lost."]
    if decision.compatible:
        return [f"This release adds to the database ({', '.join(m.id for m in decision.pending)}) without changing "
                f"what the previous release uses. If we must roll back, the previous release goes back in seconds and "
                f"runs on the database as it is: nothing written meanwhile is lost."]
    estimate = ""
    if measured:
        last = max(measured, key=lambda r: str(r.get("at", "")))
        estimate = (f" Restoring takes about {float(last.get('seconds') or 0):.0f} s at the size "
                    f"{last.get('environment')} rehearsed ({int(last.get('size') or 0) / 1048576:.1f} MB).")
    contract = [m.id for m in decision.pending if m.kind != "expand"]
    lines = [f"This release changes the database in a way the previous release cannot run on ({', '.join(contract)}). "
             f"Before it does, golive takes a backup. If a server fails its check during the go-live, golive restores "
             f"that backup by itself before the previous release starts again.",
             f"If we decide to roll back later, the database is restored from that backup: everything written after "
             f"the go-live started (the moment the backup is taken) is lost, and golive says how many rows before it "
             f"does anything.{estimate}"]
    if all(m.reversible for m in decision.pending):
        lines.append("Every change has an undo script: a rollback can also undo the changes and keep what was "
                     "written meanwhile (golive rollback --down).")
    return lines


def with_database_checks(ws: Workspace, customer: str, environment: str, outcome: Outcome,
                         progress: Progress) -> Outcome:
    """`golive check` on the environment's database host too: it answers golive with the rendered
    credentials, and its newest backup exists, matches its checksum and reads back (pg_restore --list).
    (The application hosts' own view, from their rendered config, is checks/test_database.py.)"""
    db = for_environment(ws, customer, environment)
    if db is None:
        return outcome
    session = HostSession([db.host], progress, ws.app)
    failed: list[dict[str, str]] = []
    passed: list[str] = []
    try:
        probe(session, db)
        passed.append("database answers with the rendered credentials")
        answer = call(session, db, [{"op": "db_probe", "name": "db_probe", "verify_backup": True}],
                      session.timeouts.begin)
        backup_check = answer.data("db_probe").get("backup_check") or {"ok": False, "detail": answer.error}
        if backup_check.get("ok"):
            passed.append(str(backup_check.get("detail")))
        else:
            failed.append({"check": "database: last backup", "reason": str(backup_check.get("detail"))})
    except BadInput as error:
        failed.append({"check": "database: reachable", "reason": "; ".join(p.message for p in error.problems)})
    finally:
        session.close()
    row = {"host": db.host.name, "result": "passed" if not failed else "failed", "passed": passed, "failed": failed}
    data = {**outcome.data, "hosts": [*outcome.data.get("hosts", []), row],
            "passed": outcome.data.get("passed", True) and not failed}
    lines = outcome.text.splitlines()
    verdict = lines.pop() if lines else ""
    summary = ("database checks passed: " + "; ".join(passed)) if not failed else "database checks FAILED"
    lines.append(f"  {db.host.name}: {summary}")
    lines.extend(f"    {f['check']}: {f['reason']}" for f in failed)
    lines.append(verdict)
    return Outcome(data, "\n".join(lines), finding=outcome.finding or bool(failed), failed=outcome.failed)

"""The rules of schema migrations, as pure values and decisions (no I/O).

- A release carries its migrations as files `NNNN_name.sql` (and optionally `NNNN_name.down.sql`,
  which undoes it). Each is applied once, in order, and recorded with its checksum in the history
  table; a migration whose file changed after it was applied is refused (like Flyway's validate).
- Each migration is `expand` (code written before it keeps working on the schema it leaves:
  added tables, nullable or defaulted columns, indexes) or `contract` (it does not: a dropped or
  renamed column, a changed type, a new NOT NULL). A first-line header declares it
  (`-- golive: expand` or `-- golive: contract`); without one golive detects it, and anything not
  provably additive counts as contract. A declared expand that drops or renames is refused.
- From that follow the deploy and rollback decisions: which migrations are pending, whether every
  application host must stop first, whether a rollback is code-only, needs a down-migration run or
  a restore, or is refused; and what a restore costs (the backup's age, the rows written since it,
  the expected restore time).

tests/unit/test_migrations.py runs JSON fixtures (tests/unit/fixtures/migrations/) through these.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from golive.core.errors import Problem

MigrationKind = Literal["expand", "contract"]
RollbackPath = Literal["code-only", "down", "restore", "refused"]
Want = Literal["auto", "restore", "down"]

FILE_NAME = re.compile(r"^(\d{4})_([A-Za-z0-9_]+?)(\.down)?\.sql$")
HEADER = re.compile(r"^\s*--\s*golive:\s*(.*?)\s*$", re.IGNORECASE)
HEADER_WORDS = {"expand", "contract", "no-transaction"}

# Statements that keep code written before them working (checked on statements without comments
# and string literals, upper-cased). Anything else is contract unless the header says expand.
_ADDITIVE = (
    r"CREATE (UNIQUE )?INDEX\b", r"CREATE (OR REPLACE )?(TEMP |TEMPORARY )?(TABLE|VIEW|SEQUENCE|SCHEMA|TYPE|DOMAIN)\b",
    r"CREATE (OR REPLACE )?(FUNCTION|PROCEDURE|TRIGGER|AGGREGATE)\b", r"CREATE EXTENSION\b",
    r"CREATE MATERIALIZED VIEW\b", r"COMMENT ON\b", r"GRANT\b", r"INSERT INTO\b", r"UPDATE\b", r"SELECT\b",
    r"ANALYZE\b", r"SET\b", r"REFRESH MATERIALIZED VIEW\b",
)
# ALTER TABLE actions that are additive: a column that old INSERTs need not name (nullable, or
# with a default), an index-backed constraint added NOT VALID, a comment.
_ADDITIVE_ALTER = (
    r"ADD (COLUMN )?(IF NOT EXISTS )?\S+ [^,]*",
)
# What makes a migration contract whatever its header says (code written before it breaks).
_DESTRUCTIVE = (
    (r"\bDROP (TABLE|VIEW|SCHEMA|TYPE|SEQUENCE|FUNCTION|MATERIALIZED VIEW)\b", "drops an object"),
    (r"\bDROP COLUMN\b", "drops a column"),
    (r"\bALTER TABLE\b[^;]*\bDROP (?!CONSTRAINT|DEFAULT)(?!INDEX)\S+", "drops a column"),
    (r"\bRENAME\b", "renames"),
    (r"\bALTER COLUMN \S+ (SET DATA )?TYPE\b", "changes a column's type"),
    (r"\bSET NOT NULL\b", "makes a column NOT NULL"),
    (r"\bTRUNCATE\b", "empties a table"),
)
_NON_TRANSACTIONAL = (
    r"\bCONCURRENTLY\b", r"^VACUUM\b", r"^CREATE DATABASE\b", r"^DROP DATABASE\b", r"^ALTER SYSTEM\b",
    r"^CREATE TABLESPACE\b", r"^(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|END)\b",
)


@dataclass(frozen=True)
class Migration:
    """One migration file of a release."""

    version: str  # "0002"
    name: str  # "work_order_priority"
    checksum: str  # sha256 of the file's bytes
    kind: MigrationKind
    declared: bool  # the kind comes from the header (else detected)
    transactional: bool  # may run inside one transaction with its neighbours
    why: str = ""  # what made it contract, or its header
    sql: str = field(default="", repr=False)
    down_sql: str | None = field(default=None, repr=False)
    down_checksum: str | None = None

    @property
    def id(self) -> str:
        return f"{self.version}_{self.name}"

    @property
    def reversible(self) -> bool:
        return self.down_sql is not None

    def describe(self) -> str:
        how = "declared" if self.declared else f"detected{': ' + self.why if self.why else ''}"
        return f"{self.id} ({self.kind}, {how}{', reversible' if self.reversible else ''}" \
               f"{'' if self.transactional else ', outside a transaction'})"

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.name, "checksum": self.checksum, "kind": self.kind,
                "declared": self.declared, "transactional": self.transactional, "why": self.why,
                "reversible": self.reversible}


@dataclass(frozen=True)
class Applied:
    """One row of the history table: a migration applied to the database."""

    version: str
    name: str
    checksum: str
    kind: str = "contract"
    release: str = ""
    applied_at: str = ""
    applied_by: str = ""

    @staticmethod
    def from_row(row: Mapping[str, Any]) -> Applied:
        return Applied(str(row.get("version") or ""), str(row.get("name") or ""), str(row.get("checksum") or ""),
                       str(row.get("kind") or "contract"), str(row.get("release") or ""),
                       str(row.get("applied_at") or ""), str(row.get("applied_by") or ""))

    @property
    def id(self) -> str:
        return f"{self.version}_{self.name}"


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_version(applied: Iterable[Applied | Migration]) -> str | None:
    versions = [a.version for a in applied]
    return max(versions) if versions else None


# -- reading a release's migrations -------------------------------------------------------------

def statements(sql: str) -> list[tuple[int, str]]:
    """(line, statement) for each statement, without comments and string literals, upper-cased and
    with runs of white space made one space. Dollar-quoted bodies (functions) count as literals."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    started = False  # the statement has a character that is not white space
    line, start = 1, 1
    i, n = 0, len(sql)

    def finish() -> None:
        text = " ".join("".join(current).split()).upper()
        if text:
            out.append((start, text))

    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            line += sql[i:(n if end < 0 else end)].count("\n")
            i = n if end < 0 else end + 2
            continue
        quoted = None
        if c == "'":
            end = i + 1
            while end < n and not (sql[end] == "'" and not sql.startswith("''", end)):
                end += 2 if sql.startswith("''", end) else 1
            quoted, after = "''", end + 1
        elif c == "$":
            dollar = re.match(r"\$[A-Za-z_0-9]*\$", sql[i:i + 64])
            if dollar:
                end = sql.find(dollar.group(0), i + len(dollar.group(0)))
                quoted, after = "$$", (n if end < 0 else end + len(dollar.group(0)))
        if quoted is not None:
            line += sql[i:after].count("\n")
            if not started:
                started, start = True, line
            current.append(quoted)
            i = after
            continue
        if c == ";":
            finish()
            current, started = [], False
            i += 1
            continue
        if c == "\n":
            line += 1
        elif not started and not c.isspace():
            started, start = True, line
        current.append(c)
        i += 1
    finish()
    return out


def destructive(sql: str) -> tuple[int, str] | None:
    """(line, what) of the first statement that breaks code written before it, or None."""
    for line, statement in statements(sql):
        for pattern, what in _DESTRUCTIVE:
            if re.search(pattern, statement):
                return line, what
        if statement.startswith("ALTER TABLE") and re.search(r"\bADD (COLUMN )?(IF NOT EXISTS )?", statement) \
                and re.search(r"\bNOT NULL\b", statement) and not re.search(r"\bDEFAULT\b", statement):
            return line, "adds a NOT NULL column without a default (older code's inserts fail)"
        if statement.startswith("ALTER TABLE") and re.search(r"\bADD (CONSTRAINT \S+ )?(CHECK|UNIQUE|FOREIGN KEY|"
                                                             r"PRIMARY KEY|EXCLUDE)\b", statement):
            return line, "adds a constraint older code's writes may break"
    return None


def detect(sql: str) -> tuple[MigrationKind, bool, str]:
    """(kind, transactional, why) from the statements themselves."""
    found = statements(sql)
    transactional = not any(re.search(p, s) for _, s in found for p in _NON_TRANSACTIONAL)
    harmful = destructive(sql)
    if harmful:
        return "contract", transactional, f"line {harmful[0]} {harmful[1]}"
    for line, statement in found:
        if any(re.match(p, statement) for p in _ADDITIVE):
            continue
        if statement.startswith("ALTER TABLE") and re.search(r"\bADD (COLUMN )?", statement):
            continue
        if re.match(r"(BEGIN|COMMIT|END|START TRANSACTION)\b", statement):
            continue
        return "contract", transactional, f"line {line} is not provably additive ({statement.split(' (')[0][:60]})"
    return "expand", transactional, ""


def read_migrations(files: Mapping[str, bytes], where: str) -> tuple[list[Migration], list[Problem]]:
    """The migrations of a release from its migration directory's files (name -> bytes), in order,
    and every problem with them (each naming the file and line)."""
    problems: list[Problem] = []
    ups: dict[str, tuple[str, bytes]] = {}
    downs: dict[str, tuple[str, bytes]] = {}
    for name in sorted(files):
        match = FILE_NAME.match(name)
        if not match:
            if name.endswith(".sql"):
                problems.append(Problem(f"{where}/{name}", "a migration file is named NNNN_name.sql (four digits, "
                                                           "then letters, digits or _), or NNNN_name.down.sql"))
            continue
        version, label, is_down = match.groups()
        target = downs if is_down else ups
        if version in target:
            problems.append(Problem(f"{where}/{name}", f"two migrations numbered {version} "
                                                       f"({target[version][0]} and {label})"))
            continue
        target[version] = (label, files[name])
    migrations = []
    for version in sorted(ups):
        label, data = ups[version]
        path = f"{where}/{version}_{label}.sql"
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(path, "not UTF-8 text"))
            continue
        header = HEADER.match(sql.splitlines()[0]) if sql.strip() else None
        words = {w.strip().lower() for w in re.split(r"[,\s]+", header.group(1)) if w.strip()} if header else set()
        unknown = words - HEADER_WORDS
        if unknown:
            problems.append(Problem(f"{path}:1", f"unknown word(s) in the golive header: {', '.join(sorted(unknown))} "
                                                 f"(known: {', '.join(sorted(HEADER_WORDS))})"))
        if {"expand", "contract"} <= words:
            problems.append(Problem(f"{path}:1", "the header declares both expand and contract"))
        kind, transactional, why = detect(sql)
        declared = bool(words & {"expand", "contract"})
        if "expand" in words:
            harmful = destructive(sql)
            if harmful:
                problems.append(Problem(f"{path}:{harmful[0]}", f"declared expand, but it {harmful[1]}: code written "
                                                                f"before it would break on the schema it leaves; "
                                                                f"declare it `-- golive: contract`"))
            kind, why = "expand", "declared"
        elif "contract" in words:
            kind, why = "contract", "declared"
        if "no-transaction" in words:
            transactional = False
        down = downs.pop(version, None)
        down_sql = None
        if down is not None:
            if down[0] != label:
                problems.append(Problem(f"{where}/{version}_{down[0]}.down.sql",
                                        f"undoes {version}_{down[0]}, but migration {version} is {version}_{label}"))
            try:
                down_sql = down[1].decode("utf-8")
            except UnicodeDecodeError:
                problems.append(Problem(f"{where}/{version}_{down[0]}.down.sql", "not UTF-8 text"))
        migrations.append(Migration(version, label, checksum(data), kind, declared, transactional, why, sql, down_sql,
                                    checksum(down[1]) if down is not None else None))
    for version, (label, _) in sorted(downs.items()):
        problems.append(Problem(f"{where}/{version}_{label}.down.sql", f"undoes migration {version}, which the "
                                                                       f"release does not have"))
    return migrations, problems


# -- the database against a release ----------------------------------------------------------------

@dataclass(frozen=True)
class HistoryCheck:
    """A release's migrations against the database's history."""

    pending: tuple[Migration, ...]
    applied: tuple[Applied, ...]
    ahead: tuple[Applied, ...]  # applied, but not in this release (the database is ahead of its code)
    problems: tuple[Problem, ...]  # refusals: changed checksums, out of order

    @property
    def schema_before(self) -> str | None:
        return schema_version(self.applied)

    @property
    def incompatible_ahead(self) -> tuple[Applied, ...]:
        return tuple(a for a in self.ahead if a.kind != "expand")


def check_history(release: Sequence[Migration], applied: Sequence[Applied], where: str) -> HistoryCheck:
    by_version = {a.version: a for a in applied}
    problems: list[Problem] = []
    pending = []
    for migration in release:
        done = by_version.get(migration.version)
        if done is None:
            pending.append(migration)
        elif done.checksum != migration.checksum or done.name != migration.name:
            what = f"{done.id} was applied with checksum {done.checksum[:12]}" + (
                f", but the release's {migration.id}.sql hashes to {migration.checksum[:12]}"
                if done.name == migration.name else f", but the release has {migration.id}.sql in its place")
            problems.append(Problem(f"{where}/{migration.id}.sql", f"{what} (applied by {done.release or '?'} at "
                                                                   f"{done.applied_at or '?'}): a migration that "
                                                                   f"ran must not change; add a new one instead"))
    newest = schema_version(applied)
    for migration in pending:
        if newest and migration.version < newest:
            problems.append(Problem(f"{where}/{migration.id}.sql", f"is not applied, but {newest} already is: "
                                                                   f"migrations apply in order; renumber it after "
                                                                   f"{newest}"))
    known = {m.version for m in release}
    ahead = tuple(a for a in applied if a.version not in known)
    return HistoryCheck(tuple(pending), tuple(applied), ahead, tuple(problems))


@dataclass(frozen=True)
class DeployDecision:
    """What a deploy does with the database."""

    pending: tuple[Migration, ...]
    compatible: bool  # the previous release's code runs on the schema the pending migrations leave
    stop_hosts: bool  # every application host stops before the migration
    backup: bool
    schema_before: str | None
    schema_after: str | None
    problems: tuple[Problem, ...]  # refusals: exit 2, no host touched

    @property
    def migrates(self) -> bool:
        return bool(self.pending)


def deploy_decision(check: HistoryCheck, *, online: str, serial: bool, subset: bool, environment: str,
                    others: Sequence[str] = (), release: str = "") -> DeployDecision:
    problems = list(check.problems)
    if check.incompatible_ahead:
        first = check.incompatible_ahead[0]
        problems.append(Problem("database", f"the {environment} database is at {check.schema_before}: migration "
                                            f"{first.id} ({first.kind}, applied by {first.release or '?'}) is not "
                                            f"in release {release}, whose code cannot run on it; to go back, use "
                                            f"golive rollback (it says what a restore costs)"))
    pending = check.pending
    compatible = all(m.kind == "expand" for m in pending)
    stop = bool(pending) and not (online == "expand" and compatible)
    if pending and (serial or subset):
        what = ", ".join(m.id + f" ({m.kind})" for m in pending)
        if not compatible:
            why = (f"the previous code cannot run on the schema they leave, and old and new code would serve "
                   f"the {environment} database side by side")
        else:
            why = ("every application host stops before a migration (golive.yml database.migrations.online: "
                   "never; `expand` lets additive migrations run while the old code serves)")
        if serial:
            problems.append(Problem("--serial", f"this release migrates the database ({what}): {why}; deploy "
                                                f"every host of {environment} at once"))
        if subset:
            rest = f" ({', '.join(others)})" if others else ""
            problems.append(Problem("--host", f"this release migrates the database ({what}), and the other hosts "
                                              f"of {environment}{rest} would keep serving the old code on the "
                                              f"migrated schema: {why}; deploy the whole environment"))
    after = schema_version([*check.applied, *pending])
    return DeployDecision(pending, compatible, stop, bool(pending), check.schema_before, after, tuple(problems))


# -- rollback ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RollbackDecision:
    path: RollbackPath
    reason: str
    target_schema: str | None
    beyond: tuple[Applied, ...] = ()  # applied migrations the target's code does not know
    down: tuple[Migration, ...] = ()  # path down: the down-migrations to run, newest first
    backup: Mapping[str, Any] | None = None  # path restore: the backup to restore
    options: tuple[str, ...] = ()  # what the operator can do instead (path refused)

    @property
    def changes_database(self) -> bool:
        return self.path in ("down", "restore")


def schema_state(applied: Iterable[Applied], upto: str | None) -> list[list[str]]:
    """[[version, checksum], ...] of the migrations applied up to a schema version: what a backup
    taken at that schema recorded."""
    return [[a.version, a.checksum] for a in sorted(applied, key=lambda a: a.version)
            if upto is not None and a.version <= upto]


def backup_for(backups: Sequence[Mapping[str, Any]], state: list[list[str]]) -> Mapping[str, Any] | None:
    """The newest verified backup taken at exactly this schema state."""
    matching = [b for b in backups if b.get("verified") and [list(x) for x in b.get("schema") or []] == state]
    return max(matching, key=lambda b: str(b.get("created_at", ""))) if matching else None


def rollback_decision(applied: Sequence[Applied], target_schema: str | None, *, target: str,
                      down: Mapping[str, Migration], backups: Sequence[Mapping[str, Any]],
                      want: Want = "auto") -> RollbackDecision:
    """How to put release `target` back: code only, down-migrations, a restore, or not at all.

    `target_schema` is the newest migration the target's code was written for; `down` the current
    release's migrations that carry a down file (by version); `backups` every backup's metadata."""
    beyond = tuple(sorted((a for a in applied if target_schema is None or a.version > target_schema),
                          key=lambda a: a.version, reverse=True))
    state = schema_state(applied, target_schema)
    backup = backup_for(backups, state)
    contract = [a for a in beyond if a.kind != "expand"]
    if want == "down":
        if not beyond:
            return RollbackDecision("code-only", f"the database is at the schema {target} was written for "
                                                 f"({target_schema or 'none'}): nothing to undo", target_schema)
        missing = [a.id for a in beyond if a.version not in down]
        if missing:
            return RollbackDecision("refused", f"--down: the live release has no down-migration for "
                                               f"{', '.join(missing)}", target_schema, beyond,
                                    options=_options(backup, down_ok=False, target=target))
        changed = [a.id for a in beyond if down[a.version].checksum != a.checksum]
        if changed:
            return RollbackDecision("refused", f"--down: the live release's {', '.join(changed)} differ from what "
                                               f"was applied", target_schema, beyond,
                                    options=_options(backup, down_ok=False, target=target))
        return RollbackDecision("down", f"runs the down-migrations of {', '.join(a.id for a in beyond)}, newest "
                                        f"first, in one transaction", target_schema, beyond,
                                down=tuple(down[a.version] for a in beyond))
    if want == "restore":
        if backup is None:
            return RollbackDecision("refused", f"--restore-db: no verified backup was taken at the schema {target} "
                                               f"runs on ({target_schema or 'none'})", target_schema, beyond,
                                    options=_options(None, down_ok=_down_ok(beyond, down), target=target))
        return RollbackDecision("restore", f"restores backup {backup.get('id')}, taken at schema "
                                           f"{target_schema or 'none'}", target_schema, beyond, backup=backup)
    if not beyond:
        return RollbackDecision("code-only", f"the database is at the schema {target}'s code was written for "
                                             f"({target_schema or 'none'})", target_schema)
    if not contract:
        return RollbackDecision("code-only", f"every migration since {target_schema or 'the start'} is additive "
                                             f"({', '.join(a.id for a in reversed(beyond))}): {target}'s code runs "
                                             f"on the schema as it is", target_schema, beyond)
    reason = (f"{target}'s code cannot run on the database as it is: "
              + ", ".join(f"{a.id} ({a.kind})" for a in reversed(contract))
              + f" changed the schema since {target_schema or 'the start'}")
    return RollbackDecision("refused", reason, target_schema, beyond, backup=backup,
                            options=_options(backup, down_ok=_down_ok(beyond, down), target=target))


def _down_ok(beyond: Sequence[Applied], down: Mapping[str, Migration]) -> bool:
    return bool(beyond) and all(a.version in down and down[a.version].checksum == a.checksum for a in beyond)


def _options(backup: Mapping[str, Any] | None, *, down_ok: bool, target: str) -> tuple[str, ...]:
    options = []
    if backup is not None:
        options.append(f"--restore-db: restore backup {backup.get('id')} (taken {backup.get('created_at')})")
    if down_ok:
        options.append("--down: run the live release's down-migrations")
    if not options:
        options.append(f"none: no backup at {target}'s schema and no down-migrations; restore one by hand "
                       f"(golive backups) or deploy a release that migrates forward")
    return tuple(options)


# -- what a restore costs -------------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreCost:
    backup_id: str
    taken_at: str
    age_seconds: float | None
    rows: Mapping[str, Mapping[str, int]]  # table -> {inserted, updated, deleted} since the backup
    rows_known: bool  # False: the statistics were reset or the database replaced since
    estimate_seconds: float | None
    estimate_basis: str

    @property
    def rows_written(self) -> int:
        return sum(sum(v.values()) for v in self.rows.values())

    def as_dict(self) -> dict[str, Any]:
        return {"backup": self.backup_id, "taken_at": self.taken_at, "age_seconds": self.age_seconds,
                "rows_written": self.rows_written if self.rows_known else None, "rows": dict(self.rows),
                "rows_known": self.rows_known, "estimate_seconds": self.estimate_seconds,
                "estimate_basis": self.estimate_basis}


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def rows_since(snapshot: Mapping[str, Any], now: Mapping[str, Any]) -> tuple[dict[str, dict[str, int]], bool]:
    """Rows inserted, updated and deleted per table between two statistics snapshots
    ({"database_oid", "stats_reset", "tables": {name: [ins, upd, del]}}). Not known (False) when the
    database was replaced (another oid) or its statistics reset in between."""
    if not snapshot or not now or snapshot.get("database_oid") != now.get("database_oid") \
            or snapshot.get("stats_reset") != now.get("stats_reset"):
        return {}, False
    before = snapshot.get("tables") or {}
    rows: dict[str, dict[str, int]] = {}
    for table, counts in sorted((now.get("tables") or {}).items()):
        old = before.get(table) or [0, 0, 0]
        delta = [max(0, int(n) - int(o)) for n, o in zip(counts, old, strict=False)]
        if any(delta):
            rows[table] = dict(zip(("inserted", "updated", "deleted"), delta, strict=False))
    return rows, True


def restore_estimate(backup: Mapping[str, Any], rehearsals: Sequence[Mapping[str, Any]]) -> tuple[float | None, str]:
    """Seconds a restore of this backup should take: the last restore of a backup rehearsed on
    staging (or of this one), scaled by size."""
    if not rehearsals:
        return None, "never rehearsed: run golive backups CUSTOMER staging --rehearse"
    last = max(rehearsals, key=lambda r: str(r.get("at", "")))
    size, measured_size = float(backup.get("size") or 0), float(last.get("size") or 0)
    seconds = float(last.get("seconds") or 0)
    scaled = seconds * (size / measured_size) if measured_size > 0 and size > 0 else seconds
    where = last.get("environment") or "staging"
    basis = (f"{where} restored a {_mb(measured_size)} backup in {seconds:.1f} s on {str(last.get('at', ''))[:16]}"
             + (f", scaled to this backup's {_mb(size)}" if measured_size and size and size != measured_size else ""))
    return round(scaled, 1), basis


def restore_cost(backup: Mapping[str, Any], stats_now: Mapping[str, Any], rehearsals: Sequence[Mapping[str, Any]],
                 now: datetime) -> RestoreCost:
    taken = _parse_time(str(backup.get("created_at", "")))
    age = (now - taken).total_seconds() if taken else None
    rows, known = rows_since(backup.get("stats") or {}, stats_now)
    estimate, basis = restore_estimate(backup, rehearsals)
    return RestoreCost(str(backup.get("id")), str(backup.get("created_at", "")), age, rows, known, estimate, basis)


def _mb(size: float) -> str:
    return f"{size / 1048576:.1f} MB" if size >= 104857.6 else f"{size / 1024:.0f} kB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days"


def describe_cost(cost: RestoreCost) -> str:
    """The cost of a restore in plain words, for the operator before anything happens."""
    age = f" ({_duration(cost.age_seconds)} ago)" if cost.age_seconds is not None else ""
    lines = [f"restore backup {cost.backup_id}, taken {cost.taken_at[:19].replace('T', ' ')} UTC{age}"]
    if not cost.rows_known:
        lines.append("rows written since: unknown (the database was replaced or its statistics reset since the "
                     "backup); everything written after the backup is lost")
    elif cost.rows_written == 0:
        lines.append("rows written since: none")
    else:
        per_table = "; ".join(f"{table}: " + ", ".join(f"{n} {what}" for what, n in counts.items() if n)
                              for table, counts in cost.rows.items())
        lines.append(f"rows written since: {cost.rows_written} ({per_table}), lost by the restore "
                     f"(the database as it is now is kept beside the restored one)")
    if cost.estimate_seconds is not None:
        lines.append(f"expected restore time: about {cost.estimate_seconds:.0f} s ({cost.estimate_basis})")
    else:
        lines.append(f"expected restore time: unknown ({cost.estimate_basis})")
    return "\n".join(lines)


# -- retention -----------------------------------------------------------------------------------

def backups_to_prune(backups: Sequence[Mapping[str, Any]], keep: int, protect: Iterable[str]) -> list[str]:
    """Ids of the backups retention removes: all but the `keep` newest, never a protected one (the
    backup a rollback target needs, the one this run took)."""
    protected = {p for p in protect if p}
    newest = sorted(backups, key=lambda b: str(b.get("created_at", "")), reverse=True)
    kept = 0
    removed = []
    for backup in newest:
        if backup.get("id") in protected:
            continue
        if kept < keep:
            kept += 1
            continue
        removed.append(str(backup.get("id")))
    return removed


# -- schema fingerprints -------------------------------------------------------------------------

_NOISE = re.compile(r"^(--|SET |SELECT pg_catalog\.set_config|\\(un)?restrict |ALTER .* OWNER TO )")


def schema_objects(dump: str) -> dict[str, str]:
    """`pg_dump --schema-only` output as {object: sha256 of its normalised definition}: comments,
    session settings, owners and pg_dump's per-run keys left out, so two databases with the same
    schema give the same map whoever owns them and whenever they were dumped. An object is a block
    of lines between blank lines, named by its first line (and, for ALTER, what the next one does)."""
    blocks: list[list[str]] = [[]]
    for raw in dump.splitlines():
        line = raw.rstrip()
        if not line.strip():
            blocks.append([])
        elif not _NOISE.match(line):
            blocks[-1].append(line)
    objects: dict[str, str] = {}
    for block in blocks:
        if not block:
            continue
        name = block[0].rstrip(" (;")
        if name.startswith("ALTER") and len(block) > 1:
            name += " " + " ".join(block[1].split()[:3]).rstrip(";")
        while name in objects:
            name += "'"
        objects[name] = hashlib.sha256("\n".join(block).encode()).hexdigest()
    return dict(sorted(objects.items()))


def fingerprint(objects: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(objects):
        digest.update(f"{name}\0{objects[name]}\n".encode())
    return digest.hexdigest()


# -- drift -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatabaseView:
    """One environment's database as drift sees it (what the probe read, normalised)."""

    environment: str
    host: str
    applied: tuple[tuple[str, str], ...] = ()  # (version_name, checksum)
    objects: Mapping[str, str] = field(default_factory=dict)  # the live schema, normalised
    recorded: Mapping[str, str] | None = None  # the schema as golive left it
    recorded_meta: Mapping[str, Any] = field(default_factory=dict)
    expects: tuple[str, ...] = ()  # schema versions the live releases of its application hosts run on
    error: str = ""

    @property
    def version(self) -> str | None:
        return max((a[0][:4] for a in self.applied), default=None)


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    names = sorted(set(before) | set(after))
    out = []
    for name in names:
        if name not in after:
            out.append(f"{name} (gone)")
        elif name not in before:
            out.append(f"{name} (added)")
        elif before[name] != after[name]:
            out.append(f"{name} (changed)")
    return out


def database_findings(target: DatabaseView, source: DatabaseView | None) -> list[Any]:
    """Drift of one environment's database (host scope: against what golive left and what its live
    release runs on) and against the source environment's (environment scope)."""
    from golive.core.drift import ENVIRONMENT, HOST, Finding

    found = []
    for view in (v for v in (source, target) if v is not None and not v.error):
        if view.recorded is not None:
            changed = _changed(view.recorded, view.objects)
            if changed:
                meta = view.recorded_meta
                found.append(Finding(HOST, "database", "schema", (view.host,),
                                     f"as golive left it ({meta.get('action', 'migrate')} of {meta.get('release')},"
                                     f" schema {meta.get('schema_version')})", "; ".join(changed[:8]), "high", False,
                                     f"the {view.environment} database's schema was changed outside golive: "
                                     + ", ".join(changed[:8])))
        for wanted in sorted(set(view.expects)):
            if wanted and (view.version or "") < wanted[:4]:
                found.append(Finding(HOST, "database", "schema version", (view.host,), wanted, view.version or "none",
                                     "high", False, f"the {view.environment} database is at "
                                                    f"{view.version or 'no schema'}, but its live release runs on "
                                                    f"{wanted}: its migrations were undone or never ran"))
    if source is not None and not source.error and not target.error:
        if list(source.applied) != list(target.applied):
            mine = {a[0]: a[1] for a in target.applied}
            theirs = {a[0]: a[1] for a in source.applied}
            differing = sorted(k for k in set(mine) & set(theirs) if mine[k] != theirs[k])
            only_target = ", ".join(sorted(set(mine) - set(theirs))) or "nothing more"
            only_source = ", ".join(sorted(set(theirs) - set(mine))) or "nothing more"
            reason = (f"the same migrations have other checksums: {', '.join(differing)}" if differing else
                      f"{target.environment} has applied {only_target}, {source.environment} {only_source}")
            found.append(Finding(ENVIRONMENT, "database", "migrations", (target.host,),
                                 ", ".join(a[0] for a in source.applied) or "none",
                                 ", ".join(a[0] for a in target.applied) or "none", "high" if differing else "medium",
                                 False, reason, counterparts=(source.host,)))
        elif fingerprint(source.objects) != fingerprint(target.objects):
            changed = _changed(source.objects, target.objects)
            found.append(Finding(ENVIRONMENT, "database", "schema", (target.host,), f"{source.environment}'s schema",
                                 "; ".join(changed[:8]), "high", False,
                                 f"the same migrations left different schemas: {', '.join(changed[:8])}",
                                 counterparts=(source.host,)))
    return found

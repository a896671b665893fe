"""Reads golive.yml into an AppDefinition, reporting every problem with its line."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from golive.adapters.yamlfile import YamlMap, load_yaml
from golive.core.database import (
    CONNECTION_KEYS,
    BackupPolicy,
    DatabaseSpec,
    DatabaseTimeouts,
    MigrationSpec,
)
from golive.core.errors import BadInput, Problem
from golive.core.model import (
    VAR_TYPES,
    AppDefinition,
    EnvironmentSpec,
    HealthCheck,
    Hooks,
    ReleaseStore,
    ServiceSpec,
    TemplateSpec,
    VarSpec,
)

APP_FILE = "golive.yml"
_TOP_KEYS = {
    "application", "environments", "release_store", "keep_releases", "templates", "shared",
    "service", "health", "hooks", "runtime_packages", "variables", "database",
}
_VAR_KEYS = {"type", "required", "allowed", "secret", "differs_by", "reason", "expires"}


class _Reader:
    """Collects problems instead of stopping at the first, so validate reports them all."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def at(self, mapping: Any, key: str | None = None) -> str:
        line = mapping.line_of(key) if isinstance(mapping, YamlMap) and key else getattr(mapping, "line", 0)
        return f"{self.path}:{line}" if line else self.path

    def problem(self, mapping: Any, key: str | None, message: str) -> None:
        self.problems.append(Problem(self.at(mapping, key), message))

    def section(self, data: YamlMap, key: str, allowed: set[str] | None = None) -> YamlMap:
        value = data.get(key)
        if value is None:
            empty = YamlMap()
            empty.line = data.line_of(key) if isinstance(data, YamlMap) else 0
            return empty
        if not isinstance(value, dict):
            self.problem(data, key, f"{key!r} must be a mapping")
            return self.section(YamlMap(), key)
        if allowed is not None:
            for unknown in sorted(set(value) - allowed):
                self.problem(value, unknown, f"unknown key {key}.{unknown} (known: {', '.join(sorted(allowed))})")
        return value

    def get(self, data: YamlMap, key: str, kind: type | tuple[type, ...], default: Any, name: str = "") -> Any:
        value = data.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.problem(data, key, f"{name or key} must be {_kind_name(kind)}, got a boolean")
            return default
        if not isinstance(value, kind):
            self.problem(data, key, f"{name or key} must be {_kind_name(kind)}, got {value!r}")
            return default
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false",
                        "list": "a list", "dict": "a mapping"}.get(k.__name__, k.__name__) for k in kinds)


def _mode(reader: _Reader, entry: YamlMap, default: int) -> int:
    raw = entry.get("mode", None)
    if raw is None:
        return default
    text = str(raw) if not isinstance(raw, int) else oct(raw)[2:] if raw > 0o777 else str(raw)
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        reader.problem(entry, "mode", f"mode must be an octal string like \"0640\", got {raw!r}")
        return default
    return mode


def _templates(reader: _Reader, data: YamlMap) -> tuple[TemplateSpec, ...]:
    entries = data.get("templates") or []
    if not isinstance(entries, list):
        reader.problem(data, "templates", "'templates' must be a list of {src, dest, mode, secret}")
        return ()
    specs: list[TemplateSpec] = []
    for entry in entries:
        if not isinstance(entry, dict) or "src" not in entry:
            reader.problem(data, "templates", f"each template needs at least 'src', got {entry!r}")
            continue
        for unknown in sorted(set(entry) - {"src", "dest", "mode", "secret"}):
            reader.problem(entry, unknown, f"unknown key {unknown!r} in a template entry")
        src = reader.get(entry, "src", str, "")
        dest = reader.get(entry, "dest", str, src.removesuffix(".j2"))
        if "/" in dest or dest.startswith("."):
            reader.problem(entry, "dest", f"template dest must be a plain file name, got {dest!r}")
        secret = reader.get(entry, "secret", bool, False)
        specs.append(TemplateSpec(src, dest, _mode(reader, entry, 0o600 if secret else 0o644), secret))
    dests = [s.dest for s in specs]
    for dup in sorted({d for d in dests if dests.count(d) > 1}):
        reader.problem(data, "templates", f"two templates render to the same file {dup!r}")
    return tuple(specs)


def _expires(reader: _Reader, entry: YamlMap, name: str) -> date | None:
    raw = entry.get("expires")
    if raw is None:
        return None
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        reader.problem(entry, "expires", f"variables.{name}.expires must be a date like 2027-03-31, got {raw!r}")
        return None


def _variables(reader: _Reader, data: YamlMap) -> tuple[VarSpec, ...]:
    section = reader.section(data, "variables")
    specs: list[VarSpec] = []
    for name, entry in section.items():
        if not isinstance(entry, dict):
            reader.problem(section, name, f"variables.{name} must be a mapping like {{type: str, required: true}}")
            continue
        for unknown in sorted(set(entry) - _VAR_KEYS):
            known = ", ".join(sorted(_VAR_KEYS))
            reader.problem(entry, unknown, f"unknown key variables.{name}.{unknown} (known: {known})")
        var_type = reader.get(entry, "type", str, "any", f"variables.{name}.type")
        if var_type not in VAR_TYPES:
            reader.problem(entry, "type",
                           f"variables.{name}.type must be one of {', '.join(VAR_TYPES)}, got {var_type!r}")
            var_type = "any"
        allowed = entry.get("allowed")
        if allowed is not None and not isinstance(allowed, list):
            reader.problem(entry, "allowed", f"variables.{name}.allowed must be a list")
            allowed = None
        differs_by = entry.get("differs_by")
        if differs_by not in (None, "environment", "host"):
            reader.problem(entry, "differs_by",
                           f"variables.{name}.differs_by must be 'environment' or 'host', got {differs_by!r}")
            differs_by = None
        reason = reader.get(entry, "reason", str, "", f"variables.{name}.reason")
        if differs_by and not reason.strip():
            reader.problem(entry, "differs_by", f"variables.{name} declares an expected difference without a 'reason'")
        expires = _expires(reader, entry, name)
        if expires and not differs_by:
            reader.problem(entry, "expires", f"variables.{name}.expires only applies with differs_by")
        specs.append(
            VarSpec(
                name=name,
                type=var_type,
                required=reader.get(entry, "required", bool, False, f"variables.{name}.required"),
                allowed=tuple(allowed) if allowed is not None else None,
                secret=reader.get(entry, "secret", bool, False, f"variables.{name}.secret"),
                differs_by=differs_by,
                reason=reason,
                expires=expires,
            )
        )
    return tuple(specs)


def _environments(reader: _Reader, data: YamlMap) -> tuple[EnvironmentSpec, ...]:
    raw = data.get("environments")
    if raw is None:
        return (EnvironmentSpec("staging"), EnvironmentSpec("production", "staging"))
    if isinstance(raw, list):
        raw = {str(name): {} for name in raw}
    if not isinstance(raw, dict) or not raw:
        reader.problem(data, "environments", "'environments' must map environment (group) names to settings")
        return ()
    specs = []
    for name, entry in raw.items():
        entry = entry or YamlMap()
        if not isinstance(entry, dict):
            reader.problem(raw, name, f"environments.{name} must be a mapping")
            continue
        for unknown in sorted(set(entry) - {"promote_from"}):
            reader.problem(entry, unknown, f"unknown key environments.{name}.{unknown}")
        source = entry.get("promote_from")
        if source is not None and source not in raw:
            reader.problem(entry, "promote_from",
                           f"environments.{name}.promote_from names unknown environment {source!r}")
        specs.append(EnvironmentSpec(str(name), source))
    return tuple(specs)


def _seconds(reader: _Reader, section: YamlMap, key: str, default: float, name: str) -> float:
    value = float(reader.get(section, key, (int, float), default, name))
    if value <= 0:
        reader.problem(section, key, f"{name} must be a positive number of seconds, got {value:g}")
        return default
    return value


_DATABASE_KEYS = {"server_group", "connection", "client_bin", "migrations", "timeouts", "backup", "health_key"}
_MIGRATION_KEYS = {"kind", "dir", "history_table", "online", "command", "version_command", "pre_sql", "compatible"}
_TIMEOUT_KEYS = {"connect", "lock", "migrate", "backup", "restore"}
_BACKUP_KEYS = {"dir", "keep", "min_free_mb", "jobs"}


def _database(reader: _Reader, data: YamlMap) -> DatabaseSpec | None:
    """The `database:` section (None without one: a product without a database)."""
    if data.get("database") is None:
        return None
    section = reader.section(data, "database", _DATABASE_KEYS)
    group = reader.get(section, "server_group", str, "database", "database.server_group")
    if not group.strip():
        reader.problem(section, "server_group", "database.server_group must name an inventory group")
    connection = reader.section(section, "connection", set(CONNECTION_KEYS))
    templates = []
    for key in CONNECTION_KEYS:
        value = connection.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            reader.problem(connection if key in connection else section, key if key in connection else "connection",
                           f"database.connection.{key} is required (a value or a template such as "
                           f"\"{{{{ db_{key} }}}}\")")
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            reader.problem(connection, key, f"database.connection.{key} must be a string, got {value!r}")
            continue
        templates.append((key, str(value)))
    client_bin = reader.get(section, "client_bin", str, "", "database.client_bin")
    if client_bin and not client_bin.startswith("/"):
        reader.problem(section, "client_bin", f"database.client_bin must be an absolute path, got {client_bin!r}")

    raw = reader.section(section, "migrations", _MIGRATION_KEYS)
    kind = reader.get(raw, "kind", str, "sql", "database.migrations.kind")
    if kind not in ("sql", "command"):
        reader.problem(raw, "kind", f"database.migrations.kind must be 'sql' (migrations/NNNN_name.sql in the "
                                    f"release) or 'command' (the vendor's migrate command), got {kind!r}")
        kind = "sql"
    online = reader.get(raw, "online", str, "never", "database.migrations.online")
    if online not in ("never", "expand"):
        reader.problem(raw, "online", f"database.migrations.online must be 'never' (stop every application host "
                                      f"before migrating) or 'expand' (additive migrations run while the old "
                                      f"code serves), got {online!r}")
        online = "never"
    table = reader.get(raw, "history_table", str, "golive_schema_history", "database.migrations.history_table")
    if not _plain_identifier(table):
        reader.problem(raw, "history_table", f"database.migrations.history_table must be a plain table name "
                                             f"(letters, digits, _), got {table!r}")
    directory = reader.get(raw, "dir", str, "migrations", "database.migrations.dir")
    if directory.startswith("/") or ".." in directory.split("/"):
        reader.problem(raw, "dir", f"database.migrations.dir is a directory of the release, got {directory!r}")
    command = raw.get("command")
    commands: tuple[str, ...] = ()
    if isinstance(command, str):
        commands = (command,) if command.strip() else ()
    elif isinstance(command, list) and all(isinstance(c, str) and c.strip() for c in command):
        commands = tuple(command)
    elif command is not None:
        reader.problem(raw, "command", "database.migrations.command must be a command line or a list of them "
                                       "(a chain of intermediate versions)")
    version_command = reader.get(raw, "version_command", str, "", "database.migrations.version_command")
    pre_sql = reader.get(raw, "pre_sql", str, "", "database.migrations.pre_sql")
    if kind == "command":
        if not commands:
            reader.problem(raw if "command" in raw else section, "command" if "command" in raw else "migrations",
                           "database.migrations.kind command needs 'command' (the vendor's migrate command)")
        if not version_command.strip():
            reader.problem(raw, "kind", "database.migrations.kind command needs 'version_command' (prints the "
                                        "schema version the database is at)")
    elif commands or version_command or pre_sql:
        reader.problem(raw, "command" if commands else "version_command" if version_command else "pre_sql",
                       "database.migrations: command, version_command and pre_sql belong to kind: command")
    if pre_sql and (pre_sql.startswith("/") or ".." in pre_sql.split("/")):
        reader.problem(raw, "pre_sql", f"database.migrations.pre_sql is a file of the release, got {pre_sql!r}")
    migrations = MigrationSpec(kind=kind, dir=directory.strip("/") or "migrations", history_table=table,
                               online=online, command=commands, version_command=version_command, pre_sql=pre_sql,
                               compatible=reader.get(raw, "compatible", bool, False, "database.migrations.compatible"))

    timeouts = reader.section(section, "timeouts", _TIMEOUT_KEYS)
    defaults = DatabaseTimeouts()
    limits = DatabaseTimeouts(**{key: _seconds(reader, timeouts, key, getattr(defaults, key),
                                               f"database.timeouts.{key}") for key in _TIMEOUT_KEYS})
    backup = reader.section(section, "backup", _BACKUP_KEYS)
    backup_dir = reader.get(backup, "dir", str, "", "database.backup.dir")
    if backup_dir and not backup_dir.startswith("/"):
        reader.problem(backup, "dir", f"database.backup.dir must be an absolute path on the database host, "
                                      f"got {backup_dir!r}")
    keep = reader.get(backup, "keep", int, 5, "database.backup.keep")
    if keep < 1:
        reader.problem(backup, "keep", "database.backup.keep must be at least 1")
    jobs = reader.get(backup, "jobs", int, 1, "database.backup.jobs")
    if jobs < 1:
        reader.problem(backup, "jobs", "database.backup.jobs must be at least 1")
    return DatabaseSpec(server_group=group.strip(), connection=tuple(templates), client_bin=client_bin.rstrip("/"),
                        migrations=migrations, timeouts=limits,
                        health_key=reader.get(section, "health_key", str, "schema_version", "database.health_key"),
                        backup=BackupPolicy(dir=backup_dir.rstrip("/"), keep=max(1, keep),
                                            min_free_mb=reader.get(backup, "min_free_mb", int, 0,
                                                                   "database.backup.min_free_mb"),
                                            jobs=max(1, jobs)))


def _plain_identifier(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_" for c in name) \
        and name.isascii() and len(name) <= 63


def load_app_definition(workspace: Path) -> AppDefinition:
    path = workspace / APP_FILE
    if not path.exists():
        raise BadInput(f"{path}: no application definition here (is --workspace right?)")
    data = load_yaml(path, APP_FILE)
    if not isinstance(data, YamlMap):
        raise BadInput(f"{APP_FILE}: must be a mapping of settings")
    reader = _Reader(APP_FILE)
    for unknown in sorted(set(data) - _TOP_KEYS):
        reader.problem(data, unknown, f"unknown setting {unknown!r} (known: {', '.join(sorted(_TOP_KEYS))})")

    application = reader.section(data, "application", {"name", "root", "config_dir"})
    name = reader.get(application, "name", str, "", "application.name")
    root = reader.get(application, "root", str, "", "application.root")
    config_dir = reader.get(application, "config_dir", str, "", "application.config_dir")
    for key, value in (("name", name), ("root", root), ("config_dir", config_dir)):
        if not value:
            reader.problem(application, key, f"application.{key} is required")
    for key, value in (("root", root), ("config_dir", config_dir)):
        if value and not value.startswith("/"):
            reader.problem(application, key, f"application.{key} must be an absolute path, got {value!r}")

    store = reader.section(data, "release_store", {"path", "artifact", "max_members", "max_unpacked_mb"})
    service = reader.section(data, "service", {"start", "stop", "restart", "status", "systemd_unit"})
    health = reader.section(data, "health", {"url", "command", "timeout", "retries", "interval"})
    hooks = reader.section(data, "hooks", {"before_cutover", "after_cutover", "on_rollback", "timeout"})
    shared = reader.get(data, "shared", list, [])
    packages = reader.get(data, "runtime_packages", list, [])

    app = AppDefinition(
        name=name,
        root=root.rstrip("/"),
        config_dir=config_dir.rstrip("/"),
        environments=_environments(reader, data),
        templates=_templates(reader, data),
        shared=tuple(str(s) for s in shared),
        service=ServiceSpec(**{k: reader.get(service, k, str, "", f"service.{k}") for k in
                               ("start", "stop", "restart", "status", "systemd_unit")}),
        health=HealthCheck(
            url=reader.get(health, "url", str, "", "health.url"),
            command=reader.get(health, "command", str, "", "health.command"),
            timeout=float(reader.get(health, "timeout", (int, float), 2.0, "health.timeout")),
            retries=reader.get(health, "retries", int, 25, "health.retries"),
            interval=float(reader.get(health, "interval", (int, float), 0.2, "health.interval")),
        ),
        hooks=Hooks(**{k: reader.get(hooks, k, str, "", f"hooks.{k}") for k in
                       ("before_cutover", "after_cutover", "on_rollback")},
                    timeout=_seconds(reader, hooks, "timeout", 600.0, "hooks.timeout")),
        store=ReleaseStore(
            path=reader.get(store, "path", str, "build/releases", "release_store.path"),
            artifact=reader.get(store, "artifact", str, "{app}-{version}.tar.gz", "release_store.artifact"),
            max_members=reader.get(store, "max_members", int, 20000, "release_store.max_members"),
            max_unpacked_bytes=reader.get(store, "max_unpacked_mb", int, 1024, "release_store.max_unpacked_mb")
            * 1024 * 1024,
        ),
        keep_releases=reader.get(data, "keep_releases", int, 5),
        runtime_packages=tuple(str(p) for p in packages),
        variables=_variables(reader, data),
        source=APP_FILE,
        database=_database(reader, data),
    )
    if "{version}" not in app.store.artifact:
        reader.problem(store, "artifact", "release_store.artifact must contain {version}")
    if app.keep_releases < 2:
        reader.problem(data, "keep_releases", "keep_releases must be at least 2 (current and a rollback target)")
    for shared_dir in app.shared:
        if "/" in shared_dir or shared_dir in ("", ".", "..", "config", ".golive"):
            reader.problem(data, "shared", f"shared entry {shared_dir!r} must be a plain directory name")
    if not (app.service.systemd_unit or app.service.restart or (app.service.start and app.service.stop)):
        reader.problem(data, "service", "service needs 'systemd_unit', 'restart' or both 'start' and 'stop'")
    if not (app.health.url or app.health.command):
        reader.problem(data, "health", "health needs a 'url' or a 'command'")
    if reader.problems:
        raise BadInput(reader.problems)
    return app

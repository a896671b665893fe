"""Reads golive.yml into an AppDefinition, reporting every problem with its line."""

from __future__ import annotations

import os
import re
import string
from datetime import date
from pathlib import Path
from typing import Any

from golive.adapters.provisiondef import read_provision
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
    GOLIVE_VARIABLES,
    HEALTH_FIELDS,
    VAR_TYPES,
    AnsibleContent,
    AppDefinition,
    EnvironmentSpec,
    HealthCheck,
    Hooks,
    ReleaseStore,
    ServiceSpec,
    TemplateSpec,
    Timeouts,
    VarSpec,
    name_problem,
)

APP_FILE = "golive.yml"
_TOP_KEYS = {
    "application", "environments", "release_store", "keep_releases", "templates", "shared",
    "service", "health", "hooks", "runtime_packages", "variables", "drift", "timeouts", "ansible", "connection",
    "database", "provision",
}
_TIMEOUT_KEYS = ("hook", "restart", "status", "begin", "install", "activate")
_VAR_KEYS = {"type", "required", "allowed", "secret", "differs_by", "reason", "expires"}
# The command fields: each is run by /bin/sh on the host after rendering with the host's variables.
COMMAND_FIELDS = (("service", ("start", "stop", "restart", "status", "systemd_unit")),
                  ("health", ("command",)),
                  ("hooks", ("before_cutover", "after_cutover", "on_rollback")))
# The template names whose values golive itself validates (adapters/render.py golive_context): plain
# names and paths that are safe in a shell command unquoted. Anything else must end in `| quote`.
VALIDATED_CONTEXT = frozenset({"golive_app_root", "golive_config_dir", "golive_release", "golive_customer",
                               "golive_environment", "golive_host"})
# application.root and config_dir are shell-safe paths, so commands may use them unquoted.
SAFE_PATH = re.compile(r"(/[A-Za-z0-9_][A-Za-z0-9._+-]*)+/?")
ARTIFACT_FIELDS = ("app", "version")
ARTIFACT_FORMATS = {".tar.gz": "gzip", ".tgz": "gzip", ".tar": "tar"}


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
        if src and any(name_problem(part, "template src") for part in src.split("/")):
            reader.problem(entry, "src", f"template src {src!r} must be a file name under config_templates/<app>/ "
                                         f"(folders allowed): letters, digits and . _ - in each part, no '..', "
                                         f"not absolute")
        dest = reader.get(entry, "dest", str, src.removesuffix(".j2"))
        problem = name_problem(dest, "template dest")
        if problem:
            reader.problem(entry, "dest" if "dest" in entry else "src", problem)
        secret = reader.get(entry, "secret", bool, False)
        specs.append(TemplateSpec(src, dest, _mode(reader, entry, 0o600 if secret else 0o644), secret))
    dests = [s.dest for s in specs]
    for dup in sorted({d for d in dests if dests.count(d) > 1}):
        reader.problem(data, "templates", f"two templates render to the same file {dup!r}")
    return tuple(specs)


def _drift_ignore(reader: _Reader, data: YamlMap) -> tuple[str, ...]:
    """drift.ignore: paths in the release directory that drift, deploys and checks leave alone (files a
    product generates where it runs, like Python's __pycache__). Globs of "/"-separated segments:
    `*` and `?` within a segment, `**` (a whole segment) for any number of segments; a directory
    that matches is ignored with everything in it."""
    section = reader.section(data, "drift", {"ignore"})
    raw = section.get("ignore")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        reader.problem(section, "ignore", "drift.ignore must be a list of path patterns like \"**/__pycache__/**\"")
        return ()
    patterns = []
    for index, pattern in enumerate(raw):
        why = _bad_pattern(pattern)
        if why:
            reader.problem(section, "ignore", f"drift.ignore[{index}] {pattern!r}: {why}")
        else:
            patterns.append(pattern)
    return tuple(patterns)


def _bad_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        return "must be a non-empty string"
    if pattern.startswith("/"):
        return "must be relative to the release directory (no leading /)"
    for character in "[]\\\0":
        if character in pattern:
            return f"{character!r} is not supported (only *, ? and ** segments)"
    segments = pattern.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return "has an empty, '.' or '..' segment"
    if any("**" in s and s != "**" for s in segments):
        return "'**' must be a whole segment (like **/__pycache__/**)"
    if all(s in ("**", "*") for s in segments):
        return "would ignore every file of the release"
    return ""


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
                where=reader.at(section, name),
            )
        )
    return tuple(specs) + _golive_variables(reader, section, specs)


def _golive_variables(reader: _Reader, section: YamlMap, declared: list[VarSpec]) -> tuple[VarSpec, ...]:
    """The inventory variables golive itself reads (GOLIVE_VARIABLES) are part of every schema: a
    declaration in golive.yml must keep golive's type; undeclared, each is optional."""
    added = []
    for builtin in GOLIVE_VARIABLES:
        mine = next((v for v in declared if v.name == builtin.name), None)
        if mine is None:
            added.append(builtin)
        elif mine.type not in (builtin.type, "any") and isinstance(section.get(builtin.name), dict):
            reader.problem(section[builtin.name], "type",
                           f"variables.{builtin.name}.type must be {builtin.type}: golive itself reads this "
                           f"variable (docs/inventory.md), got {mine.type!r}")
    return tuple(added)


def _health(reader: _Reader, health: YamlMap) -> HealthCheck:
    raw_expect = health.get("expect")
    expect: tuple[str, ...] = ()
    if raw_expect is not None:
        if isinstance(raw_expect, str):
            raw_expect = [raw_expect]
        if not isinstance(raw_expect, list) or not all(isinstance(e, str) for e in raw_expect):
            reader.problem(health, "expect", f"health.expect must be a list of {', '.join(HEALTH_FIELDS)}, "
                                             f"got {raw_expect!r}")
        else:
            for unknown in [e for e in raw_expect if e not in HEALTH_FIELDS]:
                reader.problem(health, "expect", f"health.expect: {unknown!r} is not something golive can compare "
                                                 f"(known: {', '.join(HEALTH_FIELDS)})")
            expect = tuple(dict.fromkeys(e for e in raw_expect if e in HEALTH_FIELDS))
    check = HealthCheck(
        url=reader.get(health, "url", str, "", "health.url"),
        command=reader.get(health, "command", str, "", "health.command"),
        expect=expect,
        timeout=float(reader.get(health, "timeout", (int, float), 2.0, "health.timeout")),
        retries=reader.get(health, "retries", int, 25, "health.retries"),
        interval=float(reader.get(health, "interval", (int, float), 0.2, "health.interval")),
    )
    for key, value, least in (("timeout", check.timeout, 0.001), ("retries", check.retries, 1),
                              ("interval", check.interval, 0)):
        if value < least:
            reader.problem(health, key, f"health.{key} must be at least {least}, got {value!r}")
    return check


def _timeouts(reader: _Reader, data: YamlMap) -> Timeouts:
    section = reader.section(data, "timeouts", set(_TIMEOUT_KEYS))
    defaults = Timeouts()
    values = {}
    for key in _TIMEOUT_KEYS:
        value = reader.get(section, key, (int, float), getattr(defaults, key), f"timeouts.{key}")
        if value <= 0:
            reader.problem(section, key, f"timeouts.{key} must be a number of seconds above 0, got {value!r}")
            value = getattr(defaults, key)
        values[key] = float(value)
    return Timeouts(**values)


def _ansible(reader: _Reader, data: YamlMap, workspace: Path) -> AnsibleContent:
    section = reader.section(data, "ansible", {"playbooks", "roles"})
    found = {}
    for key, needs in (("playbooks", ("deploy.yml", "rollback.yml")), ("roles", ())):
        value = reader.get(section, key, str, "", f"ansible.{key}").strip()
        if value:
            folder = workspace / value
            if value.startswith("/") or ".." in Path(value).parts:
                reader.problem(section, key, f"ansible.{key} must be a folder of the workspace, got {value!r}")
            elif not folder.is_dir():
                reader.problem(section, key, f"ansible.{key}: {value}/ is not a folder of the workspace")
            else:
                for name in needs:
                    if not (folder / name).is_file():
                        reader.problem(section, key, f"ansible.{key}: {value}/{name} is missing")
        found[key] = value
    return AnsibleContent(**found)


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
        problem = name_problem(name, "environment")
        if problem:
            reader.problem(raw, name, problem)
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
_DATABASE_TIMEOUT_KEYS = {"connect", "lock", "migrate", "backup", "restore"}
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

    timeouts = reader.section(section, "timeouts", _DATABASE_TIMEOUT_KEYS)
    defaults = DatabaseTimeouts()
    limits = DatabaseTimeouts(**{key: _seconds(reader, timeouts, key, getattr(defaults, key),
                                               f"database.timeouts.{key}") for key in _DATABASE_TIMEOUT_KEYS})
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

    application = reader.section(data, "application", {"name", "root", "config_dir", "display_name"})
    name = reader.get(application, "name", str, "", "application.name")
    root = reader.get(application, "root", str, "", "application.root")
    config_dir = reader.get(application, "config_dir", str, "", "application.config_dir")
    display_name = reader.get(application, "display_name", str, "", "application.display_name").strip()
    for key, value in (("name", name), ("root", root), ("config_dir", config_dir)):
        if not value:
            reader.problem(application, key, f"application.{key} is required")
    for key, value in (("root", root), ("config_dir", config_dir)):
        if value and not value.startswith("/"):
            reader.problem(application, key, f"application.{key} must be an absolute path, got {value!r}")
        elif value and (not SAFE_PATH.fullmatch(value) or "/./" in value + "/" or "/../" in value + "/"):
            reader.problem(application, key, f"application.{key} {value!r} must be a plain absolute path: letters, "
                                             f"digits and . _ + - between slashes, no '.' or '..' component")
    if name and name_problem(name, "application"):
        reader.problem(application, "name", name_problem(name, "application") or "")

    store = reader.section(data, "release_store", {"path", "artifact", "max_members", "max_unpacked_mb", "url",
                                                   "sha256_url", "credentials", "token_header", "ca_bundle",
                                                   "timeout", "s3"})
    s3 = reader.section(store, "s3", {"endpoint", "bucket", "key", "region"})
    service = reader.section(data, "service", {"start", "stop", "restart", "status", "systemd_unit"})
    health = reader.section(data, "health", {"url", "command", "expect", "timeout", "retries", "interval"})
    hooks = reader.section(data, "hooks", {"before_cutover", "after_cutover", "on_rollback"})
    connection = reader.section(data, "connection", {"ssh_config"})
    shared = reader.get(data, "shared", list, [])
    packages = reader.get(data, "runtime_packages", list, [])

    app = AppDefinition(
        name=name,
        display_name=display_name,
        root=root.rstrip("/"),
        config_dir=config_dir.rstrip("/"),
        environments=_environments(reader, data),
        templates=_templates(reader, data),
        shared=tuple(str(s) for s in shared),
        service=ServiceSpec(**{k: reader.get(service, k, str, "", f"service.{k}") for k in
                               ("start", "stop", "restart", "status", "systemd_unit")}),
        health=_health(reader, health),
        hooks=Hooks(**{k: reader.get(hooks, k, str, "", f"hooks.{k}") for k in
                       ("before_cutover", "after_cutover", "on_rollback")}),
        store=ReleaseStore(
            path=reader.get(store, "path", str, "build/releases", "release_store.path"),
            artifact=reader.get(store, "artifact", str, "{app}-{version}.tar.gz", "release_store.artifact"),
            max_members=reader.get(store, "max_members", int, 20000, "release_store.max_members"),
            max_unpacked_bytes=reader.get(store, "max_unpacked_mb", int, 1024, "release_store.max_unpacked_mb")
            * 1024 * 1024,
            url=reader.get(store, "url", str, "", "release_store.url"),
            sha256_url=reader.get(store, "sha256_url", str, "", "release_store.sha256_url"),
            credentials=reader.get(store, "credentials", str, "", "release_store.credentials"),
            token_header=reader.get(store, "token_header", str, "Authorization", "release_store.token_header"),
            ca_bundle=reader.get(store, "ca_bundle", str, "", "release_store.ca_bundle"),
            timeout=float(reader.get(store, "timeout", (int, float), 60, "release_store.timeout")),
            s3_endpoint=reader.get(s3, "endpoint", str, "", "release_store.s3.endpoint"),
            s3_bucket=reader.get(s3, "bucket", str, "", "release_store.s3.bucket"),
            s3_key=reader.get(s3, "key", str, "{app}/{version}/{artifact}", "release_store.s3.key"),
            s3_region=reader.get(s3, "region", str, "us-east-1", "release_store.s3.region"),
        ),
        keep_releases=reader.get(data, "keep_releases", int, 5),
        runtime_packages=tuple(str(p) for p in packages),
        variables=_variables(reader, data),
        timeouts=_timeouts(reader, data),
        ansible=_ansible(reader, data, workspace),
        source=APP_FILE,
        drift_ignore=_drift_ignore(reader, data),
        ssh_config=reader.get(connection, "ssh_config", str, "", "connection.ssh_config"),
        database=_database(reader, data),
        provision=read_provision(reader, data, workspace, name),
    )
    if app.ssh_config and not (workspace / os.path.expanduser(app.ssh_config)).is_file():
        reader.problem(connection, "ssh_config", f"connection.ssh_config: {app.ssh_config} is not a file (a path "
                                                 f"relative to the workspace, or absolute)")
    for problem in artifact_pattern_problems(app.store.artifact):
        reader.problem(store, "artifact", problem)
    for key, problem in remote_store_problems(app.store, workspace):
        reader.problem(s3 if key.startswith("s3.") else store, key.removeprefix("s3."), problem)
    if app.keep_releases < 2:
        reader.problem(data, "keep_releases", "keep_releases must be at least 2 (current and a rollback target)")
    for shared_dir in app.shared:
        problem = name_problem(shared_dir, "shared directory")
        if problem or shared_dir == "config":
            reader.problem(data, "shared", problem or "shared directory 'config' is reserved for the rendered config")
    for section_name, keys in COMMAND_FIELDS:
        section = {"service": service, "health": health, "hooks": hooks}[section_name]
        for key in keys:
            text = section.get(key)
            if isinstance(text, str):
                for problem in command_problems(text, f"{section_name}.{key}"):
                    reader.problem(section, key, problem)
    if not (app.service.systemd_unit or app.service.restart or (app.service.start and app.service.stop)):
        if "service" in data:
            reader.problem(data, "service", "service needs 'systemd_unit', 'restart' or both 'start' and 'stop'")
        else:
            reader.problem(None, None, "no 'service:' section: add service: {systemd_unit: NAME} or the "
                                       "restart (or start and stop) commands")
    if not (app.health.url or app.health.command):
        if "health" in data:
            reader.problem(data, "health", "health needs a 'url' or a 'command'")
        else:
            reader.problem(None, None, "no 'health:' section: golive verifies every deploy with it; add "
                                       "health: {url: ...} or health: {command: ...}")
    if reader.problems:
        raise BadInput(reader.problems)
    return app


REMOTE_FIELDS = ("{app}", "{version}", "{artifact}")


def remote_store_problems(store: ReleaseStore, workspace: Path) -> list[tuple[str, str]]:
    """Why the remote store settings cannot name an artifact, as (key, message)."""
    problems = []
    if store.url and store.s3_bucket:
        problems.append(("url", "release_store: set either url (an HTTP(S) repository) or s3, not both"))
    for key, value in (("url", store.url), ("sha256_url", store.sha256_url)):
        if not value:
            continue
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in ("http", "https") and not (key == "sha256_url" and value.startswith("{url}")):
            problems.append((key, f"release_store.{key} must be an http:// or https:// URL, got {value!r}"))
        allowed = set(REMOTE_FIELDS) | ({"{url}"} if key == "sha256_url" else set())
        unknown = set(re.findall(r"\{[^}]*\}", value)) - allowed
        if unknown:
            problems.append((key, f"release_store.{key}: unknown field {', '.join(sorted(unknown))} (the fields are "
                                  f"{', '.join(REMOTE_FIELDS)})"))
        if key == "url" and not ({"{version}", "{artifact}"} & set(re.findall(r"\{[^}]*\}", value))):
            problems.append((key, "release_store.url must contain {version} or {artifact}: one URL per release"))
        if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
            problems.append((key, f"release_store.{key}: no credentials in the URL (put them in the vault-encrypted "
                                  f"release_store.credentials file)"))
    if store.s3_bucket or store.s3_endpoint:
        if not (store.s3_bucket and store.s3_endpoint):
            problems.append(("s3.bucket" if not store.s3_bucket else "s3.endpoint",
                             "release_store.s3 needs both endpoint (e.g. https://s3.eu-central-1.amazonaws.com) "
                             "and bucket"))
        elif not store.s3_endpoint.lower().startswith(("http://", "https://")):
            problems.append(("s3.endpoint", f"release_store.s3.endpoint must be an http(s):// URL, got "
                                            f"{store.s3_endpoint!r}"))
    for key, value in (("credentials", store.credentials), ("ca_bundle", store.ca_bundle)):
        if value and not (workspace / os.path.expanduser(value)).is_file():
            problems.append((key, f"release_store.{key}: {value} is not a file (a path relative to the workspace, "
                                  f"or absolute)"))
    if store.timeout <= 0:
        problems.append(("timeout", "release_store.timeout must be a positive number of seconds"))
    return problems


def artifact_pattern_problems(pattern: str) -> list[str]:
    """Why release_store.artifact cannot name artifacts: only {app} and {version}, {version} required,
    a plain file name ending in a format golive checks (.tar.gz, .tgz, .tar)."""
    try:
        fields = [(field, conversion, spec) for _, field, spec, conversion in string.Formatter().parse(pattern)
                  if field is not None]
    except ValueError as error:
        return [f"release_store.artifact {pattern!r} is not a valid pattern ({error}); write a literal brace as "
                f"{{{{ or }}}}, fields are {{app}} and {{version}}"]
    problems = []
    for field, conversion, spec in fields:
        if field not in ARTIFACT_FIELDS or conversion or spec:
            problems.append(f"release_store.artifact {pattern!r}: unknown field {{{field}}}; the fields are "
                            f"{{app}} and {{version}}")
    if problems:
        return problems
    if "version" not in {f for f, _, _ in fields}:
        return ["release_store.artifact must contain {version}"]
    sample = pattern.format(app="app", version="1.0")
    if "/" in sample or sample.startswith((".", "-")) or not re.fullmatch(r"[A-Za-z0-9._+-]+", sample):
        return [f"release_store.artifact {pattern!r} must make a plain file name in the store (letters, digits and "
                f". _ + -, no '/' and no subfolder)"]
    if not sample.endswith(tuple(ARTIFACT_FORMATS)):
        return [f"release_store.artifact {pattern!r} must end in {', '.join(ARTIFACT_FORMATS)}: the extension is "
                f"the format golive checks the artifact against"]
    return []


def command_problems(text: str, field: str) -> list[str]:
    """Why a command field could run what an inventory value says: every `{{ ... }}` must end in
    `| quote` unless it reads only golive's own validated names (VALIDATED_CONTEXT); those names may
    not be assigned in the command (`{% set golive_host = ... %}`)."""
    if not any(marker in text for marker in ("{{", "{%", "{#")):
        return []
    import jinja2
    from jinja2 import nodes

    env = jinja2.Environment()
    try:
        tree = env.parse(text)
    except jinja2.TemplateSyntaxError as error:
        return [f"{field}: template syntax error: {error.message}"]
    sources = _expression_sources(env, text)
    problems = []
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" and name.name in VALIDATED_CONTEXT:
            problems.append(f"{field}: {name.name} is golive's own name and cannot be assigned in a command")
    outputs = [expr for output in tree.find_all(nodes.Output) for expr in output.nodes
               if not isinstance(expr, nodes.TemplateData)]
    for index, expr in enumerate(outputs):
        if isinstance(expr, nodes.Filter) and expr.name == "quote":
            continue
        names = {n.name for n in expr.find_all(nodes.Name)}
        if isinstance(expr, nodes.Name):
            names.add(expr.name)
        if names <= VALIDATED_CONTEXT:
            continue
        source = sources[index] if index < len(sources) else "{{ ... }}"
        inner = source[2:-2].strip()
        if not re.fullmatch(r"[\w.\[\]'\"]+(\s*\|\s*\w+(\([^()]*\))?)*", inner):
            inner = f"({inner})"  # a filter binds tighter than ~, + or if
        problems.append(f"{field}: {source} puts a value into a shell command unquoted (a value with $(...), ; or "
                        f"a quote would run on the host); write {{{{ {inner} | quote }}}}, or use the "
                        f"GOLIVE_* environment variables instead")
    return problems


def _expression_sources(env: Any, text: str) -> list[str]:
    """The source text of each `{{ ... }}` in order (for messages)."""
    found: list[str] = []
    current: list[str] | None = None
    for _, kind, value in env.lex(text):
        if kind == "variable_begin":
            current = [value]
        elif current is not None:
            current.append(value)
            if kind == "variable_end":
                found.append("".join(current))
                current = None
    return found

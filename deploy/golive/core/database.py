"""The client's database as golive.yml declares it, and the values golive derives from it.

`database:` in golive.yml says where the environment's database server is (the host of an
inventory group in each environment, which runs pg_dump, pg_restore and psql against it), how to
connect (templates rendered with that host's variables: the password comes from the vault), which
kind of migrations the releases carry (SQL files, or the vendor's own migrate command), the
timeouts and where backups are kept. golive/flows/database.py does the steps; core/migrations.py
holds the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MigrationsKind = Literal["sql", "command"]
OnlinePolicy = Literal["never", "expand"]  # expand: additive migrations run while the old code serves
CONNECTION_KEYS = ("host", "port", "name", "user", "password")
DEFAULT_HISTORY_TABLE = "golive_schema_history"


@dataclass(frozen=True)
class MigrationSpec:
    kind: MigrationsKind = "sql"
    dir: str = "migrations"  # in the release
    history_table: str = DEFAULT_HISTORY_TABLE
    online: OnlinePolicy = "never"
    # kind: command. Run on the environment's first application host, in the new release directory;
    # several commands are a chain (intermediate versions), run in order.
    command: tuple[str, ...] = ()
    version_command: str = ""  # prints the schema version the database is at
    pre_sql: str = ""  # a file of the release, run with psql on the database host before the command
    compatible: bool = False  # the previous release's code runs on what the command leaves


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Seconds. `lock` is PostgreSQL's lock_timeout: a migration waiting behind a long query fails fast."""

    connect: float = 10.0
    lock: float = 5.0
    migrate: float = 600.0
    backup: float = 3600.0
    restore: float = 3600.0


@dataclass(frozen=True)
class BackupPolicy:
    dir: str = ""  # on the database host; empty: <application root>/.golive/backups
    keep: int = 5  # newest kept; never the backup a rollback target needs
    min_free_mb: int = 0  # free space left after a backup of the database's size
    jobs: int = 1  # pg_restore --jobs


@dataclass(frozen=True)
class DatabaseSpec:
    server_group: str = "database"
    connection: tuple[tuple[str, str], ...] = ()  # (key, template) for CONNECTION_KEYS
    client_bin: str = ""  # where pg_dump, pg_restore and psql are on the database host
    migrations: MigrationSpec = MigrationSpec()
    timeouts: DatabaseTimeouts = DatabaseTimeouts()
    backup: BackupPolicy = BackupPolicy()
    # The /health field that reports the schema version; every verification expects it to be the
    # one the database is at. Empty: the product's health answer does not report it.
    health_key: str = "schema_version"

    def template(self, key: str) -> str:
        return dict(self.connection).get(key, "")


@dataclass(frozen=True)
class DatabaseConnection:
    """The rendered connection of one environment's database (the password is a secret)."""

    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.name}"

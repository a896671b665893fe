"""Configuration: every file in the config directory, its hash, and the parsed northwind.ini."""

from __future__ import annotations

import configparser
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG_DIR = "/etc/northwind"
REQUIRED = {"server": ("listen_address", "port"), "company": ("name", "timezone", "locale")}


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class DatabaseConfig:
    """[database]: where the work orders live. The password comes from the secret file it names."""

    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)
    schema_table: str = "golive_schema_history"


@dataclass(frozen=True)
class Config:
    directory: str
    hash: str
    listen_address: str
    port: int
    company: dict[str, str]
    ini: configparser.ConfigParser
    database: DatabaseConfig | None = None


def read_config_files(directory: str) -> dict[str, bytes]:
    """Every file under directory by relative name, following symlinks.

    golive links each rendered file into the config directory; a dangling link names a file the
    live release does not render, so it is not part of the configuration.
    """
    files = {}
    for folder, _, names in os.walk(directory, followlinks=True):
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                files[path.relative_to(directory).as_posix()] = path.read_bytes()
    return files


def config_hash(files: dict[str, bytes]) -> str:
    """sha256 over "<name>\\0<sha256 hex of content>\\n" for each file sorted by name (as golive does)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


def load(directory: str) -> Config:
    if not os.path.isdir(directory):
        raise ConfigError(f"config directory {directory} does not exist")
    files = read_config_files(directory)
    if "northwind.ini" not in files:
        raise ConfigError(f"{directory}/northwind.ini is missing")
    ini = configparser.ConfigParser(interpolation=None)
    try:
        ini.read_string(files["northwind.ini"].decode(), source=f"{directory}/northwind.ini")
    except (configparser.Error, UnicodeDecodeError) as error:
        raise ConfigError(f"{directory}/northwind.ini: {error}") from None
    for section, keys in REQUIRED.items():
        for key in keys:
            if not ini.get(section, key, fallback="").strip():
                raise ConfigError(f"{directory}/northwind.ini: [{section}] {key} is required")
    try:
        port = ini.getint("server", "port")
    except ValueError:
        raise ConfigError(f"{directory}/northwind.ini: [server] port must be a number") from None
    return Config(
        directory=directory,
        hash=config_hash(files),
        listen_address=ini.get("server", "listen_address").strip(),
        port=port,
        company=dict(ini.items("company")),
        ini=ini,
        database=database_config(directory, ini, files),
    )


def database_config(directory: str, ini: configparser.ConfigParser, files: dict[str, bytes]) -> DatabaseConfig | None:
    """The [database] section, or None when it names no host (the service then runs without one)."""
    host = ini.get("database", "host", fallback="").strip()
    if not host:
        return None
    secrets_name = ini.get("database", "password_file", fallback="secrets.env").strip()
    password = ""
    for line in files.get(secrets_name, b"").decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "NORTHWIND_DB_PASSWORD":
            password = value.strip()
    try:
        port = ini.getint("database", "port", fallback=5432)
    except ValueError:
        raise ConfigError(f"{directory}/northwind.ini: [database] port must be a number") from None
    return DatabaseConfig(host=host, port=port, name=ini.get("database", "name", fallback="northwind").strip(),
                          user=ini.get("database", "user", fallback="northwind").strip(), password=password,
                          schema_table=ini.get("database", "schema_table", fallback="golive_schema_history").strip())

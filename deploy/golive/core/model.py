"""Workspace -> application definition -> customers -> environments -> hosts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

from golive.core.database import DatabaseSpec

VAR_TYPES = ("str", "int", "float", "bool", "list", "dict", "any")


@dataclass(frozen=True)
class TemplateSpec:
    src: str  # file name under config_templates/<app>/ (or the customer override directory)
    dest: str  # file name under releases/<id>/config/ and the config dir
    mode: int = 0o644
    secret: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    start: str = ""
    stop: str = ""
    restart: str = ""
    status: str = ""
    systemd_unit: str = ""


@dataclass(frozen=True)
class HealthCheck:
    url: str = ""
    command: str = ""
    timeout: float = 2.0
    retries: int = 25
    interval: float = 0.2


@dataclass(frozen=True)
class Hooks:
    before_cutover: str = ""
    after_cutover: str = ""
    on_rollback: str = ""
    timeout: float = 600.0  # seconds each hook may run


@dataclass(frozen=True)
class ReleaseStore:
    path: str = "build/releases"
    artifact: str = "{app}-{version}.tar.gz"
    max_members: int = 20000
    max_unpacked_bytes: int = 1024 * 1024 * 1024

    def artifact_name(self, app: str, version: str) -> str:
        return self.artifact.format(app=app, version=version)


@dataclass(frozen=True)
class VarSpec:
    """One entry of the variable schema."""

    name: str
    type: str = "any"
    required: bool = False
    allowed: tuple[Any, ...] | None = None
    secret: bool = False
    differs_by: str | None = None  # "environment" or "host": an expected difference
    reason: str = ""
    expires: date | None = None


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    promote_from: str | None = None


@dataclass(frozen=True)
class AppDefinition:
    name: str
    root: str
    config_dir: str
    environments: tuple[EnvironmentSpec, ...]
    templates: tuple[TemplateSpec, ...]
    shared: tuple[str, ...] = ()
    service: ServiceSpec = ServiceSpec()
    health: HealthCheck = HealthCheck()
    hooks: Hooks = Hooks()
    store: ReleaseStore = ReleaseStore()
    keep_releases: int = 5
    runtime_packages: tuple[str, ...] = ()
    variables: tuple[VarSpec, ...] = ()
    source: str = "golive.yml"
    database: DatabaseSpec | None = None  # None: a product without a database

    def environment(self, name: str) -> EnvironmentSpec | None:
        return next((e for e in self.environments if e.name == name), None)

    def var(self, name: str) -> VarSpec | None:
        return next((v for v in self.variables if v.name == name), None)

    @property
    def secret_var_names(self) -> frozenset[str]:
        return frozenset(v.name for v in self.variables if v.secret)


@dataclass(frozen=True)
class Connection:
    """How to reach a host, mapped from Ansible's connection variables."""

    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts_file: str | None = None
    python: str = "python3"


def freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Host:
    name: str
    customer: str
    environment: str
    groups: tuple[str, ...]
    vars: Mapping[str, Any]  # merged inventory variables, secrets decrypted (never print raw)
    connection: Connection
    secret_values: frozenset[str] = frozenset()  # every decrypted secret string of this host
    # where inline `!vault` values are (`name`, `name.key`, `name[0]`): Ansible never templates them
    vault_paths: frozenset[str] = frozenset()
    var_origins: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def where(self, var: str) -> str:
        """Where a variable was set (file:line), or the host when unknown."""
        return self.var_origins.get(var) or f"host {self.name}, variable {var!r}"


@dataclass(frozen=True)
class Environment:
    name: str
    customer: str
    hosts: tuple[Host, ...]

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)


@dataclass(frozen=True)
class Customer:
    name: str
    inventory_dir: str
    environments: tuple[Environment, ...]

    def environment(self, name: str) -> Environment | None:
        return next((e for e in self.environments if e.name == name), None)

    @property
    def hosts(self) -> tuple[Host, ...]:
        return tuple(h for e in self.environments for h in e.hosts)

    @property
    def secret_values(self) -> frozenset[str]:
        return frozenset().union(*(h.secret_values for h in self.hosts)) if self.hosts else frozenset()

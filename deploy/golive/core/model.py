"""Workspace -> application definition -> customers -> environments -> hosts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, Literal

from golive.core.database import DatabaseSpec
from golive.core.provision import Provision

VAR_TYPES = ("str", "int", "float", "bool", "list", "dict", "any")

# Every name that becomes a path component on the controller or a host (customer, environment, host,
# template dest, shared directory, check file): letters, digits and . _ -, not starting with . or -,
# so it can never be `..`, absolute, hidden, an option, or carry a separator, NUL or newline. Such
# a name is also safe unquoted in a shell command, which lets commands use golive_host & co.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def name_problem(value: object, what: str) -> str | None:
    """Why `value` cannot be a `what` (customer, host, ...) name, or None when it can."""
    if isinstance(value, str) and NAME_PATTERN.fullmatch(value):
        return None
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:60] + f"... ({len(str(value))} characters)"
    return (f"{what} name {shown} is not allowed: use letters, digits and . _ - (at most 128, not starting "
            f"with . or -); it names files and directories")


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


# What a health answer can be asked to report (golive.yml `health.expect`), and the release's own
# value each is compared with: its version, its rendered config's hash, its release id.
HEALTH_FIELDS = ("version", "config_hash", "release")


@dataclass(frozen=True)
class HealthCheck:
    """How golive asks a host whether the release it just made live works (docs/health.md): a GET
    of `url` answering HTTP 2xx, or `command` exiting 0; and, for each name in `expect`, the answer
    (a JSON object) reporting the release's own value."""

    url: str = ""
    command: str = ""
    expect: tuple[str, ...] = ()
    timeout: float = 2.0  # seconds per attempt
    retries: int = 25
    interval: float = 0.2


@dataclass(frozen=True)
class Timeouts:
    """How long golive waits, in seconds (golive.yml `timeouts:`), for each engine alike.

    On the host: `hook` (each hook command), `restart` (the service's restart, or stop then start),
    `status` (the service's status command). The controller's wait for one round trip of the host
    agent: `begin` (lock and read the host; also plan, status, history, unlock, drift's collector,
    the record of a check), `install` (upload, unpack, configure), `activate` (hooks, cutover,
    restart, verify, record; a rollback's whole round trip). The health check's own timeout, per
    attempt, is `health.timeout`."""

    hook: float = 600
    restart: float = 120
    status: float = 10
    begin: float = 120
    install: float = 900
    activate: float = 1800


@dataclass(frozen=True)
class AnsibleContent:
    """Where the Ansible engine's playbooks and role come from: golive's own (shipped in the
    package) unless golive.yml names a folder of the workspace (`ansible:`)."""

    playbooks: str = ""  # a workspace folder with deploy.yml and rollback.yml
    roles: str = ""  # a workspace folder searched for roles before golive's own


@dataclass(frozen=True)
class Hooks:
    before_cutover: str = ""
    after_cutover: str = ""
    on_rollback: str = ""


@dataclass(frozen=True)
class ReleaseStore:
    path: str = "build/releases"
    artifact: str = "{app}-{version}.tar.gz"
    max_members: int = 20000
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    # A remote store (golive.adapters.artifact_store): an HTTP(S) repository's URL pattern, or an
    # S3-compatible bucket; the artifact is fetched into .golive-cache/ and verified there.
    url: str = ""
    sha256_url: str = ""  # default: the artifact's URL + ".sha256"
    credentials: str = ""  # a vault-encrypted YAML file in the workspace
    token_header: str = "Authorization"
    ca_bundle: str = ""
    timeout: float = 60.0
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_key: str = "{app}/{version}/{artifact}"
    s3_region: str = "us-east-1"

    @property
    def remote(self) -> bool:
        return bool(self.url or self.s3_bucket)

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
    differs_by: Literal["environment", "host"] | None = None  # an expected difference
    reason: str = ""
    expires: date | None = None
    where: str = ""  # golive.yml:LINE of its declaration


# Inventory variables golive itself reads, beyond Ansible's connection variables (docs/inventory.md).
# Each is part of every workspace's variable schema: golive.yml may declare it (with this type) to
# make it required or to add a difference between environments; otherwise it is optional.
GOLIVE_VARIABLES = (
    # preflight's disk item and the disk check: free space under application.root, in MB (unset: no minimum)
    VarSpec("min_free_disk_mb", type="int"),
    # the preflight report: the client's name as its people know it (unset: the customer key)
    VarSpec("company_name", type="str"),
    # the preflight report: times in this zone (an IANA name) besides UTC (unset: UTC only)
    VarSpec("timezone", type="str"),
)


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
    timeouts: Timeouts = Timeouts()
    ansible: AnsibleContent = AnsibleContent()
    source: str = "golive.yml"
    # golive.yml drift.ignore: release paths (globs) drift, deploys and checks neither compare nor repair
    drift_ignore: tuple[str, ...] = ()
    ssh_config: str = ""  # connection.ssh_config: an ssh_config file for hosts whose ssh args name none (-F)
    display_name: str = ""  # application.display_name: the product's name in reports (else `name`)
    database: DatabaseSpec | None = None  # None: a product without a database
    provision: Provision | None = None  # golive.yml provision: what the hosts need before a release lands

    def environment(self, name: str) -> EnvironmentSpec | None:
        return next((e for e in self.environments if e.name == name), None)

    def var(self, name: str) -> VarSpec | None:
        return next((v for v in self.variables if v.name == name), None)

    @property
    def secret_var_names(self) -> frozenset[str]:
        return frozenset(v.name for v in self.variables if v.secret)


@dataclass(frozen=True)
class Hop:
    """One SSH connection on the way to a host (a jump host, or the host itself), as golive makes it:
    every hop's host key is verified against its known_hosts files, strictly."""

    name: str  # as the route names it: the inventory's address, an ssh_config alias, a ProxyJump entry
    address: str  # where to connect (HostName)
    port: int = 22
    user: str = "root"
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()
    host_key_alias: str = ""  # the name its key is listed under in known_hosts (HostKeyAlias)
    connect_timeout: float | None = None

    @property
    def key_name(self) -> str:
        """The known_hosts entry this hop's key must match (as OpenSSH looks it up)."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def words(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class Route:
    """How a host is reached: through `jumps` in order (ProxyJump), the first one (or the host, when
    there is none) through `proxy_command` when set (ProxyCommand), then the host itself."""

    target: Hop
    jumps: tuple[Hop, ...] = ()
    proxy_command: str = ""  # tokens expanded; run with /bin/sh, its stdin/stdout the connection
    config_file: str = ""  # the ssh_config file read (-F or golive.yml), "" for none
    keepalive: int = 0  # ServerAliveInterval
    passed_through: tuple[str, ...] = ()  # options golive accepts that only OpenSSH uses (ControlPersist, ...)

    @property
    def hops(self) -> tuple[Hop, ...]:
        return (*self.jumps, self.target)

    def words(self) -> str:
        via = [f"jump {j.words()}" for j in self.jumps]
        if self.proxy_command:
            via.insert(0, f"ProxyCommand {self.proxy_command}")
        return self.target.words() + (f" via {', '.join(via)}" if via else "")


@dataclass(frozen=True)
class Connection:
    """How to reach a host, mapped from Ansible's connection variables.

    `ssh_args` are the OpenSSH options Ansible's ssh connection would pass for the host, in its
    order (ansible.cfg's ssh_args, then the port, key, user and timeout variables, then
    ansible_ssh_common_args and ansible_ssh_extra_args), each with where it came from
    (`ssh_arg_sources`: a variable name, or the ansible.cfg setting / environment variable);
    golive.adapters.ssh_options reads them as OpenSSH does into the `route`."""

    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts_file: str | None = None
    python: str = "python3"
    ssh_args: tuple[str, ...] = ()
    ssh_arg_sources: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (variable, why): connection settings golive cannot honour
    # Set by the workspace once the inventory is loaded (never cached with it: an ssh_config file
    # may change alone): the route, or why there is none.
    route: Route | None = field(default=None, compare=False)
    route_problems: tuple[Any, ...] = field(default=(), compare=False)  # golive.core.errors.Problem

    def __post_init__(self) -> None:  # JSON (the inventory cache) gives lists
        object.__setattr__(self, "ssh_args", tuple(self.ssh_args))
        object.__setattr__(self, "ssh_arg_sources", tuple(self.ssh_arg_sources))
        object.__setattr__(self, "refused", tuple(tuple(r) for r in self.refused))


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
    # the text of every secret value of this host (vaulted or `secret: true`, every leaf, any type)
    secret_values: frozenset[str] = frozenset()
    # where inline `!vault` values are (`name`, `name.key`, `name[0]`): Ansible never templates them
    vault_paths: frozenset[str] = frozenset()
    var_origins: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # every variable path holding a secret (`name`, `name.key`, `name[0]`): never shown, whatever its
    # length or type (the vault paths, the variables of vault-encrypted files and `secret: true` ones)
    secret_paths: frozenset[str] = frozenset()

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

"""The pytest plugin behind checks/: it gives every Testinfra check the host's golive facts.

checks/conftest.py loads it, so the same check files run two ways:

- `golive check CUSTOMER ENV` (golive.flows.check) runs pytest in-process over golive's own SSH sessions
  (`golive://HOST` hosts): connected in parallel up front, host keys verified, one connection each;
- plain `pytest checks/ --golive-customer C --golive-environment E` (or `--hosts ssh://HOST,...`)
  uses Testinfra's ssh backend with an ssh config this plugin writes from the inventory: the
  inventory's key and known_hosts, StrictHostKeyChecking=yes and a ControlPath, so every host keeps
  one connection for all its checks. Backends that do not verify host keys are refused.

The `golive` fixture reads the host's ledger for the release it must run (or takes
--golive-release) and renders its config with golive's renderer, so a check compares the host with
exactly what `golive render` produces.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from golive.core.errors import BadInput
from golive.core.model import Host
from golive.core.redact import MASK
from golive.core.release import release_id

SAFE_BACKENDS = ("golive", "ssh", "safe-ssh")
LEDGER_TAIL_BYTES = 262144
CUSTOMERS_DIR = "customers"


@dataclass(frozen=True)
class ConfigFile:
    dest: str
    path: str  # where the application reads it: config_dir/dest
    sha256: str = field(repr=False)  # pytest shows fixture values on failure: no hash of a secret there
    mode: int = 0o644
    secret: bool = False


@dataclass(frozen=True)
class ExpectedHost:
    """What one host must look like, for the checks. Secret values are never in here."""

    name: str
    customer: str
    environment: str
    vars: Mapping[str, Any]  # merged inventory variables, secrets masked
    root: str
    config_dir: str
    version: str
    release: str  # the release id the workspace makes live for this version and config
    config_hash: str
    files: tuple[ConfigFile, ...]
    current: str | None  # the release `current` points to now
    ledger_release: str | None  # the release the ledger says was made live last
    service_status: str
    health_url: str
    address: str
    port: int | None
    owner: str  # who owns what golive writes on this host

    def file(self, dest: str) -> ConfigFile:
        return next(f for f in self.files if f.dest == dest)


@dataclass(eq=False)  # one run is one object: pytest registers it as a plugin, by identity
class CheckRun:
    """One run of the checks: its workspace, hosts and what it learns. `golive check` hands its run
    to pytest as a plugin object; a plain `pytest checks/` run makes its own (pytest_configure)."""

    workspace: Any  # golive.workspace.Workspace
    customer: str
    environment: str
    hosts: dict[str, Host]
    release: str | None = None
    facts: dict[str, ExpectedHost] = field(default_factory=dict)
    fact_errors: dict[str, str] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    # golive check gives its parallel map: per-host facts are then fetched for every host at once
    # on first use, instead of one host after another as pytest walks the checks.
    parallel: Callable[[Callable[[Any], Any], list[Any]], list[Any]] | None = None
    # golive check's command fan-out (adapters/testinfra_backend.py): handed to the backend of every
    # Testinfra host pytest runs checks on, once collected (pytest_collection_modifyitems)
    fan_out: Any = None
    testinfra_hosts: list[Any] = field(default_factory=list)
    prefetched: set[str] = field(default_factory=set)

    def prefetch(self, what: str, function: Callable[[Any], Any]) -> None:
        if self.parallel is None or what in self.prefetched:
            return
        self.prefetched.add(what)

        def quietly(host: Any) -> None:
            # pytest.fail and friends: the check that needs the fact reports the failure itself
            with contextlib.suppress(BaseException):
                function(host)

        self.parallel(quietly, self.testinfra_hosts)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("golive")
    group.addoption("--golive-workspace", help="the golive workspace (default: the folder above checks/)")
    group.addoption("--golive-customer", help="the customer whose hosts are checked (default: found by host name)")
    group.addoption("--golive-environment", help="check every host of this environment (instead of --hosts)")
    group.addoption("--golive-release", help="the version the hosts must run (default: what their ledger says)")
    group.addoption("--golive-vault-password-file", help="Ansible Vault password file (default: as golive)")


class PlainRun:
    """`pytest checks/` without golive: the workspace from the options, Testinfra's ssh backend."""

    def __init__(self, config: pytest.Config) -> None:
        from golive.workspace import Workspace

        option = config.option
        base = option.golive_workspace or str(Path(str(config.rootpath)).parent)
        self.workspace = Workspace(base, option.golive_vault_password_file)
        self.control_dir = tempfile.mkdtemp(prefix="golive-checks-")
        self.ssh_config = os.path.join(self.control_dir, "ssh_config")
        self.customer = option.golive_customer
        self.hosts: dict[str, Host] = {}

    def find_customer(self, names: list[str]) -> str:
        for customer in self.workspace.customer_names():
            known = {h.name for h in self.workspace.customer(customer).hosts} | \
                    {h.connection.address for h in self.workspace.customer(customer).hosts}
            if names and all(n in known for n in names):
                return customer
        raise pytest.UsageError(f"no customer in {self.workspace.root}/inventories has all of these hosts: "
                                f"{', '.join(names)}; pass --golive-customer")

    def write_ssh_config(self, hosts: list[Host]) -> None:
        """One entry per host: its route as golive's own engine follows it (golive.adapters.ssh_options:
        jump hosts, ProxyCommand, key, known_hosts, every host key verified), one multiplexed
        connection per host for all its checks."""
        import hashlib

        from golive.adapters.ssh_options import ssh_config_entry
        from golive.adapters.transport import connection_file_problems, route_of

        problems = connection_file_problems(hosts)
        if problems:
            raise BadInput(problems)
        lines = []
        for host in hosts:
            route = route_of(host)
            names = [host.name] + ([host.connection.address] if host.connection.address != host.name else [])
            # One socket per inventory host: two hosts may share an address behind different jump hosts.
            control = hashlib.sha256(host.name.encode()).hexdigest()[:16]
            lines += ssh_config_entry(names, route)
            lines += ["  ControlMaster auto", f"  ControlPath {self.control_dir}/{control}", "  ControlPersist 60s"]
        Path(self.ssh_config).write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        """Close the multiplexed connections now rather than 60 s after the run."""
        for name in self.hosts:
            subprocess.run(["ssh", "-F", self.ssh_config, "-O", "exit", name], capture_output=True, timeout=10)
        shutil.rmtree(self.control_dir, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    handed_over = next((p for p in config.pluginmanager.get_plugins() if isinstance(p, CheckRun)), None)
    if handed_over is not None:  # `golive check` runs pytest in-process and hands its run over
        config.stash[_RUN_KEY] = handed_over
        return
    if getattr(option, "hosts", None) is None and not option.golive_environment:
        return  # not a golive run (a bare `pytest` in the folder): the checks will say what is missing
    connection = getattr(option, "connection", None)
    if connection and connection not in SAFE_BACKENDS:
        raise pytest.UsageError(f"--connection={connection} is refused: golive checks run over ssh:// only, "
                                "with host keys verified against the inventory's known_hosts")
    try:
        plain = PlainRun(config)
        specs = [s.strip() for s in (option.hosts or "").split(",") if s.strip()]
        for spec in specs:
            scheme = spec.split("://", 1)[0] if "://" in spec else None
            if scheme is not None and scheme not in SAFE_BACKENDS:
                raise pytest.UsageError(f"{spec}: the {scheme}:// backend is refused (paramiko:// accepts any host "
                                        "key); use ssh://HOST")
        names = [urllib.parse.urlsplit(s if "://" in s else f"ssh://{s}").hostname or s for s in specs]
        if not plain.customer:
            plain.customer = plain.find_customer(names)
        customer = plain.workspace.customer(plain.customer)
        if option.golive_environment:
            hosts = list(plain.workspace.hosts(plain.customer, option.golive_environment))
            if not specs:
                specs = [f"ssh://{h.name}" for h in hosts]
        by_key = {**{h.name: h for h in customer.hosts}, **{h.connection.address: h for h in customer.hosts}}
        unknown = [n for n in names if n not in by_key]
        if unknown:
            raise pytest.UsageError(f"not in the inventory of {plain.customer}: {', '.join(unknown)}")
        chosen = [by_key[n] for n in names] if names else hosts
        plain.hosts = {h.name: h for h in chosen}
        # Bare names would get Testinfra's default paramiko backend, which accepts any host key.
        option.hosts = ",".join(s if "://" in s else f"ssh://{s}" for s in specs)
        if not option.ssh_config:
            plain.write_ssh_config(list(customer.hosts))
            option.ssh_config = plain.ssh_config
    except BadInput as error:
        raise pytest.UsageError(str(error)) from None
    run = CheckRun(plain.workspace, plain.customer, option.golive_environment or "", plain.hosts,
                   option.golive_release)
    config.stash[_RUN_KEY] = run
    config.stash[_PLAIN_KEY] = plain


def pytest_unconfigure(config: pytest.Config) -> None:
    plain = config.stash.get(_PLAIN_KEY, None)
    if plain is not None:
        plain.close()


_RUN_KEY = pytest.StashKey[CheckRun]()
_PLAIN_KEY = pytest.StashKey[PlainRun]()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """checks/customers/<other customer>/ is not this run's."""
    run = config.stash.get(_RUN_KEY, None)
    parts = collection_path.parts
    if CUSTOMERS_DIR in parts:
        index = parts.index(CUSTOMERS_DIR)
        if index + 1 < len(parts) and (run is None or parts[index + 1] != run.customer):
            return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A customer's own checks run after the shared ones (pytest would collect customers/ first).
    In a `golive check` run, the Testinfra hosts pytest made get the run's command fan-out."""
    items.sort(key=lambda item: CUSTOMERS_DIR in Path(str(item.path)).parts)
    run = config.stash.get(_RUN_KEY, None)
    if run is None or run.fan_out is None:
        return
    seen: dict[int, Any] = {}
    for item in items:
        testinfra_host = getattr(getattr(item, "callspec", None), "params", {}).get("_testinfra_host")
        if testinfra_host is not None and id(testinfra_host) not in seen:
            seen[id(testinfra_host)] = testinfra_host
            testinfra_host.backend.fan_out = run.fan_out
    run.testinfra_hosts = list(seen.values())


# -- fixtures -----------------------------------------------------------------------------------

def _run(request: pytest.FixtureRequest) -> CheckRun:
    run = request.config.stash.get(_RUN_KEY, None)
    if run is None:
        pytest.fail("these are golive checks: run them with `golive check CUSTOMER ENV` or "
                    "`pytest checks/ --golive-customer C --golive-environment E` (see checks/README.md)")
    return run


def _inventory_host(run: CheckRun, host: Any) -> Host:
    name = host.backend.get_hostname()
    found = run.hosts.get(name) or next((h for h in run.hosts.values() if h.connection.address == name), None)
    if found is None:
        pytest.fail(f"{name} is not a host of {run.customer}")
    return found


def _read_ledger(host: Any, root: str) -> tuple[str | None, dict[str, Any] | None]:
    """(the release `current` points to, the ledger's last deploy/rollback that made one live)."""
    result = host.run("readlink %s; echo; tail -c %s %s 2>/dev/null", f"{root}/current", str(LEDGER_TAIL_BYTES),
                      f"{root}/.golive/ledger.jsonl")
    first, _, rest = result.stdout.partition("\n")
    current = os.path.basename(first.strip().rstrip("/")) or None
    live = None
    for line in rest.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("action") in ("deploy", "rollback") and entry.get("result") in ("ok", "unchanged"):
            live = entry
    return current, live


def host_facts(run: CheckRun, host: Any) -> ExpectedHost:
    inventory_host = _inventory_host(run, host)
    if inventory_host.name in run.facts:
        return run.facts[inventory_host.name]
    if inventory_host.name in run.fact_errors:
        pytest.fail(run.fact_errors[inventory_host.name])
    ws = run.workspace
    app = ws.app
    current, live = _read_ledger(host, app.root)
    version = run.release or (live or {}).get("version")
    if not version:
        run.fact_errors[inventory_host.name] = (f"{inventory_host.name}: the ledger records no deploy, so there is no "
                                                f"release to check (deploy one, or pass the version to check)")
        pytest.fail(run.fact_errors[inventory_host.name])
    try:
        config = ws.render(inventory_host, version)
        health_url = ws.render_string(app.health.url, inventory_host, version, "health.url")
        status = ws.render_string(app.service.status, inventory_host, version, "service.status")
        if app.service.systemd_unit:
            unit = ws.render_string(app.service.systemd_unit, inventory_host, version, "service.systemd_unit")
            status = f"systemctl is-active --quiet {shlex.quote(unit)}"
    except BadInput as error:
        run.fact_errors[inventory_host.name] = str(error)
        pytest.fail(str(error))
    parts = urllib.parse.urlsplit(health_url)
    masked = {k: (MASK if k in app.secret_var_names else ws.redactor.data(v)) for k, v in inventory_host.vars.items()}
    c = inventory_host.connection
    facts = ExpectedHost(
        name=inventory_host.name, customer=inventory_host.customer, environment=inventory_host.environment,
        vars=masked, root=app.root, config_dir=app.config_dir, version=version,
        release=release_id(version, config.hash), config_hash=config.hash,
        files=tuple(ConfigFile(f.dest, f"{app.config_dir}/{f.dest}", f.sha256, f.mode, f.secret) for f in config.files),
        current=current, ledger_release=(live or {}).get("release"), service_status=status, health_url=health_url,
        address=parts.hostname or c.address, port=parts.port, owner="root" if inventory_host.vars.get("ansible_become")
        else c.user)
    run.facts[inventory_host.name] = facts
    return facts


@pytest.fixture(scope="module")
def golive(request: pytest.FixtureRequest, host: Any) -> ExpectedHost:
    """The host's golive facts: variables (secrets masked), desired release, rendered config hashes."""
    run = _run(request)
    run.prefetch("facts", lambda other: host_facts(run, other))
    return host_facts(run, host)


# Python's urllib when the host has no curl: the application's own runtime is always there.
HTTP_PROBE = ("import sys,urllib.request\n"
              "try:\n"
              " r=urllib.request.urlopen(sys.argv[1],timeout=3);s=r.status;b=r.read(1<<20)\n"
              "except urllib.error.HTTPError as e:\n"
              " s=e.code;b=e.read(1<<20)\n"
              "sys.stdout.write(b.decode('utf-8','replace')+'\\n'+str(s))\n")


def http_get(host: Any, golive: ExpectedHost, url: str) -> tuple[int | None, str]:
    """(HTTP status, body) of a GET made on the host itself: one command, curl or python3."""
    python = str(golive.vars.get("ansible_python_interpreter") or "python3")
    result = host.run("if command -v curl >/dev/null 2>&1; then curl -sS --max-time 3 -w '\\n%%{http_code}' %s; "
                      "else %s -I -S -c %s %s; fi", url, python, HTTP_PROBE, url)
    body, _, status = result.stdout.rpartition("\n")
    error = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    try:
        return (int(status), body) if int(status) else (None, error)  # curl says 000 when nothing answers
    except ValueError:
        return None, error


@pytest.fixture(scope="module")
def fetch(host: Any, golive: ExpectedHost):
    """fetch(path) -> (status, body): a GET to the service's own address, made on the host."""
    def get(path: str) -> tuple[int | None, str]:
        return http_get(host, golive, f"http://{golive.address}:{golive.port}{path}")
    return get


@pytest.fixture(scope="module")
def health(request: pytest.FixtureRequest, host: Any, golive: ExpectedHost) -> dict[str, Any]:
    """The /health answer of the host's service, fetched on the host itself (once per host)."""
    run = _run(request)
    run.prefetch("health", lambda other: health_of(run, other, host_facts(run, other)))
    return health_of(run, host, golive)


def health_of(run: CheckRun, host: Any, facts: ExpectedHost) -> dict[str, Any]:
    key = f"{facts.name}@{facts.health_url}"
    if key not in run.health:
        status, body = http_get(host, facts, facts.health_url)
        try:
            run.health[key] = {"http_status": status, **json.loads(body)}
        except ValueError:
            run.health[key] = {"http_status": status, "error": body.strip()[-200:] or "no answer"}
    return run.health[key]

"""The pytest plugin behind checks/: it gives every Testinfra check the host's golive facts.

golive's package provides it as the pytest plugin `golive` (pyproject's pytest11 entry point), so a
workspace's checks/ needs no conftest.py and the same check files run two ways:

- `golive check CUSTOMER ENV` (golive.flows.check) runs pytest in-process over golive's own SSH sessions
  (`golive://HOST` hosts): connected in parallel up front, host keys verified, one connection each;
- plain `pytest checks/ --golive-customer C --golive-environment E` (or `--hosts ssh://HOST,...`)
  uses Testinfra's ssh backend with an ssh config this plugin writes from the inventory: the
  inventory's key and known_hosts, StrictHostKeyChecking=yes and a ControlPath, so every host keeps
  one connection for all its checks. Backends that do not verify host keys are refused.

The `golive` fixture reads the host's ledger for the release it must run (or takes
--golive-release) and renders its config with golive's renderer, so a check compares the host with
exactly what `golive render` produces. `health_check` asks the host's health URL or command and
judges the answer by the rule deploy's verify applies (golive.agent.shared.health_problem).

Installed, the plugin loads in every pytest run of the environment (golive's own test suite too):
each hook returns at once unless the run is a golive one (`golive check`, or --hosts /
--golive-environment given). A workspace's old checks/conftest.py that imports these hooks again
is harmless: every hook does its work once.
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
from typing import TYPE_CHECKING, Any

import pytest

from golive.agent.shared import health_problem, ignored
from golive.core.drift import ReleaseTree, comparable, release_differences
from golive.core.errors import BadInput
from golive.core.model import Host
from golive.core.redact import CUT_MARKERS, MASK, Redactor, mask_paths
from golive.flows.desired import host_release_id

if TYPE_CHECKING:  # types only: the plugin loads in every pytest run, these modules only in golive's
    from golive.adapters.testinfra_backend import CommandFanOut
    from golive.workspace import Workspace

SAFE_BACKENDS = ("golive", "ssh", "safe-ssh")
LEDGER_TAIL_BYTES = 262144
CUSTOMERS_DIR = "customers"


class SecretDigest:
    """A secret file's sha256 as the checks get it: it compares equal to the right digest and never
    shows it (a weak password is found from its digest by a dictionary in seconds); printed, sliced
    or formatted it is the mask."""

    __slots__ = ("_hex",)

    def __init__(self, hex_digest: str) -> None:
        self._hex = hex_digest

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretDigest):
            return other._hex == self._hex
        return isinstance(other, str) and other == self._hex

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("secret digest", self._hex))

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __getitem__(self, item: Any) -> str:
        return MASK


@dataclass(frozen=True)
class ConfigFile:
    dest: str
    path: str  # where the application reads it: config_dir/dest
    sha256: str | SecretDigest = field(repr=False)  # a secret file's never shows (SecretDigest)
    mode: int = 0o644
    secret: bool = False


@dataclass(frozen=True)
class ExpectedHost:
    """What one host must look like, for the checks. No secret value is shown from here: variables
    are masked, a secret file's digest only compares; the service's status command and the health
    URL are rendered with the host's variables (the checks run them), and every report is masked
    before anything shows it (`tail` masks a command's output, then cuts it, for a message)."""

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
    service_status: str  # the command that exits 0 while the service runs ("" when golive.yml has none)
    health_url: str  # golive.yml's health check for this host: its URL, or ""
    health_command: str  # ... or its command
    health_expect: tuple[str, ...]  # what the answer must report (health.expect)
    health_timeout: float
    address: str
    port: int | None  # the health URL's port (None without a URL)
    owner: str  # who owns what golive writes on this host
    redactor: Redactor | None = field(default=None, repr=False, compare=False)
    # every entry the live release directory should hold (Workspace.release_tree; repr=False: it
    # holds the secret files' hashes), the artifact the host runs, golive.yml's drift.ignore
    release_tree: ReleaseTree = field(default=ReleaseTree({}), repr=False)
    artifact_sha256: str | None = None
    ignore: tuple[str, ...] = ()

    def file(self, dest: str) -> ConfigFile:
        return next(f for f in self.files if f.dest == dest)

    def tail(self, text: str, limit: int) -> str:
        """The end of a command's output for a failure message: masked first, then cut (a cut made
        after would leave part of a secret at its start)."""
        return self.redactor.tail(text, limit) if self.redactor is not None else text[-limit:]

    def release_differences(self, host: Any) -> list[str]:
        """Where the live release directory differs from what it should hold, one line per entry and
        aspect, by content, mode, owner and group (what golive.yml drift.ignore names is left alone):
        drift's own comparison (golive.core.drift.release_differences), over one listing command that
        is the same on every host."""
        listing = host.run("cd %s/ && id -gn %s && find . -printf '%%y\\t%%m\\t%%u\\t%%g\\t%%s\\t%%l\\t%%p\\n' "
                           "&& find . -type f -exec sha256sum {} +", f"{self.root}/current", self.owner)
        if listing.rc != 0:
            return [f"cannot list {self.root}/current/: {self.tail(listing.stderr.strip(), 200)}"]
        group, _, rest = listing.stdout.partition("\n")
        actual: dict[str, dict[str, Any]] = {}
        hashes: dict[str, str] = {}
        for line in rest.splitlines():
            fields = line.split("\t")
            if len(fields) == 7:
                kind, mode, owner, group_name, size, link, path = fields
                relative = "." if path == "." else path.removeprefix("./")
                entry: dict[str, Any] = {"type": FIND_TYPES.get(kind, "other"), "owner": owner, "group": group_name}
                if entry["type"] == "link":
                    entry["link"] = link
                else:
                    entry["mode"] = f"{int(mode, 8):04o}"
                if entry["type"] == "file":
                    entry["size"] = int(size)
                actual[relative] = entry
            elif len(line) > 66 and line[64:66] == "  ":
                hashes[line[66:].removeprefix("./")] = line[:64]
        for path, digest in hashes.items():
            if path in actual:
                actual[path]["sha256"] = digest
        kept = {p: e for p, e in actual.items() if not ignored(p, self.ignore)}
        wanted, compared, _ = comparable(self.release_tree, kept, self.artifact_sha256)
        deployer = {"owner": self.owner, "group": group.strip()}
        secrets = {f"config/{f.dest}" for f in self.files if f.secret}
        lines = []
        for path, aspect in release_differences(wanted, compared, deployer):
            want, have = wanted.get(path) or {}, compared.get(path) or {}
            if aspect in ("mode", "owner", "group"):
                shown = f"want {want.get(aspect, deployer.get(aspect))}, has {have.get(aspect)}"
            elif aspect == "link":
                shown = f"want -> {want.get('link')}, has -> {have.get('link')}"
            elif aspect == "type":
                shown = f"want a {want.get('type')}, has a {have.get('type')}"
            else:
                shown = "" if path in secrets else aspect
            lines.append(f"{path}: {aspect}" + (f" ({shown})" if shown and shown != aspect else ""))
        return lines


FIND_TYPES = {"f": "file", "d": "dir", "l": "link"}


@dataclass(eq=False)  # one run is one object: pytest registers it as a plugin, by identity
class CheckRun:
    """One run of the checks: its workspace, hosts and what it learns. `golive check` hands its run
    to pytest as a plugin object; a plain `pytest checks/` run makes its own (pytest_configure)."""

    workspace: Workspace
    customer: str
    environment: str
    hosts: dict[str, Host]
    release: str | None = None
    facts: dict[str, ExpectedHost] = field(default_factory=dict)
    fact_errors: dict[str, str] = field(default_factory=dict)
    health: dict[str, HealthCheckResult] = field(default_factory=dict)  # host@check -> its result
    # golive check gives its parallel map: per-host facts are then fetched for every host at once
    # on first use, instead of one host after another as pytest walks the checks.
    parallel: Callable[[Callable[[Any], Any], list[Any]], list[Any]] | None = None
    # golive check's command fan-out (adapters/testinfra_backend.py): handed to the backend of every
    # Testinfra host pytest runs checks on, once collected (pytest_collection_modifyitems)
    fan_out: CommandFanOut | None = None
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
    if any(option.names() == ["--golive-workspace"] for option in group.options):
        return  # registered already (an old checks/conftest.py imports this hook again)
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
            assert route is not None  # a host without one has a connection problem, refused above
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
    if _RUN_KEY in config.stash or not hasattr(option, "golive_workspace"):
        return  # configured already, or golive's options are not there (not this plugin's run)
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
        del config.stash[_PLAIN_KEY]
        plain.close()


_RUN_KEY = pytest.StashKey[CheckRun]()
_PLAIN_KEY = pytest.StashKey[PlainRun]()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """checks/customers/<other customer>/ is not this run's."""
    run = config.stash.get(_RUN_KEY, None)
    if run is None:
        return None  # not a golive run: a folder named customers/ is nobody's business here
    parts = collection_path.parts
    if CUSTOMERS_DIR in parts:
        index = parts.index(CUSTOMERS_DIR)
        if index + 1 < len(parts) and parts[index + 1] != run.customer:
            return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A customer's own checks run after the shared ones (pytest would collect customers/ first).
    In a `golive check` run, the Testinfra hosts pytest made get the run's command fan-out."""
    run = config.stash.get(_RUN_KEY, None)
    if run is None:
        return  # not a golive run: the order is pytest's
    items.sort(key=lambda item: CUSTOMERS_DIR in Path(str(item.path)).parts)
    if run.fan_out is None:
        return
    seen: dict[int, Any] = {}
    for item in items:
        testinfra_host = getattr(getattr(item, "callspec", None), "params", {}).get("_testinfra_host")
        if testinfra_host is not None and id(testinfra_host) not in seen:
            seen[id(testinfra_host)] = testinfra_host
            testinfra_host.backend.fan_out = run.fan_out
    run.testinfra_hosts = list(seen.values())


class MaskedRepr:
    """A failure's report with its secrets masked: what pytest's JUnit writer, terminal reporter and
    golive's collector read (str(), reprcrash.message, toterminal) instead of the original."""

    def __init__(self, text: str, crash: Any) -> None:
        self.text = text
        self.reprcrash = crash

    def __str__(self) -> str:
        return self.text

    def toterminal(self, tw: Any) -> None:
        tw.line(self.text)


def mask_report(report: Any, redactor: Redactor) -> None:
    """Mask a pytest report in place, before any reporter sees it (the JUnit writer escapes the text
    for XML: masking must come first). pytest shortens long values ("..." in a repr), so a part of
    a secret next to a cut is masked too."""
    def mask(text: str) -> str:
        return redactor.cut(text, markers=CUT_MARKERS)

    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        report.longrepr = (longrepr[0], longrepr[1], mask(str(longrepr[2])))
    elif longrepr is not None:
        crash = getattr(longrepr, "reprcrash", None)
        if crash is not None:
            from _pytest._code.code import ReprFileLocation

            crash = ReprFileLocation(crash.path, crash.lineno, mask(crash.message))
        report.longrepr = MaskedRepr(mask(str(longrepr)), crash)
    report.sections = [(title, mask(content)) for title, content in getattr(report, "sections", [])]
    if getattr(report, "user_properties", None):
        report.user_properties = [(name, mask(str(value))) for name, value in report.user_properties]
    if isinstance(getattr(report, "wasxfail", None), str):
        report.wasxfail = mask(report.wasxfail)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """Every report of a check masked as it is made, before any reporter (terminal, JUnit XML) sees
    it: in a plain `pytest checks/` run too (golive check masks them in its collector as well)."""
    report = yield
    run = item.config.stash.get(_RUN_KEY, None)
    if run is not None:
        mask_report(report, run.workspace.redactor)
    return report


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
        health_command = "" if health_url else \
            ws.render_string(app.health.command, inventory_host, version, "health.command")
        status = ws.render_string(app.service.status, inventory_host, version, "service.status")
        if app.service.systemd_unit:
            unit = ws.render_string(app.service.systemd_unit, inventory_host, version, "service.systemd_unit")
            status = f"systemctl is-active --quiet {shlex.quote(unit)}"
    except BadInput as error:
        run.fact_errors[inventory_host.name] = str(error)
        pytest.fail(str(error))
    parts = urllib.parse.urlsplit(health_url)
    # by path first (a secret of any type or length), then every other text holding one
    masked = ws.redactor.data(mask_paths(dict(inventory_host.vars), inventory_host.secret_paths | app.secret_var_names))
    c = inventory_host.connection
    facts = ExpectedHost(
        name=inventory_host.name, customer=inventory_host.customer, environment=inventory_host.environment,
        vars=masked, root=app.root, config_dir=app.config_dir, version=version,
        release=host_release_id(ws, inventory_host, version, config), config_hash=config.hash,
        files=tuple(ConfigFile(f.dest, f"{app.config_dir}/{f.dest}", SecretDigest(f.sha256) if f.secret else f.sha256,
                               f.mode, f.secret) for f in config.files),
        current=current, ledger_release=(live or {}).get("release"), service_status=status, health_url=health_url,
        health_command=health_command, health_expect=app.health.expect, health_timeout=app.health.timeout,
        address=parts.hostname or c.address, port=_port(parts) if health_url else None,
        owner="root" if inventory_host.vars.get("ansible_become") else c.user, redactor=ws.redactor,
        release_tree=ws.release_tree(version, config), artifact_sha256=(live or {}).get("artifact_sha256"),
        ignore=app.drift_ignore)
    run.facts[inventory_host.name] = facts
    return facts


def _port(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None


@pytest.fixture(scope="module")
def golive(request: pytest.FixtureRequest, host: Any) -> ExpectedHost:
    """The host's golive facts: variables (secrets masked), desired release, rendered config hashes."""
    run = _run(request)
    run.prefetch("facts", lambda other: host_facts(run, other))
    return host_facts(run, host)


# Python's urllib when the host has no curl: the application's own runtime is always there. Neither
# follows a redirect: the host agent's health check follows none.
HTTP_PROBE = ("import sys,urllib.request\n"
              "class N(urllib.request.HTTPRedirectHandler):\n"
              " def redirect_request(self,*a):return None\n"
              "try:\n"
              " r=urllib.request.build_opener(N).open(sys.argv[1],timeout=float(sys.argv[2]))\n"
              " s=r.status;b=r.read(1<<20)\n"
              "except urllib.error.HTTPError as e:\n"
              " s=e.code;b=e.read(1<<20)\n"
              "sys.stdout.write(b.decode('utf-8','replace')+'\\n'+str(s))\n")


def http_get(host: Any, golive: ExpectedHost, url: str) -> tuple[int | None, str]:
    """(HTTP status, body) of a GET made on the host itself: one command, curl or python3."""
    python = str(golive.vars.get("ansible_python_interpreter") or "python3")
    seconds = str(max(golive.health_timeout, 3))
    result = host.run("if command -v curl >/dev/null 2>&1; then curl -sS --max-time %s -w '\\n%%{http_code}' %s; "
                      "else %s -I -S -c %s %s %s; fi", seconds, url, python, HTTP_PROBE, url, seconds)
    body, _, status = result.stdout.rpartition("\n")
    error = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    try:
        return (int(status), body) if int(status) else (None, error)  # curl says 000 when nothing answers
    except ValueError:
        return None, error


@pytest.fixture(scope="module")
def fetch(host: Any, golive: ExpectedHost) -> Callable[[str], tuple[int | None, str]]:
    """fetch(path) -> (status, body): a GET to the service's own address, made on the host."""
    def get(path: str) -> tuple[int | None, str]:
        return http_get(host, golive, f"http://{golive.address}:{golive.port}{path}")
    return get


@dataclass(frozen=True)
class HealthCheckResult:
    """The host's health check, asked once, and its verdict by the rule deploy's verify applies."""

    what: str  # the URL, or "health command `...`"
    code: int | None  # the HTTP status or the command's exit code; None: nothing answered
    body: str
    problem: str  # "" when healthy
    report: Mapping[str, Any]  # what the answer reports, when it is a JSON object ({} otherwise)


@pytest.fixture(scope="module")
def health_check(request: pytest.FixtureRequest, host: Any, golive: ExpectedHost) -> HealthCheckResult:
    """golive.yml's health check of the host, made on the host itself (once per host), judged as
    verify judges it (health.expect against the release the workspace makes live)."""
    run = _run(request)
    run.prefetch("health", lambda other: health_check_of(run, other, host_facts(run, other)))
    return health_check_of(run, host, golive)


@pytest.fixture(scope="module")
def health(health_check: HealthCheckResult) -> dict[str, Any]:
    """What the health answer reports (a JSON object's keys), with `http_status` (None: no answer)
    and `error` when it is not a JSON object: for checks of what a product reports beyond the contract."""
    if health_check.report:
        return {"http_status": health_check.code, **health_check.report}
    return {"http_status": health_check.code, "error": health_check.problem or health_check.body.strip()[-200:]
            or "no answer"}


def health_check_of(run: CheckRun, host: Any, facts: ExpectedHost) -> HealthCheckResult:
    key = f"{facts.name}@{facts.health_url or facts.health_command}"
    if key in run.health:
        return run.health[key]
    settings = {"url": facts.health_url, "command": facts.health_command, "expect": list(facts.health_expect)}
    if facts.health_url:
        what = facts.health_url
        code, body = http_get(host, facts, facts.health_url)
        if code is None:
            body = body or "no answer"
    else:
        what = f"health command `{facts.health_command}`"
        release_dir = f"{facts.root}/releases/{facts.current or facts.release}"
        release = facts.current or facts.release
        seconds = str(max(1, int(facts.health_timeout + 0.999)))
        result = host.run("cd %s && GOLIVE_RELEASE=%s GOLIVE_RELEASE_DIR=%s GOLIVE_APP_ROOT=%s "
                          "timeout %s /bin/sh -c %s 2>&1", release_dir, release, release_dir, facts.root, seconds,
                          facts.health_command)
        code, body = result.rc, result.stdout
    expected = {"version": facts.version, "config_hash": facts.config_hash, "release": facts.release}
    # parsed as it came; whatever is quoted of it is masked before it is cut
    problem = run.workspace.redactor.text(health_problem(settings, expected, code, body, run.workspace.redactor))
    try:
        report = json.loads(body) if code is not None else None
    except ValueError:
        report = None
    run.health[key] = HealthCheckResult(what, code, run.workspace.redactor.text(body), problem,
                                        run.workspace.redactor.data(report) if isinstance(report, dict) else {})
    return run.health[key]

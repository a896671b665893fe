"""Shared fixtures: real SSH test hosts, a copy of the example workspace pointed at them, and a way
to run the golive CLI exactly as a user does (a subprocess, exit code and all).

Test hosts: one set per pytest session at GOLIVE_TEST_NET (default 127.0.50), first address .11,
state under /tmp/golive-tests-<net> (or GOLIVE_TEST_DIR/<net>). Several engineers (or CI stages) can
run the suite at once on one machine by choosing different nets. Tests that need real Debian
servers booting systemd ask for `systemd_hosts` (.131-.133 of the same net, booted on first use).

Addresses on each worker's net: .11-.19 the session's light hosts, .111-.129 tests of the light
harness, .131-.133 the session's systemd hosts, .141-.149 tests of the systemd harness.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy"))

from golive.testing.hosts import TestHosts  # noqa: E402
from golive.testing.systemd import SystemdHosts  # noqa: E402


def worker_net(net: str) -> str:
    """This pytest process's own copy of a test net: under `pytest -n`, worker gwN takes the Nth
    net after it, so that parallel workers never share an address."""
    prefix, _, third = net.rpartition(".")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return f"{prefix}.{int(third) + int(worker.removeprefix('gw') or 0)}"


TEST_NET = worker_net(os.environ.get("GOLIVE_TEST_NET", "127.0.50"))
# One directory per worker net: xdist workers must never share a state directory.
TEST_DIR = (os.path.join(os.environ["GOLIVE_TEST_DIR"], TEST_NET) if os.environ.get("GOLIVE_TEST_DIR")
            else f"/tmp/golive-tests-{TEST_NET}")
# The example customers' application hosts are 127.0.0.11-15, their database hosts 127.0.0.16-19.
HOST_COUNT = 9
SYSTEMD_HOST_COUNT = 3
SYSTEMD_FIRST = 131
EXAMPLE_NET = "127.0.0"
EXAMPLE_KEYS = "/tmp/golive-testhosts"
WORKSPACE_FILES = ("golive.yml", "ansible.cfg", "vault-password.example", "inventories", "config_templates",
                   "checks", "roles", "playbooks")
# Small releases keep the suite fast; the benchmark uses the realistic 5 MB / 200 files.
RELEASE_FILES, RELEASE_KB = "20", "200"
VAULT_SECRETS = ("Hx-Db-2026!example", "Lnd-Crm-2026!example")
# Waiting in tests is on events (a file appears, a process ends). A bound exists only so that an event
# that never comes (or a run that hangs) fails the test instead of hanging the suite; it is far beyond
# what any step takes on a loaded machine, so no test depends on the machine being idle.
WAIT_BOUND_SECONDS = 600


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> dict:
        return json.loads(self.stdout)


def run_golive(workspace: Path, *args: str, env: dict | None = None, timeout: float | None = None,
               check: int | None = None) -> Result:
    """Run `python -m golive --workspace WS ...` the way a user (or a script) would."""
    verb, rest = args[0], args[1:]
    # not ANSIBLE_CONFIG: golive sets it in this process for the last workspace it read in-process,
    # and a user's golive finds the workspace's own ansible.cfg; not FORCE_COLOR/TTY_COMPATIBLE: the
    # suite reads what a pipe gets, whatever terminal it was started from (a test asks for colour itself)
    inherited = {k: v for k, v in os.environ.items() if k not in ("ANSIBLE_CONFIG", "FORCE_COLOR", "TTY_COMPATIBLE")}
    full_env = {**inherited, "PYTHONPATH": str(REPO / "deploy"), **(env or {})}
    completed = subprocess.run([sys.executable, "-m", "golive", verb, "--workspace", str(workspace), *rest],
                               capture_output=True, text=True, timeout=timeout or WAIT_BOUND_SECONDS, env=full_env,
                               cwd=str(workspace))
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    if check is not None:
        assert result.returncode == check, f"golive {' '.join(args)} exited {result.returncode}:\n{result.output}"
    return result


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test starts from the suite's environment: golive sets ANSIBLE_* variables in its own
    process when it reads a workspace in-process, which would reach the next test's subprocesses."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def release_store(tmp_path_factory) -> Path:
    """Releases 1.0, 1.1 and a broken 9.9 (its /health answers 503), built once per session."""
    store = tmp_path_factory.mktemp("releases")
    for version, extra in (("1.0", []), ("1.1", []), ("9.9", ["--broken-health"])):
        subprocess.run([str(REPO / "scripts" / "build-release"), version, "--store", str(store),
                        "--files", RELEASE_FILES, "--size-kb", RELEASE_KB, *extra],
                       check=True, capture_output=True)
    return store


@pytest.fixture(scope="session")
def test_hosts():
    hosts = TestHosts(TEST_DIR, net=TEST_NET, first=11)
    if hosts.is_up():
        hosts.down()
    hosts.up(HOST_COUNT)
    yield hosts
    hosts.down()


@pytest.fixture(scope="session")
def systemd_hosts():
    """Three real Debian 12 servers booting systemd (golive.testing.systemd) on this worker's net,
    .131-.133, names h131-h133, booted when a test first asks (a session that asks for none pays
    nothing). A test that changes a host beyond what it cleans up calls `systemd_hosts.reset([name])`
    (a fresh server: a few seconds)."""
    hosts = SystemdHosts(f"{TEST_DIR}-systemd", net=TEST_NET, first=SYSTEMD_FIRST)
    if hosts.is_up():
        hosts.down()
    hosts.up(SYSTEMD_HOST_COUNT)
    yield hosts
    hosts.down()


def copy_workspace(destination: Path, hosts: TestHosts, releases: Path | None, database: bool = False) -> Path:
    """The example workspace, its inventories pointed at these test hosts. Without `database` it is
    the example product without its database (no `database:` section, no database hosts), as a
    product that only reports its version is deployed: the tests that claim a database step works
    ask for the database and get real PostgreSQL servers (the `databases` fixture)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKSPACE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        elif source.exists():
            shutil.copy2(source, destination / name)
    net = re.escape(EXAMPLE_NET + ".")
    for path in (destination / "inventories").rglob("*.yml"):
        text = path.read_text()
        if text.startswith("$ANSIBLE_VAULT"):
            continue
        text = re.sub(net + r"(\d+)", lambda m: f"{hosts.net}.{m.group(1)}", text)
        text = text.replace(EXAMPLE_KEYS + "/client_key", hosts.client_key)
        text = text.replace(EXAMPLE_KEYS + "/known_hosts", hosts.known_hosts)
        path.write_text(text)
    if not database:
        without_database(destination)
    if releases is not None:
        store = destination / "build" / "releases"
        store.mkdir(parents=True)
        for artifact in releases.iterdir():
            shutil.copy2(artifact, store / artifact.name)
    return destination


def without_database(workspace: Path) -> None:
    """Remove golive.yml's `database:` section (the last one) and the database hosts."""
    import yaml

    from golive.testing._common import without_database_section

    app = workspace / "golive.yml"
    app.write_text(without_database_section(app.read_text(), str(app)))
    for inventory in (workspace / "inventories").iterdir():
        path = inventory / "hosts.yml"
        data = yaml.safe_load(path.read_text())
        groups = data["all"]["children"]
        database_hosts = set((groups.pop("database", None) or {}).get("hosts") or {})

        for group in groups.values():
            if group:
                _remove_hosts(group, database_hosts)
        dumped = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, indent=2)
        path.write_text(dumped.replace(": null\n", ":\n"))


def _remove_hosts(group: dict, names: set[str]) -> None:
    for name in names:
        (group.get("hosts") or {}).pop(name, None)
    if group.get("hosts") == {}:
        del group["hosts"]
    for child in (group.get("children") or {}).values():
        if child:
            _remove_hosts(child, names)


@pytest.fixture
def workspace(tmp_path, test_hosts, release_store) -> Path:
    """A fresh example workspace on freshly reset hosts (no release, no daemon, empty app root)."""
    test_hosts.reset()
    return copy_workspace(tmp_path / "ws", test_hosts, release_store)


@pytest.fixture
def offline_workspace(tmp_path) -> Path:
    """The example workspace for tests that never reach a host (without its database, like `workspace`)."""
    destination = tmp_path / "ws"
    destination.mkdir()
    for name in WORKSPACE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, destination / name)
    without_database(destination)
    return destination


def wait_until(condition, what: str, bound: float = WAIT_BOUND_SECONDS, pause: float = 0.05) -> None:
    """Return once condition() is true; fail naming `what` (a string, or a callable giving one at the
    time of failure, e.g. what a run printed) if it is still false after `bound` seconds."""
    import time

    give_up = time.monotonic() + bound
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"still not the case after {bound:.0f} s: {what() if callable(what) else what}")
        time.sleep(pause)


def host_path(hosts: TestHosts, address_suffix: int, path: str) -> Path:
    """Where a path on a test host lives on the controller's disk (for assertions only)."""
    for info in hosts.hosts:
        if info.address.endswith(f".{address_suffix}"):
            for target, source in info.binds.items():
                if path == target or path.startswith(target + "/"):
                    return Path(source) / path[len(target):].lstrip("/")
    raise KeyError(f"{path} is not a bind path of host .{address_suffix}")


# -- what the fault, hostile-input and bad-input suites assert about hosts --------------------------

def snapshot_hosts(hosts: TestHosts) -> dict[str, dict[str, tuple]]:
    """Every file under every host's private paths (app root with its ledger, config dir, home):
    kind, mode, size, mtime and link target. Two equal snapshots mean no host was written to."""
    snapshot: dict[str, dict[str, tuple]] = {}
    for info in hosts.hosts:
        files: dict[str, tuple] = {}
        for target, source in info.binds.items():
            for directory, names, filenames in os.walk(source):
                for name in names + filenames:
                    path = os.path.join(directory, name)
                    st = os.lstat(path)
                    link = os.readlink(path) if os.path.islink(path) else None
                    files[target + path[len(source):]] = (st.st_mode, st.st_size, st.st_mtime_ns, link)
        snapshot[info.name] = files
    return snapshot


def snapshot_difference(before: dict[str, dict[str, tuple]], after: dict[str, dict[str, tuple]]) -> list[str]:
    """What changed between two snapshots, one line per path (empty: nothing was touched)."""
    changes = []
    for host in sorted(set(before) | set(after)):
        old, new = before.get(host, {}), after.get(host, {})
        for path in sorted(set(old) | set(new)):
            if path not in new:
                changes.append(f"{host}: removed {path}")
            elif path not in old:
                changes.append(f"{host}: created {path}")
            elif old[path] != new[path]:
                changes.append(f"{host}: changed {path}")
    return changes


def host_view(hosts: TestHosts, address_suffix: int, path: str) -> Path:
    """A path as the host itself sees it, through its namespace's root (/proc/<pid>/root): unlike
    host_path this shows what a test mounted inside the host (a tmpfs, a read-only bind)."""
    state = json.loads((hosts.dir / "hosts.json").read_text())
    record = next(r for r in state["hosts"] if r["address"].endswith(f".{address_suffix}"))
    return Path(f"/proc/{record['holder_pid']}/root") / path.lstrip("/")


def health_of(address: str, port: int = 8080, timeout: float = 3) -> dict | None:
    """The service's /health answer (any HTTP status), or None when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())
    except OSError:
        return None


def live_release_problems(hosts: TestHosts, suffix: int, root: str = "/opt/northwind") -> list[str]:
    """Why host .suffix is not on one complete release served whole (empty: it is).

    Complete: `current` points to releases/<id>, a directory (never a .partial) with its VERSION,
    metadata, and every rendered config file with the hash its metadata records. Served whole: the
    running service reports that release, its version and its config hash - never code of one
    release with config of another."""
    import hashlib

    link = host_view(hosts, suffix, f"{root}/current")
    if not link.is_symlink():
        return ["current is missing or not a symlink"]
    target = os.readlink(link)
    release = target.rstrip("/").rsplit("/", 1)[-1]
    directory = host_view(hosts, suffix, f"{root}/releases/{release}")
    if target != f"releases/{release}" or release.endswith(".partial") or not directory.is_dir():
        return [f"current points to {target!r}, not a complete release directory"]
    meta_path = host_view(hosts, suffix, f"{root}/.golive/releases/{release}.json")
    if not meta_path.is_file():
        return [f"release {release} has no metadata"]
    meta = json.loads(meta_path.read_text())
    # a secret file's digest is in the release's run file (0600), not in its metadata (0644)
    run_path = meta_path.with_name(f"{release}.run.json")
    secret_digests = json.loads(run_path.read_text()).get("secret_files", {}) if run_path.is_file() else {}
    problems = []
    if (directory / "VERSION").read_text().strip() != meta["version"]:
        problems.append(f"release {release}: VERSION is not {meta['version']}")
    for item in meta["config_files"]:
        path = directory / "config" / item["dest"]
        want = item.get("sha256") or secret_digests.get(item["dest"])
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != want:
            problems.append(f"release {release}: config file {item['dest']} is missing or differs")
    health = health_of(f"{hosts.net}.{suffix}")
    if health is None:
        problems.append(f"release {release} is live but the service does not answer")
    elif (health.get("release"), health.get("version"), health.get("config_hash")) != \
            (release, meta["version"], meta["config_hash"]):
        problems.append(f"the service runs release {health.get('release')} version {health.get('version')} with "
                        f"config {str(health.get('config_hash'))[:12]}, but current is {release} "
                        f"(version {meta['version']}, config {meta['config_hash'][:12]})")
    return problems


def live_version(hosts: TestHosts, suffix: int, root: str = "/opt/northwind") -> str | None:
    link = host_view(hosts, suffix, f"{root}/current")
    return os.readlink(link).rsplit("/", 1)[-1].rsplit("-", 1)[0] if link.is_symlink() else None


def build_release(store: Path, version: str, *extra: str) -> None:
    subprocess.run([str(REPO / "scripts" / "build-release"), version, "--store", str(store), *extra],
                   check=True, capture_output=True)


def set_hook(workspace: Path, hook: str, command: str) -> None:
    """Set one of golive.yml's hooks (before_cutover, after_cutover, on_rollback); "" sets none."""
    app = workspace / "golive.yml"
    text, found = re.subn(rf'^(\s*{hook}): ".*"$', lambda m: f"{m.group(1)}: {json.dumps(command)}",
                          app.read_text(), flags=re.MULTILINE)
    assert found == 1, f"{app}: no single `{hook}:` line"
    app.write_text(text)


def health_retries(workspace: Path, retries: int) -> None:
    """golive.yml's health check tries `retries` times (25 in the example): a bad release fails sooner."""
    app = workspace / "golive.yml"
    text = app.read_text()
    assert text.count("retries: 25") == 1, f"{app}: no single `retries: 25` line"
    app.write_text(text.replace("retries: 25", f"retries: {retries}"))


# -- real PostgreSQL servers: one per environment, on its database host's address ------------------

PG_DIR = f"/tmp/golive-pg-{TEST_NET}"  # the postgres user must reach it (pytest's tmp_path is root's only)


@dataclass
class EnvironmentDatabase:
    """The PostgreSQL server of one environment, started for one test, and what golive connects with."""

    customer: str
    environment: str
    host: str  # its database host in the inventory
    server: object  # golive.testing.postgres.PostgresServer
    name: str
    user: str
    password: str

    def sql(self, statement: str) -> str:
        return self.server.psql(statement, self.name)

    def rows(self, statement: str) -> list[list[str]]:
        return self.server.query(statement, self.name)

    def history(self) -> list[str]:
        return [r[0] for r in self.rows("SELECT version FROM golive_schema_history ORDER BY version")]

    def columns(self, table: str = "work_orders") -> list[str]:
        return [r[0] for r in self.rows(f"SELECT column_name FROM information_schema.columns WHERE table_name = "
                                        f"'{table}' ORDER BY ordinal_position")]


class Databases:
    """Starts the servers a test asks for (by customer and environment) and stops them all after it."""

    def __init__(self, workspace: Path, directory: Path) -> None:
        self.workspace = workspace
        self.directory = directory
        self.started: dict[tuple[str, str], EnvironmentDatabase] = {}

    def start(self, customer: str = "manufacturer", *environments: str) -> list[EnvironmentDatabase]:
        from golive.testing.postgres import PostgresServer
        from golive.workspace import Workspace

        ws = Workspace(self.workspace, str(self.workspace / "vault-password.example"))
        found = []
        for environment in environments or ("staging", "production"):
            key = (customer, environment)
            if key not in self.started:
                host = ws.database_host(customer, environment)
                connection = ws.database_connection(host)
                server = PostgresServer(self.directory / f"{customer}-{environment}", connection.host,
                                        connection.port).start()
                server.create_database(connection.name, connection.user, connection.password)
                self.started[key] = EnvironmentDatabase(customer, environment, host.name, server, connection.name,
                                                        connection.user, connection.password)
            found.append(self.started[key])
        return found

    def stop_all(self) -> None:
        for database in self.started.values():
            database.server.remove()
            assert not database.server.running(), f"PostgreSQL of {database.environment} still runs"
        self.started.clear()


@pytest.fixture(scope="session")
def db_release_store(tmp_path_factory) -> Path:
    """Releases 1.0 (migration 0001), 1.1 (+0002, expand), 1.2 (+0003, contract) and 9.9, which is 1.2
    whose /health answers 503: it fails its verification after its contract migration ran."""
    store = tmp_path_factory.mktemp("db-releases")
    for version, extra in (("1.0", []), ("1.1", []), ("1.2", []), ("9.9", ["--broken-health"])):
        subprocess.run([str(REPO / "scripts" / "build-release"), version, "--store", str(store),
                        "--files", RELEASE_FILES, "--size-kb", RELEASE_KB, *extra], check=True, capture_output=True)
    return store


@pytest.fixture
def db_workspace(tmp_path, test_hosts, db_release_store) -> Path:
    """The example workspace with its database, on freshly reset hosts (servers: the databases fixture)."""
    test_hosts.reset()
    return copy_workspace(tmp_path / "ws", test_hosts, db_release_store, database=True)


@pytest.fixture
def databases(db_workspace):
    directory = Path(PG_DIR) / f"{os.getpid()}-{os.urandom(4).hex()}"
    directory.parent.mkdir(mode=0o755, exist_ok=True)
    os.chmod(directory.parent, 0o755)
    started = Databases(db_workspace, directory)
    try:
        yield started
    finally:
        started.stop_all()
        shutil.rmtree(directory, ignore_errors=True)


def work_orders(address: str, port: int = 8080, order: dict | None = None) -> tuple[int, dict]:
    """GET (or POST `order` to) the service's /work-orders: (HTTP status, JSON body)."""
    import urllib.error
    import urllib.request

    data = json.dumps(order).encode() if order is not None else None
    request = urllib.request.Request(f"http://{address}:{port}/work-orders", data=data,
                                     method="POST" if data else "GET", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())

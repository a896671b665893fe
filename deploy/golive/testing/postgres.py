"""Real PostgreSQL servers for golive's tests, benchmark and demo: one server per environment.

A server runs on the machine itself (not inside a light test host's namespaces: resetting a host
between tests must not kill it), as the ``postgres`` OS user, listening on the database host's own
address (the light hosts share the machine's network, so each host's 127.0.N.x is its own) and
on a Unix socket in its private directory. The test hosts in the inventory's ``database`` group
reach it over SSH like a real database host would (pg_dump and psql run there, against
``address:port``); application hosts connect over TCP with the rendered credentials. Moving to
real database hosts (PostgreSQL as a systemd service on a Debian test host) changes only the
fixture that starts the server, not golive.

Each server's data directory is a copy of one template cluster, made once per cache directory
with ``initdb`` (~5 s; a copy ~0.3 s). Settings favour speed over durability (``fsync=off``:
these servers hold test data only). The superuser reaches the server through the socket
(``trust`` there, the directory is 0700); every TCP login needs a password (scram-sha-256), so a
wrong password fails as on a real server.

State lives in DIR/server.json; ``stop`` ends the postmaster by its pid and waits until it is
gone. Stdlib only. Command line::

    python3 -m golive.testing.postgres up DIR --address 127.0.0.16 --port 5432 \\
        [--database NAME --owner ROLE --password-file FILE]
    python3 -m golive.testing.postgres down DIR | status DIR | psql DIR SQL
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

OS_USER = "postgres"
PG_BIN_ENV = "GOLIVE_PG_BIN"
TEMPLATE_CACHE = "/tmp/golive-pg-template"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.02
# Test servers: small, fast, not durable.
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %a ",
    "logging_collector": "off",
}


class PostgresError(Exception):
    """A problem starting or talking to a test server; the CLI prints it without a traceback."""


def pg_bin() -> Path:
    """The PostgreSQL server binaries: $GOLIVE_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    explicit = os.environ.get(PG_BIN_ENV)
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise PostgresError("no PostgreSQL server found under /usr/lib/postgresql (scripts/setup installs "
                            "postgresql-15)")
    return Path(found[-1]).parent


def _owner_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresError(f"no {OS_USER!r} OS user (installing postgresql-15 creates it)") from None
    return entry.pw_uid, entry.pw_gid


def _as_postgres() -> dict:
    uid, gid = _owner_ids()
    return {"user": uid, "group": gid, "extra_groups": []}


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for folder, names, files in os.walk(path):
        for name in names + files:
            os.lchown(os.path.join(folder, name), uid, gid)


def template_cluster(cache: str | os.PathLike = TEMPLATE_CACHE) -> Path:
    """An initdb'd cluster to copy, made once (under a lock: parallel test workers share it)."""
    cache = Path(cache)
    version = pg_bin().parent.name
    template = cache / f"cluster-{version}"
    if (template / "PG_VERSION").is_file():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    uid, gid = _owner_ids()
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (template / "PG_VERSION").is_file():
            return template
        building = cache / f".building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o700)
        os.chown(building, uid, gid)
        result = subprocess.run(
            [str(pg_bin() / "initdb"), "--no-sync", "-D", str(building / "data"), "-U", "postgres",
             "-E", "UTF8", "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"],
            capture_output=True, text=True, cwd="/", **_as_postgres())
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise PostgresError(f"initdb failed: {(result.stderr or result.stdout).strip()[-400:]}")
        hba = building / "data" / "pg_hba.conf"
        hba.write_text("# golive test server: superuser over the socket, everyone else with a password\n"
                       "local all all trust\n"
                       "host all all 0.0.0.0/0 scram-sha-256\n")
        os.chown(hba, uid, gid)
        os.rename(building / "data", template)
        shutil.rmtree(building, ignore_errors=True)
    return template


@dataclass
class PostgresServer:
    """One test server: its directory, address and port."""

    __test__ = False

    directory: Path
    address: str
    port: int = 5432

    def __post_init__(self) -> None:
        self.directory = Path(os.path.abspath(self.directory))

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    @property
    def state_file(self) -> Path:
        return self.directory / "server.json"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Start the server (a fresh cluster the first time) and wait until it accepts connections."""
        if self.running():
            return self
        uid, gid = _owner_ids()
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        os.chown(self.directory, uid, gid)
        if not (self.data / "PG_VERSION").is_file():
            shutil.copytree(template_cluster(), self.data, symlinks=True)
            _chown_tree(self.data, uid, gid)
            os.chmod(self.data, 0o700)
        stale = self.data / "postmaster.pid"
        if stale.exists():
            stale.unlink()  # a server of ours that was killed; its pid is gone (running() said so)
        argv = [str(pg_bin() / "postgres"), "-D", str(self.data), "-c", f"listen_addresses={self.address}",
                "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.socket_dir}"]
        for key, value in SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        with open(self.log, "ab") as log:
            os.chown(self.log, uid, gid)
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                                       start_new_session=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                       **_as_postgres())
        _CHILDREN[process.pid] = process
        self._save({"pid": process.pid, "address": self.address, "port": self.port})
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._ready(process.pid):
            if process.poll() is not None:
                raise PostgresError(f"PostgreSQL on {self.address}:{self.port} exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PostgresError(f"PostgreSQL on {self.address}:{self.port} did not start within "
                                    f"{START_TIMEOUT_SECONDS:.0f} s: {self._log_tail()}")
            time.sleep(POLL_SECONDS)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down (fast: SIGINT, like pg_ctl -m fast; immediate: SIGQUIT, like a crash
        of the server, recovered from the WAL on the next start) and wait until the postmaster is gone."""
        pid = self.pid()
        if pid is None or not _alive(pid):
            return
        os.kill(pid, {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "smart": signal.SIGTERM}[mode])
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            time.sleep(POLL_SECONDS)
        if _alive(pid):
            raise PostgresError(f"PostgreSQL pid {pid} did not exit")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def pid(self) -> int | None:
        try:
            return int(json.loads(self.state_file.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and _alive(pid) and _is_postmaster(pid, self.data)

    # -- SQL as the superuser ----------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres", check: bool = True) -> str:
        """Run SQL as the superuser over the socket; unaligned, tuples only."""
        result = subprocess.run(
            [str(pg_bin() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", "postgres", "-d", database, "-f", "-"],
            input=sql, capture_output=True, text=True, cwd="/", **_as_postgres())
        if check and result.returncode != 0:
            raise PostgresError(f"psql on {self.address}:{self.port}: {result.stderr.strip()[-400:]}")
        return result.stdout

    def create_database(self, name: str, owner: str, password: str) -> None:
        """A login role that owns the database and may create databases (golive restores into a new
        database and swaps the names), with this password; an existing database is dropped first."""
        role, db, secret = _ident(owner), _ident(name), password.replace("'", "''")
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner.replace(chr(39), chr(39) * 2)}'").strip()
        verb = "ALTER" if exists else "CREATE"
        self.psql(f"{verb} ROLE {role} LOGIN CREATEDB PASSWORD '{secret}'")
        self.drop_databases(name)
        self.psql(f"CREATE DATABASE {db} OWNER {role}")
        self.psql(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")

    def drop_databases(self, name: str) -> None:
        """The database and every database golive made beside it (restores, rehearsals, replaced ones)."""
        pattern = name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%").replace("'", "''")
        names = self.psql(f"SELECT datname FROM pg_database WHERE datname = '{name.replace(chr(39), chr(39) * 2)}' "
                          f"OR datname LIKE '{pattern}\\_\\_golive%'").split()
        for found in names:
            self.psql(f"DROP DATABASE IF EXISTS {_ident(found)} WITH (FORCE)")

    def query(self, sql: str, database: str) -> list[list[str]]:
        """Rows of a query (fields split on |), for assertions."""
        return [line.split("|") for line in self.psql(sql, database).splitlines() if line]

    # -- internals ---------------------------------------------------------------------------

    def _ready(self, pid: int) -> bool:
        """postmaster.pid's status line says "ready" once the server accepts connections."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def _save(self, state: dict) -> None:
        temporary = self.state_file.with_name(".server.json.tmp")
        temporary.write_text(json.dumps(state) + "\n")
        os.replace(temporary, self.state_file)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:]) or "(no output)"
        except OSError:
            return "(no log)"


_CHILDREN: dict[int, subprocess.Popen] = {}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
            return False
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _is_postmaster(pid: int, data: Path) -> bool:
    """pid is a postmaster of this data directory (not a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return os.path.basename(argv[0]) == b"postgres" and str(data).encode() in argv


# ---------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="golive.testing.postgres", description="Local PostgreSQL test servers.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a server in DIR (creating it)")
    up.add_argument("dir")
    up.add_argument("--address", required=True)
    up.add_argument("--port", type=int, default=5432)
    up.add_argument("--database")
    up.add_argument("--owner")
    up.add_argument("--password-file", help="the owner's password (first line)")
    for name in ("down", "status"):
        commands.add_parser(name).add_argument("dir")
    sql = commands.add_parser("psql", help="run SQL as the superuser")
    sql.add_argument("dir")
    sql.add_argument("sql")
    sql.add_argument("--database", default="postgres")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            server = PostgresServer(Path(args.dir), args.address, args.port).start()
            if args.database:
                if not (args.owner and args.password_file):
                    raise PostgresError("--database needs --owner and --password-file")
                password = Path(args.password_file).read_text().splitlines()[0]
                server.create_database(args.database, args.owner, password)
            print(f"PostgreSQL up on {server.address}:{server.port} (pid {server.pid()}, {server.directory})")
            return 0
        state = json.loads((Path(args.dir) / "server.json").read_text())
        server = PostgresServer(Path(args.dir), state["address"], state["port"])
        if args.command == "down":
            server.stop()
        elif args.command == "status":
            print(f"{server.address}:{server.port} {'up' if server.running() else 'down'}")
        else:
            print(server.psql(args.sql, args.database), end="")
        return 0
    except (PostgresError, OSError) as error:
        print(f"postgres: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

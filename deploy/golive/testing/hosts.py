"""Real local SSH test hosts: one OpenSSH server per host, each with its own address and filesystem.

Host N listens on <net>.N:22 and lives in its own mount and UTS namespace, where per-host
directories are bind-mounted onto the application paths (``--bind``, by default ``/opt/northwind``
and ``/etc/northwind``) and a clean, empty home is bind-mounted onto ``/root``. A file written on
one host is therefore invisible on the others and on the real root, while binaries, python3 and
the network are shared.

Each namespace is kept alive by a holder process (``sleep infinity``) rather than by sshd itself, so
that ``stop``/``start``/``rekey`` restart sshd inside the same namespace: the bind mounts, and the
application daemons that deploys start there, survive an sshd restart like on a real machine.

State lives in DIR (default /tmp/golive-testhosts)::

    DIR/hosts.json                      what is running (read by fixtures, the benchmark and ``down``)
    DIR/client_key, client_key.pub      the one client key every host accepts
    DIR/authorized_keys, known_hosts    known_hosts is built from the host key files, never by connecting
    DIR/hosts/<addr>/<mangled path>/    the bind sources, e.g. hosts/127.0.0.11/opt_northwind
    DIR/hosts/<addr>/sshd/              sshd_config, host key, log

Usable as a library (``TestHosts``) and as ``python3 -m golive.testing`` (``scripts/testhosts``).
Stdlib only: the test fixtures and the benchmark import it before anything else is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_DIR = "/tmp/golive-testhosts"
DEFAULT_NET = "127.0.0"
DEFAULT_FIRST = 11
DEFAULT_BINDS = ("/opt/northwind", "/etc/northwind")
HOME = "/root"
SSH_PORT = 22
SSHD = "/usr/sbin/sshd"
# Executables that count as "the host's sshd" (listener and per-connection processes); OpenSSH 9.8+
# splits the per-connection part into sshd-session and sshd-auth.
SSHD_EXECUTABLES = frozenset({"sshd", "sshd-session", "sshd-auth"})
TERM_GRACE_SECONDS = 3.0
KILL_WAIT_SECONDS = 5.0
START_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.01
# sshd sessions get sshd's compiled-in PATH; our own children get this one, not the caller's (which
# may put a pyenv shim first).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Sets up the namespace that `unshare` just created, reports readiness on stdout, then keeps the
# namespace alive. Arguments: hostname, then (source, target) pairs to bind-mount.
HOLDER_SCRIPT = """set -e
hostname "$1"; shift
while [ "$#" -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done
echo ready
exec sleep infinity >/dev/null
"""


class TestHostsError(Exception):
    """A problem the caller can act on; the CLI prints the message without a traceback."""

    __test__ = False


@dataclass(frozen=True)
class HostInfo:
    """One test host as recorded in hosts.json. ``pid`` is sshd's pid, None while stopped."""

    __test__ = False

    name: str
    address: str
    port: int
    pid: int | None
    root: str
    binds: dict[str, str] = field(hash=False)  # bind target -> per-host source directory


# Every process this Python process spawned, so that the ones that die are reaped (a zombie would
# otherwise look alive to `kill -0`) and no Popen is garbage-collected while its child still runs.
_children: dict[int, subprocess.Popen] = {}


class TestHosts:
    """A set of local SSH test hosts managed in one state directory."""

    __test__ = False

    def __init__(
        self,
        dir: str | os.PathLike = DEFAULT_DIR,
        net: str = DEFAULT_NET,
        first: int = DEFAULT_FIRST,
        binds: Sequence[str] = DEFAULT_BINDS,
    ) -> None:
        self.dir = Path(os.path.abspath(dir))
        if any(c.isspace() or c == "\\" for c in str(self.dir)):
            # sshd_config and /proc/*/mountinfo would need quoting and unescaping for it
            raise TestHostsError(f"--dir must not contain whitespace or backslashes: {self.dir}")
        self.net = _checked_net(net)
        self.first = int(first)
        self.binds = _checked_binds(binds, self.dir)

    # ----------------------------------------------------------------- paths and recorded state

    @property
    def client_key(self) -> str:
        return str(self.dir / "client_key")

    @property
    def known_hosts(self) -> str:
        return str(self.dir / "known_hosts")

    @property
    def hosts(self) -> list[HostInfo]:
        state = self._load_state()
        return [_host_info(record) for record in state["hosts"]] if state else []

    def status(self) -> dict[str, bool]:
        """Host name -> whether its sshd is running."""
        state = self._load_state()
        if not state:
            return {}
        return {r["name"]: _is_alive(r["pid"], r) for r in state["hosts"]}

    def is_up(self) -> bool:
        """True while any recorded host namespace is alive in DIR."""
        state = self._load_state()
        return bool(state) and any(_is_alive(r["holder_pid"], r) for r in state["hosts"])

    # ------------------------------------------------------------------------------ lifecycle

    def up(self, n: int) -> list[HostInfo]:
        """Start n hosts, or return the running ones when exactly these n are already up."""
        addresses = self._addresses(n)
        state = self._load_state()
        if state and self.is_up():
            running = [r["address"] for r in state["hosts"]]
            if running != addresses:
                raise TestHostsError(
                    f"{len(running)} host(s) ({running[0]} .. {running[-1]}) are already up in {self.dir}, "
                    f"not the {n} requested; run `down --dir {self.dir}` first"
                )
            stopped = [name for name, sshd_running in self.status().items() if not sshd_running]
            if stopped:
                raise TestHostsError(
                    f"hosts are up in {self.dir} but sshd is stopped on: {', '.join(stopped)}"
                )
            return self.hosts
        _ensure_sshd_installed()
        busy = sorted(a for a in addresses if _is_listening(a, SSH_PORT))
        if busy:
            raise TestHostsError(f"something already listens on port {SSH_PORT} of {', '.join(busy)}")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # Debian's sshd refuses to start without it
        for target in (*self.binds, HOME):
            os.makedirs(target, exist_ok=True)  # a bind mount needs its target in the real root

        records = [self._prepare_host(address) for address in addresses]
        self._write_keys_and_configs(records)
        state = {
            "net": self.net,
            "dir": str(self.dir),
            "client_key": self.client_key,
            "known_hosts": self.known_hosts,
            "hosts": records,
        }
        self._start_namespaces(records)
        self._save_state(state)  # saved before sshd starts so that `down` can clean up a half-started set
        try:
            for record in records:
                record["pid"] = _spawn_sshd(record)
            self._save_state(state)
            _wait_listening(records)
        except BaseException:
            self.down()
            raise
        return self.hosts

    def down(self, purge: bool = False) -> None:
        """Stop every sshd and every process inside the hosts' namespaces; wait until they are gone."""
        state = self._load_state()
        if state:
            # The recorded sshd and holder pids are among them: both live in their host's namespace.
            _terminate(_processes_in(state["hosts"]), grace=TERM_GRACE_SECONDS)
            for record in state["hosts"]:
                # Forget the namespace too: once it is gone the kernel may give its id to another one.
                record["pid"] = record["holder_pid"] = record["mnt_ns"] = None
            self._save_state(state)
        if purge:
            if state is None and self.dir.exists() and any(self.dir.iterdir()):
                raise TestHostsError(f"{self.dir} has no hosts.json; refusing to delete it")
            shutil.rmtree(self.dir, ignore_errors=True)

    def reset(self, names: Iterable[str] | None = None) -> None:
        """Kill every non-sshd process in the given hosts (all by default) and empty their binds.

        SIGKILL, not SIGTERM: this is a power cut between tests, and it must stay fast.
        """
        state = self._require_state()
        records = state["hosts"] if names is None else [self._find(state, n) for n in names]
        holders = {r["holder_pid"] for r in records}
        victims = [
            pid
            for pid in _processes_in(records)
            if pid not in holders and _executable_name(pid) not in SSHD_EXECUTABLES
        ]
        _terminate(victims, grace=0)
        for record in records:
            for source in record["binds"].values():
                _empty_directory(Path(source))

    def stop(self, name: str) -> None:
        """Stop one host's sshd, open sessions included; its namespace and daemons stay."""
        state = self._require_state()
        record = self._find(state, name)
        sshd_processes = [pid for pid in _processes_in([record]) if _executable_name(pid) in SSHD_EXECUTABLES]
        _terminate(sshd_processes, grace=TERM_GRACE_SECONDS)
        record["pid"] = None
        self._save_state(state)

    def start(self, name: str) -> None:
        """Start one host's sshd again inside its namespace (no-op when it runs)."""
        state = self._require_state()
        record = self._find(state, name)
        if not _is_alive(record["holder_pid"], record):
            raise TestHostsError(f"host {record['name']} is down; use `up` to start the set")
        if _is_alive(record["pid"], record):
            return
        if _is_listening(record["address"], SSH_PORT):
            raise TestHostsError(f"something else listens on {record['address']}:{SSH_PORT}")
        record["pid"] = _spawn_sshd(record)
        self._save_state(state)
        _wait_listening([record])

    def rekey(self, name: str) -> None:
        """Give one host a new host key and restart its sshd; known_hosts keeps the old key."""
        state = self._require_state()
        record = self._find(state, name)
        key = Path(record["host_key"])
        key.unlink(missing_ok=True)
        Path(f"{key}.pub").unlink(missing_ok=True)
        _generate_keys([(key, f"root@{record['name']}")])
        self.stop(record["name"])
        self.start(record["name"])

    def exec(
        self, name: str, argv: Sequence[str], *, capture: bool = True, check: bool = False
    ) -> subprocess.CompletedProcess:
        """Run argv inside one host's namespaces (set-up only; deploys must go through SSH)."""
        state = self._require_state()
        record = self._find(state, name)
        if not _is_alive(record["holder_pid"], record):
            raise TestHostsError(f"host {record['name']} is down")
        command = ["nsenter", "-t", str(record["holder_pid"]), "-m", "-u", "--wd", "--", *argv]
        return subprocess.run(command, capture_output=capture, text=True, check=check)

    # ------------------------------------------------------------------------------- internals

    def _addresses(self, n: int) -> list[str]:
        last = self.first + n - 1
        if n < 1 or self.first < 1 or last > 254:
            raise TestHostsError(
                f"cannot place {n} host(s) from {self.net}.{self.first}: last octet must be 1..254"
            )
        return [f"{self.net}.{octet}" for octet in range(self.first, last + 1)]

    def _prepare_host(self, address: str) -> dict:
        root = self.dir / "hosts" / address
        sshd_dir = root / "sshd"
        binds = {target: str(root / _mangle(target)) for target in (*self.binds, HOME)}
        for directory in (sshd_dir, *map(Path, binds.values())):
            directory.mkdir(parents=True, exist_ok=True)
        return {
            "name": f"h{address.rsplit('.', 1)[1]}",
            "address": address,
            "port": SSH_PORT,
            "pid": None,
            "root": str(root),
            "binds": binds,
            "holder_pid": None,
            "mnt_ns": None,
            "host_key": str(sshd_dir / "ssh_host_ed25519_key"),
            "sshd_config": str(sshd_dir / "sshd_config"),
            "log": str(sshd_dir / "host.log"),
        }

    def _write_keys_and_configs(self, records: list[dict]) -> None:
        """Create missing keys (kept across down/up), then authorized_keys, known_hosts, configs."""
        missing = [(Path(self.client_key), "golive-testhosts-client")]
        missing += [(Path(r["host_key"]), f"root@{r['name']}") for r in records]
        _generate_keys([(path, comment) for path, comment in missing if not path.exists()])
        authorized_keys = self.dir / "authorized_keys"
        _write_text(authorized_keys, Path(f"{self.client_key}.pub").read_text())
        known_hosts = []
        for record in records:
            key_type, key_body = Path(f"{record['host_key']}.pub").read_text().split()[:2]
            known_hosts.append(f"{record['address']} {key_type} {key_body}\n")
            _write_text(Path(record["sshd_config"]), _sshd_config(record, authorized_keys))
        _write_text(Path(self.known_hosts), "".join(known_hosts))

    def _start_namespaces(self, records: list[dict]) -> None:
        """Start every holder first and only then wait for them, so the set starts in parallel."""
        holders = []
        for record in records:
            mounts = [arg for target, source in record["binds"].items() for arg in (source, target)]
            holders.append(
                _spawn(
                    [
                        "unshare",
                        "-m",
                        "--propagation",
                        "private",
                        "-u",
                        "sh",
                        "-c",
                        HOLDER_SCRIPT,
                        "holder",
                        record["name"],
                        *mounts,
                    ],
                    log=record["log"],
                    stdout=subprocess.PIPE,
                )
            )
        try:
            for record, holder in zip(records, holders, strict=True):
                ready = holder.stdout.readline()
                holder.stdout.close()
                if ready.strip() != b"ready":
                    raise TestHostsError(f"host {record['name']} failed to set up: {_tail(record['log'])}")
                record["holder_pid"] = holder.pid
                record["mnt_ns"] = _mnt_ns(holder.pid)
        except BaseException:
            # Nothing is recorded yet, so `down` could not find these: end them here.
            _terminate([holder.pid for holder in holders], grace=0)
            raise

    def _find(self, state: dict, name: str) -> dict:
        for record in state["hosts"]:
            if name in (record["name"], record["address"]):
                return record
        known = ", ".join(r["name"] for r in state["hosts"])
        raise TestHostsError(f"no host {name!r} in {self.dir} (hosts: {known})")

    def _load_state(self) -> dict | None:
        try:
            return json.loads((self.dir / "hosts.json").read_text())
        except FileNotFoundError:
            return None

    def _require_state(self) -> dict:
        state = self._load_state()
        if not state:
            raise TestHostsError(f"no test hosts in {self.dir}; run `up` first")
        return state

    def _save_state(self, state: dict) -> None:
        _write_text(self.dir / "hosts.json", json.dumps(state, indent=2) + "\n")


# ------------------------------------------------------------------------------ helpers


def _checked_net(net: str) -> str:
    parts = net.split(".")
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts) or parts[0] != "127":
        raise TestHostsError(f"--net must be three octets on the loopback range, like 127.0.0 (got {net!r})")
    return net


def _checked_binds(binds: Sequence[str], state_dir: Path) -> tuple[str, ...]:
    normalized = tuple(os.path.normpath(b) for b in binds)
    for target in normalized:
        if not os.path.isabs(target) or target in ("/", HOME):
            raise TestHostsError(f"--bind needs an absolute path other than / and {HOME} (got {target!r})")
    mangled = [_mangle(t) for t in (*normalized, HOME)]
    if len(set(mangled)) != len(mangled) or "sshd" in mangled:
        raise TestHostsError(f"--bind paths {', '.join(normalized)} collide in the per-host directory names")
    for target in (*normalized, HOME):
        if state_dir == Path(target) or Path(target) in state_dir.parents:
            # sshd would read its config and keys through the bind mount and find nothing
            raise TestHostsError(f"--dir {state_dir} must not lie under the bind target {target}")
    return normalized


def _mangle(target: str) -> str:
    """The per-host directory name for a bind target: /opt/northwind -> opt_northwind."""
    return target.strip("/").replace("/", "_")


def _host_info(record: dict) -> HostInfo:
    return HostInfo(
        name=record["name"],
        address=record["address"],
        port=record["port"],
        pid=record["pid"],
        root=record["root"],
        binds=dict(record["binds"]),
    )


def _sshd_config(record: dict, authorized_keys: Path) -> str:
    return f"""# golive test host {record["name"]}: generated by golive.testing.hosts
ListenAddress {record["address"]}:{record["port"]}
HostKey "{record["host_key"]}"
AuthorizedKeysFile "{authorized_keys}"
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 200
Subsystem sftp internal-sftp
LogLevel ERROR
"""


def _ensure_sshd_installed() -> None:
    if os.path.exists(SSHD):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "openssh-server"]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if not os.path.exists(SSHD):
        raise TestHostsError(f"installing openssh-server did not provide {SSHD}")


def _generate_keys(keys: list[tuple[Path, str]]) -> None:
    """ssh-keygen for every (path, comment) in parallel."""
    jobs = [
        (
            path,
            subprocess.Popen(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            ),
        )
        for path, comment in keys
    ]
    for path, job in jobs:
        output, _ = job.communicate()
        if job.returncode != 0:
            raise TestHostsError(f"ssh-keygen failed for {path}: {output.decode(errors='replace').strip()}")


def _spawn(argv: list[str], log: str, stdout=None) -> subprocess.Popen:
    """Start a detached process (own session, so it outlives the CLI call that started it)."""
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file if stdout is None else stdout,
            stderr=log_file,
            cwd="/",
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
            start_new_session=True,
        )
    _children[process.pid] = process
    return process


def _spawn_sshd(record: dict) -> int:
    # nsenter joins the holder's namespaces and execs sshd in place, so the pid is sshd's own.
    argv = [
        "nsenter",
        "-t",
        str(record["holder_pid"]),
        "-m",
        "-u",
        SSHD,
        "-D",
        "-e",
        "-f",
        record["sshd_config"],
    ]
    return _spawn(argv, log=record["log"]).pid


def _wait_listening(records: list[dict]) -> None:
    """Wait until every host's sshd listens, failing fast with its log when one exits."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    waiting = list(records)
    while waiting:
        listening = _listening_sockets()
        waiting = [r for r in waiting if (r["address"], r["port"]) not in listening]
        for record in waiting:
            # Not _is_alive: nsenter joins the host's namespace a moment after it starts, and until
            # then the pid looks like a stranger's. We spawned it, so its exit status is the truth.
            if _is_gone(record["pid"]):
                raise TestHostsError(f"sshd of {record['name']} exited: {_tail(record['log'])}")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(r["name"] for r in waiting)
            raise TestHostsError(f"sshd did not listen within {START_TIMEOUT_SECONDS:.0f} s on: {names}")
        if waiting:
            time.sleep(POLL_SECONDS)


def _listening_sockets() -> set[tuple[str, int]]:
    """(address, port) of every IPv4 TCP socket in LISTEN state.

    Read from /proc rather than probed with connect(): a probe makes sshd fork a session and log
    an aborted key exchange for every host.
    """
    sockets = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # TCP_LISTEN
                address_hex, port_hex = local.split(":")
                address = socket.inet_ntoa(struct.pack("<I", int(address_hex, 16)))
                sockets.add((address, int(port_hex, 16)))
    return sockets


def _is_listening(address: str, port: int) -> bool:
    listening = _listening_sockets()
    return (address, port) in listening or ("0.0.0.0", port) in listening


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _executable_name(pid: int) -> str | None:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def _is_gone(pid: int) -> bool:
    """Exited (a zombie counts: it holds no resources and only waits for its parent)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def _in_host_namespace(pid: int, record: dict) -> bool:
    """pid lives in the namespace this host was given.

    The kernel reuses a namespace's id once the namespace is gone, so the id alone could name a
    stranger's namespace; the bind of this host's own home directory onto /root cannot.
    """
    if record["mnt_ns"] is None or _mnt_ns(pid) != record["mnt_ns"]:
        return False
    home_source = record["binds"][HOME]
    try:
        with open(f"/proc/{pid}/mountinfo") as mounts:
            # fields: id, parent, major:minor, root (path inside its filesystem), mount point, ...
            return any(
                fields[4] == HOME and fields[3] != "/" and home_source.endswith(fields[3])
                for fields in map(str.split, mounts)
            )
    except OSError:
        return False


def _is_alive(pid: int | None, record: dict) -> bool:
    """pid runs and still is the process we recorded for this host (not a reused pid)."""
    return pid is not None and _in_host_namespace(pid, record) and not _is_gone(pid)


def _processes_in(records: Iterable[dict]) -> list[int]:
    """Every live process inside one of these hosts' namespaces."""
    by_namespace = {r["mnt_ns"]: r for r in records if r["mnt_ns"]}
    verified: dict[str, bool] = {}  # namespace id -> is the host's (checked once per namespace)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        namespace = _mnt_ns(pid)
        if namespace not in by_namespace:
            continue
        if namespace not in verified:
            verified[namespace] = _in_host_namespace(pid, by_namespace[namespace])
        if verified[namespace] and not _is_gone(pid):
            pids.append(pid)
    return pids


def _terminate(pids: Iterable[int], grace: float) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds (at once when grace is 0)."""
    remaining = set(pids)
    first_signal = signal.SIGTERM if grace > 0 else signal.SIGKILL
    for sig, wait in ((first_signal, grace), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while remaining and time.monotonic() < deadline:
            remaining = {pid for pid in remaining if not _is_gone(pid)}
            if remaining:
                time.sleep(POLL_SECONDS)
        if not remaining:
            return
    raise TestHostsError(f"processes did not exit after SIGKILL: {sorted(remaining)}")


def _empty_directory(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a concurrent reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _tail(log: str, lines: int = 5) -> str:
    try:
        return (
            " | ".join(Path(log).read_text(errors="replace").strip().splitlines()[-lines:]) or "(no output)"
        )
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testhosts", description="Local SSH test hosts for golive.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--dir", default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})")
        return sub

    up = command("up", "start N hosts")
    up.add_argument("n", type=int, metavar="N")
    up.add_argument("--net", default=DEFAULT_NET, help=f"first three octets (default {DEFAULT_NET})")
    up.add_argument(
        "--first", type=int, default=DEFAULT_FIRST, help=f"first host's last octet (default {DEFAULT_FIRST})"
    )
    up.add_argument(
        "--bind",
        action="append",
        metavar="PATH",
        help="path each host gets privately (repeatable; default: " + ", ".join(DEFAULT_BINDS) + ")",
    )
    down = command("down", "stop every host and every process in their namespaces")
    down.add_argument("--purge", action="store_true", help="also delete DIR")
    status = command("status", "one line per host")
    status.add_argument("--json", action="store_true")
    reset = command("reset", "kill non-sshd processes and empty the bind directories")
    reset.add_argument("hosts", nargs="*", metavar="HOST")
    for name, help in (
        ("stop", "stop one host's sshd"),
        ("start", "start one host's sshd"),
        ("rekey", "new host key for one host, known_hosts left as it was"),
    ):
        command(name, help).add_argument("host", metavar="HOST")
    command("exec", "run a command inside one host's namespaces: exec HOST -- CMD...").add_argument(
        "host", metavar="HOST"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `exec ... --` is the command, even words that look like our options.
    command: list[str] = []
    if argv[:1] == ["exec"] and "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    parser = _parser()
    args, unparsed = parser.parse_known_args(argv)
    if args.command == "exec":
        args.argv = unparsed + command  # `exec HOST CMD...` without `--` works for simple commands
    elif unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    try:
        return _run(args)
    except TestHostsError as error:
        print(f"testhosts: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "up":
        hosts = TestHosts(args.dir, net=args.net, first=args.first, binds=args.bind or DEFAULT_BINDS)
        already_up = hosts.is_up()
        started = time.monotonic()
        running = hosts.up(args.n)
        if already_up:
            print(f"{len(running)} host(s) already up in {hosts.dir}")
        else:
            print(
                f"{len(running)} host(s) up in {time.monotonic() - started:.2f} s: "
                f"{running[0].address} .. {running[-1].address} (state in {hosts.dir})"
            )
        print(
            f"ssh -i {hosts.client_key} -o UserKnownHostsFile={hosts.known_hosts} "
            f"-o StrictHostKeyChecking=yes root@{running[0].address}"
        )
        return 0

    hosts = TestHosts(args.dir)
    if args.command == "down":
        hosts.down(purge=args.purge)
    elif args.command == "status":
        running = hosts.status()
        rows = [{**asdict(h), "up": running[h.name]} for h in hosts.hosts]
        if args.json:
            print(json.dumps({"dir": str(hosts.dir), "hosts": rows}, indent=2))
        elif not rows:
            print(f"no test hosts in {hosts.dir}")
        for row in [] if args.json else rows:
            print(f"{row['name']:<6} {row['address']:<15} {'up' if row['up'] else 'down'}")
    elif args.command == "reset":
        hosts.reset(args.hosts or None)
    elif args.command == "stop":
        hosts.stop(args.host)
    elif args.command == "start":
        hosts.start(args.host)
    elif args.command == "rekey":
        hosts.rekey(args.host)
    elif args.command == "exec":
        if not args.argv:
            raise TestHostsError("exec needs a command: exec HOST -- CMD...")
        return hosts.exec(args.host, args.argv, capture=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())

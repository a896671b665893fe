"""Light local SSH test hosts: one OpenSSH server per host, each with its own address and filesystem.

Host N listens on <net>.N:22 and lives in its own mount and UTS namespace, where per-host
directories are bind-mounted onto the application paths and a clean, empty home is bind-mounted
onto ``/root``. A file written on one host is therefore invisible on the others and on the real
root, while binaries, python3 and the network are shared. For real Debian servers booting systemd
see ``golive.testing.systemd``.

The application paths are the bind targets (``binds``, ``--bind PATH``, repeatable; by default
``/opt/northwind`` and ``/etc/northwind``): each host gets its own empty directory mounted there.
A bind mount needs its target to exist on the real machine, so ``up`` creates a missing target as
an empty directory and says so on stderr (it is left in place: ``rmdir`` it when no hosts run).

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

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from golive.testing._common import (
    POLL_SECONDS,
    SSH_PORT,
    SSHD_EXECUTABLES,
    HostInfo,
    TestHostsError,
    checked_net,
    describe,
    executable_name,
    generate_keys,
    is_gone,
    is_listening,
    listening_sockets,
    mnt_ns,
    spawn,
    ssh_argv,
    tail,
    terminate,
    write_text,
)

DEFAULT_DIR = "/tmp/golive-testhosts"
DEFAULT_NET = "127.0.0"
DEFAULT_FIRST = 11
DEFAULT_BINDS = ("/opt/northwind", "/etc/northwind")
HOME = "/root"
SSHD = "/usr/sbin/sshd"
TERM_GRACE_SECONDS = 3.0
START_TIMEOUT_SECONDS = 10.0

# Sets up the namespace that `unshare` just created, reports readiness on stdout, then keeps the
# namespace alive. Arguments: hostname, then (source, target) pairs to bind-mount.
HOLDER_SCRIPT = """set -e
hostname "$1"; shift
while [ "$#" -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done
echo ready
exec sleep infinity >/dev/null
"""

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
        self.net = checked_net(net)
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
        busy = sorted(a for a in addresses if is_listening(a, SSH_PORT))
        if busy:
            raise TestHostsError(f"something already listens on port {SSH_PORT} of {', '.join(busy)}")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # Debian's sshd refuses to start without it
        self._create_bind_targets()

        records = [self._prepare_host(address) for address in addresses]
        self._write_keys_and_configs(records)
        state = {
            "kind": "light",
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
        """Stop every sshd and every process inside the hosts' namespaces, then verify they are gone.

        Raises TestHostsError, keeping hosts.json for another try, when anything is left: a process
        in a host's namespace, a process in a namespace recorded for a host that cannot be verified
        as that host's (not killed: it may be someone else's), or a socket on a host's address.
        """
        state = self._load_state()
        if state:
            # The recorded sshd and holder pids are among them: both live in their host's namespace.
            terminate(_processes_in(state["hosts"]), grace=TERM_GRACE_SECONDS)
            self._verify_down(state["hosts"])
            for record in state["hosts"]:
                # Forget the namespace too: once it is gone the kernel may give its id to another one.
                record["pid"] = record["holder_pid"] = record["mnt_ns"] = record["home_id"] = None
            self._save_state(state)
        if purge:
            if state is None and self.dir.exists() and any(self.dir.iterdir()):
                raise TestHostsError(f"{self.dir} has no hosts.json; refusing to delete it")
            shutil.rmtree(self.dir, ignore_errors=True)

    def _verify_down(self, records: list[dict]) -> None:
        verified, unverified = _namespace_members(records)
        problems = []
        if verified:
            problems.append(f"still running in the hosts' namespaces: {describe(verified)}")
        for namespace, pids in unverified.items():
            problems.append(
                f"in mount namespace {namespace}, recorded for a host but not showing its home, so not "
                f"killed (they may be someone else's): {describe(pids)}"
            )
        listening = listening_sockets()
        busy = [r["address"] for r in records if (r["address"], r["port"]) in listening]
        if busy:
            problems.append(f"something still listens on port {SSH_PORT} of {', '.join(busy)}")
        if problems:
            raise TestHostsError(
                f"down left hosts of {self.dir} running: {'; '.join(problems)} (hosts.json kept for another `down`)"
            )

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
            if pid not in holders and executable_name(pid) not in SSHD_EXECUTABLES
        ]
        terminate(victims, grace=0)
        for record in records:
            for source in record["binds"].values():
                _empty_directory(Path(source))

    def stop(self, name: str) -> None:
        """Stop one host's sshd, open sessions included; its namespace and daemons stay."""
        state = self._require_state()
        record = self._find(state, name)
        sshd_processes = [pid for pid in _processes_in([record]) if executable_name(pid) in SSHD_EXECUTABLES]
        terminate(sshd_processes, grace=TERM_GRACE_SECONDS)
        record["pid"] = None
        self._save_state(state)

    def pause(self, name: str, *, paused: bool = True) -> None:
        """Freeze (SIGSTOP) or continue one host's sshd, open sessions included: frozen, the host
        takes connections and requests and answers none, as a hung host does. What its sessions run
        (the agent, a hook) runs on."""
        import signal

        record = self._find(self._require_state(), name)
        for pid in _processes_in([record]):
            if executable_name(pid) in SSHD_EXECUTABLES:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def start(self, name: str) -> None:
        """Start one host's sshd again inside its namespace (no-op when it runs)."""
        state = self._require_state()
        record = self._find(state, name)
        if not _is_alive(record["holder_pid"], record):
            raise TestHostsError(f"host {record['name']} is down; use `up` to start the set")
        if _is_alive(record["pid"], record):
            return
        if is_listening(record["address"], SSH_PORT):
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
        generate_keys([(key, f"root@{record['name']}")])
        self.stop(record["name"])
        self.start(record["name"])

    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        capture: bool = True,
        check: bool = False,
        input: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess:
        """Run argv inside one host's namespaces (set-up only; deploys must go through SSH)."""
        state = self._require_state()
        record = self._find(state, name)
        if not _is_alive(record["holder_pid"], record):
            raise TestHostsError(f"host {record['name']} is down")
        command = ["nsenter", "-t", str(record["holder_pid"]), "-m", "-u", "--wd", "--", *argv]
        return subprocess.run(command, capture_output=capture, text=True, check=check, input=input, timeout=timeout)

    def ssh(
        self, name: str, command: str, *, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """OpenSSH to one host as root, host key checked strictly against known_hosts."""
        state = self._require_state()
        record = self._find(state, name)
        argv = ssh_argv(self.client_key, self.known_hosts, record["address"], record["port"])
        return subprocess.run([*argv, command], input=input, capture_output=True, timeout=timeout)

    def path(self, name: str, path: str) -> Path:
        """A path as the host itself sees it, through its namespace's root (for assertions and set-up;
        valid while the host is up)."""
        state = self._require_state()
        record = self._find(state, name)
        if not _is_alive(record["holder_pid"], record):
            raise TestHostsError(f"host {record['name']} is down")
        return Path(f"/proc/{record['holder_pid']}/root") / path.lstrip("/")

    # ------------------------------------------------------------------------------- internals

    def _create_bind_targets(self) -> None:
        """A bind mount needs its target on the real machine: create the missing ones, and say so."""
        created = []
        for target in (*self.binds, HOME):
            if os.path.isdir(target):
                continue
            if os.path.lexists(target):
                raise TestHostsError(f"bind target {target} exists on this machine but is not a directory")
            missing = [target]
            while not os.path.lexists(os.path.dirname(missing[-1])):
                missing.append(os.path.dirname(missing[-1]))
            os.makedirs(target)
            created += reversed(missing)
        if created:
            print(
                f"testhosts: created {', '.join(created)} on this machine: empty directories to mount the "
                "hosts' own onto (bind targets); left in place, `rmdir` them when no hosts run",
                file=sys.stderr,
            )

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
            "home_id": None,
            "host_key": str(sshd_dir / "ssh_host_ed25519_key"),
            "sshd_config": str(sshd_dir / "sshd_config"),
            "log": str(sshd_dir / "host.log"),
        }

    def _write_keys_and_configs(self, records: list[dict]) -> None:
        """Create missing keys (kept across down/up), then authorized_keys, known_hosts, configs."""
        missing = [(Path(self.client_key), "golive-testhosts-client")]
        missing += [(Path(r["host_key"]), f"root@{r['name']}") for r in records]
        generate_keys([(path, comment) for path, comment in missing if not path.exists()])
        authorized_keys = self.dir / "authorized_keys"
        write_text(authorized_keys, Path(f"{self.client_key}.pub").read_text())
        known_hosts = []
        for record in records:
            key_type, key_body = Path(f"{record['host_key']}.pub").read_text().split()[:2]
            known_hosts.append(f"{record['address']} {key_type} {key_body}\n")
            write_text(Path(record["sshd_config"]), _sshd_config(record, authorized_keys))
        write_text(Path(self.known_hosts), "".join(known_hosts))

    def _start_namespaces(self, records: list[dict]) -> None:
        """Start every holder first and only then wait for them, so the set starts in parallel."""
        holders = []
        for record in records:
            mounts = [arg for target, source in record["binds"].items() for arg in (source, target)]
            holders.append(
                spawn(
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
                    raise TestHostsError(f"host {record['name']} failed to set up: {tail(record['log'])}")
                record["holder_pid"] = holder.pid
                record["mnt_ns"] = mnt_ns(holder.pid)
                record["home_id"] = _home_identity(holder.pid)
        except BaseException:
            # Nothing is recorded yet, so `down` could not find these: end them here.
            terminate([holder.pid for holder in holders], grace=0)
            raise

    def _find(self, state: dict, name: str) -> dict:
        for record in state["hosts"]:
            if name in (record["name"], record["address"]):
                return record
        known = ", ".join(r["name"] for r in state["hosts"])
        raise TestHostsError(f"no host {name!r} in {self.dir} (hosts: {known})")

    def _load_state(self) -> dict | None:
        try:
            state = json.loads((self.dir / "hosts.json").read_text())
        except FileNotFoundError:
            return None
        if state.get("kind", "light") != "light":
            raise TestHostsError(f"{self.dir} holds {state['kind']} test hosts, not light ones (add --systemd)")
        return state

    def _require_state(self) -> dict:
        state = self._load_state()
        if not state:
            raise TestHostsError(f"no test hosts in {self.dir}; run `up` first")
        return state

    def _save_state(self, state: dict) -> None:
        write_text(self.dir / "hosts.json", json.dumps(state, indent=2) + "\n")


# ------------------------------------------------------------------------------ helpers




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
    return spawn(argv, log=record["log"]).pid


def _wait_listening(records: list[dict]) -> None:
    """Wait until every host's sshd listens, failing fast with its log when one exits."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    waiting = list(records)
    while waiting:
        listening = listening_sockets()
        waiting = [r for r in waiting if (r["address"], r["port"]) not in listening]
        for record in waiting:
            # Not _is_alive: nsenter joins the host's namespace a moment after it starts, and until
            # then the pid looks like a stranger's. We spawned it, so its exit status is the truth.
            if is_gone(record["pid"]):
                raise TestHostsError(f"sshd of {record['name']} exited: {tail(record['log'])}")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(r["name"] for r in waiting)
            raise TestHostsError(f"sshd did not listen within {START_TIMEOUT_SECONDS:.0f} s on: {names}")
        if waiting:
            time.sleep(POLL_SECONDS)












def _home_identity(pid: int) -> list[int] | None:
    """(device, inode) of the directory that process sees as /root."""
    try:
        st = os.stat(f"/proc/{pid}/root{HOME}")
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def _in_host_namespace(pid: int, record: dict) -> bool:
    """pid lives in the namespace this host was given.

    The kernel reuses a namespace's id once the namespace is gone, so the id alone could name a
    stranger's namespace; the host's own home, bound onto /root, cannot. It is compared by identity
    (device and inode, seen through the process's root), never by path: when /tmp is a bind mount
    of another directory (systemd's PrivateTmp, a container's `-v dir:/tmp`), the paths in
    /proc/<pid>/mountinfo are not the paths the harness used.
    """
    if record["mnt_ns"] is None or mnt_ns(pid) != record["mnt_ns"]:
        return False
    home = record.get("home_id")
    if home is None:  # recorded by an older harness: the home's identity as the caller sees it now
        try:
            st = os.stat(record["binds"][HOME])
        except OSError:
            return False
        home = [st.st_dev, st.st_ino]
    return _home_identity(pid) == home


def _is_alive(pid: int | None, record: dict) -> bool:
    """pid runs and still is the process we recorded for this host (not a reused pid)."""
    return pid is not None and _in_host_namespace(pid, record) and not is_gone(pid)


def _namespace_members(records: Iterable[dict]) -> tuple[list[int], dict[str, list[int]]]:
    """Live processes in the mount namespaces recorded for these hosts: (those in a namespace
    verified to be its host's, {namespace: pids} of namespaces none of whose members verifies)."""
    by_namespace = {r["mnt_ns"]: r for r in records if r["mnt_ns"]}
    members: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        namespace = mnt_ns(int(entry))
        if namespace in by_namespace and not is_gone(int(entry)):
            members.setdefault(namespace, []).append(int(entry))
    verified, unverified = [], {}
    for namespace, pids in members.items():
        # One member showing the host's home verifies the namespace: members that chroot (sshd's
        # privilege-separated children) cannot show it.
        if any(_in_host_namespace(pid, by_namespace[namespace]) for pid in pids):
            verified += pids
        else:
            unverified[namespace] = pids
    return verified, unverified


def _processes_in(records: Iterable[dict]) -> list[int]:
    """Every live process inside one of these hosts' namespaces."""
    return _namespace_members(records)[0]






def _empty_directory(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()

"""Real Debian 12 servers booting systemd as local test hosts, one per 127.0.x.y address.

Each host is a ``systemd-nspawn -b`` container: systemd is PID 1 of the host's own PID namespace,
with journald, logind, D-Bus, units, start limits and a real sshd (``ssh.service``) with PAM
sessions, like a server. Hosts share the caller's network (each sshd listens on its own address
only, so one port space is shared: a service a test installs should listen on its host's address).

Filesystem: the cached Debian base (``golive.testing.debian``) is the read-only lower layer of an
overlay mounted in the host's own private mount namespace; the upper layer is a per-host directory
on disk, written before boot with the hostname, machine id, an sshd drop-in (its address, its own
host key, key-only root login), root's authorized_keys, and masks for the apt/e2scrub/fstrim timers
and the console getty. So /etc, /usr and /var are the host's own: a package installed on one host
is on that host only. apt sees only the local repository, read-only at /srv/golive-apt.

Processes: each host runs under a supervisor shell in its own cgroup, in both the cgroup v2
hierarchy and systemd's named v1 one (``golive-testing/<tag of DIR>/<host>``), so that everything a
host ever started is found by cgroup membership, never by a name or a pattern::

    <host>/shell           the supervisor: mounts the overlay, runs nspawn again after a reboot
    <host>/nspawn/...      systemd-nspawn (supervisor/) and the host's own tree (payload/)
    <host>/exec            commands run by ``exec()`` (nsenter into the host's namespaces)

Boot is awaited on events: nspawn's READY=1 (``--notify-ready``: the host's systemd finished
starting up) on a notify socket, the supervisor's exit on a pidfd; then one ssh login per host with
strict host key checking runs ``systemctl is-system-running --wait`` (running or degraded).
``down`` sends each supervisor exactly one SIGTERM (nspawn powers the host off cleanly: a second
one would kill it outright), waits for the host's cgroup to empty, kills by cgroup membership when
it does not, removes the cgroups and verifies that no process, namespace member, overlay mount or
listening socket of any host is left.

State lives in DIR (default /tmp/golive-systemd-hosts)::

    DIR/hosts.json                            what is running
    DIR/client_key, known_hosts               known_hosts is built from the host key files, never by connecting
    DIR/hosts/<name>/ssh_host_ed25519_key     the host key, kept across reset() and down/up
    DIR/hosts/<name>/upper, work, root        the overlay's upper and work directories, its mount point
    DIR/hosts/<name>/console.log              the host's console (boot messages) and the supervisor's notes

Usable as a library (``SystemdHosts``, the same interface as ``TestHosts``) and as
``python3 -m golive.testing --systemd ...`` (``scripts/testhosts --systemd``). Stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import select
import selectors
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from golive.testing import debian
from golive.testing._common import (
    KILL_WAIT_SECONDS,
    SSH_PORT,
    SSHD_EXECUTABLES,
    SYSTEM_PATH,
    HostInfo,
    TestHostsError,
    checked_net,
    describe,
    executable_name,
    generate_keys,
    is_gone,
    listening_sockets,
    mnt_ns,
    spawn,
    ssh_argv,
    terminate,
    write_text,
)

DEFAULT_DIR = "/tmp/golive-systemd-hosts"
DEFAULT_NET = "127.0.20"
DEFAULT_FIRST = 11
CGROUP_TOP = "golive-testing"
# Generous bounds for a loaded 2-core machine; waiting itself is on events, these only bound it.
BOOT_TIMEOUT_SECONDS = float(os.environ.get("GOLIVE_BOOT_TIMEOUT", "120"))
BOOT_TIMEOUT_PER_HOST_SECONDS = 15.0
POWEROFF_TIMEOUT_SECONDS = 60.0
SSH_TERM_GRACE_SECONDS = 3.0
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "dpkg-db-backup.timer",
    "console-getty.service",  # a login prompt on a console nobody can type into
)
REBOOT_EXIT_STATUS = 133  # systemd-nspawn's exit status when the host asked for a reboot

# The supervisor, run by `unshare -m --propagation private` (so the mounts are the host's alone).
# Arguments: base root, upper, work, mount point, cgroup v2 dir, cgroup v1 dir ("" if none), host
# name, repository. Writing 0 to cgroup.procs moves the writing shell itself.
SUPERVISOR_SCRIPT = f"""set -e
base=$1 upper=$2 work=$3 root=$4 cg2=$5 cg1=$6 name=$7 repo=$8
echo 0 > "$cg2/shell/cgroup.procs"
[ -z "$cg1" ] || echo 0 > "$cg1/shell/cgroup.procs"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$upper,workdir=$work" "$root"
# nspawn keeps state under /run/systemd, and /run may be on disk here: this host's own tmpfs.
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
set +e
stop= sent= child= trapped=
# Exactly one SIGTERM reaches nspawn, whenever ours arrives: a second one would kill the host.
trap 'trapped=1 stop=1; if [ -n "$child" ] && [ -z "$sent" ]; then sent=1; kill -TERM "$child"; fi' TERM
while :; do
    (
        echo 0 > "$cg2/nspawn/cgroup.procs"
        [ -z "$cg1" ] || echo 0 > "$cg1/nspawn/cgroup.procs"
        exec systemd-nspawn --quiet -D "$root" -M "$name" -b --register=no --keep-unit \\
            --console=read-only --link-journal=no --resolv-conf=off --timezone=off --notify-ready=yes \\
            --bind-ro="$repo:{debian.REPO_IN_HOSTS}" -- systemd.log_color=0
    ) </dev/null &
    child=$!
    if [ -n "$stop" ] && [ -z "$sent" ]; then sent=1; kill -TERM "$child"; fi
    while :; do
        trapped=
        wait "$child"; status=$?
        [ -n "$trapped" ] || break
    done
    child=
    if [ "$status" != {REBOOT_EXIT_STATUS} ] || [ -n "$stop" ]; then
        echo "golive.testing: $name: systemd-nspawn exited with status $status"
        exit "$status"
    fi
    echo "golive.testing: $name: rebooting"
done
"""

ANSI_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class SystemdHosts:
    """A set of local Debian 12 systemd test hosts managed in one state directory."""

    __test__ = False

    def __init__(self, dir: str | os.PathLike = DEFAULT_DIR, net: str = DEFAULT_NET, first: int = DEFAULT_FIRST):
        self.dir = Path(os.path.abspath(dir))
        if any(c.isspace() or c in "\\,:" for c in str(self.dir)):
            # overlayfs mount options and nspawn's --bind-ro would need escaping for it
            raise TestHostsError(f"--dir must not contain whitespace, backslashes, commas or colons: {self.dir}")
        self.net = checked_net(net)
        self.first = int(first)
        self.tag = hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]

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
        if not state:
            return []
        return [
            HostInfo(
                name=r["name"],
                address=r["address"],
                port=r["port"],
                pid=r["pid"] if self._supervisor_alive(r) else None,
                root=r["dir"],
            )
            for r in state["hosts"]
        ]

    def status(self) -> dict[str, bool]:
        """Host name -> whether the host runs and its sshd listens."""
        state = self._load_state()
        if not state:
            return {}
        listening = listening_sockets()
        return {
            r["name"]: (r["address"], r["port"]) in listening and self._leader(r) is not None
            for r in state["hosts"]
        }

    def is_up(self) -> bool:
        """True while any host of DIR has a process left in its cgroup."""
        state = self._load_state()
        return bool(state) and any(_populated(self._cgroup_dirs(r)[0]) for r in state["hosts"])

    # ------------------------------------------------------------------------------ lifecycle

    def up(self, n: int) -> list[HostInfo]:
        """Boot n fresh hosts, or return the running ones when exactly these n are already up."""
        addresses = self._addresses(n)
        state = self._load_state()
        if state and self.is_up():
            running = [r["address"] for r in state["hosts"]]
            if running != addresses:
                raise TestHostsError(
                    f"{len(running)} host(s) ({running[0]} .. {running[-1]}) are already up in {self.dir}, "
                    f"not the {n} requested; run `down --dir {self.dir}` first"
                )
            not_serving = [name for name, serving in self.status().items() if not serving]
            if not_serving:
                raise TestHostsError(
                    f"hosts are up in {self.dir} but sshd does not listen on: {', '.join(not_serving)}"
                )
            return self.hosts
        debian.require_tools("systemd-nspawn", "unshare", "nsenter", "ssh", "ssh-keygen")
        base = debian.ensure_base()
        repo = debian.ensure_repo(base)
        listening = listening_sockets()
        busy = [a for a in addresses if (a, SSH_PORT) in listening or ("0.0.0.0", SSH_PORT) in listening]
        if busy:
            raise TestHostsError(f"something already listens on port {SSH_PORT} of {', '.join(busy)}")
        records = [self._record(address, base, repo) for address in addresses]
        self._write_keys(records)
        state = {
            "kind": "systemd",
            "net": self.net,
            "dir": str(self.dir),
            "base": str(base),
            "repo": str(repo),
            "client_key": self.client_key,
            "known_hosts": self.known_hosts,
            "hosts": records,
        }
        try:
            for record in records:
                self._fresh_upper(record)
            self._save_state(state)  # before the first boot, so that `down` can clean up a half-started set
            self._boot(records, state)
        except BaseException:
            with contextlib.suppress(TestHostsError):
                self.down()
            raise
        return self.hosts

    def down(self, purge: bool = False) -> None:
        """Power every host off and verify that nothing of them is left (see the module docstring).

        Raises TestHostsError, keeping hosts.json for another try, when anything is left.
        """
        state = self._load_state()
        if state:
            self._power_off(state["hosts"])
            for record in state["hosts"]:
                record["pid"] = record["mnt_ns"] = record["pid_ns"] = None
            self._save_state(state)
        if purge:
            if state is None and self.dir.exists() and any(self.dir.iterdir()):
                raise TestHostsError(f"{self.dir} has no hosts.json; refusing to delete it")
            shutil.rmtree(self.dir, ignore_errors=True)

    def reset(self, names: Iterable[str] | None = None) -> None:
        """Give the given hosts (all by default) a clean upper layer: fresh servers, same keys."""
        state = self._require_state()
        records = state["hosts"] if names is None else [self._find(state, n) for n in names]
        self._power_off(records)
        for record in records:
            self._fresh_upper(record)
        self._boot(records, state)

    def reboot(self, name: str) -> None:
        """`systemctl reboot` inside one host, then wait until it is up again (its disk is kept)."""
        state = self._require_state()
        record = self._find(state, name)
        self._require_leader(record)
        if not self._supervisor_alive(record):
            raise TestHostsError(f"host {record['name']} has lost its supervisor, which boots it again: use reset")
        with self._notify_socket(record) as notify:
            self.exec(record["name"], ["systemctl", "reboot"], check=True)
            self._wait_booted([record], {record["name"]: notify}, state)

    def stop(self, name: str) -> None:
        """Stop one host's sshd, open sessions included; the host and its services stay."""
        state = self._require_state()
        record = self._find(state, name)
        self._systemctl(record, "stop", "ssh.service")
        # Sessions live in their own scopes, which stopping ssh.service leaves alone (KillMode=process).
        sessions = [pid for pid in self._processes(record) if executable_name(pid) in SSHD_EXECUTABLES]
        terminate(sessions, grace=SSH_TERM_GRACE_SECONDS)

    def start(self, name: str) -> None:
        """Start one host's sshd again (ssh.service is Type=notify: it listens when this returns)."""
        state = self._require_state()
        self._systemctl(self._find(state, name), "start", "ssh.service")

    def rekey(self, name: str) -> None:
        """Give one host a new host key and restart its sshd; known_hosts keeps the old key."""
        state = self._require_state()
        record = self._find(state, name)
        self._require_leader(record)
        key = Path(record["host_key"])
        key.unlink(missing_ok=True)
        Path(f"{key}.pub").unlink(missing_ok=True)
        generate_keys([(key, f"root@{record['name']}")])
        for suffix, mode in (("", 0o600), (".pub", 0o644)):
            inside = self.path(record["name"], f"/etc/ssh/ssh_host_ed25519_key{suffix}")
            inside.write_bytes(Path(f"{key}{suffix}").read_bytes())
            inside.chmod(mode)
        self._systemctl(record, "restart", "ssh.service")

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
        """Run argv inside one host (its namespaces, its root, its cgroup), as root with a clean
        environment. For set-up and assertions; what a test claims of SSH must go through SSH."""
        state = self._require_state()
        record = self._find(state, name)
        leader = self._require_leader(record)
        cg2, cg1 = self._cgroup_dirs(record)
        script = (
            'echo 0 > "$2/exec/cgroup.procs"; [ -z "$3" ] || echo 0 > "$3/exec/cgroup.procs"; leader=$1; shift 3; '
            'exec nsenter -t "$leader" -m -u -i -p -C -r -w -- env -i '
            f'PATH={SYSTEM_PATH} HOME=/root LANG=C.UTF-8 USER=root LOGNAME=root "$@"'
        )
        command = ["sh", "-c", script, "exec", str(leader), str(cg2), str(cg1 or ""), *argv]
        result = subprocess.run(
            command, capture_output=capture, text=True, input=input, timeout=timeout,
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
        )
        if check and result.returncode != 0:
            raise TestHostsError(
                f"{' '.join(argv)} on {record['name']} exited {result.returncode}: "
                f"{(result.stderr or '').strip() or (result.stdout or '').strip()}"
            )
        return result

    def ssh(
        self, name: str, command: str, *, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """OpenSSH to one host as root, host key checked strictly against known_hosts."""
        state = self._require_state()
        record = self._find(state, name)
        argv = ssh_argv(self.client_key, self.known_hosts, record["address"], record["port"])
        return subprocess.run([*argv, command], input=input, capture_output=True, timeout=timeout)

    def path(self, name: str, path: str) -> Path:
        """A path as the host itself sees it (through its PID 1's root; valid while it is up)."""
        state = self._require_state()
        leader = self._require_leader(self._find(state, name))
        return Path(f"/proc/{leader}/root") / path.lstrip("/")

    def pid1(self, name: str) -> int:
        """The host's PID 1 (its systemd) as the machine numbers it; a new one after every boot."""
        state = self._require_state()
        return self._require_leader(self._find(state, name))

    def console(self, name: str, lines: int = 30) -> str:
        """The last lines of a host's console: its boot messages and the supervisor's notes."""
        state = self._require_state()
        return _tail_lines(self._find(state, name)["console"], lines)

    def journal(self, name: str, lines: int = 30) -> str:
        """The last lines of a host's persistent journal, read from its upper layer."""
        state = self._require_state()
        return _journal_tail(self._find(state, name), lines)

    def memory_mib(self, name: str) -> float:
        """Proportional set size of everything in the host's cgroup, nspawn and supervisor included."""
        state = self._require_state()
        return sum(_pss_kib(pid) for pid in self._processes(self._find(state, name))) / 1024

    # ------------------------------------------------------------------------------ booting

    def _record(self, address: str, base: Path, repo: Path) -> dict:
        name = f"h{address.rsplit('.', 1)[1]}"
        host_dir = self.dir / "hosts" / name
        return {
            "name": name,
            "address": address,
            "port": SSH_PORT,
            "dir": str(host_dir),
            "base": str(base / "root"),
            "repo": str(repo),
            "upper": str(host_dir / "upper"),
            "work": str(host_dir / "work"),
            "root": str(host_dir / "root"),
            "console": str(host_dir / "console.log"),
            "host_key": str(host_dir / "ssh_host_ed25519_key"),
            "cgroup": f"{CGROUP_TOP}/{self.tag}/{name}",
            "notify": f"{CGROUP_TOP}/{self.tag}/{name}/notify",
            "pid": None,
            "mnt_ns": None,
            "pid_ns": None,
        }

    def _write_keys(self, records: list[dict]) -> None:
        """Create missing keys (kept across down/up), then known_hosts from the host key files."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for record in records:
            Path(record["dir"]).mkdir(parents=True, exist_ok=True)
        missing = [(Path(self.client_key), "golive-testing-client")]
        missing += [(Path(r["host_key"]), f"root@{r['name']}") for r in records]
        generate_keys([(path, comment) for path, comment in missing if not path.exists()])
        known_hosts = []
        for record in records:
            key_type, key_body = Path(f"{record['host_key']}.pub").read_text().split()[:2]
            known_hosts.append(f"{record['address']} {key_type} {key_body}\n")
        write_text(Path(self.known_hosts), "".join(known_hosts))

    def _fresh_upper(self, record: dict) -> None:
        """An empty upper layer with this host's identity, keys, sshd drop-in, masks and apt index."""
        for key in ("upper", "work", "root"):
            path = Path(record[key])
            if key != "root" and path.exists():
                shutil.rmtree(path)
            path.mkdir(parents=True, exist_ok=True)
        upper, lower = Path(record["upper"]), Path(record["base"])
        layer = _Layer(upper, lower)
        layer.write("etc/hostname", f"{record['name']}\n")
        layer.write("etc/machine-id", f"{uuid.uuid4().hex}\n", mode=0o444)
        layer.write(
            "etc/hosts",
            f"127.0.0.1\tlocalhost\n{record['address']}\t{record['name']}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n",
        )
        layer.write("etc/ssh/sshd_config.d/golive.conf", _sshd_drop_in(record))
        layer.write("etc/ssh/ssh_host_ed25519_key", Path(record["host_key"]).read_text(), mode=0o600)
        layer.write("etc/ssh/ssh_host_ed25519_key.pub", Path(f"{record['host_key']}.pub").read_text())
        layer.write("root/.ssh/authorized_keys", Path(f"{self.client_key}.pub").read_text(), mode=0o600, dir_mode=0o700)
        for unit in MASKED_UNITS:
            layer.symlink(f"etc/systemd/system/{unit}", "/dev/null")
        for index in sorted((Path(record["repo"]) / "lists").iterdir()):
            if index.is_symlink():  # apt links a file: repository's uncompressed index to the file itself
                layer.symlink(f"var/lib/apt/lists/{index.name}", os.readlink(index))
            else:
                layer.write(f"var/lib/apt/lists/{index.name}", index.read_bytes())

    def _boot(self, records: list[dict], state: dict) -> None:
        """Start every host's supervisor, then wait for all of them (the set boots in parallel)."""
        with contextlib.ExitStack() as stack:
            sockets = {r["name"]: stack.enter_context(self._notify_socket(r)) for r in records}
            for record in records:
                self._spawn_supervisor(record)
            self._save_state(state)
            self._wait_booted(records, sockets, state)

    @contextlib.contextmanager
    def _notify_socket(self, record: dict):
        """The abstract socket nspawn sends READY=1 to (abstract: no path length limit, nothing on disk)."""
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            notify.bind("\0" + record["notify"])
        except OSError as error:
            notify.close()
            if error.errno == errno.EADDRINUSE:
                raise TestHostsError(f"another process is booting host {record['name']} of {self.dir}") from None
            raise
        try:
            yield notify
        finally:
            notify.close()

    def _spawn_supervisor(self, record: dict) -> None:
        cg2, cg1 = self._cgroup_dirs(record)
        for hierarchy in (cg2, cg1):
            if hierarchy is not None:
                for leaf in ("shell", "nspawn", "exec"):
                    (hierarchy / leaf).mkdir(parents=True, exist_ok=True)
        env = {"NOTIFY_SOCKET": "@" + record["notify"]}
        if cg2 != _v2_root() or cg1 is not None:
            # The machine mixes cgroup v1 and v2: give the hosts a pure v2 view, like a Debian 12 server.
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        argv = [
            "unshare", "-m", "--propagation", "private", "sh", "-c", SUPERVISOR_SCRIPT, "supervisor",
            record["base"], record["upper"], record["work"], record["root"], str(cg2), str(cg1 or ""),
            record["name"], record["repo"],
        ]
        record["pid"] = spawn(argv, log=record["console"], env=env).pid
        record["booted_at"] = time.time()

    def _wait_booted(self, records: list[dict], sockets: dict[str, socket.socket], state: dict) -> None:
        """Wait for READY=1 from each host's nspawn, then one ssh login running
        `systemctl is-system-running --wait`, failing fast when a supervisor exits."""
        started = time.monotonic()
        deadline = started + max(BOOT_TIMEOUT_SECONDS, BOOT_TIMEOUT_PER_HOST_SECONDS * len(records))
        checks: dict[str, subprocess.Popen] = {}
        try:
            self._wait_ready(records, sockets, checks, deadline, started)
            for record in records:
                self._finish_boot_check(record, checks[record["name"]], deadline, started)
        finally:
            for check in checks.values():  # left running when another host failed first
                if check.poll() is None:
                    check.kill()
                    check.wait()
        self._save_state(state)

    def _wait_ready(self, records: list[dict], sockets: dict[str, socket.socket],
                    checks: dict[str, subprocess.Popen], deadline: float, started: float) -> None:
        """Start each host's ssh check as soon as its READY=1 arrives."""
        by_name = {r["name"]: r for r in records}
        selector = selectors.DefaultSelector()
        pidfds = []
        try:
            for name, notify in sockets.items():
                selector.register(notify, selectors.EVENT_READ, ("notify", name))
            for record in records:
                pidfds.append(os.pidfd_open(record["pid"]))
                selector.register(pidfds[-1], selectors.EVENT_READ, ("exit", record["name"]))
            while len(checks) < len(records):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    late = [r for r in records if r["name"] not in checks]
                    raise self._boot_error(late, "did not finish booting", started)
                for key, _ in selector.select(remaining):
                    kind, name = key.data
                    if kind == "exit":
                        raise self._boot_error([by_name[name]], "stopped while booting", started)
                    message = key.fileobj.recv(4096).decode(errors="replace").split("\n")
                    if "READY=1" in message and name not in checks:
                        selector.unregister(key.fileobj)
                        checks[name] = self._start_boot_check(by_name[name])
        finally:
            selector.close()
            for pidfd in pidfds:
                os.close(pidfd)

    def _finish_boot_check(self, record: dict, check: subprocess.Popen, deadline: float, started: float) -> None:
        try:
            output, _ = check.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise self._boot_error([record], "booted but ssh did not answer in time", started) from None
        answer = output.decode(errors="replace").strip()
        if answer.splitlines()[-1:] not in (["running"], ["degraded"]):
            said = answer or "(nothing)"
            raise self._boot_error([record], f"booted, but the ssh check answered: {said}", started)
        record["state"] = answer.splitlines()[-1]
        record["boot_seconds"] = round(time.time() - record["booted_at"], 2)
        record["mnt_ns"] = mnt_ns(record["pid"])
        leader = self._leader(record)
        record["pid_ns"] = _ns(leader, "pid") if leader else None

    def _start_boot_check(self, record: dict) -> subprocess.Popen:
        # Checked strictly against the key the host was given now: after rekey() that is not the
        # one in known_hosts (which keeps the old key on purpose).
        key_type, key_body = Path(f"{record['host_key']}.pub").read_text().split()[:2]
        expected = Path(record["dir"]) / "boot_known_hosts"
        write_text(expected, f"{record['address']} {key_type} {key_body}\n")
        argv = ssh_argv(self.client_key, str(expected), record["address"], record["port"])
        return subprocess.Popen(
            [*argv, "systemctl is-system-running --wait"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def _boot_error(self, records: list[dict], what: str, started: float) -> TestHostsError:
        waited = time.monotonic() - started
        parts = []
        for record in records:
            parts.append(
                f"host {record['name']} ({record['address']}) {what} (after {waited:.0f} s)\n"
                f"--- console, last lines ({record['console']}):\n{_tail_lines(record['console'], 20)}\n"
                f"--- journal, last lines:\n{_journal_tail(record, 20)}"
            )
        return TestHostsError("\n".join(parts))

    # ------------------------------------------------------------------------------ stopping

    def _power_off(self, records: list[dict]) -> None:
        """One SIGTERM per host, wait for its cgroup to empty, kill by cgroup when it does not,
        remove the cgroups; raise when anything of these hosts is left."""
        running = [r for r in records if _populated(self._cgroup_dirs(r)[0])]
        signalled, orphans = [], []
        for record in running:
            shutdown = self._shutdown_signal(record)
            if shutdown is None:
                orphans.append(self._cgroup_dirs(record)[0])
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(*shutdown)
            signalled.append(self._cgroup_dirs(record)[0])
        stubborn = orphans + _wait_empty(signalled, POWEROFF_TIMEOUT_SECONDS)
        for cgroup in stubborn:
            _kill_cgroup(cgroup)
        _wait_empty(stubborn, KILL_WAIT_SECONDS)
        self._verify_gone(records)
        for record in records:
            for hierarchy in self._cgroup_dirs(record):
                if hierarchy is not None:
                    _remove_cgroup_tree(hierarchy)
        for hierarchy in (_v2_root(), _v1_root()):
            if hierarchy is not None:
                for directory in (hierarchy / CGROUP_TOP / self.tag, hierarchy / CGROUP_TOP):
                    with contextlib.suppress(OSError):  # still used by another set: fine
                        directory.rmdir()

    def _shutdown_signal(self, record: dict) -> tuple[int, int] | None:
        """(pid, signal) that powers the host off cleanly: one SIGTERM to the supervisor (it
        forwards exactly one to nspawn and boots no more), or to nspawn if the supervisor is gone,
        or systemd's own poweroff signal to the host's PID 1 if nspawn is gone too."""
        if self._supervisor_alive(record):
            return record["pid"], signal.SIGTERM
        cg2 = self._cgroup_dirs(record)[0]
        for pid in _cgroup_procs(cg2 / "nspawn" / "supervisor"):
            if executable_name(pid) == "systemd-nspawn":
                return pid, signal.SIGTERM
        leader = self._leader(record)
        return (leader, signal.SIGRTMIN + 4) if leader is not None else None

    def _verify_gone(self, records: list[dict]) -> None:
        problems = []
        for record in records:
            cg2, cg1 = self._cgroup_dirs(record)
            left = sorted({pid for h in (cg2, cg1) if h is not None for pid in _cgroup_tree_procs(h)})
            if left:
                problems.append(f"{record['name']}: processes left in its cgroup: {describe(left)}")
        # Anything in a host's namespaces that escaped its cgroup: verified as the host's by its overlay.
        strays = self._namespace_strays(records)
        if strays:
            terminate(strays, grace=0)
            problems.append(f"processes in the hosts' namespaces outside their cgroups (killed): {describe(strays)}")
        for record, pid in self._overlay_mounts(records):
            problems.append(f"{record['name']}: its overlay is still mounted in the mount namespace of pid {pid}")
        listening = listening_sockets()
        busy = [r["address"] for r in records if (r["address"], r["port"]) in listening]
        if busy:
            problems.append(f"something still listens on port {SSH_PORT} of {', '.join(busy)}")
        if problems:
            raise TestHostsError(
                f"down left hosts of {self.dir} behind: {'; '.join(problems)} (hosts.json kept for another `down`)"
            )

    def _namespace_strays(self, records: list[dict]) -> list[int]:
        namespaces = {}
        for record in records:
            for kind in ("mnt_ns", "pid_ns"):
                if record.get(kind):
                    namespaces[record[kind]] = record
        strays = []
        for pid in _all_pids():
            for kind in ("mnt", "pid"):
                record = namespaces.get(_ns(pid, kind))
                if record is not None and not is_gone(pid) and _has_overlay(pid, record["upper"]):
                    strays.append(pid)
                    break
        return strays

    def _overlay_mounts(self, records: list[dict]) -> list[tuple[dict, int]]:
        """(host, a pid of that mount namespace) for every namespace still mounting a host's overlay."""
        found, seen = [], set()
        for pid in _all_pids():
            namespace = mnt_ns(pid)
            if namespace is None or namespace in seen:
                continue
            seen.add(namespace)
            found += [(r, pid) for r in records if _has_overlay(pid, r["upper"])]
        return found

    # ------------------------------------------------------------------------------ helpers

    def _systemctl(self, record: dict, *args: str) -> None:
        self._require_leader(record)
        self.exec(record["name"], ["systemctl", *args], check=True)

    def _cgroup_dirs(self, record: dict) -> tuple[Path, Path | None]:
        v1 = _v1_root()
        return _v2_root() / record["cgroup"], (v1 / record["cgroup"] if v1 is not None else None)

    def _processes(self, record: dict) -> list[int]:
        return _cgroup_tree_procs(self._cgroup_dirs(record)[0])

    def _supervisor_alive(self, record: dict) -> bool:
        pid = record.get("pid")
        return pid is not None and not is_gone(pid) and _cgroup_of(pid) == f"/{record['cgroup']}/shell"

    def _leader(self, record: dict) -> int | None:
        """The host's PID 1 as the machine sees it (changes with every boot), None while down."""
        payload = self._cgroup_dirs(record)[0] / "nspawn" / "payload"
        candidates = _cgroup_procs(payload / "init.scope") or _cgroup_tree_procs(payload)
        for pid in candidates:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if len(nspid) > 1 and nspid[-1] == "1" and not is_gone(pid):
                return pid
        return None

    def _require_leader(self, record: dict) -> int:
        leader = self._leader(record)
        if leader is None:
            raise TestHostsError(f"host {record['name']} is down; use `up` to start the set")
        return leader

    def _addresses(self, n: int) -> list[str]:
        last = self.first + n - 1
        if n < 1 or self.first < 1 or last > 254:
            raise TestHostsError(f"cannot place {n} host(s) from {self.net}.{self.first}: last octet must be 1..254")
        return [f"{self.net}.{octet}" for octet in range(self.first, last + 1)]

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
        if state.get("kind") != "systemd":
            raise TestHostsError(f"{self.dir} holds light test hosts, not systemd ones (drop --systemd)")
        return state

    def _require_state(self) -> dict:
        state = self._load_state()
        if not state:
            raise TestHostsError(f"no systemd test hosts in {self.dir}; run `up` first")
        return state

    def _save_state(self, state: dict) -> None:
        write_text(self.dir / "hosts.json", json.dumps(state, indent=2) + "\n")


class _Layer:
    """Writes into an overlay's upper layer before it is mounted. Directories it has to create take
    the owner and mode of the same directory in the lower layer: in the merged view the upper
    directory's attributes win, so a plain mkdir would change, say, /root's mode on the host."""

    def __init__(self, upper: Path, lower: Path) -> None:
        self.upper, self.lower = upper, lower

    def write(self, relative: str, content: str | bytes, *, mode: int = 0o644, dir_mode: int = 0o755) -> None:
        path = self._parent_ready(relative, dir_mode)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(mode)

    def symlink(self, relative: str, target: str) -> None:
        self._parent_ready(relative, 0o755).symlink_to(target)

    def _parent_ready(self, relative: str, dir_mode: int) -> Path:
        parts = Path(relative).parts
        for depth in range(1, len(parts)):
            directory = self.upper.joinpath(*parts[:depth])
            if directory.is_dir():
                continue
            directory.mkdir()
            model = self.lower.joinpath(*parts[:depth])
            if model.is_dir() and not model.is_symlink():
                st = model.stat()
                os.chown(directory, st.st_uid, st.st_gid)
                directory.chmod(st.st_mode & 0o7777)
            else:
                directory.chmod(dir_mode)
        return self.upper / relative


def _sshd_drop_in(record: dict) -> str:
    # Debian's sshd_config includes sshd_config.d/*.conf first, and the first value of an option wins.
    return f"""# golive test host {record["name"]}: generated by golive.testing.systemd
ListenAddress {record["address"]}:{record["port"]}
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM: logins get a logind session (libpam-systemd), as on a server
UsePAM yes
UseDNS no
# Parallel and multiplexed connections from the tests and the benchmark
MaxStartups 200:30:400
MaxSessions 200
"""


# ------------------------------------------------------------------------------ cgroups and /proc


def _v2_root() -> Path:
    hybrid = Path("/sys/fs/cgroup/unified")
    if (hybrid / "cgroup.procs").exists():
        return hybrid
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return Path("/sys/fs/cgroup")
    raise TestHostsError("systemd test hosts need a cgroup v2 hierarchy (/sys/fs/cgroup/unified or /sys/fs/cgroup)")


def _v1_root() -> Path | None:
    named = Path("/sys/fs/cgroup/systemd")
    return named if (named / "cgroup.procs").exists() and _v2_root() != Path("/sys/fs/cgroup") else None


def _cgroup_procs(cgroup: Path) -> list[int]:
    try:
        return [int(line) for line in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _cgroup_tree_procs(cgroup: Path) -> list[int]:
    pids = []
    for directory, _, _ in os.walk(cgroup):
        pids += _cgroup_procs(Path(directory))
    return pids


def _populated(cgroup: Path) -> bool:
    try:
        return "populated 1" in (cgroup / "cgroup.events").read_text()
    except OSError:
        return False


def _wait_empty(cgroups: list[Path], timeout: float) -> list[Path]:
    """Wait until these cgroups hold no process (a change of cgroup.events wakes us); return the
    ones still populated when the time is up."""
    deadline = time.monotonic() + timeout
    files = {}
    try:
        for cgroup in cgroups:
            with contextlib.suppress(OSError):
                files[cgroup] = open(cgroup / "cgroup.events", "rb", buffering=0)  # noqa: SIM115
        poller = select.poll()
        for events in files.values():
            poller.register(events, select.POLLPRI | select.POLLERR)
        while True:
            left = []
            for cgroup, events in files.items():
                events.seek(0)  # reading the file is also what re-arms its poll event
                if b"populated 1" in events.read():
                    left.append(cgroup)
            remaining = deadline - time.monotonic()
            if not left or remaining <= 0:
                return left
            poller.poll(remaining * 1000)
    finally:
        for events in files.values():
            events.close()


def _kill_cgroup(cgroup: Path) -> None:
    try:
        (cgroup / "cgroup.kill").write_text("1")
    except OSError:  # kernels before 5.14: one by one
        for pid in _cgroup_tree_procs(cgroup):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _remove_cgroup_tree(cgroup: Path) -> None:
    if not cgroup.is_dir():
        return
    for directory, _, _ in sorted(os.walk(cgroup), key=lambda entry: -entry[0].count("/")):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(directory)


def _cgroup_of(pid: int) -> str | None:
    """The process's cgroup in the v2 hierarchy (as the machine's root cgroup namespace sees it)."""
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return None


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != os.getpid()]


def _ns(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _has_overlay(pid: int, upper: str) -> bool:
    try:
        return f"upperdir={upper}," in Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tail_lines(path: str, lines: int) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no console log)"
    text = ANSI_ESCAPES.sub("", text.replace("\r", ""))
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:]) or "(empty)"


def _journal_tail(record: dict, lines: int) -> str:
    journal = Path(record["upper"]) / "var/log/journal"
    if not journal.is_dir() or shutil.which("journalctl", path=SYSTEM_PATH) is None:
        return "(no persistent journal yet)"
    result = subprocess.run(
        ["journalctl", "-D", str(journal), "--no-pager", "-q", "-n", str(lines), "-o", "short-monotonic"],
        capture_output=True, text=True, env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
    )
    return (result.stdout or result.stderr).strip() or "(empty)"


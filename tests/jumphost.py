"""Test hosts that can only be reached through a jump host, as a client's production network behind
a bastion: the proof that golive goes through the jump host and could not have gone around it.

    controller (root network namespace)
        | veth 10.N.0.1 <-> 10.N.0.2
    bastion: its own network namespace; sshd on 10.N.0.2:22, LogLevel DEBUG1 (its log shows every
        | forward it makes: "server_request_direct_tcpip ... target 10.N.K.2 port 22")
        | veth 10.N.K.1 <-> 10.N.K.2, one per target (K = 1, 2, ...)
    target K: its own network, mount and UTS namespaces; sshd on 10.N.K.2:22; its own
              /opt/northwind, /etc/northwind and /root, like golive.testhosts' hosts

The controller has a route to 10.N.0.0/24 only (through the bastion's veth, which goes away with
the bastion's namespace), and the bastion does not forward packets (ip_forward is 0 in a new
network namespace): a connection to a target that does not go through the bastion's sshd never
arrives. N is the third octet of the test net (127.0.82 -> 10.82.x.x), so suites on other nets
never meet. The bastion also resolves names the controller cannot: `target-K.plant.internal`.

Standard library only; separate from golive.testhosts (which is being moved) on purpose: it uses
the same client key, so an inventory's key reaches these hosts too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BINDS = ("/opt/northwind", "/etc/northwind", "/root")
INTERNAL_DOMAIN = "plant.internal"
HOLDER = """set -e
hostname "$1"; shift
ip link set lo up
while [ "$#" -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done
echo ready
exec sleep infinity >/dev/null
"""


@dataclass(frozen=True)
class Isolated:
    """One host of the set: its name, address and where its files live on the controller."""

    name: str
    address: str
    holder_pid: int
    sshd_pid: int
    root: Path
    binds: dict
    log: Path

    @property
    def internal_name(self) -> str:
        return f"{self.name}.{INTERNAL_DOMAIN}"


class BastionNetwork:
    """A bastion and `targets` hosts behind it; `down()` ends every process it started."""

    def __init__(self, directory: str | os.PathLike, net: str, client_key: str, authorized_keys: str) -> None:
        self.dir = Path(directory)
        self.octet = int(net.rsplit(".", 1)[1])
        self.client_key = client_key
        self.authorized_keys = authorized_keys
        self.bastion: Isolated | None = None
        self.targets: list[Isolated] = []
        self.processes: list[subprocess.Popen] = []

    # -- names -------------------------------------------------------------------------------

    @property
    def known_hosts(self) -> str:
        return str(self.dir / "known_hosts")

    def link(self, index: int) -> tuple[str, str]:
        """(near, far) addresses of link `index`: 0 controller-bastion, K bastion-target K."""
        return f"10.{self.octet}.{index}.1", f"10.{self.octet}.{index}.2"

    def interface(self, index: int, side: str) -> str:
        return f"gl{self.octet}l{index}{side}"  # at most 15 characters

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self, targets: int = 2) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for target in BINDS:
            os.makedirs(target, exist_ok=True)
        try:
            bastion_holder = self._holder("bastion", {"/root": "home", "/etc/hosts": "hosts"})
            near, far = self.link(0)
            self._veth(self.interface(0, "c"), None, self.interface(0, "b"), bastion_holder.pid)
            _run("ip", "addr", "add", f"{near}/24", "dev", self.interface(0, "c"))
            _run("ip", "link", "set", self.interface(0, "c"), "up")
            # The rest of 10.N/16 leads to the bastion too, which does not forward: a packet sent to a
            # target directly goes nowhere (and not onto the machine's own network). Gone with the veth.
            _run("ip", "route", "add", f"10.{self.octet}.0.0/16", "dev", self.interface(0, "c"))
            self._configure(bastion_holder.pid, self.interface(0, "b"), f"{far}/24")
            hosts_lines = []
            holders = []
            for index in range(1, targets + 1):
                name = f"target-{index}"
                holder = self._holder(name, {path: path.strip("/").replace("/", "_") for path in BINDS})
                near, far = self.link(index)
                self._veth(self.interface(index, "b"), holder.pid, self.interface(index, "t"), holder.pid)
                # both ends were made in the target's namespace; one end moves into the bastion's
                _run("nsenter", "-t", str(holder.pid), "-n", "ip", "link", "set", self.interface(index, "b"),
                     "netns", str(bastion_holder.pid))
                self._configure(bastion_holder.pid, self.interface(index, "b"), f"{near}/24")
                self._configure(holder.pid, self.interface(index, "t"), f"{far}/24")
                hosts_lines.append(f"{far} {name}.{INTERNAL_DOMAIN} {name}\n")
                holders.append((name, holder, far))
            (self.dir / "bastion" / "hosts").write_text("127.0.0.1 localhost\n" + "".join(hosts_lines))
            self.bastion = self._sshd("bastion", bastion_holder, self.link(0)[1], log_level="DEBUG1")
            self.targets = [self._sshd(name, holder, address) for name, holder, address in holders]
            self._write_known_hosts()
            for host in [self.bastion, *self.targets]:
                self._wait_listening(host)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop every process of the set (by pid: those it started and what runs in their
        namespaces), and wait until they are gone; the veths vanish with the namespaces."""
        holders = [p for p in self.processes]
        victims = set()
        for holder in holders:
            if holder.poll() is None:
                victims |= _in_namespace_of(holder.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [pid for pid in victims if _alive(pid)]
        self.processes.clear()
        self.bastion, self.targets = None, []
        if left:
            raise RuntimeError(f"bastion network: processes still running after SIGKILL: {left}")

    def reset(self) -> None:
        """Kill what deploys started on the targets (not sshd) and empty their directories."""
        for target in self.targets:
            for pid in _in_namespace_of(target.holder_pid) - {target.holder_pid, target.sshd_pid}:
                if _executable(pid) not in ("sshd", "sshd-session", "sshd-auth", "nsenter"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            for source in target.binds.values():
                for entry in Path(source).iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()

    def forwards(self) -> list[str]:
        """The forwards the bastion's sshd made (its log lines), oldest first."""
        if self.bastion is None:
            return []
        return [line for line in self.bastion.log.read_text(errors="replace").splitlines()
                if "server_request_direct_tcpip" in line]

    def in_target(self, index: int, *argv: str) -> subprocess.CompletedProcess:
        """Run a command inside target `index`'s namespaces (assertions only)."""
        target = self.targets[index - 1]
        return subprocess.run(["nsenter", "-t", str(target.holder_pid), "-n", "-m", "-u", "--", *argv],
                              capture_output=True, text=True, timeout=60)

    # -- pieces ------------------------------------------------------------------------------

    def _holder(self, name: str, binds: dict) -> subprocess.Popen:
        root = self.dir / name
        root.mkdir(parents=True, exist_ok=True)
        mounts = []
        for target, source in binds.items():
            path = root / source
            if target == "/etc/hosts":
                path.touch()
            else:
                path.mkdir(exist_ok=True)
            mounts += [str(path), target]
        with open(root / "holder.log", "ab") as log:
            process = subprocess.Popen(["unshare", "-n", "-m", "--propagation", "private", "-u", "sh", "-c", HOLDER,
                                        "holder", name, *mounts], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=log, env={"PATH": SYSTEM_PATH}, start_new_session=True, cwd="/")
        self.processes.append(process)
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{name}: namespace set-up failed: {(root / 'holder.log').read_text()[-500:]}")
        process.stdout.close()
        return process

    def _veth(self, near: str, near_pid: int | None, far: str, far_pid: int) -> None:
        if near_pid is None:
            _run("ip", "link", "add", near, "type", "veth", "peer", "name", far, "netns", str(far_pid))
        else:
            _run("nsenter", "-t", str(near_pid), "-n", "ip", "link", "add", near, "type", "veth", "peer", "name", far)

    def _configure(self, pid: int, interface: str, address: str) -> None:
        _run("nsenter", "-t", str(pid), "-n", "ip", "addr", "add", address, "dev", interface)
        _run("nsenter", "-t", str(pid), "-n", "ip", "link", "set", interface, "up")

    def _sshd(self, name: str, holder: subprocess.Popen, address: str, log_level: str = "ERROR") -> Isolated:
        root = self.dir / name
        key = root / "ssh_host_ed25519_key"
        if not key.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key))
        config = root / "sshd_config"
        config.write_text(f"""# golive bastion-network test host {name}
ListenAddress {address}:22
HostKey {key}
AuthorizedKeysFile {self.authorized_keys}
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
PrintMotd no
MaxStartups 200:30:400
MaxSessions 200
AllowTcpForwarding yes
LogLevel {log_level}
""")
        log = root / "sshd.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(["nsenter", "-t", str(holder.pid), "-n", "-m", "-u", SSHD, "-D", "-e", "-f",
                                        str(config)], stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
                                       start_new_session=True, cwd="/")
        self.processes.append(process)
        binds = {target: str(root / target.strip("/").replace("/", "_")) for target in BINDS} \
            if name != "bastion" else {}
        return Isolated(name, address, holder.pid, process.pid, root, binds, log)

    def _write_known_hosts(self) -> None:
        lines = []
        for host in [self.bastion, *self.targets]:
            kind, body = (host.root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            names = [host.address] if host is self.bastion else [host.address, host.internal_name, host.name]
            lines.append(f"{','.join(names)} {kind} {body}\n")
        Path(self.known_hosts).write_text("".join(lines))

    def _wait_listening(self, host: Isolated) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listening = subprocess.run(["nsenter", "-t", str(host.holder_pid), "-n", "cat", "/proc/net/tcp"],
                                       capture_output=True, text=True).stdout
            packed = int.from_bytes(bytes(int(p) for p in host.address.split("."))[::-1], "big")
            wanted = f"{packed:08X}:0016"
            if any(line.split()[1] == wanted and line.split()[3] == "0A" for line in listening.splitlines()[1:]):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd of {host.name} does not listen: {host.log.read_text()[-500:]}")

    def state(self) -> dict:
        return {"bastion": self.bastion.address if self.bastion else None,
                "targets": {t.name: t.address for t in self.targets}}

    def __repr__(self) -> str:
        return f"BastionNetwork({json.dumps(self.state())})"


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, env={"PATH": SYSTEM_PATH})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _namespaces(pid: int) -> tuple[str, str] | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt"), os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _in_namespace_of(holder: int) -> set[int]:
    """Every process in the holder's mount and network namespaces (the holder included)."""
    wanted = _namespaces(holder)
    if wanted is None:
        return set()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and _namespaces(int(entry)) == wanted:
            found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _executable(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""

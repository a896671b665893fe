"""What both kinds of test host share: errors, host records, keys, processes, sockets, files."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SSH_PORT = 22
# Executables that count as "the host's sshd" (listener and per-connection processes); OpenSSH 9.8+
# splits the per-connection part into sshd-session and sshd-auth.
SSHD_EXECUTABLES = frozenset({"sshd", "sshd-session", "sshd-auth"})
KILL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.01
# sshd sessions get sshd's compiled-in PATH; our own children get this one, not the caller's (which
# may put a pyenv shim first).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class TestHostsError(Exception):
    """A problem the caller can act on; the CLI prints the message without a traceback."""

    __test__ = False


@dataclass(frozen=True)
class HostInfo:
    """One test host as recorded in hosts.json.

    ``pid``: light hosts: sshd's pid, None while stopped; systemd hosts: the host's supervisor (the
    process that runs systemd-nspawn), None while down. ``root``: the host's directory under DIR.
    ``binds``: light hosts only, bind target -> per-host source directory.
    """

    __test__ = False

    name: str
    address: str
    port: int
    pid: int | None
    root: str
    binds: dict[str, str] = field(default_factory=dict, hash=False)


# Every process this Python process spawned, so that the ones that die are reaped (a zombie would
# otherwise look alive to `kill -0`) and no Popen is garbage-collected while its child still runs.
children: dict[int, subprocess.Popen] = {}


def checked_net(net: str) -> str:
    parts = net.split(".")
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts) or parts[0] != "127":
        raise TestHostsError(f"--net must be three octets on the loopback range, like 127.0.0 (got {net!r})")
    return net


def generate_keys(keys: list[tuple[Path, str]]) -> None:
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


def spawn(argv: list[str], log: str, stdout=None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a detached process (own session, so it outlives the CLI call that started it), with a
    clean environment plus ``env``."""
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file if stdout is None else stdout,
            stderr=log_file,
            cwd="/",
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", **(env or {})},
            start_new_session=True,
        )
    children[process.pid] = process
    return process


def listening_sockets() -> set[tuple[str, int]]:
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


def is_listening(address: str, port: int) -> bool:
    listening = listening_sockets()
    return (address, port) in listening or ("0.0.0.0", port) in listening


def mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def executable_name(pid: int) -> str | None:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def is_gone(pid: int) -> bool:
    """Exited (a zombie counts: it holds no resources and only waits for its parent)."""
    child = children.get(pid)
    if child is not None and child.poll() is not None:
        del children[pid]
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def describe(pids: Iterable[int]) -> str:
    return ", ".join(f"{pid} ({executable_name(pid) or '?'})" for pid in sorted(pids))


def terminate(pids: Iterable[int], grace: float) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds (at once when grace is 0)."""
    remaining = set(pids)
    first_signal = signal.SIGTERM if grace > 0 else signal.SIGKILL
    for sig, wait in ((first_signal, grace), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while remaining and time.monotonic() < deadline:
            remaining = {pid for pid in remaining if not is_gone(pid)}
            if remaining:
                time.sleep(POLL_SECONDS)
        if not remaining:
            return
    raise TestHostsError(f"processes did not exit after SIGKILL: {sorted(remaining)}")


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a concurrent reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def tail(log: str, lines: int = 5) -> str:
    try:
        return (
            " | ".join(Path(log).read_text(errors="replace").strip().splitlines()[-lines:]) or "(no output)"
        )
    except OSError:
        return "(no log)"


def ssh_argv(client_key: str, known_hosts: str, address: str, port: int) -> list[str]:
    """OpenSSH as root to a test host, nothing from the caller's ssh config, the host key checked
    strictly against the generated known_hosts; append the command."""
    return [
        "ssh", "-F", "/dev/null", "-i", client_key, "-p", str(port),
        "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR",
        f"root@{address}",
    ]


# The example golive.yml's database section, its last: a workspace of the example without
# database hosts (the light-host benchmark, most tests) leaves it out.
DATABASE_SECTION = "\n# The client's database (PostgreSQL)."


def without_database_section(app_text: str, where: str = "golive.yml") -> str:
    """The example golive.yml's text without its `database:` section."""
    head, found, _ = app_text.partition(DATABASE_SECTION)
    if not found or "\ndatabase:" in head:
        raise TestHostsError(f"{where}: the database section is not the last one")
    return head.rstrip("\n") + "\n"

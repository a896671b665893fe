"""SSH to the hosts through pyinfra: its inventory, state, connector and greenlet pool.

golive registers one pyinfra connector ("golive", a subclass of pyinfra's SSH connector) that
- turns on TCP_NODELAY before the SSH handshake (paramiko leaves Nagle on: ~48 ms a command
  instead of ~3.5 ms here),
- always verifies host keys against the known_hosts file the inventory names (pyinfra's default
  would accept new keys),
- streams binary stdin (an artifact) into one exec channel, so the agent gets its request and the
  artifact in a single round trip.

gevent must be monkey-patched before paramiko is imported (see golive.adapters.concurrency).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pyinfra.api import Config, Inventory, State
from pyinfra.api.exceptions import ConnectError
from pyinfra.connectors.ssh import SSHConnector

from golive.core.errors import BadInput, Problem
from golive.core.model import Host

T = TypeVar("T")

# pyinfra logs connection progress and errors itself; golive reports them in its own words.
logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


class GoliveSSHConnector(SSHConnector):
    """pyinfra's SSH connector with TCP_NODELAY, strict host keys and binary streaming."""

    @staticmethod
    def make_names_data(name: str) -> Iterator[tuple[str, dict, list]]:  # type: ignore[override]
        yield name, {}, []

    def make_paramiko_kwargs(self) -> dict[str, Any]:
        kwargs = super().make_paramiko_kwargs()
        address = kwargs["hostname"]
        port = kwargs.get("port") or 22
        sock = socket.create_connection((address, port), timeout=self.state.config.CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        extra = dict(kwargs.get("_pyinfra_ssh_paramiko_connect_kwargs") or {})
        extra["sock"] = sock
        kwargs["_pyinfra_ssh_paramiko_connect_kwargs"] = extra
        return kwargs

    def exec_stream(self, command: str, header: bytes, payload: Iterable[bytes] = (),
                    timeout: float | None = None,
                    on_output: Callable[[bytes], None] | None = None) -> tuple[int, bytes, bytes]:
        """Run command with header + payload on its stdin; on_output sees stdout so far as it arrives."""
        assert self.client is not None, "not connected"
        transport = self.client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            channel.sendall(header)
            for chunk in payload:
                channel.sendall(chunk)
            channel.shutdown_write()
            stdout = bytearray()
            stderr = bytearray()
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                stdout += data
                if on_output is not None:
                    on_output(bytes(stdout))
            while channel.recv_stderr_ready() or not channel.exit_status_ready():
                data = channel.recv_stderr(65536)
                if not data:
                    break
                stderr += data
            return channel.recv_exit_status(), bytes(stdout), bytes(stderr)
        finally:
            channel.close()


@dataclass
class Connected:
    """A golive host and its live pyinfra host, or why it could not be reached."""

    host: Host
    pyinfra_host: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def explain_connect_error(host: Host, error: BaseException) -> str:
    """One sentence an operator can act on, naming the host and its address."""
    c = host.connection
    where = f"{host.name} ({c.user}@{c.address}:{c.port})"
    text = str(error)
    if "host key" in text.lower() and "does not match" in text.lower():
        return (f"{where}: REFUSED - the host key does not match {c.known_hosts_file}; nothing was sent. "
                f"If the host was rebuilt, verify its new key and update known_hosts.")
    if "No host key" in text or "StrictPolicy" in text:
        return f"{where}: REFUSED - no host key for it in {c.known_hosts_file}; nothing was sent"
    if "Authentication" in text:
        return f"{where}: authentication failed for user {c.user} with key {c.key_file}"
    if "Invalid key" in text or "No such file" in text:
        return f"{where}: cannot read the SSH key {c.key_file}"
    if "timed out" in text.lower():
        return f"{where}: unreachable (connection timed out)"
    if "Could not connect" in text or "refused" in text.lower() or "resolve" in text.lower():
        return f"{where}: unreachable ({text.split('(', 1)[-1].rstrip(')') if '(' in text else text})"
    return f"{where}: cannot connect: {text}"


KEY_VARIABLES = ("ansible_ssh_private_key_file", "ansible_private_key_file")
KNOWN_HOSTS_VARIABLES = ("ansible_ssh_common_args", "ansible_ssh_extra_args")


def connection_file_problems(hosts: Iterable[Host]) -> list[Problem]:
    """The files a connection needs (the private key, the known_hosts file) that are missing or
    unreadable, named with the host, the variable and where it was set: found before any host is
    contacted, instead of a connection failure per host in the middle of a run."""
    problems = []
    for host in hosts:
        c = host.connection
        key_variable = next((v for v in KEY_VARIABLES if host.vars.get(v)), KEY_VARIABLES[0])
        known_variable = next((v for v in KNOWN_HOSTS_VARIABLES if "knownhostsfile" in
                               str(host.vars.get(v, "")).lower()), None)
        for variable, path, what in ((key_variable, c.key_file, "private key"),
                                     (known_variable, c.known_hosts_file, "known_hosts file")):
            if not path:
                continue
            expanded = os.path.expanduser(str(path))
            if os.path.isfile(expanded) and os.access(expanded, os.R_OK):
                continue
            reason = "is not readable" if os.path.exists(expanded) else "does not exist"
            if variable is None:
                where = f"host {host.name}"
                message = (f"host {host.name}: the SSH known_hosts file {path} {reason} (the default; set "
                           f"UserKnownHostsFile in ansible_ssh_common_args to name another); cannot verify "
                           f"the host's key")
            else:
                where = host.where(variable)
                message = f"host {host.name}: {variable}: the SSH {what} {path} {reason}"
            problems.append(Problem(where, message))
    return problems


class Fleet:
    """The SSH sessions of one golive run: connected once, reused by every step."""

    def __init__(self, hosts: Iterable[Host], connect_timeout: int = 10) -> None:
        self.hosts = list(hosts)
        problems = connection_file_problems(self.hosts)
        if problems:
            raise BadInput(problems)
        names_data = [(f"@golive/{h.name}", self._pyinfra_data(h)) for h in self.hosts]
        inventory = Inventory((names_data, {}))
        self.state = State(inventory, Config(CONNECT_TIMEOUT=connect_timeout, PARALLEL=max(1, len(self.hosts))))
        self.connected: dict[str, Connected] = {}
        self._connecting: dict[str, Any] = {}  # host name -> greenlet
        self._pyinfra_hosts = {h.name: h for h in self.state.inventory}

    @staticmethod
    def _pyinfra_data(host: Host) -> dict[str, Any]:
        c = host.connection
        data: dict[str, Any] = {
            "ssh_hostname": c.address,
            "ssh_port": c.port,
            "ssh_user": c.user,
            "ssh_known_hosts_file": c.known_hosts_file,
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            # Agent and ~/.ssh/config may not widen what the inventory says.
            "ssh_config_file": "/dev/null",
        }
        if c.key_file:
            data["ssh_key"] = c.key_file
        return data

    def map(self, function: Callable[[T], Any], items: Iterable[T]) -> list[Any]:
        """Run function over items in parallel greenlets; exceptions come back as values."""
        import gevent

        def guarded(item: T) -> Any:
            try:
                return function(item)
            except Exception as error:  # reported per host, never lost
                return error

        greenlets = [gevent.spawn(guarded, item) for item in items]
        gevent.joinall(greenlets)
        return [g.value for g in greenlets]

    def start_connecting(self, hosts: Iterable[Host] | None = None) -> None:
        """Open connections in the background; wait_connected(host) collects each one. Work on a
        host can then start as soon as it is connected, not when the slowest host is."""
        import gevent

        for host in hosts or self.hosts:
            if host.name not in self.connected and host.name not in self._connecting:
                self._connecting[host.name] = gevent.spawn(self._connect_one, host)

    def first_alone(self, work: Callable[[], T], head_start: float) -> T:
        """Run work (which connects what it needs) before any other host is connected, for up to
        head_start seconds; then connect every host while it finishes. A run's leader must answer
        before any other host starts, and SSH handshakes share the controller's CPU: connected
        with 29 others, the leader is ready only when nearly all are, and its round trip then
        waits behind their handshakes. Alone, it answers while the others connect."""
        import gevent

        job = gevent.spawn(work)
        job.join(timeout=head_start)
        self.start_connecting()
        return job.get()

    def wait_connected(self, host: Host) -> Connected:
        if host.name not in self.connected:
            self.start_connecting([host])
            try:
                result = self._connecting.pop(host.name).get()
            except Exception:  # a defect in connecting: the host is reported, not lost
                result = Connected(host, None, f"{host.name}: cannot connect")
            self.connected[host.name] = result
        return self.connected[host.name]

    def connect(self, hosts: Iterable[Host] | None = None) -> dict[str, Connected]:
        wanted = list(hosts or self.hosts)
        self.start_connecting(wanted)
        return {h.name: self.wait_connected(h) for h in wanted}

    def _connect_one(self, host: Host) -> Connected:
        started = time.monotonic()
        pyinfra_host = self._pyinfra_hosts[host.name]
        try:
            pyinfra_host.connect(show_errors=False, raise_exceptions=True)
        except (ConnectError, OSError, EOFError) as error:
            return Connected(host, None, explain_connect_error(host, error), time.monotonic() - started)
        self.state.activate_host(pyinfra_host)  # so pyinfra's own fact and op APIs see it
        return Connected(host, pyinfra_host, None, time.monotonic() - started)

    def close(self) -> None:
        def close_one(connected: Connected) -> None:
            if connected.pyinfra_host is not None:
                with contextlib.suppress(Exception):  # closing a broken connection is best effort
                    connected.pyinfra_host.connector.client.close()

        self.map(close_one, list(self.connected.values()))  # each close waits for its transport to stop
        self.connected.clear()

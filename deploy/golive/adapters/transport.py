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
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import paramiko
from pyinfra.api import Config, Inventory, State
from pyinfra.api.exceptions import ConnectError
from pyinfra.connectors.ssh import SSHConnector

from golive.core.errors import BadInput, Problem
from golive.core.model import Hop, Host, Route

T = TypeVar("T")

# pyinfra logs connection progress and errors itself; golive reports them in its own words.
logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


class HopError(ConnectError):
    """Reaching one hop of a host's route failed: which hop, what kind of failure, the detail."""

    def __init__(self, hop: Hop, kind: str, detail: str = "") -> None:
        super().__init__(f"{hop.words()}: {kind}: {detail}")
        self.hop = hop
        self.kind = kind  # changed_key | unknown_key | auth | unreachable | timeout | key_file
        self.detail = detail


def known_hosts(files: Iterable[str]) -> paramiko.HostKeys:
    """The keys listed in a hop's known_hosts files (read once per run)."""
    key = tuple(files)
    if key not in _KNOWN_HOSTS:
        keys = paramiko.HostKeys()
        for name in key:
            with contextlib.suppress(OSError):  # OpenSSH skips a listed file that is not there
                keys.load(name)
        _KNOWN_HOSTS[key] = keys
    return _KNOWN_HOSTS[key]


_KNOWN_HOSTS: dict[tuple[str, ...], paramiko.HostKeys] = {}


def first_socket(route_proxy: str, hop: Hop, timeout: float) -> Any:
    """The connection to a route's first hop: TCP (with TCP_NODELAY), or the ProxyCommand's pipe."""
    if route_proxy:
        return ProxySocket(route_proxy)
    try:
        sock = socket.create_connection((hop.address, hop.port), timeout=timeout)
    except TimeoutError:
        raise HopError(hop, "timeout", "connection timed out") from None
    except socket.gaierror as error:
        raise HopError(hop, "unreachable", f"name resolution: {error.strerror or error}") from None
    except OSError as error:
        raise HopError(hop, "unreachable", error.strerror or str(error)) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class ProxySocket:
    """A ProxyCommand's connection: the command runs with the shell (`exec`, as OpenSSH runs it),
    its stdin and stdout one end of a socket pair, this the other end. (paramiko's ProxyCommand
    writes to a blocking pipe: under gevent an upload bigger than the pipe blocks the whole process,
    the reader that would drain the command's output included.)"""

    def __init__(self, command: str) -> None:
        import subprocess

        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(["/bin/sh", "-c", "exec " + command], stdin=theirs, stdout=theirs,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            theirs.close()
        self.sock = ours

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def close(self) -> None:
        self.sock.close()
        if self.process.poll() is None:
            self.process.terminate()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)


def verified_transport(sock: Any, hop: Hop, timeout: float, keepalive: int = 0) -> paramiko.Transport:
    """An SSH transport to a jump host over `sock`: its host key checked against the hop's
    known_hosts files (strictly: unknown or changed is refused before anything is sent), then
    authenticated with the hop's keys only."""
    transport = paramiko.Transport(sock)
    listed = known_hosts(hop.known_hosts_files).lookup(hop.key_name)
    if listed:  # negotiate a key type known_hosts has, as OpenSSH does
        options = transport.get_security_options()
        known = set(listed.keys())
        options.key_types = [t for t in options.key_types if t in known] + \
            [t for t in options.key_types if t not in known]
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        server_key = transport.get_remote_server_key()
        if not listed:
            raise HopError(hop, "unknown_key", f"no host key for {hop.key_name} in {' '.join(hop.known_hosts_files)}")
        if listed.get(server_key.get_name()) != server_key:
            raise HopError(hop, "changed_key", f"the host key does not match {' '.join(hop.known_hosts_files)}")
        failures = []
        for path in hop.identity_files:
            try:
                transport.auth_publickey(hop.user, paramiko.PKey.from_path(path))
            except (paramiko.SSHException, OSError, ValueError) as error:
                failures.append(f"{path}: {error}")
                continue
            if transport.is_authenticated():
                break
        if not transport.is_authenticated():
            raise HopError(hop, "auth", "; ".join(failures) or "no key to authenticate with")
        if keepalive:
            transport.set_keepalive(keepalive)
        return transport
    except HopError:
        transport.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as error:
        transport.close()
        raise HopError(hop, "unreachable", str(error) or type(error).__name__) from None


def channel_to(transport: paramiko.Transport, through: Hop, hop: Hop, timeout: float) -> Any:
    """A direct-tcpip channel from a jump host to the next hop (what OpenSSH's ProxyJump opens)."""
    try:
        return transport.open_channel("direct-tcpip", (hop.address, hop.port), ("127.0.0.1", 0), timeout=timeout)
    except paramiko.ChannelException as error:
        raise HopError(hop, "unreachable", f"the jump host {through.words()} could not connect to it "
                                           f"({error.text or error})") from None
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise HopError(through, "unreachable", f"connection to the jump host lost ({error})") from None


class Jumps:
    """The jump hosts' SSH transports of one run, shared: thirty hosts behind one bastion cost one
    connection to it, not thirty (each host is one channel on it)."""

    def __init__(self) -> None:
        import gevent.lock

        self._lock_type = gevent.lock.BoundedSemaphore
        self.transports: dict[tuple, paramiko.Transport] = {}
        self.locks: dict[tuple, Any] = {}

    def socket_to(self, route: Route, timeout: float) -> Any:
        if not route.jumps:
            return first_socket(route.proxy_command, route.target, timeout)
        last = route.jumps[-1]
        return channel_to(self.transport(route.proxy_command, route.jumps, timeout, route.keepalive), last,
                          route.target, timeout)

    def transport(self, proxy: str, jumps: tuple[Hop, ...], timeout: float, keepalive: int) -> paramiko.Transport:
        key = (proxy, jumps)
        lock = self.locks.setdefault(key, self._lock_type())
        with lock:
            transport = self.transports.get(key)
            if transport is None or not transport.is_active():
                if len(jumps) == 1:
                    sock = first_socket(proxy, jumps[0], timeout)
                else:
                    sock = channel_to(self.transport(proxy, jumps[:-1], timeout, keepalive), jumps[-2], jumps[-1],
                                      timeout)
                transport = verified_transport(sock, jumps[-1], timeout, keepalive)
                self.transports[key] = transport
            return transport

    def close(self) -> None:
        for transport in reversed(list(self.transports.values())):
            with contextlib.suppress(Exception):
                transport.close()
        self.transports.clear()


class GoliveSSHConnector(SSHConnector):
    """pyinfra's SSH connector over golive's route (jump hosts, ProxyCommand), with TCP_NODELAY,
    strict host keys for every hop and binary streaming."""

    @staticmethod
    def make_names_data(name: str) -> Iterator[tuple[str, dict, list]]:  # type: ignore[override]
        yield name, {}, []

    def _connect(self) -> None:
        route, jumps = self.state.golive_routes[self.host.name]
        target = route.target
        timeout = target.connect_timeout or self.state.config.CONNECT_TIMEOUT
        sock = jumps.socket_to(route, timeout)
        client = paramiko.SSHClient()
        client._host_keys = known_hosts(target.known_hosts_files)  # type: ignore[attr-defined]
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        # The names the key is looked up under: HostKeyAlias alone, else [address]:port.
        lookup_name, lookup_port = (target.host_key_alias, 22) if target.host_key_alias else (target.address,
                                                                                               target.port)
        self.client = client  # type: ignore[assignment]
        try:
            client.connect(lookup_name, port=lookup_port, username=target.user, sock=sock,
                           key_filename=list(target.identity_files) or None, allow_agent=False, look_for_keys=False,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
        except paramiko.BadHostKeyException:
            raise HopError(target, "changed_key", "the host key does not match") from None
        except paramiko.AuthenticationException as error:
            raise HopError(target, "auth", str(error)) from None
        except paramiko.SSHException as error:
            if "not found in known_hosts" in str(error):
                raise HopError(target, "unknown_key", f"no host key for {target.key_name}") from None
            raise HopError(target, "unreachable", str(error)) from None
        except (OSError, EOFError) as error:
            raise HopError(target, "unreachable", str(error) or type(error).__name__) from None
        if route.keepalive:
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(route.keepalive)

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
    """One sentence an operator can act on, naming the host, its route and the hop that failed."""
    route = route_of(host)
    where = f"{host.name} ({route.words()})" if route else f"{host.name} ({host.connection.address})"
    hop = getattr(error, "hop", None) or (route.target if route else None)
    kind = getattr(error, "kind", "")
    detail = getattr(error, "detail", "") or str(error)
    what = "" if hop is None or route is None or hop == route.target else f"the jump host {hop.words()}: "
    files = " ".join(hop.known_hosts_files) if hop else ""
    if kind == "changed_key":
        return (f"{where}: REFUSED - {what}the host key does not match {files}; nothing was sent. "
                f"If the host was rebuilt, verify its new key and update known_hosts.")
    if kind == "unknown_key":
        return f"{where}: REFUSED - {what}no host key for {hop.key_name} in {files}; nothing was sent"
    if kind == "auth":
        keys = ", ".join(hop.identity_files) or "no key (set ansible_ssh_private_key_file)"
        return f"{where}: {what}authentication failed for user {hop.user} with {keys}"
    if kind == "timeout" or "timed out" in detail.lower():
        return f"{where}: unreachable ({what}connection timed out)"
    if kind == "unreachable":
        hint = ""
        if "name resolution" in detail and not (route and (route.jumps or route.proxy_command)):
            hint = ("; golive reads no ssh_config unless the inventory's ssh args (-F) or golive.yml "
                    "(connection.ssh_config) name one, and reaches a host through a jump host only when "
                    "ProxyJump or ProxyCommand says so")
        return f"{where}: unreachable ({what}{detail}){hint}"
    return f"{where}: cannot connect: {detail}"


def route_of(host: Host) -> Route | None:
    """The host's route (the workspace sets it); a Host made elsewhere gets it read here."""
    if host.connection.route is not None or host.connection.route_problems:
        return host.connection.route
    return _resolver().route(host.name, host.connection, host.where)[0]


def _resolver():  # -> golive.adapters.ssh_options.Resolver, for hosts made outside a workspace
    from pathlib import Path

    from golive.adapters.ssh_options import Resolver

    return Resolver(Path.cwd())


def connection_file_problems(hosts: Iterable[Host]) -> list[Problem]:
    """Why a host cannot be reached as its connection options say (an ssh option golive does not
    support, a broken ssh_config, a missing key or known_hosts file, for it or a jump host): found
    before any host is contacted, naming the option and where it was set."""
    from golive.core.errors import merged

    problems: list[Problem] = []
    for host in hosts:
        route, found = host.connection.route, list(host.connection.route_problems)
        if route is None and not found:
            route, found = _resolver().route(host.name, host.connection, host.where)
        if route is not None:
            found += _resolver().file_problems(host.name, host.connection, route, host.where)
        problems.extend(found)
    return merged(problems)


class Fleet:
    """The SSH sessions of one golive run: connected once, reused by every step."""

    def __init__(self, hosts: Iterable[Host], connect_timeout: int = 10) -> None:
        self.hosts = list(hosts)
        problems = connection_file_problems(self.hosts)
        if problems:
            raise BadInput(problems)
        names_data = [(f"@golive/{h.name}", {}) for h in self.hosts]
        inventory = Inventory((names_data, {}))
        self.state = State(inventory, Config(CONNECT_TIMEOUT=connect_timeout, PARALLEL=max(1, len(self.hosts))))
        self.jumps = Jumps()
        # The connector reads each host's route from the state (GoliveSSHConnector._connect).
        self.state.golive_routes = {h.name: (route_of(h), self.jumps)  # type: ignore[attr-defined]
                                    for h in self.hosts}
        self.connected: dict[str, Connected] = {}
        self._connecting: dict[str, Any] = {}  # host name -> greenlet
        self._pyinfra_hosts = {h.name: h for h in self.state.inventory}

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
            # The greenlet stays in _connecting until it is done: taken out earlier, a concurrent
            # start_connecting (first_alone's) would open a second connection to the host, whose
            # connector then swaps its client under the first one's feet.
            greenlet = self._connecting[host.name]
            try:
                result = greenlet.get()
            except Exception:  # a defect in connecting: the host is reported, not lost
                result = Connected(host, None, f"{host.name}: cannot connect")
            self.connected.setdefault(host.name, result)
            self._connecting.pop(host.name, None)
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
        self.jumps.close()

"""Test hosts for golive's own tests, its benchmark and a developer's machine (like Fabric's
``fabric.testing``): real SSH servers on local addresses, never mocks. Two kinds, one interface
(``up``, ``down``, ``status``, ``is_up``, ``hosts``, ``client_key``, ``known_hosts``, ``reset``,
``stop``/``start``/``rekey`` of a host's sshd, ``exec``, ``ssh``, ``path``):

- ``golive.testing.hosts.TestHosts``: light hosts, one OpenSSH server per host in its own mount and
  UTS namespace with private application directories; 30 hosts start in about half a second.
- ``golive.testing.systemd.SystemdHosts``: real Debian 12 servers booting systemd (systemd-nspawn),
  each with its own /etc, /usr and /var and apt seeing a local repository; a few seconds to boot.
  The Debian base and the repository are built once (``golive.testing.debian``).
- ``golive.testing.postgres``: real PostgreSQL 15 servers (one template cluster, copied per server).

Command line: ``python3 -m golive.testing --help`` (``scripts/testhosts``). Stdlib only: the test
fixtures and the benchmark import this package before anything else is installed.
"""

from golive.testing._common import HostInfo, TestHostsError

__all__ = ["HostInfo", "TestHostsError", "TestHosts", "SystemdHosts"]


def __getattr__(name: str):
    # Imported on first use, so that importing one kind does not pay for the other.
    if name == "TestHosts":
        from golive.testing.hosts import TestHosts

        return TestHosts
    if name == "SystemdHosts":
        from golive.testing.systemd import SystemdHosts

        return SystemdHosts
    raise AttributeError(name)

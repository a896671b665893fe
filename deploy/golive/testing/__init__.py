"""Test hosts for golive's own tests, its benchmark and a developer's machine (like Fabric's
``fabric.testing``): real SSH servers on local addresses, never mocks.

- ``golive.testing.hosts.TestHosts``: light hosts, one OpenSSH server per host in its own mount and
  UTS namespace; starts 30 hosts in about half a second.

Command line: ``python3 -m golive.testing --help`` (``scripts/testhosts``). Stdlib only: the test
fixtures and the benchmark import this package before anything else is installed.
"""

"""Process set-up for verbs that reach hosts, done once before pyinfra and paramiko are imported.

- gevent must patch the standard library before paramiko is imported, or paramiko's transport
  threads would be real threads beside gevent's hub (pyinfra's own CLI does the same).
- gevent (25 times while patching) and pyinfra (3 times per inventory) ask importlib.metadata for
  entry points, and every ask scans all installed distributions (~7 ms each here): scan once, and
  show pyinfra only golive's connector.
- paramiko imports `invoke` (~45 ms) only to run `Match exec` lines of an ssh_config, which golive
  never reads (the inventory is the only source of connection settings).
- gevent resolves host names with the system's blocking resolver (see below).
"""

from __future__ import annotations

import os
import sys


def _scan_entry_points_once() -> None:
    from importlib import metadata

    if getattr(metadata.entry_points, "golive_memo", False):
        return
    every = metadata.entry_points()
    # golive reaches hosts only through its own connector (`@golive/...` names, a subclass of pyinfra's
    # ssh connector, which pyinfra also looks up by name): pyinfra need not import every connector it
    # ships (docker, terraform, vagrant, ...: ~20 ms) to find them.
    connectors = metadata.EntryPoints(e for e in every.select(group="pyinfra.connectors")
                                      if e.name in ("golive", "ssh"))

    def entry_points(**selection):
        if selection == {"group": "pyinfra.connectors"}:
            return connectors
        return every.select(**selection) if selection else every

    entry_points.golive_memo = True
    metadata.entry_points = entry_points


def patch_for_parallel_ssh() -> None:
    _scan_entry_points_once()
    sys.modules.setdefault("invoke", None)  # makes paramiko.config skip it (ImportError path)
    # Resolve names with the blocking system resolver: inventories mostly hold addresses, and
    # gevent's thread-pool resolver prints a spurious error when ansible-core probes getaddrinfo.
    os.environ.setdefault("GEVENT_RESOLVER", "block")
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
    import gevent

    # Ctrl-C still stops golive (the hub raises it in the main greenlet); the hub need not also
    # print it, with a traceback, before golive says where each host was.
    hub = gevent.get_hub()
    hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)

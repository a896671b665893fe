"""Process set-up for verbs that reach hosts, done once before pyinfra and paramiko are imported.

- gevent must patch the standard library before paramiko is imported, or paramiko's transport
  threads would be real threads beside gevent's hub (pyinfra's own CLI does the same).
- gevent (25 times while patching) and pyinfra (3 times per inventory) ask importlib.metadata for
  entry points, and every ask scans all installed distributions (~7 ms each here): scan once, and
  show pyinfra only golive's connector.
- paramiko imports `invoke` (~45 ms) only to run `Match exec` lines of an ssh_config, which golive
  never reads (the inventory is the only source of connection settings).
- gevent resolves host names with the system's blocking resolver (see below).
- Ctrl-C reaches golive's flow whichever greenlet runs when it comes (interrupt_in_main_greenlet).
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

    # The hub need not print a KeyboardInterrupt, with a traceback, before golive says where each
    # host was.
    hub = gevent.get_hub()
    hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)
    interrupt_in_main_greenlet()


def interrupt_in_main_greenlet() -> None:
    """Ctrl-C raises KeyboardInterrupt in the main greenlet (the one running golive's flow), at once,
    whichever greenlet runs when it comes.

    Python runs a signal handler in whatever code the main thread runs next, and under gevent every
    greenlet runs in the main thread. Raised in paramiko's transport thread (it polls its socket),
    the KeyboardInterrupt kills it without closing its channels: the round trip waiting on one
    waits for its timeout. Raised in rich's refresh thread, threading swallows it: the run goes on.
    So the handler raises it only in the main greenlet; elsewhere it has the hub throw it into the
    main greenlet, where it ends whatever wait golive is in (a round trip, a connect, a fan-out), as
    gevent's own Timeout does."""
    import signal
    import threading

    import gevent
    import greenlet

    if threading.current_thread() is not threading.main_thread():
        return  # golive used as a library from a thread: only the main thread may set handlers
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # SIGINT ignored (a background job) or handled by the program golive runs in
    main = greenlet.getcurrent()
    hub = gevent.get_hub()
    queued: list[bool] = []  # one throw at a time: a second Ctrl-C meanwhile says nothing new

    def throw() -> None:
        queued.clear()
        if not main.dead:
            main.throw(KeyboardInterrupt)

    def on_interrupt(signum: int, frame: object) -> None:
        if greenlet.getcurrent() is main:
            raise KeyboardInterrupt
        if not queued:
            queued.append(True)
            hub.loop.run_callback(throw)

    signal.signal(signal.SIGINT, on_interrupt)

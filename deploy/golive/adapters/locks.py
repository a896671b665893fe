"""Is the controller that holds a lock still alive? Only the lock's own machine can tell."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any


def process_start(pid: int) -> str:
    """The process start time in clock ticks since boot: a pid reused later gets another one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def controller_name() -> str:
    return socket.gethostname()


def liveness(holder: Mapping[str, Any] | None) -> str:
    """'stale' (its controller process is gone), 'alive', or 'unknown' (another controller)."""
    if not holder:
        return "none"
    if holder.get("incomplete"):
        return "stale"  # the lock dir exists but its owner never got written: its run died at once
    if holder.get("controller") != controller_name():
        return "unknown"
    pid = int(holder.get("pid") or 0)
    if pid <= 0:
        return "stale"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "stale"
    except PermissionError:
        pass
    started = holder.get("pid_start")
    # as text: the role's lock (ansible-core's native templating) may hold the number as a number
    return "alive" if not started or process_start(pid) == str(started) else "stale"


def takeover_allowed(holder: Mapping[str, Any] | None) -> bool:
    """A lock a re-run may take over without `golive unlock`: its holder is provably gone - it ran
    on this very controller and its process is dead (or its pid now belongs to another process).
    A lock of another controller, of a live process, or without its owner is never taken over."""
    return bool(holder) and not holder.get("incomplete") and holder.get("controller") == controller_name() \
        and liveness(holder) == "stale"


def holder_words(holder: Mapping[str, Any]) -> str:
    return (f"{holder.get('operator', '?')} on {holder.get('controller', '?')} (pid {holder.get('pid', '?')}, "
            f"{holder.get('action', 'deploy')} since {holder.get('since', '?')})")


def takeover_detail(holder: Mapping[str, Any]) -> str:
    """The ledger's and the report's words for a takeover (roles/golive words it the same way)."""
    return f"took over the lock of {holder_words(holder)}: that process is gone"


def describe(holder: Mapping[str, Any]) -> str:
    state = liveness(holder)
    who = holder_words(holder)
    if holder.get("incomplete"):
        who = "a run that died while taking it"
    if state == "stale":
        if takeover_allowed(holder):
            return (f"STALE lock held by {who}: that process is gone; the next deploy or rollback from this "
                    f"controller takes it over (or clear it with golive unlock --reason ...)")
        return f"STALE lock held by {who}: that process is gone; clear it with golive unlock --reason ..."
    if state == "alive":
        return f"locked by {who}, still running"
    return f"locked by {who}; if that controller is gone, clear it with golive unlock --reason ..."

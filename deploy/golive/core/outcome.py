"""What a verb hands back to the CLI: data for --json, text for people, and its verdict; and how a
reader should take each part of that text (its severity, which a terminal shows as colour)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class Outcome:
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    finding: bool = False  # exit 1: a check failed, drift found, no-go
    failed: bool = False  # exit 3: hosts could not be brought to the intended state


Severity = Literal["ok", "warning", "error"]

# Where a host ended up (a HostReport's status, a check row's result, a progress cell) as a reader
# should take it. A planned or running host has no severity: nothing happened to it yet.
STATUS_SEVERITY: Mapping[str, Severity] = {
    "ok": "ok", "deployed": "ok", "unchanged": "ok", "passed": "ok",
    "rolled_back": "warning", "skipped": "warning", "nothing_live": "warning",
    "failed": "error", "unreachable": "error", "locked": "error", "unknown": "error",
}

# The kinds of `golive: <kind>: ...` line on stderr.
MessageKind = Literal["error", "failed", "internal error", "warning"]
MESSAGE_SEVERITY: Mapping[MessageKind, Severity] = {
    "error": "error", "failed": "error", "internal error": "error", "warning": "warning"}


def host_statuses(data: Mapping[str, Any]) -> dict[str, str]:
    """Per host of a verb's data (its `hosts` rows), where it ended up: deploy's and rollback's
    `status`, check's `result`."""
    rows = data.get("hosts")
    found: dict[str, str] = {}
    for row in rows if isinstance(rows, list) else ():
        if isinstance(row, dict) and isinstance(row.get("host"), str):
            status = row.get("status", row.get("result"))
            if isinstance(status, str):
                found.setdefault(row["host"], status)
    return found


def line_severities(lines: list[str], statuses: Mapping[str, str], *, ok: bool | None) -> list[Severity | None]:
    """The severity of each line of a verb's text: its headline by the verdict (`ok` in the data,
    when the verb has one), each host's summary line (its first `  <host>: ` line) by where the
    host ended up; the other lines (notes, details under a host) have none."""
    severities: list[Severity | None] = [None] * len(lines)
    if lines and ok is not None:
        severities[0] = "ok" if ok else "error"
    pending = {f"  {host}:": STATUS_SEVERITY.get(status) for host, status in statuses.items()}
    for index, line in enumerate(lines):
        if not pending:
            break
        prefix = line[:line.find(":") + 1] if line.startswith("  ") else ""
        if prefix in pending:
            severities[index] = pending.pop(prefix)
    return severities


def step_detail(data: Mapping[str, Any]) -> list[tuple[str, Severity | None]]:
    """`-v` after a deploy or rollback: each host's steps with the seconds they took on the host,
    and the error of a host that did not end up where it was meant to; one block per host."""
    rows = data.get("hosts")
    rows = [r for r in (rows if isinstance(rows, list) else ())
            if isinstance(r, dict) and isinstance(r.get("host"), str) and isinstance(r.get("status"), str)]
    if not rows:
        return []
    blocks: list[tuple[str, Severity | None]] = [("steps on each host (seconds):", None)]
    for row in rows:
        steps = row.get("steps") if isinstance(row.get("steps"), dict) else {}
        took = " · ".join(f"{name} {seconds:.2f}s" for name, seconds in steps.items()
                          if isinstance(seconds, (int, float)))
        block = f"  {row['host']} ({row['status']}): {took or 'no step ran on the host'}"
        if row.get("error"):
            block += f"\n    error: {row['error']}"
        blocks.append((block, STATUS_SEVERITY.get(row["status"])))
    return blocks

"""What golive shows people: live progress (a per-host, per-step table on a terminal, plain lines
otherwise), the result, and its `golive: error:`/`warning:`/`failed:` messages.

Progress and messages go to stderr, so stdout carries only the result (text or the --json document).
Colour (rich) only where rich finds a terminal that shows it: never in a file or a pipe (unless
FORCE_COLOR or TTY_COMPATIBLE=1 asks for it), not with NO_COLOR set, not on TERM=dumb, never with
--json. Every text is masked whole first and styled after; user text becomes rich Text, never
markup, so a `[red]` in a message prints as it is.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from golive.core.outcome import (
    MESSAGE_SEVERITY,
    STATUS_SEVERITY,
    MessageKind,
    Outcome,
    Severity,
    host_statuses,
    line_severities,
    step_detail,
)
from golive.core.redact import Redactor

if TYPE_CHECKING:
    from rich.console import Console

STYLES: dict[Severity, str] = {"ok": "green", "warning": "yellow", "error": "red"}


def colour_console(stream: IO[str]) -> Console | None:
    """A rich Console writing to `stream` when rich would show colour there, else None: the caller
    prints plain text, byte for byte what it printed before golive had colour."""
    environ = os.environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        tty = False
    if not tty and environ.get("FORCE_COLOR") is None and environ.get("TTY_COMPATIBLE") != "1":
        return None  # a pipe or a file: rich would say no; not importing it saves start-up time
    from rich.console import Console

    # soft_wrap: lines stay as long as they are (a terminal wraps them, rich would cut them)
    console = Console(file=stream, soft_wrap=True, markup=False, emoji=False, highlight=False)
    return console if shows_colour(console) else None


def shows_colour(console: Console) -> bool:
    """rich's verdict: a terminal (or FORCE_COLOR), not TERM=dumb, NO_COLOR unset or empty."""
    return console.is_terminal and console.color_system is not None and not console.no_color


def _styled(parts: Iterable[tuple[str, str]]) -> Any:
    from rich.text import Text

    return Text.assemble(*parts)  # Text, never markup: a `[red]` in a message prints as it is


def _target(stream: IO[str], *, colour: bool, console: Console | None) -> tuple[IO[str], Console | None]:
    """Where to write (the given console's file, else `stream`), and the console to colour with:
    only when colour is wanted and rich finds it shows there."""
    if console is not None:
        return console.file, console if colour and shows_colour(console) else None
    return stream, colour_console(stream) if colour else None


def show(blocks: list[tuple[str, Severity | None]], stream: IO[str], *, colour: bool = True,
         console: Console | None = None) -> None:
    """Masked texts, each on its own lines, each coloured by its severity where colour shows."""
    stream, styler = _target(stream, colour=colour, console=console)
    if styler is None:
        print("\n".join(text for text, _ in blocks), file=stream)
        return
    for text, severity in blocks:
        styler.print(_styled([(text, STYLES[severity] if severity else "")]))


def show_outcome(outcome: Outcome, redactor: Redactor, *, verbose: int = 0, stream: IO[str] | None = None,
                 colour: bool = True, console: Console | None = None) -> None:
    """A verb's text on stdout: its headline and each host's summary line coloured by where it ended
    up; with -v, each host's steps and their seconds after it (deploy, rollback)."""
    masked = redactor.text(outcome.text)  # whole, before it is cut into lines
    lines = masked.split("\n")
    statuses = {redactor.text(host): status for host, status in host_statuses(outcome.data).items()}
    ok = outcome.data.get("ok") if isinstance(outcome.data.get("ok"), bool) else None
    blocks = list(zip(lines, line_severities(lines, statuses, ok=ok), strict=True))
    if verbose:
        blocks += [(redactor.text(text), severity) for text, severity in step_detail(outcome.data)]
    show(blocks, stream or sys.stdout, colour=colour, console=console)


def say(redactor: Redactor, kind: MessageKind, text: str, *, colour: bool = True,
        console: Console | None = None) -> None:
    """One `golive: <kind>: <text>` message on stderr, masked whole; its prefix coloured by severity."""
    line = redactor.text(f"golive: {kind}: {text}")
    prefix = f"golive: {kind}:"
    stream, styler = _target(sys.stderr, colour=colour and line.startswith(prefix), console=console)
    if styler is None:
        print(line, file=stream)
        return
    styler.print(_styled([(prefix, "bold " + STYLES[MESSAGE_SEVERITY[kind]]), (line[len(prefix):], "")]))


_SYMBOLS = {"ok": "ok", "running": "..", "failed": "FAILED", "skipped": "-", "unchanged": "=", "rolled_back": "undone"}


class Progress:
    def __init__(self, redactor: Redactor, quiet: bool = False) -> None:
        self.redactor = redactor
        self.quiet = quiet
        self.live: Any = None
        self.rows: dict[str, dict[str, str]] = {}
        self.states: dict[str, dict[str, str]] = {}  # each cell's status, for its colour
        self.columns: list[str] = []
        self.title = ""
        self.started = time.monotonic()
        # GOLIVE_PROGRESS_EVENTS=FILE: every change of the table, as it is shown, appended to FILE as one
        # JSON line (host, column, status, detail; masked), for a script or a test to follow a run
        self.events = os.environ.get("GOLIVE_PROGRESS_EVENTS") or None
        self._events_lock = threading.Lock()

    def start(self, title: str, hosts: Iterable[str], columns: Iterable[str]) -> None:
        self.columns = list(columns)
        self.rows = {h: {} for h in hosts}
        self.states = {h: {} for h in self.rows}
        self.title = title
        if self.quiet:
            return
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True, highlight=False), refresh_per_second=12,
                             transient=False)
            self.live.start()
        else:
            print(self.redactor.text(title), file=sys.stderr, flush=True)

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        mask = self.redactor.text

        def cell(host: str, column: str) -> Text:  # Text, not markup: a host's words print as they are
            severity = STATUS_SEVERITY.get(self.states.get(host, {}).get(column, ""))
            return Text(mask(self.rows[host].get(column, "")), style=STYLES[severity] if severity else "")

        table = Table(title=Text(mask(self.title)), title_justify="left")
        table.add_column("host")
        for column in self.columns:
            table.add_column(column)
        for host in self.rows:
            table.add_row(Text(mask(host)), *(cell(host, c) for c in self.columns))
        return table

    def update(self, host: str, column: str, status: str, detail: str = "") -> None:
        cell = _SYMBOLS.get(status, status) + (f" {detail}" if detail else "")
        self.rows.setdefault(host, {})[column] = cell
        self.states.setdefault(host, {})[column] = status
        if self.events:
            self._log(self.events, {"host": host, "column": column, "status": status, "detail": detail})
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self._table())
        elif column == "result":  # plain output: one line per host, once it is done
            steps = " · ".join(f"{c} {self.rows[host][c]}" for c in self.columns if c in self.rows[host])
            print(self.redactor.text(f"  {host}: {steps}"), file=sys.stderr, flush=True)

    def _log(self, path: str, event: dict[str, str]) -> None:
        line = json.dumps({k: self.redactor.text(v) for k, v in event.items()}, sort_keys=True) + "\n"
        with self._events_lock, open(path, "a", encoding="utf-8") as handle:
            handle.write(line)

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self.live is not None:
            from rich.text import Text

            self.live.console.print(Text(self.redactor.text(text)))
        else:
            print(self.redactor.text(text), file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def whereabouts(self) -> dict[str, str]:
        """Per host, what it was last seen doing: `done: <result>`, or the step under way (for the
        operator who interrupted a run)."""
        seen = {}
        for host, cells in self.rows.items():
            if cells.get("result"):
                seen[host] = f"done: {cells['result']}"
                continue
            steps = [c for c in self.columns if cells.get(c)]
            seen[host] = f"at {steps[-1]} ({cells[steps[-1]]})" if steps else "not started"
        return seen


class StepFeed:
    """One host's batch on the progress table as it runs: each step the host agent (or the Ansible
    role) reports starting or ending updates its column (`step_columns` names the column of a step
    that has none of its own). Once a step failed, the steps that undo it (`undo_steps`: mark bad,
    switch back, restart and verify the previous release, a first install's withdraw) show in the
    "undo" column, each while it runs; `settle` replays the batch's answer, so the table ends as
    the host says even if a progress line was lost."""

    def __init__(self, progress: Progress, host: str, columns: Iterable[str], step_columns: dict[str, str],
                 undo_steps: Iterable[str]) -> None:
        self.progress, self.host = progress, host
        self.columns, self.step_columns, self.undo_steps = set(columns), dict(step_columns), frozenset(undo_steps)
        self.failed = False  # a step of the batch failed: what follows undoes it
        self.undo: list[tuple[str, bool, float]] = []  # the undo steps ended so far
        self.shown: dict[str, tuple[str, str]] = {}  # column -> (status, detail) this feed last showed
        self.pending: dict[str, tuple[str, tuple[str, str]]] = {}  # column -> (step running, what it replaced)

    def column(self, name: str) -> str | None:
        if self.failed and name in self.undo_steps and "undo" in self.columns:
            return "undo"
        column = name if name in self.columns else self.step_columns.get(name)
        return column if column in self.columns and column != "result" else None

    def _show(self, column: str, status: str, detail: str) -> None:
        self.shown[column] = (status, detail)
        self.progress.update(self.host, column, status, detail)

    def event(self, name: str, state: str, seconds: float | None = None) -> None:
        """`state`: running, ok or failed (or skipped: a step that turned out not to run)."""
        column = self.column(name)
        if state == "failed" and column != "undo":
            self.failed = True
        if column is None:
            return
        if state == "skipped":  # put back what its start replaced
            step, before = self.pending.pop(column, ("", ("", "")))
            if step == name:
                self._show(column, *before)
            return
        words = name.replace("_", " ")
        if state == "running":
            self.pending[column] = (name, self.shown.get(column, ("", "")))
            self._show(column, "running", words if name != column else "")
            return
        self.pending.pop(column, None)
        if column == "undo":
            self.undo.append((name, state == "ok", seconds or 0.0))
            ended = "ok" if state == "ok" else "FAILED"
            self._show("undo", "running" if state == "ok" else "failed", f"{words} {ended}")
            return
        self._show(column, state, f"{seconds:.2f}s" if seconds is not None else "")

    def close(self, withdrawn: bool = False) -> None:
        """The undo column's end: ok or failed, its seconds; `withdrawn`: a first install stopped,
        with nothing to go back to."""
        if not self.undo:
            return
        ok = all(ended for _, ended, _ in self.undo)
        total = sum(seconds for _, _, seconds in self.undo)
        what = "stopped, nothing live" if withdrawn and ok else ""
        self._show("undo", "ok" if ok else "failed", " ".join(p for p in (what, f"{total:.2f}s") if p))

    def settle(self, steps: Iterable[Any], withdrawn: bool = False) -> None:
        """The batch's answer (its steps: name, ok, seconds): every cell as the host ended it."""
        self.failed, self.undo, self.pending = False, [], {}
        for step in steps:
            self.event(step.name, "ok" if step.ok else "failed", step.seconds)
        self.close(withdrawn)

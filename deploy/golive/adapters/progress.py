"""Live progress: a per-host, per-step table on a terminal (rich), plain lines otherwise.

Progress goes to stderr, so stdout carries only the result (text or the --json document).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from golive.core.redact import Redactor

_SYMBOLS = {"ok": "ok", "running": "..", "failed": "FAILED", "skipped": "-", "unchanged": "=", "rolled_back": "undone"}


class Progress:
    def __init__(self, redactor: Redactor, quiet: bool = False) -> None:
        self.redactor = redactor
        self.quiet = quiet
        self.live = None
        self.rows: dict[str, dict[str, str]] = {}
        self.columns: list[str] = []
        self.started = time.monotonic()

    def start(self, title: str, hosts: Iterable[str], columns: Iterable[str]) -> None:
        self.columns = list(columns)
        self.rows = {h: {} for h in hosts}
        if self.quiet:
            return
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.title = title
            self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=12, transient=False)
            self.live.start()
        else:
            print(self.redactor.text(title), file=sys.stderr, flush=True)

    def _table(self):
        from rich.table import Table

        mask = self.redactor.text
        table = Table(title=mask(self.title), title_justify="left")
        table.add_column("host")
        for column in self.columns:
            table.add_column(column)
        for host, cells in self.rows.items():
            table.add_row(mask(host), *(mask(cells.get(c, "")) for c in self.columns))
        return table

    def update(self, host: str, column: str, status: str, detail: str = "") -> None:
        cell = _SYMBOLS.get(status, status) + (f" {detail}" if detail else "")
        self.rows.setdefault(host, {})[column] = cell
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self._table())
        elif column == "result":  # plain output: one line per host, once it is done
            steps = " · ".join(f"{c} {self.rows[host][c]}" for c in self.columns if c in self.rows[host])
            print(self.redactor.text(f"  {host}: {steps}"), file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.console.print(self.redactor.text(text))
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

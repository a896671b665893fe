"""The go/no-go gate as values: gate items per host and for the workspace, and the verdict. Pure:
golive.flows.preflight fills it in, golive.flows.preflight_report writes it for the client."""

from __future__ import annotations

from dataclasses import dataclass, field

from golive.core import drift as core


@dataclass
class Item:
    """One gate item of one host (or of the workspace): green or red, and what to do when red."""

    name: str
    ok: bool
    detail: str
    action: str = ""


@dataclass
class HostGate:
    host: str
    environment: str
    address: str
    items: list[Item] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)


@dataclass
class Gate:
    customer: str
    source: str
    target: str
    release: str | None
    workspace: Item
    hosts: list[HostGate]
    unexpected: list[core.Finding]
    expected: list[core.Finding]
    pending: list[core.Finding]  # what the go-live itself changes
    started: str
    operator: str
    seconds: float = 0.0
    rollback: list[str] = field(default_factory=list)  # "if we must roll back", in plain words

    @property
    def go(self) -> bool:
        return self.workspace.ok and all(h.ok for h in self.hosts)

    def red(self) -> list[tuple[str, Item]]:
        found = [("workspace", self.workspace)] if not self.workspace.ok else []
        return found + [(h.host, i) for h in self.hosts for i in h.items if not i.ok]

"""The go/no-go gate as values: gate items per host and for the workspace, and the verdict. Pure:
golive.flows.preflight fills it in, golive.flows.preflight_report writes it for the client."""

from __future__ import annotations

from dataclasses import dataclass, field

from golive.core import drift as core
from golive.core.plan import FileChangeKind


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


@dataclass(frozen=True)
class ConfigChange:
    """A config file this go-live changes on some hosts: its diff, masked before it was made; none
    for a secret file ("changed, contents not shown")."""

    dest: str
    change: FileChangeKind
    secret: bool
    diff: str
    hosts: tuple[str, ...]


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
    company: str = ""  # the client's name (inventory `company_name`, else the customer key)
    product: str = ""  # golive.yml application.display_name, else application.name
    timezone: str = ""  # the customer's zone (inventory `timezone`); empty: times in UTC only
    started_local: str = ""  # `started` in that zone
    artifact: str = ""  # the artifact's file name
    artifact_sha256: str = ""  # in full
    config_changes: list[ConfigChange] = field(default_factory=list)
    rollback_plan: list[str] = field(default_factory=list)  # plain sentences
    first_go_live: bool = False  # no production host has any release yet
    notes: list[str] = field(default_factory=list)  # what the report could not say as asked, and why

    @property
    def go(self) -> bool:
        return self.workspace.ok and all(h.ok for h in self.hosts)

    @property
    def title(self) -> str:
        """Who and what: the client's name and the product's, as the client knows them."""
        return f"{self.company or self.customer} — {self.product}" if self.product else (self.company or self.customer)

    def passed(self) -> list[tuple[str, Item]]:
        found = [("workspace", self.workspace)] if self.workspace.ok else []
        return found + [(h.host, i) for h in self.hosts for i in h.items if i.ok]

    def red(self) -> list[tuple[str, Item]]:
        found = [("workspace", self.workspace)] if not self.workspace.ok else []
        return found + [(h.host, i) for h in self.hosts for i in h.items if not i.ok]

"""The environment a release lands on, as golive.yml's `provision:` declares it: per inventory group
(`all`: every host of the environment), OS packages, groups, users, directories, files and systemd
units rendered from templates, and the user's own pyinfra deploy files. Pure values and the one
decision made on them: which items a host gets, in which order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

ALL = "all"
SECTIONS = ("packages", "groups", "users", "directories", "files", "services", "deploy")
# What a provision did (or, with --plan, would do) to one item of one host.
ItemStatus = Literal["changed", "unchanged", "would_change", "failed", "not_run"]


@dataclass(frozen=True)
class Package:
    name: str
    version: str = ""  # apt's `name=version`: that version exactly, else any installed version
    where: str = ""

    @property
    def key(self) -> str:
        return f"package {self.name}"

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}" if self.version else self.name


@dataclass(frozen=True)
class Group:
    name: str
    system: bool = False
    where: str = ""

    @property
    def key(self) -> str:
        return f"group {self.name}"


@dataclass(frozen=True)
class User:
    name: str
    group: str = ""  # the primary group (must exist: declare it under groups)
    groups: tuple[str, ...] = ()  # supplementary groups
    home: str = ""
    shell: str = ""
    system: bool = False
    where: str = ""

    @property
    def key(self) -> str:
        return f"user {self.name}"


@dataclass(frozen=True)
class Directory:
    path: str
    owner: str = ""
    group: str = ""
    mode: int | None = None
    where: str = ""

    @property
    def key(self) -> str:
        return f"directory {self.path}"


@dataclass(frozen=True)
class File:
    src: str  # a template under config_templates/<app>/ (a customer's override first)
    dest: str
    owner: str = ""
    group: str = ""
    mode: int | None = None
    where: str = ""

    @property
    def key(self) -> str:
        return f"file {self.dest}"


@dataclass(frozen=True)
class Service:
    name: str  # the unit, e.g. northwind-worker (.service added when no type is given)
    src: str = ""  # its unit file's template, rendered to /etc/systemd/system/<unit>
    enabled: bool | None = True  # None: leave as it is
    running: bool | None = True
    where: str = ""

    @property
    def unit(self) -> str:
        return self.name if "." in self.name else f"{self.name}.service"

    @property
    def unit_path(self) -> str:
        return f"/etc/systemd/system/{self.unit}"

    @property
    def key(self) -> str:
        return f"service {self.unit}"


@dataclass(frozen=True)
class DeployFile:
    path: str  # relative to the workspace
    where: str = ""

    @property
    def key(self) -> str:
        return f"deploy {self.path}"


Item = Package | Group | User | Directory | File | Service | DeployFile


@dataclass(frozen=True)
class GroupProvision:
    """What one inventory group's hosts need."""

    group: str
    where: str
    items: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Provision:
    groups: tuple[GroupProvision, ...] = ()
    source: str = "golive.yml"

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.group for g in self.groups)


@dataclass(frozen=True)
class HostItems:
    """The items one host gets, in the order they are applied, or why they contradict each other."""

    items: tuple[Item, ...] = ()
    problems: tuple[tuple[str, str], ...] = field(default=())  # (where, message)


_ORDER = {Package: 0, Group: 1, User: 2, Directory: 3, File: 4, Service: 5, DeployFile: 6}


def host_items(provision: Provision, host_groups: tuple[str, ...] | frozenset[str]) -> HostItems:
    """The items of every section that applies to a host (`all`, then its groups as golive.yml lists
    them), by kind in dependency order: packages (they bring users and directories of their own),
    groups, users, directories, files, services, then the user's deploy files. An item declared twice
    the same way is applied once; declared twice differently, it is a contradiction in golive.yml."""
    chosen: dict[str, Item] = {}
    problems: list[tuple[str, str]] = []
    for section in provision.groups:
        if section.group != ALL and section.group not in host_groups:
            continue
        for item in section.items:
            earlier = chosen.get(item.key)
            if earlier is None:
                chosen[item.key] = item
            elif _without_where(earlier) != _without_where(item):
                problems.append((item.where, f"provision: {item.key} is declared differently at {earlier.where}, "
                                             f"and a host is in both groups"))
    items = sorted(chosen.values(), key=lambda item: _ORDER[type(item)])
    return HostItems(tuple(items), tuple(problems))


def _without_where(item: Item) -> Item:
    return replace(item, where="")

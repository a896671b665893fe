"""Reads golive.yml's `provision:` section into core.provision values, every problem with its line.

    provision:
      all:                          # an inventory group; `all` is every host of the environment
        packages: [tree, "jq=1.6-2.1+deb12u1"]
        groups: [northwind]         # or {name: northwind, system: true}
        users:
          - {name: northwind, group: northwind, home: /opt/northwind, shell: /usr/sbin/nologin, system: true}
        directories:
          - {path: /var/lib/northwind, owner: northwind, group: northwind, mode: "0750"}
        files:                      # templates under config_templates/<app>/, the host's variables
          - {src: provision/limits.conf.j2, dest: /etc/security/limits.d/northwind.conf, mode: "0644"}
        services:
          - {name: northwind-worker, src: provision/northwind-worker.service.j2, enabled: true, running: true}
        deploy: [provision/extra.py]   # the user's own pyinfra deploy files, run after the items above
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from golive.adapters.yamlfile import YamlMap
from golive.core.errors import Problem
from golive.core.model import name_problem
from golive.core.provision import (
    SECTIONS,
    DeployFile,
    Directory,
    File,
    Group,
    GroupProvision,
    Item,
    Package,
    Provision,
    Service,
    User,
)


class Reader(Protocol):  # adapters.appdef._Reader
    problems: list[Problem]

    def at(self, mapping: Any, key: str | None = None) -> str: ...

    def problem(self, mapping: Any, key: str | None, message: str) -> None: ...


# Debian policy: a package name is lower case letters, digits and + - . (at least two characters,
# starting alphanumeric); a version is [epoch:]upstream[-revision].
PACKAGE = re.compile(r"([a-z0-9][a-z0-9+.-]+)(?:=([0-9][A-Za-z0-9.+~:-]*))?")
# What useradd and groupadd accept on Debian (NAME_REGEX), without the trailing $ of machine accounts.
ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
GROUP_NAME = re.compile(r"[A-Za-z0-9_-]+")
UNIT = re.compile(r"[A-Za-z0-9:_.@-]+")
PATH = re.compile(r"(/[A-Za-z0-9_.+@-]+)+/?")
TEMPLATES = "config_templates"

_KEYS = {
    "groups": {"name", "system"},
    "users": {"name", "group", "groups", "home", "shell", "system"},
    "directories": {"path", "owner", "group", "mode"},
    "files": {"src", "dest", "owner", "group", "mode"},
    "services": {"name", "src", "enabled", "running"},
}


def read_provision(reader: Reader, data: YamlMap, workspace: Path, app_name: str) -> Provision | None:
    if data.get("provision") is None:
        return None
    section = data["provision"]
    if not isinstance(section, dict):
        reader.problem(data, "provision", "'provision' must be a mapping of inventory group names (or `all`) to "
                                          f"what their hosts need ({', '.join(SECTIONS)})")
        return None
    groups = []
    for group, entry in section.items():
        where = reader.at(section, group)
        if not isinstance(group, str) or not GROUP_NAME.fullmatch(group):
            reader.problem(section, group, f"provision: {group!r} is not an inventory group name (letters, digits, "
                                           f"_ and -; `all` for every host)")
            continue
        if entry is None:
            groups.append(GroupProvision(group, where))
            continue
        if not isinstance(entry, YamlMap):
            reader.problem(section, group, f"provision.{group} must be a mapping of {', '.join(SECTIONS)}")
            continue
        for unknown in sorted(set(entry) - set(SECTIONS)):
            reader.problem(entry, unknown, f"unknown key provision.{group}.{unknown} (known: {', '.join(SECTIONS)})")
        items: list[Item] = []
        parse = _Section(reader, workspace, app_name, group, entry)
        items += parse.packages()
        items += parse.groups()
        items += parse.users()
        items += parse.directories()
        items += parse.files()
        items += parse.services()
        items += parse.deploy()
        seen: set[str] = set()
        for item in items:
            if item.key in seen:
                reader.problems.append(Problem(item.where, f"provision.{group}: {item.key} is declared twice"))
            seen.add(item.key)
        groups.append(GroupProvision(group, where, tuple(items)))
    return Provision(tuple(groups))


class _Section:
    def __init__(self, reader: Reader, workspace: Path, app_name: str, group: str, entry: YamlMap) -> None:
        self.reader, self.workspace, self.app_name, self.group, self.entry = reader, workspace, app_name, group, entry

    def _list(self, key: str) -> list[Any]:
        value = self.entry.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.reader.problem(self.entry, key, f"provision.{self.group}.{key} must be a list")
            return []
        return value

    def _mappings(self, key: str, required: str, allow_name: bool = False) -> list[tuple[YamlMap, str]]:
        """Each entry of a list of mappings (or of bare names, where allow_name) with its location."""
        found: list[tuple[YamlMap, str]] = []
        for index, raw in enumerate(self._list(key)):
            label = f"provision.{self.group}.{key}[{index}]"
            if allow_name and isinstance(raw, str):
                raw = YamlMap({required: raw})
                raw.line = self.entry.line_of(key)
            if not isinstance(raw, YamlMap):
                self.reader.problem(self.entry, key, f"{label} must be a mapping like {{{required}: ...}}, got {raw!r}")
                continue
            for unknown in sorted(set(raw) - _KEYS[key]):
                self.reader.problem(raw, unknown, f"unknown key {label}.{unknown} (known: "
                                                  f"{', '.join(sorted(_KEYS[key]))})")
            if not isinstance(raw.get(required), str) or not raw.get(required):
                self.reader.problem(raw, required if required in raw else None, f"{label} needs {required!r}")
                continue
            found.append((raw, label))
        return found

    def _text(self, raw: YamlMap, key: str, label: str, pattern: re.Pattern[str], what: str) -> str:
        value = raw.get(key)
        if value is None or value == "":
            return ""
        if not isinstance(value, str) or not pattern.fullmatch(value) or _dot_parts(value):
            self.reader.problem(raw, key, f"{label}.{key} {value!r} is not {what}")
            return ""
        return value

    def _flag(self, raw: YamlMap, key: str, label: str, default: bool | None) -> bool | None:
        value = raw.get(key, default)
        if value is not None and not isinstance(value, bool):
            self.reader.problem(raw, key, f"{label}.{key} must be true or false, got {value!r}")
            return default
        return value

    def _mode(self, raw: YamlMap, label: str) -> int | None:
        value = raw.get("mode")
        if value is None:
            return None
        if not isinstance(value, str):
            # YAML reads 0750 unquoted as the number 488 and 750 as 750 (0o1356): which one was
            # meant cannot be known from the number, so only the quoted form is taken
            self.reader.problem(raw, "mode", f"{label}.mode must be a quoted octal string like \"0750\", got "
                                             f"{value!r} (YAML reads an unquoted mode as a number)")
            return None
        try:
            mode = int(value, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o7777:
            self.reader.problem(raw, "mode", f"{label}.mode must be a quoted octal string like \"0750\", got {value!r}")
            return None
        return mode

    def _account(self, raw: YamlMap, key: str, label: str) -> str:
        return self._text(raw, key, label, ACCOUNT, "a user or group name (lower case letters, digits, _ and -, "
                                                    "starting with a letter or _, at most 32 characters)")

    def _path(self, raw: YamlMap, key: str, label: str) -> str:
        return self._text(raw, key, label, PATH, "a plain absolute path (letters, digits and . _ + @ - between "
                                                 "slashes, no '.' or '..' part)")

    def _template(self, raw: YamlMap, key: str, label: str) -> str:
        src = raw.get(key)
        if src is None:
            return ""
        if not isinstance(src, str) or not src or any(name_problem(part, "template src") for part in src.split("/")):
            self.reader.problem(raw, key, f"{label}.{key} {src!r} must be a file name under {TEMPLATES}/"
                                          f"{self.app_name}/ (folders allowed): letters, digits and . _ - in each "
                                          f"part, no '..', not absolute")
            return ""
        base = self.workspace / TEMPLATES / self.app_name
        if not (base / src).is_file() and not any(base.glob(f"customers/*/{src}")):
            self.reader.problem(raw, key, f"{label}.{key}: template {src!r} not found in {TEMPLATES}/{self.app_name}/")
            return ""
        return src

    def packages(self) -> list[Package]:
        found = []
        for index, raw in enumerate(self._list("packages")):
            match = PACKAGE.fullmatch(raw) if isinstance(raw, str) else None
            if match is None:
                self.reader.problem(self.entry, "packages", f"provision.{self.group}.packages[{index}] {raw!r} is "
                                                            f"not a package name (optionally =version)")
                continue
            found.append(Package(match.group(1), match.group(2) or "", self.reader.at(self.entry, "packages")))
        return found

    def groups(self) -> list[Group]:
        found = []
        for raw, label in self._mappings("groups", "name", allow_name=True):
            name = self._account(raw, "name", label)
            system = self._flag(raw, "system", label, False)
            if name:
                found.append(Group(name, bool(system), self.reader.at(raw)))
        return found

    def users(self) -> list[User]:
        found = []
        for raw, label in self._mappings("users", "name"):
            name = self._account(raw, "name", label)
            extra = raw.get("groups") or []
            if not isinstance(extra, list) or not all(isinstance(g, str) and ACCOUNT.fullmatch(g) for g in extra):
                self.reader.problem(raw, "groups", f"{label}.groups must be a list of group names, got {extra!r}")
                extra = []
            user = User(name, group=self._account(raw, "group", label), groups=tuple(extra),
                        home=self._path(raw, "home", label), shell=self._path(raw, "shell", label),
                        system=bool(self._flag(raw, "system", label, False)), where=self.reader.at(raw))
            if name:
                found.append(user)
        return found

    def directories(self) -> list[Directory]:
        found = []
        for raw, label in self._mappings("directories", "path"):
            directory = Directory(self._path(raw, "path", label), owner=self._account(raw, "owner", label),
                                  group=self._account(raw, "group", label), mode=self._mode(raw, label),
                                  where=self.reader.at(raw))
            if directory.path:
                found.append(directory)
        return found

    def files(self) -> list[File]:
        found = []
        for raw, label in self._mappings("files", "src"):
            if "dest" not in raw:
                self.reader.problem(raw, None, f"{label} needs 'dest' (the absolute path on the host)")
            item = File(self._template(raw, "src", label), self._path(raw, "dest", label),
                        owner=self._account(raw, "owner", label), group=self._account(raw, "group", label),
                        mode=self._mode(raw, label), where=self.reader.at(raw))
            if item.src and item.dest:
                found.append(item)
        return found

    def services(self) -> list[Service]:
        found = []
        for raw, label in self._mappings("services", "name"):
            name = self._text(raw, "name", label, UNIT, "a systemd unit name (like northwind-worker or "
                                                        "northwind-worker.service)")
            service = Service(name, src=self._template(raw, "src", label),
                              enabled=self._flag(raw, "enabled", label, True),
                              running=self._flag(raw, "running", label, True), where=self.reader.at(raw))
            if name:
                found.append(service)
        return found

    def deploy(self) -> list[DeployFile]:
        found = []
        for index, raw in enumerate(self._list("deploy")):
            label = f"provision.{self.group}.deploy[{index}]"
            if not isinstance(raw, str) or not raw.endswith(".py") or raw.startswith("/") or ".." in Path(raw).parts:
                self.reader.problem(self.entry, "deploy", f"{label} {raw!r} must be a pyinfra deploy file (.py) of "
                                                          f"the workspace, relative to it")
            elif not (self.workspace / raw).is_file():
                self.reader.problem(self.entry, "deploy", f"{label}: {raw} is not a file of the workspace")
            else:
                found.append(DeployFile(raw, self.reader.at(self.entry, "deploy")))
        return found


def _dot_parts(value: str) -> bool:
    return value.startswith("/") and any(part in (".", "..") for part in value.split("/"))

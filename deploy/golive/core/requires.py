"""What an artifact needs from a host (its manifest's `requires`), and whether a host has it.

Pure: the declaration is read from the manifest by golive.flows.desired, the host's facts by the
agent's state step (or the drift collector); this module only parses and compares.

    requires: {"python": ">=3.11", "glibc": ">=2.28,<3", "arch": ["x86_64", "aarch64"]}

A version requirement is one or more clauses joined by ",", each an operator (>=, <=, >, <, ==,
!=) and a version of dot-separated numbers. A version names a series: the host's version is cut to
as many parts as the clause gives before comparing, so python 3.11.7 meets "==3.11" and "<=3.11",
and not ">3.11" (3.12 onward). Numbers compare as numbers: 3.9.2 is older than 3.11.
An architecture requirement is a list of machine names, the host's `uname -m`; the Debian/Docker
names amd64 and arm64 mean x86_64 and aarch64.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from golive.core.errors import Problem

Key = Literal["python", "glibc", "arch"]
KEYS: tuple[Key, ...] = ("python", "glibc", "arch")
VERSION_KEYS = ("python", "glibc")
# What each key is on the host, in a message.
WHAT = {"python": "python3", "glibc": "glibc", "arch": "architecture"}
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "x64": "x86_64"}
OPERATORS = ("==", "!=", ">=", "<=", ">", "<")
_CLAUSE = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*([0-9]+(?:\.[0-9]+)*)\s*")
_ARCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_HOST_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")


@dataclass(frozen=True)
class Clause:
    op: str
    version: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.op}{'.'.join(map(str, self.version))}"

    def met_by(self, host: tuple[int, ...]) -> bool:
        have = (host + (0,) * len(self.version))[:len(self.version)]  # the host's version in this series
        return {"==": have == self.version, "!=": have != self.version, ">=": have >= self.version,
                "<=": have <= self.version, ">": have > self.version, "<": have < self.version}[self.op]


@dataclass(frozen=True)
class Requirement:
    key: Key
    clauses: tuple[Clause, ...] = ()  # python, glibc
    arches: tuple[str, ...] = ()  # arch

    @property
    def spec(self) -> str:
        """As declared, normalised: ">=3.11", ">=2.28,<3", "x86_64 or aarch64"."""
        return " or ".join(self.arches) if self.key == "arch" else ",".join(map(str, self.clauses))

    def __str__(self) -> str:
        return f"{self.key} {self.spec}"

    def declared(self) -> str | list[str]:
        """The manifest's value."""
        return list(self.arches) if self.key == "arch" else self.spec


@dataclass(frozen=True)
class Unmet:
    requirement: Requirement
    has: str  # what the host has, in words: "python3 3.9.2", "no glibc (musl or another C library)"

    def sentence(self, artifact: str) -> str:
        return f"{artifact} requires {self.requirement}; the host has {self.has}"


@dataclass(frozen=True)
class Requirements:
    items: tuple[Requirement, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    def declared(self) -> dict[str, Any]:
        """The manifest's `requires` (sorted keys: the same declaration, the same bytes)."""
        return {r.key: r.declared() for r in sorted(self.items, key=lambda r: r.key)}

    def unmet(self, facts: Mapping[str, Any]) -> list[Unmet]:
        """What a host does not meet, from its facts {"python": "3.11.2", "glibc": "2.36" | None,
        "arch": "x86_64"} (the agent's state step, `platform`). A fact the host did not report is
        unmet: golive cannot tell that the host has it."""
        found = []
        for requirement in self.items:
            value = facts.get(requirement.key)
            if requirement.key == "arch":
                machine = normal_arch(str(value)) if value else ""
                if machine not in requirement.arches:
                    found.append(Unmet(requirement, f"architecture {value}" if value else "an unknown architecture"))
                continue
            version = host_version(value)
            if version is None:
                has = ("no glibc (musl or another C library)" if requirement.key == "glibc"
                       else f"no {WHAT[requirement.key]} version golive could read")
                found.append(Unmet(requirement, has))
            elif not all(c.met_by(version) for c in requirement.clauses):
                found.append(Unmet(requirement, f"{WHAT[requirement.key]} {value}"))
        return found


def normal_arch(name: str) -> str:
    name = name.strip().lower()
    return ARCH_ALIASES.get(name, name)


def host_version(value: Any) -> tuple[int, ...] | None:
    """The leading dotted numbers of a host's version ("2.36", "3.11.2"); None when there are none."""
    match = _HOST_VERSION.match(str(value).strip()) if value not in (None, "") else None
    return tuple(int(p) for p in match.group(0).split(".")) if match else None


def parse_version_spec(text: str) -> tuple[Clause, ...] | str:
    """The clauses of ">=3.11" or ">=2.28,<3"; a string saying what is wrong otherwise."""
    clauses = []
    for part in text.split(","):
        match = _CLAUSE.fullmatch(part)
        if not match:
            return (f"{part.strip()!r} is not a version requirement (an operator {', '.join(OPERATORS)} and a "
                    f"version of numbers, e.g. \">=3.11\"; several joined by \",\")")
        clauses.append(Clause(match.group(1), tuple(int(p) for p in match.group(2).split("."))))
    return tuple(clauses)


def parse_requires(raw: Any, where: str) -> tuple[Requirements, list[Problem]]:
    """The manifest's `requires` value (absent: None). `where` names it in a problem
    ("acme-1.2.tar.gz: golive-manifest.json requires")."""
    if raw is None:
        return Requirements(), []
    if not isinstance(raw, Mapping):
        return Requirements(), [Problem(where, f"must be a mapping of {', '.join(KEYS)} to what the release needs, "
                                               f"not {type(raw).__name__}")]
    items: list[Requirement] = []
    problems = []
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key not in KEYS:
            problems.append(Problem(at, f"unknown requirement {key!r} (golive checks {', '.join(KEYS)})"))
        elif key == "arch":
            names = value if isinstance(value, list) else None
            if not names or not all(isinstance(n, str) and _ARCH.fullmatch(n) for n in names):
                problems.append(Problem(at, f"must be a non-empty list of machine names as `uname -m` prints them "
                                            f"(e.g. [\"x86_64\", \"aarch64\"]), not {value!r}"))
            else:
                items.append(Requirement("arch", arches=tuple(dict.fromkeys(normal_arch(n) for n in names))))
        elif not isinstance(value, str):
            problems.append(Problem(at, f"must be a version requirement such as \">=3.11\", not {value!r}"))
        else:
            clauses = parse_version_spec(value)
            if isinstance(clauses, str):
                problems.append(Problem(at, clauses))
            else:
                items.append(Requirement(key, clauses=clauses))
    # python, glibc, arch: in one order whatever the manifest's, so messages list them alike
    return Requirements(tuple(sorted(items, key=lambda r: KEYS.index(r.key)))), problems


def parse_option(values: list[str]) -> tuple[Requirements, list[Problem]]:
    """`golive package --requires` values: "python>=3.11", "glibc>=2.28,<3", "arch=x86_64,aarch64"."""
    raw: dict[str, Any] = {}
    problems = []
    for value in values:
        match = re.fullmatch(r"\s*([A-Za-z_]+)\s*(.*?)\s*", value)
        key, rest = (match.group(1), match.group(2)) if match else ("", value)
        if key == "arch":
            if not rest.startswith("=") or rest.startswith("=="):
                problems.append(Problem("--requires", f"{value!r}: an architecture requirement is "
                                                      f"arch=NAME[,NAME...], e.g. arch=x86_64,aarch64"))
                continue
            raw[key] = [n.strip() for n in rest[1:].split(",")]
        elif key in VERSION_KEYS:
            raw[key] = rest
        else:
            problems.append(Problem("--requires", f"{value!r}: give python>=V, glibc>=V or arch=NAME[,NAME...] "
                                                  f"(golive checks {', '.join(KEYS)})"))
            continue
    requirements, more = parse_requires(raw, "--requires")
    return requirements, problems + more

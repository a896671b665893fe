"""What can go wrong, as values. Only golive.cli turns these into exit codes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, and where it is (file:line, or the variable); `hosts`
    names the hosts it concerns when the same problem is theirs alike (one line, not one a host)."""

    where: str
    message: str
    hosts: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hosts:
            text += f" (host{'s' if len(self.hosts) > 1 else ''} {', '.join(self.hosts)})"
        return text


def merged(problems: Iterable[Problem]) -> list[Problem]:
    """Each problem once, in the order first seen, with the hosts of every copy of it."""
    order: list[tuple[str, str]] = []
    hosts: dict[tuple[str, str], list[str]] = {}
    for problem in problems:
        key = (problem.where, problem.message)
        if key not in hosts:
            order.append(key)
            hosts[key] = []
        hosts[key].extend(h for h in problem.hosts if h not in hosts[key])
    return [Problem(where, message, tuple(hosts[(where, message)])) for where, message in order]


class GoliveError(Exception):
    """Base of the errors golive reports to the user (never as a traceback)."""

    exit_code = 3


class BadInput(GoliveError):
    """The workspace, the command line or an artifact is wrong; no host was touched."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str, where: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(where, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(merged(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class HostFailure(GoliveError):
    """Hosts could not be brought to the intended state; the report says where each one is."""

    exit_code = 3

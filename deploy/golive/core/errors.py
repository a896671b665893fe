"""What can go wrong, as values. Only golive.cli turns these into exit codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, and where it is (file:line, or the variable)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


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
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class HostFailure(GoliveError):
    """Hosts could not be brought to the intended state; the report says where each one is."""

    exit_code = 3

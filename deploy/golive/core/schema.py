"""Checks a host's merged variables against the application's variable schema."""

from __future__ import annotations

from datetime import date
from typing import Any

from golive.core.errors import Problem
from golive.core.model import AppDefinition, Host, VarSpec
from golive.core.redact import FLOOR, holds_secret_path, leaf_texts

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}


def type_name(value: Any) -> str:
    for name, types in (("bool", (bool,)), *_PYTHON_TYPES.items()):
        if isinstance(value, types):
            return name
    return "null" if value is None else type(value).__name__


def has_type(value: Any, expected: str) -> bool:
    if expected == "any":
        return True
    if isinstance(value, bool) and expected != "bool":
        return False  # YAML `yes` is not a port number
    return isinstance(value, _PYTHON_TYPES[expected])


def check_host_vars(app: AppDefinition, host: Host) -> list[Problem]:
    problems: list[Problem] = []
    for spec in app.variables:
        if spec.name not in host.vars:
            if spec.required:
                problems.append(
                    Problem(
                        f"host {host.name} ({host.environment})",
                        f"required variable {spec.name!r} is not set in the inventory "
                        f"(declared in {app.source})",
                    )
                )
            continue
        value = host.vars[spec.name]
        if not has_type(value, spec.type):
            shown = _shown(spec, host, value)
            problems.append(
                Problem(
                    host.where(spec.name),
                    f"variable {spec.name!r} on host {host.name} must be {spec.type}, "
                    f"got {type_name(value)} {shown}",
                )
            )
        elif spec.allowed is not None and value not in spec.allowed:
            allowed = ", ".join(str(a) for a in spec.allowed)
            problems.append(
                Problem(
                    host.where(spec.name),
                    f"variable {spec.name!r} on host {host.name} is {_shown(spec, host, value)}, allowed: {allowed}",
                )
            )
    return problems


def _shown(spec: VarSpec, host: Host, value: Any) -> str:
    """A value for a message: a secret is named, never shown, not even as its repr (which doubles a
    backslash, so the printed message would no longer hold the secret as masking looks for it)."""
    secret = spec.secret or holds_secret_path(spec.name, host.secret_paths) or \
        any(len(t) >= FLOOR and t in s for s in leaf_texts(value) for t in host.secret_values)
    return "(secret)" if secret else repr(value)


def expired_expectations(app: AppDefinition, today: date) -> list[str]:
    """Variables whose declared expected difference has passed its expiry date."""
    return [v.name for v in app.variables if v.differs_by and v.expires and v.expires < today]

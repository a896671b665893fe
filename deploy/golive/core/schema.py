"""Checks a host's merged variables against the application's variable schema."""

from __future__ import annotations

import difflib
from datetime import date
from typing import Any

from golive.core.errors import Problem
from golive.core.model import AppDefinition, Host, VarSpec
from golive.core.redact import FLOOR, holds_secret_path, leaf_texts

INVENTORIES = "inventories"
# Names that belong to Ansible (connection settings, magic variables) or to golive itself.
FOREIGN_PREFIXES = ("ansible_", "golive_")
ANSIBLE_NAMES = frozenset({"inventory_hostname", "inventory_hostname_short", "group_names", "groups", "hostvars",
                           "inventory_dir", "inventory_file", "playbook_dir", "omit", "environment"})

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
    """The host's variables against the schema: missing, mistyped and disallowed values, each
    naming where the value is set (or, for a missing one, a near-miss name the inventory has)."""
    problems: list[Problem] = []
    declared = {spec.name for spec in app.variables}
    undeclared = [name for name in host.vars if name not in declared and not _foreign(name)]
    hosts = (host.name,)
    for spec in app.variables:
        if spec.name not in host.vars:
            if spec.required:
                near = difflib.get_close_matches(spec.name, undeclared, n=1, cutoff=0.75)
                declaration = f"declared {_at(spec, app)}"
                if near:
                    problems.append(Problem(host.where(near[0]),
                                            f"required variable {spec.name!r} is not set; the inventory sets "
                                            f"{near[0]!r} here, which golive.yml does not declare: did you mean "
                                            f"{spec.name!r}? ({declaration})", hosts))
                else:
                    problems.append(Problem(f"{INVENTORIES}/{host.customer}",
                                            f"required variable {spec.name!r} is not set in the inventory "
                                            f"({declaration})", hosts))
            continue
        value = host.vars[spec.name]
        if not has_type(value, spec.type):
            problems.append(Problem(host.where(spec.name),
                                    f"variable {spec.name!r} must be {spec.type}, got {type_name(value)} "
                                    f"{_shown(spec, host, value)} (the type is declared {_at(spec, app)})", hosts))
        elif spec.allowed is not None and value not in spec.allowed:
            allowed = ", ".join(str(a) for a in spec.allowed)
            problems.append(Problem(host.where(spec.name),
                                    f"variable {spec.name!r} is {_shown(spec, host, value)}, not one of the allowed "
                                    f"values: {allowed} (the list is variables.{spec.name}.allowed {_at(spec, app)})",
                                    hosts))
    return problems


def undeclared_variables(app: AppDefinition, host: Host) -> list[Problem]:
    """Warnings: inventory variables the schema does not declare (a typo, or a variable nobody checks),
    with the nearest declared name when there is one. Ansible's and golive's own names are not the
    schema's business."""
    declared = [spec.name for spec in app.variables]
    warnings = []
    for name in sorted(host.vars):
        if name in declared or _foreign(name):
            continue
        near = difflib.get_close_matches(name, declared, n=1, cutoff=0.75)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        warnings.append(Problem(host.where(name), f"variable {name!r} is not declared in {app.source} "
                                                  f"variables{hint}", (host.name,)))
    return warnings


def _foreign(name: str) -> bool:
    return name.startswith(FOREIGN_PREFIXES) or name in ANSIBLE_NAMES


def _at(spec: VarSpec, app: AppDefinition) -> str:
    return f"at {spec.where}" if spec.where else f"in {app.source}"


def _shown(spec: VarSpec, host: Host, value: Any) -> str:
    """A value for a message: a secret is named, never shown, not even as its repr (which doubles a
    backslash, so the printed message would no longer hold the secret as masking looks for it); a
    long value is cut, after that decision."""
    secret = spec.secret or holds_secret_path(spec.name, host.secret_paths) or \
        any(len(t) >= FLOOR and t in s for s in leaf_texts(value) for t in host.secret_values)
    if secret:
        return "(secret)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def expired_expectations(app: AppDefinition, today: date) -> list[str]:
    """Variables whose declared expected difference has passed its expiry date."""
    return [v.name for v in app.variables if v.differs_by and v.expires and v.expires < today]

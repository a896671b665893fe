"""The pure core imports no I/O library: SSH, pyinfra, Ansible, Testinfra, YAML, Jinja2, files, processes."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "deploy" / "golive" / "core"
ALLOWED = {"__future__", "dataclasses", "typing", "collections", "collections.abc", "types", "datetime", "hashlib",
           "json", "re", "difflib", "enum", "functools", "itertools", "math", "fnmatch", "posixpath", "html",
           "shlex", "urllib.parse"}  # the last two: pure string functions (quoting), for the redactor


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_core_imports_only_pure_modules():
    offenders = {}
    for path in sorted(CORE.glob("*.py")):
        bad = {m for m in imports(path) if m not in ALLOWED and not m.startswith("golive.core")}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_the_boundary_check_would_catch_an_io_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom paramiko import SSHClient\nfrom golive.core.model import Host\n")
    assert {m for m in imports(sample) if m not in ALLOWED and not m.startswith("golive.core")} == {"os", "paramiko"}

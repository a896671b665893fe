"""golive validate: the examples pass; each broken copy exits 2 naming the file and line (or the
variable), with no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_golive


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_shipped_examples_validate(offline_workspace):
    result = run_golive(offline_workspace, "validate", check=0)
    assert "2 customer(s), 5 host(s)" in result.stdout


BROKEN = {
    "missing variable": (
        lambda ws: edit(ws / "inventories/retailer/group_vars/all/main.yml", "currency: EUR\n", ""),
        [r"required variable 'currency' is not set", r"rtl-stg-1"]),
    "bad YAML": (
        lambda ws: edit(ws / "inventories/manufacturer/group_vars/staging.yml", "workers: 2", "workers: [2"),
        [r"inventories/manufacturer/group_vars/staging\.yml:\d+"]),
    "wrong type": (
        lambda ws: edit(ws / "inventories/manufacturer/group_vars/all/main.yml", "http_port: 8080",
                        "http_port: eighty"),
        [r"inventories/manufacturer/group_vars/all/main\.yml:\d+", r"'http_port'.*must be int"]),
    "value not allowed": (
        lambda ws: edit(ws / "inventories/retailer/group_vars/all/main.yml", "log_level: warning", "log_level: loud"),
        [r"main\.yml:\d+", r"'log_level'.*allowed"]),
    "undefined template variable": (
        lambda ws: edit(ws / "config_templates/northwind/northwind.ini.j2", "{{ db_port }}", "{{ db_portt }}"),
        [r"config_templates/northwind/northwind\.ini\.j2:\d+", r"db_portt"]),
    "template syntax error": (
        lambda ws: edit(ws / "config_templates/northwind/features.json.j2", "{% endfor %}", "{% endfor"),
        [r"config_templates/northwind/features\.json\.j2:\d+", r"syntax"]),
    "duplicate key in golive.yml": (
        lambda ws: edit(ws / "golive.yml", "keep_releases: 5", "keep_releases: 5\nkeep_releases: 6"),
        [r"golive\.yml:\d+", r"duplicate key 'keep_releases'"]),
    "duplicate key in a vars file": (
        lambda ws: edit(ws / "inventories/manufacturer/group_vars/staging.yml", "workers: 2", "workers: 2\nworkers: 3"),
        [r"inventories/manufacturer/group_vars/staging\.yml", r"[Dd]uplicate"]),
    "tab in golive.yml": (
        lambda ws: edit(ws / "golive.yml", "keep_releases: 5", "keep_releases:\n\t5"),
        [r"golive\.yml:\d+", r"tab"]),
    "unknown schema type": (
        lambda ws: edit(ws / "golive.yml", "workers:\n    type: int", "workers:\n    type: integer"),
        [r"golive\.yml:\d+", r"variables\.workers\.type"]),
    "expected difference without reason": (
        lambda ws: edit(ws / "golive.yml", "    reason: each environment has its own database server\n", ""),
        [r"golive\.yml:\d+", r"db_host.*without a 'reason'"]),
    "malformed expiry": (
        lambda ws: edit(ws / "golive.yml", "    reason: each environment has its own database\n",
                        "    reason: each environment has its own database\n    expires: someday\n"),
        [r"golive\.yml:\d+", r"expires must be a date"]),
    "expired expected difference": (
        lambda ws: edit(ws / "golive.yml", "    reason: each environment has its own database\n",
                        "    reason: each environment has its own database\n    expires: 2020-01-31\n"),
        [r"golive\.yml", r"db_name.*expired on 2020-01-31"]),
    "host in no environment": (
        lambda ws: edit(ws / "inventories/retailer/hosts.yml", "    production:\n      hosts:",
                        "    prod:\n      hosts:"),
        [r"inventories/retailer/hosts\.yml", r"rtl-prod-1 is in no environment group"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN), ids=sorted(BROKEN))
def test_broken_workspaces_exit_2_naming_where(case, offline_workspace):
    breaker, patterns = BROKEN[case]
    breaker(offline_workspace)
    result = run_golive(offline_workspace, "validate")
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for pattern in patterns:
        assert re.search(pattern, result.stderr), f"{pattern!r} not in:\n{result.stderr}"


def test_all_problems_are_reported_at_once(offline_workspace):
    edit(offline_workspace / "inventories/retailer/group_vars/all/main.yml", "currency: EUR\n", "")
    edit(offline_workspace / "config_templates/northwind/features.json.j2", "{% endfor %}", "{% endfor")
    result = run_golive(offline_workspace, "validate", check=2)
    assert "'currency'" in result.stderr and "features.json.j2" in result.stderr


def test_unknown_customer_and_environment(offline_workspace):
    result = run_golive(offline_workspace, "validate", "nosuch", check=2)
    assert "unknown customer 'nosuch'" in result.stderr and "manufacturer" in result.stderr
    result = run_golive(offline_workspace, "render", "retailer", "uat", check=2)
    assert "unknown environment 'uat'" in result.stderr


def test_wrong_vault_password_names_the_file(offline_workspace, tmp_path):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    result = run_golive(offline_workspace, "validate", "manufacturer", "--vault-password-file", str(wrong), check=2)
    assert "inventories/manufacturer/group_vars/all/vault.yml" in result.stderr
    assert "Traceback" not in result.output

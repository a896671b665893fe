"""A release id names the config AND how the release runs (issue 14, defect 2): a change of golive.yml's
rendered service, health or hook settings makes a new release of the same version, as a config change
does; anything else (the order of golive.yml's keys, a setting that is not part of the run file)
leaves the id alone."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from golive.core.release import release_id, run_settings_hash, version_of
from golive.flows.desired import host_release_id
from golive.workspace import Workspace

SERVICE = {"start": "a", "stop": "b", "restart": "c", "status": "d", "systemd_unit": ""}
HEALTH = {"url": "http://h:1/health", "command": "", "expect": ["version", "config_hash"], "timeout": 2.0,
          "retries": 25, "interval": 0.2}
HOOKS = {"before_cutover": "", "after_cutover": "", "on_rollback": ""}
CONFIG = "ab" * 32


def test_the_id_keeps_its_form_and_names_its_version():
    made = release_id("1.0", CONFIG, run_settings_hash(SERVICE, HEALTH, HOOKS))
    assert re.fullmatch(r"1\.0-[0-9a-f]{8}", made) and version_of(made) == "1.0"


def test_the_settings_hash_is_the_documented_lines():
    """`name NUL value LF` per field, sorted; timeout and interval as floats, retries as an int,
    expect's names sorted and joined with ',' (what roles/golive/tasks/release.yml writes too)."""
    fields = {**{f"service.{k}": v for k, v in SERVICE.items()}, **{f"hooks.{k}": v for k, v in HOOKS.items()},
              "health.url": HEALTH["url"], "health.command": "", "health.expect": "config_hash,version",
              "health.timeout": "2.0", "health.retries": "25", "health.interval": "0.2"}
    text = "".join(sorted(f"{k}\0{v}\n" for k, v in fields.items()))
    assert run_settings_hash(SERVICE, HEALTH, HOOKS) == hashlib.sha256(text.encode()).hexdigest()
    made = hashlib.sha256(f"{CONFIG}\0{hashlib.sha256(text.encode()).hexdigest()}".encode()).hexdigest()
    assert release_id("1.0", CONFIG, run_settings_hash(SERVICE, HEALTH, HOOKS)) == f"1.0-{made[:8]}"


@pytest.mark.parametrize("change", [
    ("service", "restart", "c --graceful"), ("service", "systemd_unit", "northwind.service"),
    ("health", "url", "http://h:1/healthz"), ("health", "command", "curl -f http://h:1/"),
    ("health", "expect", ["version"]), ("health", "timeout", 3.0), ("health", "retries", 5),
    ("health", "interval", 0.5), ("hooks", "before_cutover", "echo hi"), ("hooks", "on_rollback", "echo undo"),
], ids=lambda c: f"{c[0]}.{c[1]}")
def test_a_changed_run_setting_makes_a_new_id(change):
    section, key, value = change
    settings = {"service": dict(SERVICE), "health": dict(HEALTH), "hooks": dict(HOOKS)}
    settings[section][key] = value
    before = release_id("1.0", CONFIG, run_settings_hash(SERVICE, HEALTH, HOOKS))
    assert release_id("1.0", CONFIG, run_settings_hash(**settings)) != before


def test_the_same_settings_written_otherwise_keep_the_id():
    """Key order, expect's order and duplicates, an int written for a float: the same settings."""
    same_health = dict(reversed(list(HEALTH.items())), expect=["config_hash", "version"], timeout=2, interval=0.2)
    same = run_settings_hash(dict(reversed(list(SERVICE.items()))), same_health, dict(reversed(list(HOOKS.items()))))
    assert same == run_settings_hash(SERVICE, HEALTH, HOOKS)


def test_a_config_change_still_makes_a_new_id():
    settings = run_settings_hash(SERVICE, HEALTH, HOOKS)
    assert release_id("1.0", CONFIG, settings) != release_id("1.0", "cd" * 32, settings)


def _host_id(root: Path) -> str:
    ws = Workspace(root)
    return host_release_id(ws, ws.hosts("manufacturer", "staging")[0], "1.0")


def test_golive_yml_health_changes_the_workspace_id_and_its_key_order_does_not(offline_workspace):
    app = offline_workspace / "golive.yml"
    original = app.read_text()
    before = _host_id(offline_workspace)

    # the same settings with health's keys in another order: the same release
    block = re.search(r"^health:\n((?:  .*\n)+)", original, flags=re.MULTILINE)
    assert block, "golive.yml has no health: block"
    reordered = "health:\n" + "".join(reversed(block.group(1).splitlines(keepends=True)))
    app.write_text(original.replace(block.group(0), reordered))
    assert _host_id(offline_workspace) == before

    # a fixed health check is a new release of the same version
    app.write_text(original.replace("/health\"", "/healthz\"", 1))
    assert app.read_text() != original
    changed = _host_id(offline_workspace)
    assert changed != before and version_of(changed) == "1.0"

    # a golive.yml setting that is not how the release runs leaves the id alone
    assert original.count("keep_releases: 5") == 1
    app.write_text(original.replace("keep_releases: 5", "keep_releases: 6"))
    assert _host_id(offline_workspace) == before

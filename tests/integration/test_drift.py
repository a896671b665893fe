"""golive drift against real SSH test hosts: a clean pair reports nothing unexpected, and each kind of
drift planted on production over SSH is reported once, with the right kind, and nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import VAULT_SECRETS, copy_workspace, run_golive
from tests.integration.drift_support import CLOSE_SECRET, HAND_EDIT, OPEN_SECRET, UNDO_HAND_EDIT, on_host

PROD1 = 12
DECLARED = {"db_host", "db_name", "public_url", "workers"}


def drift(ws: Path, customer: str = "manufacturer", expect: int | None = None) -> dict:
    result = run_golive(ws, "drift", customer, "--json")
    assert result.returncode in (0, 1), result.output
    if expect is not None:
        assert result.returncode == expect, result.stdout
    for secret in VAULT_SECRETS:
        assert secret not in result.output
    data = result.json()
    assert (result.returncode == 1) == bool(data["findings"])
    return data


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, test_hosts, release_store) -> Path:
    """Both customers, staging and production, freshly and identically deployed with release 1.0."""
    test_hosts.reset()
    ws = copy_workspace(tmp_path_factory.mktemp("drift") / "ws", test_hosts, release_store)
    for customer in ("manufacturer", "retailer"):
        run_golive(ws, "deploy", customer, "staging", "--release", "1.0", check=0)
        run_golive(ws, "check", customer, "staging", check=0)  # production accepts only what staging checked
        run_golive(ws, "deploy", customer, "production", "--release", "1.0", check=0)
    return ws


def variant(deployed: Path, tmp_path: Path) -> Path:
    """A copy of the deployed workspace to change (the hosts are the same)."""
    copy = tmp_path / "variant"
    shutil.copytree(deployed, copy)
    return copy


@pytest.mark.parametrize("customer", ["manufacturer", "retailer"])
def test_identically_deployed_environments_have_zero_findings(deployed, customer):
    data = drift(deployed, customer, expect=0)
    assert data["findings"] == [] and data["unreachable"] == {}
    assert {f["subject"] for f in data["expected"]} == DECLARED
    reasons = {f["subject"]: f["reason"] for f in data["expected"]}
    assert reasons["db_host"] == "each environment has its own database server"


def test_the_asymmetric_example_pairs_hosts_by_role(deployed):
    # mfg-prod-2 has its own host_vars and is not a gateway: neither is an environment difference
    data = drift(deployed, expect=0)
    assert data["pairs"] == {"mfg-prod-1": "mfg-stg-1", "mfg-prod-2": "mfg-stg-1"}


PLANTS = {
    "edit a config file": (
        HAND_EDIT,
        UNDO_HAND_EDIT,
        ("host", "config", "northwind.ini", "high")),
    "change a byte of a code file": (
        "cp -p /opt/northwind/current/northwind/plant.py /root/plant.py.orig && "
        "printf X | dd of=/opt/northwind/current/northwind/plant.py bs=1 seek=20 conv=notrunc 2>/dev/null",
        "cat /root/plant.py.orig > /opt/northwind/current/northwind/plant.py && rm /root/plant.py.orig",
        ("host", "code_file", "northwind/plant.py", "high")),
    "open the secret file to everyone": (
        OPEN_SECRET,
        CLOSE_SECRET,
        ("host", "permission", "secrets.env mode", "high")),
    "stop the service": (
        "/opt/northwind/current/bin/northwind-ctl stop",
        "/opt/northwind/current/bin/northwind-ctl start",
        ("host", "service", "state", "high")),
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_drift_is_reported_once_with_its_kind(deployed, test_hosts, plant):
    do, undo, (scope, kind, subject, severity) = PLANTS[plant]
    on_host(test_hosts, PROD1, do)
    try:
        data = drift(deployed, expect=1)
    finally:
        on_host(test_hosts, PROD1, undo)
    assert len(data["findings"]) == 1, data["findings"]
    finding = data["findings"][0]
    assert (finding["scope"], finding["kind"], finding["subject"], finding["severity"]) == \
        (scope, kind, subject, severity)
    assert finding["hosts"] == ["mfg-prod-1"] and not finding["expected"]
    assert {f["subject"] for f in data["expected"]} == DECLARED
    assert drift(deployed, expect=0)["findings"] == []  # undone: clean again, nothing left behind


def test_an_undeclared_variable_set_for_production_is_variable_drift(deployed, tmp_path):
    ws = variant(deployed, tmp_path)
    production_vars = ws / "inventories/manufacturer/group_vars/production/main.yml"
    production_vars.write_text(production_vars.read_text() + "log_level: debug\n")
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    try:
        data = drift(ws, expect=1)
    finally:
        run_golive(deployed, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    assert len(data["findings"]) == 1, data["findings"]
    finding = data["findings"][0]
    assert (finding["scope"], finding["kind"], finding["subject"]) == ("environment", "variable", "log_level")
    assert (finding["expected_value"], finding["actual_value"]) == ("info", "debug")
    assert finding["where"] == "inventories/manufacturer/group_vars/production/main.yml:5"
    assert finding["files"] == ["northwind.ini"] and finding["hosts"] == ["mfg-prod-1", "mfg-prod-2"]


def test_an_inventory_change_not_yet_deployed_is_also_a_pending_host_change(deployed, tmp_path):
    ws = variant(deployed, tmp_path)
    production_vars = ws / "inventories/manufacturer/group_vars/production/main.yml"
    production_vars.write_text(production_vars.read_text() + "log_level: debug\n")
    data = drift(ws, expect=1)
    found = {(f["scope"], f["kind"], f["subject"]) for f in data["findings"]}
    assert found == {("environment", "variable", "log_level"), ("host", "config", "northwind.ini")}
    config = next(f for f in data["findings"] if f["kind"] == "config")
    assert "not deployed yet" in config["reason"] and config["severity"] == "medium"


def test_an_expired_expected_difference_is_drift_again(deployed, tmp_path):
    ws = variant(deployed, tmp_path)
    app = ws / "golive.yml"
    app.write_text(app.read_text().replace("    reason: each environment has its own database server\n",
                                           "    reason: each environment has its own database server\n"
                                           "    expires: 2020-01-01\n"))
    data = drift(ws, expect=1)
    assert len(data["findings"]) == 1, data["findings"]
    finding = data["findings"][0]
    assert (finding["scope"], finding["kind"], finding["subject"]) == ("environment", "variable", "db_host")
    assert "expired on 2020-01-01" in finding["reason"]
    assert {f["subject"] for f in data["expected"]} == DECLARED - {"db_host"}


def test_a_different_secret_is_compared_by_hash_and_never_shown(deployed, tmp_path):
    ws = variant(deployed, tmp_path)
    secret = "Prod-Only-Secret-0042"
    production_vars = ws / "inventories/manufacturer/group_vars/production/main.yml"
    production_vars.write_text(production_vars.read_text() + f"db_password: {secret}\n")
    for args in (("--json",), ()):
        result = run_golive(ws, "drift", "manufacturer", *args)
        assert result.returncode == 1 and secret not in result.output
    data = drift(ws, expect=1)
    variable = next(f for f in data["findings"] if f["kind"] == "variable")
    assert variable["subject"] == "db_password" and variable["severity"] == "high"
    assert variable["expected_value"] == variable["actual_value"] == "********"


def test_bad_input_is_one_message_and_touches_no_host(deployed):
    result = run_golive(deployed, "drift", "manufacturer", "--from", "staging", "--to", "qa")
    assert result.returncode == 2 and "unknown environment 'qa'" in result.stderr
    assert "Traceback" not in result.output
    same = run_golive(deployed, "drift", "manufacturer", "--from", "production", "--to", "production")
    assert same.returncode == 2 and "same environment" in same.stderr

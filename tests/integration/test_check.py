"""golive check (and plain pytest checks/) against real SSH test hosts: the checks pass on a good
deploy, fail on a planted fault, are recorded in each host's ledger, and a changed host key is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import HOST_COUNT, REPO, TEST_NET, VAULT_SECRETS, copy_workspace, host_path, run_golive
from tests.integration.drift_support import CLOSE_SECRET, HAND_EDIT, OPEN_SECRET, UNDO_HAND_EDIT, on_host

PROD1, PROD2 = 12, 13
SHARED_CHECKS = 14
CUSTOMER_CHECKS = 1
DATABASE_CHECKS = 2  # checks/test_database.py: skipped for a release deployed without a database


def ledger(test_hosts, suffix: int) -> list[dict]:
    path = host_path(test_hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def live(test_hosts, suffix: int) -> str:
    return os.readlink(host_path(test_hosts, suffix, "/opt/northwind/current")).rsplit("/", 1)[-1]


def plain_pytest(ws: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "deploy")}
    return subprocess.run([sys.executable, "-m", "pytest", "checks/", "-q", *args], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, test_hosts, release_store) -> Path:
    test_hosts.reset()
    ws = copy_workspace(tmp_path_factory.mktemp("check") / "ws", test_hosts, release_store)
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    run_golive(ws, "check", "manufacturer", "staging", check=0)  # promotion needs a passed check
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    return ws


def test_checks_pass_on_a_good_deploy_and_are_recorded(deployed, test_hosts, tmp_path):
    junit = tmp_path / "checks.xml"
    result = run_golive(deployed, "check", "manufacturer", "production", "--junit", str(junit), "--json", check=0)
    data = result.json()
    assert data["passed"] is True
    for row in data["hosts"]:
        assert row["result"] == "passed" and row["failed"] == []
        assert len(row["passed"]) == SHARED_CHECKS + CUSTOMER_CHECKS
        # the customer's own checks run after the shared ones
        assert row["passed"][-1] == "customers/manufacturer/test_plant_floor.py::test_home_page_lists_every_plant"
    for suffix in (PROD1, PROD2):
        entry = ledger(test_hosts, suffix)[-1]
        assert (entry["action"], entry["result"], entry["engine"]) == ("check", "passed", "testinfra")
        assert entry["release"] == live(test_hosts, suffix) and entry["version"] == "1.0"
        assert len(entry["config_hash"]) == 64 and len(entry["artifact_sha256"]) == 64
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 2 * (SHARED_CHECKS + CUSTOMER_CHECKS + DATABASE_CHECKS)
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)
    for secret in VAULT_SECRETS:
        assert secret not in result.output and secret not in junit.read_text()


def test_a_planted_fault_fails_the_check_on_that_host_only(deployed, test_hosts):
    on_host(test_hosts, PROD1, f"{HAND_EDIT}; {OPEN_SECRET}")
    try:
        result = run_golive(deployed, "check", "manufacturer", "production", "--json")
    finally:
        on_host(test_hosts, PROD1, f"{UNDO_HAND_EDIT}; {CLOSE_SECRET}")
    assert result.returncode == 1, result.output
    rows = {r["host"]: r for r in result.json()["hosts"]}
    failed = {f["check"].rsplit("::", 1)[-1]: f["reason"] for f in rows["mfg-prod-1"]["failed"]}
    # the live release's own entry check sees the same two changes in the release's config/
    assert set(failed) == {"test_config_files_are_what_golive_renders", "test_config_files_have_their_modes_and_owner",
                           "test_live_release_holds_exactly_what_was_shipped"}
    assert "/etc/northwind/northwind.ini" in failed["test_config_files_are_what_golive_renders"]
    assert "mode 0644" in failed["test_config_files_have_their_modes_and_owner"]
    assert rows["mfg-prod-2"]["result"] == "passed"
    assert ledger(test_hosts, PROD1)[-1]["result"] == "failed"
    assert "test_config_files_are_what_golive_renders" in ledger(test_hosts, PROD1)[-1]["detail"]
    assert ledger(test_hosts, PROD2)[-1]["result"] == "passed"
    again = run_golive(deployed, "check", "manufacturer", "production", check=0)
    assert "all checks passed" in again.stdout


def test_a_stopped_service_fails_its_checks_in_words(deployed, test_hosts):
    on_host(test_hosts, PROD1, "/opt/northwind/current/bin/northwind-ctl stop")
    try:
        result = run_golive(deployed, "check", "manufacturer", "production", "--host", "mfg-prod-1")
    finally:
        on_host(test_hosts, PROD1, "/opt/northwind/current/bin/northwind-ctl start")
    assert result.returncode == 1
    assert "northwind-ctl status` exited 3" in result.stdout
    assert f"nothing listens on {TEST_NET}.12:8080" in result.stdout


def test_plain_pytest_runs_the_same_checks_with_verified_keys(deployed):
    result = plain_pytest(deployed, "--golive-customer", "manufacturer", "--golive-environment", "production")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{2 * (SHARED_CHECKS + CUSTOMER_CHECKS)} passed" in result.stdout
    by_name = plain_pytest(deployed, "--hosts", "ssh://mfg-stg-1")  # the customer is found from the host
    assert by_name.returncode == 0 and f"{SHARED_CHECKS + CUSTOMER_CHECKS} passed" in by_name.stdout
    # Testinfra's paramiko backend accepts any host key: refused before anything connects
    for args in (("--hosts", "paramiko://mfg-stg-1"), ("--hosts", "mfg-stg-1", "--connection", "paramiko")):
        refused = plain_pytest(deployed, *args)
        assert refused.returncode == 4 and "refused" in refused.stderr


def test_bad_input_touches_no_host(deployed):
    unknown = run_golive(deployed, "check", "manufacturer", "qa")
    assert unknown.returncode == 2 and "unknown environment 'qa'" in unknown.stderr
    host = run_golive(deployed, "check", "manufacturer", "production", "--host", "nope")
    assert host.returncode == 2 and "unknown host nope" in host.stderr


def test_a_changed_host_key_is_refused_and_nothing_is_checked_there(tmp_path, test_hosts, release_store):
    test_hosts.reset()
    ws = copy_workspace(tmp_path / "ws", test_hosts, release_store)
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    run_golive(ws, "check", "manufacturer", "staging", check=0)  # promotion needs a passed check
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    entries_before = len(ledger(test_hosts, PROD1))
    test_hosts.rekey("h12")  # mfg-prod-1 now presents a key that known_hosts does not have
    try:
        result = run_golive(ws, "check", "manufacturer", "production", "--json")
        assert result.returncode == 3, result.output
        rows = {r["host"]: r for r in result.json()["hosts"]}
        assert rows["mfg-prod-1"]["result"] == "unreachable"
        assert "REFUSED" in rows["mfg-prod-1"]["error"] and "does not match" in rows["mfg-prod-1"]["error"]
        assert rows["mfg-prod-2"]["result"] == "passed"
        assert len(ledger(test_hosts, PROD1)) == entries_before  # no check ran there, nothing recorded
        plain = plain_pytest(ws, "--hosts", "ssh://mfg-prod-1")
        assert plain.returncode != 0 and "Host key verification failed" in plain.stdout + plain.stderr
    finally:
        test_hosts.down()
        test_hosts.up(HOST_COUNT)

"""golive preflight for a first go-live, against real SSH test hosts: staging runs 1.1, verified
and checked; production was never deployed to. Preflight asks whether production is reachable,
prepared and has the disk, and whether staging runs this artifact verified and checked, and says
"nothing deployed yet" once, not as a finding per file; nothing anywhere shows `None` or a
"difference" between two identical values (issue 14, defect 6)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from golive.flows.preflight import FIRST_GO_LIVE
from golive.flows.preflight_report import FIRST_GO_LIVE_WORDS
from tests.conftest import VAULT_SECRETS, copy_workspace, run_golive
from tests.integration.drift_support import on_host
from tests.integration.test_preflight import parse, preflight, red

PROD1 = 12
PRODUCTION = {"mfg-prod-1", "mfg-prod-2"}


@pytest.fixture(scope="module")
def first(tmp_path_factory, test_hosts, release_store) -> Path:
    """Staging runs 1.1 and passed its checks; production has never had a deploy."""
    test_hosts.reset()
    ws = copy_workspace(tmp_path_factory.mktemp("first-go-live") / "ws", test_hosts, release_store)
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.1", check=0)
    run_golive(ws, "check", "manufacturer", "staging", check=0)
    return ws


def no_none_and_no_identical_values(data: dict, *texts: str) -> None:
    for text in texts:
        assert not re.search(r"\bNone\b", text), [line for line in text.splitlines() if "None" in line]
    for group in ("unexpected", "changed_by_go_live"):
        for f in data["drift"][group]:
            assert f["expected_value"] != f["actual_value"], f
            assert None not in (f["expected_value"], f["actual_value"]), f


def test_a_first_go_live_is_go_with_one_cause_said_once(first, tmp_path):
    result = run_golive(first, "preflight", "manufacturer", "--release", "1.1", "--report", str(tmp_path / "r"))
    assert result.returncode == 0, result.output
    assert result.output.count(FIRST_GO_LIVE_WORDS) == 1, result.output
    code, data = preflight(first, tmp_path / "report", "--release", "1.1")
    assert code == 0 and data["verdict"] == "go" and data["red"] == [], data["red"]
    assert data["first_go_live"] is True
    # the production hosts are asked what a first go-live needs; no rollback target is asked for
    for host in data["hosts"]:
        if host["host"] in PRODUCTION:
            assert [i["name"] for i in host["items"]] == ["reachable", "prepared", "disk", "lock", "drift"], host
            prepared = next(i for i in host["items"] if i["name"] == "prepared")
            assert "/opt/northwind writable by root" in prepared["detail"], prepared
    # one cause, once; no per-file finding that only says "nothing deployed yet"
    assert data["drift"]["unexpected"] == []
    assert [(f["subject"], f["reason"]) for f in data["drift"]["changed_by_go_live"]] == \
        [("first go-live", FIRST_GO_LIVE)]
    markdown = (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    parse(tmp_path / "report" / "report.html")
    for text in (markdown, page):
        assert text.count(FIRST_GO_LIVE_WORDS) == 1 and text.count(FIRST_GO_LIVE) == 1
    no_none_and_no_identical_values(data, result.output, markdown, page, json.dumps(data))
    # what the IT lead reads: who, what, when, which artifact, what changes, how to go back
    assert data["company"] == "Huaxin Precision Manufacturing Co., Ltd." and data["product"] == "Northwind MES"
    assert markdown.startswith("# Go-live preflight: Huaxin Precision Manufacturing Co., Ltd. — Northwind MES — GO")
    assert data["timezone"] == "Asia/Shanghai" and "Asia/Shanghai (UTC+08:00)" in data["generated_local"]
    published = (first / "build" / "releases" / "northwind-1.1.tar.gz.sha256").read_text().split()[0]
    assert data["artifact_sha256"] == published and published in markdown and published in page
    changes = {c["file"]: c for c in data["config_changes"]}
    assert set(changes) == {"northwind.ini", "features.json", "secrets.env"}
    assert {c["change"] for c in changes.values()} == {"added"} and changes["secrets.env"]["diff"] == ""
    assert "+++ new/northwind.ini" in changes["northwind.ini"]["diff"] and set(changes["northwind.ini"]["hosts"]) \
        <= PRODUCTION
    assert "there is no earlier release to switch back to" in " ".join(data["rollback_plan"])
    for secret in VAULT_SECRETS:
        assert secret not in markdown and secret not in page and secret not in json.dumps(data)


def test_a_production_host_golive_cannot_deploy_to_is_the_one_red_item(first, test_hosts, tmp_path):
    # the config folder read-only for the deploy user (even root: a read-only mount, in this host only)
    on_host(test_hosts, PROD1, "mount -o remount,ro,bind /etc/northwind")
    try:
        code, data = preflight(first, tmp_path / "report", "--release", "1.1")
    finally:
        on_host(test_hosts, PROD1, "mount -o remount,rw,bind /etc/northwind")
    assert code == 1 and red(data) == {("mfg-prod-1", "prepared")}, data["red"]
    item = data["red"][0]
    assert re.search(r"/etc/northwind \(root:root \d+\) is not writable by root", item["detail"]), item
    assert "install -d -o root /etc/northwind" in item["action"], item
    no_none_and_no_identical_values(data, json.dumps(data))


def test_staging_must_run_and_have_checked_the_release_that_goes_live(first, tmp_path):
    code, data = preflight(first, tmp_path / "report", "--release", "1.0")
    assert code == 1 and data["first_go_live"] is True
    assert red(data) == {("mfg-stg-1", "runs 1.0")}, data["red"]
    no_none_and_no_identical_values(data, json.dumps(data))


def test_drift_on_a_never_deployed_production_shows_no_none_and_no_identical_values(first):
    result = run_golive(first, "drift", "manufacturer")
    assert result.returncode in (1, 3), result.output
    assert not re.search(r"\bNone\b", result.output), result.output
    assert not re.search(r": \(not set\) -> \(not set\)", result.output), result.output
    result = run_golive(first, "drift", "manufacturer", "--json")
    for f in result.json()["findings"]:
        assert f["expected_value"] != f["actual_value"] and None not in (f["expected_value"], f["actual_value"]), f

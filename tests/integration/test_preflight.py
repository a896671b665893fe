"""golive preflight against real SSH test hosts: go on a clean, verified pair; no-go with exactly the
right red items on a drifted one; a report a client can read (checked structurally here; the
screenshot check by eye is described in checks/README.md)."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import VAULT_SECRETS, copy_workspace, host_path, run_golive
from tests.integration.drift_support import CLOSE_SECRET, HAND_EDIT, OPEN_SECRET, UNDO_HAND_EDIT, on_host

PROD1, PROD2 = 12, 13
SECTIONS = ("verdict", "summary", "hosts", "actions", "drift", "unexpected", "expected", "go-live-changes")


class ReportParser(HTMLParser):
    """Collects what a self-contained, complete report must and must not have."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.external: list[str] = []
        self.rows: dict[str, list[str]] = {}
        self.cells: list[str] = []
        self.tags: set[str] = set()
        self._row: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("src", "href", "srcset", "action"):
            if name in attrs and not attrs[name].startswith("#"):
                self.external.append(f"{tag} {name}={attrs[name]}")
        if tag == "tr" and "data-host" in attrs:
            self._row = attrs["data-host"]
            self.rows[self._row] = []
        if tag == "td" and self._row is not None:
            self.rows[self._row].append(attrs.get("class") or "")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None


def parse(report: Path) -> ReportParser:
    text = report.read_text()
    parser = ReportParser()
    parser.feed(text)
    # self-contained: nothing to fetch, nothing to run
    assert parser.external == [] and not {"script", "link", "img", "iframe", "object"} & parser.tags
    assert not re.search(r"url\(|@import", text)
    assert set(SECTIONS) <= parser.ids, set(SECTIONS) - parser.ids
    for secret in VAULT_SECRETS:
        assert secret not in text
    return parser


def preflight(ws: Path, report: Path, *args: str) -> tuple[int, dict]:
    result = run_golive(ws, "preflight", "manufacturer", "--report", str(report), "--json", *args)
    assert result.returncode in (0, 1), result.output
    for secret in VAULT_SECRETS:
        assert secret not in result.output
    return result.returncode, result.json()


def red(data: dict) -> set[tuple[str, str]]:
    return {(r["where"], r["item"]) for r in data["red"]}


@pytest.fixture(scope="module")
def verified(tmp_path_factory, test_hosts, release_store) -> Path:
    """Production runs 1.0; staging runs 1.1 and passed its checks: ready to promote 1.1."""
    test_hosts.reset()
    ws = copy_workspace(tmp_path_factory.mktemp("preflight") / "ws", test_hosts, release_store)
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    run_golive(ws, "check", "manufacturer", "staging", check=0)  # promotion needs a passed check
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.1", check=0)
    run_golive(ws, "check", "manufacturer", "staging", check=0)
    return ws


def test_go_on_a_clean_verified_pair(verified, tmp_path):
    junit = tmp_path / "preflight.xml"
    code, data = preflight(verified, tmp_path / "report", "--release", "1.1", "--junit", str(junit))
    assert code == 0 and data["verdict"] == "go" and data["red"] == []
    assert data["release"] == "1.1" and data["drift"]["unexpected"] == []
    assert {f["subject"] for f in data["drift"]["expected"]} == {"db_host", "db_name", "public_url", "workers"}
    # production still runs 1.0: that is what the go-live changes, listed as such and not as drift
    assert [f["kind"] for f in data["drift"]["changed_by_go_live"]] == ["release"]
    html = parse(tmp_path / "report" / "report.html")
    assert set(html.rows) == {"mfg-stg-1", "mfg-prod-1", "mfg-prod-2"}
    assert all(cls in ("", "ok") for cells in html.rows.values() for cls in cells)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.startswith("# Go-live preflight: Huaxin Precision Manufacturing Co., Ltd. — Northwind MES — GO")
    assert "Nothing: all gate items are green." in markdown
    # 1.0 and 1.1 render the same config: said so; and the way back, in words
    assert data["config_changes"] == [] and "No change: the configuration files stay as they are." in markdown
    plan = " ".join(data["rollback_plan"])
    assert "`golive rollback manufacturer production`" in plan and "returns to 1.0-" in plan, plan
    assert data["first_go_live"] is False and "## Sign-off" in markdown and "## Checks that passed" in markdown
    # the checks staging passed, by name, not only how many and when
    passed = markdown.split("## Checks that passed", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in passed.splitlines() if "`mfg-stg-1`" in line and "checks passed" in line)
    assert "test_service.py::test_service_is_running" in row and "test_release.py::" in row, row
    assert "test_service.py::test_service_is_running" in (tmp_path / "report" / "report.html").read_text()
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 1 + 5 + 5 + 5


def test_the_report_shows_the_config_changes_the_go_live_makes(verified, tmp_path):
    settings = verified / "inventories" / "manufacturer" / "group_vars" / "all" / "main.yml"
    before = settings.read_text()
    settings.write_text(before.replace("log_level: info", "log_level: warning"))
    try:
        code, data = preflight(verified, tmp_path / "report", "--release", "1.1")
    finally:
        settings.write_text(before)
    # staging has not deployed the new setting either: no-go, and the diff is what production would get
    assert code == 1
    changes = {c["file"]: c for c in data["config_changes"]}
    assert set(changes) == {"northwind.ini"}, (data["notes"], data["drift"], data["red"])
    assert changes["northwind.ini"]["change"] == "changed"
    assert set(changes["northwind.ini"]["hosts"]) == {"mfg-prod-1", "mfg-prod-2"}
    assert "-log_level = info\n+log_level = warning\n" in changes["northwind.ini"]["diff"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "### northwind.ini — changed" in markdown and "+log_level = warning" in markdown
    assert "+log_level = warning" in (tmp_path / "report" / "report.html").read_text()


def test_no_go_on_a_drifted_pair_with_the_right_red_items(verified, test_hosts, tmp_path):
    lock = host_path(test_hosts, PROD2, "/opt/northwind/.golive/lock")
    on_host(test_hosts, PROD1, f"{HAND_EDIT}; {OPEN_SECRET}")
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps({"operator": "carol", "controller": "laptop-9", "pid": 4242,
                                                 "since": "2026-11-25T03:00:00Z", "action": "deploy"}))
    try:
        code, data = preflight(verified, tmp_path / "report", "--release", "1.1")
    finally:
        on_host(test_hosts, PROD1, f"{UNDO_HAND_EDIT}; {CLOSE_SECRET}")
        (lock / "owner.json").unlink()
        lock.rmdir()
    assert code == 1 and data["verdict"] == "no-go"
    assert red(data) == {("mfg-prod-1", "drift"), ("mfg-prod-2", "lock")}
    drift_item = next(r for r in data["red"] if r["item"] == "drift")
    assert "config northwind.ini" in drift_item["detail"] and "permission secrets.env mode" in drift_item["detail"]
    assert "Run `golive deploy manufacturer production --release 1.0 --override-promotion" in drift_item["action"]
    lock_item = next(r for r in data["red"] if r["item"] == "lock")
    assert "carol on laptop-9" in lock_item["detail"] and "golive unlock manufacturer production" in lock_item["action"]
    assert {(f["kind"], f["subject"]) for f in data["drift"]["unexpected"]} == \
        {("config", "northwind.ini"), ("permission", "secrets.env mode")}
    html = parse(tmp_path / "report" / "report.html")
    assert html.rows["mfg-prod-1"].count("bad") == 1 and html.rows["mfg-prod-2"].count("bad") == 1
    assert "bad" not in html.rows["mfg-stg-1"]
    text = (tmp_path / "report" / "report.html").read_text()
    assert "NO-GO" in text and "2 item(s) must be fixed" in text
    assert preflight(verified, tmp_path / "again", "--release", "1.1")[0] == 0  # undone: go again


def test_the_advice_for_patched_code_and_an_open_secret_file_works(verified, test_hosts, tmp_path):
    # A redeploy used to report "unchanged" here and fix nothing: it compared config hashes only.
    on_host(test_hosts, PROD1, f"{OPEN_SECRET} && printf X | dd of=/opt/northwind/current/northwind/plant.py "
                               "bs=1 seek=20 conv=notrunc 2>/dev/null")
    code, data = preflight(verified, tmp_path / "report", "--release", "1.1")
    assert code == 1 and red(data) == {("mfg-prod-1", "drift")}
    assert {(f["kind"], f["subject"]) for f in data["drift"]["unexpected"]} == \
        {("code_file", "northwind/plant.py"), ("permission", "secrets.env mode")}
    action = data["red"][0]["action"]
    command = re.search(r"Run `(golive deploy [^`]+)`", action).group(1)
    # staging runs 1.1 now: putting back what production already runs is no promotion, said so in the ledger
    assert command == 'golive deploy manufacturer production --release 1.0 --override-promotion ' \
                      '"repair of 1.0, already live here"', action
    done = run_golive(verified, *shlex.split(command)[1:], "--json", check=0)
    assert {h["host"]: h["action"] for h in done.json()["hosts"]} == {"mfg-prod-1": "repair", "mfg-prod-2": "unchanged"}
    assert preflight(verified, tmp_path / "again", "--release", "1.1")[0] == 0  # followed: go


def test_no_go_when_staging_has_not_verified_the_release(verified, tmp_path):
    # asking to promote 1.0: staging runs 1.1, and production has nothing but 1.0 to fall back to
    code, data = preflight(verified, tmp_path / "report", "--release", "1.0")
    assert code == 1
    wanted = {("mfg-stg-1", "runs 1.0"), ("mfg-prod-1", "rollback target"), ("mfg-prod-2", "rollback target")}
    assert wanted <= red(data)
    runs = next(r for r in data["red"] if r["item"] == "runs 1.0")
    assert "golive deploy manufacturer staging --release 1.0" in runs["action"]


def test_an_unreachable_production_host_is_a_red_item_not_a_crash(verified, test_hosts, tmp_path):
    test_hosts.stop("h13")
    try:
        code, data = preflight(verified, tmp_path / "report", "--release", "1.1")
    finally:
        test_hosts.start("h13")
    assert code == 1 and red(data) == {("mfg-prod-2", "reachable")}
    item = data["red"][0]
    assert "cannot reach mfg-prod-2" in item["action"].lower() or "We cannot reach mfg-prod-2" in item["action"]
    parse(tmp_path / "report" / "report.html")

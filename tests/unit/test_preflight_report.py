"""The go/no-go report as a client's IT lead reads it (golive.flows.preflight_report): a gate in,
report.md, report.html, JSON and JUnit out. Who and what (the client's and the product's names,
not the customer key), when (UTC and the customer's zone), the artifact's full sha256, every check
that passed, the config changes, the rollback plan, a sign-off area; host names that never wrap
mid-word; a secret masked on its raw value before any escaping, in every form."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from golive.core import drift as core
from golive.core.gate import ConfigChange, Gate, HostGate, Item
from golive.core.redact import MASK, Redactor
from golive.flows import preflight, preflight_report

SHA = "9f2c5e0a41b7d3c8e6f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8"
# a secret with every character Markdown, HTML or a table treats specially
SECRET = "Pw&<x>|y*_z`#2026!"
HOSTS = ("mfg-prod-1", "mfg-prod-2", "mfg-stg-1")


def finding(subject: str, expected: str, actual: str, **extra) -> core.Finding:
    return core.Finding(core.ENVIRONMENT, "variable", subject, ("mfg-prod-1",), expected, actual, "medium", False,
                        "not declared as an expected difference (differs_by) in golive.yml", ("mfg-stg-1",), **extra)


def gate(**changes) -> Gate:
    prod = [HostGate(name, "production", f"10.0.0.{i}", [
        Item("reachable", True, "connected; host key matches known_hosts"),
        Item("disk", True, "5120 MB free (needs 2048 MB)"),
        Item("lock", True, "no lock"),
        Item("rollback target", True, "1.0-0a1b2c3d (verified) stays available to roll back to"),
        Item("drift", True, "no unexpected differences")]) for i, name in enumerate(HOSTS[:2], 1)]
    stg = HostGate("mfg-stg-1", "staging", "10.0.1.1", [
        Item("reachable", True, "connected; host key matches known_hosts"),
        Item("runs 1.1", True, "1.1-4e5f6a7b is live and verified"),
        Item("checks passed", True, "14 passed at 2026-12-01T08:00:00Z for 1.1-4e5f6a7b (by alice)"),
        Item("lock", True, "no lock"), Item("drift", True, "no unexpected differences")])
    values = dict(
        customer="manufacturer", source="staging", target="production", release="1.1",
        workspace=Item("workspace", True, "manufacturer: 3 hosts valid"), hosts=[*prod, stg], unexpected=[],
        expected=[], pending=[], started="2026-12-01 14:03:22 UTC", operator="alice", seconds=1.5,
        company="Huaxin Precision Manufacturing Co., Ltd.", product="Northwind MES", timezone="Asia/Shanghai",
        started_local="2026-12-01 22:03:22 Asia/Shanghai (UTC+08:00)", artifact="northwind-1.1.tar.gz",
        artifact_sha256=SHA,
        config_changes=[
            ConfigChange("northwind.ini", "changed", False,
                         "--- live/northwind.ini\n+++ new/northwind.ini\n@@ -1,2 +1,2 @@\n-workers = 4\n+workers = 8\n"
                         " company = Huaxin\n", ("mfg-prod-1", "mfg-prod-2")),
            ConfigChange("secrets.env", "changed", True, "", ("mfg-prod-1", "mfg-prod-2"))],
        rollback_plan=["If a host fails that check, golive switches it back by itself.",
                       "To go back after the go-live, an engineer runs `golive rollback manufacturer production`."])
    values.update(changes)
    return Gate(**values)


def forms(g: Gate, tmp_path: Path, redactor: Redactor | None = None) -> dict[str, str]:
    redactor = redactor or Redactor()
    written = preflight_report.write(g, tmp_path / "report", redactor)
    junit = tmp_path / "preflight.xml"
    preflight_report.write_junit(g, junit, redactor)
    masked = preflight_report.masked(g, redactor)
    return {"md": written["md"].read_text(), "html": written["html"].read_text(), "junit": junit.read_text(),
            "json": json.dumps(preflight_report.as_data(masked), ensure_ascii=False),
            "text": "\n".join(preflight_report.text(masked))}


class Text(HTMLParser):
    """The report's visible text, and the text of every element set `nowrap` (class host)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.nowrap: list[str] = []
        self._stack: list[bool] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "title"):
            self._skip += 1
        self._stack.append("host" in (dict(attrs).get("class") or "").split())

    def handle_endtag(self, tag):
        if tag in ("style", "title"):
            self._skip -= 1
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if any(self._stack):
            self.nowrap.append(data)


def visible(document: str) -> Text:
    parser = Text()
    parser.feed(document)
    return parser


def test_the_report_names_the_client_and_the_product_not_only_the_customer_key(tmp_path):
    out = forms(gate(), tmp_path)
    for form in ("md", "html"):
        assert "Huaxin Precision Manufacturing Co., Ltd." in out[form] and "Northwind MES" in out[form], form
    assert out["md"].startswith("# Go-live preflight: Huaxin Precision Manufacturing Co., Ltd. — Northwind MES — GO")
    assert "<title>Go-live preflight: Huaxin Precision Manufacturing Co., Ltd. — Northwind MES — GO</title>" \
        in out["html"]


def test_without_a_company_name_the_customer_key_names_the_client(tmp_path):
    out = forms(gate(company="", product="northwind"), tmp_path)
    assert out["md"].startswith("# Go-live preflight: manufacturer — northwind — GO")


def test_times_are_in_utc_and_in_the_customer_s_time_zone(tmp_path):
    out = forms(gate(), tmp_path)
    for form in ("md", "html", "text"):
        assert "2026-12-01 14:03:22 UTC" in out[form], form
        assert "2026-12-01 22:03:22 Asia/Shanghai (UTC+08:00)" in out[form], form


def test_every_check_that_passed_is_listed_with_what_it_found(tmp_path):
    g = gate()
    out = forms(g, tmp_path)
    section = out["md"].split("## Checks that passed", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `") or line.startswith("| workspace")]
    assert len(rows) == 1 + sum(len(h.items) for h in g.hosts)  # the workspace and every item of every host
    assert "| `mfg-stg-1` | checks passed | 14 passed at 2026-12-01T08:00:00Z for 1.1-4e5f6a7b (by alice) |" in section
    html_section = out["html"].split('id="passed"', 1)[1].split("</section>", 1)[0]
    assert html_section.count("<tr>") == 1 + len(rows)  # a header row and one per check
    assert "14 passed at 2026-12-01T08:00:00Z" in html_section
    assert [p["item"] for p in json.loads(out["json"])["passed"]][:2] == ["workspace", "reachable"]


def test_a_red_item_is_not_listed_as_passed(tmp_path):
    g = gate()
    g.hosts[0].items[2] = Item("lock", False, "held by carol on laptop-9", "Wait.")
    out = forms(g, tmp_path)
    section = out["md"].split("## Checks that passed", 1)[1].split("\n## ", 1)[0]
    assert "| `mfg-prod-1` | lock |" not in section and "| `mfg-prod-2` | lock |" in section
    assert "NO-GO" in out["md"].splitlines()[0]


def test_the_config_changes_show_non_secret_diffs_and_only_that_a_secret_file_changed(tmp_path):
    out = forms(gate(), tmp_path)
    assert "### northwind.ini — changed" in out["md"] and "```diff\n--- live/northwind.ini" in out["md"]
    assert "-workers = 4\n+workers = 8" in out["md"]
    assert "### secrets.env — changed, contents not shown (a secret file)" in out["md"]
    page = out["html"].split('id="config-changes"', 1)[1].split("</section>", 1)[0]
    assert '<pre class="diff">--- live/northwind.ini' in page and "+workers = 8" in page
    assert "secrets.env — changed, contents not shown (a secret file)" in page
    assert page.count("<pre") == 1  # no diff of the secret file


def test_no_config_change_is_said_so(tmp_path):
    out = forms(gate(config_changes=[]), tmp_path)
    assert "No change: the configuration files stay as they are." in out["md"]
    assert "No change: the configuration files stay as they are." in out["html"]


def test_the_artifact_s_sha256_is_shown_in_full(tmp_path):
    out = forms(gate(), tmp_path)
    for form in ("md", "html", "text", "json"):
        assert SHA in out[form], form
    assert f"- sha256: `{SHA}`" in out["md"] and f'<td class="sha" id="sha256">{SHA}</td>' in out["html"]
    assert re.search(r"\b[0-9a-f]{64}\b", out["md"]).group(0) == SHA


def test_the_rollback_plan_is_in_plain_words(tmp_path):
    out = forms(gate(), tmp_path)
    plan = out["md"].split("## Rollback plan", 1)[1].split("\n## ", 1)[0]
    assert "1. If a host fails that check, golive switches it back by itself." in plan
    assert "2. To go back after the go-live, an engineer runs `golive rollback manufacturer production`." in plan
    page = out["html"].split('id="rollback"', 1)[1].split("</section>", 1)[0]
    assert "<code>golive rollback manufacturer production</code>" in page and page.count("<li>") == 2


def test_there_is_a_sign_off_area(tmp_path):
    out = forms(gate(), tmp_path)
    sign = out["md"].split("## Sign-off", 1)[1]
    assert "Decision for release 1.1: GO ☐  NO-GO ☐" in sign
    for role in preflight_report.SIGN_OFF_ROLES:
        assert f"| {role} |  |  |  |  |" in sign
    page = out["html"].split('id="sign-off"', 1)[1].split("</section>", 1)[0]
    assert page.count("<tr>") == 1 + len(preflight_report.SIGN_OFF_ROLES)
    assert "<th>signature</th>" in page and "<th>date</th>" in page


def test_host_names_never_wrap_mid_word_wherever_they_appear(tmp_path):
    g = gate()
    g.hosts[1].items[0] = Item("reachable", False, "mfg-prod-2 (deploy@10.0.0.2:22): unreachable",
                               "We cannot reach mfg-prod-2 (deploy@10.0.0.2, port 22) over SSH.")
    g.unexpected = [finding("log_level", "info", "debug")]
    g.pending = [replace_hosts(finding("workers", "4", "8"), ("mfg-prod-1", "mfg-prod-2"))]
    page = forms(g, tmp_path)["html"]
    assert re.search(r"\.host\{white-space:nowrap", page)
    text = visible(page)
    every = "".join(text.text)
    nowrap = "".join(text.nowrap)
    for name in HOSTS:
        assert every.count(name) > 1, name
        # each occurrence of a host name in the visible text is inside a nowrap element
        assert every.count(name) == nowrap.count(name), name
    # and a longer name is not cut in two by a shorter one
    g.hosts.append(HostGate("mfg-prod-10", "production", "10.0.0.10", [Item("reachable", True, "mfg-prod-10 ok")]))
    page = forms(g, tmp_path)["html"]
    assert '<span class="host">mfg-prod-10</span>' in page and '<span class="host">mfg-prod-1</span>0' not in page


def replace_hosts(f: core.Finding, hosts: tuple[str, ...]) -> core.Finding:
    from dataclasses import replace
    return replace(f, hosts=hosts)


def test_a_secret_is_masked_on_its_raw_value_before_any_escaping_in_every_form(tmp_path):
    redactor = Redactor([SECRET])
    g = gate(company=f"Huaxin {SECRET}", notes=[f"note {SECRET}"],
             config_changes=[ConfigChange("northwind.ini", "changed", False,
                                          f"--- live/northwind.ini\n+++ new/northwind.ini\n-password = old\n"
                                          f"+password = {SECRET}\n", ("mfg-prod-1",))],
             rollback_plan=[f"Restore {SECRET} by hand."])
    g.hosts[0].items[4] = Item("drift", False, f"variable db_password: {SECRET}", f"Change {SECRET} | now")
    g.unexpected = [finding("db_password", SECRET, f"x{SECRET}y", where=f"host_vars/{SECRET}.yml:1")]
    out = forms(g, tmp_path, redactor)
    escaped = {html.escape(SECRET), html.escape(SECRET, quote=False), SECRET.replace("|", "\\|"),
               SECRET.replace("&", "&amp;"), SECRET.replace("<", "&lt;")}
    for form, content in out.items():
        assert SECRET not in content, form
        for variant in escaped:
            assert variant not in content, (form, variant)
        assert MASK in content or html.escape(MASK) in content, form
    assert f"+password = {MASK}" in out["md"]


def test_a_first_go_live_says_its_one_cause_once(tmp_path):
    pending = [core.Finding(core.ENVIRONMENT, "release", "first go-live", ("mfg-prod-1", "mfg-prod-2"), core.NOT_SET,
                            "1.1", "info", False, preflight.FIRST_GO_LIVE)]
    out = forms(gate(first_go_live=True, pending=pending), tmp_path)
    for form in ("md", "html", "text"):
        assert out[form].count("First go-live: nothing deployed yet on production.") == 1, form
        assert out[form].count(preflight.FIRST_GO_LIVE) == (1 if form != "text" else 0), form
        assert "None" not in out[form], form


@pytest.mark.parametrize(("zone", "shown", "note"), [
    ("Asia/Shanghai", "2026-12-01 22:03:22 Asia/Shanghai (UTC+08:00)", ""),
    ("America/New_York", "2026-12-01 09:03:22 America/New_York (UTC-05:00)", ""),
    ("UTC", "2026-12-01 14:03:22 UTC (UTC+00:00)", ""),
    ("", "", ""),
    ("Mars/Olympus", "", "`timezone` 'Mars/Olympus' is not a time zone name: times in UTC only"),
    ("../../etc/passwd", "", "`timezone` '../../etc/passwd' is not a time zone name: times in UTC only"),
])
def test_the_customer_s_local_time(zone, shown, note):
    assert preflight._local_time(datetime(2026, 12, 1, 14, 3, 22, tzinfo=UTC), zone) == (shown, note)


@pytest.mark.parametrize(("values", "agreed"), [
    (["Huaxin", "Huaxin"], ("Huaxin", "")),
    ([None, ""], ("", "")),
    (["Huaxin", None], ("Huaxin", "")),
    (["A", "B"], ("", "the production hosts set different values of `company_name` (A, B)")),
])
def test_the_production_hosts_agree_on_the_client_s_name(values, agreed):
    assert preflight._agreed(values, "company_name") == agreed

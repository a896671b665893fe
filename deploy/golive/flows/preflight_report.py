"""The preflight report in four forms: text for the terminal, JSON data, report.md and a
self-contained report.html (inline style, no scripts, fonts, images or links to fetch), plus JUnit
XML for CI. Written for a client's IT lead: who and what (the client's and the product's names),
when (UTC and the customer's time zone), the artifact (its full sha256), a verdict, a table per
environment, what to do about every red item, every check that passed, the config changes the
go-live makes (non-secret diffs), the differences split into unexpected, expected (with reasons)
and what the go-live itself changes, the rollback plan in plain words and a sign-off area. Host
names never wrap mid-word (`white-space: nowrap`). The gate is masked whole (every string of it)
before any form is made from it: escaping for Markdown, HTML or XML comes after, never before (an
escaped secret would no longer be the text the redactor looks for).
"""

from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from golive.core import drift as core
from golive.core.gate import Gate, HostGate
from golive.core.redact import Redactor


def _finding_data(f: core.Finding) -> dict[str, Any]:
    return f.as_dict()


def as_data(gate: Gate) -> dict[str, Any]:
    return {
        "customer": gate.customer, "verdict": "go" if gate.go else "no-go", "go": gate.go, "release": gate.release,
        "from": gate.source, "to": gate.target, "generated": gate.started, "operator": gate.operator,
        "seconds": gate.seconds,
        "workspace": {"ok": gate.workspace.ok, "detail": gate.workspace.detail, "action": gate.workspace.action},
        "hosts": [{"host": h.host, "environment": h.environment, "ok": h.ok,
                   "items": [{"name": i.name, "ok": i.ok, "detail": i.detail, "action": i.action} for i in h.items]}
                  for h in gate.hosts],
        "drift": {"unexpected": [_finding_data(f) for f in gate.unexpected],
                  "expected": [_finding_data(f) for f in gate.expected],
                  "changed_by_go_live": [_finding_data(f) for f in gate.pending]},
        "red": [{"where": where, "item": item.name, "detail": item.detail, "action": item.action}
                for where, item in gate.red()],
        "passed": [{"where": where, "item": item.name, "detail": item.detail} for where, item in gate.passed()],
        "company": gate.company, "product": gate.product, "timezone": gate.timezone,
        "generated_local": gate.started_local, "artifact": gate.artifact, "artifact_sha256": gate.artifact_sha256,
        "first_go_live": gate.first_go_live, "notes": list(gate.notes),
        "config_changes": [{"file": c.dest, "change": c.change, "secret": c.secret, "diff": c.diff,
                            "hosts": list(c.hosts)} for c in gate.config_changes],
        "rollback_plan": list(gate.rollback_plan),
    }


def _when(gate: Gate) -> str:
    return f"{gate.started} = {gate.started_local}" if gate.started_local else f"{gate.started} (UTC only)"


def _artifact(gate: Gate) -> str:
    if not gate.artifact_sha256:
        return f"{gate.artifact or '(no artifact)'}, sha256 unknown (not in the release store, not on staging)"
    return f"{gate.artifact or 'the artifact'}, sha256 {gate.artifact_sha256}"


def text(gate: Gate) -> list[str]:
    verdict = "GO" if gate.go else "NO-GO"
    lines = [f"preflight {gate.customer}: {verdict} for release {gate.release or '(unknown)'} "
             f"({gate.source} -> {gate.target})",
             f"  {gate.title}; {_when(gate)}; {_artifact(gate)}"]
    if gate.first_go_live:
        lines.append(f"  {FIRST_GO_LIVE_WORDS}")
    lines += [f"  note: {n}" for n in gate.notes]
    lines.append(f"  workspace: {'ok' if gate.workspace.ok else 'FIX'} - {gate.workspace.detail}")
    for h in gate.hosts:
        cells = ", ".join(f"{i.name} {'ok' if i.ok else 'FIX'}" for i in h.items)
        lines.append(f"  {h.host:<14} {h.environment:<11} {cells}")
    red = gate.red()
    if red:
        lines.append("what to do:")
        for where, item in red:
            lines.append(f"  - {where} / {item.name}: {item.detail}")
            lines.append(f"    {item.action}")
    if gate.unexpected:
        lines.append(f"unexpected differences ({len(gate.unexpected)}):")
        lines.extend("  " + core.finding_line(f) for f in gate.unexpected)
    if gate.expected:
        lines.append(f"expected differences ({len(gate.expected)}, declared in golive.yml):")
        lines.extend(f"  {f.subject}: {f.expected_value} -> {f.actual_value} - {f.reason}" for f in gate.expected)
    return lines


# -- the words both documents use ---------------------------------------------------------------------

FIRST_GO_LIVE_WORDS = "First go-live: nothing deployed yet on production."
FIRST_GO_LIVE_MEANS = ("Production has never run this product, so it is not compared file by file with staging: "
                       "preflight asks instead whether each production host is reachable, prepared for golive and "
                       "has the free disk required, and whether staging runs this artifact, verified and checked.")
SECRET_CHANGE = "changed, contents not shown (a secret file)"
SIGN_OFF_ROLES = ("Client IT lead", "Implementation lead", "Client business owner")
SIGN_OFF_TEXT = ("By signing, each person confirms the decision above for this release, this artifact (sha256 "
                 "above) and these hosts, as the report stood when it was generated.")


def _change_words(change: str, secret: bool) -> str:
    return SECRET_CHANGE if secret and change == "changed" else \
        {"added": "new file", "changed": "changed", "removed": "removed"}.get(change, change)


# -- markdown ---------------------------------------------------------------------------------------

def _md(value: Any) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def _md_host(name: str) -> str:
    return f"`{name}`" if name != "workspace" else name


def _md_hosts(names: Any) -> str:
    return ", ".join(_md_host(_md(n)) for n in names)


def markdown(gate: Gate) -> str:
    verdict = "GO" if gate.go else "NO-GO"
    out = [f"# Go-live preflight: {_md(gate.title)} — {verdict}", "",
           f"Release **{_md(gate.release or '(unknown)')}** of {_md(gate.product or gate.customer)} for "
           f"{_md(gate.company or gate.customer)} (customer `{_md(gate.customer)}`), {gate.source} → {gate.target}.",
           "", f"- Checked: {_md(_when(gate))}, by {_md(gate.operator)}",
           f"- Artifact: {_md(gate.artifact or '(unknown)')}",
           f"- sha256: `{_md(gate.artifact_sha256 or 'unknown')}`", ""]
    out += [f"Note: {_md(n)}." for n in gate.notes] + ([""] if gate.notes else [])
    out += ["## Summary", ""]
    red = gate.red()
    out.append(f"**{verdict}**: " + ("every gate item is green." if gate.go else
                                     f"{len(red)} item(s) must be fixed before the go-live."))
    if gate.first_go_live:
        out += ["", f"**{FIRST_GO_LIVE_WORDS}** {FIRST_GO_LIVE_MEANS}"]
    out += ["", f"- Workspace: {'ok' if gate.workspace.ok else 'FIX'} — {_md(gate.workspace.detail)}",
            f"- Unexpected differences: {len(gate.unexpected)}", f"- Expected differences: {len(gate.expected)}", ""]
    out += ["## Hosts", ""]
    for environment, hosts in _by_environment(gate):
        names = sorted({n for h in hosts for n in (i.name for i in h.items)}, key=_item_order(hosts))
        out += [f"### {environment}", "", "| host | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names)]
        for h in hosts:
            cells = {i.name: ("✅ ok" if i.ok else "❌ FIX") for i in h.items}
            out.append(f"| {_md_host(_md(h.host))} | " + " | ".join(cells.get(n, "—") for n in names) + " |")
        out.append("")
    out += ["## What to do next", ""]
    if not red:
        out.append("Nothing: all gate items are green.")
    for index, (where, item) in enumerate(red, 1):
        out.append(f"{index}. **{_md_host(_md(where))} — {_md(item.name)}** ({_md(item.detail)}): {_md(item.action)}")
    out += ["", "## Checks that passed", ""]
    passed = gate.passed()
    if passed:
        out += ["| where | check | result |", "|---|---|---|"]
        out += [f"| {_md_host(_md(where))} | {_md(item.name)} | {_md(item.detail)} |" for where, item in passed]
    else:
        out.append("No check passed.")
    out += ["", "## Configuration changes this go-live makes", ""]
    if not gate.config_changes:
        out.append("No change: the configuration files stay as they are.")
    for c in gate.config_changes:
        out += [f"### {_md(c.dest)} — {_md(_change_words(c.change, c.secret))}", "", f"On {_md_hosts(c.hosts)}.", ""]
        if c.diff:
            fence = "~~~~" if "```" in c.diff else "```"
            out += [f"{fence}diff", c.diff.rstrip("\n"), fence, ""]
    out += ["", "## Differences between staging and production", "", "### Unexpected (drift)", ""]
    out += _md_findings(gate.unexpected, "No unexpected differences.")
    out += ["", "### Expected (declared in golive.yml, with reasons)", ""]
    if gate.expected:
        out += ["| setting | staging | production | reason | changes |", "|---|---|---|---|---|"]
        out += [f"| {_md(f.subject)} | {_md(f.expected_value)} | {_md(f.actual_value)} | {_md(f.reason)} | "
                f"{_md(', '.join(f.files))} |" for f in gate.expected]
    else:
        out.append("No declared differences.")
    out += ["", "### Changed by this go-live", ""]
    out += _md_findings(gate.pending, "Nothing else.")
    out += ["", "## Rollback plan", ""]
    out += [f"{index}. {_md(step)}" for index, step in enumerate(gate.rollback_plan, 1)] or \
        ["No rollback plan could be made."]
    out += ["", "## Sign-off", "", f"Decision for release {_md(gate.release or '(unknown)')}: GO ☐  NO-GO ☐", "",
            SIGN_OFF_TEXT, "", "| role | name | decision | date | signature |", "|---|---|---|---|---|"]
    out += [f"| {role} |  |  |  |  |" for role in SIGN_OFF_ROLES]
    return "\n".join(out) + "\n"


def _md_findings(findings: list[core.Finding], empty: str) -> list[str]:
    if not findings:
        return [empty]
    rows = ["| severity | kind | what | hosts | expected / staging | found / production | why |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {f.severity} | {f.kind} | {_md(f.subject)} | {_md_hosts(f.hosts)} | {_md(f.expected_value)} | "
             f"{_md(f.actual_value)} | {_md(f.reason)}{' (set at ' + _md(f.where) + ')' if f.where else ''} |"
             for f in findings]
    return rows


def _by_environment(gate: Gate) -> list[tuple[str, list[HostGate]]]:
    order = [gate.target, gate.source]
    grouped: dict[str, list[HostGate]] = {}
    for h in gate.hosts:
        grouped.setdefault(h.environment, []).append(h)
    return [(e, grouped[e]) for e in order if e in grouped] + [(e, v) for e, v in grouped.items() if e not in order]


def _item_order(hosts: list[HostGate]) -> Callable[[str], int]:
    order: dict[str, int] = {}
    for h in hosts:
        for i in h.items:
            order.setdefault(i.name, len(order))
    return lambda name: order[name]


# -- html -------------------------------------------------------------------------------------------

STYLE = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;color:#1d2330;
background:#f4f6f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px}
header.verdict{padding:28px 24px;color:#fff;border-radius:10px;margin-bottom:20px}
header.go{background:#1f8a4c}header.nogo{background:#b3261e}
header h1{margin:0 0 6px;font-size:34px;letter-spacing:.5px}header p{margin:0;font-size:15px;opacity:.95}
section{background:#fff;border-radius:10px;padding:18px 22px;margin-bottom:18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{margin:0 0 12px;font-size:21px}h3{margin:18px 0 8px;font-size:16px;color:#3a4256}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border:1px solid #dde2ea;padding:7px 9px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}
td.ok{background:#e3f4ea;color:#14623a;font-weight:600}td.bad{background:#fbe4e2;color:#8c1d17;font-weight:600}
td small{display:block;font-weight:400;color:#4a5368;margin-top:2px}
.stats{display:flex;gap:14px;flex-wrap:wrap}.stat{flex:1;min-width:160px;border-radius:8px;padding:12px 14px;
background:#f4f6f9}.stat b{display:block;font-size:24px}
ol.actions li{margin-bottom:10px}.where{font-weight:600}.detail{color:#4a5368;font-size:13px}
code{background:#eef1f6;padding:1px 5px;border-radius:4px;font-size:13px}
.sev-high{color:#8c1d17;font-weight:600}.sev-medium{color:#8a5a00;font-weight:600}.sev-low{color:#4a5368}
footer{color:#6b7385;font-size:12px;text-align:center;padding:8px}
.host{white-space:nowrap;word-break:keep-all;overflow-wrap:normal;hyphens:none}
.sha{font-family:ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere;font-size:13px}
pre.diff{background:#f6f8fa;border:1px solid #dde2ea;border-radius:6px;padding:10px;overflow-x:auto;font-size:13px}
.first{background:#fff6db;border-left:5px solid #c58a00;padding:10px 14px;border-radius:6px}
table.signoff td{height:38px}.box{display:inline-block;width:14px;height:14px;border:2px solid #1d2330;
vertical-align:middle;margin:0 6px 0 14px}
@media print{body{background:#fff}section{box-shadow:none;break-inside:avoid}}
"""


def _h(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def _prose(value: str) -> str:
    """Escaped text with `commands` shown as code."""
    pieces = _h(value).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _host(name: str) -> str:
    """A host name that never wraps mid-word (a browser breaks `mfg-prod-1` at its hyphens)."""
    return f"<span class=\"host\">{_h(name)}</span>"


def _hosts(names: Any) -> str:
    return ", ".join(_host(n) for n in names)


_TAG = re.compile(r"(<[^>]*>)")
_KEEPS_WORDS = re.compile(r"<(span|b|small) class=\"host\">|<(title|style)>")


def _nowrap_hosts(document: str, names: Any) -> str:
    """Every host name in the document's text (a detail, an action, a finding) set in a nowrap span,
    wherever the text came from; the names the report sets itself already are."""
    escaped = sorted({_h(n) for n in names if n}, key=len, reverse=True)
    if not escaped:
        return document
    name = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(n) for n in escaped) + r")(?![\w-]|\.\w)")
    pieces = _TAG.split(document)
    for index in range(0, len(pieces), 2):  # text between tags: even indexes
        opened = pieces[index - 1] if index else ""
        if pieces[index] and not _KEEPS_WORDS.fullmatch(opened):
            pieces[index] = name.sub(r'<span class="host">\1</span>', pieces[index])
    return "".join(pieces)


def html_report(gate: Gate) -> str:
    verdict = "GO" if gate.go else "NO-GO"
    red = gate.red()
    parts = ["<!doctype html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>Go-live preflight: {_h(gate.title)} — {verdict}</title>",
             f"<style>{STYLE}</style></head><body><main>",
             f"<header class=\"verdict {'go' if gate.go else 'nogo'}\" id=\"verdict\">"
             f"<h1>{verdict}</h1><p>Go-live of <b>{_h(gate.product or gate.customer)}</b> release "
             f"<b>{_h(gate.release or '(unknown)')}</b> for <b>{_h(gate.company or gate.customer)}</b> "
             f"({_h(gate.source)} → {_h(gate.target)})</p></header>"]
    parts.append("<section id=\"identity\"><h2>What and when</h2><table class=\"facts\"><tbody>" + "".join(
        f"<tr><th>{_h(label)}</th><td{cls}>{value}</td></tr>" for label, value, cls in (
            ("Client", _h(gate.company or gate.customer), ""),
            ("Customer key", f"<code>{_h(gate.customer)}</code>", ""),
            ("Product", _h(gate.product or "(unknown)"), ""),
            ("Release", _h(gate.release or "(unknown)"), ""),
            ("Artifact", _h(gate.artifact or "(unknown)"), ""),
            ("Artifact sha256", _h(gate.artifact_sha256 or "unknown"), " class=\"sha\" id=\"sha256\""),
            ("Checked (UTC)", _h(gate.started), ""),
            (f"Checked ({gate.timezone})" if gate.timezone else "Checked (local)",
             _h(gate.started_local or "UTC only"), ""),
            ("Checked by", _h(gate.operator), ""))) + "</tbody></table>"
        + "".join(f"<p class=\"detail\">Note: {_h(n)}.</p>" for n in gate.notes) + "</section>")
    parts.append("<section id=\"summary\"><h2>Summary</h2>")
    if gate.first_go_live:
        parts.append(f"<p class=\"first\" id=\"first-go-live\"><b>{_h(FIRST_GO_LIVE_WORDS)}</b> "
                     f"{_h(FIRST_GO_LIVE_MEANS)}</p>")
    summary = "Every gate item is green: the go-live can start." if gate.go else \
        f"{len(red)} item(s) must be fixed before the go-live. Each is explained under " \
        "<a href=\"#actions\">What to do next</a>."
    parts.append(f"<p>{summary}</p>")
    hosts_ok = sum(1 for h in gate.hosts if h.ok)
    parts.append("<div class=\"stats\">" + "".join(
        f"<div class=\"stat\"><b>{_h(value)}</b>{_h(label)}</div>" for value, label in (
            (f"{hosts_ok} / {len(gate.hosts)}", "hosts all green"),
            ("ok" if gate.workspace.ok else "FIX", "workspace"),
            (len(gate.unexpected), "unexpected differences"),
            (len(gate.expected), "expected differences"))) + "</div></section>")
    parts.append("<section id=\"hosts\"><h2>Hosts</h2>")
    parts.append(f"<p>Workspace: <b>{'ok' if gate.workspace.ok else 'FIX'}</b> — {_h(gate.workspace.detail)}</p>")
    for environment, hosts in _by_environment(gate):
        names = sorted({i.name for h in hosts for i in h.items}, key=_item_order(hosts))
        parts.append(f"<h3>{_h(environment)}</h3><table class=\"gate\" data-environment=\"{_h(environment)}\">"
                     "<thead><tr><th>host</th>" + "".join(f"<th>{_h(n)}</th>" for n in names) + "</tr></thead><tbody>")
        for h in hosts:
            cells = {i.name: i for i in h.items}
            row = [f"<td><b class=\"host\">{_h(h.host)}</b><small class=\"host\">{_h(h.address)}</small></td>"]
            for name in names:
                item = cells.get(name)
                if item is None:
                    row.append("<td>—</td>")
                else:
                    row.append(f"<td class=\"{'ok' if item.ok else 'bad'}\">{'ok' if item.ok else 'FIX'}"
                               f"<small>{_h(item.detail)}</small></td>")
            parts.append(f"<tr data-host=\"{_h(h.host)}\">" + "".join(row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</section>")
    parts.append("<section id=\"actions\"><h2>What to do next</h2>")
    if red:
        parts.append("<ol class=\"actions\">" + "".join(
            f"<li><span class=\"where\">{_host(where)} — {_h(item.name)}</span><div class=\"detail\">{_h(item.detail)}"
            f"</div><div>{_prose(item.action)}</div></li>" for where, item in red) + "</ol>")
    else:
        parts.append("<p>Nothing: all gate items are green.</p>")
    parts.append("</section>")
    passed = gate.passed()
    parts.append("<section id=\"passed\"><h2>Checks that passed</h2>" + (
        "<table><thead><tr><th>where</th><th>check</th><th>result</th></tr></thead><tbody>" + "".join(
            f"<tr><td>{_host(where)}</td><td>{_h(item.name)}</td><td>{_h(item.detail)}</td></tr>"
            for where, item in passed) + "</tbody></table>" if passed else "<p>No check passed.</p>") + "</section>")
    parts.append("<section id=\"config-changes\"><h2>Configuration changes this go-live makes</h2>")
    if not gate.config_changes:
        parts.append("<p>No change: the configuration files stay as they are.</p>")
    for c in gate.config_changes:
        parts.append(f"<h3>{_h(c.dest)} — {_h(_change_words(c.change, c.secret))}</h3><p>On {_hosts(c.hosts)}.</p>"
                     + (f"<pre class=\"diff\">{_h(c.diff)}</pre>" if c.diff else ""))
    parts.append("</section>")
    parts.append("<section id=\"drift\"><h2>Differences between staging and production</h2>")
    parts.append("<h3 id=\"unexpected\">Unexpected (drift)</h3>"
                 + _html_findings(gate.unexpected, "No unexpected differences."))
    parts.append("<h3 id=\"expected\">Expected (declared in golive.yml, with reasons)</h3>")
    if gate.expected:
        parts.append("<table><thead><tr><th>setting</th><th>staging</th><th>production</th><th>reason</th>"
                     "<th>changes</th></tr></thead><tbody>" + "".join(
                         f"<tr><td>{_h(f.subject)}</td><td>{_h(f.expected_value)}</td><td>{_h(f.actual_value)}</td>"
                         f"<td>{_h(f.reason)}</td><td>{_h(', '.join(f.files))}</td></tr>" for f in gate.expected)
                     + "</tbody></table>")
    else:
        parts.append("<p>No declared differences.</p>")
    parts.append("<h3 id=\"go-live-changes\">Changed by this go-live</h3>"
                 + _html_findings(gate.pending, "Nothing else."))
    parts.append("</section>")
    parts.append("<section id=\"rollback\"><h2>Rollback plan</h2><ol>"
                 + "".join(f"<li>{_prose(step)}</li>" for step in gate.rollback_plan) + "</ol></section>")
    parts.append(f"<section id=\"sign-off\"><h2>Sign-off</h2><p>Decision for release "
                 f"<b>{_h(gate.release or '(unknown)')}</b>:<span class=\"box\"></span>GO<span class=\"box\"></span>"
                 f"NO-GO</p><p>{_h(SIGN_OFF_TEXT)}</p><table class=\"signoff\"><thead><tr><th>role</th><th>name</th>"
                 "<th>decision</th><th>date</th><th>signature</th></tr></thead><tbody>"
                 + "".join(f"<tr><td>{_h(role)}</td><td></td><td></td><td></td><td></td></tr>"
                           for role in SIGN_OFF_ROLES) + "</tbody></table></section>")
    parts.append(f"<footer>golive preflight · {_h(gate.title)} · {_h(gate.started)} · {gate.seconds:.1f}s</footer>")
    parts.append("</main></body></html>")
    return _nowrap_hosts("\n".join(parts) + "\n", [h.host for h in gate.hosts])


def _html_findings(findings: list[core.Finding], empty: str) -> str:
    if not findings:
        return f"<p>{_h(empty)}</p>"
    rows = "".join(
        f"<tr><td class=\"sev-{_h(f.severity)}\">{_h(f.severity)}</td><td>{_h(f.kind)}</td><td>{_h(f.subject)}</td>"
        f"<td>{_hosts(f.hosts)}</td><td>{_h(f.expected_value)}</td><td>{_h(f.actual_value)}</td>"
        f"<td>{_h(f.reason)}{'<small>set at ' + _h(f.where) + '</small>' if f.where else ''}</td></tr>"
        for f in findings)
    return ("<table><thead><tr><th>severity</th><th>kind</th><th>what</th><th>hosts</th><th>expected / staging</th>"
            f"<th>found / production</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>")


# -- files ------------------------------------------------------------------------------------------

def masked(gate: Gate, redactor: Redactor) -> Gate:
    """The gate with every string in it masked: what every form of the report is made from."""
    masked_gate: Gate = redactor.data(gate)  # a dataclass comes back rebuilt, of its own type
    return masked_gate


def write(gate: Gate, directory: Path, redactor: Redactor) -> dict[str, Path]:
    gate = masked(gate, redactor)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, content in (("md", markdown(gate)), ("html", html_report(gate))):
        path = directory / f"report.{name}"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(content, encoding="utf-8")
        os.replace(temporary, path)
        written[name] = path
    return written


def write_junit(gate: Gate, path: Path, redactor: Redactor) -> None:
    gate = masked(gate, redactor)
    cases = [("workspace", "workspace", gate.workspace)] + \
            [(f"{h.environment}.{h.host}", i.name, i) for h in gate.hosts for i in h.items]
    suite = ET.Element("testsuite", name=f"golive preflight {gate.customer}", tests=str(len(cases)),
                       failures=str(sum(1 for _, _, i in cases if not i.ok)), errors="0", skipped="0",
                       time=f"{gate.seconds:.3f}")
    for classname, name, item in cases:
        case = ET.SubElement(suite, "testcase", classname=f"preflight.{classname}", name=name)
        if not item.ok:
            failure = ET.SubElement(case, "failure", message=item.detail)
            failure.text = item.action
    root = ET.Element("testsuites")
    root.append(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)

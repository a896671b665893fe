"""golive preflight CUSTOMER [--release V]: can we go live now? Go or no-go, with a client report.

One fingerprint per host of the source environment (staging) and production, in parallel (the same
collector as drift), then the gate items:

    workspace       the workspace validates (YAML, schema, templates, expiry dates)
    per production host: reachable (with its known host key), disk, lock, rollback target, drift
    per staging host:    reachable, runs release V, passed its checks for it, lock, drift

Production running an older release than staging is what the go-live changes, so that difference
(and config the workspace will deploy then) is listed as expected, not as drift. The report is
written as report.md and a self-contained report.html (golive.preflight_report), and as JUnit XML
with --junit.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from golive.adapters.locks import describe, liveness
from golive.adapters.progress import Progress
from golive.core import drift as core
from golive.core.errors import BadInput
from golive.core.gate import Gate, HostGate, Item
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.release import release_id
from golive.core.rollback import RollbackFacts, choose
from golive.flows import drift as drift_flow
from golive.flows import preflight_report
from golive.flows.offline import validate
from golive.flows.session import operator_name
from golive.workspace import Workspace

TARGET = "production"
DEFAULT_REPORT_DIR = ".golive-out/preflight"


# -- the gate items ----------------------------------------------------------------------------------

def _workspace_item(ws: Workspace, customer: str) -> Item:
    try:
        result = validate(ws, customer)
    except BadInput as error:
        problems = [str(p) for p in error.problems]
        return Item("workspace", False, "; ".join(problems),
                    "The implementation team fixes these configuration errors in the golive workspace "
                    "(they name the file and line), then runs preflight again: " + "; ".join(problems))
    return Item("workspace", True, result.text)


def _reachable(fp: drift_flow.Fingerprint) -> Item:
    if fp.ok:
        return Item("reachable", True, "connected; host key matches known_hosts")
    error = fp.error or "not reached"
    c = fp.host.connection
    if "host key" in error.lower() or "REFUSED" in error:
        return Item("reachable", False, error,
                    f"The server's identity (its SSH host key) is not the one on record for {fp.host.name}. "
                    "Stop here: ask your infrastructure team whether this server was rebuilt or replaced. Only "
                    "if they confirm it, and send the new key's fingerprint, does the implementation team update "
                    "the known_hosts file; then run preflight again.")
    return Item("reachable", False, error,
                f"We cannot reach {fp.host.name} ({c.user}@{c.address}, port {c.port}) over SSH. Check that the "
                "server is running and that the network and firewall let the deploy machine connect, then run "
                "preflight again.")


def _disk(host: Host, data: dict[str, Any], ws: Workspace) -> Item:
    free = ((data.get("disk") or {}).get("free_bytes") or 0) // (1024 * 1024)
    need = int(host.vars.get("min_free_disk_mb") or 0)
    if free >= need:
        return Item("disk", True, f"{free} MB free (needs {need} MB)")
    return Item("disk", False, f"{free} MB free, needs {need} MB",
                f"Free at least {need - free} MB on {host.name} under {ws.app.root} (or enlarge the disk): "
                f"{free} MB are free and the customer requires {need} MB. Then run preflight again.")


def _lock(host: Host, data: dict[str, Any], customer: str) -> Item:
    holder = data.get("lock")
    if not holder:
        return Item("lock", True, "no lock")
    state = liveness(holder)
    sentence = describe(holder)
    if state == "alive":
        return Item("lock", False, sentence,
                    f"A deployment is running on {host.name} right now ({sentence}). Wait until it finishes, "
                    "then run preflight again.")
    return Item("lock", False, sentence,
                f"An interrupted deployment left a lock on {host.name} ({sentence}). After making sure nobody is "
                f"deploying, an engineer clears it with `golive unlock {customer} {host.environment} "
                "--reason \"...\"` (recorded in the history), then runs preflight again.")


def _rollback_target(ws: Workspace, host: Host, data: dict[str, Any], version: str | None) -> Item:
    after_go_live = None
    if version:
        try:
            after_go_live = release_id(version, ws.render(host, version).hash)
        except BadInput:
            after_go_live = None
    # What a plain rollback would choose once the release goes live (golive.core.rollback: by deploy
    # sequence, never by the host's clock; not a release a rollback left).
    releases = [r for r in data.get("releases") or [] if r.get("id") != after_go_live]
    target = choose(RollbackFacts.from_agent({"current": after_go_live, "releases": releases})).release
    if target is not None:
        return Item("rollback target", True, f"{target.id} (verified) stays available to roll back to")
    return Item("rollback target", False, "no earlier verified release on the host",
                f"{host.name} has no earlier verified release to fall back to after the go-live. Decide with "
                "the implementation team whether going live without a way back is acceptable; if not, deploy "
                "and verify the current production release there first.")


def _runs_release(data: dict[str, Any], version: str | None, customer: str, host: Host) -> Item:
    meta = (data.get("release") or {}).get("meta") or {}
    running = meta.get("version")
    if version and running == version and meta.get("state") == "good":
        return Item(f"runs {version}", True, f"{(data.get('release') or {}).get('id')} is live and verified")
    shown = f"{running} ({meta.get('state')})" if running else "nothing"
    return Item(f"runs {version or 'the release'}", False, f"runs {shown}",
                f"Staging must run and have verified {version or 'the release to go live'} first: deploy it with "
                f"`golive deploy {customer} {host.environment} --release {version or 'VERSION'}`, then run the "
                "checks and preflight again.")


def _check_passed(data: dict[str, Any], customer: str, host: Host) -> Item:
    ledger = data.get("ledger") or {}
    check = ledger.get("check_for_current")
    current = (data.get("release") or {}).get("id")
    if check and check.get("result") == "passed":
        return Item("checks passed", True, f"passed at {check.get('time')} for {current}")
    detail = f"last check {check.get('result')} at {check.get('time')}" if check else \
        f"no check run recorded for {current}"
    return Item("checks passed", False, detail,
                f"The environment checks have not passed on {host.name} for the release it runs ({detail}). "
                f"Run `golive check {customer} {host.environment}`, fix what it reports, then run preflight again.")


# What to do about a difference between the environments (a host's own findings name the command
# that repairs them: golive.flows.drift.advice).
ACTIONS = {
    "release": "The environments run different releases. Deploy the release that should run with golive.",
    "code_file": "The same release differs between staging and production, and the release store has no "
                 "artifact to tell which host is right: put the artifact into the store and run preflight "
                 "again (each host is then compared with it, and the command that repairs one is named).",
    "config": "A configuration file differs from what golive generates for this environment. Put a wanted "
              "change into the golive configuration and deploy it.",
    "variable": "A setting differs between staging and production without being declared as expected. Either "
                "make production match staging, or declare the difference (with a reason) in golive.yml.",
    "platform": "The operating system differs between staging and production. Align the servers, or confirm "
                "with the vendor that the difference is supported.",
    "package": "A runtime package has a different version than on staging. Align the package versions.",
    "service": "The application service is set up differently than on staging (its service definition or its "
               "systemd unit). Align them.",
    "port": "A network port differs from staging. Check what listens there and whether it should.",
    "permission": "File permissions or owners differ from what golive sets (or between staging and production). "
                  "Restore them (a deploy does) and find out who changed them; a readable secret file may mean the "
                  "password must be changed.",
    "database": "The database's schema differs from what golive's migrations left (or from staging's). Ask who "
                "changed it and why; ship the change as a migration through staging, or undo it.",
}


def _drift_item(ws: Workspace, host: Host, prints: dict[str, drift_flow.Fingerprint], findings: list[core.Finding],
                customer: str) -> Item:
    mine = [f for f in findings if host.name in f.hosts]
    if not mine:
        return Item("drift", True, "no unexpected differences")
    detail = "; ".join(f"{f.kind} {f.subject}: {f.reason}" for f in mine[:6]) + \
        (f"; and {len(mine) - 6} more" if len(mine) > 6 else "")
    on_host = drift_flow.advice(ws, customer, host, prints, mine)
    handled = {f.kind for f in mine if f.scope == core.HOST and (f.kind in drift_flow.REPAIRED_BY_DEPLOY
                                                                 or f.kind == "platform")}
    between = sorted({f.kind for f in mine if f.scope == core.ENVIRONMENT or f.kind not in handled})
    action = " ".join([on_host] + [ACTIONS[k] for k in between]).strip() + " Then run preflight again."
    return Item("drift", False, detail, action)


def _database_drift_item(host: str, findings: list[core.Finding]) -> Item:
    """The database host's drift: its schema against what golive's migrations left (no fingerprint
    of its own, so no per-host advice: what to do depends on the kind)."""
    mine = [f for f in findings if host in f.hosts]
    if not mine:
        return Item("drift", True, "no unexpected differences")
    detail = "; ".join(f"{f.kind} {f.subject}: {f.reason}" for f in mine[:6]) + \
        (f"; and {len(mine) - 6} more" if len(mine) > 6 else "")
    action = " ".join(ACTIONS.get(k, "") for k in sorted({f.kind for f in mine})).strip() + " Then run preflight again."
    return Item("drift", False, detail, action)


def _pending_go_live(report: core.DriftReport, version: str | None, target: str,
                     target_hosts: set[str]) -> tuple[list[core.Finding], list[core.Finding]]:
    """(unexpected, pending): a production release or config that the go-live deploy replaces is pending."""
    unexpected, pending = [], []
    for f in report.findings:
        going = version and f.scope == core.ENVIRONMENT and f.kind == "release" and \
            (f.expected_value or "").startswith(f"{version} ")
        not_deployed = f.scope == core.HOST and f.kind == "config" and "not deployed yet" in f.reason and \
            set(f.hosts) <= target_hosts
        if _migrations_behind(f):  # production has applied a prefix of what staging has: the go-live migrates it
            pending.append(replace(f, severity="info", reason=f"the go-live migrates {target}'s database"))
            continue
        if going:
            pending.append(replace(f, severity="info", reason=f"the go-live moves {target} to {version}"))
        elif not_deployed:
            pending.append(replace(f, severity="info", reason="the go-live deploys what the workspace renders now"))
        else:
            unexpected.append(f)
    return unexpected, pending


def _migrations_behind(f: core.Finding) -> bool:
    """Production's database has applied the first of staging's migrations, no other: the go-live
    applies the rest (the reason is then 'has applied nothing more')."""
    if f.scope != core.ENVIRONMENT or f.kind != "database" or f.subject != "migrations":
        return False
    theirs = [v.strip() for v in (f.expected_value or "").split(",") if v.strip() and v.strip() != "none"]
    mine = [v.strip() for v in (f.actual_value or "").split(",") if v.strip() and v.strip() != "none"]
    return mine == theirs[:len(mine)]


# -- the gate ---------------------------------------------------------------------------------------

def evaluate(ws: Workspace, customer: str, release: str | None, progress: Progress,
             today: date | None = None) -> Gate:
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    spec = ws.app.environment(TARGET)
    source = spec.promote_from if spec and spec.promote_from else "staging"
    ws.customer(customer)  # an unknown customer is bad input: nothing to report on
    workspace = _workspace_item(ws, customer)
    try:
        plan: drift_flow.DriftPlan | None = drift_flow.plan(ws, customer, source, TARGET)
    except BadInput:
        if workspace.ok:
            raise
        plan = None  # the workspace item says why; every host is still checked for the rest
    hosts = plan.hosts if plan else [h for h in ws.customer(customer).hosts if h.environment in (source, TARGET)]
    progress.start(f"preflight {customer}: {source} -> {TARGET}", [h.name for h in hosts], ("collect",))
    try:
        prints = drift_flow.collect(ws, hosts, progress)
    finally:
        progress.stop()
    staging_versions = {(((prints[h.name].data or {}).get("release") or {}).get("meta") or {}).get("version")
                        for h in hosts if h.environment == source and prints[h.name].ok}
    version = release or (staging_versions.pop() if len(staging_versions) == 1 else None)
    report = drift_flow.with_database(ws, plan, drift_flow.report(ws, plan, prints, today), prints, progress) \
        if plan else None
    target_names = {h.name for h in hosts if h.environment == TARGET}
    unexpected, pending = _pending_go_live(report, version, TARGET, target_names) if report else ([], [])
    gates = []
    for host in hosts:
        fp = prints[host.name]
        gate = HostGate(host.name, host.environment, host.connection.address, [_reachable(fp)])
        data = fp.data or {}
        if fp.ok and host.environment == TARGET:
            gate.items += [_disk(host, data, ws), _lock(host, data, customer),
                           _rollback_target(ws, host, data, version)]
        elif fp.ok:
            gate.items += [_runs_release(data, version, customer, host), _check_passed(data, customer, host),
                           _lock(host, data, customer)]
        if fp.ok:
            gate.items.append(_drift_item(ws, host, prints, unexpected, customer) if report else
                              Item("drift", False, "not compared: the workspace does not render",
                                   workspace.action))
        gates.append(gate)
    from golive.flows import database

    db_gate, rollback = database.preflight_items(ws, customer, TARGET, version, progress)
    if db_gate is not None:
        db_gate.items.append(_database_drift_item(db_gate.host, unexpected))
        gates.append(db_gate)
    return Gate(customer, source, TARGET, version, workspace, gates, unexpected,
                list(report.expected) if report else [], pending, stamp, operator_name(),
                round(time.monotonic() - started, 3), rollback)


def preflight(ws: Workspace, customer: str, *, release: str | None = None, report_dir: str | None = None,
              junit: str | None = None, progress: Progress, today: date | None = None) -> Outcome:
    gate = preflight_report.masked(evaluate(ws, customer, release, progress, today), ws.redactor)
    directory = Path(report_dir) if report_dir else ws.root / DEFAULT_REPORT_DIR / customer
    written = preflight_report.write(gate, directory, ws.redactor)
    if junit:
        preflight_report.write_junit(gate, Path(junit), ws.redactor)
    data = preflight_report.as_data(gate)
    data["report"] = {k: str(v) for k, v in written.items()}
    if junit:
        data["report"]["junit"] = str(Path(junit))
    lines = preflight_report.text(gate) + [f"report: {written['html']}"]
    return Outcome(data, "\n".join(lines), finding=not gate.go)

"""golive status / history / unlock: reading (and clearing) what the hosts record.

status shows, beside what a host records (the live release and its stored state: verified good,
bad, unverified), what the host serves now: the live release's health check, asked once, by the
rule deploy's verify applies. When the two disagree (stored good but the check fails, or the check
passes on a release not stored as good) status says so and exits 1."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from golive.adapters.progress import Progress
from golive.core.errors import BadInput
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.flows import steps
from golive.flows.session import HostSession, lock_report, run_context
from golive.workspace import Workspace


class HostRead(TypedDict):
    """What one host answered to _read's batch."""

    ok: bool
    error: str | None
    reachable: bool
    data: NotRequired[dict[str, Any]]  # {step: its data, as the host sent it}; when reachable


def _read(ws: Workspace, hosts: list[Host], progress: Progress, request: dict[str, Any]) -> dict[str, HostRead]:
    """One agent batch on every host in parallel: {host: {"ok", "error", "data": {step: data}}}."""
    session = HostSession(hosts, progress, ws.app)
    results: dict[str, HostRead] = {}
    try:
        connected = session.connect()
        requests = {}
        for host in hosts:
            if connected[host.name].ok:
                requests[host.name] = (connected[host.name], request)
            else:
                results[host.name] = {"ok": False, "error": connected[host.name].error, "reachable": False}
        for name, answer in session.call_all(requests, ws.app.timeouts.begin).items():
            results[name] = {"ok": answer.ok, "error": answer.error, "reachable": True,
                             "data": {s.name: s.data for s in answer.steps}}
    finally:
        session.close()
    return results


def _host_status(ws: Workspace, host: Host, result: HostRead) -> dict[str, Any]:
    row: dict[str, Any] = {"customer": host.customer, "environment": host.environment, "host": host.name}
    if not result.get("ok"):
        row["error"] = result.get("error")
        return row
    state = result["data"]["state"]
    meta = state.get("current_meta") or {}
    row.update(release=state.get("current"), version=meta.get("version"), state=meta.get("state"),
               artifact_sha256=meta.get("artifact_sha256"), config_hash=meta.get("config_hash"))
    if not state.get("current"):
        # nothing live: never deployed, or a first install that failed (withdrawn: stopped, no `current`)
        bad = [m.get("id") for m in state.get("releases") or [] if m.get("state") == "bad"]
        if bad:
            row["running"] = f"nothing running: first install failed ({', '.join(map(str, bad))} marked bad)"
    live = state.get("live_health")
    if live is not None:
        row["live"] = "healthy" if live.get("ok") else "failing"
        row["live_problem"] = live.get("problem") or ""
        # stored "good" says the release passed its health check; the live check says whether it still does
        row["disagrees"] = (meta.get("state") == "good") != bool(live.get("ok"))
        row["serving"] = bool(live.get("ok"))  # what the service answers now, not the state stored
    last = state.get("live_since") or {}
    row.update(deployed_at=last.get("time") or meta.get("created_at"), deployed_by=last.get("operator"),
               deployed_with=last.get("engine"))
    if state.get("lock"):
        row["lock"], row["lock_detail"] = lock_report(state["lock"])
    if meta.get("version"):
        try:
            rendered = ws.render(host, meta["version"])
            row["matches_workspace"] = rendered.hash == meta.get("config_hash")
        except BadInput:
            row["matches_workspace"] = None
    return row


def status(ws: Workspace, customer: str | None, environment: str | None, *, progress: Progress) -> Outcome:
    if customer is None:
        hosts = [h for name in ws.customer_names() for h in ws.customer(name).hosts]
    elif environment is None:
        hosts = list(ws.customer(customer).hosts)
    else:
        hosts = list(ws.hosts(customer, environment))
    results = _read(ws, hosts, progress, {"steps": [{**steps.read_state(ws.app, history=True), "live_health": True}]})
    rows = [_host_status(ws, h, results[h.name]) for h in hosts]
    environments = _environment_summary(ws, rows)
    lines = []
    if customer is None:
        lines.append(f"{'customer':<14} {'environment':<12} {'live release':<22} {'verified':<9} note")
        for env in environments:
            lines.append(f"{env['customer']:<14} {env['environment']:<12} {env['live'] or '-':<22} "
                         f"{'yes' if env['verified'] else 'no':<9} {env['note']}")
    else:
        lines.append(f"{'host':<14} {'env':<11} {'release':<20} {'state':<11} {'live':<8} {'artifact':<13} "
                     f"{'config':<13} {'deployed at':<25} {'by':<10} workspace")
        for row in rows:
            if "error" in row:
                lines.append(f"{row['host']:<14} {row['environment']:<11} UNREACHABLE: {row['error']}")
                continue
            match = {True: "matches", False: "DIFFERS", None: "-"}[row.get("matches_workspace")]
            lines.append(f"{row['host']:<14} {row['environment']:<11} {row.get('release') or '-':<20} "
                         f"{row.get('state') or '-':<11} {row.get('live') or '-':<8} "
                         f"{(row.get('artifact_sha256') or '-')[:12]:<13} "
                         f"{(row.get('config_hash') or '-')[:12]:<13} {row.get('deployed_at') or '-':<25} "
                         f"{row.get('deployed_by') or '-':<10} {match}")
            if row.get("running"):
                lines.append(f"{'':<14} {row['running']}")
            if row.get("disagrees"):
                lines.append(f"{'':<14} {disagreement(row)}")
            if row.get("lock"):
                lines.append(f"{'':<14} {row['lock_detail']}")
        for env in environments:
            if env["note"]:
                lines.append(f"{env['customer']}/{env['environment']}: {env['note']}")
    unreachable = any("error" in r for r in rows)
    disagree = [r for r in rows if r.get("disagrees")]
    if disagree:
        lines.append(f"{len(disagree)} host(s) serve other than they record: "
                     + "; ".join(f"{r['host']}: {disagreement(r)}" for r in disagree) if customer is None else
                     f"{len(disagree)} host(s) serve other than they record (above); a deploy of the same release "
                     f"repairs a host whose service stopped, a rollback goes back to the last good release")
    return Outcome({"hosts": rows, "environments": environments}, "\n".join(lines), failed=unreachable,
                   finding=bool(disagree))


def disagreement(row: dict[str, Any]) -> str:
    """What a host records against what it serves, in one line."""
    live = f"health check fails: {row.get('live_problem')}" if row.get("live") == "failing" else "health check passes"
    return f"stored: {row.get('state') or 'unknown'}, live: {live}"


def _environment_summary(ws: Workspace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    by_env: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_env.setdefault((row["customer"], row["environment"]), []).append(row)
    for (customer, environment), env_rows in by_env.items():
        # Release ids differ per host (each host's config differs); the version and artifact must not.
        versions = sorted({f"{r.get('version')} ({(r.get('artifact_sha256') or '')[:8]})"
                           for r in env_rows if r.get("release")})
        verified = all(r.get("state") == "good" and r.get("serving") is not False for r in env_rows)
        notes = []
        down = [r["host"] for r in env_rows if r.get("serving") is False]
        if down:
            notes.append("not serving now: " + ", ".join(down))
        if len(versions) > 1:
            notes.append("hosts run different versions: " + ", ".join(versions))
        if any("error" in r for r in env_rows):
            notes.append("some hosts unreachable")
        if any(r.get("matches_workspace") is False for r in env_rows):
            notes.append("config differs from what the workspace renders now")
        failing = [r["host"] for r in env_rows if r.get("disagrees")]
        if failing:
            notes.append(f"live health disagrees with the stored state on {', '.join(failing)}")
        spec = ws.app.environment(environment)
        if spec and spec.promote_from:
            source_rows = by_env.get((customer, spec.promote_from), [])
            source_shas = {r.get("artifact_sha256") for r in source_rows if r.get("state") == "good"}
            shas = {r.get("artifact_sha256") for r in env_rows if r.get("artifact_sha256")}
            if shas and source_rows:
                if shas <= source_shas:
                    notes.append(f"runs what {spec.promote_from} verified")
                else:
                    notes.append(f"NOT what {spec.promote_from} verified")
        summary.append({"customer": customer, "environment": environment,
                        "live": ", ".join(versions) if versions else None, "verified": verified and bool(versions),
                        "note": "; ".join(notes)})
    return summary


def history(ws: Workspace, customer: str, environment: str, *, only: list[str] | None = None, limit: int = 20,
            progress: Progress) -> Outcome:
    hosts = list(ws.hosts(customer, environment, only))
    results = _read(ws, hosts, progress, {"steps": [{"op": "history", "name": "history", "limit": limit}]})
    numbered: list[tuple[dict[str, Any], int]] = []  # (entry, its place in the host's ledger)
    errors: dict[str, str | None] = {}
    for host in hosts:
        result = results[host.name]
        if not result.get("ok"):
            errors[host.name] = result.get("error")
            continue
        numbered.extend((e, index) for index, e in enumerate(result["data"]["history"]["entries"]))
    # Newest first; entries of one host keep their ledger order when their times tie.
    entries = [e for e, _ in sorted(numbered, key=lambda p: (p[0].get("time", ""), p[1]), reverse=True)]
    lines = [f"{'time':<25} {'host':<13} {'action':<9} {'result':<12} {'release':<20} {'by':<10} detail"]
    entries = entries[:limit]
    for e in entries:
        detail = e.get("reason") or e.get("detail") or ""
        lines.append(f"{e.get('time', ''):<25} {e.get('host', ''):<13} {e.get('action', ''):<9} "
                     f"{e.get('result', ''):<12} {e.get('release') or '-':<20} {e.get('operator', ''):<10} {detail}")
    for name, error in errors.items():
        lines.append(f"{name}: UNREACHABLE: {error}")
    return Outcome({"customer": customer, "environment": environment, "entries": entries, "errors": errors},
                   "\n".join(lines), failed=bool(errors))


def unlock(ws: Workspace, customer: str, environment: str, *, reason: str, force: bool = False,
           only: list[str] | None = None, operator: str | None = None, progress: Progress) -> Outcome:
    if not reason.strip():
        raise BadInput("unlock needs --reason, recorded in the history")
    hosts = list(ws.hosts(customer, environment, only))
    run = run_context("unlock", customer, environment, operator, reason=reason)
    found = _read(ws, hosts, progress, {"steps": [steps.read_state(ws.app)]})
    to_clear = []
    rows: list[dict[str, Any]] = []
    for host in hosts:
        result = found[host.name]
        if not result.get("ok"):
            rows.append({"host": host.name, "result": "unreachable", "error": result.get("error")})
            continue
        holder = result["data"]["state"].get("lock")
        if not holder:
            rows.append({"host": host.name, "result": "no lock"})
            continue
        liveness, sentence = lock_report(holder)
        if liveness == "alive" and not force:
            rows.append({"host": host.name, "result": "refused", "lock": liveness,
                         "error": f"{sentence}; pass --force to clear it anyway"})
            continue
        to_clear.append(host)
        rows.append({"host": host.name, "result": "cleared", "lock": liveness, "holder": holder})
    if to_clear:
        request = {"steps": [steps.unlock(force=True)],
                   "always": [steps.record(run.entry("$host", result="ok"))]}
        cleared = {}
        session = HostSession(to_clear, progress, ws.app, run.token)
        try:
            connected = session.connect()
            cleared = session.call_all({h.name: (connected[h.name], _for_host(request, h.name)) for h in to_clear
                                        if connected[h.name].ok}, ws.app.timeouts.begin)
        finally:
            session.close()
        for row in rows:
            answer = cleared.get(row["host"])
            if row["result"] == "cleared" and (answer is None or not answer.ok):
                row.update(result="failed", error=answer.error if answer else "unreachable")
    lines = [f"unlock {customer}/{environment} (reason: {reason})"]
    for row in rows:
        lines.append(f"  {row['host']}: {row['result']}" + (f" - {row['error']}" if row.get("error") else ""))
    failed = any(r["result"] in ("unreachable", "refused", "failed") for r in rows)
    return Outcome({"customer": customer, "environment": environment, "reason": reason, "hosts": rows},
                   "\n".join(lines), failed=failed)


def _for_host(request: dict[str, Any], host: str) -> dict[str, Any]:
    always = [{**s, "entry": {**s["entry"], "host": host}} if s.get("op") == "record" else s
              for s in request.get("always", [])]
    return {**request, "always": always}

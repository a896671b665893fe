"""golive drift CUSTOMER [--from staging] [--to production]: what differs, and whether it should.

One round trip per host: golive.agent.collector fingerprints every host of both environments in
parallel. Everything else happens on the controller: what each host should run (its config rendered
now for the version it runs, the artifact's file list from the release store), its variables as the
source environment would set them (Workspace.as_environment), and the comparison itself, which
is pure (golive.core.drift).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse
from dataclasses import dataclass, replace
from datetime import date
from types import MappingProxyType
from typing import Any

from golive.adapters.progress import Progress
from golive.adapters.remote import call_agent
from golive.adapters.transport import Connected, Fleet
from golive.core import drift as core
from golive.core.errors import BadInput, Problem
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.redact import MASK
from golive.core.release import RenderedConfig, release_id
from golive.workspace import Workspace

COLLECT_TIMEOUT = 120
PLACEHOLDER_VERSION = "unreleased"


# -- fingerprints ---------------------------------------------------------------------------------

@dataclass
class Fingerprint:
    host: Host
    data: dict[str, Any] | None = None
    error: str | None = None  # unreachable (host key refused, down) or the collector failed
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.data is not None


def collector_request(ws: Workspace, host: Host) -> dict[str, Any]:
    addresses = {host.connection.address}
    listen = host.vars.get("listen_address")
    if isinstance(listen, str) and "{{" not in listen:
        addresses.add(listen)
    return {"root": ws.app.root, "config_dir": ws.app.config_dir, "shared": list(ws.app.shared),
            "config_files": [t.dest for t in ws.app.templates], "runtime_packages": list(ws.app.runtime_packages),
            "addresses": sorted(addresses)}


def collect(ws: Workspace, hosts: list[Host], progress: Progress, fleet: Fleet | None = None) -> dict[str, Fingerprint]:
    """Fingerprint every host in parallel: connect (host keys verified) and one collector run each."""
    own_fleet = fleet is None
    fleet = fleet or Fleet(hosts)
    try:
        connected = fleet.connect(hosts)

        def one(host: Host) -> Fingerprint:
            link: Connected = connected[host.name]
            if not link.ok:
                progress.update(host.name, "collect", "failed", "unreachable")
                return Fingerprint(host, error=link.error)
            started = time.monotonic()
            answer = call_agent(link, collector_request(ws, host), timeout=COLLECT_TIMEOUT, module="collector")
            took = time.monotonic() - started
            if not answer.ok:
                progress.update(host.name, "collect", "failed")
                return Fingerprint(host, error=f"{host.name}: {answer.error}", seconds=took)
            progress.update(host.name, "collect", "ok", f"{took:.2f}s")
            return Fingerprint(host, answer.data("fingerprint"), seconds=took)

        results = fleet.map(one, hosts)
    finally:
        if own_fleet:
            fleet.close()
    found = {}
    for host, result in zip(hosts, results, strict=True):
        found[host.name] = result if isinstance(result, Fingerprint) else \
            Fingerprint(host, error=f"{host.name}: {type(result).__name__}: {result}")
    return found


# -- what each host should run ----------------------------------------------------------------------

def health_port(url: str) -> int | None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def desired_host(ws: Workspace, host: Host, fingerprint: dict[str, Any] | None) -> tuple[core.DesiredHost | None, str]:
    """What the workspace wants on this host for the version it runs (or why it cannot say)."""
    if fingerprint is None:
        return None, "unreachable"
    meta = (fingerprint.get("release") or {}).get("meta") or {}
    version = meta.get("version")
    if not version:
        return None, "no release is live"
    try:
        config = ws.render(host, version)
        url = ws.render_string(ws.app.health.url, host, version, "health.url") if ws.app.health.url else ""
    except BadInput as error:
        return None, "; ".join(str(p) for p in error.problems)
    sha, manifest = ws.artifact_files(version)
    files = tuple(core.DesiredFile(f.dest, f.sha256, f.mode, f.secret,
                                   os.path.join(ws.app.root, "current", "config", f.dest)) for f in config.files)
    return core.DesiredHost(version, release_id(version, config.hash), config.hash, files, sha, manifest,
                        health_port(url) if url else None), ""


# -- variables, in both environments ---------------------------------------------------------------

def _value(ws: Workspace, host: Host, name: str, value: Any) -> core.Value:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    secret = name in ws.app.secret_var_names or ws.redactor.text(text) != text or \
        any(s in text for s in host.secret_values if len(s) >= 4)
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    shown = MASK if secret else (text if len(text) <= 200 else text[:197] + "...")
    return core.Value(digest, shown, host.var_origins.get(name, ""), secret)


def compared_variables(ws: Workspace, host: Host, variant: str = "") -> dict[str, core.Value]:
    """The host's variables as its templates see them; connection settings and golive's own names
    differ by host by definition and are left out."""
    context = ws.template_context(host, PLACEHOLDER_VERSION, variant=variant)
    return {name: _value(ws, host, name, value) for name, value in context.items()
            if not name.startswith(("ansible_", "golive_"))}


def expectations(ws: Workspace) -> dict[str, core.Expectation]:
    return {v.name: core.Expectation(v.name, v.differs_by, v.reason, v.expires)
            for v in ws.app.variables if v.differs_by}


def _hashes(config: RenderedConfig) -> dict[str, str]:
    return {f.dest: f.sha256 for f in config.files}


# Stand-ins for a target host, each rendered apart (Workspace.render_variant).
AS_SOURCE, DECLARED_ONLY = "as-source", "declared-only"


def counterpart(ws: Workspace, target: Host, as_source: Host, version: str,
                declared: set[str], uses: dict[str, frozenset[str]]) -> core.Counterpart:
    mine = compared_variables(ws, target)
    theirs = compared_variables(ws, as_source, AS_SOURCE)
    # The source environment's values, with only the declared differences taken from the target:
    # what the target's config should be if nothing undeclared differs.
    merged = {k: v for k, v in as_source.vars.items() if k not in declared}
    merged.update({k: v for k, v in target.vars.items() if k in declared})
    declared_only = replace(target, vars=MappingProxyType(merged))
    try:
        files = _hashes(ws.render(target, version))
        files_as_source = _hashes(ws.render_variant(as_source, version, AS_SOURCE))
        files_declared_only = _hashes(ws.render_variant(declared_only, version, DECLARED_ONLY))
    except BadInput as error:
        return core.Counterpart(target.name, "", mine, theirs, uses=uses,
                                render_error="; ".join(str(p) for p in error.problems))
    return core.Counterpart(target.name, "", mine, theirs, files, files_as_source, files_declared_only, uses)


# -- the whole comparison ---------------------------------------------------------------------------

@dataclass
class DriftPlan:
    """Everything decided before a host is touched."""

    customer: str
    source: str
    target: str
    source_hosts: list[Host]
    target_hosts: list[Host]
    pairs: dict[str, str]
    as_source: dict[str, Host | Problem]

    @property
    def hosts(self) -> list[Host]:
        return self.source_hosts + self.target_hosts


def plan(ws: Workspace, customer: str, source: str, target: str) -> DriftPlan:
    if source == target:
        raise BadInput(f"--from and --to name the same environment {source!r}")
    source_hosts = list(ws.hosts(customer, source))
    target_hosts = list(ws.hosts(customer, target))
    everyone = list(ws.customer(customer).hosts)
    env_names = {e.name for e in ws.app.environments}
    memberships = {h.name: (h.environment, [g for g in h.groups if g not in env_names]) for h in everyone}
    roles = core.cross_environment_groups(memberships)
    pairs = core.pair_hosts([(h.name, memberships[h.name][1]) for h in target_hosts],
                            [(h.name, memberships[h.name][1]) for h in source_hosts], roles)
    problems: list[Problem] = []
    for host in source_hosts + target_hosts:  # template errors stop here, before any host is touched
        try:
            ws.render(host, PLACEHOLDER_VERSION)
        except BadInput as error:
            problems.extend(p for p in error.problems if p not in problems)
    if problems:
        raise BadInput(problems)
    return DriftPlan(customer, source, target, source_hosts, target_hosts, pairs,
                     ws.as_environment(customer, target_hosts, source))


def report(ws: Workspace, drift_plan: DriftPlan, prints: dict[str, Fingerprint],
           today: date | None = None) -> core.DriftReport:
    states: dict[str, core.HostState] = {}
    for host in drift_plan.hosts:
        fp = prints.get(host.name)
        data = fp.data if fp else None
        desired, why = desired_host(ws, host, data)
        states[host.name] = core.HostState(host.name, host.environment, data, fp.error if fp else "not collected",
                                           desired, why)
    declared = {name for name, e in expectations(ws).items() if not e.expired(today or date.today())}
    uses = ws.template_uses(drift_plan.customer)
    pairs = []
    for host in drift_plan.target_hosts:
        moved = drift_plan.as_source.get(host.name)
        desired = states[host.name].desired
        version = desired.version if desired else PLACEHOLDER_VERSION
        if isinstance(moved, Host):
            pair = counterpart(ws, host, moved, version, declared, uses)
        else:
            pair = core.Counterpart(host.name, "", compared_variables(ws, host), {},
                                    render_error=str(moved or "not in the inventory"))
        pairs.append(replace(pair, source=drift_plan.pairs[host.name]))
    return core.compare(states, pairs, expectations(ws), drift_plan.source, drift_plan.target,
                        today or date.today())


def with_database(ws: Workspace, drift_plan: DriftPlan, result: core.DriftReport, prints: dict[str, Fingerprint],
                  progress: Progress) -> core.DriftReport:
    """The report with the databases' drift added (flows/database.py): schema against what golive
    left, against what the live releases run on, and staging's against production's."""
    from golive.flows import database

    live: dict[str, list[str]] = {}
    for host in drift_plan.hosts:
        meta = (((prints.get(host.name).data or {}) if prints.get(host.name) else {}).get("release") or {}).get("meta")
        live.setdefault(host.environment, []).append(str((meta or {}).get("schema_version") or ""))
    found, unreachable = database.drift_findings(ws, drift_plan.customer, drift_plan.source, drift_plan.target, live,
                                                 progress)
    if not found and not unreachable:
        return result
    return replace(result, findings=tuple(result.findings) + tuple(found),
                   unreachable={**result.unreachable, **unreachable})


def drift(ws: Workspace, customer: str, source: str = "staging", target: str = "production", *,
          progress: Progress, today: date | None = None) -> Outcome:
    started = time.monotonic()
    drift_plan = plan(ws, customer, source, target)
    progress.start(f"drift {customer}: {source} -> {target}", [h.name for h in drift_plan.hosts], ("collect",))
    try:
        prints = collect(ws, drift_plan.hosts, progress)
    finally:
        progress.stop()
    result = with_database(ws, drift_plan, report(ws, drift_plan, prints, today), prints, progress)
    data = {"customer": customer, **result.as_dict(), "seconds": round(time.monotonic() - started, 3),
            "collect_seconds": {name: round(fp.seconds, 3) for name, fp in prints.items()}}
    lines = core.describe(result)
    pairs = sorted(result.pairs.items())
    if len(pairs) <= 6:
        lines.insert(1, "compared: " + ", ".join(f"{t} with {s}" for t, s in pairs))
    else:
        lines.insert(1, f"compared: {len(pairs)} {target} hosts with {len({s for _, s in pairs})} {source} "
                        f"hosts (pairs in --json)")
    return Outcome(data, "\n".join(lines), finding=result.drift, failed=bool(result.unreachable))

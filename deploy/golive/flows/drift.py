"""golive drift CUSTOMER [--from staging] [--to production]: what differs, and whether it should.

One round trip per host: golive.agent.collector fingerprints every host of both environments in
parallel. Everything else happens on the controller: what each host should run (its config rendered
now for the version it runs, and every entry its release directory should hold:
Workspace.release_tree), its variables as the source environment would set them
(Workspace.as_environment), and the comparison itself, which is pure (golive.core.drift).
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
from golive.core.redact import MASK, holds_secret_path, leaf_texts
from golive.core.release import RenderedConfig
from golive.flows.desired import host_release_id
from golive.flows.session import mask_for
from golive.workspace import Workspace

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
    """The host's own addresses are its SSH address and (added by the collector) the address the live
    release's health URL asks; no inventory variable is read."""
    return {"root": ws.app.root, "config_dir": ws.app.config_dir, "shared": list(ws.app.shared),
            "ignore": list(ws.app.drift_ignore), "config_files": [t.dest for t in ws.app.templates],
            "runtime_packages": list(ws.app.runtime_packages), "addresses": [host.connection.address],
            "status_timeout": ws.app.timeouts.status, "mask": mask_for(host)}


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
            answer = call_agent(link, collector_request(ws, host), timeout=ws.app.timeouts.begin, module="collector")
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
    files = tuple(core.DesiredFile(f.dest, f.sha256, f.mode, f.secret,
                                   os.path.join(ws.app.root, "current", "config", f.dest), len(f.content))
                  for f in config.files)
    return core.DesiredHost(version, host_release_id(ws, host, version, config), config.hash, files,
                            ws.release_tree(version, config), health_port(url) if url else None), ""


# -- what to do about a host finding ------------------------------------------------------------------

# What a deploy of the release a host should run puts back (golive.flows.steps: a deploy calls a
# host unchanged only when every entry of its live release, its config links and its service are
# what they should be, compared by content, mode and owner; anything else it repairs).
REPAIRED_BY_DEPLOY = frozenset({"release", "code_file", "config", "permission", "service", "port"})
HOST_ADVICE = {
    "release": "it makes the release golive deployed live again and verifies it; find out who switched "
               "`current` by hand",
    "code_file": "it restores every file of the release from the artifact (changed, removed, replaced or "
                 "added files are moved to .golive/repaired/ on the host first, as evidence); ask who changed "
                 "the code and why, and ship a wanted change as a new release through staging",
    "config": "it rewrites the config files as golive renders them and relinks them (an edited copy is "
              "kept under .golive/repaired/); put a wanted change into the golive configuration first",
    "permission": "it gives every file of the release back the mode and owner golive sets; find out who "
                  "changed them (a secret file readable by others may mean its password must be changed)",
    "service": "it restarts the service and verifies it; if it fails again, read the service's log",
    "port": "it restarts the service and verifies it answers; if it fails again, read the service's log",
}
TIMEZONE_ADVICE = ("/etc/localtime holds other zone data than the zone it names: as root, link it to the zone "
                   "(`ln -sf /usr/share/zoneinfo/ZONE /etc/localtime`) or correct /etc/timezone; golive does "
                   "not manage the host's time zone")


def repair_command(ws: Workspace, customer: str, host: Host, prints: dict[str, Fingerprint],
                   findings: list[core.Finding]) -> str | None:
    """The golive command that puts back what these host findings of `host` report, or None when
    none of them is golive's to repair. The version is the one the host should run: what the
    ledger made live when `current` was switched by hand, else the live release's. When the
    environment only accepts what its source environment runs and checked (promote_from), and the
    source has moved on, the command overrides that rule with a reason: production accepted this
    artifact when it went live; putting it back is not a promotion."""
    mine = [f for f in findings if f.scope == core.HOST and host.name in f.hosts and f.kind in REPAIRED_BY_DEPLOY]
    if not mine:
        return None
    fingerprint = prints[host.name].data if host.name in prints else None
    meta = ((fingerprint or {}).get("release") or {}).get("meta") or {}
    live = (((fingerprint or {}).get("ledger") or {}).get("live") or {})
    switched = any(f.kind == "release" and f.subject == "current" and f.expected_value == live.get("release")
                   for f in mine)
    source = live if switched else meta
    version = source.get("version") or meta.get("version") or "VERSION"
    command = f"golive deploy {customer} {host.environment} --release {version}"
    if not promotion_holds(ws, customer, host.environment, source.get("artifact_sha256"), prints):
        command += f' --override-promotion "repair of {version}, already live here"'
    return command


def promotion_holds(ws: Workspace, customer: str, environment: str, artifact_sha256: str | None,
                    prints: dict[str, Fingerprint]) -> bool:
    """Whether a deploy of this artifact to `environment` passes its promotion rule, as far as the
    fingerprints tell (golive.flows.deploy.promotion_problems asks the hosts again)."""
    spec = ws.app.environment(environment)
    if spec is None or not spec.promote_from:
        return True
    try:
        sources = ws.hosts(customer, spec.promote_from)
    except BadInput:
        return False
    for source in sources:
        data = prints[source.name].data if source.name in prints else None
        meta = ((data or {}).get("release") or {}).get("meta") or {}
        check = ((data or {}).get("ledger") or {}).get("check_for_current") or {}
        if data is None or meta.get("artifact_sha256") != artifact_sha256 or meta.get("state") != "good" or \
                check.get("result") != "passed":
            return False
    return True


def advice(ws: Workspace, customer: str, host: Host, prints: dict[str, Fingerprint],
           findings: list[core.Finding]) -> str:
    """What to do about a host's findings, in words, naming the command that repairs them."""
    mine = [f for f in findings if host.name in f.hosts]
    command = repair_command(ws, customer, host, prints, mine)
    parts = []
    kinds = sorted({f.kind for f in mine if f.scope == core.HOST and f.kind in REPAIRED_BY_DEPLOY})
    if command:
        parts.append(f"Run `{command}`: " + "; ".join(HOST_ADVICE[k] for k in kinds) + ".")
    if any(f.scope == core.HOST and f.kind == "platform" and f.subject == "timezone" for f in mine):
        parts.append(TIMEZONE_ADVICE[0].upper() + TIMEZONE_ADVICE[1:] + ".")
    return " ".join(parts)


# -- variables, in both environments ---------------------------------------------------------------

def _value(ws: Workspace, host: Host, name: str, value: Any) -> core.Value:
    """A variable for drift: compared by digest, shown only when nothing in it is secret. Secret is
    judged on the raw value (its variable, each of its texts), never on a serialised form of it."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    secret = name in ws.app.secret_var_names or holds_secret_path(name, host.secret_paths) or \
        ws.redactor.is_secret(text) or any(ws.redactor.is_secret(t) for t in leaf_texts(value))
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
    secret_files = frozenset(t.dest for t in ws.app.templates if t.secret)
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
                                render_error="; ".join(str(p) for p in error.problems), secret_files=secret_files)
    return core.Counterpart(target.name, "", mine, theirs, files, files_as_source, files_declared_only, uses,
                            secret_files=secret_files)


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
        fingerprint = prints.get(host.name)
        meta = (((fingerprint.data or {}) if fingerprint else {}).get("release") or {}).get("meta")
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
    repairs: dict[str, list[str]] = {}
    for host in drift_plan.hosts:
        command = repair_command(ws, customer, host, prints, list(result.findings))
        if command:
            repairs.setdefault(command, []).append(host.name)
    data = {"customer": customer, **result.as_dict(), "seconds": round(time.monotonic() - started, 3),
            "collect_seconds": {name: round(fp.seconds, 3) for name, fp in prints.items()},
            "repair": [{"command": c, "hosts": h} for c, h in repairs.items()]}
    lines = core.describe(result)
    for command, names in repairs.items():
        lines.append(f"to repair {', '.join(names)}: {command} (puts back what the host findings above list)")
    pairs = sorted(result.pairs.items())
    if len(pairs) <= 6:
        lines.insert(1, "compared: " + ", ".join(f"{t} with {s}" for t, s in pairs))
    else:
        lines.insert(1, f"compared: {len(pairs)} {target} hosts with {len({s for _, s in pairs})} {source} "
                        f"hosts (pairs in --json)")
    return Outcome(data, "\n".join(lines), finding=result.drift, failed=bool(result.unreachable))

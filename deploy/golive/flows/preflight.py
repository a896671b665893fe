"""golive preflight CUSTOMER [--release V]: can we go live now? Go or no-go, with a client report.

One fingerprint per host of the source environment (staging) and production, in parallel (the same
collector as drift), then the gate items:

    workspace       the workspace validates (YAML, schema, templates, expiry dates)
    per production host: reachable (with its known host key), disk, lock, rollback target, requirements
                         (when the release's artifact declares what it needs from a host), drift
    per staging host:    reachable, runs release V, passed its checks for it, lock, drift

Production running an older release than staging is what the go-live changes, so that difference
(and config the workspace will deploy then) is listed as expected, not as drift. The report is
written as report.md and a self-contained report.html (golive.preflight_report), and as JUnit XML
with --junit.

A first go-live (no production host has any release yet) asks other questions of production: is
each host reachable, prepared (golive can create or write the application root and the config
folder as the user it deploys as), with the free disk the customer requires, and not locked; and
does staging run this artifact, verified and checked (the promotion rule). Everything that only
says "nothing is deployed here" (no live release, no service, no port, no release directory to
compare) is one cause, reported once, not a finding per file.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from golive.adapters.locks import describe, liveness
from golive.adapters.progress import Progress
from golive.adapters.transport import Fleet
from golive.core import drift as core
from golive.core.errors import BadInput
from golive.core.gate import ConfigChange, Gate, HostGate, Item
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.plan import DesiredRelease, FileChangeKind, file_changes
from golive.core.requires import Requirements
from golive.core.rollback import RollbackFacts, choose
from golive.flows import drift as drift_flow
from golive.flows import preflight_report, steps
from golive.flows.desired import check_artifact_archive, host_release_id
from golive.flows.offline import validate
from golive.flows.session import HostSession, operator_name
from golive.workspace import Workspace

TARGET = "production"
DEFAULT_REPORT_DIR = ".golive-out/preflight"
FIRST_GO_LIVE = "first go-live: nothing deployed yet on production"
# What a host with no release at all cannot have: each such finding only repeats FIRST_GO_LIVE.
# (Variables, rendered config, the platform and packages do not depend on a deploy: still compared.)
NOTHING_DEPLOYED_KINDS = frozenset({"release", "code_file", "service", "port", "permission"})


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
            after_go_live = host_release_id(ws, host, version)
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


def _runs_release(data: dict[str, Any], version: str | None, customer: str, host: Host,
                  artifact_sha256: str | None = None) -> Item:
    meta = (data.get("release") or {}).get("meta") or {}
    running = meta.get("version")
    if version and running == version and meta.get("state") == "good":
        if artifact_sha256 and meta.get("artifact_sha256") != artifact_sha256:
            # the promotion rule: production accepts the artifact staging runs, byte for byte
            return Item(f"runs {version}", False, f"runs another artifact of {version} (sha256 "
                        f"{meta.get('artifact_sha256')}, the release store's is {artifact_sha256})",
                        f"Staging must run the artifact that goes live: deploy it with `golive deploy {customer} "
                        f"{host.environment} --release {version}`, then run the checks and preflight again.")
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
        # the ledger's own words for the run (how many checks passed) with when and for what
        summary = str(check.get("detail") or "passed")
        names = [str(n) for n in check.get("checks") or []]
        listed = f": {', '.join(names)}" if names else ""  # an entry of an older golive has no names
        return Item("checks passed", True, f"{summary} at {check.get('time')} for {current} "
                                           f"(by {check.get('operator') or 'unknown'}){listed}")
    detail = f"last check {check.get('result')} at {check.get('time')}" if check else \
        f"no check run recorded for {current}"
    return Item("checks passed", False, detail,
                f"The environment checks have not passed on {host.name} for the release it runs ({detail}). "
                f"Run `golive check {customer} {host.environment}`, fix what it reports, then run preflight again.")


def artifact_requirements(ws: Workspace, version: str | None) -> tuple[Requirements, Item | None]:
    """What the release's artifact requires of a host (its manifest, golive.core.requires), and the
    item that says its declaration is malformed (then every production host is NO-GO on it). No
    artifact in the store: nothing to check here (the promotion items say what staging runs)."""
    if not version:
        return Requirements(), None
    try:
        artifact = ws.artifact(version)
    except BadInput:
        return Requirements(), None
    try:
        return check_artifact_archive(ws.app, artifact, ws.cache_dir), None
    except BadInput as error:
        problems = "; ".join(str(p) for p in error.problems)
        return Requirements(), Item("requirements", False, problems,
                                    f"The artifact {artifact.name} cannot be deployed: {problems}. Its vendor "
                                    "builds it again (`golive package`, which refuses what deploy would); then run "
                                    "preflight again.")


def _requirements(ws: Workspace, host: Host, data: dict[str, Any], requirements: Requirements,
                  version: str) -> Item:
    """The host has what the release's artifact requires (the facts the collector read: the
    python3 golive runs there, glibc, the machine architecture), as deploy checks it."""
    platform = data.get("platform") or {}
    facts = {"python": platform.get("python"), "glibc": platform.get("glibc"), "arch": platform.get("machine")}
    artifact = ws.app.store.artifact_name(ws.app.name, version)
    unmet = requirements.unmet(facts)
    if not unmet:
        return Item("requirements", True, f"has what {artifact} requires: "
                                          + "; ".join(str(r) for r in requirements.items))
    detail = "; ".join(u.sentence(artifact) for u in unmet)
    return Item("requirements", False, detail,
                f"{host.name} cannot run {version}: {detail}. golive deploy refuses it before uploading anything. "
                "Upgrade the server (or deploy to servers that have it), or ask the vendor for a build these "
                "servers can run; then run preflight again.")


# The application root and the config folder as golive needs them before its first deploy: each is a
# folder the deploy user can write, or does not exist yet under a folder that user can write (the
# first deploy makes it). Read-only; one round trip over the connection drift's collector used.
PREPARED_PROBE = r"""u=$(id -un); for p in {paths}; do d=$p
while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
if [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ]; then w=yes; else w=no; fi
printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$d" "$w" "$(stat -c '%U:%G %a' "$d" 2>/dev/null)" "$u"; done"""


def _prepared(ws: Workspace, host: Host, fleet: Fleet) -> Item:
    connected = fleet.connected.get(host.name)
    if connected is None or connected.pyinfra_host is None:
        return Item("prepared", False, "not asked: not connected", "Run preflight again once the host is reachable.")
    script = PREPARED_PROBE.format(paths=" ".join(shlex.quote(p) for p in (ws.app.root, ws.app.config_dir)))
    command = ("sudo -n " if host.vars.get("ansible_become") else "") + "sh -c " + shlex.quote(script)
    try:
        code, stdout, stderr = connected.pyinfra_host.connector.exec_stream(command, b"", (),
                                                                            timeout=ws.app.timeouts.status)
    except Exception as error:  # the connection broke: said so, the other items still count
        return Item("prepared", False, f"not asked: {error or type(error).__name__}",
                    "Run preflight again once the host is reachable.")
    rows = [line.split("\t") for line in stdout.decode("utf-8", "replace").splitlines() if line.count("\t") == 4]
    if code != 0 or len(rows) != 2:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {code}"]
        return Item("prepared", False, f"could not be checked: {detail[0]}",
                    f"Check that {host.name} has a POSIX shell with `id`, `stat` and `dirname`, then run preflight "
                    "again.")
    problems, fine = [], []
    for path, existing, writable, owner, user in rows:
        what = path if existing == path else f"{path} (not there yet; its parent {existing})"
        if writable == "yes":
            fine.append(f"{what} writable by {user}")
        else:
            problems.append((path, existing, owner or "unknown owner", user))
    if not problems:
        return Item("prepared", True, "; ".join(fine))
    detail = "; ".join(f"{existing} ({owner}) is not writable by {user}" for _, existing, owner, user in problems)
    commands = "; ".join(f"`install -d -o {user} {shlex.quote(path)}`" for path, _, _, user in problems)
    return Item("prepared", False, detail,
                f"golive deploys to {host.name} as {problems[0][3]} and creates what it needs there, but cannot "
                f"write here. Your administrator creates the folder(s) for that user, as root: {commands}. "
                "Then run preflight again.")


def first_go_live(prints: dict[str, drift_flow.Fingerprint], targets: list[Host]) -> bool:
    """No production host golive reached has any release: live, kept, or recorded in its ledger."""
    reached = [prints[h.name].data for h in targets if prints[h.name].ok]
    return bool(reached) and all(not ((d or {}).get("release") or {}).get("id") and not (d or {}).get("releases")
                                 and not ((d or {}).get("ledger") or {}).get("live") for d in reached)


def _nothing_deployed(findings: list[core.Finding], target_names: set[str]) -> list[core.Finding]:
    """The findings that say no more than "nothing is deployed on production yet"."""
    return [f for f in findings if f.kind in NOTHING_DEPLOYED_KINDS and set(f.hosts) <= target_names]


def _live_files(ws: Workspace, hosts: list[Host], prints: dict[str, drift_flow.Fingerprint], session: HostSession,
                version: str | None, first: bool) -> dict[str, dict[str, Any] | None]:
    """Each reached production host's live config files with their texts (not a secret file's), read
    the way `golive plan` reads them (steps.read_state, no lock), in parallel; {} where nothing is
    deployed yet, None where the host did not answer."""
    found: dict[str, dict[str, Any] | None] = {}
    requests = {}
    for host in hosts:
        if not version or host.environment != TARGET or not prints[host.name].ok:
            continue
        if first:
            found[host.name] = {}
            continue
        try:
            config = ws.render(host, version)
            desired_id = host_release_id(ws, host, version, config)
        except BadInput:
            continue  # the workspace item says why
        desired = DesiredRelease(desired_id, version,
                                 ws.app.store.artifact_name(ws.app.name, version), "", config)
        requests[host.name] = (session.fleet.connected[host.name],
                               {"steps": [steps.read_state(ws.app, desired, with_text=True)]})
    for name, answer in session.call_all(requests, ws.app.timeouts.begin).items():
        found[name] = (answer.data("state").get("live_files") or {}) if answer.ok else None
    return found


def _config_changes(ws: Workspace, hosts: list[Host], live: dict[str, dict[str, Any] | None],
                    version: str | None) -> tuple[list[ConfigChange], list[str]]:
    """What the go-live changes in each production host's config files, from what the host has live
    to what the workspace renders for `version`, masked before the diff is made
    (golive.core.plan.file_changes, as `golive plan` shows them). Hosts with the same change share
    one entry. Also a note per host whose files could not be read."""
    merged: dict[tuple[str, FileChangeKind, bool, str], list[str]] = {}
    notes = []
    for host in hosts:
        if host.name not in live or not version:
            continue
        files = live[host.name]
        if files is None:
            notes.append(f"the config changes on {host.name} are not shown: its live config files could not be read")
            continue
        try:
            new = ws.render(host, version)
        except BadInput:
            continue  # the workspace item says why
        for change in file_changes(new, files, ws.redactor.text):
            key = (change.dest, change.change, change.secret, change.diff)
            merged.setdefault(key, []).append(host.name)
    return [ConfigChange(dest, kind, secret, diff, tuple(names))
            for (dest, kind, secret, diff), names in merged.items()], notes


def _rollback_plan(ws: Workspace, customer: str, gates: list[HostGate], version: str | None,
                   first: bool) -> list[str]:
    release = version or "the new release"
    automatic = (f"During the go-live each production host switches to {release} only after it is installed "
                 "and configured, then restarts the service and checks its health")
    if first:
        return [automatic + ". If a host fails that check, golive marks the release bad there and reports it: "
                "there is no earlier release to switch back to, and production served nothing before, so no user "
                "loses a working system.",
                f"To take {ws.app.display_name or ws.app.name} out of service again after the go-live, stop its "
                "service on the production hosts; a fixed release is then deployed through staging again "
                f"(`golive deploy {customer} staging --release NEW`, checks, preflight, then production)."]
    targets = sorted({i.detail.split(" ")[0] for h in gates for i in h.items
                      if i.name == "rollback target" and i.ok})
    back = ", ".join(targets) if targets else "the release production runs now"
    return [automatic + ". If a host fails that check, golive switches it back to the release it ran before "
            "by itself, restarts it and checks it again.",
            f"To go back after the go-live, an engineer runs `golive rollback {customer} {TARGET}`: every "
            f"production host returns to {back}, with the configuration it had, and is checked again; it takes "
            "seconds, because the earlier release stays on the hosts (nothing is downloaded).",
            "Data the application keeps in its shared folders (shared/) is not rolled back."]


def _agreed(values: list[Any], name: str) -> tuple[str, str]:
    """(value, note): the one value the production hosts agree on, else ("", why not)."""
    found = sorted({str(v) for v in values if v not in (None, "")})
    if len(found) > 1:
        return "", f"the production hosts set different values of `{name}` ({', '.join(found)})"
    return (found[0] if found else ""), ""


def _local_time(now: datetime, zone: str) -> tuple[str, str]:
    """(the time in `zone`, note): empty with a note when the zone is not known."""
    if not zone:
        return "", ""
    try:
        local = now.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return "", f"`timezone` {zone!r} is not a time zone name: times in UTC only"
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S ") + f"{zone} (UTC{offset[:3]}:{offset[3:]})", ""


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
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
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
    targets = [h for h in hosts if h.environment == TARGET]
    session = HostSession(hosts, progress, ws.app)
    try:
        progress.start(f"preflight {customer}: {source} -> {TARGET}", [h.name for h in hosts], ("collect",))
        try:
            prints = drift_flow.collect(ws, hosts, progress, session.fleet)
        finally:
            progress.stop()
        first = first_go_live(prints, targets)
        prepared = {h.name: _prepared(ws, h, session.fleet) for h in targets if first and prints[h.name].ok}
        staging_versions = {(((prints[h.name].data or {}).get("release") or {}).get("meta") or {}).get("version")
                            for h in hosts if h.environment == source and prints[h.name].ok}
        version = release or (staging_versions.pop() if len(staging_versions) == 1 else None)
        live = _live_files(ws, targets, prints, session, version, first)
    finally:
        session.close()
    config_changes, change_notes = _config_changes(ws, targets, live, version)
    requirements, malformed = artifact_requirements(ws, version)
    artifact_sha256 = ws.artifact_files(version)[0] if version else None
    report = drift_flow.with_database(ws, plan, drift_flow.report(ws, plan, prints, today), prints, progress) \
        if plan else None
    target_names = {h.name for h in targets}
    unexpected, pending = _pending_go_live(report, version, TARGET, target_names) if report else ([], [])
    if first:
        # one cause, once: what only says "nothing is deployed yet" is not listed finding by finding
        consequences = _nothing_deployed(unexpected + pending, target_names)
        unexpected = [f for f in unexpected if f not in consequences]
        pending = [f for f in pending if f not in consequences] + [core.Finding(
            core.ENVIRONMENT, "release", "first go-live", tuple(sorted(target_names)), core.NOT_SET,
            version or core.NOT_SET, "info", False, FIRST_GO_LIVE)]
    gates = []
    for host in hosts:
        fp = prints[host.name]
        gate = HostGate(host.name, host.environment, host.connection.address, [_reachable(fp)])
        data = fp.data or {}
        if fp.ok and host.environment == TARGET and first:
            gate.items += [prepared[host.name], _disk(host, data, ws), _lock(host, data, customer)]
        elif fp.ok and host.environment == TARGET:
            gate.items += [_disk(host, data, ws), _lock(host, data, customer),
                           _rollback_target(ws, host, data, version)]
        elif fp.ok:
            gate.items += [_runs_release(data, version, customer, host, artifact_sha256),
                           _check_passed(data, customer, host), _lock(host, data, customer)]
        if fp.ok and host.environment == TARGET and version and (requirements or malformed):
            gate.items.append(malformed or _requirements(ws, host, data, requirements, version))
        if fp.ok:
            gate.items.append(_drift_item(ws, host, prints, unexpected, customer) if report else
                              Item("drift", False, "not compared: the workspace does not render",
                                   workspace.action))
        gates.append(gate)
    from golive.flows import database

    db_gate, db_rollback = database.preflight_items(ws, customer, TARGET, version, progress)
    if db_gate is not None:
        db_gate.items.append(_database_drift_item(db_gate.host, unexpected))
        gates.append(db_gate)
    if not artifact_sha256 and version:
        # not in the store here: the artifact staging runs, which production must accept byte for byte
        shas = {(((prints[h.name].data or {}).get("release") or {}).get("meta") or {}).get("artifact_sha256")
                for h in hosts if h.environment == source and prints[h.name].ok}
        artifact_sha256 = next(iter(shas)) if len(shas) == 1 else None
    company, company_note = _agreed([h.vars.get("company_name") for h in targets], "company_name")
    zone, zone_note = _agreed([h.vars.get("timezone") for h in targets], "timezone")
    local, local_note = _local_time(now, zone)
    notes = [n for n in (company_note, zone_note + (": times in UTC only" if zone_note else ""), local_note) if n]
    notes += change_notes
    return Gate(customer, source, TARGET, version, workspace, gates, unexpected,
                list(report.expected) if report else [], pending, stamp, operator_name(),
                round(time.monotonic() - started, 3),
                company=company or customer, product=ws.app.display_name or ws.app.name,
                timezone=zone if local else "", started_local=local,
                artifact=ws.app.store.artifact_name(ws.app.name, version) if version else "",
                artifact_sha256=artifact_sha256 or "",
                config_changes=config_changes,
                # the code's way back, then what going back costs the database (flows/database.py)
                rollback_plan=_rollback_plan(ws, customer, gates, version, first) + list(db_rollback),
                first_go_live=first, notes=notes)


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

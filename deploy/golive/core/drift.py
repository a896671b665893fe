"""Drift: each host against its desired state, and one environment against another.

Pure: fingerprints (what golive.agent.collector saw on each host) and the workspace's view (what
each host should run, its variables, and the same host's variables as the source environment would
set them) go in; a DriftReport comes out. tests/unit/test_drift_core.py runs fixtures through it.

Every difference is reported once, where its cause is:
- on a host ("host" scope): any entry of the live release directory that is not what the release
  should hold (release_tree: the artifact's files as golive unpacks them, the rendered config, the
  shared links, the directory itself), compared by content, full mode, owner and group - a
  hand-edited or stale config file, a patched, added or removed code file, a changed mode or
  owner; a config link that does not lead into the live release, /etc/localtime holding another
  zone than its name, a stopped service, a port not listening, a release the ledger does not know;
- between environments ("environment" scope): the release, a variable (with the file:line that sets
  it and the config files it changes), the platform (the time zone by its zone data), a runtime
  package, the service definition and its systemd unit files, a port, a permission. A difference
  that follows from a host finding is not repeated here.
A variable difference is *expected* only when golive.yml declares it (`differs_by`) and its `expires`
date has not passed; everything else is drift. Secret values are compared by digest and shown masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any, Literal, get_args

from golive.core.redact import MASK

Kind = Literal["release", "code_file", "config", "variable", "platform", "package", "service", "port", "permission",
               "database"]
KINDS: tuple[Kind, ...] = get_args(Kind)
Severity = Literal["high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
Scope = Literal["host", "environment"]
HOST: Scope = "host"
ENVIRONMENT: Scope = "environment"
NOT_SET = "(not set)"
# Platform facts and how much a difference matters for the application.
PLATFORM_FIELDS: tuple[tuple[str, Severity], ...] = (
    ("machine", "high"), ("os", "medium"), ("os_version", "medium"), ("python", "medium"),
    ("timezone", "medium"), ("locale", "medium"), ("kernel", "low"))
GROUP_OR_OTHER_ACCESS = 0o077
GROUP_OR_OTHER_WRITE = 0o022
SETID_BITS = 0o6000


@dataclass(frozen=True)
class Expectation:
    """A declared expected difference (golive.yml `differs_by`), like an audit waiver."""

    variable: str
    differs_by: Literal["environment", "host"]
    reason: str
    expires: date | None = None

    def expired(self, today: date) -> bool:
        return self.expires is not None and self.expires < today


@dataclass(frozen=True)
class Value:
    """A variable's value as drift may handle it: compared by digest, shown only when not secret."""

    digest: str
    shown: str
    origin: str = ""  # file:line that sets it
    secret: bool = False


@dataclass(frozen=True)
class DesiredFile:
    dest: str
    sha256: str
    mode: int
    secret: bool = False
    link: str = ""  # what config_dir/<dest> must point to
    size: int | None = None


# A release directory entry, what it is and what it should be: {"type": "file"|"dir"|"link"|"other",
# "mode": "0644" (not for links), "sha256" and "size" (files), "link" (links); what a host has also
# carries "owner" and "group"}. Paths are relative to the release directory, "." is the directory.
Entry = Mapping[str, Any]
DIRECTORY_MODE = "0755"  # every directory the host agent makes (os.mkdir 0o755 under umask 022)
CONFIG_DIR = "config"
SHARED_LINK = "../../shared/{}"


def unpacked_mode(member_mode: int) -> str:
    """The mode the host agent's unpack gives a file of the artifact (agent/archive.py extract_checked):
    no group/other write, no setuid/setgid/sticky, always readable and writable by its owner."""
    return f"{member_mode & 0o755 | 0o600:04o}"


@dataclass(frozen=True)
class ReleaseTree:
    """What a release directory should hold, entry by entry (release_tree)."""

    entries: Mapping[str, Entry]
    artifact_sha256: str | None = None  # of the artifact in the release store, when it is there
    code_known: bool = False  # the artifact's own entries are in `entries` (else only config/ and shared links)


def release_tree(code: Mapping[str, Entry] | None, config: Mapping[str, Entry], shared: Iterable[str],
                 artifact_sha256: str | None = None) -> ReleaseTree:
    """The release directory as either engine leaves it: the artifact's entries (`code`, as unpacked;
    None when the artifact is not known here) without what golive puts there itself, config/ with
    the rendered files (dest -> {sha256, size, mode}), a link into shared/ per shared directory."""
    shared = tuple(shared)
    reserved = {CONFIG_DIR, *shared}
    entries: dict[str, Entry] = {".": {"type": "dir", "mode": DIRECTORY_MODE}}
    for path, entry in (code or {}).items():
        if path != "." and path.split("/")[0] not in reserved:
            entries[path] = dict(entry)
    entries[CONFIG_DIR] = {"type": "dir", "mode": DIRECTORY_MODE}
    for dest, entry in config.items():
        entries[f"{CONFIG_DIR}/{dest}"] = {"type": "file", **entry}
    for name in shared:
        entries[name] = {"type": "link", "link": SHARED_LINK.format(name)}
    return ReleaseTree(entries, artifact_sha256, code is not None)


Aspect = Literal["missing", "added", "type", "content", "link", "mode", "owner", "group"]


def release_differences(desired: Mapping[str, Entry], actual: Mapping[str, Entry],
                        deployer: Mapping[str, Any]) -> list[tuple[str, Aspect]]:
    """Where a release directory differs from what it should be, parents first; everything in it
    belongs to `deployer` ({owner, group}), who unpacked it. The host agent decides with the same
    comparison (golive.agent.shared.release_differences; tests/unit/test_drift_core.py holds them
    to the same verdicts)."""
    found: list[tuple[str, Aspect]] = []
    for path in sorted(set(desired) | set(actual), key=lambda p: (p != ".", p.split("/"))):
        want, have = desired.get(path), actual.get(path)
        if have is None:
            found.append((path, "missing"))
            continue
        if want is None:
            found.append((path, "added"))
            continue
        if want["type"] != have["type"]:
            found.append((path, "type"))
            continue
        if want["type"] == "file" and (("size" in want and want["size"] != have.get("size"))
                                       or ("sha256" in have and want.get("sha256") != have["sha256"])):
            found.append((path, "content"))
        elif want["type"] == "link" and want.get("link") != have.get("link"):
            found.append((path, "link"))
        if want["type"] != "link" and want.get("mode") != have.get("mode"):
            found.append((path, "mode"))
        if have.get("owner") != deployer.get("owner"):
            found.append((path, "owner"))
        if have.get("group") != deployer.get("group"):
            found.append((path, "group"))
    return found


@dataclass(frozen=True)
class DesiredHost:
    """What the workspace says one host should run, for the version it runs."""

    version: str
    release: str
    config_hash: str
    files: tuple[DesiredFile, ...]
    tree: ReleaseTree | None = None
    port: int | None = None

    @property
    def artifact_sha256(self) -> str | None:
        return self.tree.artifact_sha256 if self.tree else None


@dataclass(frozen=True)
class HostState:
    name: str
    environment: str
    fingerprint: Mapping[str, Any] | None = None
    error: str | None = None  # unreachable, or the collector failed
    desired: DesiredHost | None = None
    desired_error: str = ""  # why the workspace cannot say what the host should run


@dataclass(frozen=True)
class Counterpart:
    """A target host, the source host it is compared with, and its variables in both environments."""

    target: str
    source: str
    variables: Mapping[str, Value]  # the target host's variables
    as_source: Mapping[str, Value]  # the same host's variables as the source environment sets them
    files: Mapping[str, str] = field(default_factory=dict)  # dest -> sha256 of its config, rendered now
    files_as_source: Mapping[str, str] = field(default_factory=dict)  # rendered with as_source
    files_declared_only: Mapping[str, str] = field(default_factory=dict)  # as_source + declared differences
    uses: Mapping[str, frozenset[str]] = field(default_factory=dict)  # dest -> variables its template reads
    render_error: str = ""
    secret_files: frozenset[str] = frozenset()  # dests of secret files: compared by digest, never shown


@dataclass(frozen=True)
class Finding:
    scope: Scope
    kind: Kind
    subject: str  # a file, a variable, a package, a platform fact
    hosts: tuple[str, ...]
    expected_value: str | None  # host scope: what the workspace wants; environment scope: the source side
    actual_value: str | None  # host scope: what the host has; environment scope: the target side
    severity: Severity
    expected: bool
    reason: str
    counterparts: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # config files a variable difference changes
    where: str = ""  # file:line that sets the target's value

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DriftReport:
    source: str
    target: str
    findings: tuple[Finding, ...]  # drift: every one of them is a reason to act
    expected: tuple[Finding, ...]  # declared differences, with their reasons
    unreachable: Mapping[str, str] = field(default_factory=dict)
    pairs: Mapping[str, str] = field(default_factory=dict)  # target host -> source host
    ignored: Mapping[str, int] = field(default_factory=dict)  # host -> release entries golive.yml drift.ignore names

    @property
    def drift(self) -> bool:
        return bool(self.findings)

    def kinds(self) -> list[str]:
        return sorted({f.kind for f in self.findings})

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "drift": self.drift,
                "findings": [f.as_dict() for f in self.findings], "expected": [f.as_dict() for f in self.expected],
                "unreachable": dict(self.unreachable), "pairs": dict(self.pairs), "ignored": dict(self.ignored)}


# -- pairing ------------------------------------------------------------------------------------

def cross_environment_groups(memberships: Mapping[str, tuple[str, Iterable[str]]]) -> frozenset[str]:
    """Groups with hosts in more than one environment: roles (a gateway), not places (a plant)."""
    environments: dict[str, set[str]] = {}
    for environment, groups in memberships.values():
        for group in groups:
            environments.setdefault(group, set()).add(environment)
    return frozenset(g for g, envs in environments.items() if len(envs) > 1)


def pair_hosts(targets: Sequence[tuple[str, Iterable[str]]], sources: Sequence[tuple[str, Iterable[str]]],
               roles: frozenset[str]) -> dict[str, str]:
    """Each target host's source counterpart: the same role groups if possible, spread evenly."""
    if not sources:
        return {}
    used: dict[str, int] = {name: 0 for name, _ in sources}
    order = {name: index for index, (name, _) in enumerate(sources)}
    pairs = {}
    for name, groups in targets:
        role = set(groups) & roles
        best = max(sources, key=lambda s: (-len(role ^ (set(s[1]) & roles)), len(role & set(s[1])),
                                           -used[s[0]], -order[s[0]]))
        pairs[name] = best[0]
        used[best[0]] += 1
    return pairs


# -- host against its desired state --------------------------------------------------------------

def shown_value(value: Any) -> str:
    """A value as a finding shows it: absent (missing, None or empty) is NOT_SET, never `None`."""
    return NOT_SET if value is None or value == "" else str(value)


def _finding(kind: Kind, subject: str, host: str, expected: Any, actual: Any, severity: Severity, reason: str,
             scope: Scope = HOST, **extra: Any) -> Finding:
    return Finding(scope, kind, subject, (host,), shown_value(expected), shown_value(actual), severity, False,
                   reason, **extra)


def is_difference(f: Finding) -> bool:
    """A value absent on both sides is not a difference, whatever form the absence took on each side
    (a missing key, None, an empty string). Equal shown values are otherwise kept: a secret differs
    while both sides show the mask, and a `differs_by: host` expectation shows the same words twice."""
    return not (f.expected_value == NOT_SET and f.actual_value == NOT_SET)


def host_findings(state: HostState) -> list[Finding]:
    fp = state.fingerprint
    if fp is None:
        return []
    name = state.name
    release = fp.get("release") or {}
    meta = release.get("meta") or {}
    found: list[Finding] = []
    if not release.get("id"):
        return [_finding("release", "current", name, "a live release", NOT_SET, "high",
                         "no release is live on the host")]
    if not release.get("exists"):
        return [_finding("release", "current", name, "a release directory", release.get("link_target"), "high",
                         "`current` points to a release directory that does not exist")]
    if release.get("link_target") not in (None, f"releases/{release['id']}"):
        found.append(_finding("release", "current", name, f"releases/{release['id']}", release.get("link_target"),
                              "high", "`current` does not point into the releases directory: the host runs a "
                                      "copy golive did not unpack"))
    live = ((fp.get("ledger") or {}).get("live") or {}).get("release")
    if live and live != release["id"]:
        found.append(_finding("release", "current", name, live, release["id"], "high",
                              "the ledger says another release is live: `current` was switched outside golive"))
    if meta.get("state") and meta.get("state") != "good":
        found.append(_finding("release", "state", name, "good", meta.get("state"), "medium",
                              "the live release never passed its health check"))
    desired = state.desired
    if desired is not None:
        found += _tree_findings(name, fp, meta, desired)
        found += _config_link_findings(name, fp, desired)
    found += _platform_host_findings(name, fp)
    found += _service_findings(name, fp, meta, desired)
    return [f for f in found if is_difference(f)]


def _shown(digest: str | None, secret: bool) -> str | None:
    return MASK if secret and digest else (digest[:16] if digest else None)


def compared_tree(fp: Mapping[str, Any], meta: Mapping[str, Any],
                  desired: DesiredHost) -> tuple[Mapping[str, Entry], Mapping[str, Entry], bool]:
    """(what the release directory should hold, what the host has, whether code files are in it)."""
    if desired.tree is None:
        return {}, {}, False
    return comparable(desired.tree, (fp.get("tree") or {}).get("entries") or {}, meta.get("artifact_sha256"))


def comparable(tree: ReleaseTree, actual: Mapping[str, Entry],
               running: str | None) -> tuple[Mapping[str, Entry], Mapping[str, Entry], bool]:
    """The part of a release directory that can be compared with `tree` when the host runs the
    artifact `running`: all of it when that is the artifact `tree` was read from; otherwise (not in
    the store, or the store's differs) only what golive writes itself, config/ and the shared
    links, and the environments compare the rest."""
    if tree.code_known and running == tree.artifact_sha256:
        return tree.entries, actual, True
    top = {p.split("/")[0] for p in tree.entries if p != "." and not _is_code(p, tree.entries)}
    wanted = {p: e for p, e in tree.entries.items() if p == "." or p.split("/")[0] in top}
    return wanted, {p: e for p, e in actual.items() if p == "." or p.split("/")[0] in top}, False


def _is_code(path: str, entries: Mapping[str, Entry]) -> bool:
    top = path.split("/")[0]
    return top != CONFIG_DIR and entries.get(top, {}).get("link") != SHARED_LINK.format(top)


def _tree_findings(name: str, fp: Mapping[str, Any], meta: Mapping[str, Any], desired: DesiredHost) -> list[Finding]:
    tree = fp.get("tree")
    if not tree or tree.get("entries") is None:
        return []  # the collector could not read the release directory: its error is reported
    wanted, actual, _ = compared_tree(fp, meta, desired)
    deployer = tree.get("deployer") or {}
    deployed = {f.get("dest"): f.get("sha256") for f in meta.get("config_files", [])}
    secrets = {f.dest for f in desired.files if f.secret}
    found: list[tuple[str, Finding]] = []
    whole: dict[str, int] = {}  # an added or replaced entry is one finding, with what is below it
    for path, aspect in release_differences(wanted, actual, deployer):
        above = next((w for w in whole if path.startswith(w + "/")), None)
        if above is not None:
            whole[above] += 1
            continue
        if aspect in ("added", "type"):
            whole[path] = 0
        found.append((path, _tree_finding(name, path, aspect, wanted.get(path), actual.get(path), deployer,
                                          deployed, secrets)))
    return [replace(f, reason=f"{f.reason} ({whole[p]} entries in it)") if whole.get(p) else f for p, f in found]


_KIND_NAMES = {"file": "file", "dir": "directory", "link": "symbolic link", "other": "special file"}


def _describe_entry(entry: Entry | None) -> str:
    if entry is None:
        return NOT_SET
    if entry["type"] == "link":
        return f"-> {entry.get('link')}"
    if entry["type"] == "file":
        return str(entry.get("sha256") or f"{entry.get('size')} bytes")[:16]
    return str(_KIND_NAMES.get(entry["type"], entry["type"]))


def _tree_finding(name: str, path: str, aspect: Aspect, want: Entry | None, have: Entry | None,
                  deployer: Mapping[str, Any], deployed: Mapping[str, str | None], secrets: set[str]) -> Finding:
    dest = path[len(CONFIG_DIR) + 1:] if path.startswith(CONFIG_DIR + "/") else None
    secret = dest in secrets
    shared = bool(want and want.get("link") and want["link"] == SHARED_LINK.format(path))
    subject = dest or {".": "release directory", CONFIG_DIR: "config/"}.get(path, path)
    kind: Kind = "config" if dest is not None else "code_file"
    what = _KIND_NAMES.get((want or have or {}).get("type", "file"), "file")
    if aspect == "missing":
        assert want is not None  # missing: on the host, not in the release
        reason = "the rendered file is missing from the live release" if dest is not None else \
            f"a {what} of the release is missing on the host"
        return _finding(kind, subject, name, _shown(want.get("sha256"), secret) if dest else "present", NOT_SET,
                        "high", reason)
    if aspect == "added":
        reason = "a config file the workspace does not render" if dest is not None else \
            f"a {what} that is not part of the release artifact"
        return _finding(kind, subject, name, NOT_SET, "present", "medium", reason)
    assert want is not None and have is not None  # every other aspect compares an entry that is in both
    if aspect == "type":
        reason = f"a {_KIND_NAMES.get(have['type'])} where the release has a {_KIND_NAMES.get(want['type'])}"
        if shared:
            reason += ": what the application writes there is not kept in shared/ across releases"
        return _finding(kind, subject, name, _describe_entry(want) if not secret else MASK,
                        _describe_entry(have) if not secret or have["type"] == "link" else MASK, "high", reason)
    if aspect == "content":
        if dest is None:
            return _finding(kind, subject, name, _describe_entry(want), _describe_entry(have), "high",
                            "changed on the host: it differs from the release artifact")
        if have.get("sha256") != deployed.get(dest):
            return _finding(kind, subject, name, _shown(want.get("sha256"), secret),
                            _shown(have.get("sha256"), secret), "high",
                            "edited on the host after the deploy (it differs from what golive wrote)")
        return _finding(kind, subject, name, _shown(want.get("sha256"), secret), _shown(have.get("sha256"), secret),
                        "medium", "the workspace renders it differently now: not deployed yet")
    if aspect == "link":
        return _finding(kind, subject, name, _describe_entry(want), _describe_entry(have), "high",
                        "the shared directory link points elsewhere" if shared else "the link points elsewhere")
    if aspect == "mode":
        wanted_mode, mode = int(want["mode"], 8), int(have["mode"], 8)
        severity: Severity = "medium"
        reason = "mode changed on the host"
        if secret and mode & GROUP_OR_OTHER_ACCESS:
            severity, reason = "high", "a secret file readable beyond its owner"
        elif mode & SETID_BITS & ~wanted_mode:
            severity, reason = "high", "a setuid/setgid bit was set: it runs with its owner's rights"
        elif mode & GROUP_OR_OTHER_WRITE & ~wanted_mode:
            severity = "high"
            reason = "writable by group or others: they can " + \
                ("add or replace files in it" if have["type"] == "dir" else "change what the application runs")
        return _finding("permission", f"{subject} mode", name, want["mode"], have["mode"], severity, reason)
    part = aspect  # owner | group
    return _finding("permission", f"{subject} {part}", name, deployer.get(part), have.get(part),
                    "high" if secret else "medium", f"the {part} is not the one golive deploys as")


def _config_link_findings(name: str, fp: Mapping[str, Any], desired: DesiredHost) -> list[Finding]:
    links = (fp.get("config") or {}).get("links") or {}
    found: list[Finding] = []
    for want in desired.files:
        link = links.get(want.dest)
        if not want.link or link is None:
            continue
        subject = f"{want.dest} link"
        if link.get("type") == "file":
            edited = link.get("sha256") != want.sha256
            found.append(_finding("config", subject, name, want.link,
                                  f"an edited copy ({_shown(link.get('sha256'), want.secret)})" if edited
                                  else "a regular file", "high",
                                  "the published config file was replaced by a copy"
                                  + (" with other content: the application reads what golive did not write"
                                     if edited else "") + "; switching releases no longer switches it"))
        elif link.get("type") == "missing":
            found.append(_finding("config", subject, name, want.link, NOT_SET, "high",
                                  "the published config file is missing"))
        elif link.get("target") != want.link:
            found.append(_finding("config", subject, name, want.link, link.get("target"), "high",
                                  "the published config file points elsewhere"))
    return found


def _platform_host_findings(name: str, fp: Mapping[str, Any]) -> list[Finding]:
    platform = fp.get("platform") or {}
    data, named = platform.get("timezone_data"), platform.get("timezone_named_data")
    if data and named and data != named:
        return [_finding("platform", "timezone", name, f"{platform.get('timezone')} (zoneinfo {named[:12]})",
                         f"other zone data (sha256 {data[:12]})", "medium",
                         "/etc/localtime does not hold the zone its name says: the host's local time is not "
                         f"{platform.get('timezone')}'s")]
    return []


def _code_value(entry: Mapping[str, Any]) -> str:
    return _describe_entry(entry)


def _service_findings(name: str, fp: Mapping[str, Any], meta: Mapping[str, Any],
                      desired: DesiredHost | None) -> list[Finding]:
    service = fp.get("service") or {}
    if not service.get("defined"):
        return []
    if not service.get("running"):
        return [_finding("service", "state", name, "running", "stopped", "high",
                         "the service is not running" + (f" (status exit {service.get('exit_code')})"
                                                         if service.get("exit_code") not in (None, 0) else ""))]
    found: list[Finding] = []
    health = service.get("health")
    release = (fp.get("release") or {}).get("id")
    if health is not None:
        # The collector judges the answer by the rule verify applies (golive.agent.shared.health_problem).
        # What the answer reports beyond it (a release, a config hash) names the cause more precisely,
        # when the product reports it.
        report = health.get("report") or {}
        problem = health.get("problem", health.get("error"))  # fingerprints before `problem` had `error`
        if report.get("release") and report.get("release") != release:
            found.append(_finding("service", "serving", name, release, report.get("release"), "high",
                                  "the service still serves another release: it was not restarted"))
        elif meta.get("config_hash") and report.get("config_hash") \
                and report.get("config_hash") != meta.get("config_hash"):
            found.append(_finding("service", "config", name, str(meta.get("config_hash"))[:16],
                                  str(report.get("config_hash"))[:16], "high",
                                  "the service runs with other config than the live release's"))
        elif problem:
            found.append(_finding("service", "health", name, "ok", problem, "high",
                                  "the service runs but its health check fails"))
    port = desired.port if desired else None
    ports = {p.get("port") for p in fp.get("ports") or []}
    if port and port not in ports:
        found.append(_finding("port", str(port), name, "listening", "not listening", "high",
                              "the service runs but its port does not listen on the host's address"))
    return found


# -- environment against environment --------------------------------------------------------------

def _env(kind: Kind, subject: str, pair: Counterpart, source: Any, target: Any, severity: Severity, reason: str,
         expected: bool = False, **extra: Any) -> Finding:
    return Finding(ENVIRONMENT, kind, subject, (pair.target,), shown_value(source), shown_value(target), severity,
                   expected, reason, (pair.source,), **extra)


def environment_findings(pair: Counterpart, target: HostState, source: HostState,
                         expectations: Mapping[str, Expectation], today: date,
                         explained: set[tuple[str, Kind, str]]) -> list[Finding]:
    """Differences between a target host and its source counterpart; `explained` holds
    (host, kind, subject) of host findings, which are not repeated."""
    found = _variable_findings(pair, expectations, today)
    tfp, sfp = target.fingerprint, source.fingerprint
    if tfp is None or sfp is None:
        return found
    found += _release_findings(pair, tfp, sfp, target, source)
    found += _platform_findings(pair, tfp, sfp, explained)
    found += _package_findings(pair, tfp, sfp)
    found += _service_env_findings(pair, tfp, sfp, explained)
    found += _port_findings(pair, tfp, sfp, target, source, explained)
    found += _permission_env_findings(pair, tfp, sfp, explained)
    return [f for f in found if is_difference(f)]


def _variable_findings(pair: Counterpart, expectations: Mapping[str, Expectation], today: date) -> list[Finding]:
    found: list[Finding] = []
    undeclared_files: dict[str, list[str]] = {}
    rendered = not pair.render_error  # without renders, variables are still compared, files are not
    changed_by_env = {d for d in pair.files if rendered and pair.files_as_source.get(d) != pair.files.get(d)}
    not_explained = {d for d in pair.files if rendered and pair.files_declared_only.get(d) != pair.files.get(d)}
    for name in sorted(set(pair.variables) | set(pair.as_source)):
        mine, theirs = pair.variables.get(name), pair.as_source.get(name)
        if mine is not None and theirs is not None and mine.digest == theirs.digest:
            continue
        secret = bool((mine and mine.secret) or (theirs and theirs.secret))
        source_value = theirs.shown if theirs else NOT_SET
        target_value = mine.shown if mine else NOT_SET
        where = (mine.origin if mine else "") or (theirs.origin if theirs else "")
        uses = sorted(d for d, names in pair.uses.items() if name in names)
        expectation = expectations.get(name)
        if expectation is not None and not expectation.expired(today):
            files = tuple(d for d in uses if d in changed_by_env)
            if expectation.differs_by == "host":
                source_value = target_value = "each host its own"
            found.append(_env("variable", name, pair, source_value, target_value, "info", expectation.reason,
                              expected=True, files=files))
            continue
        if expectation is not None:
            reason = f"its expected difference expired on {expectation.expires}: {expectation.reason}"
        else:
            reason = "not declared as an expected difference (differs_by) in golive.yml"
        files = tuple(d for d in uses if d in not_explained)
        for dest in files:
            undeclared_files.setdefault(dest, []).append(name)
        found.append(_env("variable", name, pair, source_value, target_value, "high" if secret else "medium",
                          reason, files=files, where=where))
    if pair.render_error:
        return found
    def shown(digest: str | None, dest: str) -> str:
        if digest is None:
            return NOT_SET
        return MASK if dest in pair.secret_files else digest[:16]

    for dest in sorted(not_explained - set(undeclared_files)):
        found.append(_env("config", dest, pair, shown(pair.files_declared_only.get(dest), dest),
                          shown(pair.files.get(dest), dest), "medium",
                          "differs from what the source environment's values give, and no variable explains it"))
    return found


def _release_findings(pair: Counterpart, tfp: Mapping[str, Any], sfp: Mapping[str, Any], target: HostState,
                      source: HostState) -> list[Finding]:
    tmeta = (tfp.get("release") or {}).get("meta") or {}
    smeta = (sfp.get("release") or {}).get("meta") or {}

    def shown(meta: Mapping[str, Any]) -> str:
        if not meta:
            return NOT_SET
        return f"{meta.get('version')} (sha256 {str(meta.get('artifact_sha256'))[:12]})"

    if tmeta.get("artifact_sha256") != smeta.get("artifact_sha256") or tmeta.get("version") != smeta.get("version"):
        return [_env("release", "version", pair, shown(smeta), shown(tmeta), "high",
                     "the environments run different releases")]
    compared = [compared_tree(fp, (fp.get("release") or {}).get("meta") or {}, state.desired)[2]
                if state.desired is not None else False for fp, state in ((tfp, target), (sfp, source))]
    if all(compared):
        return []  # each host was compared with the artifact itself
    found = []
    tcode, scode = _code_entries(tfp), _code_entries(sfp)
    for path in sorted(set(tcode) | set(scode)):
        mine, theirs = tcode.get(path), scode.get(path)
        if mine != theirs:
            found.append(_env("code_file", path, pair, _code_value(theirs) if theirs else NOT_SET,
                              _code_value(mine) if mine else NOT_SET, "high",
                              "the same release differs between the environments"))
    return found


def _code_entries(fp: Mapping[str, Any]) -> dict[str, Entry]:
    """The host's release entries that come from the artifact, by what they hold (not who owns them:
    each host's owners are compared with its own deployer)."""
    entries = (fp.get("tree") or {}).get("entries") or {}
    return {p: {k: v for k, v in e.items() if k not in ("owner", "group")} for p, e in entries.items()
            if p != "." and _is_code(p, entries)}


def _platform_findings(pair: Counterpart, tfp: Mapping[str, Any], sfp: Mapping[str, Any],
                       explained: AbstractSet[tuple[str, str, str]]) -> list[Finding]:
    tp, sp = tfp.get("platform") or {}, sfp.get("platform") or {}
    found = []
    for fact, severity in PLATFORM_FIELDS:
        if fact == "timezone":
            if any((h, "platform", "timezone") in explained for h in (pair.target, pair.source)):
                continue
            same = tp.get(fact) == sp.get(fact) and tp.get("timezone_data") == sp.get("timezone_data")
            if not same:
                found.append(_env("platform", fact, pair, _zone(sp), _zone(tp), severity,
                                  "the time zone differs between the environments"
                                  + (" (same name, other zone data in /etc/localtime)"
                                     if tp.get(fact) == sp.get(fact) else "")))
        elif tp.get(fact) != sp.get(fact):
            found.append(_env("platform", fact, pair, sp.get(fact), tp.get(fact), severity,
                              f"the {fact.replace('_', ' ')} differs between the environments"))
    return found


def _zone(platform: Mapping[str, Any]) -> str:
    data = platform.get("timezone_data")
    return f"{platform.get('timezone')} (zoneinfo {data[:12]})" if data else str(platform.get("timezone"))


def _package_findings(pair: Counterpart, tfp: Mapping[str, Any], sfp: Mapping[str, Any]) -> list[Finding]:
    tp, sp = tfp.get("packages") or {}, sfp.get("packages") or {}
    found = []
    for package in sorted(set(tp) | set(sp)):
        if tp.get(package) != sp.get(package):
            missing = tp.get(package) is None or sp.get(package) is None
            found.append(_env("package", package, pair, sp.get(package) or NOT_SET, tp.get(package) or NOT_SET,
                              "high" if missing else "medium",
                              "installed on one side only" if missing else "different versions"))
    return found


def _service_env_findings(pair: Counterpart, tfp: Mapping[str, Any], sfp: Mapping[str, Any],
                          explained: set[tuple[str, Kind, str]]) -> list[Finding]:
    if any((h, "service", "state") in explained for h in (pair.target, pair.source)):
        return []
    found = []
    ts, ss = tfp.get("service") or {}, sfp.get("service") or {}
    if ts.get("running") != ss.get("running"):
        found.append(_env("service", "state", pair, _running(ss), _running(ts), "high",
                          "the service state differs between the environments"))
    tunits, sunits = ts.get("unit_files") or {}, ss.get("unit_files") or {}
    for path in sorted(set(tunits) | set(sunits)):
        if tunits.get(path) != sunits.get(path):
            found.append(_env("service", f"unit file {path}", pair, str(sunits.get(path) or NOT_SET)[:16],
                              str(tunits.get(path) or NOT_SET)[:16], "medium",
                              "the service's systemd unit differs between the environments: it runs differently "
                              "under the same name"))
    tdef = ((tfp.get("release") or {}).get("meta") or {}).get("service") or {}
    sdef = ((sfp.get("release") or {}).get("meta") or {}).get("service") or {}
    for key in sorted(set(tdef) | set(sdef)):
        if tdef.get(key) != sdef.get(key):
            found.append(_env("service", key, pair, sdef.get(key) or NOT_SET, tdef.get(key) or NOT_SET, "medium",
                              "the service is controlled differently"))
    return found


def _running(service: Mapping[str, Any]) -> str:
    running = service.get("running")
    return "running" if running is True else "stopped" if running is False else "not defined"


def _port_findings(pair: Counterpart, tfp: Mapping[str, Any], sfp: Mapping[str, Any], target: HostState,
                   source: HostState, explained: set[tuple[str, Kind, str]]) -> list[Finding]:
    def ports(fp: Mapping[str, Any]) -> set[tuple[int, str]]:
        return {(p["port"], p["address"]) for p in fp.get("ports") or []}

    excused: set[int] = set()
    for state in (target, source):
        down = any((state.name, kind, subject) in explained
                   for kind, subject in (("service", "state"), ("service", "health")))
        port = state.desired.port if state.desired else None
        if port and (down or any(k[0] == state.name and k[1] == "port" for k in explained)):
            excused.add(port)
    found = []
    for port, address in sorted(ports(tfp) ^ ports(sfp)):
        if port in excused:
            continue
        on_target = (port, address) in ports(tfp)
        where = "its own address" if address == "own" else "every address"
        found.append(_env("port", f"{port}/tcp on {where}", pair, "not listening" if on_target else "listening",
                          "listening" if on_target else "not listening", "medium",
                          "a port listens in one environment only"))
    return found


def _permission_env_findings(pair: Counterpart, tfp: Mapping[str, Any], sfp: Mapping[str, Any],
                             explained: set[tuple[str, Kind, str]]) -> list[Finding]:
    found = []
    tconf, sconf = tfp.get("config") or {}, sfp.get("config") or {}
    tentries = (tfp.get("tree") or {}).get("entries") or {}
    sentries = (sfp.get("tree") or {}).get("entries") or {}
    prefix = CONFIG_DIR + "/"
    tfiles = {p[len(prefix):]: e for p, e in tentries.items() if p.startswith(prefix)}
    sfiles = {p[len(prefix):]: e for p, e in sentries.items() if p.startswith(prefix)}
    for dest in sorted(set(tfiles) & set(sfiles)):
        for part in ("mode", "owner", "group"):
            subject = f"{dest} {part}"
            if any((h, kind, what) in explained for h in (pair.target, pair.source)
                   for kind, what in (("permission", subject), ("config", dest))):
                continue
            if tfiles[dest].get(part) != sfiles[dest].get(part):
                found.append(_env("permission", subject, pair, sfiles[dest].get(part), tfiles[dest].get(part),
                                  "medium", f"the config file's {part} differs between the environments"))
    for label, tvalue, svalue in (("release directory", tentries.get("."), sentries.get(".")),
                                  ("config directory", tconf.get("config_dir"), sconf.get("config_dir"))):
        for part in ("mode", "owner", "group"):
            if any((h, "permission", f"{label} {part}") in explained for h in (pair.target, pair.source)):
                continue
            if tvalue and svalue and tvalue.get(part) != svalue.get(part):
                found.append(_env("permission", f"{label} {part}", pair, svalue.get(part), tvalue.get(part),
                                  "medium", f"the {label}'s {part} differs between the environments"))
    return found


# -- the report ---------------------------------------------------------------------------------

def _merge(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per difference, naming every host that has it (30 hosts, one line)."""
    merged: dict[tuple[Any, ...], Finding] = {}
    for f in findings:
        key = (f.scope, f.kind, f.subject, f.expected_value, f.actual_value, f.expected, f.reason, f.severity,
               f.files, f.where)
        if key in merged:
            old = merged[key]
            merged[key] = replace(old, hosts=tuple(dict.fromkeys(old.hosts + f.hosts)),
                                  counterparts=tuple(dict.fromkeys(old.counterparts + f.counterparts)))
        else:
            merged[key] = f
    order = {kind: index for index, kind in enumerate(KINDS)}
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(merged.values(), key=lambda f: (f.scope != HOST, rank[f.severity], order[f.kind], f.subject,
                                                  f.hosts))


def compare(hosts: Mapping[str, HostState], pairs: Sequence[Counterpart], expectations: Mapping[str, Expectation],
            source: str, target: str, today: date) -> DriftReport:
    """The whole comparison: host findings for every host, environment findings for every pair."""
    host_level: list[Finding] = []
    for state in hosts.values():
        host_level += host_findings(state)
    explained = {(h, f.kind, f.subject) for f in host_level for h in f.hosts}
    env_level: list[Finding] = []
    for pair in pairs:
        if pair.target in hosts and pair.source in hosts:
            env_level += environment_findings(pair, hosts[pair.target], hosts[pair.source], expectations, today,
                                              explained)
    every = _merge(f for f in host_level + env_level if is_difference(f))
    unreachable = {name: state.error for name, state in hosts.items() if state.error}
    ignored = {name: int((state.fingerprint.get("tree") or {}).get("ignored") or 0) for name, state in hosts.items()
               if state.fingerprint and (state.fingerprint.get("tree") or {}).get("ignored")}
    return DriftReport(source, target, tuple(f for f in every if not f.expected),
                       tuple(f for f in every if f.expected), unreachable, {p.target: p.source for p in pairs},
                       ignored)


def describe(report: DriftReport, limit: int = 200) -> list[str]:
    """The report in words, one line per finding (secrets are already masked in the values)."""
    lines = [f"drift {report.source} -> {report.target}: "
             + (f"{len(report.findings)} finding(s), DRIFT" if report.drift else "no drift")
             + f"; {len(report.expected)} expected difference(s)"]
    for title, scope in (("hosts against their desired state", HOST),
                         (f"{report.target} against {report.source}", ENVIRONMENT)):
        chosen = [f for f in report.findings if f.scope == scope]
        if not chosen:
            continue
        lines.append(f"{title}:")
        for f in chosen[:limit]:
            lines.append("  " + finding_line(f))
        if len(chosen) > limit:
            lines.append(f"  ... and {len(chosen) - limit} more (see --json)")
    if report.expected:
        lines.append("expected (declared in golive.yml):")
        for f in report.expected[:limit]:
            lines.append(f"  {f.kind} {f.subject}: {shown_value(f.expected_value)} -> {shown_value(f.actual_value)} "
                         f"- {f.reason}"
                         + (f" (changes {', '.join(f.files)})" if f.files else ""))
    if report.ignored:
        lines.append(f"{sum(report.ignored.values())} file(s) ignored by golive.yml drift.ignore on "
                     f"{len(report.ignored)} host(s): not compared")
    for name, error in sorted(report.unreachable.items()):
        lines.append(f"UNREACHABLE {name}: {error}")
    return lines


def finding_line(f: Finding) -> str:
    f = replace(f, expected_value=shown_value(f.expected_value), actual_value=shown_value(f.actual_value))
    hosts = ", ".join(f.hosts)
    where = f" [set at {f.where}]" if f.where and not f.expected else ""
    files = f" (changes {', '.join(f.files)})" if f.files else ""
    against = f" vs {', '.join(f.counterparts)}" if f.counterparts else ""
    if f.scope == HOST:
        values = f"want {f.expected_value}, has {f.actual_value}"
    else:
        values = f"{f.expected_value} -> {f.actual_value}"
    return f"{f.severity.upper():<6} {f.kind:<10} {f.subject}: {values} - {f.reason} ({hosts}{against}){where}{files}"

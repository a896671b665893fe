"""Deciding what a deploy must do on a host, from the facts the host reported.

The same function serves `golive plan` and `golive deploy`, so a plan is exactly what the deploy
then does. Facts in, steps out: tests/unit/test_plan.py runs JSON fixtures through it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from golive.core.release import RenderedConfig

DEPLOY_STEPS = ("lock", "upload", "unpack", "configure", "hooks", "cutover", "restart", "verify", "record")
# What a repair does to an entry of the live release, by what differs (golive.agent.hostagent step_repair).
REPAIR_ACTIONS = {"missing": "restore", "added": "move away", "type": "replace", "content": "restore",
                  "link": "relink", "mode": "chmod", "owner": "give back", "group": "give back"}
# Restoring a file other than the rendered config reads it from the artifact on the host.
FROM_ARTIFACT = frozenset({"missing", "type", "content", "owner", "group"})

Action = Literal["unchanged", "repair", "switch", "install"]
UNCHANGED: Action = "unchanged"
REPAIR: Action = "repair"
SWITCH: Action = "switch"
INSTALL: Action = "install"
FileChangeKind = Literal["added", "changed", "removed"]


@dataclass(frozen=True)
class DesiredRelease:
    """What the workspace says one host should run."""

    release: str
    version: str
    artifact_name: str
    artifact_sha256: str
    config: RenderedConfig
    # every entry its release directory must hold (Workspace.release_tree), and what drift.ignore leaves alone
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    """What the host's agent reported, in one round trip."""

    current: str | None
    releases: tuple[Mapping[str, Any], ...]
    artifact_cached: bool
    desired_live: bool  # desired release is current, verified, config links intact, service up
    desired_live_problems: tuple[str, ...] = ()
    live_files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    lock: Mapping[str, Any] | None = None
    release_repairs: tuple[tuple[str, str], ...] = ()  # (path, aspect) where the desired release differs

    @staticmethod
    def from_agent(data: Mapping[str, Any]) -> HostFacts:
        return HostFacts(
            current=data.get("current"),
            releases=tuple(data.get("releases") or ()),
            artifact_cached=bool(data.get("artifact_cached")),
            desired_live=bool(data.get("desired_live")),
            desired_live_problems=tuple(data.get("desired_live_problems") or ()),
            live_files=data.get("live_files") or {},
            lock=data.get("lock"),
            release_repairs=tuple((str(p), str(a)) for p, a in data.get("release_repairs") or ()),
        )

    def release(self, release_id: str) -> Mapping[str, Any] | None:
        return next((r for r in self.releases if r.get("id") == release_id), None)


@dataclass(frozen=True)
class FileChange:
    dest: str
    change: FileChangeKind
    secret: bool
    diff: str = ""  # unified diff; empty for secret files


@dataclass(frozen=True)
class HostPlan:
    host: str
    action: Action
    steps: tuple[str, ...]
    from_release: str | None
    to_release: str
    reason: str
    file_changes: tuple[FileChange, ...] = ()
    repairs: tuple[Repair, ...] = ()  # repair/switch: what it does to the release's entries, entry by entry

    @property
    def changes(self) -> bool:
        return self.action != UNCHANGED


@dataclass(frozen=True)
class Repair:
    path: str  # in the release directory
    aspects: tuple[str, ...]  # what differs (golive.core.drift.Aspect)
    action: str  # what the repair does about it: REPAIR_ACTIONS

    def describe(self) -> str:
        return f"{self.action} {self.path} ({', '.join(self.aspects)})"


def repairs(differences: tuple[tuple[str, str], ...]) -> tuple[Repair, ...]:
    """One repair per entry, in the order the host makes them (parents first)."""
    found: dict[str, list[str]] = {}
    for path, aspect in differences:
        found.setdefault(path, []).append(aspect)
    order = ("added", "type", "missing", "content", "link", "mode", "owner", "group")
    return tuple(Repair(path, tuple(aspects), REPAIR_ACTIONS[min(aspects, key=order.index)])
                 for path, aspects in found.items())


def needs_artifact(found: tuple[Repair, ...], desired: DesiredRelease) -> bool:
    """Whether a repair restores a file that only the artifact holds (not a rendered config file)."""
    rendered = {f"config/{f.dest}" for f in desired.config.files}
    return any(r.path not in rendered and (desired.files.get(r.path) or {}).get("type") == "file"
               and "added" not in r.aspects and FROM_ARTIFACT & set(r.aspects) for r in found)


def _unmasked(text: str) -> str:
    return text


def file_changes(desired: RenderedConfig, live: Mapping[str, Mapping[str, Any]],
                 mask: Callable[[str], str] = _unmasked) -> tuple[FileChange, ...]:
    """What changes in each config file; a diff is made from the texts masked first (a diff puts
    `+`/`-` before every line: a secret of several lines would no longer be found whole after)."""
    changes: list[FileChange] = []
    for f in desired.files:
        seen = live.get(f.dest) or {}
        if seen.get("exists") and seen.get("sha256") == f.sha256:
            continue
        kind: FileChangeKind = "changed" if seen.get("exists") else "added"
        diff = ""
        if not f.secret:
            before = mask(seen.get("text") or "").splitlines(keepends=True)
            after = mask(f.content.decode("utf-8", "replace")).splitlines(keepends=True)
            diff = "".join(difflib.unified_diff(before, after, f"live/{f.dest}", f"new/{f.dest}"))
        changes.append(FileChange(f.dest, kind, f.secret, diff))
    wanted = {f.dest for f in desired.files}
    for dest, seen in sorted(live.items()):
        if seen.get("exists") and dest not in wanted:
            changes.append(FileChange(dest, "removed", False))
    return tuple(changes)


def plan_host(host: str, facts: HostFacts, desired: DesiredRelease,
              mask: Callable[[str], str] = _unmasked) -> HostPlan:
    changes = file_changes(desired.config, facts.live_files, mask)
    target = desired.release
    if facts.desired_live:
        return HostPlan(host, UNCHANGED, ("lock", "record"), facts.current, target,
                        f"{desired.version} is live and verified with this config", ())
    if facts.current == target:
        problems = "; ".join(facts.desired_live_problems) or "not verified"
        found = repairs(facts.release_repairs)
        steps = ("lock", *(("upload",) if needs_artifact(found, desired) and not facts.artifact_cached else ()),
                 *(("repair",) if found else ()), "cutover", "restart", "verify", "record")
        return HostPlan(host, REPAIR, steps, facts.current, target, f"{desired.version} is live but {problems}",
                        changes, found)
    existing = facts.release(target)
    if existing is not None:
        # a kept release is checked as the live one is: what differs is repaired before the switch
        found = repairs(facts.release_repairs)
        steps = ("lock", *(("upload",) if needs_artifact(found, desired) and not facts.artifact_cached else ()),
                 *(("repair",) if found else ()), "hooks", "cutover", "restart", "verify", "record")
        reason = f"release {target} is already on the host ({existing.get('state', 'unknown')})"
        if found:
            reason += (f", but {len(found)} of its entries differ from what it should hold: repaired before "
                       f"the switch")
        return HostPlan(host, SWITCH, steps, facts.current, target, reason, changes, found)
    steps = tuple(s for s in DEPLOY_STEPS if s != "upload" or not facts.artifact_cached)
    reason = "first deploy" if facts.current is None else f"{facts.current} -> {target}"
    return HostPlan(host, INSTALL, steps, facts.current, target, reason, changes)

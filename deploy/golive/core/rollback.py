"""Which release a rollback puts back live, decided once for the whole environment (pure).

The rules (docs/design.md "Rollback"), the same in both engines (the host agent resolves the
choice on each host: Agent.step_select_rollback; the role: roles/golive/tasks/choose.yml):

- Releases are ordered by their deploy sequence `seq`, the number the deploy run that made them
  live assigned for the environment (one more than the highest any of its hosts had), never by a
  host's clock. Releases an older golive wrote (no `seq`) come after every sequenced one, among
  themselves by `created_at` then id, as before.
- `--to V` names a kept release (version or id); a host already on it is done ("already on").
  A release marked bad needs --force.
- A plain rollback first completes an unfinished one: each host records the rollback's intent
  (`.golive/rollback.json`: target and the release left) before it switches, and the run's leader
  marks it finished once every host of the run ended on the target. An intent counts while it is
  not finished and no deploy ran since (its `epoch`, the highest `seq` on the host when it was
  recorded, is still the highest).
- Otherwise a plain rollback goes back, never forth: to the newest release older than the live one
  that is verified good and that no rollback left (`rolled_back_at`: a rollback leaves it; `--to`
  can still name it; a deploy that makes it live again clears it).
- A host that runs no release (never deployed there, or its first install failed and was withdrawn:
  no `current`) has nothing to go back from: it is left as it is, said per host, with or without
  `--to` (a rollback returns hosts to what they ran; `golive deploy` installs one), and it does not
  fail the run.
- The environment goes where its chooser decides: the run's first reachable host that runs a
  release (the leader, whose lock is the environment's, unless it runs none), under the leader's
  lock; every other host resolves that choice to its own release (same id, else the same deploy
  sequence and version, else the same version) and says when it would have chosen another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Reason = Literal["named", "continue", "previous"]
LEFT_MARK = "rolled_back_at"  # metadata key: when a rollback left this release
# What a rollback says of a host that runs no release (the agent's step_select_rollback and the
# role's rollback.yml say the same)
NOTHING_LIVE = ("no live release: nothing to roll back (it never ran one, or its first install failed and was "
                "withdrawn); left as it is")


def sequence(meta: Mapping[str, Any]) -> int | None:
    """A release's deploy sequence, or None for one an older golive wrote."""
    value = meta.get("seq")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def order_key(meta: Mapping[str, Any]) -> tuple[int, str, str]:
    """Newest first when sorted in reverse: by deploy sequence; unsequenced (0) after, by created_at, id."""
    return sequence(meta) or 0, str(meta.get("created_at") or ""), str(meta.get("id") or "")


def newest_first(metas: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(metas, key=order_key, reverse=True)


@dataclass(frozen=True)
class Kept:
    """One release a host keeps, as far as choosing a rollback target goes."""

    id: str
    version: str
    state: str
    seq: int | None
    created_at: str
    rolled_back: bool

    @staticmethod
    def from_meta(meta: Mapping[str, Any]) -> Kept:
        release = str(meta.get("id") or "")
        return Kept(id=release, version=str(meta.get("version") or release.rsplit("-", 1)[0]),
                    state=str(meta.get("state") or "unknown"), seq=sequence(meta),
                    created_at=str(meta.get("created_at") or ""), rolled_back=bool(meta.get(LEFT_MARK)))

    def summary(self) -> dict[str, Any]:
        """What a host reports of it (the agent's and the role's `kept` entries)."""
        return {"id": self.id, "version": self.version, "state": self.state, "seq": self.seq,
                "created_at": self.created_at, LEFT_MARK: self.rolled_back or None}


@dataclass(frozen=True)
class Intent:
    """A rollback as a host recorded it before switching (`.golive/rollback.json`)."""

    run: str
    target: str
    version: str
    left: str | None
    epoch: int
    started_at: str
    operator: str
    finished: bool
    # a rollback that changes the database records how ({"host", "path": "restore"|"down", "backup"}):
    # a re-run knows what it was completing (flows/database.plan_rollback)
    database: Mapping[str, Any] | None = None

    @staticmethod
    def from_agent(data: Mapping[str, Any] | None) -> Intent | None:
        if not data or not data.get("target"):
            return None
        epoch = data.get("epoch")
        database = data.get("database")
        return Intent(run=str(data.get("run") or ""), target=str(data["target"]),
                      version=str(data.get("version") or ""), left=data.get("from"),
                      epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0,
                      started_at=str(data.get("started_at") or ""), operator=str(data.get("operator") or ""),
                      finished=bool(data.get("finished_at")),
                      database=dict(database) if isinstance(database, Mapping) else None)

    def describe(self) -> str:
        by = f" by {self.operator}" if self.operator else ""
        return f"the rollback to {self.version or self.target} started {self.started_at}{by}, which did not finish"


@dataclass(frozen=True)
class RollbackFacts:
    """What a host keeps: the live release, its releases newest first, its rollback intent."""

    current: str | None
    releases: tuple[Kept, ...]
    intent: Intent | None = None

    @staticmethod
    def from_agent(state: Mapping[str, Any]) -> RollbackFacts:
        """From the agent's `state` step (or the `kept`/`intent` a rollback's choose step reports)."""
        metas: Iterable[Mapping[str, Any]] = state.get("releases") or state.get("kept") or ()
        return RollbackFacts(current=state.get("current"),
                             releases=tuple(Kept.from_meta(m) for m in newest_first(metas)),
                             intent=Intent.from_agent(state.get("rollback")))

    def release(self, release: str | None) -> Kept | None:
        return next((r for r in self.releases if r.id == release), None)

    @property
    def highest_seq(self) -> int:
        return max((r.seq or 0 for r in self.releases), default=0)

    @property
    def nothing_live(self) -> bool:
        """No release is live: a rollback leaves the host as it is."""
        return not self.current

    def unfinished(self) -> Intent | None:
        """The recorded rollback, while it is neither finished nor superseded by a deploy."""
        intent = self.intent
        if intent is None or intent.finished or intent.epoch != self.highest_seq:
            return None
        return intent

    def older_than_current(self) -> tuple[Kept, ...]:
        ids = [r.id for r in self.releases]
        if self.current not in ids:
            return self.releases
        return self.releases[ids.index(self.current) + 1:]

    def kept_text(self) -> str:
        """'1.2 (live), 1.1, 1.0 (bad)': what the host keeps, newest first."""
        shown: list[str] = []
        for r in self.releases:
            notes = [n for n in ("live" if r.id == self.current else "", "bad" if r.state == "bad" else "",
                                 "rolled back from" if r.rolled_back and r.id != self.current else "") if n]
            text = r.version + (f" ({', '.join(notes)})" if notes else "")
            if text not in shown:
                shown.append(text)
        return ", ".join(shown) or "none"


@dataclass(frozen=True)
class Choice:
    """A host's rollback target, or why it has none."""

    release: Kept | None
    reason: Reason | None = None
    already: bool = False  # the host is on it: nothing to switch
    problem: str | None = None
    intent: Intent | None = None  # the unfinished rollback this one completes

    def spec(self, named: str | None) -> dict[str, Any]:
        """What every host of the environment is asked to roll back to (Agent.step_select_rollback)."""
        assert self.release is not None
        return {"release": self.release.id, "version": self.release.version, "seq": self.release.seq,
                "match": "id" if named and named == self.release.id else "version", "reason": self.reason}

    def sentence(self) -> str:
        if self.release is None:
            return self.problem or "no target"
        if self.reason == "continue" and self.intent is not None:
            return f"{self.release.id}, completing {self.intent.describe()}"
        if self.reason == "named":
            return f"{self.release.id}, as named"
        return f"{self.release.id}, the newest verified release before the live one"


def choose(facts: RollbackFacts, *, to: str | None = None, force: bool = False) -> Choice:
    """One host's rollback target by the rules above (the chooser's is the environment's)."""
    if facts.nothing_live:
        return Choice(None, problem=NOTHING_LIVE)
    if to:
        named = [r for r in facts.releases if to in (r.version, r.id)]
        if not named:
            return Choice(None, problem=f"release {to} is not kept on this host (kept: {facts.kept_text()})")
        live = next((r for r in named if r.id == facts.current), None)
        if live is not None:
            return Choice(live, "named", already=True)
        usable = [r for r in named if r.state != "bad"]
        if not usable and not force:
            return Choice(None, problem=f"release {to} is marked bad (it failed verification); use --force to roll "
                                        f"back to it")
        return Choice((usable or named)[0], "named")
    intent = facts.unfinished()
    if intent is not None:
        target = facts.release(intent.target)
        if target is not None and target.state != "bad":
            return Choice(target, "continue", already=target.id == facts.current, intent=intent)
    target = next((r for r in facts.older_than_current() if r.state == "good" and not r.rolled_back), None)
    if target is None:
        return Choice(None, problem=f"no earlier good release to roll back to (kept: {facts.kept_text()}); "
                                    f"name one with --to")
    return Choice(target, "previous")


def chooser(facts: Mapping[str, RollbackFacts]) -> str | None:
    """The host whose releases decide the environment's target: the first (in the run's order, the
    leader first) that runs a release. None: no host runs one, there is nothing to roll back."""
    return next((name for name, f in facts.items() if not f.nothing_live), None)


def resolve(facts: RollbackFacts, spec: Mapping[str, Any], *, force: bool = False) -> Kept | None:
    """The release of this host that the environment's target (Choice.spec) names, by the rule each
    host applies in its rollback round trip (Agent.step_select_rollback): the same id, else the same
    deploy sequence and version, else the live release of that version, else the newest of it;
    never a bad one without --force. None: the host keeps no such release, or runs none (check
    `facts.nothing_live` first: such a host is left as it is, it does not fail)."""
    if facts.nothing_live:
        return None
    same_id = [r for r in facts.releases if r.id == spec.get("release")]
    if spec.get("match") == "id":
        candidates = same_id
    else:
        version = [r for r in facts.releases if r.version == spec.get("version")]
        same_run = [r for r in version if spec.get("seq") is not None and r.seq == spec.get("seq")]
        live = [r for r in version if r.id == facts.current]
        candidates = list(dict.fromkeys(same_id + same_run + live + version))
    usable = [r for r in candidates if r.state != "bad"]
    if not candidates or (not usable and not force):
        return None
    return (usable or candidates)[0]


def next_sequence(states: Iterable[Mapping[str, Any]]) -> int:
    """The deploy sequence a deploy run gives what it makes live: one more than the highest any host
    of the run keeps (read in the begin round trip, under the environment lock)."""
    return 1 + max((sequence(meta) or 0 for state in states for meta in state.get("releases") or ()), default=0)

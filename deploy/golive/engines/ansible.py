"""golive deploy / rollback with the Ansible roles (`--engine ansible`).

golive refuses bad input exactly as the pyinfra engine does (golive.flows.deploy.prepare and the
promotion gate: artifact, checksum, archive safety, rendering, promotion) before any host is
touched, then runs playbooks/deploy.yml or playbooks/rollback.yml with ansible-playbook, with the
workspace's inventory, ansible.cfg and vault password. A stdout callback shipped here
(callback_plugins/golive_events.py) turns the run into JSON events; they drive the progress table
and become the same per-host reports, JSON document and exit codes as the pyinfra engine's.

The playbooks lock like the pyinfra engine (the leader first, its lock held until the last play;
--serial batches; --max-fail over the whole run: roles/golive/README.md). The one case Ansible
cannot finish is a batch whose every host became unreachable: ansible-playbook stops before its
last play, and golive gives the environment lock back itself (release_environment_lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golive.adapters.ansible_env import ansible_environment
from golive.adapters.locks import takeover_detail
from golive.adapters.progress import Progress, StepFeed
from golive.adapters.ssh_options import openssh_options
from golive.adapters.transport import Fleet, connection_file_problems, route_of
from golive.core.errors import BadInput, HostFailure, Problem
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.plan import UNCHANGED
from golive.core.redact import Redactor
from golive.core.release import Artifact
from golive.core.requires import Requirements
from golive.core.rollout import batches, max_fail_threshold
from golive.flows import steps
from golive.flows.deploy import (
    REQUIREMENTS_REFUSED,
    Target,
    deploy_outcome,
    disagreements,
    enforce_promotion,
    first_install_report,
    platforms,
    prepare,
    rollback_outcome,
)
from golive.flows.desired import requirement_problems
from golive.flows.session import HostReport, HostSession, lock_report, nothing_live_report, operator_name
from golive.workspace import Workspace

CALLBACK_PLUGINS = Path(__file__).with_name("callback_plugins")
# golive's own playbooks and role, shipped in the package (package data): found from any workspace,
# with nothing copied into it. golive.yml's `ansible:` may name a workspace folder to use instead.
ANSIBLE_CONTENT = Path(__file__).resolve().parents[1] / "ansible"
GATE_STEP = "gate"  # tasks that run before any host is locked (playbook tag)
SKIPPED_BY_ANSIBLE = "not run: the play stopped before this host (a failure elsewhere or over --max-fail)"
LEADER_LOCK_TASK = "golive : Lock | Take the leader's lock"  # tasks/lock.yml
RELEASE_STEP = "release_environment"  # tasks/end.yml gives the leader's lock back
CONTROL_DIR = os.path.join(tempfile.gettempdir(), f"golive-cp-{os.getuid()}")  # OpenSSH's shared connections


@dataclass
class HostEvents:
    """What the run said about one host."""

    outcome: dict[str, Any] | None = None
    lock_holder: dict[str, Any] | None = None
    lock_state: tuple[str, str] | None = None  # (liveness, sentence), judged when the lock was found
    takeover: dict[str, Any] | None = None  # the stale lock the role took over on this host
    failure: dict[str, Any] | None = None
    unreachable: str | None = None
    diffs: list[dict[str, str]] = field(default_factory=list)
    leads: bool = False  # this run took the environment lock here (the leader's)
    released: bool = False  # ... and gave it back in the playbook's last play
    feed: StepFeed | None = None  # its steps on the progress table as they run


@dataclass(frozen=True)
class PlaybookOptions:
    """What the command line asks of ansible-playbook beyond the hosts and the extra variables."""

    serial: str | None = None
    max_fail: str | None = None
    operator: str | None = None
    check: bool = False
    diff: bool = False


def refuse_database(ws: Workspace, verb: str) -> None:
    """The role has no database step (backup, migrate, restore, down, the schema check a rollback
    makes first): for a product with a database every verb of this engine is refused before any host
    is touched, a plain rollback too (it could put old code on a schema it cannot run on)."""
    if ws.app.database is None:
        return
    raise BadInput(Problem(f"{ws.app.source} `database:`",
                           f"--engine ansible does not {verb} a product with a database: the Ansible engine has no "
                           f"database steps (backup, migrations, restore, down-migrations, the schema check before "
                           f"a rollback), so it could leave code on a schema it cannot run on; use the default "
                           f"engine (golive {verb} without --engine ansible); nothing was changed"))


def deploy(ws: Workspace, customer: str, environment: str, version: str, *, serial: str | None = None,
           max_fail: str | None = None, only: list[str] | None = None, operator: str | None = None,
           override_promotion: str | None = None, progress: Progress, check: bool = False,
           diff: bool = False) -> Outcome:
    """golive.flows.deploy.deploy, with ansible-playbook on the role doing the hosts' part."""
    refuse_database(ws, "deploy")
    options = PlaybookOptions(serial, max_fail, operator, check, diff)
    artifact, targets, requirements = prepare(ws, customer, environment, version, only)
    promotion = enforce_promotion(ws, customer, environment, artifact, override_promotion, progress)
    if requirements:
        refuse_unmet_requirements(ws, targets, artifact, requirements, progress)
    extra = {"golive_release_version": artifact.version,
             # where golive verified the artifact: the store, or the cache it fetched a remote store's into
             "golive_artifact_store": str(Path(artifact.path).parent),
             # golive has just applied the promotion rule itself, with the pyinfra engine's words
             "golive_promotion_check": False,
             "golive_promotion_override_reason": override_promotion or ""}
    title = f"{'check: ' if check else ''}deploy {artifact.version} to {customer}/{environment}"
    events = run_playbook(ws, "deploy", [t.host for t in targets], extra, options, progress, title,
                          steps.DEPLOY_COLUMNS)
    for target in targets:
        target.report = deploy_report(environment, target.host.name, events.get(target.host.name))
        target.takeover = events[target.host.name].takeover
    if check:
        return check_outcome("deploy", customer, environment, artifact.version, targets)
    return deploy_outcome("deploy", customer, environment, artifact.version, targets,
                          {**promotion, "engine": "ansible"})


def rollback(ws: Workspace, customer: str, environment: str, to_version: str | None, *, force: bool = False,
             serial: str | None = None, max_fail: str | None = None, only: list[str] | None = None,
             operator: str | None = None, restore_db: bool = False, down: bool = False, progress: Progress,
             check: bool = False, diff: bool = False) -> Outcome:
    """golive.flows.deploy.rollback, with ansible-playbook on the role doing the hosts' part."""
    refuse_database(ws, "rollback")
    if restore_db or down:
        raise BadInput("--restore-db and --down need golive.yml's `database:` section (and the default engine)")
    options = PlaybookOptions(serial, max_fail, operator, check, diff)
    hosts = list(ws.hosts(customer, environment, only))
    extra = {"golive_rollback_to": to_version or "", "golive_rollback_force": bool(force)}
    title = (f"{'check: ' if check else ''}rollback {customer}/{environment}"
             + (f" to {to_version}" if to_version else ""))
    events = run_playbook(ws, "rollback", hosts, extra, options, progress, title, steps.ROLLBACK_COLUMNS)
    targets = [Target(h, report=rollback_report(environment, h.name, events.get(h.name)),
                      takeover=getattr(events.get(h.name), "takeover", None)) for h in hosts]
    if check:
        return check_outcome("rollback", customer, environment, to_version, targets)
    chosen = next((e.outcome["target"] for e in events.values() if e.outcome and e.outcome.get("target")), {})
    disagree = disagreements(targets)
    chooser, leader = chosen.get("chooser") or chosen.get("leader"), chosen.get("leader")
    target = {"release": chosen["release"], "version": chosen["version"], "reason": chosen["reason"],
              "chosen_on": chooser} if chosen.get("release") else None
    which = ("which leads the run" if chooser == leader
             else f"the first host that runs a release; {leader} leads the run")
    notes = [f"target: {target['release']} ({target['reason']}; chosen on {target['chosen_on']}, {which})"
             ] if target else []
    notes += [f"hosts disagree on the target: {d['host']} on its own would choose {d['would_choose']}; the "
              f"environment goes to one release, the leader's choice" for d in disagree]
    return rollback_outcome(customer, environment, to_version, targets,
                            {"to": to_version, "force": force, "engine": "ansible", "target": target,
                             "disagree": disagree}, notes)


def refuse_unmet_requirements(ws: Workspace, targets: list[Target], artifact: Artifact, requirements: Requirements,
                              progress: Progress) -> None:
    """What the artifact requires of a host, checked before ansible-playbook starts: one read-only
    round trip of golive's own agent per host (the state step the pyinfra engine's begin batch runs,
    so the same facts, the same comparison and the same words), no lock taken. A host it cannot
    reach is left to the playbook, which reports it unreachable."""
    session = HostSession([t.host for t in targets], progress, ws.app)
    try:
        connected = session.connect()
        requests = {t.host.name: (connected[t.host.name], {"steps": [steps.read_state(ws.app)]})
                    for t in targets if connected[t.host.name].ok}
        answers = session.call_all(requests, ws.app.timeouts.begin)
    finally:
        session.close()
    problems = requirement_problems(requirements, artifact, platforms(answers), REQUIREMENTS_REFUSED)
    if problems:
        raise BadInput(problems)


# -- running ansible-playbook ---------------------------------------------------------------

def playbook_command(ws: Workspace, verb: str, hosts: Iterable[Host], extra: dict[str, Any],
                     options: PlaybookOptions) -> list[str]:
    """The ansible-playbook command line a user could run by hand (plus golive's callback)."""
    hosts = list(hosts)
    extra = {**extra, "golive_workspace": str(ws.root), "golive_operator": operator_name(options.operator),
             # the lock names this golive process: its stale-lock check looks for it
             "golive_lock_pid": os.getpid()}
    if options.serial:
        batches(hosts, options.serial)  # refuses a malformed --serial with the pyinfra engine's words
        extra["golive_serial"] = options.serial.strip()
    threshold = max_fail_threshold(options.max_fail)
    if threshold < 1.0:
        extra["golive_max_fail_percentage"] = round(threshold * 100, 3)
    extra.update(ssh_overrides(hosts))
    command = [sys.executable, "-m", "ansible.cli.playbook",
               "-i", str(ws.root / "inventories" / hosts[0].customer),
               str(playbook_path(ws, verb)),
               "--limit", ",".join(h.name for h in hosts),
               "--extra-vars", json.dumps(extra)]
    if ws.vault_password_file:
        command += ["--vault-password-file", ws.vault_password_file]
    if options.check:
        command.append("--check")
    if options.diff:
        command.append("--diff")
    return command


def ssh_overrides(hosts: Iterable[Host]) -> dict[str, Any]:
    """Extra variables that give OpenSSH each host's route exactly as golive's own engine follows
    it (golive.adapters.ssh_options): every option explicit, no ssh_config read, and each jump host
    verified and authenticated as golive does it (OpenSSH's ProxyJump would give a jump host none
    of the inventory's options). The inventory's ssh arguments are folded in, so they are emptied."""
    args = {}
    for host in hosts:
        route = route_of(host)
        if route is None:
            continue
        options = openssh_options(route)
        if (route.jumps or route.proxy_command) and not any(o.lower().startswith("controlpath") for o in options):
            # Ansible's default ControlPath hashes address, port and user: two customers' 10.0.0.5 behind
            # two bastions would share one connection. One per route and run instead: a master another
            # run left (ControlPersist) would skip this run's host key checks on every hop.
            digest = hashlib.sha256(f"{route!r} {os.getpid()}".encode()).hexdigest()[:20]
            options += ["-o", f"ControlPath={CONTROL_DIR}/{digest}"]
        args[host.name] = shlex.join(options)
    if not args:
        return {}
    Path(CONTROL_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
    return {"golive_ssh_args": args, "ansible_ssh_args": "{{ golive_ssh_args[inventory_hostname] }}",
            "ansible_ssh_common_args": "", "ansible_ssh_extra_args": ""}


def run_playbook(ws: Workspace, verb: str, hosts: list[Host], extra: dict[str, Any], options: PlaybookOptions,
                 progress: Progress, title: str, columns: Iterable[str]) -> dict[str, HostEvents]:
    """Run the playbook, showing progress; what it said about each host."""
    playbook = playbook_path(ws, verb)
    if not playbook.is_file():
        where = "golive.yml ansible.playbooks" if ws.app.ansible.playbooks else "golive's package (reinstall golive)"
        raise BadInput(Problem(str(playbook), f"missing: the Ansible engine's playbook, from {where}"))
    missing = connection_file_problems(hosts)  # every host's, not only the leader's that golive connects
    if missing:
        raise BadInput(missing)
    token = secrets.token_hex(16)  # the run's lock token (never on a command line)
    env = {**os.environ, **ansible_environment(ws.root),
           "ANSIBLE_ROLES_PATH": os.pathsep.join(roles_path(ws)),
           "ANSIBLE_STDOUT_CALLBACK": "golive_events",
           "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_PLUGINS),
           "ANSIBLE_RETRY_FILES_ENABLED": "false",
           "GOLIVE_RUN_TOKEN": token}
    columns = list(columns)
    events = {h.name: HostEvents() for h in hosts}
    gate_failure = None
    progress.start(title, [h.name for h in hosts], columns)
    try:
        with tempfile.TemporaryFile(mode="w+") as stderr:
            # its own process group: a Ctrl-C at the terminal reaches golive alone, which passes it on
            # once (stop_playbook), to ansible-playbook and its workers together
            process = subprocess.Popen(playbook_command(ws, verb, hosts, extra, options), cwd=str(ws.root), env=env,
                                       stdout=subprocess.PIPE, stderr=stderr, text=True, stdin=subprocess.DEVNULL,
                                       process_group=0)
            try:
                for line in process.stdout or ():
                    event = _parse(line)
                    if event is None or event.get("host") not in events:
                        continue
                    event = masked_event(event, ws.redactor)
                    failure = _record(event, events[event["host"]], columns, progress)
                    if failure and event.get("step") == GATE_STEP and gate_failure is None:
                        gate_failure = failure
            except BaseException:  # Ctrl-C (KeyboardInterrupt), or golive failing: the playbook stops too
                stop_playbook(process)
                raise
            returncode = process.wait()
            stderr.seek(0)
            errors = stderr.read()
    finally:
        progress.stop()
    if gate_failure is not None:
        raise BadInput(Problem("", f"refused before any host was touched: {gate_failure}"))
    release_environment_lock(ws, hosts, events, token, progress)
    explain_unreachable_routes(hosts, events)
    if returncode not in (0, 2, 4) and not any(e.outcome or e.failure or e.unreachable for e in events.values()):
        # ansible-playbook itself could not run (syntax error, missing role, bad inventory)
        raise HostFailure(f"ansible-playbook exited {returncode}: {_last_error(errors)}")
    return events


# How long ansible-playbook has to stop after golive passed a Ctrl-C on (it stops with its task);
# a bound only, so that golive never hangs on a playbook that does not stop: then it is killed.
PLAYBOOK_STOP_BOUND = 60.0


def stop_playbook(process: subprocess.Popen[str]) -> None:
    """Pass an interrupt on to ansible-playbook's process group (it stops with the task it was
    running, as after a Ctrl-C at its own terminal) and wait for it, reading what it still says;
    SIGKILL the group if it does not end within the bound. What the hosts were running finishes
    there on its own; the next run takes the stale lock over and converges."""
    previous = None
    with contextlib.suppress(ValueError):  # golive used as a library from a thread: no handlers there
        # a second Ctrl-C must not cut the wait short (golive.cli ignores it after, while it reports)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with contextlib.suppress(ProcessLookupError):  # it had ended already
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.communicate(timeout=PLAYBOOK_STOP_BOUND)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def playbook_path(ws: Workspace, verb: str) -> Path:
    """deploy.yml / rollback.yml: the workspace's, when golive.yml's `ansible.playbooks` names a
    folder; golive's own otherwise."""
    folder = ws.root / ws.app.ansible.playbooks if ws.app.ansible.playbooks else ANSIBLE_CONTENT / "playbooks"
    return folder / f"{verb}.yml"


def roles_path(ws: Workspace) -> list[str]:
    """Where ansible-playbook looks for roles, first match wins: golive.yml's `ansible.roles` (a
    workspace's own golive role, or roles its hooks use), golive's own role, then ansible.cfg's
    `roles_path` (relative to ansible.cfg, as Ansible reads it)."""
    paths = [str(ws.root / ws.app.ansible.roles)] if ws.app.ansible.roles else []
    paths.append(str(ANSIBLE_CONTENT / "roles"))
    config = ws.root / "ansible.cfg"
    if config.is_file():
        import configparser

        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(config)
        except configparser.Error:
            return paths  # ansible-playbook reports it, with its own words
        for entry in parser.get("defaults", "roles_path", fallback="").split(os.pathsep):
            if entry.strip():
                paths.append(str(config.parent / os.path.expanduser(entry.strip())))
    return list(dict.fromkeys(paths))


def hand_run_environment() -> str:
    """Shell lines for running golive's playbooks by hand (`eval "$(python -m golive.engines.ansible)"`)."""
    import shlex

    return (f"export GOLIVE_PLAYBOOKS={shlex.quote(str(ANSIBLE_CONTENT / 'playbooks'))}\n"
            f"export ANSIBLE_ROLES_PATH={shlex.quote(str(ANSIBLE_CONTENT / 'roles'))}"
            "${ANSIBLE_ROLES_PATH:+:$ANSIBLE_ROLES_PATH}\n")


def release_environment_lock(ws: Workspace, hosts: list[Host], events: dict[str, HostEvents], token: str,
                             progress: Progress) -> None:
    """ansible-playbook stops after a --serial batch whose every host became unreachable, before its
    last play gives the leader's lock (the environment's) back. Then golive gives it back itself, as
    the pyinfra engine does at the end of a run (its agent releases a lock only for the run's token)."""
    leader = next((h for h in hosts if events[h.name].leads and not events[h.name].released), None)
    if leader is None:
        return
    session = HostSession([leader], progress, ws.app, token)
    try:
        connected = session.connect()[leader.name]
        answer = session.call(connected, steps.release_batch(), timeout=ws.app.timeouts.begin) if connected.ok else None
    finally:
        session.close()
    if answer is None or not answer.ok:
        progress.note(f"{leader.name}: could not release the environment lock "
                      f"({answer.error if answer else connected.error}); `golive unlock` clears it")


def explain_unreachable_routes(hosts: list[Host], events: dict[str, HostEvents]) -> None:
    """Through a jump host or ProxyCommand, OpenSSH reports only that the proxy closed the
    connection ("kex_exchange_identification: Connection closed"), never why: a jump host's
    changed key, a refused login. golive then tries the route itself, hop by hop, and when that
    fails too its sentence (naming the hop and the known_hosts file) replaces OpenSSH's."""
    routed = [h for h in hosts if events[h.name].unreachable and events[h.name].outcome is None
              and (route := route_of(h)) is not None and (route.jumps or route.proxy_command)]
    if not routed:
        return
    fleet = Fleet(routed)
    try:
        for name, connected in fleet.connect().items():
            if connected.error:
                events[name].unreachable = connected.error
    finally:
        fleet.close()


def _parse(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # something else wrote to stdout (a module's warning); not an event
    return event if isinstance(event, dict) else None


def masked_event(event: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """An event masked as it enters golive, before anything reads it: a command's output the
    callback cut to its tail may start with the end of a secret, masked too."""
    cut = {stream: event.pop(stream + "_cut", False) for stream in ("stdout", "stderr")}
    masked = redactor.data(event)
    for stream, was_cut in cut.items():
        if was_cut and isinstance(event.get(stream), str):
            masked[stream] = redactor.cut(event[stream], start=True)
    return masked


def _record(event: dict[str, Any], host: HostEvents, columns: list[str], progress: Progress) -> str | None:
    """Fold one event into the host's record and the progress table; return a failure's message."""
    name, status, step = event["host"], event.get("status"), event.get("step") or ""
    if host.feed is None:
        host.feed = StepFeed(progress, name, columns, steps.STEP_COLUMNS, steps.UNDO_STEPS)
    if event.get("event") == "start":  # a task of a step starts on the host: it shows as running
        host.feed.event(step, "running")
        return None
    if "golive_outcome" in event:
        host.outcome = event["golive_outcome"]
        host.feed.close(withdrawn=_true(host.outcome.get("withdrawn")))
        progress.update(name, "result", host.outcome.get("result", ""))
    if event.get("golive_lock_takeover"):
        host.takeover = event["golive_lock_takeover"]
        progress.note(f"{name}: {takeover_detail(host.takeover)} (recorded in the host's ledger)")
    if "golive_lock_holder" in event:
        host.lock_holder = event["golive_lock_holder"]
        # alive or stale as of now: the holder may well finish before ansible-playbook does
        host.lock_state = lock_report(host.lock_holder)
    if status == "ok" and event.get("changed"):
        if event.get("task", "").startswith(LEADER_LOCK_TASK):
            host.leads = True
        elif step == RELEASE_STEP:
            host.released = True
    for diff in event.get("diff", []):
        host.diffs.append({"file": event.get("item", ""), "diff": diff})
    if status in ("ok", "failed", "skipped") and event.get("event") == "result":
        host.feed.event(step, str(status))
    if status == "unreachable":
        host.unreachable = event.get("msg") or "unreachable"
        return host.unreachable
    if status == "failed" and event.get("event") == "result":
        message = event.get("stderr", "").strip() or event.get("msg", "")
        if host.failure is None:
            host.failure = {**event, "msg": message}
        return message
    return None


def _true(value: Any) -> bool:
    """A flag from a role's fact (a bool, or the string Jinja made of one)."""
    return value is True or str(value).lower() == "true"


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors or lines or ["no output"])[-1]


# -- reports, in the pyinfra engine's words -------------------------------------------------

def _unfinished(environment: str, name: str, events: HostEvents | None) -> HostReport | None:
    """The report of a host that never got an outcome: unreachable, locked, or stopped early."""
    if events is None or (events.outcome is None and not events.failure and not events.unreachable):
        return HostReport(host=name, environment=environment, status="skipped", error=SKIPPED_BY_ANSIBLE)
    if events.unreachable and events.outcome is None:
        return HostReport(host=name, environment=environment, status="unreachable", error=events.unreachable)
    if events.lock_holder is not None:
        state, sentence = events.lock_state or lock_report(events.lock_holder)
        return HostReport(host=name, environment=environment, status="locked", error=sentence, lock=state)
    if events.outcome is None:
        failure = events.failure or {}
        if failure.get("step") == "lock":  # another run holds some other host: nothing was changed here
            return HostReport(host=name, environment=environment, status="skipped", error=failure.get("msg"))
        step = failure.get("step") or "ansible"
        return HostReport(host=name, environment=environment, status="failed", error=f"{step}: {failure.get('msg')}")
    return None


def deploy_report(environment: str, name: str, events: HostEvents | None) -> HostReport:
    early = _unfinished(environment, name, events)
    if early is not None:
        return early
    outcome = events.outcome  # type: ignore[union-attr]
    action, result = outcome["action"], outcome["result"]
    from_release, to_release, live = outcome.get("from_release"), outcome.get("to_release"), outcome.get("live_release")
    seconds = outcome.get("steps") or {}
    if result == "planned":
        return HostReport(host=name, environment=environment, status="planned", action=action,
                          from_release=from_release, to_release=to_release, live_release=live,
                          details={"reason": outcome.get("reason", ""), "diffs": events.diffs})  # type: ignore[union-attr]
    if result == "ok":
        return HostReport(host=name, environment=environment, status="deployed", action=action,
                          from_release=from_release, to_release=to_release, live_release=to_release, steps=seconds)
    if result == "unchanged":
        return HostReport(host=name, environment=environment, status="unchanged", action=UNCHANGED,
                          from_release=from_release, to_release=to_release, live_release=from_release,
                          steps=seconds)
    if result == "rolled_back":
        return HostReport(host=name, environment=environment, status="rolled_back", action=action,
                          from_release=from_release, to_release=to_release, live_release=live,
                          error=outcome.get("error"), steps=seconds, details={"marked_bad": outcome.get("marked_bad")})
    if result == "skipped":  # --max-fail crossed by earlier batches
        return HostReport(host=name, environment=environment, status="skipped", action=action,
                          from_release=from_release, to_release=to_release, live_release=from_release,
                          error=outcome.get("error"))
    if _true(outcome.get("first_install")):  # the role withdrew it: no earlier release to go back to
        return first_install_report(environment, name, action, str(to_release), str(outcome.get("error") or ""),
                                    withdrawn=_true(outcome.get("withdrawn")), live=live or None,
                                    withdraw_error=outcome.get("withdraw_error") or None, seconds=seconds)
    return HostReport(host=name, environment=environment, status="failed", action=action, from_release=from_release,
                      to_release=to_release, live_release=live,
                      error=outcome.get("error"), steps=seconds)


def rollback_report(environment: str, name: str, events: HostEvents | None) -> HostReport:
    early = _unfinished(environment, name, events)
    if early is not None:
        return early
    outcome = events.outcome  # type: ignore[union-attr]
    previous, target = outcome.get("from_release"), outcome.get("to_release")
    if outcome["result"] == "nothing_live":  # left as it is (roles/golive/tasks/nothing_live.yml)
        return nothing_live_report(environment, name)
    if outcome["result"] == "planned":
        return HostReport(host=name, environment=environment, status="planned", action="rollback",
                          from_release=previous, to_release=target, live_release=previous)
    if outcome["result"] == "skipped":  # --max-fail crossed by earlier batches
        return HostReport(host=name, environment=environment, status="skipped", error=outcome.get("error"))
    details: dict[str, Any] = {"would_choose": outcome["would_choose"]} if outcome.get("would_choose") else {}
    if outcome.get("already") and outcome["result"] in ("ok", "unchanged"):  # already on the environment's target
        restarted = bool(outcome.get("restarted"))
        return HostReport(host=name, environment=environment, status="deployed" if restarted else "unchanged",
                          action="rollback", from_release=target, to_release=target, live_release=target,
                          steps=outcome.get("steps") or {},
                          details={**details, "already": True, **({"restarted": True} if restarted else {})})
    if outcome["result"] == "ok":
        return HostReport(host=name, environment=environment, status="deployed", action="rollback",
                          from_release=previous, to_release=target, live_release=target,
                          steps=outcome.get("steps") or {}, details=details)
    return HostReport(host=name, environment=environment, status="failed", action="rollback", from_release=previous,
                      to_release=target, live_release=outcome.get("live_release"),
                      error=outcome.get("error"), steps=outcome.get("steps") or {}, details=details)


def check_outcome(verb: str, customer: str, environment: str, version: str | None,
                  targets: list[Target]) -> Outcome:
    """--check: what each host would do, and how its live config would change (secret files never)."""
    reports = [t.report for t in targets if t.report is not None]
    failed = [r for r in reports if r.status != "planned"]
    lines = [f"check: {verb} {version or ''} to {customer}/{environment} - nothing was changed".replace("  ", " ")]
    for r in reports:
        if r.status != "planned":
            lines.append(f"  {r.host}: {r.status.upper()}: {r.error}")
            continue
        reason = r.details.get("reason")
        lines.append(f"  {r.host}: {(r.action or '').upper()}: {r.from_release or '(nothing)'} -> {r.to_release}"
                     + (f" ({reason})" if reason else ""))
        for change in r.details.get("diffs", []):
            lines.append(f"    changed {change['file']}")
            lines.extend("      " + line for line in change["diff"].rstrip("\n").splitlines())
    data = {"verb": verb, "check": True, "customer": customer, "environment": environment, "release": version,
            "ok": not failed, "engine": "ansible", "hosts": [r.as_dict() for r in reports]}
    return Outcome(data, "\n".join(lines), failed=bool(failed))


if __name__ == "__main__":
    sys.stdout.write(hand_run_environment())

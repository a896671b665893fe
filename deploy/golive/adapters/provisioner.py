"""golive provision's items as real pyinfra operations (apt.packages, server.group, server.user,
files.directory, files.put, systemd.daemon_reload/service, and the user's own deploy files), added
to golive's own pyinfra State (adapters.transport.Fleet) in pyinfra's API mode.

pyinfra reads each operation's facts when the operation is added (State.check_for_changes): that is
when it knows whether, and with which commands, the operation would change the host. --plan stops
there and reports those commands; a provision then runs them (pyinfra.api.operations.run_ops), and
an operation whose facts already match runs nothing ("no change").
"""

from __future__ import annotations

import contextlib
import io
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta, add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state
from pyinfra.operations import apt, files, server, systemd

from golive.agent.hostagent import UNIT_REPORT, unit_report_text
from golive.core.errors import BadInput, Problem
from golive.core.provision import DeployFile, Directory, File, Group, Item, ItemStatus, Package, Service, User

# What add_hosts needs of one host: its name, pyinfra host, items, rendered contents (by item key),
# variables (host.data of a user's deploy file), sudo, and its secret values.
HostWork = tuple[str, Any, tuple[Item, ...], dict[str, bytes], dict[str, Any], bool, frozenset[str]]


@dataclass
class ItemRun:
    """One item of one host: its pyinfra operations, what they would do, and then what they did."""

    host: str
    item: str  # the item's key: "package tree", "user northwind", "deploy provision/extra.py: server.shell"
    ops: list[tuple[str, OperationMeta]] = field(default_factory=list)  # (op hash, its meta)
    commands: list[str] = field(default_factory=list)  # what it would run (secret file contents never)
    status: ItemStatus = "unchanged"
    error: str = ""
    unit: str = ""  # a service item's unit: a failure quotes the end of its journal
    contents: dict[str, bytes] = field(default_factory=dict)  # the files it writes: {dest: content}
    diff: list[str] = field(default_factory=list)  # --plan: how those files would change

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"item": self.item, "status": self.status}
        if self.commands:
            row["commands"] = list(self.commands)
        if self.diff:
            row["diff"] = list(self.diff)
        if self.error:
            row["error"] = self.error
        return row


def describe(command: Any) -> str:
    """A command as the plan shows it: shell commands with pyinfra's masked parts masked, an upload
    by its destination only (its content may hold secrets)."""
    if isinstance(command, StringCommand):
        return command.get_masked_value()
    if isinstance(command, FileUploadCommand):
        return f"upload {command.dest}"
    if isinstance(command, FunctionCommand):
        return f"python: {getattr(command.function, '__name__', 'function')}"
    return type(command).__name__


def _mode(mode: int | None) -> str | None:
    return None if mode is None else f"{mode:04o}"


class Provisioner:
    """Adds a host's items to the state as operations (reading facts), then runs them all."""

    def __init__(self, state: Any, workspace: Path) -> None:
        self.state = state
        self.workspace = workspace
        self.runs: dict[str, list[ItemRun]] = {}
        self.pyinfra_hosts: dict[str, Any] = {}
        self.skipped: set[str] = set()  # hosts with nothing to change: not run
        self.secrets: dict[str, frozenset[str]] = {}  # per host: no diff shows a file holding one
        self.sudo: dict[str, bool] = {}

    def _op(self, run: ItemRun, pyinfra_host: Any, operation: Any, **arguments: Any) -> OperationMeta:
        meta: OperationMeta = add_op(self.state, operation, host=pyinfra_host, name=run.item, **arguments)[pyinfra_host]
        run.ops.append((self._last_hash(pyinfra_host), meta))
        return meta

    @staticmethod
    def _last_hash(pyinfra_host: Any) -> str:
        return str(pyinfra_host.op_hash_order[-1])

    def add_hosts(self, work: Iterable[HostWork], *, plan: bool) -> None:
        """add_host for each (name, pyinfra host, items, contents, variables, sudo, secrets), the
        hosts in parallel (each reads its own facts; pyinfra keeps the current host per greenlet)."""
        import gevent

        def one(entry: HostWork) -> None:
            name, pyinfra_host, items, contents, variables, sudo, secrets = entry
            with ctx_host.use(pyinfra_host):
                self.add_host(name, pyinfra_host, items, contents, variables, plan=plan, sudo=sudo, secrets=secrets)

        work = list(work)
        # The state is set once for all of them: each operation's own ctx_state.use() would
        # otherwise unset it, on leaving, under the feet of the other hosts' greenlets.
        with ctx_state.use(self.state):
            greenlets = [gevent.spawn(one, entry) for entry in work]
            gevent.joinall(greenlets)
            for greenlet in greenlets:
                if greenlet.exception is not None:
                    raise greenlet.exception
            # The users' deploy files one host after the other: their operations are told apart by
            # what each adds to pyinfra's shared operation names, which no other host may touch then.
            for name, pyinfra_host, items, *_ in work:
                if pyinfra_host in self.state.active_hosts:
                    with ctx_host.use(pyinfra_host):
                        self._deploy_files(name, pyinfra_host, items, plan=plan)

    def add_host(self, name: str, pyinfra_host: Any, items: Iterable[Item], contents: dict[str, bytes],
                 variables: dict[str, Any], *, plan: bool, sudo: bool = False,
                 secrets: frozenset[str] = frozenset()) -> list[ItemRun]:
        """Each item as operations on this host; `contents` the rendered file of each File and
        Service item (by key). A fact that cannot be read fails the item and leaves the host out
        of the run; an exception in a user's deploy file is a mistake in the workspace (BadInput)."""
        runs = self.runs.setdefault(name, [])
        self.pyinfra_hosts[name] = pyinfra_host
        self.secrets[name] = secrets
        self.sudo[name] = sudo
        pyinfra_host.data.override_datas.update(variables)  # a user's deploy file reads host.data.<variable>
        if sudo:  # pyinfra's global argument from host data: every operation, the user's own too
            pyinfra_host.data.override_datas["_sudo"] = True
        for item in items:
            if isinstance(item, DeployFile):
                continue  # after every host's own items (add_hosts)
            run = ItemRun(name, item.key, unit=item.unit if isinstance(item, Service) else "")
            if isinstance(item, File):
                run.contents[item.dest] = contents.get(item.key, b"")
            elif isinstance(item, Service) and item.src:
                run.contents[item.unit_path] = contents.get(item.key, b"")
            runs.append(run)
            try:
                self._add_item(run, pyinfra_host, item, contents.get(item.key, b""))
            except (PyinfraError, OSError, EOFError) as error:
                run.status, run.error = "failed", f"{name}: {item.key}: cannot read its state: {error}"
                self.state.active_hosts.discard(pyinfra_host)
                break
        for run in runs:
            if plan:
                self._planned(run, pyinfra_host)
        return runs

    def _deploy_files(self, name: str, pyinfra_host: Any, items: Iterable[Item], *, plan: bool) -> None:
        runs = [run for item in items if isinstance(item, DeployFile)
                for run in self._deploy_file(name, pyinfra_host, item)]
        self.runs.setdefault(name, []).extend(runs)
        for run in runs:
            if plan:
                self._planned(run, pyinfra_host)

    def _add_item(self, run: ItemRun, host: Any, item: Item, content: bytes) -> None:
        if isinstance(item, Package):
            self._op(run, host, apt.packages, packages=[item.spec])
        elif isinstance(item, Group):
            self._op(run, host, server.group, group=item.name, system=item.system)
        elif isinstance(item, User):
            self._op(run, host, server.user, user=item.name, group=item.group or None,
                     groups=list(item.groups) or None, home=item.home or None, shell=item.shell or None,
                     system=item.system, create_home=bool(item.home))
        elif isinstance(item, Directory):
            self._op(run, host, files.directory, path=item.path, user=item.owner or None, group=item.group or None,
                     mode=_mode(item.mode))
        elif isinstance(item, File):
            self._op(run, host, files.put, src=io.BytesIO(content), dest=item.dest, user=item.owner or None,
                     group=item.group or None, mode=_mode(item.mode))
        elif isinstance(item, Service):
            changed_unit = False
            if item.src:
                unit = self._op(run, host, files.put, src=io.BytesIO(content), dest=item.unit_path, user="root",
                                group="root", mode="0644")
                changed_unit = bool(unit.will_change)
                if changed_unit:  # systemd reads a changed unit file only when told to
                    self._op(run, host, systemd.daemon_reload)
            self._op(run, host, systemd.service, service=item.unit, running=bool(item.running),
                     enabled=item.enabled, restarted=changed_unit and bool(item.running))

    def _deploy_file(self, name: str, pyinfra_host: Any, item: DeployFile) -> list[ItemRun]:
        """Run a user's pyinfra deploy file for this host, as pyinfra's CLI would: its operations
        (pyinfra.operations.*) are added to this state, one item each."""
        path = self.workspace / item.path
        before = len(pyinfra_host.op_hash_order)
        names_before = {op_hash: set(meta.names) for op_hash, meta in self.state.op_meta.items()}
        try:
            code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
            with ctx_state.use(self.state), ctx_host.use(pyinfra_host):
                exec(code, {"__name__": "__main__", "__file__": str(path)})  # noqa: S102 - the user's own deploy
        except Exception as error:  # the user's code: whatever it raises is reported with its line
            line = next((frame.lineno for frame in reversed(traceback.extract_tb(error.__traceback__))
                         if frame.filename == str(path)), None)
            where = f"{item.path}:{line}" if line else item.path
            raise BadInput(Problem(where, f"pyinfra deploy file (provision, host {name}): "
                                          f"{type(error).__name__}: {error}")) from None
        runs = []
        for number, op_hash in enumerate(pyinfra_host.op_hash_order[before:], start=1):
            # The n-th operation of every host shares one entry of names (pyinfra's API mode orders
            # operations by position): this host's is the one its deploy file just added (or, the
            # same on another host, the only one).
            data = self.state.get_op_data_for_host(pyinfra_host, op_hash)
            names = self.state.get_op_meta(op_hash).names
            new = names - names_before.get(op_hash, set())
            label = data.global_arguments.get("name") or (
                next(iter(new)) if len(new) == 1 else next(iter(names)) if len(names) == 1 else f"operation {number}")
            run = ItemRun(name, f"{item.key}: {label}")
            run.ops.append((op_hash, data.operation_meta))
            runs.append(run)
        return runs

    @staticmethod
    def _will_change(run: ItemRun) -> bool:
        """Whether any of the item's operations would run a command (known once its facts are read)."""
        return any(meta._maybe_is_change is not False for _, meta in run.ops)

    def _planned(self, run: ItemRun, pyinfra_host: Any) -> None:
        """What the item's operations would run now (their facts as read when they were added)."""
        if run.status == "failed" or run.commands:
            return
        with ctx_state.use(self.state), ctx_host.use(pyinfra_host):
            for op_hash, meta in run.ops:
                if meta._maybe_is_change is False:
                    continue
                data = self.state.get_op_data_for_host(pyinfra_host, op_hash)
                for command in data.command_generator():
                    run.commands.append(describe(command))
                    if isinstance(command, FileUploadCommand) and command.dest in run.contents:
                        run.diff.extend(self._diff(run.host, command.dest, run.contents[command.dest]))
        run.status = "would_change" if run.commands else "unchanged"

    def _shell(self, name: str, command: str) -> tuple[bool, Any]:
        """A command of golive's own on a host (reading only), with sudo where its operations have it."""
        sudo = {"_sudo": True} if self.sudo.get(name) else {}
        result: tuple[bool, Any] = self.pyinfra_hosts[name].run_shell_command(command, **sudo)
        return result

    def _diff(self, name: str, dest: str, new: bytes) -> list[str]:
        """How a file's content would change, as a unified diff; only a message when either side holds
        a secret (a diff would show it, whatever masking did to the lines around it)."""
        import difflib
        import shlex

        ok, output = self._shell(name, f"cat {shlex.quote(dest)} 2>/dev/null || true")
        old = "\n".join(line.line for line in output if line.buffer_name == "stdout") if ok else ""
        text = new.decode("utf-8", "replace")
        if any(secret and (secret in text or secret in old) for secret in self.secrets.get(name, ())):
            return [f"(the content of {dest} differs; not shown: it holds a secret)"]
        return [line.rstrip("\n") for line in difflib.unified_diff(
            old.splitlines(), text.splitlines(), f"{dest} (on the host)", f"{dest} (declared)", lineterm="")]

    def _journal(self, name: str, unit: str) -> str:
        """The unit's state and the end of its journal, where a service says why it did not start, in
        the host agent's words for a unit that does not serve."""
        import shlex

        try:
            ok, output = self._shell(name, UNIT_REPORT % {"unit": shlex.quote(unit)})
        except (PyinfraError, OSError, EOFError):
            return ""
        return unit_report_text(unit, "\n".join(line.line for line in output)) if ok else ""

    def execute(self) -> None:
        """Run every host's operations (in order, each on all hosts in parallel), then record per
        item what happened: changed, no change, failed (with what the host said), or not run."""
        for name, runs in self.runs.items():
            # Nothing to change on a host (every operation's facts already match): its operations are
            # not run again, which would only read the same facts a second time.
            if all(run.status != "failed" and not self._will_change(run) for run in runs):
                self.state.active_hosts.discard(self.pyinfra_hosts[name])
                for run in runs:
                    run.status = "unchanged"
                self.skipped.add(name)
        if self.state.active_hosts:
            # "No hosts remaining!" when every host failed: each is reported below
            with contextlib.suppress(PyinfraError):
                run_ops(self.state)
        for name, runs in self.runs.items():
            for run in runs:
                if run.status == "failed" or name in self.skipped:
                    continue
                metas = [meta for _, meta in run.ops]
                if any(meta.is_complete() and not meta.did_succeed() for meta in metas):
                    failed = next(meta for meta in metas if meta.is_complete() and not meta.did_succeed())
                    # what the host said about it: its error output, else the end of its output
                    said = [line.strip() for line in failed.stderr_lines if line.strip()] or \
                        [line.strip() for line in failed.stdout_lines if line.strip()]
                    run.status = "failed"
                    run.error = f"{run.host}: {run.item}: " + (" | ".join(said[-4:]) or "failed")
                    if run.unit:
                        run.error += self._journal(name, run.unit)
                elif not all(meta.is_complete() for meta in metas):
                    run.status = "not_run"
                else:
                    run.commands = [describe(c) for meta in metas for c in (meta._commands or [])]
                    run.status = "changed" if any(meta.did_change() for meta in metas) else "unchanged"

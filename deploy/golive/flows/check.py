"""golive check CUSTOMER ENV: the Testinfra checks in checks/, run over golive's own SSH sessions.

Every host is connected once, in parallel, host keys verified; Testinfra's commands run over those
connections (golive.adapters.testinfra_backend). pytest runs in-process with only the plugins the
checks need, named here (Testinfra's and golive.flows.checkplugin, which the package provides: a
workspace needs no conftest.py), handed this run's CheckRun as a plugin, and
the result of each host is recorded in its ledger: `action: check`, `result: passed|failed`, the
release and its config hash.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from golive.adapters.progress import Progress
from golive.adapters.remote import call_agent
from golive.adapters.testinfra_backend import CommandFanOut, host_spec
from golive.adapters.transport import Connected, Fleet
from golive.core.errors import BadInput, Problem
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.redact import Redactor
from golive.flows import checkplugin, steps
from golive.flows.checkplugin import mask_report
from golive.flows.session import mask_for, run_context
from golive.workspace import Workspace

CHECKS_DIR = "checks"
PASSED_KEPT = 200  # names of passed checks a ledger entry keeps
# golive's check plugin (also the `golive` pytest11 entry point, which plain pytest loads by itself)
CHECK_PLUGIN = "golive.flows.checkplugin"


@dataclass
class HostResult:
    host: str
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (check, why)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.passed)


class ResultCollector:
    """A pytest plugin: outcome of every check per host, and any collection error. It masks every
    report first (tryfirst), so pytest's own JUnit XML never holds a secret in any form."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.hosts: dict[str, HostResult] = {}
        self.host_of: dict[str, str] = {}
        self.collection_errors: list[str] = []
        self.items = 0
        self.interrupted = False  # Ctrl-C, which pytest catches and turns into its exit status 2
        self.output = io.StringIO()

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        self.items = len(items)
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            testinfra_host = params.get("_testinfra_host")
            if testinfra_host is not None:
                self.host_of[item.nodeid] = testinfra_host.backend.get_hostname()

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        # the user's Ctrl-C exactly: pytest's own stops (maxfail, pytest.exit) are subclasses or others
        self.interrupted = excinfo.type is KeyboardInterrupt

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectreport(self, report: Any) -> None:
        mask_report(report, self.redactor)
        if report.failed:
            self.collection_errors.append(str(report.longrepr))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: Any) -> None:
        mask_report(report, self.redactor)
        host = self.host_of.get(report.nodeid)
        if host is None:
            return
        result = self.hosts.setdefault(host, HostResult(host))
        name = report.nodeid.split("::", 1)[-1].split("[", 1)[0]
        where = report.nodeid.split("::", 1)[0]
        label = f"{where}::{name}"
        if report.failed:
            result.failed.append((label, _reason(report, self.redactor)))
        elif report.skipped and report.when in ("setup", "call"):
            result.skipped.append(label)
        elif report.passed and report.when == "call":
            result.passed.append(label)


def _reason(report: Any, redactor: Redactor) -> str:
    """The first line of a failure (the report is masked already; the cut is the redactor's)."""
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else "failed"
    for prefix in ("AssertionError: ", "Failed: "):
        first = first.removeprefix(prefix)
    return ("(setup) " if report.when == "setup" else "") + redactor.head(first, 300, ellipsis="")


def _pytest_args(checks: Path, hosts: Iterable[Host], junit: str | None) -> list[str]:
    specs = [host_spec(h) for h in hosts]
    ini = checks / "pytest.ini"
    args = [str(checks), "--rootdir", str(checks), "-c", str(ini) if ini.is_file() else os.devnull,
            "-p", "testinfra.plugin", "-p", CHECK_PLUGIN,
            "-p", "no:cacheprovider", "-p", "no:faulthandler", "-qq", "--tb=short",
            "--import-mode=importlib", "--hosts", ",".join(specs)]
    if junit:
        args += ["--junitxml", str(Path(junit).resolve())]
    return args


def run_checks(ws: Workspace, customer: str, environment: str, hosts: list[Host], connected: dict[str, Connected],
               release: str | None, junit: str | None,
               parallel: Any) -> tuple[ResultCollector, checkplugin.CheckRun]:
    run = checkplugin.CheckRun(ws, customer, environment, {h.name: h for h in hosts}, release)
    run.parallel = parallel
    run.fan_out = CommandFanOut({h.name: connected[h.name] for h in hosts}, parallel)
    collector = ResultCollector(ws.redactor)
    # Only the plugins the checks need: a developer's unrelated pytest plugins stay out of a gate.
    previous = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        # pytest's own report goes to a buffer: golive prints its summary, and stdout stays clean for --json.
        # The run itself is handed to the check plugin as a plugin object (checkplugin.pytest_configure).
        with contextlib.redirect_stdout(collector.output):
            code = pytest.main(_pytest_args(ws.root / CHECKS_DIR, hosts, junit), plugins=[collector, run])
    finally:
        for testinfra_host in run.testinfra_hosts:
            testinfra_host.backend.fan_out = None  # Testinfra keeps its host objects for the process
        if previous is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = previous
    if collector.interrupted:
        raise KeyboardInterrupt  # golive says where each host was, and exits 130
    if collector.collection_errors:
        raise BadInput([Problem(CHECKS_DIR, e.strip().splitlines()[-1] if e.strip() else "cannot be collected")
                        for e in collector.collection_errors])
    if int(code) in (2, 3, 4):  # interrupted, internal error, usage error: not a verdict on the hosts
        raise BadInput(f"{CHECKS_DIR}/: pytest could not run the checks (pytest exit {int(code)})")
    return collector, run


def record(ws: Workspace, customer: str, environment: str, fleet: Fleet, connected: dict[str, Connected],
           results: dict[str, HostResult], run: checkplugin.CheckRun) -> dict[str, str | None]:
    """One ledger entry per checked host, in parallel: the promotion gate and preflight read them."""
    context = run_context("check", customer, environment, None, engine="testinfra")
    names = [name for name in results if connected.get(name) and connected[name].ok]

    def one(name: str) -> str | None:
        result = results[name]
        facts = run.facts.get(name)
        summary = f"{len(result.passed)} passed" if result.ok else \
            f"{len(result.failed)} of {len(result.failed) + len(result.passed)} failed: " + \
            ws.redactor.head("; ".join(f"{check.rsplit('::', 1)[-1]}: {why}" for check, why in result.failed), 900,
                             ellipsis="")
        # the checks that passed, by name: the go/no-go report lists them (cut: the ledger is no log)
        passed = [ws.redactor.text(check) for check in result.passed[:PASSED_KEPT]] if result.ok else None
        entry = context.entry(name, result="passed" if result.ok else "failed", detail=summary,
                              release=facts.current if facts else None,
                              desired_release=facts.release if facts else None, checks=passed)
        request = {"root": ws.app.root, "token": context.token, "mask": mask_for(connected[name].host),
                   "steps": [steps.record(entry)]}
        answer = call_agent(connected[name], request, timeout=ws.app.timeouts.begin)
        return None if answer.ok else answer.error

    return dict(zip(names, fleet.map(one, names), strict=True))


def check(ws: Workspace, customer: str, environment: str, *, junit: str | None = None,
          only: list[str] | None = None, progress: Progress, release: str | None = None) -> Outcome:
    started = time.monotonic()
    hosts = list(ws.hosts(customer, environment, only))
    if not (ws.root / CHECKS_DIR).is_dir():
        raise BadInput(f"{ws.root}: no {CHECKS_DIR}/ folder: `golive init` writes golive's generic checks "
                       f"(see checks/README.md in golive's repository)")
    problems: list[Problem] = []
    for host in hosts:  # template errors stop here, before any host is touched
        try:
            ws.render(host, release or "unreleased")
        except BadInput as error:
            problems.extend(p for p in error.problems if p not in problems)
    if problems:
        raise BadInput(problems)
    fleet = Fleet(hosts)
    timings: dict[str, float] = {}
    try:
        connected = fleet.connect()
        timings["connect"] = round(time.monotonic() - started, 3)
        reachable = [h for h in hosts if connected[h.name].ok]
        results: dict[str, HostResult] = {}
        run = None
        if reachable:
            collector, run = run_checks(ws, customer, environment, reachable, connected, release, junit, fleet.map)
            results = {h.name: collector.hosts.get(h.name, HostResult(h.name)) for h in reachable}
            timings["checks"] = round(time.monotonic() - started - timings["connect"], 3)
            recorded = record(ws, customer, environment, fleet, connected, results, run)
        else:
            recorded = {}
    finally:
        fleet.close()
    timings["total"] = round(time.monotonic() - started, 3)
    outcome = _outcome(customer, environment, hosts, connected, results, recorded, run, timings)
    from golive.flows import database

    return database.with_database_checks(ws, customer, environment, outcome, progress)


def _outcome(customer: str, environment: str, hosts: list[Host], connected: dict[str, Connected],
             results: dict[str, HostResult], recorded: dict[str, str | None], run: checkplugin.CheckRun | None,
             timings: dict[str, float]) -> Outcome:
    rows: list[dict[str, Any]] = []
    lines = [f"check {customer}/{environment}:"]
    for host in hosts:
        link = connected[host.name]
        if not link.ok:
            rows.append({"host": host.name, "result": "unreachable", "error": link.error})
            lines.append(f"  {host.name}: UNREACHABLE - {link.error}")
            continue
        result = results[host.name]
        facts = run.facts.get(host.name) if run else None
        row = {"host": host.name, "result": "passed" if result.ok else "failed", "passed": result.passed,
               "failed": [{"check": c, "reason": r} for c, r in result.failed], "skipped": result.skipped,
               "release": facts.current if facts else None, "desired_release": facts.release if facts else None,
               "recorded": recorded.get(host.name) is None}
        if recorded.get(host.name):
            row["record_error"] = recorded[host.name]
        rows.append(row)
        total = len(result.passed) + len(result.failed)
        if result.ok:
            lines.append(f"  {host.name}: {total} checks passed (release {row['release']})")
        else:
            lines.append(f"  {host.name}: {len(result.failed)} of {total} checks FAILED")
            lines.extend(f"    {check}: {why}" for check, why in result.failed)
        if recorded.get(host.name):
            lines.append(f"    (not recorded in the ledger: {recorded[host.name]})")
    unreachable = [r for r in rows if r["result"] == "unreachable"]
    failed = [r for r in rows if r["result"] == "failed"]
    verdict = "all checks passed" if not failed and not unreachable else \
        f"{len(failed)} host(s) failed checks, {len(unreachable)} unreachable"
    lines.append(f"{verdict} ({timings.get('total', 0):.2f}s)")
    data = {"customer": customer, "environment": environment, "passed": not failed and not unreachable,
            "hosts": rows, "seconds": timings}
    return Outcome(data, "\n".join(lines), finding=bool(failed), failed=bool(unreachable))

"""The CLI verbs that reach hosts, each a few lines over golive.flows (and the checks/drift modules)."""

from __future__ import annotations

import argparse

from golive.core.errors import BadInput
from golive.core.outcome import Outcome
from golive.progress import Progress
from golive.workspace import Workspace


def _progress(ws: Workspace, args: argparse.Namespace) -> Progress:
    return Progress(ws.redactor, quiet=args.json)


def _engine(args: argparse.Namespace):
    if getattr(args, "engine", "pyinfra") == "ansible":
        from golive.engines import ansible

        return ansible
    if getattr(args, "check", False) or getattr(args, "diff", False):
        raise BadInput("--check/--diff belong to the ansible engine; use `golive plan` with the pyinfra engine")
    return None


def plan(ws: Workspace, args: argparse.Namespace) -> Outcome:
    from golive.flows.deploy import plan as run

    return run(ws, args.customer, args.environment, args.release, args.hosts, _progress(ws, args))


def deploy(ws: Workspace, args: argparse.Namespace) -> Outcome:
    engine = _engine(args)
    if engine is not None:
        return engine.deploy(ws, args, _progress(ws, args))
    from golive.flows.deploy import deploy as run

    return run(ws, args.customer, args.environment, args.release, serial=args.serial, max_fail=args.max_fail,
               only=args.hosts, operator=args.operator, override_promotion=args.override_promotion,
               progress=_progress(ws, args))


def rollback(ws: Workspace, args: argparse.Namespace) -> Outcome:
    engine = _engine(args)
    if engine is not None:
        return engine.rollback(ws, args, _progress(ws, args))
    from golive.flows.deploy import rollback as run

    return run(ws, args.customer, args.environment, args.to_version, force=args.force, serial=args.serial,
               max_fail=args.max_fail, only=args.hosts, operator=args.operator, progress=_progress(ws, args))


def status(ws: Workspace, args: argparse.Namespace) -> Outcome:
    from golive.flows.inspect import status as run

    return run(ws, args.customer, args.environment, _progress(ws, args))


def history(ws: Workspace, args: argparse.Namespace) -> Outcome:
    from golive.flows.inspect import history as run

    return run(ws, args.customer, args.environment, args.hosts, args.limit, _progress(ws, args))


def unlock(ws: Workspace, args: argparse.Namespace) -> Outcome:
    from golive.flows.inspect import unlock as run

    return run(ws, args.customer, args.environment, args.reason, args.force, args.hosts, None, _progress(ws, args))


def check(ws: Workspace, args: argparse.Namespace) -> Outcome:
    from golive.checks import check as run

    return run(ws, args.customer, args.environment, junit=args.junit, only=args.hosts, progress=_progress(ws, args))


def drift(ws: Workspace, args: argparse.Namespace) -> Outcome:
    from golive.drift import drift as run

    return run(ws, args.customer, args.source, args.target, progress=_progress(ws, args))


def preflight(ws: Workspace, args: argparse.Namespace) -> Outcome:
    from golive.preflight import preflight as run

    return run(ws, args.customer, release=args.release, report_dir=args.report, junit=args.junit,
               progress=_progress(ws, args))

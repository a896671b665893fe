"""The golive command line: reads the arguments, calls one flow (or engine) with plain keywords, and
decides the exit code. It is the only module that knows argparse or exit codes:
0 success, 1 a finding (check failed, drift, no-go), 2 bad input (no host touched),
3 failure on hosts (the report says what was rolled back and where each host is).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from golive.core.errors import BadInput, GoliveError, merged
from golive.core.outcome import Outcome
from golive.core.redact import Redactor

if TYPE_CHECKING:
    from golive.adapters.progress import Progress
    from golive.workspace import Workspace

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT, EXIT_HOST_FAILURE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
REMOTE_VERBS = {"plan", "deploy", "rollback", "status", "history", "check", "drift", "preflight", "unlock", "backups",
                "provision"}


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message to one line naming the problem."""

    def error(self, message: str) -> None:  # type: ignore[override]
        verb = self.prog.removeprefix("golive").strip()  # "golive: error:" is printed once, by main
        raise BadInput(f"{verb}: {message}" if verb else message)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--workspace", "-w", default=os.environ.get("GOLIVE_WORKSPACE", "."),
                        help="workspace directory (default: current directory)")
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--vault-password-file", help="Ansible Vault password file "
                                                      "(default: $GOLIVE_VAULT_PASSWORD_FILE or ansible.cfg)")
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail: each host's steps and their seconds after a deploy or rollback, the "
                             "traceback of an internal error (secrets stay masked)")
    return common


def _rollout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["pyinfra", "ansible"], default="pyinfra")
    parser.add_argument("--serial", help="rolling batches: a host count (2) or a percentage (25%%)")
    parser.add_argument("--max-fail", help="stop starting batches once this share of hosts failed (e.g. 20%%)")
    parser.add_argument("--host", action="append", dest="hosts", metavar="HOST", help="limit to these hosts")
    parser.add_argument("--operator", default=None, help="who is deploying (default: $GOLIVE_OPERATOR or $USER)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(prog="golive", description="Move a verified release from staging to a client's "
                                                "production hosts, check it, detect drift, roll back.")
    parser.add_argument("--version", action="version", version="golive " + __import__("golive").__version__)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, parents=[common], help=help_text, description=help_text)

    p = verb("init", "create a workspace for a new product: golive.yml, an example customer, a template, checks")
    p.add_argument("directory", nargs="?", metavar="DIR", help="the new workspace (default: --workspace, or here)")
    p.add_argument("--name", help="the product's name (default: the folder's name)")
    p = verb("inventory", "show every host with its environment and merged variables (secrets masked)")
    p.add_argument("customer")
    p = verb("validate", "check the workspace: YAML, schema, templates; report every problem at once")
    p.add_argument("customer", nargs="?")
    p = verb("render", "render a customer's config files for an environment, without touching a host")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--host")
    p.add_argument("--out", help="write files under OUT/<host>/ (secret files 0600) instead of showing them")
    p.add_argument("--release", help="version to render for (default: 'unreleased')")
    p = verb("plan", "show per host what a deploy would change (exact), changing nothing")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--release", required=True)
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST")
    p = verb("deploy", "deploy a release: lock, upload, unpack, configure, cutover, restart, verify, record")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--release", required=True)
    _rollout_options(p)
    p.add_argument("--override-promotion", metavar="REASON",
                   help="deploy to an environment even though its source environment has not verified this artifact")
    p.add_argument("--check", action="store_true", help="(ansible engine) dry run")
    p.add_argument("--diff", action="store_true", help="(ansible engine) show config diffs, secrets masked")
    p = verb("rollback", "put the previous good (or a named kept) release back live on every host")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--to", dest="to_version", metavar="VERSION")
    p.add_argument("--force", action="store_true", help="allow a release marked bad")
    p.add_argument("--restore-db", action="store_true",
                   help="restore the database backup taken at the target's schema (its cost is shown first)")
    p.add_argument("--down", action="store_true", help="run the live release's down-migrations instead")
    _rollout_options(p)
    p = verb("status", "live release per host; with no customer, every customer x environment")
    p.add_argument("customer", nargs="?")
    p.add_argument("environment", nargs="?")
    p = verb("history", "the deploy/rollback ledger of an environment's hosts")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST")
    p.add_argument("--limit", type=_positive, default=20, help="the newest N entries per host (default 20)")
    p = verb("check", "run the Testinfra checks in checks/ against an environment")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--junit", metavar="FILE")
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST")
    p = verb("drift", "compare staging with production and each host with its desired state")
    p.add_argument("customer")
    p.add_argument("--from", dest="source", default="staging")
    p.add_argument("--to", dest="target", default="production")
    p = verb("preflight", "the go/no-go gate for production, with a report a client can read")
    p.add_argument("customer")
    p.add_argument("--release")
    p.add_argument("--report", metavar="DIR")
    p.add_argument("--junit", metavar="FILE")
    p = verb("package", "make a reproducible release artifact of a directory, with its manifest and .sha256")
    p.add_argument("directory")
    p.add_argument("--version", dest="release", required=True, metavar="V", help="the release version")
    p.add_argument("--name", help="the product name (default: golive.yml application.name)")
    p.add_argument("--out", metavar="STORE", help="where to write it (default: golive.yml release_store.path)")
    p.add_argument("--requires", action="append", metavar="REQ",
                   help="what the release needs from a host, written into its manifest (repeatable): "
                        "python>=3.11, glibc>=2.28, arch=x86_64,aarch64")
    p = verb("backups", "an environment's database backups; rehearse a restore, or restore one by id")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--restore", metavar="ID", help="restore this backup under the live release (needs --reason)")
    p.add_argument("--rehearse", metavar="ID", nargs="?", const="latest",
                   help="restore a backup (default: the newest) into a scratch database and time it")
    p.add_argument("--reason", default="")
    p.add_argument("--operator", default=None)
    p = verb("provision", "bring an environment's hosts to what golive.yml's provision: declares (packages, users, "
                          "directories, files, systemd units), changing only what differs")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--plan", action="store_true", help="show per host and item what would change, changing nothing")
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST", help="limit to these hosts")
    p.add_argument("--engine", choices=["pyinfra", "ansible"], default="pyinfra")
    p = verb("unlock", "clear a deploy lock (recorded in history with the reason)")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--reason", required=True)
    p.add_argument("--force", action="store_true", help="clear it even if its holder looks alive")
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST")
    return parser


def _engine(args: argparse.Namespace) -> Any:
    """The module that deploys and rolls back: golive.flows.deploy (pyinfra) or golive.engines.ansible."""
    if args.engine == "ansible":
        from golive.engines import ansible

        return ansible
    if getattr(args, "check", False) or getattr(args, "diff", False):
        raise BadInput("--check/--diff belong to the ansible engine; use `golive plan` with the pyinfra engine")
    from golive.flows import deploy

    return deploy


def check_names(args: argparse.Namespace) -> None:
    """Every name from the command line that becomes a path (a directory, a file, a release id) is
    checked here, where it enters, before anything reads the workspace for it."""
    from golive.core.errors import Problem
    from golive.core.model import name_problem
    from golive.core.release import VERSION_PATTERN

    problems = []
    for option, what, values in (("CUSTOMER", "customer", [getattr(args, "customer", None)]),
                                 ("ENVIRONMENT", "environment", [getattr(args, "environment", None)]),
                                 ("--host", "host", list(getattr(args, "hosts", None) or [])
                                  + [getattr(args, "host", None)])):
        for value in values:
            problem = name_problem(value, what) if value is not None else None
            if problem:
                problems.append(Problem(f"command line {option}", problem))
    for option, value in (("--release", getattr(args, "release", None)),
                          ("--to", getattr(args, "to_version", None))):
        if value is not None and not VERSION_PATTERN.fullmatch(value):
            problems.append(Problem(f"command line {option}", f"release version {value!r} is not a valid version "
                                                               f"(letters, digits, . _ + -)"))
    if problems:
        raise BadInput(problems)


def dispatch(ws: Workspace | None, args: argparse.Namespace, progress: Progress) -> Outcome:
    """Run the verb. Each verb's flow is imported only when that verb runs (start-up time matters)."""
    verb = args.verb
    if verb == "package":  # the only verb that can run without a workspace
        from golive.flows.package import package

        return package(args.directory, args.release, name=args.name, out=args.out, ws=ws, requires=args.requires)
    assert ws is not None
    if verb in ("inventory", "validate", "render"):
        from golive.flows import offline

        if verb == "inventory":
            return offline.inventory(ws, args.customer)
        if verb == "validate":
            return offline.validate(ws, args.customer)
        return offline.render(ws, args.customer, args.environment, host=args.host, out=args.out, version=args.release)
    if verb == "plan":
        from golive.flows.deploy import plan

        return plan(ws, args.customer, args.environment, args.release, only=args.hosts, progress=progress)
    if verb in ("deploy", "rollback"):
        engine = _engine(args)
        rollout = {"serial": args.serial, "max_fail": args.max_fail, "only": args.hosts, "operator": args.operator,
                   "progress": progress}
        if args.engine == "ansible":
            rollout.update(check=getattr(args, "check", False), diff=getattr(args, "diff", False))
        if verb == "deploy":
            return engine.deploy(ws, args.customer, args.environment, args.release,
                                 override_promotion=args.override_promotion, **rollout)
        return engine.rollback(ws, args.customer, args.environment, args.to_version, force=args.force,
                               restore_db=args.restore_db, down=args.down, **rollout)
    if verb in ("status", "history", "unlock"):
        from golive.flows import inspect

        if verb == "status":
            return inspect.status(ws, args.customer, args.environment, progress=progress)
        if verb == "history":
            return inspect.history(ws, args.customer, args.environment, only=args.hosts, limit=args.limit,
                                   progress=progress)
        return inspect.unlock(ws, args.customer, args.environment, reason=args.reason, force=args.force,
                              only=args.hosts, progress=progress)
    if verb == "backups":
        from golive.flows.database import backups_verb

        return backups_verb(ws, args.customer, args.environment, restore_id=args.restore, rehearse=args.rehearse,
                            reason=args.reason, operator=args.operator, progress=progress)
    if verb == "provision":
        if args.engine == "ansible":
            raise BadInput("provision: --engine ansible is not supported yet (the pyinfra engine provisions)")
        from golive.flows.provision import provision

        return provision(ws, args.customer, args.environment, plan=args.plan, only=args.hosts, progress=progress)
    if verb == "check":
        from golive.flows.check import check

        return check(ws, args.customer, args.environment, junit=args.junit, only=args.hosts, progress=progress)
    if verb == "drift":
        from golive.flows.drift import drift

        return drift(ws, args.customer, args.source, args.target, progress=progress)
    if verb == "preflight":
        from golive.flows.preflight import preflight

        return preflight(ws, args.customer, release=args.release, report_dir=args.report, junit=args.junit,
                         progress=progress)
    raise BadInput(f"unknown verb {verb!r}")  # argparse refuses it first


def _interrupted(args: argparse.Namespace | None, progress: Progress | None, redactor: Redactor) -> None:
    """Ctrl-C: say where each host was and what happens to it now, instead of a traceback."""
    if progress is not None:
        progress.stop()
    seen = progress.whereabouts() if progress is not None else {}
    lines = ["golive: interrupted"]
    if seen and args is not None and args.verb in ("deploy", "rollback"):
        if getattr(args, "engine", "pyinfra") == "ansible":
            after = "ansible-playbook stops after the task it was running"
        else:
            after = "the agent on each host finishes the batch it was running on its own (or rolls it back)"
        lines.append(f"golive: {after}; nothing is left half-switched. Where each host was:")
        lines += [f"  {host}: {where}" for host, where in seen.items()]
        lines.append(f"golive: see where each host is now: golive status {args.customer} {args.environment}")
    elif seen:
        lines.append("golive: nothing was changed by this command; the hosts are as they were")
    for line in lines:
        print(redactor.text(line), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from golive.adapters.progress import say, show_outcome

    redactor = Redactor()
    args = None
    progress = None
    ws = None
    # --json is for programs: nothing it prints is coloured (read from argv too, for a bad command line)
    colour = "--json" not in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        colour = not args.json
        if args.verb in REMOTE_VERBS:
            from golive.adapters.concurrency import patch_for_parallel_ssh

            patch_for_parallel_ssh()
        check_names(args)
        if args.verb == "init":  # the one verb without a workspace yet
            from golive.flows.init import init

            outcome = init(args.directory or args.workspace, name=args.name)
        else:
            from golive.adapters.progress import Progress
            from golive.workspace import Workspace

            if args.verb != "package" or (args.name is None or args.out is None):
                ws = Workspace(args.workspace, args.vault_password_file)
                redactor = ws.redactor
            progress = Progress(redactor, quiet=args.json)
            outcome = dispatch(ws, args, progress)
    except BadInput as error:
        for problem in error.problems:
            say(redactor, "error", str(problem), colour=colour)
        return EXIT_BAD_INPUT
    except GoliveError as error:
        say(redactor, "failed", str(error), colour=colour)
        return error.exit_code
    except KeyboardInterrupt:
        import signal

        # golive is stopping: a second Ctrl-C must not cut short what it says about the hosts
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _interrupted(args, progress, redactor)
        return EXIT_INTERRUPTED
    except SystemExit as stop:  # --help / --version
        return int(stop.code or 0)
    except Exception as error:  # a bug in golive, not a user mistake
        if args is not None and getattr(args, "verbose", 0):
            import traceback

            print(redactor.text(traceback.format_exc()), file=sys.stderr)
        say(redactor, "internal error", f"{type(error).__name__}: {error} (run with -v for details)", colour=colour)
        return EXIT_HOST_FAILURE
    try:
        if args.json:
            # Masked before it is serialised (never after: a secret "true" would mask JSON's own
            # literals); what JSON can only show as text is masked as it becomes text.
            print(json.dumps(redactor.data(outcome.data), indent=2, sort_keys=True,
                             default=lambda value: redactor.text(str(value))))
        elif outcome.text:
            show_outcome(outcome, redactor, verbose=args.verbose)
        sys.stdout.flush()
        for warning in merged(ws.warnings if ws is not None else []):
            say(redactor, "warning", str(warning), colour=colour)
    except BrokenPipeError:  # `golive ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if outcome.failed:
        return EXIT_HOST_FAILURE
    return EXIT_FINDING if outcome.finding else EXIT_OK


def run() -> None:
    """The `golive` command: main(), then leave without the interpreter's tear-down. By the time main
    returns every file golive wrote is closed and every host session has ended; what would remain is
    Python freeing pyinfra's, paramiko's and gevent's objects one by one, ~90 ms on every run."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: the reader has gone
            stream.flush()
    os._exit(code)

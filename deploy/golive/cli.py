"""The golive command line: a thin layer over golive.api and golive.flows.

This is the one place that decides exit codes:
0 success, 1 a finding (check failed, drift, no-go), 2 bad input (no host touched),
3 failure on hosts (the report says what was rolled back and where each host is).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable

from golive.core.errors import BadInput, GoliveError
from golive.core.outcome import Outcome
from golive.core.redact import Redactor

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT, EXIT_HOST_FAILURE = 0, 1, 2, 3
REMOTE_VERBS = {"plan", "deploy", "rollback", "status", "history", "check", "drift", "preflight", "unlock"}


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message to one line naming the problem."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{self.prog}: {message}")


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--workspace", "-w", default=os.environ.get("GOLIVE_WORKSPACE", "."),
                        help="workspace directory (default: current directory)")
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--vault-password-file", help="Ansible Vault password file "
                                                      "(default: $GOLIVE_VAULT_PASSWORD_FILE or ansible.cfg)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more detail (secrets stay masked)")
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
    _rollout_options(p)
    p = verb("status", "live release per host; with no customer, every customer x environment")
    p.add_argument("customer", nargs="?")
    p.add_argument("environment", nargs="?")
    p = verb("history", "the deploy/rollback ledger of an environment's hosts")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST")
    p.add_argument("--limit", type=int, default=20)
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
    p = verb("unlock", "clear a deploy lock (recorded in history with the reason)")
    p.add_argument("customer")
    p.add_argument("environment")
    p.add_argument("--reason", required=True)
    p.add_argument("--force", action="store_true", help="clear it even if its holder looks alive")
    p.add_argument("--host", action="append", dest="hosts", metavar="HOST")
    return parser


def _handler(verb: str) -> Callable[..., Outcome]:
    """Each verb's implementation, imported only when that verb runs (start-up time matters)."""
    if verb in ("inventory", "validate", "render"):
        from golive import api

        return {
            "inventory": lambda ws, a: api.inventory(ws, a.customer),
            "validate": lambda ws, a: api.validate(ws, a.customer),
            "render": lambda ws, a: api.render(ws, a.customer, a.environment, a.host, a.out, a.release),
        }[verb]
    from golive import commands

    return getattr(commands, verb)


def main(argv: list[str] | None = None) -> int:
    redactor = Redactor()
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.verb in REMOTE_VERBS:
            from golive.adapters.concurrency import patch_for_parallel_ssh

            patch_for_parallel_ssh()
        from golive.workspace import Workspace

        ws = Workspace(args.workspace, args.vault_password_file)
        redactor = ws.redactor
        outcome = _handler(args.verb)(ws, args)
    except BadInput as error:
        for problem in error.problems:
            print(redactor.text(f"golive: error: {problem}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except GoliveError as error:
        print(redactor.text(f"golive: failed: {error}"), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("golive: interrupted", file=sys.stderr)
        return 130
    except SystemExit as stop:  # --help / --version
        return int(stop.code or 0)
    except Exception as error:  # a bug in golive, not a user mistake
        if args is not None and getattr(args, "verbose", 0):
            import traceback

            print(redactor.text(traceback.format_exc()), file=sys.stderr)
        print(redactor.text(f"golive: internal error: {type(error).__name__}: {error} (run with -v for details)"),
              file=sys.stderr)
        return EXIT_HOST_FAILURE
    try:
        if args.json:
            print(redactor.text(json.dumps(redactor.data(outcome.data), indent=2, sort_keys=True, default=str)))
        elif outcome.text:
            print(redactor.text(outcome.text))
        sys.stdout.flush()
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

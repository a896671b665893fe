"""``python3 -m golive.testing`` (``scripts/testhosts``): local test hosts from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

from golive.testing._common import TestHostsError
from golive.testing.hosts import DEFAULT_BINDS, DEFAULT_DIR, DEFAULT_FIRST, DEFAULT_NET, TestHosts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testhosts", description="Local SSH test hosts for golive.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--dir", default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})")
        return sub

    up = command("up", "start N hosts")
    up.add_argument("n", type=int, metavar="N")
    up.add_argument("--net", default=DEFAULT_NET, help=f"first three octets (default {DEFAULT_NET})")
    up.add_argument(
        "--first", type=int, default=DEFAULT_FIRST, help=f"first host's last octet (default {DEFAULT_FIRST})"
    )
    up.add_argument(
        "--bind",
        action="append",
        metavar="PATH",
        help="a path each host gets privately, an empty per-host directory bind-mounted onto it "
        "(repeatable; default: " + ", ".join(DEFAULT_BINDS) + "; /root always). A bind mount needs its target "
        "on this machine: a missing one is created as an empty directory, and reported",
    )
    down = command("down", "stop every host and every process in their namespaces")
    down.add_argument("--purge", action="store_true", help="also delete DIR")
    status = command("status", "one line per host")
    status.add_argument("--json", action="store_true")
    reset = command("reset", "kill non-sshd processes and empty the bind directories")
    reset.add_argument("hosts", nargs="*", metavar="HOST")
    for name, help in (
        ("stop", "stop one host's sshd"),
        ("start", "start one host's sshd"),
        ("rekey", "new host key for one host, known_hosts left as it was"),
    ):
        command(name, help).add_argument("host", metavar="HOST")
    command("exec", "run a command inside one host's namespaces: exec HOST -- CMD...").add_argument(
        "host", metavar="HOST"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `exec ... --` is the command, even words that look like our options.
    command: list[str] = []
    if argv[:1] == ["exec"] and "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    parser = _parser()
    args, unparsed = parser.parse_known_args(argv)
    if args.command == "exec":
        args.argv = unparsed + command  # `exec HOST CMD...` without `--` works for simple commands
    elif unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    try:
        return _run(args)
    except TestHostsError as error:
        print(f"testhosts: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "up":
        hosts = TestHosts(args.dir, net=args.net, first=args.first, binds=args.bind or DEFAULT_BINDS)
        already_up = hosts.is_up()
        started = time.monotonic()
        running = hosts.up(args.n)
        if already_up:
            print(f"{len(running)} host(s) already up in {hosts.dir}")
        else:
            print(
                f"{len(running)} host(s) up in {time.monotonic() - started:.2f} s: "
                f"{running[0].address} .. {running[-1].address} (state in {hosts.dir})"
            )
        print(
            f"ssh -i {hosts.client_key} -o UserKnownHostsFile={hosts.known_hosts} "
            f"-o StrictHostKeyChecking=yes root@{running[0].address}"
        )
        return 0

    hosts = TestHosts(args.dir)
    if args.command == "down":
        hosts.down(purge=args.purge)
    elif args.command == "status":
        running = hosts.status()
        rows = [{**asdict(h), "up": running[h.name]} for h in hosts.hosts]
        if args.json:
            print(json.dumps({"dir": str(hosts.dir), "hosts": rows}, indent=2))
        elif not rows:
            print(f"no test hosts in {hosts.dir}")
        for row in [] if args.json else rows:
            print(f"{row['name']:<6} {row['address']:<15} {'up' if row['up'] else 'down'}")
    elif args.command == "reset":
        hosts.reset(args.hosts or None)
    elif args.command == "stop":
        hosts.stop(args.host)
    elif args.command == "start":
        hosts.start(args.host)
    elif args.command == "rekey":
        hosts.rekey(args.host)
    elif args.command == "exec":
        if not args.argv:
            raise TestHostsError("exec needs a command: exec HOST -- CMD...")
        return hosts.exec(args.host, args.argv, capture=False).returncode
    return 0

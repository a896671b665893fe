"""``python3 -m golive.testing`` (``scripts/testhosts``): local test hosts from the command line."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from golive.testing import hosts as light
from golive.testing._common import TestHostsError

DESCRIPTION = """\
Local SSH test hosts for golive, each on its own 127.0.x.y address, key-only root login, host keys
written to DIR/known_hosts (built from the generated keys: clients verify them strictly).

Two kinds:
  light (default)  one OpenSSH server per host in its own mount and UTS namespace, with private
                   directories bind-mounted onto the application paths (--bind) and /root;
                   everything else is the machine's own. 30 hosts start in about half a second.
  --systemd        real Debian 12 servers: systemd is PID 1 of each host (systemd-nspawn -b),
                   with its own /etc, /usr and /var (an overlay on a cached Debian base), journald,
                   logind, units, and apt seeing only a local repository (postgresql-15, tree, jq,
                   ...). The base and the repository are built once (`prepare`, run by scripts/setup).

examples:
  scripts/testhosts up 5                       # light hosts 127.0.0.11-15 (the example inventories)
  scripts/testhosts --systemd up 3             # Debian servers on 127.0.20.11-13
  scripts/testhosts --systemd exec h11 -- systemctl status ssh
  scripts/testhosts --systemd down
"""


def _parser() -> argparse.ArgumentParser:
    from golive.testing import systemd

    parser = argparse.ArgumentParser(
        prog="testhosts", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--systemd",
        action="store_true",
        help=f"Debian 12 hosts booting systemd instead of light ones (default dir {systemd.DEFAULT_DIR}, "
        f"net {systemd.DEFAULT_NET})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--dir",
            help=f"state directory (default {light.DEFAULT_DIR}, with --systemd {systemd.DEFAULT_DIR})",
        )
        return sub

    up = command("up", "start N hosts (systemd hosts boot as fresh servers)")
    up.add_argument("n", type=int, metavar="N")
    up.add_argument(
        "--net", help=f"first three octets (default {light.DEFAULT_NET}, with --systemd {systemd.DEFAULT_NET})"
    )
    up.add_argument("--first", type=int, default=light.DEFAULT_FIRST, help="first host's last octet (default 11)")
    up.add_argument(
        "--bind",
        action="append",
        metavar="PATH",
        help="light hosts: a path each host gets privately, an empty per-host directory bind-mounted onto it "
        "(repeatable; default: " + ", ".join(light.DEFAULT_BINDS) + "; /root always). A bind mount needs "
        "its target on this machine: a missing one is created as an empty directory, and reported",
    )
    down = command("down", "stop every host and everything started in it, then verify nothing is left")
    down.add_argument("--purge", action="store_true", help="also delete DIR")
    status = command("status", "one line per host")
    status.add_argument("--json", action="store_true")
    reset = command(
        "reset", "light: kill non-sshd processes and empty the bind directories; systemd: fresh servers"
    )
    reset.add_argument("hosts", nargs="*", metavar="HOST")
    for name, help in (
        ("stop", "stop one host's sshd"),
        ("start", "start one host's sshd"),
        ("rekey", "new host key for one host, known_hosts left as it was"),
    ):
        command(name, help).add_argument("host", metavar="HOST")
    command("exec", "run a command inside one host: exec HOST -- CMD...").add_argument("host", metavar="HOST")
    command("reboot", "systemd: reboot one host and wait until it is up again").add_argument("host", metavar="HOST")
    console = command("console", "systemd: the last lines of one host's console and journal")
    console.add_argument("host", metavar="HOST")
    console.add_argument("-n", "--lines", type=int, default=30)
    command(
        "prepare",
        "systemd: build (or find in the cache) the Debian base and the local apt repository, and delete "
        "cached ones of other recipes that no running host uses",
    )
    measure = command(
        "measure", "systemd: boot, memory, disk and poweroff of N hosts, measured (a scratch DIR, deleted after)"
    )
    measure.add_argument("--hosts", default="1,3,6", help="host counts, comma-separated (default 1,3,6)")
    measure.add_argument("--repeat", type=int, default=3)
    measure.add_argument("--net", help=f"first three octets (default {systemd.DEFAULT_NET})")
    measure.add_argument("--first", type=int, default=light.DEFAULT_FIRST)
    measure.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser


SYSTEMD_ONLY = ("reboot", "console", "prepare", "measure")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `exec ... --` is the command, even words that look like our options.
    command: list[str] = []
    if "exec" in argv and "--" in argv[argv.index("exec") :]:
        split = argv.index("--", argv.index("exec"))
        argv, command = argv[:split], argv[split + 1 :]
    parser = _parser()
    args, unparsed = parser.parse_known_args(argv)
    if args.command == "exec":
        args.argv = unparsed + command  # `exec HOST CMD...` without `--` works for simple commands
    elif unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    if args.command in SYSTEMD_ONLY and not args.systemd:
        parser.error(f"{args.command} is for systemd hosts: testhosts --systemd {args.command} ...")
    if args.systemd and args.command == "up" and args.bind:
        parser.error("--bind is for light hosts: systemd hosts have a whole filesystem of their own")
    try:
        return _run(args)
    except TestHostsError as error:
        print(f"testhosts: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _hosts(args: argparse.Namespace):
    from golive.testing import systemd

    if args.systemd:
        return systemd.SystemdHosts(
            args.dir or systemd.DEFAULT_DIR,
            net=getattr(args, "net", None) or systemd.DEFAULT_NET,
            first=getattr(args, "first", None) or systemd.DEFAULT_FIRST,
        )
    return light.TestHosts(
        args.dir or light.DEFAULT_DIR,
        net=getattr(args, "net", None) or light.DEFAULT_NET,
        first=getattr(args, "first", None) or light.DEFAULT_FIRST,
        binds=getattr(args, "bind", None) or light.DEFAULT_BINDS,
    )


def _run(args: argparse.Namespace) -> int:
    if args.command == "prepare":
        return _prepare()
    if args.command == "measure":
        return _measure(args)
    hosts = _hosts(args)
    if args.command == "up":
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
    elif args.command == "down":
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
    elif args.command == "reboot":
        hosts.reboot(args.host)
    elif args.command == "console":
        print(f"--- console\n{hosts.console(args.host, args.lines)}")
        print(f"--- journal\n{hosts.journal(args.host, args.lines)}")
    elif args.command == "exec":
        if not args.argv:
            raise TestHostsError("exec needs a command: exec HOST -- CMD...")
        return hosts.exec(args.host, args.argv, capture=False).returncode
    return 0


def _prepare() -> int:
    from golive.testing import debian

    base = debian.ensure_base()
    repo = debian.ensure_repo(base)
    debian.prune()
    print(f"base {base}\nrepository {repo}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    """Each host count booted --repeat times into a scratch directory: wall time of up() (boot until
    every host's ssh login reports running), PSS per host just after boot and once idle (the ssh
    check's user manager gone), the upper layer's disk use, and the wall time of down()."""
    from golive.testing import debian, systemd

    counts = [int(n) for n in args.hosts.split(",")]
    base = debian.ensure_base()
    repo = debian.ensure_repo(base)
    builds = {
        "base_build_seconds": json.loads((base / "build.json").read_text())["seconds"],
        "repo_seconds": json.loads((repo / "build.json").read_text())["seconds"],
        "repo_download_seconds": json.loads((repo / "build.json").read_text())["download_seconds"],
    }
    scratch = Path(args.dir or "/tmp/golive-systemd-measure")
    results = []
    for n in counts:
        row: dict[str, list[float]] = {"up": [], "down": [], "pss_boot": [], "pss_idle": [], "disk": []}
        for _ in range(args.repeat):
            hosts = systemd.SystemdHosts(scratch / f"n{n}", net=args.net or systemd.DEFAULT_NET, first=args.first)
            started = time.perf_counter()
            infos = hosts.up(n)
            row["up"].append(time.perf_counter() - started)
            row["pss_boot"] += [hosts.memory_mib(h.name) for h in infos]
            for info in infos:  # the boot check's login leaves a user manager for a few seconds
                hosts.exec(info.name, ["sh", "-c", "while systemctl -q is-active user@0.service; do sleep 0.5; done"],
                           timeout=120)
            row["pss_idle"] += [hosts.memory_mib(h.name) for h in infos]
            row["disk"] += [_du_mib(Path(h.root) / "upper") for h in infos]
            started = time.perf_counter()
            hosts.down(purge=True)
            row["down"].append(time.perf_counter() - started)
        results.append({"hosts": n, "runs": args.repeat, **row})
        print(_row(n, row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({**builds, "results": results}, indent=2) + "\n")
    print(
        f"base build {builds['base_build_seconds']:.0f} s; repository {builds['repo_seconds']:.0f} s "
        f"(download {builds['repo_download_seconds']:.0f} s), as recorded when they were built"
    )
    return 0


def _row(n: int, row: dict[str, list[float]]) -> str:
    def spread(values: list[float], unit: str) -> str:
        return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"

    return (
        f"{n} host(s): up {spread(row['up'], ' s')}, down {spread(row['down'], ' s')}, "
        f"PSS/host after boot {spread(row['pss_boot'], ' MiB')}, idle {spread(row['pss_idle'], ' MiB')}, "
        f"disk/host {spread(row['disk'], ' MiB')}"
    )


def _du_mib(path: Path) -> float:
    output = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()
    return int(output[0]) / 1024 if output else 0.0

"""`-v` on real deploys and rollbacks: after the summary, each host's steps with the seconds they took on
the host (the ones its ledger records), and a failed host's error; coloured only when asked for."""

from __future__ import annotations

import json
import re

from tests.conftest import host_path, run_golive

STG, PROD1, PROD2 = 11, 12, 13
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOUR_ASKED = {"FORCE_COLOR": "1", "NO_COLOR": "", "TERM": "xterm", "TTY_COMPATIBLE": ""}


def ledger_steps(hosts, suffix: int) -> set[str]:
    """The steps the host's newest ledger entry records (the host writes it before its last steps)."""
    path = host_path(hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
    return set(json.loads(path.read_text().splitlines()[-1])["steps"])


def step_lines(stdout: str) -> dict[str, tuple[str, list[tuple[str, float]], str | None]]:
    """The -v block: per host, (status, [(step, seconds)], error)."""
    assert "steps on each host (seconds):\n" in stdout, stdout
    block = stdout.split("steps on each host (seconds):\n", 1)[1]
    found: dict[str, tuple[str, list[tuple[str, float]], str | None]] = {}
    for line in block.splitlines():
        head = re.match(r"^  (\S+) \((\w+)\): (.*)$", line)
        if head:
            steps = [(name, float(seconds)) for name, seconds in re.findall(r"(\w+) (\d+\.\d\d)s", head.group(3))]
            found[head.group(1)] = (head.group(2), steps, None)
            host = head.group(1)
        elif line.startswith("    error: "):
            found[host] = (*found[host][:2], line.removeprefix("    error: "))
    return found


def test_verbose_deploy_and_rollback_list_each_hosts_steps_with_seconds(workspace, test_hosts):
    quiet = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    assert "steps on each host" not in quiet.stdout, "only with -v"
    run_golive(workspace, "check", "manufacturer", "staging", check=0)  # production's promotion gate
    shown = run_golive(workspace, "deploy", "manufacturer", "production", "--release", "1.0", "-v", check=0)
    detail = step_lines(shown.stdout)
    assert set(detail) == {"mfg-prod-1", "mfg-prod-2"}, shown.output
    for host, suffix in (("mfg-prod-1", PROD1), ("mfg-prod-2", PROD2)):
        status, steps, error = detail[host]
        assert status == "deployed" and error is None, shown.output
        assert ledger_steps(test_hosts, suffix) <= {name for name, _ in steps}, shown.output
        assert {"upload", "unpack", "cutover", "restart", "verify"} <= {name for name, _ in steps}
    assert shown.stdout.index("2 of 2 host(s) ok") < shown.stdout.index("steps on each host")
    assert "\x1b" not in shown.output, "a pipe gets no colour"

    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", check=0)
    back = run_golive(workspace, "rollback", "manufacturer", "staging", "-vv", env=COLOUR_ASKED, check=0)
    plain = ANSI.sub("", back.stdout)
    status, steps, error = step_lines(plain)["mfg-stg-1"]
    assert status == "deployed" and error is None and steps, back.output
    assert ledger_steps(test_hosts, STG) <= {name for name, _ in steps}, back.output
    assert "\x1b[32m  mfg-stg-1 (deployed): " in back.stdout and "\x1b[32m  mfg-stg-1: " in back.stdout, back.stdout


def test_verbose_failed_deploy_lists_the_steps_and_the_error(workspace, test_hosts):
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    failed = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "9.9", "-v", check=3)
    status, steps, error = step_lines(failed.stdout)["mfg-stg-1"]
    assert status == "rolled_back", failed.output
    assert {"verify", "switch_back"} <= dict(steps).keys(), failed.output
    assert ledger_steps(test_hosts, STG) <= dict(steps).keys(), failed.output
    assert error and error.startswith("verify: "), failed.output
    coloured = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "9.9", "-v",
                          env=COLOUR_ASKED, check=3)
    assert "\x1b[31mdeploy " in coloured.stdout, coloured.stdout  # the headline: not every host is ok
    assert re.search(r"\x1b\[3[13]m  mfg-stg-1 \(\w+\): ", coloured.stdout), coloured.stdout


def test_verbose_lists_the_steps_with_the_ansible_engine_too(workspace, test_hosts):
    shown = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", "--engine", "ansible", "-v",
                       check=0)
    status, steps, error = step_lines(shown.stdout)["mfg-stg-1"]
    assert status == "deployed" and error is None, shown.output
    assert ledger_steps(test_hosts, STG) <= dict(steps).keys() and "verify" in dict(steps), shown.output

"""Hostile inventory values in every command field that runs on a host, with both engines.

golive.yml's command fields (service start/stop, health command, the three hooks) are rendered with
the host's variables and run by /bin/sh on the host. Each field here prints a corpus of hostile
values, quoted with `| quote` as golive requires, into a file on the host: every value must arrive
byte for byte, and none of the commands the values carry may run (each would create a marker file
on the controller's /tmp, which the test hosts share). The same commands also record the GOLIVE_*
environment golive gives them, which must say the same with both engines.

(Unquoted use is refused before any host is touched: tests/hostile/test_bad_input.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import host_view, run_golive

STG = 11
ROOT = "/opt/northwind"
FIELDS = ("start", "stop", "health", "before_cutover", "after_cutover", "on_rollback")


def hostile_values(marker: Path) -> list[str]:
    """Values that run `touch <marker>-N` if a shell ever reads them as code, and values that a
    shell would change (globs, variables, tilde, quotes, whitespace) if it saw them unquoted."""
    m = str(marker)
    return [
        f"$(touch {m}-0)", f"`touch {m}-1`", f"x; touch {m}-2", f"x && touch {m}-3", f"x | touch {m}-4",
        f"x\ntouch {m}-5", f"'; touch {m}-6; '", f'"; touch {m}-7; "', f"x;${{IFS}}touch${{IFS}}{m}-8",
        f"x > {m}-9", f"$(touch${{IFS}}{m}-10)", f"x\\\n; touch {m}-11", f"'\"'\"'; touch {m}-12 #",
        "*", "/etc/*", "?", "[a-z]*", "$HOME", "${PATH}", "~", "~root", "$((6*7))", "!!", "#not a comment",
        "-n", "--help", "a\\b\\\\c", "tab\there", "  spaces  around  ", "", "Zürich & Söhne GmbH",
        "line1\nline2\n", "'", '"', "\\", "{}", "%s %d", "a\x01b",
    ]


def command(field: str, count: int) -> str:
    """What a field runs: print every value NUL-separated, then the GOLIVE_* environment."""
    values = " ".join(f"{{{{ hostile_{index} | quote }}}}" for index in range(count))
    return (f"printf '%s\\0' {values} > {{{{ golive_app_root }}}}/arrived-{field}; "
            f"env | grep '^GOLIVE_' | sort > {{{{ golive_app_root }}}}/env-{field}")


def set_command_fields(ws: Path, count: int) -> None:
    app = ws / "golive.yml"
    text = app.read_text()
    ctl = "{{ golive_app_root }}/current/bin/northwind-ctl"
    service = (f"service:\n  start: {json.dumps(ctl + ' start && ' + command('start', count))}\n"
               f"  stop: {json.dumps(ctl + ' stop; ' + command('stop', count))}\n"
               f"  status: \"{ctl} status\"\n")
    # (a function as replacement: re would read the `\\0` of printf's format as a group reference)
    text, found = re.subn(r"^service:\n(  .*\n)+", lambda _: service, text, flags=re.MULTILINE)
    assert found == 1
    health = f"health:\n  command: {json.dumps(command('health', count))}\n  timeout: 5\n  retries: 3\n"
    text, found = re.subn(r"^health:\n(  .*\n)+", lambda _: health, text, flags=re.MULTILINE)
    assert found == 1
    hooks = "hooks:\n" + "".join(f"  {hook}: {json.dumps(command(hook, count))}\n"
                                 for hook in ("before_cutover", "after_cutover", "on_rollback"))
    text, found = re.subn(r"^hooks:\n(  .*\n)+", lambda _: hooks, text, flags=re.MULTILINE)
    assert found == 1
    app.write_text(text)


def arrived(test_hosts, field: str) -> list[str]:
    data = host_view(test_hosts, STG, f"{ROOT}/arrived-{field}").read_bytes()
    assert data.endswith(b"\0"), data
    return data[:-1].decode("utf-8").split("\0")


def environment(test_hosts, field: str) -> dict[str, str]:
    """The documented GOLIVE_* variables a field's command saw (GOLIVE_CWD is the agent's own)."""
    lines = host_view(test_hosts, STG, f"{ROOT}/env-{field}").read_text().splitlines()
    seen = dict(line.split("=", 1) for line in lines)
    seen.pop("GOLIVE_CWD", None)
    return seen


def live_release(test_hosts) -> str:
    import os

    return os.readlink(host_view(test_hosts, STG, f"{ROOT}/current")).rsplit("/", 1)[-1]


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_hostile_values_arrive_intact_and_run_nothing(engine, workspace, test_hosts, tmp_path):
    marker = tmp_path / "injected"
    values = hostile_values(marker)
    (workspace / "inventories/manufacturer/group_vars/all/hostile.yml").write_text(
        "".join(f"hostile_{index}: {json.dumps(value)}\n" for index, value in enumerate(values)))
    set_command_fields(workspace, len(values))
    run_golive(workspace, "validate", "manufacturer", check=0)  # every expression is quoted: accepted

    def deploy(version: str) -> None:
        run_golive(workspace, "deploy", "manufacturer", "staging", "--release", version, "--engine", engine, check=0)

    deploy("1.0")
    first = live_release(test_hosts)
    deploy("1.1")
    second = live_release(test_hosts)
    for field in ("start", "stop", "health", "before_cutover", "after_cutover"):
        assert arrived(test_hosts, field) == values, field
    expected = {"GOLIVE_APP_ROOT": ROOT, "GOLIVE_CONFIG_DIR": "/etc/northwind", "GOLIVE_CUSTOMER": "manufacturer",
                "GOLIVE_ENVIRONMENT": "staging", "GOLIVE_HOST": "mfg-stg-1", "GOLIVE_PREVIOUS_RELEASE": first,
                "GOLIVE_RELEASE": second, "GOLIVE_RELEASE_DIR": f"{ROOT}/releases/{second}",
                "GOLIVE_VERSION": "1.1", "GOLIVE_DIRECTION": "deploy"}
    told = environment(test_hosts, "after_cutover")
    told.pop("GOLIVE_OUTPUT", None)  # where the agent keeps the hook's whole output (.golive/logs/), not a value
    assert told == expected
    assert environment(test_hosts, "start") == expected

    run_golive(workspace, "rollback", "manufacturer", "staging", "--engine", engine, check=0)
    assert live_release(test_hosts) == first
    assert arrived(test_hosts, "on_rollback") == values
    back = {**expected, "GOLIVE_RELEASE": first, "GOLIVE_RELEASE_DIR": f"{ROOT}/releases/{first}",
            "GOLIVE_VERSION": "1.0", "GOLIVE_DIRECTION": "rollback", "GOLIVE_PREVIOUS_RELEASE": second}
    assert environment(test_hosts, "start") == back
    assert environment(test_hosts, "on_rollback")["GOLIVE_DIRECTION"] == "rollback"

    injected = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("injected"))
    assert injected == [], f"a hostile value ran as a command: {injected}"

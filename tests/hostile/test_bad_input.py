"""The bad-input corpus: broken workspaces and command lines, as data.

Every case runs the golive CLI against real test hosts (staging and production already on 1.0)
and must: exit 2; print nothing on stdout; print no traceback; print one clear message (every
stderr line is a `golive: error:` line, at most a few when validate reports all problems at
once) naming the file and line, the key or the option; and touch no host (every host's app root
with its ledger, config dir and home are snapshotted before and after).

The cases that only `golive validate` can see (it checks every customer, and expiry dates) run
validate; everything else runs the verb a user would have run when they hit it, mostly deploy,
the verb with the most to lose.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import WORKSPACE_FILES, copy_workspace, run_golive, snapshot_difference, snapshot_hosts

MFG = "inventories/manufacturer"
IGNORE_EXAMPLE = '# drift:\n#   ignore: ["**/__pycache__/**"]'  # commented out in the example golive.yml
RTL = "inventories/retailer"
DEPLOY = ("deploy", "manufacturer", "staging", "--release", "1.1")
DEPLOY_PROD = ("deploy", "manufacturer", "production", "--release", "1.1")


def edit(relative: str, old: str, new: str) -> Callable[[Path], None]:
    def breaker(ws: Path) -> None:
        path = ws / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))
    return breaker


def write(relative: str, text: str | bytes) -> Callable[[Path], None]:
    def breaker(ws: Path) -> None:
        path = ws / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return breaker


def remove(relative: str) -> Callable[[Path], None]:
    def breaker(ws: Path) -> None:
        path = ws / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return breaker


def nothing(ws: Path) -> None:
    pass


def not_an_archive(ws: Path) -> None:
    """Garbage with a matching .sha256: the checksum passes, the archive itself is what is refused."""
    import hashlib

    artifact = ws / "build" / "releases" / "northwind-1.1.tar.gz"
    artifact.write_bytes(b"not a tar archive\n")
    (ws / SHA).write_text(f"{hashlib.sha256(artifact.read_bytes()).hexdigest()}  {artifact.name}\n")


@dataclass(frozen=True)
class Case:
    breaker: Callable[[Path], None]
    argv: tuple[str, ...]
    expect: tuple[str, ...]  # regular expressions, all of which stderr must match


SHA = "build/releases/northwind-1.1.tar.gz.sha256"
OVERRIDE_INI = "config_templates/northwind/customers/manufacturer/northwind.ini.j2"
CASES: dict[str, Case] = {
    # -- golive.yml ---------------------------------------------------------------------------
    "golive.yml: YAML syntax error": Case(edit("golive.yml", "shared: [data, logs, run]", "shared: [data, logs"),
                                          DEPLOY, (r"golive\.yml:\d+",)),
    "golive.yml: tab indentation": Case(edit("golive.yml", "keep_releases: 5", "keep_releases:\n\t5"),
                                        DEPLOY, (r"golive\.yml:\d+", r"tab")),
    "golive.yml: duplicate key": Case(edit("golive.yml", "keep_releases: 5", "keep_releases: 5\nkeep_releases: 6"),
                                      DEPLOY, (r"golive\.yml:\d+", r"duplicate key 'keep_releases'")),
    "golive.yml: wrong type": Case(edit("golive.yml", "keep_releases: 5", "keep_releases: five"),
                                   DEPLOY, (r"golive\.yml:\d+", r"keep_releases must be an integer")),
    "golive.yml: limit of the wrong type": Case(
        edit("golive.yml", "max_members: 20000", "max_members: lots"),
        DEPLOY, (r"golive\.yml:\d+", r"release_store\.max_members must be an integer")),
    "golive.yml: unknown setting": Case(edit("golive.yml", "keep_releases: 5", "keep_releases: 5\nkeep_release: 6"),
                                        DEPLOY, (r"golive\.yml:\d+", r"unknown setting 'keep_release'")),
    "golive.yml: missing application root": Case(edit("golive.yml", "  root: /opt/northwind", "  rooot: /x"),
                                                 DEPLOY, (r"golive\.yml:\d+", r"application\.(root|rooot)")),
    "golive.yml: relative application root": Case(
        edit("golive.yml", "root: /opt/northwind", "root: opt/northwind"),
        DEPLOY, (r"golive\.yml:\d+", r"application\.root must be an absolute")),
    "golive.yml: drift.ignore leaving the release": Case(
        edit("golive.yml", IGNORE_EXAMPLE, 'drift:\n  ignore: ["../etc/*"]'), ("drift", "manufacturer"),
        (r"golive\.yml:\d+", r"drift\.ignore\[0\] '\.\./etc/\*'", r"'\.\.' segment")),
    "golive.yml: drift.ignore absolute": Case(
        edit("golive.yml", IGNORE_EXAMPLE, 'drift:\n  ignore: ["**/__pycache__/**", "/opt/x"]'), DEPLOY,
        (r"golive\.yml:\d+", r"drift\.ignore\[1\]", r"no leading /")),
    "golive.yml: drift.ignore of everything": Case(
        edit("golive.yml", IGNORE_EXAMPLE, 'drift:\n  ignore: ["**"]'), ("drift", "manufacturer"),
        (r"golive\.yml:\d+", r"would ignore every file")),
    "golive.yml: drift.ignore with a character class": Case(
        edit("golive.yml", IGNORE_EXAMPLE, 'drift:\n  ignore: ["*.py[co]"]'), ("check", "manufacturer", "staging"),
        (r"golive\.yml:\d+", r"'\[' is not supported")),
    "golive.yml: drift.ignore not a list": Case(
        edit("golive.yml", IGNORE_EXAMPLE, 'drift:\n  ignore: "**/__pycache__/**"'), ("drift", "manufacturer"),
        (r"golive\.yml:\d+", r"drift\.ignore must be a list")),
    "golive.yml: drift.ignore pattern unquoted": Case(
        edit("golive.yml", IGNORE_EXAMPLE, "drift:\n  ignore: [**/__pycache__/**]"), ("drift", "manufacturer"),
        (r"golive\.yml:\d+",)),
    "golive.yml: not a mapping": Case(write("golive.yml", "- just\n- a list\n"), DEPLOY, (r"golive\.yml",)),
    "golive.yml: missing": Case(remove("golive.yml"), DEPLOY, (r"golive\.yml", r"no application definition")),
    "golive.yml: unknown schema type": Case(
        edit("golive.yml", "workers:\n    type: int", "workers:\n    type: integer"),
        DEPLOY, (r"golive\.yml:\d+", r"variables\.workers\.type")),
    "golive.yml: template file missing": Case(edit("golive.yml", "src: features.json.j2", "src: feature.json.j2"),
                                              DEPLOY, (r"feature\.json\.j2", r"not found")),
    "golive.yml: promote_from unknown environment": Case(
        edit("golive.yml", "promote_from: staging", "promote_from: stageing"),
        DEPLOY, (r"golive\.yml:\d+", r"promote_from names unknown environment 'stageing'")),
    "golive.yml: expected difference without reason": Case(
        edit("golive.yml", "    reason: each environment has its own database server\n", ""),
        DEPLOY, (r"golive\.yml:\d+", r"db_host.*without a 'reason'")),
    "golive.yml: malformed expiry of an expected difference": Case(
        edit("golive.yml", "    reason: each environment has its own database\n",
             "    reason: each environment has its own database\n    expires: someday\n"),
        DEPLOY, (r"golive\.yml:\d+", r"expires must be a date")),
    "golive.yml: expired expected difference": Case(
        edit("golive.yml", "    reason: each environment has its own database\n",
             "    reason: each environment has its own database\n    expires: 2020-01-31\n"),
        ("validate",), (r"golive\.yml", r"db_name.*expired on 2020-01-31")),
    "golive.yml: template in a service command does not parse": Case(
        edit("golive.yml", 'status: "{{ golive_app_root }}', 'status: "{{ golive_app_root }'),
        DEPLOY, (r"service\.status",)),
    # -- inventories ------------------------------------------------------------------------------
    "vars file: YAML syntax error": Case(edit(f"{MFG}/group_vars/staging.yml", "workers: 2", "workers: [2"),
                                         DEPLOY, (rf"{MFG}/group_vars/staging\.yml:\d+",)),
    "vars file: tab indentation": Case(edit(f"{MFG}/group_vars/staging.yml", "workers: 2", "workers:\n\t2"),
                                       DEPLOY, (rf"{MFG}/group_vars/staging\.yml:\d+",)),
    "vars file: duplicate key": Case(edit(f"{MFG}/group_vars/staging.yml", "workers: 2", "workers: 2\nworkers: 3"),
                                     DEPLOY, (rf"{MFG}/group_vars/staging\.yml", r"[Dd]uplicate")),
    "vars file: wrong type": Case(edit(f"{MFG}/group_vars/all/main.yml", "http_port: 8080", "http_port: eighty"),
                                  DEPLOY, (rf"{MFG}/group_vars/all/main\.yml:\d+", r"'http_port'.*must be int")),
    "vars file: value not allowed": Case(edit(f"{RTL}/group_vars/all/main.yml", "log_level: warning",
                                              "log_level: loud"),
                                         ("validate",), (r"main\.yml:\d+", r"'log_level'.*allowed")),
    "vars file: required variable missing": Case(edit(f"{MFG}/group_vars/all/main.yml", "currency: CNY\n", ""),
                                                 DEPLOY, (r"'currency'", r"mfg-stg-1")),
    "vars file: not a mapping": Case(write(f"{MFG}/group_vars/staging.yml", "- workers\n- 2\n"),
                                     DEPLOY, (rf"{MFG}/group_vars/staging\.yml",)),
    "hosts.yml: YAML syntax error": Case(edit(f"{MFG}/hosts.yml", "    staging:\n", "    staging: [\n"),
                                         DEPLOY, (rf"{MFG}/hosts\.yml",)),
    "hosts.yml: host in no environment": Case(
        edit(f"{RTL}/hosts.yml", "    production:\n      hosts:", "    prod:\n      hosts:"),
        ("validate",), (rf"{RTL}/hosts\.yml", r"rtl-prod-1 is in no environment")),
    "hosts.yml: host in two environments": Case(
        edit(f"{MFG}/hosts.yml", "        mfg-stg-1:\n          ansible_host: 127",
             "        mfg-stg-1:\n        mfg-prod-2:\n          ansible_host: 127"),
        DEPLOY, (rf"{MFG}/hosts\.yml", r"mfg-prod-2")),
    "hosts.yml: group cycle": Case(
        edit(f"{MFG}/hosts.yml", "    scada_gateway:\n      hosts:",
             "    scada_gateway:\n      children:\n        production:\n    production_parent:\n"
             "      children:\n        scada_gateway:\n    loop_a:\n      children:\n        loop_b:\n"
             "    loop_b:\n      children:\n        loop_a:\n      hosts:"),
        DEPLOY, (rf"{MFG}/hosts\.yml", r"loop_a|loop_b|cycle|recurs")),
    "unknown customer": Case(nothing, ("deploy", "manufactuer", "staging", "--release", "1.1"),
                             (r"unknown customer 'manufactuer'", r"manufacturer")),
    "unknown environment": Case(nothing, ("deploy", "manufacturer", "uat", "--release", "1.1"),
                                (r"unknown environment 'uat'", r"staging")),
    "unknown host": Case(nothing, (*DEPLOY, "--host", "mfg-stg-9"), (r"unknown host mfg-stg-9", r"mfg-stg-1")),
    "wrong vault password": Case(write("wrong-password", "not the password\n"),
                                 (*DEPLOY, "--vault-password-file", "wrong-password"),
                                 (rf"{MFG}/group_vars/all/vault\.yml",)),
    "vault password file missing": Case(nothing, (*DEPLOY, "--vault-password-file", "no-such-password-file"),
                                        (r"no-such-password-file",)),
    # -- templates -------------------------------------------------------------------------------
    "template syntax error": Case(edit("config_templates/northwind/features.json.j2", "{% endfor %}", "{% endfor"),
                                  DEPLOY, (r"config_templates/northwind/features\.json\.j2:\d+", r"syntax")),
    # (the manufacturer overrides northwind.ini.j2: its own copy is the one a deploy renders)
    "template: undefined variable": Case(edit(OVERRIDE_INI, "{{ db_port }}", "{{ db_portt }}"),
                                         DEPLOY, (rf"{OVERRIDE_INI}:\d+", r"db_portt")),
    "template: unknown filter": Case(edit(OVERRIDE_INI, "{{ db_port }}", "{{ db_port | no_such_filter }}"),
                                     DEPLOY, (OVERRIDE_INI, r"no_such_filter")),
    "template: not UTF-8": Case(write(OVERRIDE_INI, b"name = caf\xe9\n"), DEPLOY, (OVERRIDE_INI, r"UTF-8")),
    "template: the default one, for a customer without an override": Case(
        edit("config_templates/northwind/northwind.ini.j2", "{{ db_port }}", "{{ db_port }"),
        ("render", "retailer", "staging"), (r"config_templates/northwind/northwind\.ini\.j2:\d+", r"syntax")),
    # -- the release store ---------------------------------------------------------------------------
    "missing artifact": Case(nothing, ("deploy", "manufacturer", "staging", "--release", "5.5"),
                             (r"northwind-5\.5\.tar\.gz not found", r"build-release 5\.5")),
    "checksum file missing": Case(remove(SHA), DEPLOY, (r"northwind-1\.1\.tar\.gz\.sha256 is missing",)),
    "checksum mismatch": Case(write(SHA, "0" * 64 + "  northwind-1.1.tar.gz\n"),
                              DEPLOY, (r"northwind-1\.1\.tar\.gz", r"checksum mismatch")),
    "checksum file malformed": Case(write(SHA, "not-a-digest  northwind-1.1.tar.gz\n"),
                                    DEPLOY, (r"northwind-1\.1\.tar\.gz\.sha256", r"malformed")),
    "checksum file names another artifact": Case(write(SHA, "a" * 64 + "  northwind-1.0.tar.gz\n"),
                                                 DEPLOY, (r"northwind-1\.1\.tar\.gz\.sha256",)),
    "artifact is not an archive": Case(not_an_archive, DEPLOY, (r"northwind-1\.1\.tar\.gz",
                                                                  r"not a readable tar archive")),
    "release version with a path in it": Case(nothing, ("deploy", "manufacturer", "staging", "--release", "../1.0"),
                                              (r"'\.\./1\.0' is not a valid version",)),
    # -- the command line ------------------------------------------------------------------------------
    "unknown engine": Case(nothing, (*DEPLOY, "--engine", "chef"), (r"--engine", r"chef")),
    "bad --serial: zero": Case(nothing, (*DEPLOY_PROD, "--serial", "0"), (r"--serial '0'",)),
    "bad --serial: words": Case(nothing, (*DEPLOY_PROD, "--serial", "half"), (r"--serial 'half'",)),
    "bad --serial: over 100%": Case(nothing, (*DEPLOY_PROD, "--serial", "150%"), (r"--serial '150%'",)),
    "bad --max-fail": Case(nothing, (*DEPLOY_PROD, "--max-fail", "some"), (r"--max-fail 'some'",)),
    "missing --release": Case(nothing, ("deploy", "manufacturer", "staging"), (r"--release",)),
    "unknown verb": Case(nothing, ("deplo", "manufacturer", "staging"), (r"deplo",)),
    "unknown option": Case(nothing, (*DEPLOY, "--relase", "1.1"), (r"--relase",)),
    "empty promotion override reason": Case(nothing, (*DEPLOY_PROD, "--override-promotion", " "),
                                            (r"--override-promotion needs a reason",)),
    "promotion refused": Case(nothing, ("deploy", "manufacturer", "production", "--release", "1.1"),
                              (r"promotion", r"staging", r"--override-promotion")),
    "unlock without a reason": Case(nothing, ("unlock", "manufacturer", "staging", "--reason", " "),
                                    (r"unlock needs --reason",)),
    "workspace that does not exist": Case(nothing, ("status", "--workspace", "/nonexistent/ws"),
                                          (r"/nonexistent/ws",)),
    "history --limit not a number": Case(nothing, ("history", "manufacturer", "staging", "--limit", "ten"),
                                         (r"--limit", r"ten")),
    "--check with the pyinfra engine": Case(nothing, (*DEPLOY, "--check"), (r"--check/--diff belong to the ansible",)),
    "rollback of an unknown environment": Case(nothing, ("rollback", "manufacturer", "prod"),
                                               (r"unknown environment 'prod'",)),
    "render of an unknown host": Case(nothing, ("render", "manufacturer", "staging", "--host", "nope"),
                                      (r"unknown host nope",)),
}




@pytest.fixture(scope="module")
def deployed(tmp_path_factory, test_hosts, release_store) -> Path:
    """A pristine workspace; staging and production run 1.0, so every host has a ledger to guard."""
    test_hosts.reset()
    ws = copy_workspace(tmp_path_factory.mktemp("bad-input") / "ws", test_hosts, release_store)
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    run_golive(ws, "check", "manufacturer", "staging", check=0)  # promotion needs a passed check
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    return ws


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_clear_message_and_touches_no_host(name, deployed, test_hosts, tmp_path):
    case = CASES[name]
    ws = tmp_path / "ws"
    shutil.copytree(deployed, ws)
    case.breaker(ws)
    before = snapshot_hosts(test_hosts)
    result = run_golive(ws, *case.argv)
    after = snapshot_hosts(test_hosts)
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.output}"
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("golive: error: ") for line in lines), result.stderr
    assert len(lines) <= 3, f"not one clear message:\n{result.stderr}"
    for pattern in case.expect:
        assert re.search(pattern, result.stderr), f"{pattern!r} not in:\n{result.stderr}"
    assert snapshot_difference(before, after) == [], "a host was touched"


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30
    assert set(WORKSPACE_FILES) >= {"golive.yml", "inventories", "config_templates"}

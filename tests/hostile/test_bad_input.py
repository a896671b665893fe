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

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import WORKSPACE_FILES, copy_workspace, run_golive, snapshot_difference, snapshot_hosts

MFG = "inventories/manufacturer"
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


def edit_all(relative: str, old: str, new: str) -> Callable[[Path], None]:
    def breaker(ws: Path) -> None:
        path = ws / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new))
    return breaker


def nothing(ws: Path) -> None:
    pass


def customer_directory(name: bytes) -> Callable[[Path], None]:
    """An inventory directory whose name cannot be a customer's (a copy of the manufacturer's)."""
    def breaker(ws: Path) -> None:
        shutil.copytree(ws / MFG, ws / "inventories" / os.fsdecode(name))
    return breaker


# An alias bomb ("billion laughs"): 9 aliases a level, 9 levels: 387,420,489 strings once expanded.
BOMB = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
DEEP = "deep: " + "[" * 150 + "]" * 150 + "\n"
RECURSIVE = "loop: &loop [*loop]\n"
LONG = "x" * 300


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
                                         ("validate",), (r"main\.yml:\d+", r"'log_level'.*allowed",
                                                         r"variables\.log_level\.allowed at golive\.yml:\d+")),
    "vars file: a typo in a required variable's name": Case(
        edit(f"{MFG}/group_vars/all/main.yml", "company_name:", "comapny_name:"),
        DEPLOY, (rf"{MFG}/group_vars/all/main\.yml:\d+", r"did you mean 'company_name'", r"golive\.yml:\d+")),
    "golive.yml: no health section": Case(
        edit("golive.yml", "health:\n  url:", "healthcheck_url_was_here:\n  url:"),
        ("validate",), (r"no 'health:' section",)),
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
                                                                  r"not gzip-compressed, as its name declares")),
    "release version with a path in it": Case(nothing, ("deploy", "manufacturer", "staging", "--release", "../1.0"),
                                              (r"'\.\./1\.0' is not a valid version",)),
    # -- values interpolated into shell commands (golive.yml command fields) ---------------------------
    "hook puts an inventory value into a command unquoted": Case(
        edit("golive.yml", 'before_cutover: ""', 'before_cutover: "echo {{ company_name }} > /tmp/x"'),
        DEPLOY, (r"golive\.yml:\d+", r"hooks\.before_cutover", r"\{\{ company_name \}\}",
                 r"\{\{ company_name \| quote \}\}")),
    "service command puts an inventory value into a command unquoted": Case(
        edit("golive.yml", "northwind-ctl restart", "northwind-ctl restart {{ log_level }}"),
        DEPLOY, (r"golive\.yml:\d+", r"service\.restart", r"\{\{ log_level \| quote \}\}")),
    "health command puts an inventory value into a command unquoted": Case(
        edit("golive.yml", "  timeout: 2          # seconds", '  command: "curl -s {{ public_url }}/health"\n'
                                                           "  timeout: 2          # seconds"),
        DEPLOY, (r"golive\.yml:\d+", r"health\.command", r"\{\{ public_url \| quote \}\}")),
    "hook joins golive's name with an inventory value unquoted": Case(
        edit("golive.yml", 'after_cutover: ""', 'after_cutover: "ls {{ golive_app_root ~ company_name }}"'),
        DEPLOY, (r"golive\.yml:\d+", r"hooks\.after_cutover", r"\(golive_app_root ~ company_name\) \| quote")),
    "hook assigns golive's own name from an inventory value": Case(
        edit("golive.yml", 'on_rollback: ""',
             'on_rollback: "{% set golive_host = company_name %}echo {{ golive_host }}"'),
        DEPLOY, (r"golive\.yml:\d+", r"hooks\.on_rollback", r"golive_host is golive's own name")),
    "hook loops over an inventory list unquoted": Case(
        edit("golive.yml", 'on_rollback: ""',
             'on_rollback: "{% for code in plant_codes %}echo {{ code }};{% endfor %}"'),
        ("validate",), (r"golive\.yml:\d+", r"\{\{ code \| quote \}\}")),
    "systemd unit named by an inventory value unquoted": Case(
        edit("golive.yml", "service:\n", 'service:\n  systemd_unit: "{{ company_name }}.service"\n'),
        DEPLOY, (r"golive\.yml:\d+", r"service\.systemd_unit")),
    # -- names that become paths ----------------------------------------------------------------------
    **{f"customer name on the command line: {label}": Case(
        nothing, ("deploy", name, "staging", "--release", "1.1"), (r"command line CUSTOMER", r"customer name"))
       for label, name in (("..", ".."), ("../x", "../inventories/manufacturer"), ("absolute", "/etc"),
                           ("a/b", "manufacturer/x"), (".", "."), ("empty", ""), ("newline", "manu\nfacturer"),
                           ("very long", LONG), ("not UTF-8", "manu\udcfffacturer"))},
    "customer directory whose name cannot be a customer's": Case(
        customer_directory(b"bad name\xff"), ("validate",), (r"inventories/", r"customer name")),
    "environment name on the command line with a path in it": Case(
        nothing, ("deploy", "manufacturer", "../staging", "--release", "1.1"),
        (r"command line ENVIRONMENT", r"environment name '\.\./staging'")),
    "host name on the command line with a path in it": Case(
        nothing, (*DEPLOY, "--host", "../../x"), (r"command line --host", r"host name '\.\./\.\./x'")),
    "render --out for a host name on the command line with a path in it": Case(
        nothing, ("render", "manufacturer", "staging", "--host", "../../x", "--out", "out"),
        (r"command line --host",)),
    **{f"host name in hosts.yml: {label}": Case(
        edit_all(f"{MFG}/hosts.yml", "mfg-stg-1:", f"{json.dumps(name)}:"), ("render", "manufacturer", "staging"),
        (rf"{MFG}/hosts\.yml", r"host name")) for label, name in (
            ("../../x", "../../x"), ("absolute", "/tmp/x"), ("a/b", "a/b"), ("..", ".."), ("leading -", "-x"),
            ("newline", "a\nb"), ("NUL", "a\0b"), ("very long", LONG))},
    **{f"template dest: {label}": Case(
        edit("golive.yml", "dest: features.json,", f"dest: {json.dumps(dest)},"), DEPLOY,
        (r"golive\.yml:\d+", r"template dest name")) for label, dest in (
            ("..", "../features.json"), ("absolute", "/etc/features.json"), ("a/b", "sub/features.json"),
            ("hidden", ".features.json"), ("empty", ""), ("newline", "features\njson"), ("NUL", "f\0.json"),
            ("leading -", "-features.json"))},
    "template src with '..'": Case(edit("golive.yml", "src: features.json.j2", "src: ../../etc/passwd"),
                                   DEPLOY, (r"golive\.yml:\d+", r"template src")),
    **{f"shared directory: {label}": Case(
        edit("golive.yml", "shared: [data, logs, run]", f"shared: [data, {json.dumps(name)}, run]"), DEPLOY,
        (r"golive\.yml:\d+", r"shared directory")) for label, name in (
            ("..", ".."), ("a/b", "logs/x"), ("absolute", "/var/log"), ("empty", ""), ("reserved config", "config"))},
    "environment name in golive.yml with a path in it": Case(
        edit("golive.yml", "  staging: {}", '  staging: {}\n  "../uat": {}'), DEPLOY,
        (r"golive\.yml:\d+", r"environment name '\.\./uat'")),
    "application name with a path in it": Case(edit("golive.yml", "name: northwind ", 'name: "../northwind" '),
                                               DEPLOY, (r"golive\.yml:\d+", r"application name")),
    "application root with a space": Case(edit("golive.yml", "root: /opt/northwind", 'root: "/opt/north wind"'),
                                          DEPLOY, (r"golive\.yml:\d+", r"application\.root")),
    "application root with '..'": Case(edit("golive.yml", "root: /opt/northwind", "root: /opt/../etc"),
                                       DEPLOY, (r"golive\.yml:\d+", r"application\.root")),
    "release version ending in a newline": Case(nothing, ("deploy", "manufacturer", "staging", "--release", "1.1\n"),
                                                (r"--release", r"not a valid version")),
    "rollback --to ending in a newline": Case(nothing, ("rollback", "manufacturer", "staging", "--to", "1.0\n"),
                                              (r"--to", r"not a valid version")),
    # -- release_store.artifact patterns ---------------------------------------------------------------
    **{f"artifact pattern: {label}": Case(
        edit("golive.yml", 'artifact: "{app}-{version}.tar.gz"', f"artifact: {json.dumps(pattern)}"), DEPLOY,
        (r"golive\.yml:\d+", r"release_store\.artifact", words)) for label, pattern, words in (
            ("unknown field", "{app}-{version}-{arch}.tar.gz", r"unknown field \{arch\}"),
            ("stray {", "{app}-{version.tar.gz", r"not a valid pattern"),
            ("stray }", "{app}}-{version}.tar.gz", r"not a valid pattern"),
            ("subfolder", "sub/{app}-{version}.tar.gz", r"plain file name"),
            ("..", "../{app}-{version}.tar.gz", r"plain file name"),
            ("format spec", "{app}-{version:>9}.tar.gz", r"unknown field"),
            ("unknown format", "{app}-{version}.zip", r"must end in"),
            ("no version", "{app}.tar.gz", r"must contain \{version\}"))},
    # -- input that used to hang or crash ---------------------------------------------------------------
    "golive.yml: alias bomb": Case(edit("golive.yml", "keep_releases: 5", f"keep_releases: 5\n{BOMB}"),
                                   DEPLOY, (r"golive\.yml", r"alias")),
    "golive.yml: nested too deeply": Case(edit("golive.yml", "keep_releases: 5", f"keep_releases: 5\n{DEEP}"),
                                          DEPLOY, (r"golive\.yml", r"nested")),
    "golive.yml: recursive alias": Case(edit("golive.yml", "keep_releases: 5", f"keep_releases: 5\n{RECURSIVE}"),
                                        DEPLOY, (r"golive\.yml", r"alias refers to itself")),
    "vars file: alias bomb": Case(write(f"{MFG}/group_vars/all/bomb.yml", BOMB), DEPLOY,
                                  (rf"{MFG}/group_vars/all/bomb\.yml", r"alias")),
    "vars file: nested too deeply": Case(write(f"{MFG}/group_vars/staging/deep.yml", DEEP), DEPLOY,
                                         (rf"{MFG}/group_vars/staging/deep\.yml", r"nested")),
    "vars file: recursive alias": Case(write(f"{MFG}/group_vars/all/loop.yml", RECURSIVE), DEPLOY,
                                       (rf"{MFG}/group_vars/all/loop\.yml", r"alias refers to itself")),
    "hosts.yml: alias bomb": Case(edit(f"{MFG}/hosts.yml", "all:\n", f"{BOMB}all:\n"), DEPLOY,
                                  (rf"{MFG}/hosts\.yml", r"alias")),
    "SSH key file missing": Case(edit(f"{MFG}/group_vars/all/connection.yml", "client_key", "no-such-key"), DEPLOY,
                                 (rf"{MFG}/group_vars/all/connection\.yml:\d+", r"mfg-stg-1",
                                  r"ansible_ssh_private_key_file", r"no-such-key", r"does not exist")),
    "SSH key file missing, Ansible engine": Case(
        edit(f"{MFG}/group_vars/all/connection.yml", "client_key", "no-such-key"), (*DEPLOY, "--engine", "ansible"),
        (rf"{MFG}/group_vars/all/connection\.yml:\d+", r"ansible_ssh_private_key_file", r"no-such-key")),
    "known_hosts file missing": Case(
        edit(f"{MFG}/group_vars/all/connection.yml", "UserKnownHostsFile=", "UserKnownHostsFile=/nonexistent"),
        DEPLOY, (rf"{MFG}/group_vars/all/connection\.yml:\d+", r"mfg-stg-1", r"known_hosts", r"/nonexistent")),
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
    "history --limit below one": Case(nothing, ("history", "manufacturer", "staging", "--limit", "-3"),
                                      (r"--limit", r"at least 1")),
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
    # (overridden rather than `golive check`ed: this suite is about input, not about the checks)
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", "--override-promotion",
               "set-up of the bad-input corpus", check=0)
    return ws


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_clear_message_and_touches_no_host(name, deployed, test_hosts, tmp_path):
    case = CASES[name]
    ws = tmp_path / "ws"
    shutil.copytree(deployed, ws)
    case.breaker(ws)
    before = snapshot_hosts(test_hosts)
    result = run_golive(ws, *case.argv, timeout=60)  # an alias bomb used to run for minutes
    after = snapshot_hosts(test_hosts)
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.output}"
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("golive: error: ") for line in lines), result.stderr
    assert not any(line.startswith("golive: error: golive: ") for line in lines), "the prefix is printed twice"
    assert len(lines) <= 3, f"not one clear message:\n{result.stderr}"
    for pattern in case.expect:
        assert re.search(pattern, result.stderr), f"{pattern!r} not in:\n{result.stderr}"
    assert snapshot_difference(before, after) == [], "a host was touched"


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 120
    assert set(WORKSPACE_FILES) >= {"golive.yml", "inventories", "config_templates"}

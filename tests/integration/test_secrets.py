"""A secret never appears in any output: every verb, success and failure, text and --json, -v,
plan diffs and the ledgers on the hosts; with both engines."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import VAULT_SECRETS, health_retries, host_path, run_golive, set_hook

PLAIN_SECRET = "Plain-Stg-Secret-77"  # not vaulted, but db_password is `secret: true` in the schema


def plant(workspace: Path) -> None:
    staging = workspace / "inventories/manufacturer/group_vars/staging.yml"
    staging.write_text(staging.read_text() + f"db_password: {PLAIN_SECRET}\n")


def assert_clean(result, where: str) -> None:
    for secret in (*VAULT_SECRETS, PLAIN_SECRET):
        assert secret not in result.output, f"secret leaked by {where}"


def test_no_verb_prints_a_secret(workspace, test_hosts):
    plant(workspace)
    runs = [
        ("inventory", "manufacturer"), ("inventory", "manufacturer", "--json"), ("validate",), ("validate", "-v"),
        ("render", "manufacturer", "staging"), ("render", "manufacturer", "staging", "--json"),
        ("plan", "manufacturer", "staging", "--release", "1.0", "--json"),
        ("deploy", "manufacturer", "staging", "--release", "1.0"),
        ("deploy", "manufacturer", "staging", "--release", "1.0", "--json", "-v"),
        ("deploy", "manufacturer", "production", "--release", "1.0", "--override-promotion", "test"),
        ("deploy", "manufacturer", "staging", "--release", "9.9"),  # fails and rolls back
        ("status",), ("status", "manufacturer", "--json"), ("history", "manufacturer", "staging", "--json"),
        ("rollback", "manufacturer", "production"), ("rollback", "manufacturer", "production", "--to", "7.7"),
        ("unlock", "manufacturer", "staging", "--reason", "test", "--json"),
        ("deploy", "manufacturer", "staging", "--release", "5.5"),  # missing artifact
    ]
    for args in runs:
        assert_clean(run_golive(workspace, *args), " ".join(args))
    # a plan whose diff includes the changed secret file shows that it changed, never its content
    staging = workspace / "inventories/manufacturer/group_vars/staging.yml"
    staging.write_text(staging.read_text().replace(PLAIN_SECRET, PLAIN_SECRET + "-rotated"))
    for flag in ((), ("--json",)):
        result = run_golive(workspace, "plan", "manufacturer", "staging", "--release", "1.0", *flag, check=0)
        assert "secrets.env" in result.stdout
        assert_clean(result, "plan after rotating the secret")
        assert PLAIN_SECRET + "-rotated" not in result.output
    # a template error next to a secret value names the variable, not the value
    template = workspace / "config_templates/northwind/secrets.env.j2"
    template.write_text("NORTHWIND_DB_PASSWORD={{ db_password }}{{ nosuchvar }}\n")
    result = run_golive(workspace, "render", "manufacturer", "staging", check=2)
    assert "nosuchvar" in result.stderr
    assert_clean(result, "render with a template error")
    for suffix in (11, 12, 13):
        ledger = host_path(test_hosts, suffix, "/opt/northwind/.golive/ledger.jsonl").read_text()
        assert all(s not in ledger for s in (*VAULT_SECRETS, PLAIN_SECRET)), f"secret in the ledger of .{suffix}"


# -- every verb, every failure path ------------------------------------------------------------------

SECRETS = (*VAULT_SECRETS, PLAIN_SECRET)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def host_files_with_a_secret(test_hosts, suffixes=(11, 12, 13)) -> list[str]:
    """Files on the hosts, other than the rendered secret files themselves, that hold a secret:
    ledgers, release metadata, locks, logs, anything."""
    found = []
    for info in test_hosts.hosts:
        if int(info.address.rsplit(".", 1)[1]) not in suffixes:
            continue
        for source in info.binds.values():
            for directory, _, files in os.walk(source):
                for name in files:
                    path = os.path.join(directory, name)
                    if name == "secrets.env" and "/config" in directory:
                        continue  # the one place a secret belongs (mode 0600)
                    try:
                        data = Path(path).read_bytes().decode("utf-8", "replace")
                    except OSError:
                        continue
                    found += [f"{path}: {s}" for s in leaks(data)]
    return found


def test_every_verb_and_failure_path_keeps_secrets_out_of_every_output(workspace, test_hosts, tmp_path):
    plant(workspace)
    ws = workspace
    app = ws / "golive.yml"
    runs: list[tuple[str, ...]] = []

    def run(*args: str, env: dict | None = None):
        result = run_golive(ws, *args, env=env)
        runs.append(args)
        assert leaks(result.output) == [], f"secret leaked by golive {' '.join(args)}:\n{result.output}"
        return result

    for verbose in ((), ("-v",), ("-vv",)):
        for flags in ((), ("--json",)):
            extra = (*verbose, *flags)
            run("inventory", "manufacturer", *extra)
            run("validate", *extra)
            run("render", "manufacturer", "staging", *extra)
            run("render", "manufacturer", "staging", "--out", str(tmp_path / "out"), *extra)
            run("plan", "manufacturer", "staging", "--release", "1.0", *extra)
    for flags in ((), ("--json",), ("-v",)):
        run("deploy", "manufacturer", "staging", "--release", "1.0", *flags)
        run("plan", "manufacturer", "production", "--release", "1.0", *flags)
        run("status", "manufacturer", "staging", *flags)
        run("history", "manufacturer", "staging", *flags)
        run("check", "manufacturer", "staging", "--junit", str(tmp_path / "junit.xml"), *flags)
        run("drift", "manufacturer", *flags)
        run("preflight", "manufacturer", "--release", "1.0", "--report", str(tmp_path / "report"), *flags)
    run("deploy", "manufacturer", "production", "--release", "1.0", "-v")
    run("deploy", "manufacturer", "staging", "--release", "1.1", "-v")
    run("rollback", "manufacturer", "staging", "-v")
    run("rollback", "manufacturer", "staging", "--to", "1.1", "--json")
    for path in (tmp_path / "report").rglob("*"):
        if path.is_file():
            assert leaks(path.read_text(errors="replace")) == [], f"secret in the preflight report {path}"
    assert leaks((tmp_path / "junit.xml").read_text()) == [], "secret in the JUnit report"

    # failure paths: a hook that prints the secret file and fails, then a restart that does the same
    original = app.read_text()
    app.write_text(original.replace('before_cutover: ""', 'before_cutover: "cat config/secrets.env; exit 1"'))
    run("deploy", "manufacturer", "staging", "--release", "1.0", "-v")
    run("deploy", "manufacturer", "staging", "--release", "1.0", "--json")
    app.write_text(original.replace('restart: "{{ golive_app_root }}/current/bin/northwind-ctl restart"',
                                    'restart: "cat {{ golive_app_root }}/current/config/secrets.env; exit 1"'))
    run("deploy", "manufacturer", "staging", "--release", "1.1", "-v")
    app.write_text(original)
    # a lock held by another run, an unreachable host, a health check that fails (9.9)
    lock = host_path(test_hosts, 11, "/opt/northwind/.golive/lock")
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text('{"operator": "zoe", "controller": "elsewhere", "pid": 1}')
    run("deploy", "manufacturer", "staging", "--release", "1.1", "-v", "--json")
    run("unlock", "manufacturer", "staging", "--reason", "test", "-v")
    test_hosts.stop("h13")
    try:
        run("deploy", "manufacturer", "production", "--release", "1.1", "--override-promotion", "t", "-v")
        run("status", "manufacturer", "-v")
        run("drift", "manufacturer", "--json")
        run("preflight", "manufacturer", "-v")
    finally:
        test_hosts.start("h13")
    run("deploy", "manufacturer", "staging", "--release", "9.9", "-v", "--json")

    # bad input that puts the secret right into the error: as a dict key, with a wrong type, next to
    # a YAML syntax error, in a template that indexes with it
    staging = ws / "inventories/manufacturer/group_vars/staging.yml"
    clean = staging.read_text()
    template = ws / "config_templates/northwind/secrets.env.j2"
    clean_template = template.read_text()
    template.write_text("NORTHWIND_DB_PASSWORD={{ {}[db_password] }}\n")
    for verb in (("render", "manufacturer", "staging"), ("deploy", "manufacturer", "staging", "--release", "1.0"),
                 ("validate",)):
        assert run(*verb, "-v").returncode == 2
    template.write_text(clean_template)
    staging.write_text(clean + "log_level: " + PLAIN_SECRET + "\n")  # a value not allowed
    assert run("validate", "-v").returncode == 2
    assert run("deploy", "manufacturer", "staging", "--release", "1.0", "-v").returncode == 2
    staging.write_text(clean.replace(f"db_password: {PLAIN_SECRET}", f"db_password: [{PLAIN_SECRET}]"))
    assert run("validate", "-v").returncode == 2
    staging.write_text(clean + f"broken: [{PLAIN_SECRET}\n")
    assert run("validate", "-v").returncode == 2
    assert run("deploy", "manufacturer", "staging", "--release", "1.0", "--json").returncode == 2
    staging.write_text(clean)

    assert host_files_with_a_secret(test_hosts) == []
    assert len(runs) >= 60


# -- the Ansible engine ------------------------------------------------------------------------------

def test_the_ansible_engine_keeps_secrets_out_of_every_output_and_ledger(workspace, test_hosts):
    """golive deploy|rollback --engine ansible, success and failure paths, -v, --json, --check --diff,
    and ansible-playbook run by hand on the workspace with --check --diff: no secret anywhere."""
    plant(workspace)
    ws = workspace
    health_retries(ws, 3)  # 9.9 fails sooner

    def run(*args: str):
        result = run_golive(ws, *args, "--engine", "ansible")
        assert leaks(result.output) == [], f"secret leaked by golive {' '.join(args)} (ansible):\n{result.output}"
        return result

    assert run("deploy", "manufacturer", "staging", "--release", "1.0", "-v").returncode == 0
    # a config change and a rotated secret: the diff shows the one, and only that the other changed
    staging = ws / "inventories/manufacturer/group_vars/staging.yml"
    staging.write_text(staging.read_text().replace(PLAIN_SECRET, PLAIN_SECRET + "-rotated")
                       + "log_level: debug\n")
    planned = run("deploy", "manufacturer", "staging", "--release", "1.1", "--check", "--diff", "-v")
    assert planned.returncode == 0 and "+log_level = debug" in planned.stdout, planned.output
    assert PLAIN_SECRET + "-rotated" not in planned.output
    env = {**os.environ, "ANSIBLE_CONFIG": str(ws / "ansible.cfg")}
    by_hand = subprocess.run(["ansible-playbook", "-i", "inventories/manufacturer", "playbooks/deploy.yml",
                              "--limit", "staging", "-e", "golive_release_version=1.1", "--check", "--diff", "-v"],
                             capture_output=True, text=True, cwd=ws, env=env)
    assert by_hand.returncode == 0 and "+log_level = debug" in by_hand.stdout, by_hand.stdout[-3000:]
    assert leaks(by_hand.stdout + by_hand.stderr) == [] and PLAIN_SECRET + "-rotated" not in by_hand.stdout

    # failure paths: a hook that prints the secret file and fails (its output goes into the ledger
    # entry), a health check that fails, a rollback refused, a host locked by another run
    set_hook(ws, "before_cutover", "cat config/secrets.env; exit 1")
    assert run("deploy", "manufacturer", "staging", "--release", "1.1", "-v").returncode == 3
    assert run("deploy", "manufacturer", "staging", "--release", "1.1", "--json").returncode == 3
    set_hook(ws, "before_cutover", "")
    assert run("deploy", "manufacturer", "staging", "--release", "9.9", "-v", "--json").returncode == 3
    assert run("deploy", "manufacturer", "staging", "--release", "1.1", "-v").returncode == 0
    assert run("rollback", "manufacturer", "staging", "-v").returncode == 0
    assert run("rollback", "manufacturer", "staging", "--to", "9.9", "--json").returncode == 3
    lock = host_path(test_hosts, 11, "/opt/northwind/.golive/lock")
    lock.mkdir()
    (lock / "owner.json").write_text('{"operator": "zoe", "controller": "elsewhere", "pid": 1}')
    assert run("deploy", "manufacturer", "staging", "--release", "1.1", "-v", "--json").returncode == 3

    assert host_files_with_a_secret(test_hosts, suffixes=(11,)) == []

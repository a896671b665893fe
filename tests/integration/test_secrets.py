"""A secret never appears in any output: every verb, success and failure, text and --json, -v,
plan diffs and the ledgers on the hosts."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import VAULT_SECRETS, host_path, run_golive

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

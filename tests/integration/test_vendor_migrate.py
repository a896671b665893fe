"""Held to a real product: a release whose migration is the vendor's own command (like
`trytond-admin -u`), with its own runtime, a large output, a pre-migration SQL script and a chain
of intermediate versions, through backup, migrate, verify, automatic restore and
`rollback --restore-db`, on two application hosts sharing one database. The command here is a
vendor-like tool of the tests' own (tests/fixtures/vendor/vendor-admin), not a real ERP."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

from tests.conftest import REPO, TEST_NET, host_view, run_golive, work_orders

PROD1, PROD2 = f"{TEST_NET}.12", f"{TEST_NET}.13"
VENDOR_ADMIN = Path(__file__).resolve().parents[1] / "fixtures" / "vendor" / "vendor-admin"
PRE_SQL = (b"CREATE TABLE IF NOT EXISTS vendor_pre (ran_at timestamptz DEFAULT now());\n"
           b"INSERT INTO vendor_pre DEFAULT VALUES;\n")


def vendor_release(store: Path, version: str, *extra: str) -> None:
    """The example release (no SQL migrations of its own) plus the vendor's tool and pre-migration
    script, packaged again by golive's packager (so its manifest lists them, as a vendor's would)."""
    from golive.adapters.package import Entry, write_artifact
    from golive.agent.archive import MANIFEST

    subprocess.run([str(REPO / "scripts" / "build-release"), version, "--store", str(store), "--files", "5",
                    "--size-kb", "20", "--migrations", "0", *extra], check=True, capture_output=True)
    artifact = store / f"northwind-{version}.tar.gz"
    entries = []
    with tarfile.open(artifact, "r:gz") as original:
        for member in original.getmembers():
            if member.isfile() and member.name != MANIFEST:
                entries.append(Entry(member.name, "file", member.mode, original.extractfile(member).read()))
    entries += [Entry("bin/vendor-admin", "file", 0o755, VENDOR_ADMIN.read_bytes()),
                Entry("migrations/pre.sql", "file", 0o644, PRE_SQL)]
    write_artifact(entries, "northwind", version, store, artifact.name)


def use_vendor_command(workspace: Path, target: str) -> None:
    """golive.yml: the migration is the vendor's command, through the chain of versions up to `target`."""
    app = workspace / "golive.yml"
    chain = [v for v in ("7.0", "7.8", "8.0", "8.1") if v <= target]
    block = ("  migrations:\n    kind: command\n    command:\n"
             + "".join(f"      - bin/vendor-admin migrate --to {v}\n" for v in chain)
             + "    version_command: bin/vendor-admin version\n    pre_sql: migrations/pre.sql\n"
               "    compatible: false\n")
    text, found = re.subn(r"^  migrations:\n(?:    .*\n|\s+#.*\n)+", block, app.read_text(), flags=re.MULTILINE)
    assert found == 1, app.read_text()
    app.write_text(text)


def deploy(ws: Path, version: str, check: int | None = 0):
    use_vendor_command(ws, version)
    return run_golive(ws, "deploy", "manufacturer", "production", "--release", version, "--override-promotion",
                      "vendor test", check=check)


def test_the_vendors_migrate_command_through_backup_verify_restore_and_rollback(db_workspace, databases,
                                                                                 test_hosts):
    store = db_workspace / "build" / "releases"
    for version, extra in (("7.0", ()), ("8.0", ()), ("8.1", ("--broken-health",))):
        vendor_release(store, version, *extra)
    (production,) = databases.start("manufacturer", "production")

    deploy(db_workspace, "7.0")
    assert production.rows("SELECT version FROM vendor_version") == [["7.0"]]
    assert production.history() == ["7.0"]
    assert work_orders(PROD1, order={"plant": "SH01", "product": "gear", "quantity": 3})[0] == 201

    # A chain 7.0 -> 7.8 -> 8.0, after the vendor's pre-migration script, run once for both hosts.
    upgraded = deploy(db_workspace, "8.0")
    assert "7.0 -> 8.0" in upgraded.output, upgraded.output
    assert production.rows("SELECT version FROM vendor_version") == [["8.0"]]
    assert production.history() == ["7.0", "8.0"]
    assert production.rows("SELECT count(*) FROM vendor_pre") == [["2"]]  # once per deploy, not per host
    assert "remark" in production.columns()
    for address in (PROD1, PROD2):
        from tests.conftest import health_of

        assert (health_of(address) or {}).get("schema_version") == "8.0"
    entry = json.loads(host_view(test_hosts, 13, "/opt/northwind/.golive/ledger.jsonl").read_text()
                       .splitlines()[-1])
    runner, log = entry["database"]["migration_log"].split(":", 1)
    assert runner == "mfg-prod-1", entry  # the command ran on the first application host, once
    text = host_view(test_hosts, 12, log).read_text()
    assert text.count("updating module") == 2 * 400 + 2 * 400, "the whole output is kept"  # 7.8, 8.0

    # 8.1 migrates, then fails its health check: the database goes back to 8.0 before 8.0 restarts.
    failed = deploy(db_workspace, "8.1", 3)
    assert "restored from backup" in failed.output, failed.output
    assert production.rows("SELECT version FROM vendor_version") == [["8.0"]]
    assert "lot" not in production.columns() and production.history() == ["7.0", "8.0"]
    status, body = work_orders(PROD2)
    assert status == 200 and [o["product"] for o in body["work_orders"]] == ["gear"], body

    # Back to 7.0: the vendor's migration is not compatible (golive.yml), so only with its cost, by restore.
    use_vendor_command(db_workspace, "8.0")
    refused = run_golive(db_workspace, "rollback", "manufacturer", "production", check=2)
    assert "what --restore-db would cost" in refused.stderr, refused.stderr
    run_golive(db_workspace, "rollback", "manufacturer", "production", "--restore-db", check=0)
    assert production.rows("SELECT version FROM vendor_version") == [["7.0"]]
    assert production.history() == ["7.0"] and "remark" not in production.columns()


def test_a_vendor_command_that_fails_half_way_is_undone_from_the_backup(db_workspace, databases, test_hosts):
    store = db_workspace / "build" / "releases"
    for version in ("7.0", "8.0"):
        vendor_release(store, version)
    (production,) = databases.start("manufacturer", "production")
    deploy(db_workspace, "7.0")
    app = db_workspace / "golive.yml"
    use_vendor_command(db_workspace, "8.0")
    app.write_text(app.read_text().replace("bin/vendor-admin migrate --to 8.0",
                                           "VENDOR_ADMIN_FAIL_AT=8.0 bin/vendor-admin migrate --to 8.0"))
    result = run_golive(db_workspace, "deploy", "manufacturer", "production", "--release", "8.0",
                        "--override-promotion", "vendor test", check=3)
    assert "migrate command 3 of 3 failed (exit 3)" in result.output, result.output
    assert "restored from backup" in result.output, result.output
    assert production.rows("SELECT version FROM vendor_version") == [["7.0"]]
    assert "note" not in production.columns() and "remark" not in production.columns()
    for address in (PROD1, PROD2):
        from tests.conftest import health_of

        report = health_of(address) or {}
        assert (report.get("version"), report.get("schema_version")) == ("7.0", "7.0"), report

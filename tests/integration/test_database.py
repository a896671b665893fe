"""The client's database through deploy: backed up, migrated once per environment, restored when a
release that changed the schema fails. Real PostgreSQL 15 servers, one per environment, on the
database hosts' addresses; real SSH test hosts; the golive CLI as a user runs it."""

from __future__ import annotations

import json

from tests.conftest import TEST_NET, host_view, run_golive, work_orders

STG, PROD1, PROD2 = f"{TEST_NET}.11", f"{TEST_NET}.12", f"{TEST_NET}.13"
DB_STG, DB_PROD = 16, 17


def ledger(hosts, suffix: int) -> list[dict]:
    path = host_view(hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def backups(hosts, suffix: int) -> list[dict]:
    directory = host_view(hosts, suffix, "/opt/northwind/.golive/backups")
    return sorted((json.loads(p.read_text()) for p in directory.glob("*.json")), key=lambda b: b["created_at"]) \
        if directory.is_dir() else []


def health(address: str) -> dict:
    from tests.conftest import health_of

    return health_of(address) or {}


def test_deploys_migrate_the_database_once_per_environment(db_workspace, databases, test_hosts):
    staging, production = databases.start("manufacturer", "staging", "production")
    deployed = run_golive(db_workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    assert "migrated (none) -> 0001" in deployed.stdout, deployed.output
    assert staging.history() == ["0001"]
    assert health(STG)["schema_version"] == "0001"
    assert work_orders(STG, order={"plant": "SH01", "product": "gear", "quantity": 4})[0] == 201

    run_golive(db_workspace, "deploy", "manufacturer", "staging", "--release", "1.1", check=0)
    assert staging.history() == ["0001", "0002"]
    assert "priority" in staging.columns()
    status, body = work_orders(STG)
    assert status == 200 and body["work_orders"][0]["product"] == "gear", body  # the 1.0 row survived
    assert health(STG)["schema_version"] == "0002"

    # Two production hosts, one database: migrated once, backed up once, on the database host.
    run_golive(db_workspace, "deploy", "manufacturer", "production", "--release", "1.1",
               "--override-promotion", "test", check=0)
    assert production.history() == ["0001", "0002"]
    assert production.rows("SELECT count(*) FROM golive_schema_history")[0] == ["2"]
    taken = backups(test_hosts, DB_PROD)
    assert len(taken) == 1 and taken[0]["verified"] and taken[0]["schema"] == [], taken
    assert not backups(test_hosts, 12) and not backups(test_hosts, 13)  # never on an application host
    for suffix in (12, 13):
        entry = ledger(test_hosts, suffix)[-1]
        assert entry["result"] == "ok" and entry["database"]["backup"] == taken[0]["id"], entry
        assert entry["database"]["schema_after"] == "0002", entry
    db_actions = [(e["action"], e["result"]) for e in ledger(test_hosts, DB_PROD)]
    assert db_actions == [("backup", "ok"), ("migrate", "ok")], db_actions

    # Again: nothing pending, nothing backed up, nothing migrated.
    again = run_golive(db_workspace, "deploy", "manufacturer", "production", "--release", "1.1",
                       "--override-promotion", "test", check=0)
    assert "nothing to migrate" in again.stdout, again.output
    assert len(backups(test_hosts, DB_PROD)) == 1


def deploy(ws, environment: str, version: str, check: int | None = 0, *extra: str):
    promote = ("--override-promotion", "test") if environment == "production" else ()
    return run_golive(ws, "deploy", "manufacturer", environment, "--release", version, *promote, *extra, check=check)


def test_a_release_that_fails_after_a_contract_migration_restores_the_database_first(db_workspace, databases,
                                                                                     test_hosts):
    """9.9 renames a column (contract) and then fails its health check: the database is restored from
    this run's backup before 1.1 starts again on both hosts, and nothing written before is lost."""
    (production,) = databases.start("manufacturer", "production")
    deploy(db_workspace, "production", "1.0")
    deploy(db_workspace, "production", "1.1")
    for plant in ("SH01", "SZ02"):
        assert work_orders(PROD1, order={"plant": plant, "product": "gear", "quantity": 2, "priority": 1})[0] == 201

    failed = deploy(db_workspace, "production", "9.9", 3)
    assert "restored from backup" in failed.stdout, failed.output
    assert production.history() == ["0001", "0002"]
    assert "product" in production.columns() and "item_code" not in production.columns()
    for address in (PROD1, PROD2):
        report = health(address)
        assert (report["version"], report["schema_version"], report["status"]) == ("1.1", "0002", "ok"), report
        status, body = work_orders(address)
        assert status == 200 and sorted(o["plant"] for o in body["work_orders"]) == ["SH01", "SZ02"], body
    for suffix in (12, 13):
        entries = ledger(test_hosts, suffix)
        assert entries[-1]["result"] == "rolled_back" and entries[-1]["database"]["restored"] is True, entries[-1]
    db_actions = [(e["action"], e["result"]) for e in ledger(test_hosts, DB_PROD)]
    assert db_actions[-3:] == [("backup", "ok"), ("migrate", "ok"), ("restore", "ok")], db_actions
    # What the database held when it was replaced stays beside it.
    kept = [r[0] for r in production.server.query("SELECT datname FROM pg_database WHERE datname LIKE "
                                                  "'northwind\\_\\_golive\\_replaced%'", "postgres")]
    assert len(kept) == 1, kept
    data = json.loads(run_golive(db_workspace, "status", "manufacturer", "production", "--json", check=0).stdout)
    assert {h["version"] for h in data["hosts"]} == {"1.1"}, data


def test_what_can_be_known_before_is_refused_before_any_host_is_touched(db_workspace, databases, test_hosts,
                                                                        tmp_path):
    from tests.conftest import build_release, snapshot_difference, snapshot_hosts

    (staging,) = databases.start("manufacturer", "staging")
    deploy(db_workspace, "staging", "1.1")
    store = db_workspace / "build" / "releases"

    def refused(version: str, *expected: str, options: tuple[str, ...] = (), environment: str = "staging") -> str:
        before = snapshot_hosts(test_hosts)
        result = deploy(db_workspace, environment, version, None, *options)
        assert result.returncode == 2, result.output
        assert "Traceback" not in result.output
        for text in expected:
            assert text in result.stderr, result.stderr
        assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
        assert staging.password not in result.output
        return result.stderr

    # An applied migration whose file changed.
    changed = tmp_path / "0002_work_order_priority.sql"
    changed.write_text("-- golive: expand\nALTER TABLE work_orders ADD COLUMN priority smallint;\n")
    build_release(store, "1.3", "--migrations", "1", "--add-migration", str(changed))
    refused("1.3", "0002_work_order_priority was applied with checksum", "must not change")
    # A migration numbered before one that is applied.
    late = tmp_path / "0001_extra.sql"
    late.write_text("CREATE TABLE extra (id int);\n")
    # A declared expand that drops a column: refused from the file alone, with its line.
    lie = tmp_path / "0003_cleanup.sql"
    lie.write_text("-- golive: expand\nSELECT 1;\nALTER TABLE work_orders DROP COLUMN status;\n")
    build_release(store, "1.4", "--migrations", "2", "--add-migration", str(lie))
    refused("1.4", "0003_cleanup.sql:3", "declared expand, but it drops a column")
    # A wrong password: one clear message, never the password.
    staging.server.psql(f"ALTER ROLE {staging.user} PASSWORD 'not-the-vault-one'")
    refused("1.2", "refused the password of user northwind")
    staging.server.psql(f"ALTER ROLE {staging.user} PASSWORD '{staging.password}'")
    # The database server down; the database host unreachable.
    staging.server.stop()
    refused("1.2", "cannot reach the database server at")
    staging.server.start()
    test_hosts.stop(f"{TEST_NET}.{DB_STG}")
    try:
        refused("1.2", "its host is unreachable")
    finally:
        test_hosts.start(f"{TEST_NET}.{DB_STG}")


def test_hosts_subsets_and_batches_cannot_leave_old_code_on_a_migrated_schema(db_workspace, databases, test_hosts):
    from tests.conftest import snapshot_difference, snapshot_hosts

    databases.start("manufacturer", "production")
    deploy(db_workspace, "production", "1.1")
    before = snapshot_hosts(test_hosts)
    subset = deploy(db_workspace, "production", "1.2", 2, "--host", "mfg-prod-1")
    assert "--host" in subset.stderr and "mfg-prod-2" in subset.stderr and "old code" in subset.stderr, subset.stderr
    serial = deploy(db_workspace, "production", "1.2", 2, "--serial", "1")
    assert "--serial" in serial.stderr and "side by side" in serial.stderr, serial.stderr
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    # Without a migration pending, batches and subsets are as before.
    deploy(db_workspace, "production", "1.1", 0, "--serial", "1")

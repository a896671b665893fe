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


def wait_for_statistics(database, table: str, inserted: int) -> None:
    """PostgreSQL counts a closed session's writes a moment after it ends: wait until it has."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = database.rows(f"SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = '{table}'")
        if rows and int(rows[0][0]) >= inserted:
            return
        time.sleep(0.1)
    raise AssertionError(f"the statistics never showed {inserted} rows inserted into {table}")


def test_rollback_after_additive_migrations_is_code_only(db_workspace, databases, test_hosts):
    (staging,) = databases.start("manufacturer", "staging")
    deploy(db_workspace, "staging", "1.0")
    deploy(db_workspace, "staging", "1.1")
    assert work_orders(STG, order={"plant": "SH01", "product": "gear", "quantity": 1, "priority": 2})[0] == 201
    backups_before = backups(test_hosts, DB_STG)
    result = run_golive(db_workspace, "rollback", "manufacturer", "staging", check=0)
    assert "code-only" in result.stdout and "additive" in result.stdout, result.output
    assert staging.history() == ["0001", "0002"] and "priority" in staging.columns()
    report = health(STG)
    assert (report["version"], report["schema_version"], report["status"]) == ("1.0", "0002", "ok"), report
    assert work_orders(STG, order={"plant": "SH01", "product": "bolt", "quantity": 3})[0] == 201  # 1.0 code writes
    assert backups(test_hosts, DB_STG) == backups_before  # nothing restored, nothing taken
    assert [e["action"] for e in ledger(test_hosts, DB_STG)][-1] == "migrate"


def test_rollback_over_a_contract_migration_states_its_cost_and_needs_restore_db(db_workspace, databases,
                                                                                 test_hosts):
    from tests.conftest import snapshot_difference, snapshot_hosts

    (production,) = databases.start("manufacturer", "production")
    deploy(db_workspace, "production", "1.1")
    deploy(db_workspace, "production", "1.2")
    assert "item_code" in production.columns()
    for plant in ("SH01", "SH02", "SZ02"):
        assert work_orders(PROD2, order={"plant": plant, "item_code": "GX-1", "quantity": 5})[0] == 201
    wait_for_statistics(production, "work_orders", 3)

    before = snapshot_hosts(test_hosts)
    refused = run_golive(db_workspace, "rollback", "manufacturer", "production", check=2)
    assert "cannot run on the database as it is: 0003_item_codes (contract)" in refused.stderr, refused.stderr
    assert "what --restore-db would cost" in refused.stderr
    assert "3 inserted" in refused.stderr, refused.stderr
    assert "expected restore time: unknown (never rehearsed" in refused.stderr
    assert "--down: run the live release's down-migrations" in refused.stderr
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    assert production.history() == ["0001", "0002", "0003"]

    restored = run_golive(db_workspace, "rollback", "manufacturer", "production", "--restore-db", check=0)
    assert "rows written since:" in restored.output and "3 inserted" in restored.output, restored.output
    # The cost was said before anything happened: it is on stderr (progress) ahead of the restore.
    assert restored.stderr.index("rows written since") < restored.stderr.index("mfg-db-prod:"), restored.stderr
    assert production.history() == ["0001", "0002"] and "product" in production.columns()
    for address in (PROD1, PROD2):
        report = health(address)
        assert (report["version"], report["schema_version"]) == ("1.1", "0002"), report
    status, body = work_orders(PROD1)
    assert status == 200 and body["work_orders"] == [], body  # the rows written after the backup are gone ...
    kept = production.server.query("SELECT datname FROM pg_database WHERE datname LIKE "
                                   "'northwind\\_\\_golive\\_replaced%'", "postgres")
    assert len(kept) == 1
    assert production.server.query("SELECT count(*) FROM work_orders", kept[0][0]) == [["3"]]  # ... but kept aside


def test_rollback_with_down_migrations_keeps_the_rows(db_workspace, databases, test_hosts):
    (production,) = databases.start("manufacturer", "production")
    deploy(db_workspace, "production", "1.1")
    deploy(db_workspace, "production", "1.2")
    assert work_orders(PROD1, order={"plant": "SH01", "item_code": "GX-2", "quantity": 7})[0] == 201
    result = run_golive(db_workspace, "rollback", "manufacturer", "production", "--down", check=0)
    assert "undone: 0003_item_codes" in result.stdout, result.output
    assert production.history() == ["0001", "0002"] and "product" in production.columns()
    status, body = work_orders(PROD2)
    assert status == 200 and [o["product"] for o in body["work_orders"]] == ["GX-2"], body
    assert health(PROD2)["version"] == "1.1"
    assert [e["action"] for e in ledger(test_hosts, DB_PROD)][-1] == "down"


def test_plan_lists_pending_migrations_and_the_backup_it_would_take(db_workspace, databases, test_hosts):
    from tests.conftest import snapshot_difference, snapshot_hosts

    databases.start("manufacturer", "production")
    deploy(db_workspace, "production", "1.0")
    before = snapshot_hosts(test_hosts)
    plan = run_golive(db_workspace, "plan", "manufacturer", "production", "--release", "1.2", "--json", check=0).json()
    pending = plan["database"]["pending"]
    assert [(m["version"], m["kind"], m["reversible"], m["compatible_with_previous"]) for m in pending] == [
        ("0002", "expand", True, True), ("0003", "contract", True, False)], pending
    assert plan["database"]["stops_hosts"] and not plan["database"]["compatible_with_previous"]
    assert plan["database"]["backup"]["location"].endswith("/.golive/backups")
    text = run_golive(db_workspace, "plan", "manufacturer", "production", "--release", "1.2", check=0).stdout
    assert "backup first: pg_dump -Fc" in text and "rollback afterwards: needs --restore-db" in text, text
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    # The plan is exact: the deploy applies what it listed, and backs up where it said.
    deploy(db_workspace, "production", "1.2")
    assert databases.started[("manufacturer", "production")].history() == ["0001", "0002", "0003"]


def test_backups_are_listed_rehearsed_on_staging_and_that_time_is_the_estimate(db_workspace, databases, test_hosts):
    databases.start("manufacturer", "staging", "production")
    for environment in ("staging", "production"):
        deploy(db_workspace, environment, "1.1")
        deploy(db_workspace, environment, "1.2")
    listed = run_golive(db_workspace, "backups", "manufacturer", "staging", "--json", check=0).json()
    assert [b["schema_version"] for b in listed["backups"]] == ["0002", None], listed
    rehearsed = run_golive(db_workspace, "backups", "manufacturer", "staging", "--rehearse", check=0)
    assert "nothing live changed" in rehearsed.stdout, rehearsed.output
    again = run_golive(db_workspace, "backups", "manufacturer", "staging", "--json", check=0).json()
    newest = again["backups"][0]
    assert newest["restores"] and newest["restores"][0]["kind"] == "rehearsal", newest
    assert databases.started[("manufacturer", "staging")].history() == ["0001", "0002", "0003"]  # untouched
    refused = run_golive(db_workspace, "rollback", "manufacturer", "production", check=2)
    assert "expected restore time: about" in refused.stderr and "staging restored a" in refused.stderr, \
        refused.stderr
    # A restore by id under the live release is refused when that release does not run on its schema.
    wrong = run_golive(db_workspace, "backups", "manufacturer", "production", "--restore", newest["id"].replace(
        "staging", "production"), "--reason", "test", check=2)
    assert "no backup" in wrong.stderr or "golive rollback --restore-db" in wrong.stderr, wrong.stderr

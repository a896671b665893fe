"""The database in drift, checks and preflight: a schema changed by hand is drift; staging and
production are compared by their applied migrations and a normalised schema fingerprint; golive
check proves the database answers with the rendered credentials, at the schema the live release
expects, with a last backup that reads back; preflight gates on pending migrations, backup space
and a restore rehearsed on staging, and tells the client what a rollback would cost."""

from __future__ import annotations

from tests.conftest import host_view, run_golive

DB_STG, DB_PROD = 16, 17


def deploy(ws, environment: str, version: str) -> None:
    promote = ("--override-promotion", "test") if environment == "production" else ()
    run_golive(ws, "deploy", "manufacturer", environment, "--release", version, *promote, check=0)


def database_findings(result) -> list[dict]:
    return [f for f in result.json()["findings"] if f["kind"] == "database"]


def test_drift_sees_a_schema_changed_by_hand_and_staging_ahead_of_production(db_workspace, databases):
    staging, production = databases.start("manufacturer", "staging", "production")
    for environment in ("staging", "production"):
        deploy(db_workspace, environment, "1.1")
    clean = run_golive(db_workspace, "drift", "manufacturer", "--json")
    assert database_findings(clean) == [], clean.output

    production.sql("ALTER TABLE work_orders ADD COLUMN shipped_by text")  # a hotfix nobody recorded
    drifted = run_golive(db_workspace, "drift", "manufacturer", "--json")
    assert drifted.returncode == 1, drifted.output
    found = {(f["scope"], f["subject"]): f for f in database_findings(drifted)}
    assert "changed outside golive" in found[("host", "schema")]["reason"], found
    assert found[("host", "schema")]["hosts"] == ["mfg-db-prod"]
    assert "work_orders" in found[("environment", "schema")]["reason"], found
    production.sql("ALTER TABLE work_orders DROP COLUMN shipped_by")

    deploy(db_workspace, "staging", "1.2")
    ahead = run_golive(db_workspace, "drift", "manufacturer", "--json")
    migrations = [f for f in database_findings(ahead) if f["subject"] == "migrations"]
    assert migrations and "staging 0003_item_codes" in migrations[0]["reason"], database_findings(ahead)
    assert not [f for f in database_findings(ahead) if f["scope"] == "host"], database_findings(ahead)


def test_check_covers_the_database_and_its_last_backup(db_workspace, databases, test_hosts):
    databases.start("manufacturer", "staging")
    deploy(db_workspace, "staging", "1.1")
    passed = run_golive(db_workspace, "check", "manufacturer", "staging", "--json", check=0).json()
    rows = {r["host"]: r for r in passed["hosts"]}
    assert rows["mfg-db-stg"]["result"] == "passed" and any("reads back" in p for p in rows["mfg-db-stg"]["passed"])
    assert any("test_database.py" in check for check in rows["mfg-stg-1"]["passed"]), rows["mfg-stg-1"]

    backups = host_view(test_hosts, DB_STG, "/opt/northwind/.golive/backups")
    newest = sorted(backups.glob("*.dump"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated on disk
    failed = run_golive(db_workspace, "check", "manufacturer", "staging", "--json")
    assert failed.returncode == 1, failed.output
    row = next(r for r in failed.json()["hosts"] if r["host"] == "mfg-db-stg")
    assert row["failed"][0]["check"] == "database: last backup" and "sha256" in row["failed"][0]["reason"], row


def test_preflight_gates_on_the_database_and_says_what_a_rollback_costs(db_workspace, databases, tmp_path):
    databases.start("manufacturer", "staging", "production")
    deploy(db_workspace, "production", "1.1")
    deploy(db_workspace, "staging", "1.1")
    deploy(db_workspace, "staging", "1.2")
    run_golive(db_workspace, "check", "manufacturer", "staging", check=0)
    report = tmp_path / "report"
    first = run_golive(db_workspace, "preflight", "manufacturer", "--release", "1.2", "--report", str(report),
                       "--json")
    assert first.returncode == 1, first.output  # no restore rehearsed yet
    gate = next(h for h in first.json()["hosts"] if h["host"] == "mfg-db-prod")
    items = {i["name"]: i for i in gate["items"]}
    assert items["database"]["ok"] and items["backup space"]["ok"], items
    assert items["migrations"]["ok"] and "0003_item_codes (contract, reversible)" in items["migrations"]["detail"]
    assert not items["restore rehearsed"]["ok"] and "--rehearse" in items["restore rehearsed"]["action"], items
    assert items["drift"]["ok"], items  # production behind staging is what the go-live changes
    words = " ".join(first.json()["rollback_plan"])
    assert "everything written after the go-live started" in words and "rollback --down" in words, words

    run_golive(db_workspace, "backups", "manufacturer", "staging", "--rehearse", check=0)
    second = run_golive(db_workspace, "preflight", "manufacturer", "--release", "1.2", "--report", str(report),
                        "--json", check=0)
    gate = next(h for h in second.json()["hosts"] if h["host"] == "mfg-db-prod")
    rehearsed = next(i for i in gate["items"] if i["name"] == "restore rehearsed")
    assert rehearsed["ok"] and "staging restored a" in rehearsed["detail"], rehearsed
    assert "Restoring takes about" in " ".join(second.json()["rollback_plan"])
    markdown = (report / "report.md").read_text()
    assert "## Rollback plan" in markdown and "golive takes a backup" in markdown
    assert "Rollback plan" in (report / "report.html").read_text()

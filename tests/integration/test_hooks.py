"""Hooks vendors' scripts can rely on: the documented context in every hook (after a failure too),
the timeout from golive.yml, the whole output in a 0600 log on the host linked from the ledger
(secrets masked), a failed on_rollback reported, the service verified after it; and `golive status`
saying what a host serves now, not what was stored when it was verified."""

from __future__ import annotations

import json
import os
import re
import stat

from tests.conftest import TEST_NET, VAULT_SECRETS, host_view, run_golive, set_hook

OVERRIDE = ("--override-promotion", "hook test")
PROD1 = 12


def deploy(ws, version: str, check: int | None = 0):
    return run_golive(ws, "deploy", "manufacturer", "production", "--release", version, *OVERRIDE, "--json",
                      check=check)


def dumped(test_hosts, name: str) -> dict[str, str]:
    text = host_view(test_hosts, PROD1, f"/opt/northwind/shared/{name}").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def dump(name: str) -> str:
    return f"(env | grep ^GOLIVE_ | sort; echo CWD=$(pwd)) > $GOLIVE_APP_ROOT/shared/{name}"


def last_entry(test_hosts) -> dict:
    path = host_view(test_hosts, PROD1, "/opt/northwind/.golive/ledger.jsonl")
    return json.loads(path.read_text().splitlines()[-1])


def test_every_hook_gets_the_documented_context(workspace, test_hosts):
    set_hook(workspace, "before_cutover", dump("before.env"))
    set_hook(workspace, "after_cutover", dump("after.env"))
    first = deploy(workspace, "1.0").json()
    old = next(h["to_release"] for h in first["hosts"] if h["host"] == "mfg-prod-1")
    second = deploy(workspace, "1.1").json()
    new = next(h["to_release"] for h in second["hosts"] if h["host"] == "mfg-prod-1")
    for name in ("before.env", "after.env"):
        env = dumped(test_hosts, name)
        assert env["GOLIVE_RELEASE"] == new and env["GOLIVE_PREVIOUS_RELEASE"] == old, env
        assert (env["GOLIVE_DIRECTION"], env["GOLIVE_ENVIRONMENT"], env["GOLIVE_CUSTOMER"]) == (
            "deploy", "production", "manufacturer"), env
        assert env["CWD"] == f"/opt/northwind/releases/{new}", env
    logs = last_entry(test_hosts)["logs"]
    assert set(logs) >= {"before_cutover", "after_cutover"}, logs


def test_on_rollback_after_a_failed_before_cutover_knows_both_releases(workspace, test_hosts):
    old = next(h["to_release"] for h in deploy(workspace, "1.0").json()["hosts"] if h["host"] == "mfg-prod-1")
    set_hook(workspace, "on_rollback", dump("rollback.env"))
    set_hook(workspace, "before_cutover", "seq 1 20000; echo the hook fails >&2; exit 1")
    failed = deploy(workspace, "1.1", check=3).json()
    report = next(h for h in failed["hosts"] if h["host"] == "mfg-prod-1")
    assert report["status"] == "rolled_back" and report["error"].startswith("before_cutover"), report
    env = dumped(test_hosts, "rollback.env")
    assert env["GOLIVE_RELEASE"] == old and env["GOLIVE_PREVIOUS_RELEASE"] == report["to_release"], env
    assert env["GOLIVE_DIRECTION"] == "rollback" and env["CWD"] == f"/opt/northwind/releases/{old}", env
    entry = last_entry(test_hosts)
    assert "verify_after_hook" in entry["steps"], entry["steps"]
    log = host_view(test_hosts, PROD1, entry["logs"]["before_cutover"])
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    text = log.read_text()
    assert text.startswith("1\n2\n") and "\n20000\n" in text and "the hook fails" in text  # the whole output


def test_a_failed_on_rollback_is_reported_and_its_output_kept(workspace, test_hosts):
    deploy(workspace, "1.0")
    set_hook(workspace, "before_cutover", "exit 1")
    set_hook(workspace, "on_rollback", "echo cleaning up; cat $GOLIVE_RELEASE_DIR/config/secrets.env; exit 4")
    failed = deploy(workspace, "1.1", check=3)
    report = next(h for h in failed.json()["hosts"] if h["host"] == "mfg-prod-1")
    assert report["status"] == "failed", report
    assert "recovery: on_rollback: on_rollback hook failed (exit 4)" in report["error"], report
    assert report["details"]["recovery_failures"], report
    log = host_view(test_hosts, PROD1, last_entry(test_hosts)["logs"]["on_rollback"]).read_text()
    assert "cleaning up" in log and "********" in log
    for secret in VAULT_SECRETS:
        assert secret not in log and secret not in failed.output


def test_a_hook_runs_at_most_its_timeout_from_golive_yml(workspace, test_hosts):
    app = workspace / "golive.yml"
    text, found = re.subn(r"^  hook: 600\b.*$", "  hook: 1", app.read_text(), flags=re.MULTILINE)  # timeouts.hook
    assert found == 1
    app.write_text(text)
    deploy(workspace, "1.0")
    set_hook(workspace, "before_cutover", "sleep 60")
    failed = deploy(workspace, "1.1", check=3)
    report = next(h for h in failed.json()["hosts"] if h["host"] == "mfg-prod-1")
    assert "timed out after 1" in report["error"], report


def test_status_says_what_a_host_serves_now(workspace, test_hosts):
    deploy(workspace, "1.0")
    test_hosts.exec(f"{TEST_NET}.{PROD1}", ["/opt/northwind/current/bin/northwind-ctl", "stop"], check=True)
    # a host that does not serve what it records is a finding (exit 1)
    status = run_golive(workspace, "status", "manufacturer", "production", "--json", check=1).json()
    row = next(r for r in status["hosts"] if r["host"] == "mfg-prod-1")
    assert row["state"] == "good" and row["serving"] is False, row  # stored good, but not serving
    summary = next(e for e in status["environments"] if e["environment"] == "production")
    assert summary["verified"] is False and "not serving now: mfg-prod-1" in summary["note"], summary
    text = run_golive(workspace, "status", "manufacturer", "production", check=1).stdout
    assert "not serving now: mfg-prod-1" in text and "failing" in text, text

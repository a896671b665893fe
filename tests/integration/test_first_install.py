"""A first install that fails its verification (issue 14, defect 3), with both engines: there is no
earlier release to go back to, so the failed release's service is stopped and `current` removed;
the report, the JSON and `golive status` say what failed (verify, with the health answer), that
there was nothing to roll back to, and that the host now runs nothing. A fixed release deploys
normally afterwards."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_NET, health_of, health_retries, host_path, run_golive
from tests.integration.test_deploy import STG, ledger

ENGINES = ("pyinfra", "ansible")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_first_install_is_stopped_and_says_nothing_runs(workspace, test_hosts, engine):
    health_retries(workspace, 3)  # the broken release fails its check sooner
    failed = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "9.9", "--engine", engine,
                        "--json", check=3)
    report = {h["host"]: h for h in failed.json()["hosts"]}["mfg-stg-1"]
    assert report["status"] == "failed", failed.output
    assert report["error"].startswith("verify: health check failed"), report["error"]
    assert "503" in report["error"]  # the health answer
    assert "no earlier release to roll back to" in report["error"]
    assert report["details"]["running"] == "nothing running: first install failed"
    assert report["details"]["first_install"] and report["details"]["marked_bad"] == report["to_release"]
    assert "live_release" not in report
    # the host: the service stopped, no `current`, the release kept and marked bad
    assert health_of(f"{TEST_NET}.{STG}") is None
    assert not host_path(test_hosts, STG, "/opt/northwind/current").is_symlink()
    meta = json.loads(host_path(test_hosts, STG, f"/opt/northwind/.golive/releases/{report['to_release']}.json")
                      .read_text())
    assert meta["state"] == "bad"
    entry = ledger(test_hosts, STG)[-1]
    assert entry["result"] == "failed" and entry["release"] == report["to_release"]
    # the text says it too, and never that the cutover failed
    text = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "9.9", "--engine", engine,
                      "-v", check=3)
    assert "no earlier release to roll back to" in text.stdout and "nothing running: first install failed" in \
        text.stdout, text.output
    assert "cutover FAILED" not in text.output and "switch_back" not in text.output
    status = run_golive(workspace, "status", "manufacturer", "staging", "--json", check=None).json()
    row = {h["host"]: h for h in status["hosts"]}["mfg-stg-1"]
    assert row["running"].startswith("nothing running: first install failed"), row
    assert not row.get("release")
    # a fixed release then deploys as a first install does
    fixed = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", "--engine", engine,
                       "--json", check=0)
    report = {h["host"]: h for h in fixed.json()["hosts"]}["mfg-stg-1"]
    assert report["status"] == "deployed" and report["action"] == "install"
    assert (health_of(f"{TEST_NET}.{STG}") or {}).get("version") == "1.0"


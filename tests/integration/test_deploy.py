"""golive deploy / plan / rollback / status / history / unlock against real SSH test hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import TEST_NET, host_path, run_golive

STG, PROD1, PROD2 = 11, 12, 13


def health(suffix: int) -> dict:
    with urllib.request.urlopen(f"http://{TEST_NET}.{suffix}:8080/health", timeout=3) as response:
        return json.loads(response.read())


def ledger(hosts, suffix: int) -> list[dict]:
    path = host_path(hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def live_release(hosts, suffix: int) -> str | None:
    link = host_path(hosts, suffix, "/opt/northwind/current")
    return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None


def deploy(ws: Path, env: str, version: str, *extra: str, check: int | None = 0):
    return run_golive(ws, "deploy", "manufacturer", env, "--release", version, "--json", *extra, check=check)


def hosts_by_name(result) -> dict:
    return {h["host"]: h for h in result.json()["hosts"]}


def test_first_deploy_serves_the_release_and_records_it(workspace, test_hosts):
    result = deploy(workspace, "staging", "1.0")
    report = hosts_by_name(result)["mfg-stg-1"]
    assert report["status"] == "deployed" and report["action"] == "install"
    answer = health(STG)
    assert answer["version"] == "1.0"
    assert answer["release"] == report["to_release"] == live_release(test_hosts, STG)
    # the release id names the config and how the release runs; `golive render` names both alike
    rendered = run_golive(workspace, "render", "manufacturer", "staging", "--release", "1.0", "--json",
                          check=0).json()["hosts"]["mfg-stg-1"]
    assert answer["config_hash"] == rendered["config_hash"] and report["to_release"] == rendered["release_id"]
    # config is versioned with the release: the live config dir is a symlink through `current`
    link = host_path(test_hosts, STG, "/etc/northwind/northwind.ini")
    assert os.readlink(link) == "/opt/northwind/current/config/northwind.ini"
    secret = host_path(test_hosts, STG, f"/opt/northwind/releases/{report['to_release']}/config/secrets.env")
    assert secret.stat().st_mode & 0o777 == 0o600
    entry = ledger(test_hosts, STG)[-1]
    assert entry["action"] == "deploy" and entry["result"] == "ok" and entry["engine"] == "pyinfra"
    assert entry["release"] == report["to_release"] and len(entry["artifact_sha256"]) == 64
    assert {"lock", "upload", "unpack", "configure", "cutover", "restart", "verify"} <= set(entry["steps"])
    assert not host_path(test_hosts, STG, "/opt/northwind/.golive/lock").exists()


def test_redeploy_without_change_is_unchanged_and_touches_nothing(workspace, test_hosts):
    deploy(workspace, "staging", "1.0")
    pid_before = health(STG)["pid"]
    releases_before = sorted(os.listdir(host_path(test_hosts, STG, "/opt/northwind/releases")))
    result = deploy(workspace, "staging", "1.0")
    report = hosts_by_name(result)["mfg-stg-1"]
    assert report["status"] == "unchanged"
    assert health(STG)["pid"] == pid_before  # not restarted
    assert sorted(os.listdir(host_path(test_hosts, STG, "/opt/northwind/releases"))) == releases_before
    assert ledger(test_hosts, STG)[-1]["result"] == "unchanged"
    text = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0).stdout
    assert "unchanged" in text


def test_new_release_then_rollback_and_rollback_to(workspace, test_hosts):
    deploy(workspace, "staging", "1.0")
    deploy(workspace, "staging", "1.1")
    assert health(STG)["version"] == "1.1"
    result = run_golive(workspace, "rollback", "manufacturer", "staging", "--json", check=0)
    assert hosts_by_name(result)["mfg-stg-1"]["to_release"].startswith("1.0-")
    assert health(STG)["version"] == "1.0"
    run_golive(workspace, "rollback", "manufacturer", "staging", "--to", "1.1", check=0)
    assert health(STG)["version"] == "1.1"
    actions = [(e["action"], e["result"]) for e in ledger(test_hosts, STG)]
    assert actions == [("deploy", "ok"), ("deploy", "ok"), ("rollback", "ok"), ("rollback", "ok")]
    history = run_golive(workspace, "history", "manufacturer", "staging", "--json", check=0).json()
    assert [e["action"] for e in history["entries"]][:2] == ["rollback", "rollback"]


def test_failed_health_check_rolls_back_and_marks_bad(workspace, test_hosts):
    deploy(workspace, "staging", "1.0")
    result = deploy(workspace, "staging", "9.9", check=3)
    report = hosts_by_name(result)["mfg-stg-1"]
    assert report["status"] == "rolled_back"
    assert report["live_release"].startswith("1.0-")
    assert health(STG)["version"] == "1.0"
    meta = json.loads(host_path(test_hosts, STG, f"/opt/northwind/.golive/releases/{report['to_release']}.json")
                      .read_text())
    assert meta["state"] == "bad"
    assert ledger(test_hosts, STG)[-1]["result"] == "rolled_back"
    refused = run_golive(workspace, "rollback", "manufacturer", "staging", "--to", "9.9", check=3)
    assert "marked bad" in refused.stdout
    assert health(STG)["version"] == "1.0"


def test_concurrent_deploy_is_refused_naming_the_holder(workspace, test_hosts):
    lock = host_path(test_hosts, STG, "/opt/northwind/.golive/lock")
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps({"operator": "alice", "controller": "other-laptop", "pid": 4242,
                                                 "since": "2026-11-25T10:00:00Z", "action": "deploy"}))
    result = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=3)
    assert "alice" in result.stdout and "other-laptop" in result.stdout
    assert not host_path(test_hosts, STG, "/opt/northwind/releases").exists()


def test_stale_lock_is_reported_and_unlock_clears_it(workspace, test_hosts):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # a real run killed mid-flight: its controller is this machine, its pid is gone
        sleeper.kill()
        sleeper.wait()
        lock = host_path(test_hosts, STG, "/opt/northwind/.golive/lock")
        lock.mkdir(parents=True)
        import socket
        (lock / "owner.json").write_text(json.dumps({"operator": "bob", "controller": socket.gethostname(),
                                                     "pid": sleeper.pid, "since": "2026-11-25T10:00:00Z"}))
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
    status = run_golive(workspace, "status", "manufacturer", "staging", check=0)
    assert "STALE" in status.stdout and "takes it over" in status.stdout  # test_lock_takeover.py: it does
    run_golive(workspace, "unlock", "manufacturer", "staging", "--reason", "controller crashed", check=0)
    assert not lock.exists()
    entry = ledger(test_hosts, STG)[-1]
    assert entry["action"] == "unlock" and entry["reason"] == "controller crashed"
    deploy(workspace, "staging", "1.0")


def test_unlock_refuses_a_live_holder_without_force(workspace, test_hosts):
    lock = host_path(test_hosts, STG, "/opt/northwind/.golive/lock")
    lock.mkdir(parents=True)
    import socket

    from golive.adapters.locks import process_start
    (lock / "owner.json").write_text(json.dumps({"operator": "carol", "controller": socket.gethostname(),
                                                 "pid": os.getpid(), "pid_start": process_start(os.getpid())}))
    result = run_golive(workspace, "unlock", "manufacturer", "staging", "--reason", "oops", check=3)
    assert "still running" in result.stdout and lock.exists()
    run_golive(workspace, "unlock", "manufacturer", "staging", "--reason", "oops", "--force", check=0)
    assert not lock.exists()


def test_checksum_mismatch_is_refused_before_any_host(workspace, test_hosts):
    sha = workspace / "build" / "releases" / "northwind-1.0.tar.gz.sha256"
    sha.write_text("0" * 64 + "  northwind-1.0.tar.gz\n")
    result = deploy(workspace, "staging", "1.0", check=2)
    assert "checksum mismatch" in result.stderr and "Traceback" not in result.stderr
    assert not host_path(test_hosts, STG, "/opt/northwind/.golive").exists()


def test_path_traversal_archive_is_refused_with_nothing_written(workspace, test_hosts, tmp_path):
    import hashlib
    import io
    import tarfile

    store = workspace / "build" / "releases"
    artifact = store / "northwind-6.6.tar.gz"
    with tarfile.open(artifact, "w:gz") as archive:
        for name, data in (("VERSION", b"6.6\n"), ("../../escaped", b"owned\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    (store / "northwind-6.6.tar.gz.sha256").write_text(f"{digest}  northwind-6.6.tar.gz\n")
    result = deploy(workspace, "staging", "6.6", check=2)
    assert "'..'" in result.stderr and "nothing was sent" in result.stderr
    assert not host_path(test_hosts, STG, "/opt/northwind/.golive").exists()


def test_unreachable_host_is_reported_while_the_others_deploy(workspace, test_hosts):
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    run_golive(workspace, "check", "manufacturer", "staging", check=0)
    test_hosts.stop("h13")
    try:
        result = deploy(workspace, "production", "1.0", check=3)
        reports = hosts_by_name(result)
        assert reports["mfg-prod-1"]["status"] == "deployed"
        assert reports["mfg-prod-2"]["status"] == "unreachable"
        assert f"{TEST_NET}.13" in reports["mfg-prod-2"]["error"]
        assert health(PROD1)["version"] == "1.0"
    finally:
        test_hosts.start("h13")


def test_promotion_gate_refuses_then_override_is_recorded(workspace, test_hosts):
    refused = deploy(workspace, "production", "1.0", check=2)
    assert "staging" in refused.stderr and "--override-promotion" in refused.stderr
    assert not host_path(test_hosts, PROD1, "/opt/northwind/.golive").exists()
    deploy(workspace, "production", "1.0", "--override-promotion", "hotfix approved by CAB-1234")
    entry = ledger(test_hosts, PROD1)[-1]
    assert entry["result"] == "ok" and entry["reason"] == "hotfix approved by CAB-1234"
    deploy(workspace, "staging", "1.1")
    unchecked = deploy(workspace, "production", "1.1", check=2)  # verified on staging, but not checked
    assert "no check has run" in unchecked.stderr and "golive check manufacturer staging" in unchecked.stderr
    run_golive(workspace, "check", "manufacturer", "staging", check=0)
    deploy(workspace, "production", "1.1")  # staging runs, verified and checked 1.1: accepted


def test_plan_is_exactly_what_deploy_then_does(workspace, test_hosts):
    deploy(workspace, "staging", "1.0")
    deploy(workspace, "production", "1.0", "--override-promotion", "test set-up")
    # production drifts apart: one host gets a hand-edited config, the other is stopped
    config = host_path(test_hosts, PROD1, "/opt/northwind/current/config/northwind.ini")
    config.write_text(config.read_text().replace("workers = 8", "workers = 99"))
    for scenario in (("production", "1.0"), ("staging", "1.1"), ("staging", "1.1")):
        env, version = scenario
        planned = run_golive(workspace, "plan", "manufacturer", env, "--release", version, "--json", check=0).json()
        done = deploy(workspace, env, version, "--override-promotion", "test")
        actions = {h["host"]: h["action"] for h in planned["hosts"]}
        assert actions == {h["host"]: h["action"] for h in done.json()["hosts"]}, scenario
        if scenario[0] == "production":
            diffs = {f["dest"]: f["diff"] for h in planned["hosts"] for f in h["files"]}
            assert "-workers = 99" in diffs["northwind.ini"] and "+workers = 8" in diffs["northwind.ini"]


def test_retention_keeps_current_last_good_and_rollback_target(workspace, test_hosts):
    ws_file = workspace / "golive.yml"
    ws_file.write_text(ws_file.read_text().replace("keep_releases: 5", "keep_releases: 2"))
    deploy(workspace, "staging", "1.0")
    deploy(workspace, "staging", "1.1")
    deploy(workspace, "staging", "9.9", check=3)  # bad; 1.1 is live again
    releases = sorted(os.listdir(host_path(test_hosts, STG, "/opt/northwind/releases")))
    versions = {r.split("-")[0] for r in releases}
    assert {"1.0", "1.1"} <= versions  # current (1.1) and the rollback target (1.0) survive
    run_golive(workspace, "rollback", "manufacturer", "staging", check=0)
    assert health(STG)["version"] == "1.0"


def test_serial_batches_and_max_fail_stop_further_batches(workspace, test_hosts):
    deploy(workspace, "staging", "1.0")
    deploy(workspace, "production", "1.0", "--override-promotion", "set-up")
    result = run_golive(workspace, "deploy", "manufacturer", "production", "--release", "9.9", "--serial", "1",
                        "--max-fail", "10%", "--override-promotion", "canary", "--json", check=3)
    reports = hosts_by_name(result)
    assert reports["mfg-prod-1"]["status"] == "rolled_back"
    assert reports["mfg-prod-2"]["status"] == "skipped"
    assert health(PROD2)["version"] == "1.0"
    assert not host_path(test_hosts, PROD2, "/opt/northwind/.golive/lock").exists()


def test_status_overview_shows_every_customer(workspace, test_hosts):
    deploy(workspace, "staging", "1.0")
    result = run_golive(workspace, "status", "--json", check=0)
    environments = {(e["customer"], e["environment"]): e for e in result.json()["environments"]}
    assert environments[("manufacturer", "staging")]["live"].startswith("1.0 (")
    assert environments[("retailer", "production")]["live"] is None
    assert "staging" in run_golive(workspace, "status", check=0).stdout

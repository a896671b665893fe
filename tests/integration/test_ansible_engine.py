"""The Ansible roles (golive --engine ansible, and ansible-playbook run by hand) against real SSH test
hosts: the same on-host result as the pyinfra engine, rollbacks across engines, automatic rollback,
--check --diff, refusals before any host is touched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    TEST_NET,
    VAULT_SECRETS,
    WAIT_BOUND_SECONDS,
    health_of,
    health_retries,
    host_path,
    run_golive,
    set_hook,
    snapshot_difference,
    snapshot_hosts,
)
from tests.unit.test_archive_check import HOSTILE, archive

MFG_STG, MFG_PROD1, MFG_PROD2, RTL_STG, RTL_PROD = 11, 12, 13, 14, 15
EXAMPLE_HOSTS = {"manufacturer": (MFG_STG, MFG_PROD1, MFG_PROD2), "retailer": (RTL_STG, RTL_PROD)}
RELEASE_ID = re.compile(r"\d+\.\d+-[0-9a-f]{8}")
TIMESTAMPS = ("created_at", "good_at", "bad_at", "time", "since")
GATE_SCRIPT = REPO / "roles" / "golive" / "files" / "golive_artifact_gate.py"


def golive(ws: Path, verb: str, customer: str, environment: str, *args: str, engine: str = "ansible",
           check: int | None = 0):
    return run_golive(ws, verb, customer, environment, "--engine", engine, "--json", *args, check=check)


def hosts_of(result) -> dict[str, dict]:
    return {h["host"]: h for h in result.json()["hosts"]}


def version_served(suffix: int) -> str | None:
    answer = health_of(f"{TEST_NET}.{suffix}")
    return answer.get("version") if answer else None


def ledger(hosts, suffix: int) -> list[dict]:
    path = host_path(hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def meta(hosts, suffix: int, release: str) -> dict:
    return json.loads(host_path(hosts, suffix, f"/opt/northwind/.golive/releases/{release}.json").read_text())


def without_timestamps(value):
    """A metadata or ledger document with its times taken out (both engines stamp their own)."""
    if isinstance(value, dict):
        return {k: without_timestamps(v) for k, v in value.items() if k not in TIMESTAMPS}
    return value


def host_layout(hosts, suffix: int) -> dict[str, object]:
    """Everything both engines leave on a host, comparable across engines: every path (release ids
    kept, they are the same), its kind and mode, link targets, file contents by hash, and the
    metadata, artifact notes and ledger with times and step timings taken out."""
    layout: dict[str, object] = {}
    for root in ("/opt/northwind", "/etc/northwind"):
        base = host_path(hosts, suffix, root)
        for directory, names, files in os.walk(base):
            names[:] = [n for n in names if n != "__pycache__"]  # written by the running app, stamped with times
            for name in sorted(names + files):
                path = Path(directory, name)
                shown = root + "/" + str(path.relative_to(base))
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    layout[shown] = ("link", os.readlink(path))
                elif stat.S_ISDIR(info.st_mode):
                    layout[shown] = ("dir", oct(stat.S_IMODE(info.st_mode)))
                elif "/.golive/" in shown or "/shared/" in shown:
                    layout[shown] = ("file", oct(stat.S_IMODE(info.st_mode)))  # content compared below
                else:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    layout[shown] = ("file", oct(stat.S_IMODE(info.st_mode)), digest)
    state = host_path(hosts, suffix, "/opt/northwind/.golive")
    for note in sorted(state.glob("releases/*.json")) + sorted(state.glob("artifacts/*.json")):
        layout[f"{note.name} content"] = without_timestamps(json.loads(note.read_text()))
    layout["ledger"] = [{k: v for k, v in without_timestamps(entry).items() if k not in ("engine", "steps")}
                        | {"timed steps": bool(entry.get("steps"))} for entry in ledger(hosts, suffix)]
    return layout


def promote(ws: Path, customer: str, version: str, engine: str = "ansible") -> None:
    """Staging first: production accepts only what staging runs, verified and checked."""
    golive(ws, "deploy", customer, "staging", "--release", version, engine=engine)
    run_golive(ws, "check", customer, "staging", check=0)
    golive(ws, "deploy", customer, "production", "--release", version, engine=engine)


def deploy_examples(ws: Path, engine: str) -> None:
    for customer in EXAMPLE_HOSTS:
        promote(ws, customer, "1.0", engine)
    golive(ws, "deploy", "manufacturer", "staging", "--release", "1.1", engine=engine)


def test_ansible_leaves_exactly_what_pyinfra_leaves(workspace, test_hosts):
    """Layout, modes, link targets, config bytes, metadata, artifact notes and ledger entries of
    every example host, after the same deploys by each engine."""
    deploy_examples(workspace, "ansible")
    by_ansible = {s: host_layout(test_hosts, s) for hosts in EXAMPLE_HOSTS.values() for s in hosts}
    assert {e["engine"] for s in by_ansible for e in ledger(test_hosts, s) if e["action"] != "check"} == {"ansible"}
    test_hosts.reset()
    deploy_examples(workspace, "pyinfra")
    by_pyinfra = {s: host_layout(test_hosts, s) for hosts in EXAMPLE_HOSTS.values() for s in hosts}
    for suffix, expected in by_pyinfra.items():
        assert by_ansible[suffix] == expected, f"host .{suffix}"
    # the config files are compared by hash above; make sure they were there to compare
    configs = [p for p in by_ansible[MFG_PROD2] if p.startswith("/opt/northwind/releases/") and "/config/" in p]
    assert len(configs) == 3


def test_ledger_entries_and_lock_have_the_pyinfra_shape(workspace, test_hosts):
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", engine="pyinfra")
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1")
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1")
    by_pyinfra, by_ansible, unchanged = ledger(test_hosts, MFG_STG)
    assert by_ansible["engine"] == unchanged["engine"] == "ansible"
    assert set(by_ansible) == set(by_pyinfra) and set(by_ansible["steps"]) >= {"lock", "upload", "cutover", "verify"}
    assert by_ansible["previous_release"] == by_pyinfra["release"] and by_ansible["result"] == "ok"
    assert unchanged["result"] == "unchanged" and unchanged["previous_release"] is None
    assert set(unchanged["steps"]) == {"lock", "state"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", by_ansible["time"])
    assert not host_path(test_hosts, MFG_STG, "/opt/northwind/.golive/lock").exists()


def test_rollback_across_engines_and_the_app_serves_each_release(workspace, test_hosts):
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", engine="pyinfra")
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", engine="pyinfra")
    # deployed by pyinfra, rolled back by Ansible
    result = golive(workspace, "rollback", "manufacturer", "staging")
    report = hosts_of(result)["mfg-stg-1"]
    assert report["status"] == "deployed" and report["action"] == "rollback" and report["to_release"].startswith("1.0-")
    assert version_served(MFG_STG) == "1.0"
    # deployed by Ansible (1.1 is still on the host: a switch), rolled back by pyinfra
    result = golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1")
    assert hosts_of(result)["mfg-stg-1"]["action"] == "switch"
    assert version_served(MFG_STG) == "1.1"
    golive(workspace, "rollback", "manufacturer", "staging", engine="pyinfra")
    assert version_served(MFG_STG) == "1.0"
    # and Ansible rolls forward to a named release
    golive(workspace, "rollback", "manufacturer", "staging", "--to", "1.1")
    assert version_served(MFG_STG) == "1.1"
    entries = ledger(test_hosts, MFG_STG)
    assert [(e["action"], e["engine"], e["version"]) for e in entries] == [
        ("deploy", "pyinfra", "1.0"), ("deploy", "pyinfra", "1.1"), ("rollback", "ansible", "1.0"),
        ("deploy", "ansible", "1.1"), ("rollback", "pyinfra", "1.0"), ("rollback", "ansible", "1.1")]


def test_failed_health_check_rolls_back_and_marks_the_release_bad(workspace, test_hosts):
    health_retries(workspace, 3)  # 9.9 fails sooner
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", engine="pyinfra")  # set-up
    result = golive(workspace, "deploy", "manufacturer", "staging", "--release", "9.9", check=3)
    report = hosts_of(result)["mfg-stg-1"]
    assert report["status"] == "rolled_back" and report["live_release"].startswith("1.0-")
    assert report["error"].startswith("verify: health check failed")
    bad = report["details"]["marked_bad"]
    assert bad.startswith("9.9-") and meta(test_hosts, MFG_STG, bad)["state"] == "bad"
    assert version_served(MFG_STG) == "1.0"
    assert ledger(test_hosts, MFG_STG)[-1]["result"] == "rolled_back"
    refused = golive(workspace, "rollback", "manufacturer", "staging", "--to", "9.9", check=3)
    assert "marked bad" in hosts_of(refused)["mfg-stg-1"]["error"]
    assert version_served(MFG_STG) == "1.0"


def reencrypt_db_password(ws: Path, secret: str) -> None:
    vault = ws / "inventories" / "manufacturer" / "group_vars" / "all" / "vault.yml"
    encrypted = subprocess.run(["ansible-vault", "encrypt_string", "--vault-password-file",
                                str(ws / "vault-password.example"), secret, "--name", "db_password"],
                               capture_output=True, text=True, check=True, cwd="/",
                               env={k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"})
    vault.write_text(encrypted.stdout)


def test_check_diff_changes_nothing_and_shows_no_secret(workspace, test_hosts):
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", engine="pyinfra")  # set-up
    main = workspace / "inventories" / "manufacturer" / "group_vars" / "all" / "main.yml"
    main.write_text(main.read_text().replace("log_level: info", "log_level: debug"))
    new_secret = "Rotated-Db-2027!example"
    reencrypt_db_password(workspace, new_secret)
    before = snapshot_hosts(test_hosts)
    text = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", "ansible",
                      "--check", "--diff", check=0)
    data = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", "ansible",
                      "--check", "--diff", "--json", check=0)
    env = {**os.environ, "ANSIBLE_CONFIG": str(workspace / "ansible.cfg")}
    by_hand = subprocess.run(["ansible-playbook", "-i", "inventories/manufacturer", "playbooks/deploy.yml",
                              "--limit", "staging", "-e", "golive_release_version=1.1", "--check", "--diff"],
                             capture_output=True, text=True, cwd=workspace, env=env)
    assert by_hand.returncode == 0, by_hand.stdout[-2000:]
    # Ansible makes its own ~/.ansible and a scratch directory in it even in check mode
    changed = [c for c in snapshot_difference(before, snapshot_hosts(test_hosts))
               if not re.search(r" /root/\.ansible(/|$)", c)]
    assert changed == []
    assert "INSTALL" in text.stdout and "+log_level = debug" in text.stdout
    host = hosts_of(data)["mfg-stg-1"]
    assert host["status"] == "planned" and host["to_release"].startswith("1.1-")
    assert [d["file"] for d in host["details"]["diffs"]] == ["northwind.ini"]
    assert "+log_level = debug" in by_hand.stdout
    for output in (text.output, data.output, by_hand.stdout + by_hand.stderr):
        assert new_secret not in output and all(s not in output for s in VAULT_SECRETS)


def hostile_store(ws: Path, version: str, members) -> None:
    data = io.BytesIO()
    with archive(*members) as tar, tarfile.open(fileobj=data, mode="w:gz") as out:
        for member in tar.getmembers():
            out.addfile(member, tar.extractfile(member) if member.isreg() else None)
    store = ws / "build" / "releases"
    name = f"northwind-{version}.tar.gz"
    (store / name).write_bytes(data.getvalue())
    (store / f"{name}.sha256").write_text(f"{hashlib.sha256(data.getvalue()).hexdigest()}  {name}\n")


@pytest.mark.parametrize("case", sorted(HOSTILE), ids=sorted(HOSTILE))
def test_the_roles_gate_refuses_what_the_host_agent_refuses(case, tmp_path):
    members, message = HOSTILE[case]
    (tmp_path / "build" / "releases").mkdir(parents=True)
    hostile_store(tmp_path, "6.6", members)
    artifact = tmp_path / "build" / "releases" / "northwind-6.6.tar.gz"
    refused = subprocess.run([sys.executable, str(GATE_SCRIPT), str(artifact), "1000", str(100 << 20), "northwind",
                              "6.6", "config"],
                             capture_output=True, text=True)
    assert refused.returncode == 1 and message in refused.stderr and refused.stdout == ""


def test_hostile_or_tampered_artifacts_are_refused_before_any_host_is_touched(workspace, test_hosts):
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", engine="pyinfra")  # set-up
    hostile_store(workspace, "6.6", [("../evil", b"x", {})])
    tampered = workspace / "build" / "releases" / "northwind-1.1.tar.gz"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    env = {**os.environ, "ANSIBLE_CONFIG": str(workspace / "ansible.cfg")}
    before = snapshot_hosts(test_hosts)
    for version, reason in (("6.6", "'..' component"), ("1.1", "checksum mismatch")):
        result = golive(workspace, "deploy", "manufacturer", "staging", "--release", version, check=2)
        assert reason in result.stderr and result.stdout == ""
        by_hand = subprocess.run(["ansible-playbook", "-i", "inventories/manufacturer", "playbooks/deploy.yml",
                                  "--limit", "staging", "-e", f"golive_release_version={version}"],
                                 capture_output=True, text=True, cwd=workspace, env=env)
        assert by_hand.returncode != 0 and reason in by_hand.stdout
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []


def test_a_host_locked_by_another_run_is_left_alone(workspace, test_hosts):
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", engine="pyinfra")  # set-up
    lock = host_path(test_hosts, MFG_STG, "/opt/northwind/.golive/lock")
    lock.mkdir(mode=0o700)
    (lock / "owner.json").write_text(json.dumps({"operator": "alice", "controller": "laptop-7", "pid": 4242,
                                                 "action": "deploy", "since": "2026-11-25T17:40:00.000Z",
                                                 "token": "someone-else"}))
    before = snapshot_hosts(test_hosts)
    result = golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", check=3)
    report = hosts_of(result)["mfg-stg-1"]
    assert report["status"] == "locked" and "alice on laptop-7" in report["error"] and report["lock"] == "unknown"
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []


def test_another_runs_lock_on_one_host_stops_the_whole_environment(workspace, test_hosts):
    """The leader's lock is taken, then given back: nothing is deployed or recorded anywhere."""
    promote(workspace, "manufacturer", "1.0", engine="pyinfra")  # set-up
    lock = host_path(test_hosts, MFG_PROD2, "/opt/northwind/.golive/lock")
    lock.mkdir(mode=0o700)
    (lock / "owner.json").write_text(json.dumps({"operator": "bob", "controller": "ci-3", "pid": 7, "token": "x"}))
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", engine="pyinfra")
    run_golive(workspace, "check", "manufacturer", "staging", check=0)
    result = golive(workspace, "deploy", "manufacturer", "production", "--release", "1.1", check=3)
    reports = hosts_of(result)
    assert reports["mfg-prod-2"]["status"] == "locked" and "bob on ci-3" in reports["mfg-prod-2"]["error"]
    assert reports["mfg-prod-1"]["status"] == "skipped" and "environment is locked (mfg-prod-2)" in reports[
        "mfg-prod-1"]["error"]
    assert [len(ledger(test_hosts, s)) for s in (MFG_PROD1, MFG_PROD2)] == [1, 1]  # the 1.0 deploy only
    assert not host_path(test_hosts, MFG_PROD1, "/opt/northwind/.golive/lock").exists() and lock.exists()
    assert version_served(MFG_PROD1) == version_served(MFG_PROD2) == "1.0"


def test_playbooks_run_by_hand_deploy_and_roll_back_like_golive(workspace, test_hosts):
    env = {**os.environ, "ANSIBLE_CONFIG": str(workspace / "ansible.cfg"), "GOLIVE_OPERATOR": "ops-team"}

    def playbook(name: str, environment: str, *extra: str, returncode: int = 0) -> str:
        run = subprocess.run(["ansible-playbook", "-i", "inventories/retailer", f"playbooks/{name}.yml",
                              "--limit", environment, *extra], capture_output=True, text=True, cwd=workspace, env=env)
        assert run.returncode == returncode, run.stdout[-3000:]
        return run.stdout

    playbook("deploy", "staging", "-e", "golive_release_version=1.0")
    refused = playbook("deploy", "production", "-e", "golive_release_version=1.0", returncode=2)
    assert "rtl-stg-1 runs 1.0, but no check has run" in refused and not ledger(test_hosts, RTL_PROD)
    run_golive(workspace, "check", "retailer", "staging", check=0)
    playbook("deploy", "production", "-e", "golive_release_version=1.0")
    assert version_served(RTL_PROD) == "1.0"
    playbook("deploy", "staging", "-e", "golive_release_version=1.1")
    assert version_served(RTL_STG) == "1.1"
    playbook("rollback", "staging")
    assert version_served(RTL_STG) == "1.0"
    status = run_golive(workspace, "status", "retailer", "staging", "--json", check=0).json()
    assert json.dumps(status).count("1.0-") >= 1
    runs = [(e["action"], e["operator"], e["result"]) for e in ledger(test_hosts, RTL_STG) if e["action"] != "check"]
    assert runs == [("deploy", "ops-team", "ok"), ("deploy", "ops-team", "ok"), ("rollback", "ops-team", "ok")]


def test_checks_pass_and_no_drift_between_engines(workspace, test_hosts):
    """Staging deployed by pyinfra, production by Ansible: the checks pass on both, and drift sees
    only the differences golive.yml declares."""
    golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", engine="pyinfra")
    run_golive(workspace, "check", "manufacturer", "staging", check=0)
    golive(workspace, "deploy", "manufacturer", "production", "--release", "1.0")
    for environment in ("staging", "production"):
        run_golive(workspace, "check", "manufacturer", environment, check=0)
    drift = run_golive(workspace, "drift", "manufacturer", "--json", check=0)
    assert drift.returncode == 0


def test_serial_batches_keep_the_environment_lock_and_max_fail_counts_the_whole_run(workspace, test_hosts):
    """--serial 1: the leader's lock stays until the last batch is done (a pyinfra deploy started
    during the second batch is refused at the leader and touches nothing), and --max-fail counts the
    failed hosts of the whole run, not of one batch as Ansible's max_fail_percentage would."""
    ws = workspace
    override = ("--override-promotion", "serial test")
    health_retries(ws, 3)  # 9.9 fails sooner
    golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", *override, engine="pyinfra")
    # The second batch's hook holds it until the test has seen the lock and the refused deploy.
    set_hook(ws, "before_cutover", 'touch $GOLIVE_APP_ROOT/shared/hook-ran; [ "$GOLIVE_HOST" != mfg-prod-2 ] || '
             '{ i=0; while [ ! -e $GOLIVE_APP_ROOT/shared/let-go ] && [ $i -lt 3000 ]; do sleep 0.1; '
             'i=$((i+1)); done; }')
    let_go = host_path(test_hosts, MFG_PROD2, "/opt/northwind/shared/let-go")
    # 9.9 fails its health check everywhere. 1 of 2 hosts failed = 50%: under 60% the second batch
    # still runs (Ansible alone would stop after a batch whose every host failed); over 40% it does not.
    marker = host_path(test_hosts, MFG_PROD2, "/opt/northwind/shared/hook-ran")
    env = {**os.environ, "PYTHONPATH": str(REPO / "deploy")}
    serial = subprocess.Popen([sys.executable, "-m", "golive", "deploy", "manufacturer", "production",
                               "--release", "9.9", *override, "--serial", "1", "--max-fail", "60%",
                               "--engine", "ansible", "--json", "--workspace", str(ws)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while not marker.exists() and serial.poll() is None:
            time.sleep(0.02)
        assert marker.exists(), "the second batch never ran its hook"
        # the first batch is done, the second under way: the leader's lock is still this run's
        assert ledger(test_hosts, MFG_PROD1)[-1]["release"].startswith("9.9-")
        owner = json.loads(host_path(test_hosts, MFG_PROD1, "/opt/northwind/.golive/lock/owner.json").read_text())
        assert owner["engine"] == "ansible"
        before = {s: len(ledger(test_hosts, s)) for s in (MFG_PROD1, MFG_PROD2)}
        refused = golive(ws, "deploy", "manufacturer", "production", "--release", "1.1", *override,
                         engine="pyinfra", check=3)
        assert hosts_of(refused)["mfg-prod-1"]["status"] == "locked", refused.stdout
        assert "still running" in hosts_of(refused)["mfg-prod-1"]["error"]
        assert {s: len(ledger(test_hosts, s)) for s in (MFG_PROD1, MFG_PROD2)} == before
        let_go.touch()
        stdout, stderr = serial.communicate(timeout=WAIT_BOUND_SECONDS)
    finally:
        let_go.touch()
        if serial.poll() is None:
            serial.kill()
    assert serial.returncode == 3, stdout + stderr
    assert {h["status"] for h in json.loads(stdout)["hosts"]} == {"rolled_back"}
    for suffix in (MFG_PROD1, MFG_PROD2):
        assert not host_path(test_hosts, suffix, "/opt/northwind/.golive/lock").exists()

    result = golive(ws, "deploy", "manufacturer", "production", "--release", "9.9", *override, "--serial", "1",
                    "--max-fail", "40%", check=3)
    reports = hosts_of(result)
    assert reports["mfg-prod-1"]["status"] == "rolled_back"
    assert reports["mfg-prod-2"]["status"] == "skipped"
    assert reports["mfg-prod-2"]["error"] == "not deployed: 1 of 2 hosts failed, over --max-fail"
    assert ledger(test_hosts, MFG_PROD2)[-1]["result"] == "skipped"
    assert version_served(MFG_PROD1) == version_served(MFG_PROD2) == "1.0"

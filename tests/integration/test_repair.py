"""Every kind of finding `golive drift` reports on a host comes with the command that repairs it, and
that command works, with either engine: each change below is made on a production host over SSH,
drift reports it and names `golive deploy manufacturer production --release 1.0`; that deploy
(which plans the repair exactly: `golive plan` says entry by entry what it puts back) leaves the
host clean - drift finds nothing, the checks pass - and a deploy after it changes nothing.

The deploy calls a host unchanged only when every entry of its live release is what it should be,
by content, mode and owner, so a plain re-deploy is the repair; the Ansible engine (roles/golive)
decides and repairs the same way, leaving the same state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import live_release_problems, run_golive
from tests.integration.drift_support import HAND_EDIT, OPEN_SECRET, deployed_without_drift, drift, on_host

PROD1, NAME = 12, "mfg-prod-1"
CURRENT = "/opt/northwind/current"
REPAIR = "golive deploy manufacturer production --release 1.0"

# change -> (shell command run as root on the production host, the finding it gives: kind, subject,
# and the release entry `golive plan` says the repair puts back, None when it is not a file of the release)
CHANGES = {
    "patched code": (
        f"printf X | dd of={CURRENT}/northwind/plant.py bs=1 seek=20 conv=notrunc 2>/dev/null",
        ("code_file", "northwind/plant.py"), "northwind/plant.py"),
    "chmod on a code file": (
        f"chmod 0666 {CURRENT}/northwind/config.py", ("permission", "northwind/config.py mode"), "northwind/config.py"),
    "chmod on a config file": (
        f"chmod 0666 {CURRENT}/config/features.json", ("permission", "features.json mode"), "config/features.json"),
    "chmod on the secret file": (OPEN_SECRET, ("permission", "secrets.env mode"), "config/secrets.env"),
    "a deleted file": (
        f"rm {CURRENT}/assets/pack-00/asset-0003.bin", ("code_file", "assets/pack-00/asset-0003.bin"),
        "assets/pack-00/asset-0003.bin"),
    "an added file": (
        f"echo 'import os' > {CURRENT}/northwind/extra.py", ("code_file", "northwind/extra.py"), "northwind/extra.py"),
    "a config link replaced by a copy": (
        "cp --remove-destination \"$(readlink -f /etc/northwind/features.json)\" /etc/northwind/features.json",
        ("config", "features.json link"), None),
    "an edited config file": (HAND_EDIT, ("config", "northwind.ini"), "config/northwind.ini"),
    "a stopped service": (f"{CURRENT}/bin/northwind-ctl stop", ("service", "state"), None),
    "a live release no longer marked verified": (
        "sed -i 's/\"state\": \"good\"/\"state\": \"unverified\"/' "
        "/opt/northwind/.golive/releases/\"$(basename \"$(readlink /opt/northwind/current)\")\".json",
        ("release", "state"), None),
}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, test_hosts, release_store) -> Path:
    return deployed_without_drift(tmp_path_factory.mktemp("repair"), test_hosts, release_store)


def host_result(result, name: str = NAME) -> dict:
    return next(h for h in result.json()["hosts"] if h["host"] == name)


def assert_clean(ws: Path, test_hosts, engine: str = "pyinfra") -> None:
    assert drift(ws, 0)["findings"] == []
    assert live_release_problems(test_hosts, PROD1) == []
    run_golive(ws, "check", "manufacturer", "production", check=0)
    again = run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", "--engine", engine, "--json",
                       check=0)
    assert host_result(again)["status"] == "unchanged", again.output


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_named_command_repairs_each_kind_of_host_finding(deployed, test_hosts, change):
    plant, (kind, subject), entry = CHANGES[change]
    on_host(test_hosts, PROD1, plant)
    data = drift(deployed, 1)
    assert [(f["scope"], f["kind"], f["subject"], f["hosts"]) for f in data["findings"]] == \
        [("host", kind, subject, [NAME])], data["findings"]
    assert data["repair"] == [{"command": REPAIR, "hosts": [NAME]}]
    plan = run_golive(deployed, "plan", "manufacturer", "production", "--release", "1.0", "--json", check=0)
    planned = host_result(plan)
    assert planned["action"] == "repair", planned
    if entry is not None:  # what the plan says is what the deploy puts back
        assert [r["path"] for r in planned["repairs"]] == [entry], planned["repairs"]
    repaired = run_golive(deployed, *REPAIR.split()[1:], "--json", check=0)
    assert host_result(repaired)["action"] == "repair"
    assert_clean(deployed, test_hosts)


def test_the_ansible_engine_repairs_the_same_way(deployed, test_hosts):
    on_host(test_hosts, PROD1, " && ".join(plant for plant, _, _ in CHANGES.values()))
    data = drift(deployed, 1)
    found = {(f["kind"], f["subject"]) for f in data["findings"]}
    assert {finding for _, finding, _ in CHANGES.values()} <= found, data["findings"]
    assert all(f["hosts"] == [NAME] for f in data["findings"]), data["findings"]
    assert data["repair"] == [{"command": REPAIR, "hosts": [NAME]}]
    repaired = run_golive(deployed, *REPAIR.split()[1:], "--engine", "ansible", "--json", check=0)
    assert host_result(repaired)["action"] == "repair", repaired.output
    # the state it leaves is the one the pyinfra engine calls unchanged (assert_clean), and it agrees
    assert_clean(deployed, test_hosts, engine="ansible")
    assert_clean(deployed, test_hosts)

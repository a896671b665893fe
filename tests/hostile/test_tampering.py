"""Tampering that `golive drift` did not see, on real hosts: each is reported now, once, on the host
where it was done, and following the advice the report gives (the command it names) puts the host
back - drift is clean again and a further deploy changes nothing.

Each case was a blind spot of the same kind: something reported by name or by a partial attribute
instead of by content - byte code under __pycache__ skipped, modes compared by their executable bit
only, owners of code files and directories never compared, shared links skipped, a config file
followed through a link, `current` read by its last path component, the time zone by its name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import host_view, live_release_problems, run_golive
from tests.integration.drift_support import deployed_without_drift, drift, on_host

PROD1, NAME = 12, "mfg-prod-1"
CURRENT = "/opt/northwind/current"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, test_hosts, release_store) -> Path:
    return deployed_without_drift(tmp_path_factory.mktemp("tampering"), test_hosts, release_store)


def release_id(test_hosts) -> str:
    return Path(str(host_view(test_hosts, PROD1, CURRENT).readlink())).name


# case -> (shell command run as root on the production host, the one finding: scope, kind, subject, severity)
TAMPERING = {
    "byte code planted under __pycache__": (
        f"mkdir {CURRENT}/northwind/__pycache__ && echo evil > {CURRENT}/northwind/__pycache__/plant.cpython-311.pyc",
        ("host", "code_file", "northwind/__pycache__", "medium")),
    "a code file opened to everyone (0666)": (
        f"chmod 0666 {CURRENT}/northwind/plant.py", ("host", "permission", "northwind/plant.py mode", "high")),
    "a script opened to everyone (0777)": (
        f"chmod 0777 {CURRENT}/bin/northwind-ctl", ("host", "permission", "bin/northwind-ctl mode", "high")),
    "a setuid bit on a script": (
        f"chmod 4755 {CURRENT}/bin/northwind-ctl", ("host", "permission", "bin/northwind-ctl mode", "high")),
    "a code file given to another user": (
        f"chown nobody {CURRENT}/northwind/plant.py", ("host", "permission", "northwind/plant.py owner", "medium")),
    "a code directory writable by everyone": (
        f"chmod 0777 {CURRENT}/northwind", ("host", "permission", "northwind mode", "high")),
    "a shared link replaced by a directory": (
        f"rm {CURRENT}/logs && mkdir {CURRENT}/logs && echo kept > {CURRENT}/logs/northwind.log",
        ("host", "code_file", "logs", "high")),
    "a config file replaced by a link to a faithful copy": (
        f"cp {CURRENT}/config/features.json /root/features.json && ln -sf /root/features.json "
        f"{CURRENT}/config/features.json", ("host", "config", "features.json", "high")),
    "`current` pointing at a copy outside releases/": (
        "cd /opt/northwind && id=$(basename \"$(readlink current)\") && mkdir -p elsewhere && "
        "cp -a releases/$id elsewhere/ && ln -sfn /opt/northwind/elsewhere/$id current.new && "
        "mv -T current.new current",
        ("host", "release", "current", "high")),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_reported_and_the_named_command_repairs_it(deployed, test_hosts, case):
    plant, (scope, kind, subject, severity) = TAMPERING[case]
    on_host(test_hosts, PROD1, plant)
    try:
        data = drift(deployed, 1)
        assert [(f["scope"], f["kind"], f["subject"], f["severity"], f["hosts"]) for f in data["findings"]] == \
            [(scope, kind, subject, severity, [NAME])], data["findings"]
        assert data["repair"] == [{"command": "golive deploy manufacturer production --release 1.0",
                                   "hosts": [NAME]}]
        repaired = run_golive(deployed, *data["repair"][0]["command"].split()[1:], "--json", check=0)
        assert next(h for h in repaired.json()["hosts"] if h["host"] == NAME)["action"] == "repair"
    finally:
        on_host(test_hosts, PROD1, "rm -rf /opt/northwind/elsewhere /root/features.json")
    assert drift(deployed, 0)["findings"] == []
    assert live_release_problems(test_hosts, PROD1) == []
    again = run_golive(deployed, "deploy", "manufacturer", "production", "--release", "1.0", "--json", check=0)
    assert {h["status"] for h in again.json()["hosts"]} == {"unchanged"}


def test_what_a_repair_replaces_or_removes_is_kept_on_the_host(deployed, test_hosts):
    repaired = host_view(test_hosts, PROD1, "/opt/northwind/.golive/repaired")
    earlier = set(repaired.iterdir()) if repaired.is_dir() else set()
    on_host(test_hosts, PROD1, TAMPERING["byte code planted under __pycache__"][0] +
            f" && printf X | dd of={CURRENT}/northwind/plant.py bs=1 seek=10 conv=notrunc 2>/dev/null")
    run_golive(deployed, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    kept = sorted(set(repaired.iterdir()) - earlier)
    assert len(kept) == 1 and kept[0].name.endswith(release_id(test_hosts)), kept
    assert oct(kept[0].stat().st_mode & 0o777) == "0o700"  # it may hold a secret file
    assert (kept[0] / "northwind/__pycache__/plant.cpython-311.pyc").read_text() == "evil\n"
    assert b"X" in (kept[0] / "northwind/plant.py").read_bytes()[10:11]
    assert drift(deployed, 0)["findings"] == []


def test_replaced_time_zone_data_under_the_same_name_is_drift(deployed, test_hosts):
    # /etc/localtime -> /usr/share/zoneinfo/Etc/UTC on the test hosts; in production's own mount
    # namespace that file now holds another zone's data, while every name still says Etc/UTC
    zone = str(Path("/etc/localtime").resolve())
    test_hosts.exec("h12", ["mount", "--bind", "/usr/share/zoneinfo/Asia/Shanghai", zone], check=True)
    try:
        data = drift(deployed, 1)
    finally:
        test_hosts.exec("h12", ["umount", zone], check=True)
    assert [(f["scope"], f["kind"], f["subject"]) for f in data["findings"]] == \
        [("environment", "platform", "timezone")]
    finding = data["findings"][0]
    assert finding["hosts"] == [NAME] and "other zone data" in finding["reason"]
    assert finding["expected_value"].startswith("Etc/UTC (zoneinfo ") and finding["actual_value"].startswith("Etc/UTC")
    assert finding["expected_value"] != finding["actual_value"]
    assert data["repair"] == []  # not golive's to repair: the preflight advice says what to do
    assert drift(deployed, 0)["findings"] == []

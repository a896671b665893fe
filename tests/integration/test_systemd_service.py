"""The example product as a systemd unit on real Debian servers booting systemd (golive.testing.systemd),
with both engines: golive.yml says `service: {systemd_unit: northwind}`, the host has the unit the
release ships (example_app/systemd/northwind.service, installed as a host's preparation installs it),
and golive restarts it with systemctl after `current` moved.

- deploy, the checks, status and rollback through the unit (`systemctl is-active`, a new main PID
  per restart, the release the unit serves);
- a unit its start limit stopped (failed, "start request repeated too quickly") does not stop the
  next deploy or rollback: golive's restart clears the limit first;
- a release that cannot start: the failed health check says the unit's state and the end of its
  journal, where the service said why; the deploy is rolled back and the good release serves again.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_workspace, health_of, run_golive

ENGINES = ("pyinfra", "ansible")
STAGING = "h131"  # the manufacturer's staging host, mfg-stg-1, is the session's first systemd host
UNIT = (REPO / "example_app" / "systemd" / "northwind.service").read_text()


@pytest.fixture
def unit_workspace(tmp_path, systemd_hosts, release_store) -> Path:
    """The example workspace on the systemd hosts (mfg-stg-1 on h131, the plant hosts on h132-h133),
    the service as the unit; the hosts fresh, with the product's unit installed and nothing deployed."""
    systemd_hosts.reset()
    for host in systemd_hosts.hosts:
        systemd_hosts.exec(host.name, ["sh", "-c", "cat > /etc/systemd/system/northwind.service && "
                                                   "systemctl daemon-reload"], input=UNIT, check=True)
    ws = copy_workspace(tmp_path / "ws", systemd_hosts, release_store)
    hosts_file = ws / "inventories" / "manufacturer" / "hosts.yml"
    net = re.escape(systemd_hosts.net)
    text = re.sub(rf"({net})\.1([123])\b", r"\1.13\2", hosts_file.read_text())
    hosts_file.write_text(text)
    app = ws / "golive.yml"
    service = re.search(r"^service:\n(?:  .*\n)+", app.read_text(), flags=re.MULTILINE)
    assert service, f"{app}: no service section"
    app.write_text(app.read_text().replace(service.group(0), "service:\n  systemd_unit: northwind\n"))
    return ws


def golive(ws: Path, *args: str, engine: str, check: int | None = 0):
    return run_golive(ws, *args, "--engine", engine, check=check)


def unit(hosts, name: str) -> tuple[str, int]:
    """(systemctl is-active, main PID) of northwind.service, asked over SSH."""
    result = hosts.ssh(name, "systemctl is-active northwind; systemctl show -p MainPID --value northwind")
    state, pid = result.stdout.decode().split()
    return state, int(pid)


def address(hosts, name: str) -> str:
    return next(h.address for h in hosts.hosts if h.name == name)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_product_runs_as_a_systemd_unit_through_deploy_check_and_rollback(unit_workspace, systemd_hosts,
                                                                               engine):
    ws, where = unit_workspace, address(systemd_hosts, STAGING)
    golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", engine=engine)
    state, first = unit(systemd_hosts, STAGING)
    assert state == "active" and first > 1 and health_of(where)["version"] == "1.0"

    # Trip the unit's start limit by hand (StartLimitBurst=3): the unit is failed, refusing starts.
    tripped = systemd_hosts.ssh(STAGING, "for i in 1 2 3 4; do systemctl restart northwind || exit 0; done; exit 1")
    assert tripped.returncode == 0, "the start limit did not refuse a fourth start"
    assert unit(systemd_hosts, STAGING)[0] == "failed"
    # The next deploy's restart clears the limit and starts the new release in a new process.
    golive(ws, "deploy", "manufacturer", "staging", "--release", "1.1", engine=engine)
    state, second = unit(systemd_hosts, STAGING)
    assert state == "active" and second not in (0, first) and health_of(where)["version"] == "1.1"
    # The checks ask the unit too. The one they fail is the product's locale, which this bare
    # Debian server does not have: preparing the host is not a deploy's job.
    checked = run_golive(ws, "check", "manufacturer", "staging", "--json", check=1).json()["hosts"][0]
    assert [f["check"] for f in checked["failed"]] == ["test_northwind.py::test_locale_is_available_and_used"], \
        checked
    assert {"test_service.py::test_service_is_running", "test_northwind.py::test_the_serving_process_runs_the_live_"
            "release"} <= set(checked["passed"]), checked

    # A release that cannot start (its config names a port sshd holds): the health check gives up,
    # says what the unit is and what its journal ends with; the deploy is rolled back to 1.1.
    staging = ws / "inventories" / "manufacturer" / "group_vars" / "staging.yml"
    good = staging.read_text()
    staging.write_text(good + "http_port: 22\n")
    failed = golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", "--json", engine=engine, check=3)
    host = failed.json()["hosts"][0]
    assert host["status"] == "rolled_back", failed.output
    assert "northwind is " in host["error"] and "its journal ends: " in host["error"], failed.output
    assert "northwind: cannot start" in host["error"], failed.output
    assert unit(systemd_hosts, STAGING)[0] == "active" and health_of(where)["version"] == "1.1"

    staging.write_text(good)
    golive(ws, "rollback", "manufacturer", "staging", engine=engine)
    assert unit(systemd_hosts, STAGING)[0] == "active" and health_of(where)["version"] == "1.0"
    status = run_golive(ws, "status", "manufacturer", "staging", "--json").json()["hosts"][0]
    assert (status["version"], status["state"], status["live"]) == ("1.0", "good", "healthy"), status

"""Hosts behind a jump host, for real: the manufacturer's production hosts live in network
namespaces only the bastion can reach (tests/jumphost.py), so every connection golive makes to them
must go through the bastion's sshd - and its log shows each forward. Deploy, check (golive check
and plain pytest), drift and rollback through it, with both engines; the ways OpenSSH and Ansible
express a jump host (ProxyJump in ansible_ssh_common_args, -J, ProxyCommand, an ssh_config file
named by the inventory's -F or by golive.yml, with HostName aliases and names only the bastion
resolves); and the jump host's key verified strictly, like the host's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_DIR, TEST_NET, copy_workspace, run_golive
from tests.jumphost import BastionNetwork

MFG = "inventories/manufacturer"
OVERRIDE = ("--override-promotion", "jump host tests")
PRODUCTION = ("mfg-prod-1", "mfg-prod-2")


@pytest.fixture(scope="session")
def bastion(test_hosts):
    network = BastionNetwork(Path(TEST_DIR) / "bastion", TEST_NET, test_hosts.client_key,
                             str(test_hosts.dir / "authorized_keys"))
    network.up(targets=2)
    yield network
    network.down()


def write(ws: Path, relative: str, text: str) -> None:
    path = ws / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def behind_bastion(ws: Path, test_hosts, bastion: BastionNetwork, how: str) -> Path:
    """The workspace's production hosts moved behind the bastion, reached as `how` says."""
    jump = bastion.bastion.address
    targets = bastion.targets
    known = f"{test_hosts.known_hosts} {bastion.known_hosts}"
    trust = f'-o "UserKnownHostsFile={known}" -o StrictHostKeyChecking=yes'
    key = test_hosts.client_key
    hosts = (ws / MFG / "hosts.yml").read_text()
    for name, target in zip(PRODUCTION, targets, strict=True):
        address = {"ssh_config": name, "inventory_ssh_config": name, "internal_name": target.internal_name}.get(
            how, target.address)
        old = f"ansible_host: {test_hosts.net}.{12 + targets.index(target)}"
        hosts = hosts.replace(old, f"ansible_host: {address}")
        write(ws, f"{MFG}/host_vars/{name}.yml", ((ws / MFG / "host_vars" / f"{name}.yml").read_text()
                                                  if (ws / MFG / "host_vars" / f"{name}.yml").exists() else "")
              + f"listen_address: {target.address}\n")
    (ws / MFG / "hosts.yml").write_text(hosts)
    config = ws / "ssh" / "plant.conf"
    config.parent.mkdir(exist_ok=True)
    config.write_text("\n".join([
        "# The plant's network: everything through the bastion (a HostName alias), by alias names.",
        "Host bastion", f"  HostName {jump}", "  User root",
        *[line for name, target in zip(PRODUCTION, targets, strict=True)
          for line in (f"Host {name}", f"  HostName {target.internal_name}", "  ProxyJump bastion")],
        "Host *", "  ServerAliveInterval 15", ""]))
    common = {
        "proxyjump": f"{trust} -o ProxyJump=root@{jump}",
        "internal_name": f"{trust} -o ProxyJump=root@{jump}",
        "dash_j": trust,
        "proxycommand": (f"{trust} -o 'ProxyCommand=ssh -F /dev/null -i {key} -o BatchMode=yes "
                         f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={bastion.known_hosts} "
                         f"-W %h:%p root@{jump}'"),
        "ssh_config": trust,
        "inventory_ssh_config": f"{trust} -F ssh/plant.conf",
    }[how]
    lines = [f"ansible_ssh_common_args: {json.dumps(common)}"]
    if how == "dash_j":
        lines.append(f"ansible_ssh_extra_args: -J root@{jump}")
    write(ws, f"{MFG}/group_vars/production/connection.yml", "\n".join(lines) + "\n")
    if how == "ssh_config":
        app = ws / "golive.yml"
        app.write_text(app.read_text() + "\nconnection:\n  ssh_config: ssh/plant.conf\n")
    return ws


@pytest.fixture
def plant(tmp_path, test_hosts, release_store, bastion, request):
    test_hosts.reset()
    bastion.reset()
    ws = copy_workspace(tmp_path / "ws", test_hosts, release_store)
    return behind_bastion(ws, test_hosts, bastion, getattr(request, "param", "ssh_config"))


def forwarded(bastion: BastionNetwork, since: int) -> set[str]:
    """The targets (by address) the bastion forwarded a connection to since its `since`-th forward."""
    lines = bastion.forwards()[since:]
    return {t.address for t in bastion.targets
            if any(f"target {t.address} port 22" in line or f"target {t.internal_name} port 22" in line
                   for line in lines)}


def served(bastion: BastionNetwork, index: int) -> dict:
    """The service's /health answer, asked on the target itself (the controller cannot reach it)."""
    target = bastion.targets[index - 1]
    done = bastion.in_target(index, "python3", "-c", f"import urllib.request; print(urllib.request.urlopen("
                             f"'http://{target.address}:8080/health', timeout=5).read().decode())")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_targets_cannot_be_reached_but_through_the_bastion(plant, test_hosts, bastion):
    """The harness's own proof: a direct connection never arrives, and golive without the jump
    settings says the host is unreachable, naming it; through the bastion, OpenSSH gets there."""
    for target in bastion.targets:
        direct = subprocess.run(["ssh", "-F", "/dev/null", "-i", test_hosts.client_key, "-o", "BatchMode=yes",
                                 "-o", f"UserKnownHostsFile={bastion.known_hosts}", "-o", "ConnectTimeout=3",
                                 f"root@{target.address}", "true"], capture_output=True, text=True, timeout=60)
        assert direct.returncode == 255, direct
        jumped = subprocess.run(["ssh", "-F", "/dev/null", "-i", test_hosts.client_key, "-o", "BatchMode=yes",
                                 "-o", f"UserKnownHostsFile={bastion.known_hosts}",
                                 "-J", f"root@{bastion.bastion.address}", f"root@{target.address}", "hostname"],
                                capture_output=True, text=True, timeout=60)
        # OpenSSH's own -J checks the bastion against ~/.ssh/known_hosts: golive does better (below)
        assert jumped.returncode == 255 or jumped.stdout.strip() == target.name
    (plant / MFG / "group_vars" / "production" / "connection.yml").unlink()
    (plant / "golive.yml").write_text((plant / "golive.yml").read_text().replace(
        "\nconnection:\n  ssh_config: ssh/plant.conf\n", "\n"))
    status = run_golive(plant, "status", "manufacturer", "production", "--json")
    assert status.returncode == 3, status.output
    for row in status.json()["hosts"]:
        assert "unreachable" in row["error"] and "name resolution" in row["error"], row
        assert "golive reads no ssh_config unless" in row["error"], row


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_deploy_check_drift_and_rollback_through_the_bastion(plant, test_hosts, bastion, engine):
    """The go-live through a bastion, by an ssh_config file (golive.yml) with aliases and names only
    the bastion resolves: deploy staging (direct) and production (through the bastion), check,
    drift, deploy 1.1, roll back - every production connection forwarded by the bastion."""
    engine_args = ("--engine", engine) if engine == "ansible" else ()
    run_golive(plant, "validate", check=0)
    run_golive(plant, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    run_golive(plant, "check", "manufacturer", "staging", check=0)
    before = len(bastion.forwards())
    deployed = run_golive(plant, "deploy", "manufacturer", "production", "--release", "1.0", "--json", *engine_args)
    assert deployed.returncode == 0, deployed.output
    assert {h["status"] for h in deployed.json()["hosts"]} == {"deployed"}
    assert forwarded(bastion, before) == {t.address for t in bastion.targets}, bastion.forwards()[before:]
    for index in (1, 2):
        assert served(bastion, index)["version"] == "1.0"

    before = len(bastion.forwards())
    checked = run_golive(plant, "check", "manufacturer", "production", "--json")
    assert checked.returncode == 0 and checked.json()["passed"] is True, checked.output
    assert forwarded(bastion, before) == {t.address for t in bastion.targets}

    drift = run_golive(plant, "drift", "manufacturer", "--json")
    assert drift.returncode in (0, 1), drift.output
    assert drift.json()["unreachable"] == {}, drift.output

    run_golive(plant, "deploy", "manufacturer", "production", "--release", "1.1", *OVERRIDE, *engine_args, check=0)
    assert served(bastion, 1)["version"] == "1.1"
    before = len(bastion.forwards())
    rolled = run_golive(plant, "rollback", "manufacturer", "production", "--json", *engine_args)
    assert rolled.returncode == 0, rolled.output
    assert forwarded(bastion, before) == {t.address for t in bastion.targets}
    for index in (1, 2):
        assert served(bastion, index)["version"] == "1.0"
    history = run_golive(plant, "history", "manufacturer", "production", "--json", check=0).json()
    assert {e["engine"] for e in history["entries"] if e["action"] == "rollback"} == {engine}


def test_plain_pytest_checks_go_through_the_bastion(plant, test_hosts, bastion):
    """`pytest checks/` without golive: the ssh config the plugin writes takes OpenSSH through the
    bastion, with the bastion's key checked against the inventory's known_hosts."""
    run_golive(plant, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, check=0)
    before = len(bastion.forwards())
    env = {**os.environ, "PYTHONPATH": str(REPO / "deploy")}
    done = subprocess.run([sys.executable, "-m", "pytest", "checks/", "-q", "--golive-customer", "manufacturer",
                           "--golive-environment", "production", "-p", "no:cacheprovider"], cwd=plant, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert forwarded(bastion, before) == {t.address for t in bastion.targets}


WAYS = ["proxyjump", "dash_j", "proxycommand", "inventory_ssh_config", "internal_name"]


@pytest.mark.parametrize("plant", WAYS, indirect=True)
def test_every_way_of_naming_the_jump_host_deploys_through_it(plant, bastion):
    before = len(bastion.forwards())
    result = run_golive(plant, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, "--json")
    assert result.returncode == 0, result.output
    assert forwarded(bastion, before) == {t.address for t in bastion.targets}, bastion.forwards()[before:]
    assert served(bastion, 2)["version"] == "1.0"


@pytest.mark.parametrize("plant", ["proxyjump", "proxycommand"], indirect=True)
def test_the_ansible_engine_goes_the_same_way(plant, bastion):
    before = len(bastion.forwards())
    result = run_golive(plant, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, "--json",
                        "--engine", "ansible")
    assert result.returncode == 0, result.output
    assert forwarded(bastion, before) == {t.address for t in bastion.targets}, bastion.forwards()[before:]
    assert served(bastion, 1)["version"] == "1.0"


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_a_jump_host_with_another_key_than_known_hosts_says_is_refused(plant, bastion, engine, tmp_path):
    """The bastion's key is checked like the host's: listed under another key, nothing goes through
    it, with either engine, and the report names the jump host."""
    known = Path(bastion.known_hosts)
    original = known.read_text()
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, body = other.with_suffix(".pub").read_text().split()[:2]
    lines = [f"{bastion.bastion.address} {kind} {body}" if line.startswith(bastion.bastion.address + " ") else line
             for line in original.splitlines()]
    known.write_text("\n".join(lines) + "\n")
    try:
        before = len(bastion.forwards())
        result = run_golive(plant, "deploy", "manufacturer", "production", "--release", "1.0", *OVERRIDE, "--json",
                            *(("--engine", engine) if engine == "ansible" else ()))
        assert result.returncode == 3, result.output
        assert bastion.forwards()[before:] == []
        errors = " ".join(h.get("error", "") for h in result.json()["hosts"])
        # OpenSSH (the Ansible engine) says only that the proxy closed the connection: golive names why
        assert "REFUSED" in errors and "jump host" in errors and bastion.bastion.address in errors, errors
        assert "host key does not match" in errors and str(known) in errors, errors
        for target in bastion.targets:
            assert not (Path(target.binds["/opt/northwind"]) / "releases").exists()
    finally:
        known.write_text(original)


def test_the_inventory_shows_the_route(plant, bastion):
    data = run_golive(plant, "inventory", "manufacturer", "--json", check=0).json()
    route = data["hosts"]["mfg-prod-1"]["connection"]
    assert route["address"] == bastion.targets[0].internal_name and route["name"] == "mfg-prod-1"
    assert route["jumps"] == [{"address": bastion.bastion.address, "port": 22, "user": "root"}]
    assert route["ssh_config"].endswith("ssh/plant.conf")
    text = run_golive(plant, "inventory", "manufacturer", check=0).stdout
    assert f"via jump root@{bastion.bastion.address}:22" in text


def test_the_bastion_network_leaves_nothing_running(test_hosts, tmp_path):
    """down() ends every process it started and those that ran in its namespaces."""
    network = BastionNetwork(tmp_path / "net", f"{TEST_NET.rsplit('.', 1)[0]}.{int(TEST_NET.rsplit('.', 1)[1]) + 100}",
                             test_hosts.client_key, str(test_hosts.dir / "authorized_keys"))
    network.up(targets=1)
    pids = [network.bastion.sshd_pid, network.bastion.holder_pid, network.targets[0].sshd_pid,
            network.targets[0].holder_pid]
    network.down()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    shutil.rmtree(tmp_path / "net", ignore_errors=True)

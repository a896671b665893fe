"""golive reads inventories with ansible-core itself: its view must equal `ansible-inventory --list`."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from golive.core.redact import MASK
from tests.conftest import VAULT_SECRETS, run_golive

CUSTOMERS = ("manufacturer", "retailer")


def ansible_inventory(workspace, customer: str) -> dict:
    env = {**os.environ, "ANSIBLE_CONFIG": str(workspace / "ansible.cfg")}
    out = subprocess.run(["ansible-inventory", "-i", f"inventories/{customer}", "--list"], cwd=workspace, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("customer", CUSTOMERS)
def test_golive_inventory_equals_ansible_inventory(offline_workspace, customer):
    ours = run_golive(offline_workspace, "inventory", customer, "--json", check=0).json()["hosts"]
    theirs = ansible_inventory(offline_workspace, customer)["_meta"]["hostvars"]
    assert sorted(ours) == sorted(theirs)
    masked = 0
    for host, ansible_vars in theirs.items():
        golive_vars = ours[host]["vars"]
        assert sorted(golive_vars) == sorted(ansible_vars), host
        for key, value in ansible_vars.items():
            if golive_vars[key] == MASK:  # a secret: Ansible shows it encrypted or (vaulted file) decrypted
                masked += 1
                assert isinstance(value, dict) and "__ansible_vault" in value or value in VAULT_SECRETS
                continue
            assert golive_vars[key] == value, (host, key)
    assert masked == len(theirs)  # every host has its db_password, masked


def test_nested_groups_and_a_host_in_two_groups(offline_workspace):
    hosts = run_golive(offline_workspace, "inventory", "manufacturer", "--json", check=0).json()["hosts"]
    assert hosts["mfg-prod-1"]["environment"] == "production"
    assert set(hosts["mfg-prod-1"]["groups"]) == {"production", "plant_shanghai", "scada_gateway"}
    assert set(hosts["mfg-stg-1"]["groups"]) == {"staging", "scada_gateway"}
    # scada_gateway adds a flag; mfg-prod-2 is not in it; host_vars beat group_vars
    assert hosts["mfg-prod-1"]["vars"]["feature_flags"]["scada_opcua_bridge"] is True
    assert "scada_opcua_bridge" not in hosts["mfg-prod-2"]["vars"]["feature_flags"]
    assert hosts["mfg-prod-2"]["vars"]["min_free_disk_mb"] == 150
    theirs = ansible_inventory(offline_workspace, "manufacturer")
    assert sorted(theirs["production"]["children"]) == ["plant_shanghai", "plant_suzhou"]


def test_connection_variables_map_for_every_engine(offline_workspace):
    hosts = run_golive(offline_workspace, "inventory", "retailer", "--json", check=0).json()["hosts"]
    assert hosts["rtl-prod-1"]["connection"] == {"address": "127.0.0.15", "port": 22, "user": "root"}
    import sys
    sys.path.insert(0, str(offline_workspace))
    from golive.workspace import Workspace

    host = Workspace(offline_workspace).hosts("retailer", "production")[0]
    assert host.connection.known_hosts_file == "/tmp/golive-testhosts/known_hosts"
    assert host.connection.key_file == "/tmp/golive-testhosts/client_key"
    assert host.connection.python == "/usr/bin/python3"

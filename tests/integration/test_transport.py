"""One inventory serves every client golive drives, each verifying host keys: plain OpenSSH,
pyinfra (golive's engine) and Testinfra."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import HOST_COUNT, REPO, TEST_NET, run_golive


def hosts_of(workspace, customer="manufacturer"):
    sys.path.insert(0, str(REPO / "deploy"))
    from golive.workspace import Workspace

    return Workspace(workspace).customer(customer).hosts


def test_openssh_with_strict_host_key_checking_reaches_three_hosts(workspace):
    for host in hosts_of(workspace):
        c = host.connection
        out = subprocess.run(["ssh", "-i", c.key_file, "-o", f"UserKnownHostsFile={c.known_hosts_file}",
                              "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(c.port),
                              f"{c.user}@{c.address}", "hostname"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "h" + c.address.rsplit(".", 1)[1]


def test_pyinfra_gathers_a_fact_through_the_golive_inventory(workspace):
    script = textwrap.dedent(f"""
        from golive.adapters.concurrency import patch_for_parallel_ssh
        patch_for_parallel_ssh()
        from pyinfra.api.facts import get_facts
        from pyinfra.facts.server import Hostname
        from golive.adapters.transport import Fleet
        from golive.workspace import Workspace
        ws = Workspace({str(workspace)!r})
        fleet = Fleet(ws.customer("manufacturer").hosts)
        connected = fleet.connect()
        assert all(c.ok for c in connected.values()), connected
        facts = get_facts(fleet.state, Hostname)
        print(sorted((host.name, value) for host, value in facts.items()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO / "deploy")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[('mfg-prod-1', 'h12'), ('mfg-prod-2', 'h13'), ('mfg-stg-1', 'h11')]"


def test_testinfra_reads_a_file_through_the_golive_inventory(workspace, tmp_path, test_hosts):
    config = tmp_path / "ssh_config"
    lines = []
    for host in hosts_of(workspace):
        c = host.connection
        lines += [f"Host {host.name}", f"  HostName {c.address}", f"  Port {c.port}", f"  User {c.user}",
                  f"  IdentityFile {c.key_file}", f"  UserKnownHostsFile {c.known_hosts_file}",
                  "  StrictHostKeyChecking yes", "  BatchMode yes"]
    config.write_text("\n".join(lines) + "\n")
    marker = test_hosts.hosts[0].binds["/etc/northwind"] + "/marker.txt"
    with open(marker, "w") as handle:
        handle.write("written on h11 only\n")
    import testinfra

    on_h11 = testinfra.get_host("ssh://mfg-stg-1", ssh_config=str(config))
    on_h12 = testinfra.get_host("ssh://mfg-prod-1", ssh_config=str(config))
    assert on_h11.file("/etc/northwind/marker.txt").content_string == "written on h11 only\n"
    assert not on_h12.file("/etc/northwind/marker.txt").exists


def test_a_changed_host_key_is_refused_naming_the_host(workspace, test_hosts):
    test_hosts.rekey("h12")
    try:
        result = run_golive(workspace, "status", "manufacturer", "production", "--json")
        assert result.returncode == 3
        rows = {r["host"]: r for r in result.json()["hosts"]}
        assert "REFUSED" in rows["mfg-prod-1"]["error"] and f"{TEST_NET}.12" in rows["mfg-prod-1"]["error"]
        assert "does not match" in rows["mfg-prod-1"]["error"]
        assert "error" not in rows["mfg-prod-2"]
        deploy = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
        assert "verified" in deploy.stdout
    finally:
        test_hosts.down()
        test_hosts.up(HOST_COUNT)

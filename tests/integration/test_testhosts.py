"""golive.testing.hosts (light test hosts) against real sshd processes, and a deploy of the example app by hand.

Needs root (namespaces, bind mounts, port 22). The hosts live on this pytest worker's test net
(GOLIVE_TEST_NET, see tests/conftest.py) from .111 on, beside the session's own hosts (.11-.16), so
that suites run side by side on other nets never meet them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))  # test the working tree, installed or not

from golive.testing.hosts import HostInfo, TestHosts, TestHostsError  # noqa: E402
from tests.conftest import REPO, TEST_NET  # noqa: E402

NET = TEST_NET  # this worker's net; the session's own hosts take .11-.16 of it
FIRST = 111
APP_PORT = 18080


@pytest.fixture
def hosts(tmp_path):
    test_hosts = TestHosts(tmp_path / "testhosts", net=NET, first=FIRST)
    test_hosts.up(3)
    yield test_hosts
    test_hosts.down()


def ssh(
    hosts: TestHosts, host: HostInfo, command: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess:
    """OpenSSH with strict host key checking against the generated known_hosts, nothing else."""
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            hosts.client_key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={hosts.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            f"root@{host.address}",
            command,
        ],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def ssh_ok(hosts: TestHosts, host: HostInfo, command: str, stdin: bytes | None = None) -> str:
    result = ssh(hosts, host, command, stdin)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def recorded_state(hosts: TestHosts) -> dict:
    return json.loads((hosts.dir / "hosts.json").read_text())


def processes_in(namespaces: set[str]) -> list[int]:
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{entry}/ns/mnt") in namespaces and running(int(entry)):
                pids.append(int(entry))
        except OSError:
            pass
    return pids


def test_strict_host_key_ssh_reaches_every_host_by_its_own_name(hosts):
    assert [h.name for h in hosts.hosts] == ["h111", "h112", "h113"]
    assert [h.address for h in hosts.hosts] == [f"{NET}.111", f"{NET}.112", f"{NET}.113"]
    known = Path(hosts.known_hosts).read_text().splitlines()
    assert [line.split()[0] for line in known] == [h.address for h in hosts.hosts]
    for host in hosts.hosts:
        name, home, home_files = ssh_ok(hosts, host, "hostname; echo $HOME; ls -A ~ | wc -l").split()
        assert (name, home, home_files) == (host.name, "/root", "0")


def test_hosts_json_records_every_host(hosts):
    state = recorded_state(hosts)
    assert state["net"] == NET and state["dir"] == str(hosts.dir)
    assert state["client_key"] == hosts.client_key and state["known_hosts"] == hosts.known_hosts
    for record, host in zip(state["hosts"], hosts.hosts, strict=True):
        assert record["port"] == 22 and running(record["pid"])
        assert os.path.basename(os.readlink(f"/proc/{record['pid']}/exe")) == "sshd"
        assert set(record["binds"]) == {"/opt/northwind", "/etc/northwind", "/root"}
        assert host.root == str(hosts.dir / "hosts" / host.address)


def test_each_host_has_a_private_filesystem(hosts):
    h111, h112, h113 = hosts.hosts
    name = f"isolation-{uuid.uuid4().hex}"
    ssh_ok(hosts, h111, f"echo from-h111 > /opt/northwind/{name}; echo cfg > /etc/northwind/{name}")
    assert ssh_ok(hosts, h111, f"cat /opt/northwind/{name}") == "from-h111\n"
    assert Path(h111.binds["/opt/northwind"], name).read_text() == "from-h111\n"
    for other in (h112, h113):
        assert (
            ssh(hosts, other, f"test -e /opt/northwind/{name} || test -e /etc/northwind/{name}").returncode
            == 1
        )
    assert not Path("/opt/northwind", name).exists()
    assert not Path("/etc/northwind", name).exists()


def test_exec_runs_inside_the_hosts_namespaces(hosts):
    h111 = hosts.hosts[0]
    ssh_ok(hosts, h111, "echo seen > /etc/northwind/probe")
    assert hosts.exec("h111", ["hostname"]).stdout == "h111\n"
    assert hosts.exec(h111.address, ["cat", "/etc/northwind/probe"]).stdout == "seen\n"


def test_rekeyed_host_is_refused_by_strict_checking(hosts):
    h111, h112, _ = hosts.hosts
    known_before = Path(hosts.known_hosts).read_text()
    hosts.rekey("h111")
    refused = ssh(hosts, h111, "true")
    assert refused.returncode == 255
    assert b"Host key verification failed" in refused.stderr
    assert Path(hosts.known_hosts).read_text() == known_before
    assert ssh_ok(hosts, h112, "hostname") == "h112\n"


def test_stopped_host_refuses_connections_until_started(hosts):
    h112 = hosts.hosts[1]
    hosts.stop("h112")
    assert hosts.status() == {"h111": True, "h112": False, "h113": True}
    assert b"Connection refused" in ssh(hosts, h112, "true").stderr
    hosts.start("h112")
    assert ssh_ok(hosts, h112, "hostname") == "h112\n"


def test_up_again_returns_the_running_set_and_refuses_another_size(hosts):
    before = hosts.hosts
    assert hosts.up(3) == before
    with pytest.raises(TestHostsError, match="already up"):
        hosts.up(2)


def test_reset_kills_processes_and_empties_the_bind_directories(hosts):
    h111, h112, _ = hosts.hosts
    pids = []
    for host in (h111, h112):
        pids.append(int(ssh_ok(hosts, host, "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!")))
        ssh_ok(
            hosts,
            host,
            "mkdir -p /opt/northwind/releases/a && ln -s releases/a /opt/northwind/current"
            " && echo x > /etc/northwind/northwind.ini && touch ~/.bash_history",
        )
    assert all(running(pid) for pid in pids)
    started = time.monotonic()
    hosts.reset()
    assert time.monotonic() - started < 1
    assert not any(running(pid) for pid in pids)
    for host in (h111, h112):
        assert all(not any(Path(source).iterdir()) for source in host.binds.values())
        assert ssh_ok(hosts, host, "find /opt/northwind /etc/northwind ~ -mindepth 1 | wc -l") == "0\n"


def test_down_leaves_no_process_behind(hosts):
    state = recorded_state(hosts)
    namespaces = {record["mnt_ns"] for record in state["hosts"]}
    daemon = int(ssh_ok(hosts, hosts.hosts[2], "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!"))
    recorded = [record[key] for record in state["hosts"] for key in ("pid", "holder_pid")]
    assert len(processes_in(namespaces)) >= 7  # 3 holders, 3 sshd, the daemon
    hosts.down()
    assert processes_in(namespaces) == []
    assert not any(running(pid) for pid in [*recorded, daemon])
    assert hosts.status() == {"h111": False, "h112": False, "h113": False}
    assert hosts.dir.is_dir()


def test_down_refuses_loudly_what_it_cannot_verify_and_can_try_again(hosts):
    """A tmpfs mounted over /root inside a host hides the home that identifies its namespace: down
    must neither kill those processes (the namespace id alone could be a stranger's) nor claim
    success, and must keep hosts.json so that a later `down` finishes the job."""
    state = recorded_state(hosts)
    holder = state["hosts"][0]["holder_pid"]
    subprocess.run(["nsenter", "-t", str(holder), "-m", "mount", "-t", "tmpfs", "tmpfs", "/root"], check=True)
    with pytest.raises(TestHostsError, match="not showing its home, so not killed") as refused:
        hosts.down()
    assert f"{holder} (sleep)" in str(refused.value)
    assert running(holder)
    assert recorded_state(hosts)["hosts"][0]["holder_pid"] == holder
    subprocess.run(["nsenter", "-t", str(holder), "-m", "umount", "/root"], check=True)
    hosts.down()
    assert not running(holder)
    assert processes_in({record["mnt_ns"] for record in state["hosts"]}) == []


def test_cli_status_reports_every_host(hosts):
    result = subprocess.run(
        [str(REPO / "scripts" / "testhosts"), "status", "--dir", str(hosts.dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert [(h["name"], h["address"], h["up"]) for h in report["hosts"]] == [
        ("h111", f"{NET}.111", True),
        ("h112", f"{NET}.112", True),
        ("h113", f"{NET}.113", True),
    ]


def listening(addresses: list[str]) -> list[str]:
    """Which of these addresses have a socket listening on port 22 (from /proc, no probe)."""
    import socket
    import struct

    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == 22:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address_hex, 16))))
    return [a for a in addresses if a in found]


@pytest.mark.skipif(str(REPO).startswith("/tmp/"), reason="the test binds another directory over /tmp: a checkout under /tmp would vanish from under it")  # noqa: E501
def test_status_and_down_work_when_tmp_is_a_bind_mount(tmp_path):
    """/tmp as a bind mount of another directory (systemd's PrivateTmp, a container's `-v dir:/tmp`):
    status must see the hosts up, and down must stop every sshd and every daemon started on a host,
    so that the next `up` finds the addresses free. The whole CLI session runs in a private mount
    namespace whose /tmp is a bind of tmp_path/real-tmp."""
    real_tmp = tmp_path / "real-tmp"
    real_tmp.mkdir()
    first = FIRST + 10
    addresses = [f"{NET}.{first}", f"{NET}.{first + 1}"]
    testhosts = REPO / "scripts" / "testhosts"
    ssh_options = ("-F /dev/null -i /tmp/hosts/client_key -o IdentitiesOnly=yes -o BatchMode=yes"
                   " -o UserKnownHostsFile=/tmp/hosts/known_hosts -o StrictHostKeyChecking=yes")
    script = f"""set -e
mount --bind {real_tmp} /tmp
{testhosts} up 2 --dir /tmp/hosts --net {NET} --first {first}
ssh {ssh_options} root@{addresses[1]} 'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!' > /tmp/daemon.pid
cp /tmp/hosts/hosts.json /tmp/hosts-before-down.json
{testhosts} status --dir /tmp/hosts --json > /tmp/status.json
{testhosts} down --dir /tmp/hosts
"""
    try:
        run = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                             capture_output=True, text=True, timeout=120)
        printed = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
        assert run.returncode == 0, printed
        status = json.loads((real_tmp / "status.json").read_text())
        assert [(h["address"], h["up"]) for h in status["hosts"]] == [(a, True) for a in addresses], printed
        before = json.loads((real_tmp / "hosts-before-down.json").read_text())
        daemon = int((real_tmp / "daemon.pid").read_text())
        recorded = [record[key] for record in before["hosts"] for key in ("pid", "holder_pid")]
        assert processes_in({record["mnt_ns"] for record in before["hosts"]}) == [], printed
        assert not any(running(pid) for pid in [*recorded, daemon]), printed
        assert listening(addresses) == [], printed
    finally:
        # Whatever a broken `down` left behind: the processes of the namespaces this test's hosts had.
        leftovers = (real_tmp / "hosts-before-down.json")
        if leftovers.exists():
            namespaces = {r["mnt_ns"] for r in json.loads(leftovers.read_text())["hosts"] if r["mnt_ns"]}
            for pid in processes_in(namespaces):
                os.kill(pid, 9)


def test_bind_is_documented_and_a_created_target_is_reported(tmp_path):
    testhosts = str(REPO / "scripts" / "testhosts")
    usage = subprocess.run([testhosts, "up", "--help"], capture_output=True, text=True, check=True).stdout
    help_text = " ".join(usage.split())
    assert "--bind PATH" in help_text and "created as an empty directory" in help_text
    target = tmp_path / "machine" / "opt" / "app"  # a path missing on this machine
    state = ["--dir", str(tmp_path / "binds")]
    try:
        up = subprocess.run([testhosts, "up", "1", *state, "--net", NET, "--first", str(FIRST + 15),
                             "--bind", str(target)], capture_output=True, text=True, timeout=60)
        assert up.returncode == 0, up.stdout + up.stderr
        created = f"{target.parent.parent}, {target.parent}, {target}"
        assert f"testhosts: created {created} on this machine" in up.stderr, up.stderr
        assert target.is_dir() and not any(target.iterdir())
        again = subprocess.run([testhosts, "up", "1", *state, "--net", NET, "--first", str(FIRST + 15),
                                "--bind", str(target)], capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "created" not in again.stderr, again.stderr
    finally:
        subprocess.run([testhosts, "down", *state], check=True, capture_output=True)
        for directory in (target, target.parent, target.parent.parent):
            if directory.is_dir():
                directory.rmdir()


# ------------------------------------------------------------------ the example app, deployed by hand


def build_release(store: Path, version: str, *options: str) -> bytes:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build-release"),
            version,
            "--store",
            str(store),
            "--files",
            "5",
            "--size-kb",
            "50",
            *options,
        ],
        check=True,
        capture_output=True,
    )
    return (store / f"northwind-{version}.tar.gz").read_bytes()


def expected_config_hash(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_example_app_deployed_by_hand(hosts, tmp_path):
    host = hosts.hosts[0]
    ctl = "/opt/northwind/current/bin/northwind-ctl"
    health = f"http://{host.address}:{APP_PORT}/health"
    config = {
        "northwind.ini": (
            f"[server]\nlisten_address = {host.address}\nport = {APP_PORT}\n\n"
            "[company]\nname = Acme Manufacturing\ntimezone = Europe/Berlin\nlocale = de_DE.UTF-8\n"
        ).encode(),
        "features.json": b'{"shop_floor": true}\n',
    }

    def install(release: str, artifact: bytes) -> None:
        ssh_ok(
            hosts,
            host,
            f"mkdir -p /opt/northwind/releases/{release}"
            f" && tar -xzf - -C /opt/northwind/releases/{release}"
            f" && ln -sfn releases/{release} /opt/northwind/current",
            stdin=artifact,
        )

    for name, content in config.items():
        ssh_ok(hosts, host, f"cat > /etc/northwind/{name}", stdin=content)
    install("x", build_release(tmp_path, "1.0"))
    started = time.monotonic()
    assert "started" in ssh_ok(hosts, host, f"{ctl} start")
    assert time.monotonic() - started < 5  # the daemon is detached: the session does not wait for it
    status, body = get(health)
    assert status == 200
    assert (body["status"], body["version"], body["release"]) == ("ok", "1.0", "x")
    assert body["config_hash"] == expected_config_hash(config)
    assert body["company"]["name"] == "Acme Manufacturing"
    assert ssh(hosts, host, f"{ctl} status").returncode == 0
    assert Path(host.binds["/opt/northwind"], "shared/run/northwind.pid").is_file()

    # A restart after `current` moved runs the release it points to now.
    install("y", build_release(tmp_path, "1.1"))
    ssh_ok(hosts, host, f"{ctl} restart")
    assert get(health)[1]["version"] == "1.1" and get(health)[1]["release"] == "y"

    install("z", build_release(tmp_path, "1.2", "--broken-health"))
    ssh_ok(hosts, host, f"{ctl} restart")
    status, body = get(health)
    assert (status, body["status"], body["release"]) == (503, "failing", "z")

    ssh_ok(hosts, host, f"{ctl} stop")
    assert ssh(hosts, host, f"{ctl} status").returncode == 3
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(health, timeout=2)

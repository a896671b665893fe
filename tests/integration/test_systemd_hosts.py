"""golive.testing.systemd: real Debian 12 servers booting systemd, checked through real ssh, systemd,
journald and apt. Needs root; the Debian base and the local apt repository come from scripts/setup.

Most tests share the session's three hosts (tests/conftest.py `systemd_hosts`: .131-.133 of this
worker's net) and undo what they did, or reset the host they changed. Tests that stop, rekey or
break hosts boot their own (.141-.149).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))  # test the working tree, installed or not

from golive.testing._common import listening_sockets  # noqa: E402
from golive.testing.systemd import SystemdHosts, TestHostsError, _cgroup_tree_procs, _v1_root, _v2_root  # noqa: E402
from tests.conftest import TEST_NET, wait_until  # noqa: E402

NET = TEST_NET
OWN_FIRST = 141


def ssh_ok(hosts: SystemdHosts, name: str, command: str, input: bytes | None = None) -> str:
    result = hosts.ssh(name, command, input=input)
    assert result.returncode == 0, (
        f"ssh {name} {command!r} exited {result.returncode}\nstdout:\n{result.stdout.decode()}\n"
        f"stderr:\n{result.stderr.decode()}"
    )
    return result.stdout.decode()


def names(hosts: SystemdHosts) -> list[str]:
    return [h.name for h in hosts.hosts]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def state_of(hosts: SystemdHosts) -> dict:
    return json.loads((hosts.dir / "hosts.json").read_text())


def host_processes(hosts: SystemdHosts) -> list[int]:
    return [pid for record in state_of(hosts)["hosts"] for pid in _cgroup_tree_procs(_v2_root() / record["cgroup"])]


def nothing_left(records: list[dict]) -> None:
    """Wait until nothing of these hosts is on the machine. A process the kernel is still tearing
    down (out of its cgroup, not yet gone from /proc) is waited for; anything that stays fails."""
    wait_until(lambda: not what_is_left(records), lambda: f"left behind: {what_is_left(records)}", bound=60)


def what_is_left(records: list[dict]) -> list[str]:
    """Anything of these hosts still on the machine: cgroups, namespace members, overlay mounts,
    listening sockets (empty: nothing)."""
    left = []
    for record in records:
        for hierarchy in (_v2_root(), _v1_root()):
            if hierarchy is not None and (hierarchy / record["cgroup"]).exists():
                left.append(f"{record['name']}: cgroup {hierarchy / record['cgroup']}")
    namespaces = {record[key] for record in records for key in ("mnt_ns", "pid_ns") if record.get(key)}
    uppers = [f"upperdir={record['upper']}," for record in records]
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            members = {os.readlink(f"/proc/{entry}/ns/{kind}") for kind in ("mnt", "pid")}
            mounts = Path(f"/proc/{entry}/mountinfo").read_text()
        except OSError:
            continue
        if members & namespaces and running(int(entry)):
            left.append(f"process {entry} in a host's namespace")
        if any(upper in mounts for upper in uppers):
            left.append(f"a host's overlay mounted in the mount namespace of {entry}")
    listening = listening_sockets()
    left += [f"{r['address']}:22 listening" for r in records if (r["address"], 22) in listening]
    return left


@pytest.fixture
def own_hosts(tmp_path):
    """Two hosts of this test's own (.141-.142), for tests that stop, rekey or kill parts of them."""
    hosts = SystemdHosts(tmp_path / "systemd", net=NET, first=OWN_FIRST)
    hosts.up(2)
    yield hosts
    hosts.down()


# ------------------------------------------------------------------------------ booted servers


def test_every_host_answers_ssh_with_strict_host_key_checking(systemd_hosts):
    infos = systemd_hosts.hosts
    assert [h.name for h in infos] == ["h131", "h132", "h133"]
    assert [h.address for h in infos] == [f"{NET}.131", f"{NET}.132", f"{NET}.133"]
    known = Path(systemd_hosts.known_hosts).read_text().splitlines()
    for line, info in zip(known, infos, strict=True):
        host_key = Path(info.root, "ssh_host_ed25519_key.pub").read_text().split()[:2]
        assert line.split() == [info.address, *host_key]
    machine_ids = set()
    for info in infos:
        hostname, machine_id = ssh_ok(systemd_hosts, info.name, "hostname; cat /etc/machine-id").split()
        assert hostname == info.name
        machine_ids.add(machine_id)
    assert len(machine_ids) == 3
    # The same login without the generated known_hosts is refused, not accepted on first use.
    stranger = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", systemd_hosts.client_key, "-o", "UserKnownHostsFile=/dev/null",
         "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         f"root@{infos[0].address}", "true"],
        capture_output=True, text=True, timeout=60,
    )
    assert stranger.returncode == 255 and "Host key verification failed" in stranger.stderr, stranger.stderr


def test_systemd_is_pid_1_of_each_host_and_the_system_is_running(systemd_hosts):
    leaders = set()
    for name in names(systemd_hosts):
        output = ssh_ok(
            systemd_hosts, name,
            "cat /proc/1/comm; systemctl is-system-running; systemctl --failed --no-legend; "
            "loginctl list-sessions --no-legend | wc -l; grep ^0:: /proc/self/cgroup",
        )
        comm, state, *rest = output.splitlines()
        assert comm == "systemd", output
        assert state in ("running", "degraded"), output
        assert state == "running", f"{name} is degraded:\n{output}"
        assert int(rest[-2]) >= 1, f"the ssh login has no logind session:\n{output}"
        assert "session-" in rest[-1] and rest[-1].endswith(".scope"), output
        # The host's PID 1 lives in a PID namespace of its own, not the machine's.
        leader = systemd_hosts.pid1(name)
        leaders.add(leader)
        assert os.readlink(f"/proc/{leader}/ns/pid") != os.readlink("/proc/self/ns/pid")
        assert Path(f"/proc/{leader}/comm").read_text().strip() == "systemd"
    assert len(leaders) == 3


def test_journald_keeps_a_hosts_messages_and_units_output(systemd_hosts):
    marker = f"golive-probe-{uuid.uuid4().hex}"
    output = ssh_ok(
        systemd_hosts, "h131",
        f"logger -t golive-probe {marker}; systemd-run --quiet --wait -u {marker} echo unit-{marker}; "
        f"journalctl --sync; journalctl -t golive-probe -o cat --no-pager; journalctl -u {marker} -o cat --no-pager",
    )
    assert marker in output.splitlines(), output
    assert f"unit-{marker}" in output.splitlines(), output
    # Persistent: on the host's own disk (its upper layer), and in no other host's journal.
    assert any(Path(systemd_hosts.hosts[0].root, "upper/var/log/journal").rglob("*.journal"))
    other = ssh_ok(systemd_hosts, "h132",
                   f"journalctl --sync; journalctl -t golive-probe -o cat --no-pager | grep -c {marker} || true")
    assert other.strip() == "0", other


def test_a_unit_starts_restarts_and_is_stopped_by_its_start_limit(systemd_hosts):
    unit = f"golive-probe-{uuid.uuid4().hex[:8]}.service"
    # An explicit, wide interval: the limit must trip however slowly a loaded machine restarts.
    ssh_ok(
        systemd_hosts, "h131",
        f"cat > /etc/systemd/system/{unit} && systemctl daemon-reload",
        input=b"[Unit]\nStartLimitIntervalSec=600\nStartLimitBurst=3\n[Service]\nExecStart=/bin/sleep infinity\n",
    )
    try:
        first = ssh_ok(systemd_hosts, "h131", f"systemctl start {unit}; systemctl is-active {unit}; "
                                              f"systemctl show -p MainPID --value {unit}").split()
        assert first[0] == "active" and int(first[1]) > 1, first
        second = ssh_ok(systemd_hosts, "h131", f"systemctl restart {unit}; systemctl show -p MainPID --value {unit}")
        assert int(second) not in (0, int(first[1]))
        third = ssh_ok(systemd_hosts, "h131", f"systemctl restart {unit}; echo started")
        assert third.strip() == "started"
        refused = systemd_hosts.ssh("h131", f"systemctl restart {unit}")
        assert refused.returncode != 0
        assert b"start of the service was attempted too often" in refused.stderr, refused.stderr
        result = ssh_ok(systemd_hosts, "h131",
                        f"systemctl show -p Result --value {unit}; systemctl is-failed {unit} || true")
        assert result.split() == ["start-limit-hit", "failed"], result
    finally:
        ssh_ok(systemd_hosts, "h131", f"systemctl stop {unit}; rm /etc/systemd/system/{unit}; "
                                      f"systemctl daemon-reload; systemctl reset-failed")


def test_etc_usr_and_var_are_each_hosts_own(systemd_hosts):
    marker = uuid.uuid4().hex
    paths = [f"/etc/golive-{marker}", f"/usr/local/share/golive-{marker}", f"/var/lib/golive-{marker}"]
    ssh_ok(systemd_hosts, "h131", "; ".join(f"echo h131 > {p}" for p in paths))
    try:
        assert ssh_ok(systemd_hosts, "h131", f"cat {' '.join(paths)}") == "h131\n" * 3
        for other in ("h132", "h133"):
            assert systemd_hosts.ssh(other, " || ".join(f"test -e {p}" for p in paths)).returncode == 1
        h131 = systemd_hosts.hosts[0]
        for path in paths:
            assert not Path(path).exists(), f"{path} appeared on the real root"
            assert Path(h131.root, "upper", path.lstrip("/")).read_text() == "h131\n"  # the overlay's upper layer
            assert not Path(state_of(systemd_hosts)["hosts"][0]["base"], path.lstrip("/")).exists()
    finally:
        ssh_ok(systemd_hosts, "h131", f"rm -f {' '.join(paths)}")


def test_exec_runs_inside_the_host(systemd_hosts):
    result = systemd_hosts.exec("h132", ["sh", "-c", "hostname; cat /proc/1/comm /etc/hostname /proc/self/cgroup"])
    assert result.returncode == 0, result.stderr
    hostname, init, etc_hostname, *cgroup = result.stdout.splitlines()
    assert (hostname, init, etc_hostname) == ("h132", "systemd", "h132")
    assert any(line.startswith("0::") and line.endswith("/exec") for line in cgroup), cgroup
    assert systemd_hosts.exec("h132", ["false"]).returncode == 1
    with pytest.raises(TestHostsError, match="exited 1"):
        systemd_hosts.exec("h132", ["false"], check=True)


# ------------------------------------------------------------------------------ the local apt repository


def test_apt_sees_only_the_local_repository_and_installs_on_one_host(systemd_hosts):
    dpkg_status = hashlib.sha256(Path("/var/lib/dpkg/status").read_bytes()).hexdigest()
    tree_on_machine = Path("/usr/bin/tree").exists()
    try:
        policy = ssh_ok(systemd_hosts, "h132", "apt-get -q update >/dev/null && apt-cache policy")
        sources = {line.split()[1] for line in policy.splitlines() if line[:1] == " " and line.split()[0].isdigit()}
        assert sources == {"/var/lib/dpkg/status", "file:/srv/golive-apt"}, policy
        ssh_ok(systemd_hosts, "h132", "DEBIAN_FRONTEND=noninteractive apt-get -q -y install tree jq")
        assert ssh_ok(systemd_hosts, "h132", "dpkg-query -W -f '${Status}' tree; echo; tree -d /srv | tail -1") \
            .splitlines()[0] == "install ok installed"
        assert ssh_ok(systemd_hosts, "h132", "echo '{\"a\": 1}' | jq .a") == "1\n"
        for other in ("h131", "h133"):
            assert systemd_hosts.ssh(other, "dpkg-query -W tree || test -e /usr/bin/tree").returncode != 0
        assert hashlib.sha256(Path("/var/lib/dpkg/status").read_bytes()).hexdigest() == dpkg_status
        assert Path("/usr/bin/tree").exists() == tree_on_machine
    finally:
        systemd_hosts.reset(["h132"])
    # A fresh server again, with the same host key.
    assert systemd_hosts.ssh("h132", "command -v tree").returncode == 1
    assert ssh_ok(systemd_hosts, "h132", "hostname") == "h132\n"


def test_postgresql_15_installs_offline_and_serves_on_its_hosts_address(systemd_hosts):
    h133 = systemd_hosts.hosts[2]
    try:
        # Hosts share one port space: the cluster listens on the host's own address (its name, from
        # its /etc/hosts), as a provisioning step would configure it. Without Recommends: the
        # repository has them, but unpacking LLVM and locales would only make the test slower.
        ssh_ok(
            systemd_hosts, "h133",
            "mkdir -p /etc/postgresql-common/createcluster.d && "
            "echo 'listen_addresses = h133' > /etc/postgresql-common/createcluster.d/golive.conf && "
            "DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends install postgresql-15 "
            ">/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }",
        )
        output = ssh_ok(
            systemd_hosts, "h133",
            "cd / && systemctl is-active postgresql@15-main && su postgres -c \"psql -Atc 'show server_version_num'\" "
            "&& su postgres -c \"psql -Atc 'show listen_addresses'\" && su postgres -c \"psql -Atc 'show port'\"",
        )
        active, version, listen, port = output.split()
        assert active == "active" and version.startswith("15"), output
        assert listen == "h133"
        # Not always 5432: pg_createcluster takes the next free port when the machine's one port
        # space already has a PostgreSQL on 5432 (another host's, on any address).
        assert (h133.address, int(port)) in listening_sockets()
        for other in ("h131", "h132"):
            assert systemd_hosts.ssh(other, "test -e /usr/lib/postgresql/15/bin/postgres").returncode == 1
    finally:
        systemd_hosts.reset(["h133"])
    assert (h133.address, int(port)) not in listening_sockets()


# ------------------------------------------------------------------------------ reboot


def test_reboot_keeps_the_disk_and_starts_enabled_units(systemd_hosts):
    marker = uuid.uuid4().hex[:8]
    unit = f"golive-boot-{marker}.service"
    ssh_ok(
        systemd_hosts, "h131",
        f"cat > /etc/systemd/system/{unit} && systemctl daemon-reload && systemctl enable -q {unit} && "
        f"echo kept > /etc/golive-{marker} && echo gone > /run/golive-{marker}",
        input=b"[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    )
    leader_before = systemd_hosts.pid1("h131")
    try:
        systemd_hosts.reboot("h131")
        assert systemd_hosts.pid1("h131") != leader_before
        output = ssh_ok(
            systemd_hosts, "h131",
            f"cat /etc/golive-{marker}; test -e /run/golive-{marker} && echo run-kept || echo run-gone; "
            f"systemctl is-active {unit}; journalctl --list-boots | tail -n +2 | wc -l",
        )
        kept, run, active, boots = output.split()
        assert (kept, run, active) == ("kept", "run-gone", "active"), output
        assert int(boots) >= 2, output
        assert "rebooting" in systemd_hosts.console("h131", lines=200)
    finally:
        ssh_ok(systemd_hosts, "h131", f"systemctl disable -q {unit}; rm -f /etc/systemd/system/{unit} "
                                      f"/etc/golive-{marker}; systemctl daemon-reload")


# ------------------------------------------------------------------------------ sshd, keys, down


def test_stopped_sshd_refuses_connections_until_started(own_hosts):
    first, second = names(own_hosts)
    before = ssh_ok(own_hosts, first, "systemctl show -p MainPID --value systemd-journald")
    own_hosts.stop(first)
    assert own_hosts.status() == {first: False, second: True}
    assert b"Connection refused" in own_hosts.ssh(first, "true").stderr
    # The host itself keeps running: only its sshd stopped.
    assert own_hosts.exec(first, ["systemctl", "show", "-p", "MainPID", "--value", "systemd-journald"]).stdout == before
    own_hosts.start(first)
    assert ssh_ok(own_hosts, first, "hostname") == f"{first}\n"
    assert own_hosts.status() == {first: True, second: True}


def test_rekeyed_host_is_refused_by_strict_checking(own_hosts):
    first, second = names(own_hosts)
    known_before = Path(own_hosts.known_hosts).read_text()
    own_hosts.rekey(first)
    refused = own_hosts.ssh(first, "true")
    assert refused.returncode == 255 and b"Host key verification failed" in refused.stderr, refused.stderr
    assert Path(own_hosts.known_hosts).read_text() == known_before
    assert ssh_ok(own_hosts, second, "hostname") == f"{second}\n"
    # reset keeps the host's (new) key: the boot check verifies it against that key, not known_hosts.
    own_hosts.reset([first])
    assert own_hosts.ssh(first, "true").returncode == 255


def test_down_leaves_nothing_behind(own_hosts):
    first, second = names(own_hosts)
    ssh_ok(own_hosts, first, "setsid sleep 600 </dev/null >/dev/null 2>&1 & systemd-run --quiet sleep 600")
    own_hosts.exec(second, ["sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 &"], check=True)
    records = state_of(own_hosts)["hosts"]
    processes = host_processes(own_hosts)
    assert len(processes) >= 14, processes  # two of: supervisor, nspawn, systemd, journald, logind, dbus, sshd, sleeps
    assert what_is_left(records) != []
    own_hosts.down()
    nothing_left(records)
    assert not any(running(pid) for pid in processes)
    assert own_hosts.status() == {first: False, second: False} and not own_hosts.is_up()
    assert "exited with status 0" in own_hosts.console(first)  # powered off, not killed


def test_down_stops_a_host_whose_supervisor_and_nspawn_were_killed(own_hosts):
    first, _ = names(own_hosts)
    record = state_of(own_hosts)["hosts"][0]
    cgroup = _v2_root() / record["cgroup"]
    for part in ("shell", "nspawn/supervisor"):
        for pid in _cgroup_tree_procs(cgroup / part):
            os.kill(pid, 9)
    # The host runs on without them (nspawn's child keeps it), as after a crashed harness.
    assert ssh_ok(own_hosts, first, "systemctl is-system-running") == "running\n"
    records = state_of(own_hosts)["hosts"]
    own_hosts.down()
    nothing_left(records)
    assert "Shutting down" in own_hosts.journal(first, lines=20)  # powered off cleanly even so


def test_cli_up_status_exec_down(tmp_path):
    testhosts = [str(REPO / "scripts" / "testhosts"), "--systemd"]
    directory = ["--dir", str(tmp_path / "cli")]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*testhosts, *args], capture_output=True, text=True, timeout=600)

    up = cli("up", "1", *directory, "--net", NET, "--first", str(OWN_FIRST + 5))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"{NET}.{OWN_FIRST + 5}" in up.stdout
        status = json.loads(cli("status", *directory, "--json").stdout)
        assert [(h["name"], h["up"]) for h in status["hosts"]] == [(f"h{OWN_FIRST + 5}", True)]
        inside = cli("exec", f"h{OWN_FIRST + 5}", *directory, "--", "systemctl", "is-system-running")
        assert (inside.returncode, inside.stdout) == (0, "running\n"), inside.stderr
        assert "Startup finished" in cli("console", f"h{OWN_FIRST + 5}", *directory).stdout
    finally:
        down = cli("down", *directory)
    assert down.returncode == 0, down.stdout + down.stderr
    after = json.loads(cli("status", *directory, "--json").stdout)
    assert [h["up"] for h in after["hosts"]] == [False]
    wrong_kind = subprocess.run([str(REPO / "scripts" / "testhosts"), "status", *directory],
                                capture_output=True, text=True)
    assert wrong_kind.returncode == 1 and "add --systemd" in wrong_kind.stderr and "Traceback" not in wrong_kind.stderr


class BrokenSshHosts(SystemdHosts):
    """Hosts whose sshd drop-in has an option sshd refuses: they boot, ssh.service fails."""

    def _fresh_upper(self, record: dict) -> None:
        super()._fresh_upper(record)
        with open(Path(record["upper"], "etc/ssh/sshd_config.d/golive.conf"), "a") as drop_in:
            drop_in.write("NoSuchOption yes\n")


def test_a_host_that_does_not_come_up_is_reported_with_its_console_and_journal(tmp_path):
    hosts = BrokenSshHosts(tmp_path / "broken", net=NET, first=OWN_FIRST + 7)
    with pytest.raises(TestHostsError) as failed:
        hosts.up(1)
    message = str(failed.value)
    assert f"host h{OWN_FIRST + 7} ({NET}.{OWN_FIRST + 7})" in message, message
    assert "--- console" in message and "--- journal" in message, message
    assert "NoSuchOption" in message, message  # sshd's own complaint, from the host's journal
    # up() cleaned up after itself.
    nothing_left(state_of(hosts)["hosts"])
    assert not hosts.is_up()

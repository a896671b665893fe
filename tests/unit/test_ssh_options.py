"""How golive reads a host's SSH options: as OpenSSH does (the command line Ansible builds, then the
ssh_config file named), checked against OpenSSH itself (`ssh -G`, which prints the configuration it
would use), and every option golive cannot honour refused with exit 2, naming it and where it was
set - never dropped. (Through a real jump host: tests/integration/test_jump_host.py.)"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from golive.adapters.ssh_options import Resolver, ssh_g
from golive.core.model import Connection
from tests.conftest import run_golive

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH's client")

HOST = "app.example"
SOURCE = "ansible_ssh_common_args"


def resolve(tmp_path: Path, args: list[str], address: str = HOST, config: str = ""):
    connection = Connection(address=address, ssh_args=tuple(args), ssh_arg_sources=(SOURCE,) * len(args))
    route, problems = Resolver(tmp_path, config).route("h", connection, lambda variable: f"<{variable}>")
    assert problems == [], problems
    return route


def openssh(args: list[str], address: str = HOST, config: str = "/dev/null") -> dict[str, list[str]]:
    return ssh_g([*args, "-F", config], address)


def expanded(paths: list[str]) -> list[str]:
    return [os.path.expanduser(p) for p in paths]


# Command lines as Ansible builds them (its own options first, the inventory's after): what golive
# reads without OpenSSH's help must be what OpenSSH makes of them.
COMMAND_LINES = {
    "ansible's own": ["-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o", "Port=22",
                      "-o", 'IdentityFile="/keys/id deploy"', "-o", 'User="deploy"', "-o", "ConnectTimeout=10"],
    "-p then Port": ["-p", "1", "-o", "Port=2"],
    "Port then -p": ["-o", "Port=2", "-p", "1"],
    "-l then User": ["-l", "a", "-o", "User=b"],
    "User then -l": ["-o", "User=b", "-l", "a"],
    "attached values": ["-oPort=3", "-p4", "-lroot"],
    "Key Value form": ["-o", "Port 2200", "-o", "User  spaced"],
    "identity files accumulate": ["-i", "/k1", "-o", "IdentityFile=/k2", "-i", "/k3"],
    "two known_hosts files": ["-o", "UserKnownHostsFile=/kh/one /kh/two"],
    "HostName with %h": ["-o", "HostName=%h.internal"],
    "first HostName wins": ["-o", "HostName=first", "-o", "HostName=second"],
    "HostKeyAlias": ["-o", "HostKeyAlias=the-alias"],
    "ProxyJump chain": ["-o", "ProxyJump=jump@bastion:2200,inner"],
    "-J": ["-J", "root@bastion"],
    "ProxyCommand": ["-o", "ProxyCommand=nc -X connect %h %p"],
    "ProxyCommand none first": ["-o", "ProxyCommand=none", "-o", "ProxyJump=x"],
    "ConnectTimeout": ["-o", "ConnectTimeout=7"],
}


@pytest.mark.parametrize("args", COMMAND_LINES.values(), ids=COMMAND_LINES.keys())
def test_the_command_line_is_read_as_openssh_reads_it(tmp_path, args):
    route = resolve(tmp_path, args)
    theirs = openssh(args)
    first = route.jumps[0] if route.jumps else route.target
    assert route.target.address == theirs["hostname"][0]
    assert route.target.port == int(theirs["port"][0])
    assert route.target.user == theirs["user"][0]
    if "userknownhostsfile" in " ".join(args).lower():
        assert list(route.target.known_hosts_files) == theirs["userknownhostsfile"][0].split()
    explicit = [a for a in args if "identityfile" in a.lower()] + ["-i" for a in args if a == "-i"]
    if explicit:
        # OpenSSH lists a -i file only when it exists; ours exist or not, the order is the same
        assert [p for p in route.target.identity_files] == [
            a.split("=", 1)[1].strip('"') if "=" in a else args[i + 1]
            for i, a in enumerate(args) if a == "-i" or a.lower().startswith("identityfile")]
    assert route.target.host_key_alias == (theirs.get("hostkeyalias") or [""])[0]
    jump = (theirs.get("proxyjump") or [""])[0]
    assert ",".join(f"{j.user}@{j.address}:{j.port}" for j in route.jumps) == ",".join(
        _spec(spec) for spec in jump.split(",") if spec)
    if theirs.get("proxycommand"):
        assert route.proxy_command == theirs["proxycommand"][0].replace("%h", route.target.address).replace(
            "%p", str(route.target.port))
    elif not route.jumps:
        assert route.proxy_command == "" and first is route.target


def _spec(spec: str) -> str:
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    return f"{user or getpass.getuser()}@{host}:{port or 22}"


CONFIG = """# a client's bastion set-up
Host bastion
    HostName 10.9.0.2
    User jump
    Port 2201
Host app-*
    HostName %h.plant.internal
    User deploy
    IdentityFile ~/keys/plant
    ProxyJump bastion
Host app-2
    Port 2022
Host via-command
    ProxyCommand ssh -W %h:%p -l %r bastion
Host *
    ServerAliveInterval 30
    Include {include}
"""


def test_an_ssh_config_file_is_evaluated_by_openssh(tmp_path):
    extra = tmp_path / "extra.conf"
    extra.write_text("Host app-3\n    HostKeyAlias app-three\n")
    config = tmp_path / "plant.conf"
    config.write_text(CONFIG.format(include=extra))
    trust = ["-o", "UserKnownHostsFile=/kh/plant", "-o", "StrictHostKeyChecking=yes", "-i", "/keys/inventory"]
    route = resolve(tmp_path, [*trust, "-F", str(config)], address="app-2")
    assert (route.target.address, route.target.port, route.target.user) == ("app-2.plant.internal", 2022, "deploy")
    assert route.target.identity_files == ("/keys/inventory", os.path.expanduser("~/keys/plant"))
    # the jump host: its HostName alias, user and port from the file; the inventory's trust options
    assert [(j.address, j.port, j.user) for j in route.jumps] == [("10.9.0.2", 2201, "jump")]
    assert route.jumps[0].known_hosts_files == ("/kh/plant",)
    assert route.jumps[0].identity_files == ("/keys/inventory",)
    assert route.keepalive == 30 and route.config_file == str(config)
    included = resolve(tmp_path, [*trust, "-F", str(config)], address="app-3")
    assert included.target.host_key_alias == "app-three"
    command = resolve(tmp_path, [*trust, "-F", str(config)], address="via-command")
    assert command.proxy_command == f"ssh -W via-command:22 -l {getpass.getuser()} bastion"
    # golive.yml's ssh_config serves hosts whose ssh args name none
    assert resolve(tmp_path, trust, address="app-2", config=str(config)).target.port == 2022


def test_a_command_line_option_beats_the_config_file_as_in_openssh(tmp_path):
    config = tmp_path / "plant.conf"
    (tmp_path / "empty.conf").write_text("")
    config.write_text(CONFIG.format(include=tmp_path / "empty.conf"))
    route = resolve(tmp_path, ["-o", "Port=2999", "-o", "ProxyJump=none", "-F", str(config)], address="app-1")
    assert route.target.port == 2999 == int(openssh(["-o", "Port=2999"], "app-1", str(config))["port"][0])
    assert route.jumps == ()


def test_the_config_file_answer_is_cached_and_a_changed_file_read_again(tmp_path):
    from golive.adapters.ssh_options import ConfigCache

    config = tmp_path / "plant.conf"
    config.write_text("Host app\n    Port 2001\n")
    cache = ConfigCache(tmp_path / "cache")
    connection = Connection(address="app", ssh_args=("-F", str(config)), ssh_arg_sources=(SOURCE, SOURCE))
    assert Resolver(tmp_path, "", cache).route("h", connection, str)[0].target.port == 2001
    cache.save()
    assert (tmp_path / "cache" / "ssh-config.json").is_file()
    config.write_text("Host app\n    Port 2002\n")
    fresh = ConfigCache(tmp_path / "cache")
    assert Resolver(tmp_path, "", fresh).route("h", connection, str)[0].target.port == 2002


# -- refused, never dropped ---------------------------------------------------------------------------

MFG = "inventories/manufacturer"
CONNECTION = f"{MFG}/group_vars/all/connection.yml"
KH = "-o UserKnownHostsFile=/tmp/golive-testhosts/known_hosts -o StrictHostKeyChecking=yes"


def common_args(text: str):
    def apply(ws: Path) -> None:
        path = ws / CONNECTION
        path.write_text(path.read_text().replace(f"ansible_ssh_common_args: {KH}", f"ansible_ssh_common_args: {text}"))
    return apply


def add_variable(line: str, relative: str = CONNECTION):
    def apply(ws: Path) -> None:
        path = ws / relative
        path.write_text(path.read_text() + line + "\n")
    return apply


def ssh_config(text: str, named_by: str = "inventory"):
    def apply(ws: Path) -> None:
        (ws / "plant.conf").write_text(text)
        if named_by == "inventory":
            common_args(f"{KH} -F plant.conf")(ws)
        else:
            common_args("-o UserKnownHostsFile=/tmp/golive-testhosts/known_hosts")(ws)
            app = ws / "golive.yml"
            app.write_text(app.read_text() + "\nconnection:\n  ssh_config: plant.conf\n")
    return apply


def ansible_cfg(line: str):
    def apply(ws: Path) -> None:
        path = ws / "ansible.cfg"
        path.write_text(path.read_text().replace("ssh_args = ", f"ssh_args = {line} "))
    return apply


# (breaker, what the one message must say: the option and where it was set)
REFUSED = {
    "agent forwarding flag": (common_args(f"{KH} -A"), [r"-A", rf"{CONNECTION}:\d+"]),
    "ForwardAgent yes": (common_args(f"{KH} -o ForwardAgent=yes"), [r"ForwardAgent=yes", rf"{CONNECTION}:\d+"]),
    "a local forward": (common_args(f"{KH} -L 8080:localhost:80"), [r"-L 8080:localhost:80", rf"{CONNECTION}:\d+"]),
    "StrictHostKeyChecking no": (common_args("-o UserKnownHostsFile=/tmp/kh -o StrictHostKeyChecking=no"),
                                 [r"StrictHostKeyChecking=no", r"verifies every host key", rf"{CONNECTION}:\d+"]),
    "accept-new": (common_args(f"{KH} -o StrictHostKeyChecking=accept-new"), [r"accept-new"]),
    "host key checking off in the inventory": (add_variable("ansible_host_key_checking: false"),
                                               [r"StrictHostKeyChecking=no", r"ansible_host_key_checking"]),
    "host key checking off in ansible.cfg": (
        lambda ws: (ws / "ansible.cfg").write_text((ws / "ansible.cfg").read_text().replace(
            "host_key_checking = True", "host_key_checking = False")),
        [r"ansible\.cfg \[defaults\] host_key_checking", r"StrictHostKeyChecking=no"]),
    "a password": (add_variable("ansible_password: hunter2"), [r"ansible_password", r"keys only",
                                                               rf"{CONNECTION}:\d+"]),
    "a local connection": (add_variable("ansible_connection: local"), [r"ansible_connection: local", r"SSH only"]),
    "an ssh executable of its own": (add_variable("ansible_ssh_executable: /opt/ssh-wrapper"),
                                     [r"ansible_ssh_executable"]),
    "SendEnv": (common_args(f"{KH} -o SendEnv=LANG"), [r"SendEnv=LANG", r"not supported"]),
    "an unknown keyword": (common_args(f"{KH} -o NoSuchOption=1"), [r"nosuchoption", r"not supported"]),
    "a ProxyCommand token golive cannot expand": (common_args(f"{KH} -o 'ProxyCommand=nc %C'"),
                                                  [r"%C", r"ProxyCommand"]),
    "a host name in the ssh args": (common_args(f"{KH} bastion"), [r"'bastion'", r"not an ssh option"]),
    "a connection option in the sftp args": (add_variable('ansible_sftp_extra_args: "-o ProxyJump=x"'),
                                             [r"ansible_sftp_extra_args", r"ProxyJump"]),
    "agent forwarding in ansible.cfg": (ansible_cfg("-A"), [r"ansible\.cfg \[ssh_connection\] ssh_args", r"-A"]),
    "an ssh_config file that is not there": (common_args(f"{KH} -F missing.conf"), [r"missing\.conf",
                                                                                    r"does not exist"]),
    "a forward in the ssh_config file": (ssh_config("Host *\n    LocalForward 9000 localhost:80\n"),
                                         [r"plant\.conf:2", r"localforward"]),
    "no host key checking in the ssh_config file": (ssh_config("Host 127.*\n    StrictHostKeyChecking no\n",
                                                               named_by="golive.yml"),
                                                    [r"plant\.conf:2", r"StrictHostKeyChecking false"]),
    "a ProxyJump loop": (ssh_config("Host *\n    ProxyJump loop\n"), [r"loop", rf"{CONNECTION}:\d+"]),
    "golive.yml names a missing ssh_config": (
        lambda ws: (ws / "golive.yml").write_text((ws / "golive.yml").read_text()
                                                  + "\nconnection:\n  ssh_config: nowhere.conf\n"),
        [r"golive\.yml:\d+", r"connection\.ssh_config"]),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_golive_cannot_honour_is_refused_naming_the_option_and_where(name, offline_workspace):
    import re

    breaker, expected = REFUSED[name]
    breaker(offline_workspace)
    result = run_golive(offline_workspace, "validate", "manufacturer")
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    for pattern in expected:
        assert re.search(pattern, result.stderr), f"{pattern!r} not in:\n{result.stderr}"


def test_openssh_would_not_give_a_jump_host_the_command_lines_known_hosts_golive_does(tmp_path):
    """Why golive hands the Ansible engine an explicit ProxyCommand: OpenSSH's own ProxyJump
    passes a jump host no -o option (so not the inventory's known_hosts)."""
    from golive.adapters.ssh_options import openssh_options

    done = subprocess.run(["ssh", "-v", "-F", "/dev/null", "-o", "UserKnownHostsFile=/kh/inventory",
                           "-o", "ConnectTimeout=1", "-o", "ProxyJump=root@192.0.2.255:9", "10.255.255.1", "true"],
                          capture_output=True, text=True, timeout=60)
    implicit = next(line for line in done.stderr.splitlines() if "implicit ProxyCommand" in line)
    assert "/kh/inventory" not in implicit
    route = resolve(tmp_path, ["-o", "UserKnownHostsFile=/kh/inventory", "-i", "/keys/k",
                               "-o", "ProxyJump=root@192.0.2.255:9"], address="10.255.255.1")
    options = openssh_options(route)
    proxy = next(o for o in options if o.startswith("ProxyCommand="))
    assert "UserKnownHostsFile=/kh/inventory" in proxy and "StrictHostKeyChecking=yes" in proxy
    assert "IdentityFile=/keys/k" in proxy and "[10.255.255.1]:22" in proxy

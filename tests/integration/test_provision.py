"""golive provision on a real Debian 12 server booting systemd (the session's h131, mfg-stg-1 of the
example workspace), from a fresh host: real .deb packages from the hosts' local apt repository, a
system group and user, a directory with owner and mode, a file and a systemd unit rendered from
templates with the host's variables (a vault secret among them), the unit enabled and running.

Then: a second provision changes nothing and says so; --plan after a change by hand shows exactly
that change and changes nothing; a package that does not exist fails the host naming it (exit 3);
a vault secret never appears in anything golive prints. One provisioned host for the whole module
(it is reset at the end, so the other tests see a clean server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import VAULT_SECRETS, copy_workspace, run_golive

HOST, NAME = "h131", "mfg-stg-1"  # staging is one application host, the session's first systemd host

DECLARATION = """
provision:
  all:
    packages: [tree]
    groups:
      - {name: northwind, system: true}
    users:
      - {name: northwind, group: northwind, home: /var/lib/northwind, shell: /usr/sbin/nologin, system: true}
    directories:
      - {path: /srv/northwind, owner: northwind, group: northwind, mode: "0750"}
    files:
      - {src: provision/worker.env.j2, dest: /etc/northwind/worker.env, owner: root, group: northwind, mode: "0640"}
    services:
      - {name: northwind-worker, src: provision/northwind-worker.service.j2, enabled: true, running: true}
    deploy: [provision/extra.py]
  scada_gateway:
    packages: [jq]
"""
# The user's own pyinfra deploy file: its operations run after golive's items, with the host's variables.
EXTRA = """from pyinfra import host
from pyinfra.operations import files

files.line(name="motd names the company", path="/etc/motd", line=f"Provisioned for {host.data.company_name}")
"""
UNIT = """[Unit]
Description=Northwind worker for {{ company_name }}

[Service]
User=northwind
EnvironmentFile=/etc/northwind/worker.env
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""
ENV_FILE = "DB_HOST={{ db_host }}\nDB_PASSWORD={{ db_password }}\n"
ITEMS = ["package tree", "package jq", "group northwind", "user northwind", "directory /srv/northwind",
         "file /etc/northwind/worker.env", "service northwind-worker.service",
         "deploy provision/extra.py: motd names the company"]


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory, systemd_hosts):
    """The workspace (staging on h131) and the first provision's result, from a fresh server."""
    systemd_hosts.reset([HOST])
    ws = copy_workspace(tmp_path_factory.mktemp("provision") / "ws", systemd_hosts, None)
    hosts_file = ws / "inventories" / "manufacturer" / "hosts.yml"
    net = re.escape(systemd_hosts.net)
    hosts_file.write_text(re.sub(rf"({net})\.1([123])\b", r"\1.13\2", hosts_file.read_text()))
    (ws / "golive.yml").write_text((ws / "golive.yml").read_text() + DECLARATION)
    templates = ws / "config_templates" / "northwind" / "provision"
    templates.mkdir()
    (templates / "northwind-worker.service.j2").write_text(UNIT)
    (templates / "worker.env.j2").write_text(ENV_FILE)
    (ws / "provision").mkdir()
    (ws / "provision" / "extra.py").write_text(EXTRA)
    outputs: list[str] = []
    first = run_golive(ws, "provision", "manufacturer", "staging", "--json")
    outputs.append(first.output)
    yield ws, first, outputs
    systemd_hosts.reset([HOST])


def on_host(hosts, command: str) -> str:
    result = hosts.ssh(HOST, command)
    assert result.returncode == 0, f"{command}: {result.stdout.decode()}{result.stderr.decode()}"
    return result.stdout.decode().strip()


def host_state(hosts) -> str:
    """What provisioning manages on the host, with the files' change times and the worker's PID:
    equal before and after a run means the run changed nothing."""
    return on_host(hosts, "dpkg-query -W -f '${Package} ${Status}\\n' tree jq; getent group northwind; "
                          "getent passwd northwind; stat -c '%n %U %G %a %Z' /srv/northwind "
                          "/etc/northwind/worker.env /etc/systemd/system/northwind-worker.service; "
                          "systemctl is-enabled northwind-worker; systemctl is-active northwind-worker; "
                          "systemctl show -p MainPID --value northwind-worker; stat -c '%Z' /etc/motd")


def items_of(result) -> dict[str, dict]:
    (row,) = result.json()["hosts"]
    assert row["host"] == NAME, row
    return {item["item"]: item for item in row["items"]}


def test_provision_builds_the_environment_from_a_fresh_server(provisioned, systemd_hosts):
    _, first, _ = provisioned
    assert first.returncode == 0, first.output
    items = items_of(first)
    assert list(items) == ITEMS, items
    assert {name: item["status"] for name, item in items.items()} == dict.fromkeys(ITEMS, "changed"), items
    # real packages from the local repository, installed by apt
    assert on_host(systemd_hosts, "dpkg-query -W -f '${Status}' tree jq") == \
        "install ok installedinstall ok installed"
    assert on_host(systemd_hosts, "jq -n 1+1") == "2"
    assert on_host(systemd_hosts, "getent group northwind").startswith("northwind:x:")
    user = on_host(systemd_hosts, "getent passwd northwind").split(":")
    group_id = on_host(systemd_hosts, "getent group northwind").split(":")[2]
    assert (user[3], user[5], user[6]) == (group_id, "/var/lib/northwind", "/usr/sbin/nologin"), user
    assert int(user[2]) < 1000, f"not a system user: {user}"
    assert on_host(systemd_hosts, "stat -c '%U %G %a' /srv/northwind") == "northwind northwind 750"
    # the file and the unit rendered with the host's variables, the secret from the vault
    assert on_host(systemd_hosts, "stat -c '%U %G %a' /etc/northwind/worker.env") == "root northwind 640"
    env_file = on_host(systemd_hosts, "cat /etc/northwind/worker.env")
    assert any(f"DB_PASSWORD={secret}" == env_file.splitlines()[1] for secret in VAULT_SECRETS), \
        "the vault secret was not rendered into the file"
    assert "Description=Northwind worker for Huaxin" in on_host(
        systemd_hosts, "cat /etc/systemd/system/northwind-worker.service")
    assert on_host(systemd_hosts, "systemctl is-enabled northwind-worker") == "enabled"
    assert on_host(systemd_hosts, "systemctl is-active northwind-worker") == "active"
    assert on_host(systemd_hosts, "ps -o user= -p $(systemctl show -p MainPID --value northwind-worker)") \
        == "northwind"
    assert "Provisioned for Huaxin" in on_host(systemd_hosts, "cat /etc/motd")  # the user's own operation


def test_a_second_provision_changes_nothing_and_says_so(provisioned, systemd_hosts):
    ws, _, outputs = provisioned
    before = host_state(systemd_hosts)
    again = run_golive(ws, "provision", "manufacturer", "staging")
    outputs.append(again.output)
    assert again.returncode == 0, again.output
    assert f"  {NAME}: no change ({len(ITEMS)} items as declared)" in again.stdout, again.output
    as_json = run_golive(ws, "provision", "manufacturer", "staging", "--json", check=0)
    outputs.append(as_json.output)
    assert {item["status"] for item in items_of(as_json).values()} == {"unchanged"}, as_json.output
    assert as_json.json()["hosts"][0]["status"] == "unchanged"
    assert host_state(systemd_hosts) == before


def test_plan_shows_exactly_a_change_by_hand_and_changes_nothing(provisioned, systemd_hosts):
    ws, _, outputs = provisioned
    on_host(systemd_hosts, "chmod 0700 /srv/northwind")
    before = host_state(systemd_hosts)
    plan = run_golive(ws, "provision", "manufacturer", "staging", "--plan", "--json")
    outputs.append(plan.output)
    assert plan.returncode == 0, plan.output
    changing = {name: item for name, item in items_of(plan).items() if item["status"] != "unchanged"}
    assert changing == {"directory /srv/northwind": {"item": "directory /srv/northwind", "status": "would_change",
                                                     "commands": ["chmod 750 /srv/northwind"]}}, plan.output
    assert host_state(systemd_hosts) == before  # the plan changed nothing
    text = run_golive(ws, "provision", "manufacturer", "staging", "--plan", check=0)
    outputs.append(text.output)
    assert f"  {NAME}: would change 1 of {len(ITEMS)} items" in text.stdout, text.output
    assert "    directory /srv/northwind: would change\n      chmod 750 /srv/northwind" in text.stdout, text.output
    # and the provision puts back exactly that
    fixed = run_golive(ws, "provision", "manufacturer", "staging", "--json", check=0)
    outputs.append(fixed.output)
    assert [n for n, i in items_of(fixed).items() if i["status"] == "changed"] == ["directory /srv/northwind"]
    assert on_host(systemd_hosts, "stat -c '%a' /srv/northwind") == "750"


def test_plan_shows_a_changed_template_as_a_diff_and_a_secret_file_without_one(provisioned, systemd_hosts):
    ws, _, outputs = provisioned
    templates = ws / "config_templates" / "northwind" / "provision"
    before = host_state(systemd_hosts)
    (templates / "northwind-worker.service.j2").write_text(UNIT.replace("sleep infinity", "sleep 86400"))
    (templates / "worker.env.j2").write_text(ENV_FILE + "WORKERS={{ workers }}\n")
    try:
        plan = run_golive(ws, "provision", "manufacturer", "staging", "--plan", "--json")
    finally:
        (templates / "northwind-worker.service.j2").write_text(UNIT)
        (templates / "worker.env.j2").write_text(ENV_FILE)
    outputs.append(plan.output)
    assert plan.returncode == 0, plan.output
    changing = {name: item for name, item in items_of(plan).items() if item["status"] != "unchanged"}
    assert list(changing) == ["file /etc/northwind/worker.env", "service northwind-worker.service"], plan.output
    unit = changing["service northwind-worker.service"]
    assert [line for line in unit["diff"] if line[:1] in "+-" and line[:3] not in ("+++", "---")] == \
        ["-ExecStart=/bin/sleep infinity", "+ExecStart=/bin/sleep 86400"], unit
    assert "systemctl daemon-reload" in unit["commands"] and "systemctl restart northwind-worker.service" in \
        unit["commands"], unit
    assert changing["file /etc/northwind/worker.env"]["diff"] == [
        "(the content of /etc/northwind/worker.env differs; not shown: it holds a secret)"], plan.output
    assert host_state(systemd_hosts) == before


def test_a_package_that_does_not_exist_fails_the_host_naming_it(provisioned, systemd_hosts):
    ws, _, outputs = provisioned
    app = ws / "golive.yml"
    good = app.read_text()
    app.write_text(good.replace("packages: [tree]", "packages: [tree, golive-no-such-package]"))
    try:
        failed = run_golive(ws, "provision", "manufacturer", "staging")
    finally:
        app.write_text(good)
    outputs.append(failed.output)
    assert failed.returncode == 3, failed.output
    assert f"{NAME}: package golive-no-such-package: " in failed.stdout, failed.output
    assert "Unable to locate package golive-no-such-package" in failed.stdout, failed.output
    assert "not run (an earlier item failed)" in failed.stdout, failed.output
    assert on_host(systemd_hosts, "dpkg-query -W -f '${Status}' tree") == "install ok installed"


def test_a_unit_that_fails_to_start_fails_the_host_with_its_journal(provisioned, systemd_hosts):
    """Last of the tests that change the host: it leaves a failed unit behind (the module resets it)."""
    ws, _, outputs = provisioned
    (ws / "config_templates" / "northwind" / "provision" / "broken.service.j2").write_text(
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo northwind-broken cannot start >&2; exit 1'\n")
    app = ws / "golive.yml"
    good = app.read_text()
    app.write_text(good.replace("    deploy: [provision/extra.py]\n", "      - {name: northwind-broken, src: "
                                "provision/broken.service.j2, enabled: false}\n    deploy: [provision/extra.py]\n"))
    try:
        failed = run_golive(ws, "provision", "manufacturer", "staging", "--json")
    finally:
        app.write_text(good)
    outputs.append(failed.output)
    assert failed.returncode == 3, failed.output
    (row,) = failed.json()["hosts"]
    assert row["status"] == "failed", row
    assert row["error"].startswith(f"{NAME}: service northwind-broken.service: "), row
    assert "its journal ends: " in row["error"] and "northwind-broken cannot start" in row["error"], row
    statuses = {item["item"]: item["status"] for item in row["items"]}
    assert statuses["service northwind-worker.service"] == "unchanged", statuses
    assert statuses["deploy provision/extra.py: motd names the company"] == "not_run", statuses


def test_hosts_with_different_items_each_get_their_own_in_parallel(provisioned, systemd_hosts):
    """production: mfg-prod-1 (h132) is in scada_gateway and gets jq too, mfg-prod-2 (h133) is not.
    pyinfra's API mode shares an operation's entry between the hosts' n-th operations: each host
    must still get exactly its own items."""
    ws, _, outputs = provisioned
    try:
        first = run_golive(ws, "provision", "manufacturer", "production", "--json")
        outputs.append(first.output)
        assert first.returncode == 0, first.output
        rows = {row["host"]: row for row in first.json()["hosts"]}
        assert {name: [item["item"] for item in row["items"]] for name, row in rows.items()} == {
            "mfg-prod-1": ITEMS, "mfg-prod-2": [item for item in ITEMS if item != "package jq"]}, first.output
        assert {row["status"] for row in rows.values()} == {"changed"}, first.output
        jq = {name: systemd_hosts.ssh(name, "dpkg-query -W -f '${Status}' jq").stdout.decode()
              for name in ("h132", "h133")}
        assert jq == {"h132": "install ok installed", "h133": ""}, jq
        for name in ("h132", "h133"):
            assert systemd_hosts.ssh(name, "systemctl is-active northwind-worker").stdout.decode().strip() == \
                "active", name
        again = run_golive(ws, "provision", "manufacturer", "production")
        outputs.append(again.output)
        assert again.returncode == 0, again.output
        assert "  mfg-prod-1: no change (8 items as declared)\n  mfg-prod-2: no change (7 items as declared)" \
            in again.stdout, again.output
    finally:
        systemd_hosts.reset(["h132", "h133"])


def test_a_vault_secret_never_appears_in_what_provision_prints(provisioned):
    _, _, outputs = provisioned
    assert outputs, "no provision ran"
    for output in outputs:
        for secret in VAULT_SECRETS:
            assert secret not in output


def test_a_bad_declaration_stops_before_any_host_with_file_and_line(offline_workspace: Path):
    """The offline workspace's hosts do not exist: reaching for one would be exit 3, not 2."""
    app = offline_workspace / "golive.yml"
    text = app.read_text() + DECLARATION.replace('mode: "0750"', 'mode: "rwx"')
    app.write_text(text)
    line = text.splitlines().index(next(x for x in text.splitlines() if '"rwx"' in x)) + 1
    result = run_golive(offline_workspace, "provision", "manufacturer", "staging")
    assert result.returncode == 2, result.output
    assert f"golive.yml:{line}: provision.all.directories[0].mode must be a quoted octal string" in result.stderr, \
        result.output
    # a template that is not there is the same kind of mistake
    app.write_text(app.read_text().replace('mode: "rwx"', 'mode: "0750"'))
    result = run_golive(offline_workspace, "provision", "manufacturer", "staging")
    assert result.returncode == 2, result.output
    assert "template 'provision/worker.env.j2' not found" in result.stderr, result.output


def test_the_ansible_engine_does_not_provision_yet(offline_workspace: Path):
    result = run_golive(offline_workspace, "provision", "manufacturer", "staging", "--engine", "ansible")
    assert result.returncode == 2, result.output
    assert "not supported yet" in result.stderr, result.output

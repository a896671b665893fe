"""golive.yml's `provision:` section: read into items (adapters/provisiondef.py), every mistake one
problem naming golive.yml's line (exit 2, before any host); and which items a host gets, in which
order (core/provision.py host_items)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from golive.adapters.appdef import load_app_definition
from golive.core.errors import BadInput
from golive.core.provision import (
    DeployFile,
    Directory,
    File,
    Group,
    GroupProvision,
    Package,
    Provision,
    Service,
    User,
    host_items,
)
from tests.conftest import REPO, run_golive

GOOD = """
provision:
  all:
    packages: [tree, "jq=1.6-2.1"]
    groups:
      - northwind
      - {name: northwind-ops, system: true}
    users:
      - {name: northwind, group: northwind, groups: [northwind-ops], home: /var/lib/northwind,
         shell: /usr/sbin/nologin, system: true}
    directories:
      - {path: /srv/northwind, owner: northwind, group: northwind, mode: "0750"}
      - {path: /srv/northwind/a, mode: "750"}
    files:
      - {src: provision/worker.env.j2, dest: /etc/northwind/worker.env, owner: root, group: northwind, mode: "0640"}
    services:
      - {name: northwind-worker, src: provision/worker.service.j2}
      - {name: cron.service, enabled: false, running: false}
    deploy: [provision/extra.py]
  database:
    packages: [postgresql-15]
"""


@pytest.fixture
def ws(tmp_path) -> Path:
    shutil.copy2(REPO / "golive.yml", tmp_path / "golive.yml")
    shutil.copytree(REPO / "config_templates", tmp_path / "config_templates")
    templates = tmp_path / "config_templates" / "northwind" / "provision"
    templates.mkdir()
    for name in ("worker.env.j2", "worker.service.j2"):
        (templates / name).write_text("# {{ company_name }}\n")
    (tmp_path / "provision").mkdir()
    (tmp_path / "provision" / "extra.py").write_text("from pyinfra.operations import server\n")
    return tmp_path


def declare(ws: Path, text: str) -> str:
    """golive.yml with this text appended; returns the whole file."""
    whole = (REPO / "golive.yml").read_text() + text
    (ws / "golive.yml").write_text(whole)
    return whole


def line_of(whole: str, marker: str) -> int:
    """The last line with the marker (the declaration is appended: golive.yml's comments come first)."""
    return max(number for number, line in enumerate(whole.splitlines(), start=1) if marker in line)


def problems(ws: Path) -> list[str]:
    with pytest.raises(BadInput) as error:
        load_app_definition(ws)
    return [str(p) for p in error.value.problems]


def test_a_declaration_reads_into_items_each_with_its_line(ws):
    whole = declare(ws, GOOD)
    provision = load_app_definition(ws).provision
    assert provision is not None
    assert provision.group_names == ("all", "database")
    at = lambda marker: f"golive.yml:{line_of(whole, marker)}"  # noqa: E731
    everything = provision.groups[0].items
    assert everything == (
        Package("tree", "", at("packages: [tree")), Package("jq", "1.6-2.1", at("packages: [tree")),
        Group("northwind", False, at("    groups:")), Group("northwind-ops", True, at("northwind-ops, system")),
        User("northwind", group="northwind", groups=("northwind-ops",), home="/var/lib/northwind",
             shell="/usr/sbin/nologin", system=True, where=at("{name: northwind, group")),
        Directory("/srv/northwind", "northwind", "northwind", 0o750, at("path: /srv/northwind,")),
        Directory("/srv/northwind/a", mode=0o750, where=at("/srv/northwind/a")),
        File("provision/worker.env.j2", "/etc/northwind/worker.env", "root", "northwind", 0o640,
             at("worker.env.j2")),
        Service("northwind-worker", "provision/worker.service.j2", True, True, at("northwind-worker")),
        Service("cron.service", "", False, False, at("cron.service")),
        DeployFile("provision/extra.py", at("deploy:")),
    )
    assert everything[-3].unit_path == "/etc/systemd/system/northwind-worker.service"
    assert everything[-2].unit == "cron.service"
    assert provision.groups[1].items == (Package("postgresql-15", "", at("postgresql-15")),)


def test_no_section_and_an_empty_section_provision_nothing(ws):
    declare(ws, "")
    assert load_app_definition(ws).provision is None
    declare(ws, "\nprovision:\n")
    assert load_app_definition(ws).provision is None


BAD = [
    ("provision: [tree]\n", "provision: [tree]", "'provision' must be a mapping of inventory group names"),
    ("provision:\n  all:\n    pakages: [tree]\n", "pakages", "unknown key provision.all.pakages (known: packages"),
    ("provision:\n  all: [tree]\n", "all: [tree]", "provision.all must be a mapping of packages"),
    ("provision:\n  'web servers':\n    packages: [tree]\n", "web servers", "is not an inventory group name"),
    ("provision:\n  all:\n    packages: tree\n", "packages: tree", "provision.all.packages must be a list"),
    ("provision:\n  all:\n    packages: [Tree!]\n", "Tree!", "packages[0] 'Tree!' is not a package name"),
    ("provision:\n  all:\n    packages: [\"tree=\"]\n", "tree=", "packages[0] 'tree=' is not a package name"),
    ("provision:\n  all:\n    packages: [tree, tree]\n", "tree, tree", "provision.all: package tree is declared twice"),
    ("provision:\n  all:\n    groups: [{name: Ops}]\n", "Ops", "provision.all.groups[0].name 'Ops' is not a user "
                                                             "or group name"),
    ("provision:\n  all:\n    users:\n      - {group: x}\n", "group: x", "provision.all.users[0] needs 'name'"),
    ("provision:\n  all:\n    users:\n      - {name: x, homedir: /x}\n", "homedir",
     "unknown key provision.all.users[0].homedir (known: group, groups, home, name, shell, system)"),
    ("provision:\n  all:\n    users:\n      - {name: x, system: yes please}\n", "yes please",
     "provision.all.users[0].system must be true or false"),
    ("provision:\n  all:\n    users:\n      - {name: x, groups: web}\n", "groups: web",
     "provision.all.users[0].groups must be a list of group names"),
    ("provision:\n  all:\n    directories:\n      - {path: srv/x}\n", "srv/x",
     "provision.all.directories[0].path 'srv/x' is not a plain absolute path"),
    ("provision:\n  all:\n    directories:\n      - {path: /srv/../etc}\n", "/srv/../etc",
     "is not a plain absolute path"),
    ("provision:\n  all:\n    directories:\n      - {path: /srv/x, mode: rwx}\n", "mode: rwx",
     "provision.all.directories[0].mode must be a quoted octal string like \"0750\", got 'rwx'"),
    ("provision:\n  all:\n    directories:\n      - {path: /srv/x, mode: \"99999\"}\n", "99999",
     "mode must be a quoted octal"),
    ("provision:\n  all:\n    directories:\n      - {path: /srv/x, mode: 0750}\n", "0750",
     "mode must be a quoted octal string like \"0750\", got 488 (YAML reads an unquoted mode as a number)"),
    ("provision:\n  all:\n    directories:\n      - {path: /srv/x, mode: 750}\n", "750",
     "mode must be a quoted octal string like \"0750\", got 750"),
    ("provision:\n  all:\n    directories:\n      - /srv/x\n", "directories:",
     "provision.all.directories[0] must be a mapping like {path: ...}"),
    ("provision:\n  all:\n    files:\n      - {src: provision/worker.env.j2}\n", "worker.env.j2",
     "provision.all.files[0] needs 'dest'"),
    ("provision:\n  all:\n    files:\n      - {src: provision/nothere.j2, dest: /etc/x}\n", "nothere",
     "provision.all.files[0].src: template 'provision/nothere.j2' not found in config_templates/northwind/"),
    ("provision:\n  all:\n    files:\n      - {src: ../golive.yml, dest: /etc/x}\n", "../golive.yml",
     "must be a file name under config_templates/northwind/"),
    ("provision:\n  all:\n    services:\n      - {name: 'my unit'}\n", "my unit", "is not a systemd unit name"),
    ("provision:\n  all:\n    services:\n      - {name: x, enabled: 'yes'}\n", "enabled: 'yes'",
     "provision.all.services[0].enabled must be true or false"),
    ("provision:\n  all:\n    deploy: [provision/missing.py]\n", "missing.py",
     "provision.all.deploy[0]: provision/missing.py is not a file of the workspace"),
    ("provision:\n  all:\n    deploy: [/etc/passwd]\n", "/etc/passwd", "must be a pyinfra deploy file (.py) of the "
                                                                        "workspace"),
]


@pytest.mark.parametrize(("text", "marker", "message"), BAD, ids=[message[:40] for _, _, message in BAD])
def test_a_mistake_is_one_problem_naming_golive_yml_and_its_line(ws, text, marker, message):
    whole = declare(ws, "\n" + text)
    found = problems(ws)
    assert len(found) == 1, found
    assert found[0].startswith(f"golive.yml:{line_of(whole, marker)}: "), found
    assert message in found[0], found


def test_every_mistake_is_reported_at_once(ws):
    declare(ws, "\nprovision:\n  all:\n    packages: [Bad!]\n    directories:\n      - {path: x, mode: rwx}\n")
    assert len(problems(ws)) == 3


def test_a_mistake_exits_2_before_any_host(offline_workspace):
    """The offline workspace's hosts do not run: trying one would exit 3."""
    whole = (offline_workspace / "golive.yml").read_text() + "\nprovision:\n  all:\n    packages: [Bad!]\n"
    (offline_workspace / "golive.yml").write_text(whole)
    for verb in (("provision", "manufacturer", "staging"), ("provision", "manufacturer", "staging", "--plan"),
                 ("validate",)):
        result = run_golive(offline_workspace, *verb)
        assert result.returncode == 2, result.output
        assert f"golive.yml:{line_of(whole, 'Bad!')}: provision.all.packages[0] 'Bad!'" in result.stderr, \
            result.output


def test_a_group_no_host_is_in_is_refused_before_any_host_and_by_validate(offline_workspace):
    whole = (offline_workspace / "golive.yml").read_text() + "\nprovision:\n  databse:\n    packages: [tree]\n"
    (offline_workspace / "golive.yml").write_text(whole)
    for verb in (("provision", "manufacturer", "staging"), ("validate",)):
        result = run_golive(offline_workspace, *verb)
        assert result.returncode == 2, result.output
        assert f"golive.yml:{line_of(whole, 'databse')}: provision.databse: no host of any customer is in an " \
               f"inventory group 'databse'" in result.stderr, result.output
    # a group only another customer has is no mistake: manufacturer's scada_gateway, for the retailer
    (offline_workspace / "golive.yml").write_text(whole.replace("databse", "scada_gateway"))
    result = run_golive(offline_workspace, "validate")
    assert result.returncode == 0, result.output


# -- which items a host gets -------------------------------------------------------------------------

def section(group: str, *items) -> GroupProvision:
    return GroupProvision(group, f"golive.yml:{group}", tuple(items))


def test_a_host_gets_all_and_its_groups_in_dependency_order():
    provision = Provision((
        section("all", Service("w", where="a1"), Package("tree", where="a2"), Directory("/srv", where="a3")),
        section("database", User("pg", where="d1"), Package("postgresql-15", where="d2"), Group("pg", where="d3")),
        section("web", Package("nginx", where="w1")),
    ))
    chosen = host_items(provision, ("database", "production"))
    assert chosen.problems == ()
    assert [item.key for item in chosen.items] == ["package tree", "package postgresql-15", "group pg", "user pg",
                                                    "directory /srv", "service w.service"]
    assert [item.key for item in host_items(provision, ()).items] == ["package tree", "directory /srv",
                                                                      "service w.service"]


def test_an_item_declared_twice_the_same_way_is_applied_once_and_differently_is_refused():
    provision = Provision((
        section("all", Directory("/srv", mode=0o750, where="golive.yml:3")),
        section("web", Directory("/srv", mode=0o750, where="golive.yml:9")),
        section("database", Directory("/srv", mode=0o700, where="golive.yml:12")),
    ))
    assert host_items(provision, ("web",)).items == (Directory("/srv", mode=0o750, where="golive.yml:3"),)
    chosen = host_items(provision, ("web", "database"))
    assert chosen.problems == (("golive.yml:12", "provision: directory /srv is declared differently at "
                                                 "golive.yml:3, and a host is in both groups"),)

"""golive.yml's settings for any product: the health contract (`health.expect`), `timeouts:`,
`ansible:` and the inventory variables golive itself reads. Each is validated (a mistake exits 2,
naming golive.yml's line), has the documented default, and is written, commented, into every
workspace `golive init` makes."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from golive.adapters.appdef import load_app_definition
from golive.core.errors import BadInput
from golive.core.model import GOLIVE_VARIABLES, HEALTH_FIELDS, Timeouts
from golive.flows.init import SKELETON
from tests.conftest import REPO, run_golive

APPDEF = REPO / "deploy" / "golive" / "adapters" / "appdef.py"
DOCS = REPO / "docs" / "golive-yml.md"


def with_settings(ws: Path, text: str) -> Path:
    (ws / "golive.yml").write_text((ws / "golive.yml").read_text() + text)
    return ws


@pytest.fixture
def fresh(tmp_path) -> Path:
    run_golive(tmp_path, "init", str(tmp_path / "ws"), "--name", "acme", check=0)
    return tmp_path / "ws"


def problems(ws: Path) -> list[str]:
    with pytest.raises(BadInput) as error:
        load_app_definition(ws)
    return [str(p) for p in error.value.problems]


def without(ws: Path, section: str) -> None:
    """golive.yml without one top-level section (its comment lines stay)."""
    lines = (ws / "golive.yml").read_text().splitlines(keepends=True)
    kept, skipping = [], False
    for line in lines:
        if re.match(rf"^{section}:", line):
            skipping = True
            continue
        if skipping and line[:1] not in (" ", "\n"):
            skipping = False
        if not skipping:
            kept.append(line)
    (ws / "golive.yml").write_text("".join(kept))


def test_defaults_when_left_out(fresh):
    for section in ("timeouts", "ansible"):
        without(fresh, section)
    text = (fresh / "golive.yml").read_text().replace("  expect: []\n", "")
    (fresh / "golive.yml").write_text(text)
    app = load_app_definition(fresh)
    assert app.health.expect == () and app.timeouts == Timeouts()
    assert (app.ansible.playbooks, app.ansible.roles) == ("", "")
    assert Timeouts() == Timeouts(hook=600, restart=120, status=10, begin=120, install=900, activate=1800)


def test_expect_names_only_what_golive_can_compare(fresh):
    text = (fresh / "golive.yml").read_text()
    (fresh / "golive.yml").write_text(text.replace("  expect: []", "  expect: [version, version, release]"))
    assert load_app_definition(fresh).health.expect == ("version", "release")
    (fresh / "golive.yml").write_text(text.replace("  expect: []", "  expect: [version, uptime]"))
    line = text.splitlines().index("  expect: []") + 1
    assert problems(fresh) == [f"golive.yml:{line}: health.expect: 'uptime' is not something golive can compare "
                               f"(known: {', '.join(HEALTH_FIELDS)})"]
    (fresh / "golive.yml").write_text(text.replace("  expect: []", "  expect: {version: 1}"))
    assert "health.expect must be a list of version, config_hash, release" in problems(fresh)[0]


@pytest.mark.parametrize(("line", "message"), [
    ("  hook: -1", "timeouts.hook must be a number of seconds above 0, got -1"),
    ("  restart: 0", "timeouts.restart must be a number of seconds above 0, got 0"),
    ("  status: soon", "timeouts.status must be an integer or a number, got 'soon'"),
    ("  activate: true", "timeouts.activate must be an integer or a number, got a boolean"),
    ("  forever: 1", "unknown key timeouts.forever"),
])
def test_timeouts_are_validated_with_their_line(fresh, line, message):
    lines = (fresh / "golive.yml").read_text().splitlines()
    start = lines.index("timeouts:")
    key = line.split(":")[0]
    index = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(key + ":")), start + 1)
    lines[index:index + (key != "  forever")] = [line]
    (fresh / "golive.yml").write_text("\n".join(lines) + "\n")
    found = problems(fresh)
    assert len(found) == 1 and found[0].startswith(f"golive.yml:{index + 1}: ") and message in found[0], found


def test_timeouts_are_read(fresh):
    text = (fresh / "golive.yml").read_text()
    text = text.replace("  hook: 600 ", "  hook: 5.5 ").replace("  begin: 120", "  begin: 7")
    (fresh / "golive.yml").write_text(text)
    app = load_app_definition(fresh)
    assert (app.timeouts.hook, app.timeouts.begin, app.timeouts.install) == (5.5, 7, 900)


def test_ansible_folders_must_be_the_workspace_s(fresh):
    text = (fresh / "golive.yml").read_text()
    (fresh / "golive.yml").write_text(text.replace('  playbooks: ""', '  playbooks: "../elsewhere"'))
    assert "ansible.playbooks must be a folder of the workspace" in problems(fresh)[0]
    (fresh / "golive.yml").write_text(text.replace('  playbooks: ""', '  playbooks: "my-playbooks"'))
    assert "ansible.playbooks: my-playbooks/ is not a folder of the workspace" in problems(fresh)[0]
    (fresh / "my-playbooks").mkdir()
    (fresh / "my-playbooks" / "deploy.yml").write_text("---\n")
    assert problems(fresh) == [problems(fresh)[0]] and "my-playbooks/rollback.yml is missing" in problems(fresh)[0]
    (fresh / "my-playbooks" / "rollback.yml").write_text("---\n")
    (fresh / "my-roles").mkdir()
    (fresh / "golive.yml").write_text(text.replace('  playbooks: ""', '  playbooks: "my-playbooks"')
                                      .replace('  roles: ""', '  roles: my-roles'))
    app = load_app_definition(fresh)
    assert (app.ansible.playbooks, app.ansible.roles) == ("my-playbooks", "my-roles")


def test_the_variables_golive_reads_are_in_every_schema(fresh):
    declared = {v.name: v for v in load_app_definition(fresh).variables}
    for builtin in GOLIVE_VARIABLES:
        assert declared[builtin.name].type == builtin.type
    text = (fresh / "golive.yml").read_text()
    without_it = text.replace("  min_free_disk_mb: {type: int, required: false}\n", "")
    (fresh / "golive.yml").write_text(without_it)
    assert load_app_definition(fresh).var("min_free_disk_mb").type == "int"  # declared by golive
    (fresh / "golive.yml").write_text(without_it + "  min_free_disk_mb: {type: str}\n")
    assert "variables.min_free_disk_mb.type must be int: golive itself reads this variable" in problems(fresh)[0]
    # ... and the schema holds the inventory to it
    (fresh / "golive.yml").write_text(text)
    main = fresh / "inventories" / "example" / "group_vars" / "all" / "main.yml"
    main.write_text(main.read_text().replace("min_free_disk_mb: 200", "min_free_disk_mb: plenty"))
    result = run_golive(fresh, "validate", check=2)
    assert "variable 'min_free_disk_mb' must be int" in result.stderr


# -- every setting is written, commented, into a new workspace ------------------------------------

NESTED = {"s3": ("release_store", "s3")}  # sections inside a section: where they are in golive.yml


def accepted_keys() -> dict[str, set[str]]:
    """What appdef accepts: the top-level settings and, per section, its keys (read from its source)."""
    tree = ast.parse(APPDEF.read_text())
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_TOP_KEYS" for t in node.targets):
            found[""] = {e.value for e in node.value.elts}
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "section" and len(node.args) == 3 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[2], ast.Set):
            found[node.args[1].value] = {e.value for e in node.args[2].elts}
    timeouts = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", "") == "_TIMEOUT_KEYS" for t in n.targets))
    found["timeouts"] = {e.value for e in timeouts.value.elts}
    return found


def test_a_new_workspace_sets_every_setting_and_comments_it():
    skeleton = (SKELETON / "golive.yml").read_text()
    data = yaml.safe_load(skeleton)
    keys = accepted_keys()
    assert set(data) == keys[""], "golive.yml of `golive init` must show every top-level setting"
    for section, wanted in keys.items():
        if section:
            settings = data
            for part in NESTED.get(section, (section,)):
                settings = settings[part]
            assert set(settings) == wanted, f"{section}: every key, set to its default"
    lines = skeleton.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(\w+):", line)
        if match:  # each top-level setting has a comment just above it
            assert lines[index - 1].startswith("#"), f"golive.yml: {match.group(1)} has no comment"
    for field in fields(Timeouts):
        default = field.default if field.default % 1 else int(field.default)
        assert re.search(rf"^  {field.name}: {default} +# \w", skeleton, re.MULTILINE), f"timeouts.{field.name}"


def test_every_setting_and_timeout_is_in_the_reference():
    reference = DOCS.read_text()
    for section, wanted in accepted_keys().items():
        for key in wanted:
            name = ".".join((*NESTED.get(section, (section,)), key)) if section else key
            assert f"`{name}`" in reference, f"docs/golive-yml.md does not document `{name}`"
    for field in fields(Timeouts):
        assert f"`timeouts.{field.name}`" in reference
    for variable in GOLIVE_VARIABLES:
        assert f"`{variable.name}`" in (REPO / "docs" / "inventory.md").read_text()

"""No hidden contracts between golive and a product: every inventory variable golive itself reads
is declared (golive.core.model.GOLIVE_VARIABLES, or one of Ansible's connection variables) and
documented (docs/inventory.md); every timeout of a step is a golive.yml setting that both engines
use (docs/golive-yml.md `timeouts:`), none a number in the code.

The scans read golive's source (and the generic checks every workspace gets), so a new
`host.vars.get("x")` or `timeout=30` anywhere fails here until it is declared and documented.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

import yaml

from golive.core.model import GOLIVE_VARIABLES, AppDefinition, EnvironmentSpec, Timeouts
from golive.core.plan import INSTALL, DesiredRelease, HostPlan
from golive.core.release import RenderedConfig
from golive.flows import steps
from golive.flows.init import skeleton_files
from tests.conftest import REPO

PACKAGE = REPO / "deploy" / "golive"
ROLE_TASKS = REPO / "roles" / "golive" / "tasks"
INVENTORY_DOC = REPO / "docs" / "inventory.md"
# Ansible's own connection variables, which golive maps (adapters/inventory.connection_for) and documents.
ANSIBLE_VARIABLES = {"ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user",
                     "ansible_ssh_user", "ansible_ssh_private_key_file", "ansible_private_key_file",
                     "ansible_python_interpreter", "ansible_become", "ansible_ssh_common_args",
                     "ansible_ssh_extra_args", "ansible_connection", "ansible_ssh_executable"}
# (an AgentAnswer's `vars` are the host agent's, not the inventory's)
READS = re.compile(r"""(?<!answer\.)(?:\bvars|\bvariables)(?:\.get\(\s*|\[\s*)["']([A-Za-z_][A-Za-z0-9_]*)["']""")
# Numbers that bound something other than a product's step, each with its reason.
NOT_A_STEP = {
    ("flows/checkplugin.py", "subprocess.run"): "closing the plain pytest run's own ssh control masters",
}


def golive_sources() -> dict[str, str]:
    found = {str(p.relative_to(PACKAGE)): p.read_text() for p in PACKAGE.rglob("*.py")
             if "agent" not in p.parts and "bench" not in p.parts and p.name != "testhosts.py"}
    # the generic checks every workspace gets from `golive init`
    for target, source in skeleton_files().items():
        if target.suffix == ".py":
            found[str(target)] = source.read_text()
    return found


def variables_read() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, text in golive_sources().items():
        for variable in READS.findall(text):
            found.setdefault(variable, set()).add(name)
    return found


def test_every_inventory_variable_golive_reads_is_declared_and_documented():
    declared = {v.name for v in GOLIVE_VARIABLES} | ANSIBLE_VARIABLES
    read = variables_read()
    assert "min_free_disk_mb" in read and "ansible_become" in read  # the scan sees what it should
    undeclared = {v: sorted(where) for v, where in read.items() if v not in declared}
    assert undeclared == {}, "golive reads these inventory variables without declaring them"
    documented = INVENTORY_DOC.read_text()
    missing = sorted(v for v in declared if f"`{v}`" not in documented)
    assert missing == [], "docs/inventory.md does not document these"


def test_the_scan_would_catch_a_variable_read_behind_golive_s_back():
    sample = 'listen = host.vars.get("listen_address")\nport = golive.vars["http_port"]\n'
    assert READS.findall(sample) == ["listen_address", "http_port"]


def numeric_timeouts(path: Path) -> list[str]:
    """`timeout=<number>` arguments and module-level *_TIMEOUT = <number> constants in one file."""
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "timeout" and isinstance(keyword.value, ast.Constant):
                    where = (str(path.relative_to(PACKAGE)), ast.unparse(node.func))
                    if where not in NOT_A_STEP:
                        found.append(f"{where[0]}:{node.lineno}: {ast.unparse(node)[:80]}")
        numbers = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, (int, float))]
        if isinstance(node, ast.Assign) and any("TIMEOUT" in getattr(t, "id", "") for t in node.targets) and numbers:
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_step_has_a_timeout_of_its_own_in_the_controller():
    offenders = [f for d in ("flows", "engines") for p in sorted((PACKAGE / d).glob("*.py"))
                 for f in numeric_timeouts(p)]
    assert offenders == [], "every timeout of a step is golive.yml's (app.timeouts)"


def test_every_timeout_of_the_role_is_golive_yml_s():
    offenders = []
    for path in sorted(ROLE_TASKS.glob("*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            value = task.get("timeout")
            if value is not None and not re.search(r"golive_timeouts\.\w+|golive_health\.timeout", str(value)):
                offenders.append(f"{path.name}: {task.get('name')}: timeout {value!r}")
    assert offenders == []
    hook = yaml.safe_load((ROLE_TASKS / "hook.yml").read_text())[0]
    assert "golive_timeouts.hook" in hook["timeout"]


def _tasks(entries):
    for entry in entries:
        if isinstance(entry, dict):
            yield entry
            for key in ("block", "rescue", "always"):
                yield from _tasks(entry.get(key) or [])


def app(timeouts: Timeouts) -> AppDefinition:
    return AppDefinition(name="acme", root="/opt/acme", config_dir="/etc/acme",
                         environments=(EnvironmentSpec("staging"),), templates=(), timeouts=timeouts)


def test_the_host_agent_gets_golive_yml_s_timeouts_in_every_request():
    custom = replace(Timeouts(), hook=7, restart=8, status=9)
    definition = app(custom)
    desired = DesiredRelease("1.0-00000000", "1.0", "acme-1.0.tar.gz", "0" * 64, RenderedConfig("h1", ()))
    plan = HostPlan("h1", INSTALL, ("install",), None, "1.0-00000000", "first deploy")
    run = steps.RunContext("deploy", "c", "staging", "op", "ctl", 1, "1", "t")
    batches = [steps.activate_batch(run, definition, plan, desired, {"before_cutover": "x", "after_cutover": "y",
                                                                     "on_rollback": "z"}, {}, "h1"),
               steps.rollback_batch(run, definition, {}, False, "h1"),
               steps.begin_batch(run, definition, desired, "h1")]
    every = [s for b in batches for part in ("steps", "on_failure", "always") for s in b.get(part, [])]
    by_op = {}
    for step in every:
        by_op.setdefault(step["op"], []).append(step)
    # a first install runs no on_rollback hook (there is nothing to go back to): it is withdrawn instead
    assert {s["timeout"] for s in by_op["hook"]} == {7} and len(by_op["hook"]) == 3
    assert {s["timeout"] for s in by_op["restart"]} == {8} and len(by_op["restart"]) == 4
    assert {s["timeout"] for s in by_op["withdraw"]} == {8} and len(by_op["withdraw"]) == 1
    assert {s["status_timeout"] for s in by_op["state"] + by_op["finish_if_unchanged"]} == {9}

"""A systemd unit's commands are the same with both engines: the host agent's (UNIT_RESTART,
UNIT_REPORT) and the role's (vars/main.yml), so that either engine restarts a unit its start limit
stopped and reports a unit that does not serve in the same words."""

from __future__ import annotations

import yaml

from golive.agent import hostagent
from tests.conftest import REPO

ROLE_VARS = yaml.safe_load((REPO / "roles" / "golive" / "vars" / "main.yml").read_text())


def test_the_role_runs_the_agents_unit_commands():
    assert ROLE_VARS["golive_unit_restart"] == hostagent.UNIT_RESTART
    assert ROLE_VARS["golive_unit_report"] == hostagent.UNIT_REPORT


def test_a_restart_clears_the_start_limit_before_it_restarts():
    command = hostagent.unit_command("northwind", "restart")
    assert command.index("systemctl reset-failed northwind") < command.index("systemctl restart northwind")
    assert "journalctl -u northwind" in command.split("||", 1)[1]  # only when the restart failed
    assert hostagent.unit_command("northwind", "stop") == "systemctl stop northwind"

"""A kept release is checked before a deploy switches back to it, with either engine: a hand edit
of its config or code made while another release was live is planned entry by entry (`golive plan`
says which files it rewrites, as for the live release) and repaired before the switch, never made
live, and never leaves the release marked bad (issue 14, defect 1)."""

from __future__ import annotations

import pytest

from tests.conftest import live_release_problems, run_golive
from tests.integration.drift_support import on_host

STG, NAME = 11, "mfg-stg-1"
KEPT = "/opt/northwind/releases/1.1-*"
EDITS = (f"echo '# tuned by hand' >> {KEPT}/config/northwind.ini"
         f" && printf X | dd of=$(echo {KEPT})/northwind/plant.py bs=1 seek=20 conv=notrunc 2>/dev/null")


def host_result(result, name: str = NAME) -> dict:
    return next(h for h in result.json()["hosts"] if h["host"] == name)


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_an_edited_kept_release_is_repaired_before_the_switch(workspace, test_hosts, engine):
    for version in ("1.0", "1.1"):
        run_golive(workspace, "deploy", "manufacturer", "staging", "--release", version, check=0)
    run_golive(workspace, "rollback", "manufacturer", "staging", check=0)
    on_host(test_hosts, STG, EDITS)

    plan = run_golive(workspace, "plan", "manufacturer", "staging", "--release", "1.1", "--json", check=0)
    planned = host_result(plan)
    assert planned["action"] == "switch", planned
    assert planned["steps"][:3] == ["lock", "repair", "hooks"], planned
    assert [(r["path"], r["action"]) for r in planned["repairs"]] == \
        [("config/northwind.ini", "restore"), ("northwind/plant.py", "restore")], planned["repairs"]
    text = run_golive(workspace, "plan", "manufacturer", "staging", "--release", "1.1", check=0).output
    assert "restore config/northwind.ini (content)" in text and "repaired before the switch" in text, text

    deployed = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", engine,
                          "--json", check=0)
    assert host_result(deployed)["status"] == "deployed", deployed.output
    assert "tuned by hand" not in on_host(test_hosts, STG, "cat /opt/northwind/current/config/northwind.ini")
    assert live_release_problems(test_hosts, STG) == []
    # what the switch left is exactly the release: nothing more to do, by either engine's measure
    again = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", engine,
                       "--json", check=0)
    assert host_result(again)["status"] == "unchanged", again.output
    assert run_golive(workspace, "plan", "manufacturer", "staging", "--release", "1.1", "--json",
                      check=0).json()["hosts"][0]["action"] == "unchanged"

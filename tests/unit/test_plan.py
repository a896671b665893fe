"""Facts in, steps out: the deploy planner on JSON fixtures (the same function plan and deploy use)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golive.core.plan import DesiredRelease, HostFacts, plan_host
from golive.core.release import RenderedConfig, RenderedFile, release_id, run_settings_hash

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "plan").glob("*.json"))


def desired_from(data: dict) -> DesiredRelease:
    files = tuple(RenderedFile(f["dest"], f["content"].encode(), int(f["mode"], 8), f.get("secret", False))
                  for f in data["files"])
    config = RenderedConfig("h", files)
    return DesiredRelease(release_id(data["version"], config.hash, run_settings_hash({}, {}, {})), data["version"],
                          f"northwind-{data['version']}.tar.gz", data["sha256"], config, data.get("release_files", {}))


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_plan_fixture(fixture):
    case = json.loads(fixture.read_text())
    desired = desired_from(case["desired"])
    facts = dict(case["facts"])
    facts["releases"] = [dict(r, id=r["id"].replace("$desired", desired.release)) for r in facts.get("releases", [])]
    if facts.get("current") == "$desired":
        facts["current"] = desired.release
    plan = plan_host("h", HostFacts.from_agent(facts), desired)
    assert plan.action == case["expect"]["action"]
    assert list(plan.steps) == case["expect"]["steps"]
    assert sorted((c.dest, c.change) for c in plan.file_changes) == sorted(map(tuple, case["expect"]["files"]))
    # a repair says entry by entry what it does, in the order the host does it (parents first)
    assert [[r.path, r.action] for r in plan.repairs] == case["expect"].get("repairs", [])
    for change in plan.file_changes:
        assert (change.diff == "") == change.secret or change.change == "removed"


def test_secret_file_changes_never_carry_a_diff():
    case = json.loads((Path(__file__).parent / "fixtures" / "plan" / "install_over_previous.json").read_text())
    desired = desired_from(case["desired"])
    plan = plan_host("h", HostFacts.from_agent(case["facts"]), desired)
    secret = [c for c in plan.file_changes if c.secret]
    assert secret and all(c.diff == "" for c in secret)

"""How a release runs (golive.yml's service, health and hook settings, rendered) is part of its id,
with either engine (issue 14, defect 2): a deploy that failed on a wrong health check is fixed by
fixing golive.yml, and the next deploy of the same version is a new release, verified with the fixed
check; and both engines name a release alike, so one engine's deploy is the other's `unchanged`."""

from __future__ import annotations

import pytest

from tests.conftest import health_retries, live_release_problems, live_version, run_golive

STG, NAME = 11, "mfg-stg-1"
GOOD_URL = '/health"'
WRONG_URL = '/no-such-health"'


def host_result(result, name: str = NAME) -> dict:
    return next(h for h in result.json()["hosts"] if h["host"] == name)


def health_path(workspace, old: str, new: str) -> None:
    app = workspace / "golive.yml"
    text = app.read_text()
    assert text.count(old) == 1, f"{app}: no single {old!r}"
    app.write_text(text.replace(old, new))


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_a_fixed_health_check_takes_effect_on_the_next_deploy_of_the_same_version(workspace, test_hosts, engine):
    health_retries(workspace, 3)  # the wrong check fails sooner
    health_path(workspace, GOOD_URL, WRONG_URL)
    failed = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", "--engine", engine,
                        "--json", check=3)
    first = host_result(failed)
    assert first["status"] != "deployed", failed.output

    health_path(workspace, WRONG_URL, GOOD_URL)
    plan = host_result(run_golive(workspace, "plan", "manufacturer", "staging", "--release", "1.0", "--json",
                                  check=0))
    assert plan["action"] not in ("unchanged", "repair") and plan["to_release"] != first["to_release"], plan
    fixed = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", "--engine", engine,
                       "--json", check=0)
    result = host_result(fixed)
    assert result["status"] == "deployed" and result["to_release"] != first["to_release"], fixed.output
    assert result["to_release"].startswith("1.0-") and live_version(test_hosts, STG) == "1.0"
    assert live_release_problems(test_hosts, STG) == []


@pytest.mark.parametrize("first,second", [("pyinfra", "ansible"), ("ansible", "pyinfra")])
def test_both_engines_name_the_release_alike(workspace, first, second):
    """With a hook set (its rendered text is part of the id): one engine's deploy is `unchanged` by
    the plan (golive's own id) and by a deploy with the other engine."""
    app = workspace / "golive.yml"
    text = app.read_text()
    assert text.count('after_cutover: ""') == 1
    app.write_text(text.replace('after_cutover: ""', 'after_cutover: "echo {{ company_name | quote }} >/dev/null"'))
    deployed = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", first,
                          "--json", check=0)
    assert host_result(deployed)["status"] == "deployed", deployed.output
    plan = run_golive(workspace, "plan", "manufacturer", "staging", "--release", "1.1", "--json", check=0)
    assert host_result(plan)["action"] == "unchanged", plan.output
    again = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", second,
                       "--json", check=0)
    assert host_result(again)["status"] == "unchanged", again.output
    assert host_result(again)["live_release"] == host_result(deployed)["to_release"]

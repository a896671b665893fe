"""The application reaches its database with the credentials golive rendered, at the schema its live
release expects. Skipped for a release deployed without a database (golive.yml has no `database:`
section, so its metadata names no schema version). golive check also checks the environment's
database host itself: its last backup exists and reads back."""

import json

import pytest


def _live_schema(host, golive):
    meta = json.loads(host.check_output('cat %s/.golive/releases/"$(basename "$(readlink %s/current)")".json',
                                        golive.root, golive.root) or "{}")
    if "schema_version" not in meta:
        pytest.skip("the live release was deployed without a database")
    return meta["schema_version"]


def test_the_database_answers_with_the_rendered_credentials(host, golive, health):
    _live_schema(host, golive)
    state = health.get("database", "(not reported at /health)")
    assert state == "ok" or str(state).startswith("incompatible"), (
        f"{golive.health_url}: the service cannot use its database ({state}): check database.connection in "
        f"golive.yml, the password in the vault, and that the database server runs")


def test_the_database_is_at_the_schema_the_live_release_expects(host, golive, health):
    expected = _live_schema(host, golive)
    state = health.get("database", "")
    assert not str(state).startswith("incompatible"), f"{golive.health_url}: {state}"
    if expected:
        assert (health.get("schema_version") or "") >= expected, (
            f"the database is at schema {health.get('schema_version')}, older than {expected}, which release "
            f"{golive.current} was deployed with: were its migrations undone by hand?")

"""A value absent on both sides is not a difference, and an absent value is shown as "(not set)",
never as Python's `None` (golive.core.drift.shown_value, is_difference).

Absence takes three forms in a fingerprint: a missing key, None, an empty string. Each field drift
compares is set absent on both sides, in every pair of forms, and must give no finding; set absent
on one side only, it is a difference shown "(not set)". Before the fix a production host that never
had a deploy reported `systemd_unit: (not set) -> (not set)` (staging's "" against nothing) and
`mode: 0644 -> None`.
"""

from __future__ import annotations

import copy
import itertools
import re

import pytest

from golive.core import drift
from tests.unit.test_drift_core import compare, fingerprint

MISSING = object()
FORMS = {"missing": MISSING, "None": None, "empty": ""}


def put(container: dict, key: str, value: object) -> None:
    if value is MISSING:
        container.pop(key, None)
    else:
        container[key] = value


# field -> (the place in a fingerprint that holds it, its key, a present value, the finding's kind and subject)
FIELDS = {
    "service definition": (lambda fp: fp["release"]["meta"].setdefault("service", {}), "systemd_unit",
                           "northwind.service", "service", "systemd_unit"),
    "platform fact": (lambda fp: fp["platform"], "locale", "C.UTF-8", "platform", "locale"),
    "package": (lambda fp: fp["packages"], "tzdata", "2025b-0+deb12u2", "package", "tzdata"),
    "config file mode": (lambda fp: fp["tree"]["entries"]["config/northwind.ini"], "mode", "0644",
                         "permission", "northwind.ini mode"),
    "config file owner": (lambda fp: fp["tree"]["entries"]["config/features.json"], "owner", "root",
                          "permission", "features.json owner"),
    "unit file": (lambda fp: fp["service"].setdefault("unit_files", {}), "/etc/systemd/system/northwind.service",
                  "ab" * 32, "service", "unit file /etc/systemd/system/northwind.service"),
}
# production's own tree is not compared with the workspace here: the environments are
DESIRED = {"mfg-prod-1": None, "mfg-stg-1": None}


def lines(report: drift.DriftReport) -> list[str]:
    return drift.describe(report) + [drift.finding_line(f) for f in report.findings + report.expected]


def pair_with(field: str, staging_value: object, production_value: object) -> drift.DriftReport:
    where, key = FIELDS[field][0], FIELDS[field][1]
    staging, production = fingerprint("mfg-stg-1"), fingerprint("mfg-prod-1")
    put(where(staging), key, staging_value)
    put(where(production), key, production_value)
    return compare(staging, production, desired=DESIRED)


def about(report: drift.DriftReport, field: str) -> list[drift.Finding]:
    kind, subject = FIELDS[field][3], FIELDS[field][4]
    return [f for f in report.findings if f.kind == kind and f.subject == subject]


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize(("staging_form", "production_form"), list(itertools.product(FORMS, FORMS)))
def test_a_value_absent_on_both_sides_is_no_difference(field, staging_form, production_form):
    report = pair_with(field, FORMS[staging_form], FORMS[production_form])
    assert about(report, field) == [], lines(report)
    assert not [f for f in report.findings if f.expected_value == f.actual_value == drift.NOT_SET], lines(report)


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("absent_on", ["staging", "production"])
def test_a_value_absent_on_one_side_is_a_difference_shown_not_set(field, form, absent_on):
    present = FIELDS[field][2]
    report = pair_with(field, FORMS[form] if absent_on == "staging" else present,
                       FORMS[form] if absent_on == "production" else present)
    found = about(report, field)
    assert len(found) == 1, lines(report)
    shown = (found[0].expected_value, found[0].actual_value)
    assert drift.NOT_SET in shown and (present in shown or present[:16] in shown), shown
    assert not any(re.search(r"\bNone\b", line) for line in lines(report)), lines(report)


def never_deployed(fp: dict) -> dict:
    """A production host prepared for golive that never had a deploy, as the collector reports it."""
    fresh = copy.deepcopy(fp)
    fresh.update(release={"id": None, "link_target": None, "exists": False, "dir": None, "meta": None},
                 releases=[], tree=None, ledger={"exists": False}, lock=None, ports=[],
                 service={"defined": False, "running": None},
                 config={"links": {d: {"type": "missing"} for d in ("northwind.ini", "features.json", "secrets.env")},
                         "config_dir": None})
    return fresh


def test_a_production_host_that_never_had_a_deploy_shows_no_none_and_no_identical_values():
    report = compare(production=never_deployed(fingerprint("mfg-prod-1")), desired={"mfg-prod-1": None})
    assert report.findings, "nothing deployed is still a difference"
    for f in report.findings:
        assert f.expected_value != f.actual_value, drift.finding_line(f)
        assert None not in (f.expected_value, f.actual_value), drift.finding_line(f)
    assert not any(re.search(r"\bNone\b", line) for line in lines(report)), lines(report)
    assert ("service", "systemd_unit") not in {(f.kind, f.subject) for f in report.findings}


def test_a_finding_made_elsewhere_with_none_is_still_shown_not_set():
    f = drift.Finding(drift.ENVIRONMENT, "permission", "secrets.env mode", ("mfg-prod-1",), "0600", None, "medium",
                      False, "the config file's mode differs between the environments", ("mfg-stg-1",))
    assert "0600 -> (not set)" in drift.finding_line(f) and "None" not in drift.finding_line(f)

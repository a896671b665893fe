"""golive.core.drift: fingerprints in, findings out.

The two fingerprints in fixtures/drift/ were collected by golive.agent.collector from a staging and a
production host of the example customer, both freshly deployed with release 1.0 (the release
directory cut to three code files, with its config/, shared links and the directory itself; then
written in the collector's current form: a `tree` of entries by lstat, the time zone's data). Each
test changes one thing and checks that exactly that is reported, with the right kind, where its
cause is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from golive.core import drift
from golive.core.drift import Counterpart, DesiredFile, DesiredHost, Expectation, HostState, Value
from golive.core.redact import MASK

FIXTURES = Path(__file__).parent / "fixtures" / "drift"
TODAY = date(2026, 11, 25)
ROOT = "/opt/northwind"
EXPECTATIONS = {
    "db_host": Expectation("db_host", "environment", "each environment has its own database server"),
    "listen_address": Expectation("listen_address", "host", "each host serves on its own address"),
}


def fingerprint(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


SHARED = ("data", "logs", "run")


def desired_for(fp: dict, files: tuple[DesiredFile, ...] | None = None) -> DesiredHost:
    """What the workspace wants: what was deployed (the fixtures are fresh deploys); `files` replaces
    the rendered config files."""
    meta = fp["release"]["meta"]
    entries = fp["tree"]["entries"]
    files = files or tuple(DesiredFile(f["dest"], f["sha256"], int(f["mode"], 8), f["secret"],
                                       f"{ROOT}/current/config/{f['dest']}", entries[f"config/{f['dest']}"]["size"])
                           for f in meta["config_files"])
    code = {p: {k: v for k, v in e.items() if k not in ("owner", "group")} for p, e in entries.items()
            if p != "." and p.split("/")[0] not in ("config", *SHARED)}
    config = {f.dest: {"sha256": f.sha256, "size": f.size, "mode": f"{f.mode:04o}"} for f in files}
    tree = drift.release_tree(code, config, SHARED, meta["artifact_sha256"])
    return DesiredHost(meta["version"], meta["id"], meta["config_hash"], files, tree, 8080)


def entries(fp: dict) -> dict:
    return fp["tree"]["entries"]


def value(text: str, origin: str = "", secret: bool = False) -> Value:
    return Value(f"digest-of-{text}", MASK if secret else text, origin, secret)


def variables(**overrides: str) -> dict[str, Value]:
    base = {"company_name": "Huaxin", "log_level": "info", "db_host": "db-staging", "listen_address": "10.0.0.1"}
    base.update(overrides)
    return {k: value(v, f"inventories/manufacturer/group_vars/{k}.yml:1") for k, v in base.items()}


def pair(target_vars: dict | None = None, source_vars: dict | None = None, **files) -> Counterpart:
    rendered = {"northwind.ini": "ini-prod", "features.json": "flags", "secrets.env": "secret"}
    return Counterpart("mfg-prod-1", "mfg-stg-1",
                       target_vars or variables(db_host="db-prod", listen_address="10.0.0.2"),
                       source_vars or variables(),
                       files=files.get("files", rendered),
                       files_as_source=files.get("as_source", {**rendered, "northwind.ini": "ini-staging"}),
                       files_declared_only=files.get("declared_only", rendered),
                       uses={"northwind.ini": frozenset({"log_level", "db_host", "listen_address", "company_name"}),
                             "features.json": frozenset({"feature_flags"}), "secrets.env": frozenset({"db_password"})})


def compare(staging: dict | None = None, production: dict | None = None, counterpart: Counterpart | None = None,
            expectations: dict | None = None, desired: dict | None = None) -> drift.DriftReport:
    """Compare the fixtures; `desired` overrides what the workspace wants for a host (None: cannot say)."""
    staging = staging or fingerprint("mfg-stg-1")
    production = production or fingerprint("mfg-prod-1")
    wants = {"mfg-stg-1": desired_for(fingerprint("mfg-stg-1")), "mfg-prod-1": desired_for(fingerprint("mfg-prod-1")),
             **(desired or {})}
    hosts = {
        "mfg-stg-1": HostState("mfg-stg-1", "staging", staging, None, wants["mfg-stg-1"]),
        "mfg-prod-1": HostState("mfg-prod-1", "production", production, None, wants["mfg-prod-1"]),
    }
    return drift.compare(hosts, [counterpart or pair()], EXPECTATIONS if expectations is None else expectations,
                         "staging", "production", TODAY)


def only(report: drift.DriftReport) -> drift.Finding:
    assert len(report.findings) == 1, [drift.finding_line(f) for f in report.findings]
    return report.findings[0]


def test_freshly_deployed_pair_has_no_drift_and_lists_the_declared_differences():
    report = compare()
    assert report.findings == () and not report.drift
    expected = {f.subject: f for f in report.expected}
    assert set(expected) == {"db_host", "listen_address"}
    assert expected["db_host"].reason == "each environment has its own database server"
    assert expected["db_host"].files == ("northwind.ini",)
    assert (expected["db_host"].expected_value, expected["db_host"].actual_value) == ("db-staging", "db-prod")
    # a per-host difference is one line, not one per host
    assert expected["listen_address"].actual_value == "each host its own"


def test_a_hand_edited_config_file_is_one_host_finding():
    production = fingerprint("mfg-prod-1")
    entries(production)["config/northwind.ini"]["sha256"] = "0" * 64
    finding = only(compare(production=production))
    assert (finding.scope, finding.kind, finding.subject, finding.hosts) == \
        ("host", "config", "northwind.ini", ("mfg-prod-1",))
    assert finding.severity == "high" and "edited on the host" in finding.reason


def test_config_the_workspace_renders_differently_now_is_not_deployed_yet():
    desired = desired_for(fingerprint("mfg-prod-1"))
    newer = tuple(replace(f, sha256="1" * 64) if f.dest == "features.json" else f for f in desired.files)
    finding = only(compare(desired={"mfg-prod-1": desired_for(fingerprint("mfg-prod-1"), newer)}))
    assert finding.kind == "config" and finding.severity == "medium" and "not deployed yet" in finding.reason


def test_a_config_link_replaced_by_a_copy_is_reported():
    production = fingerprint("mfg-prod-1")
    production["config"]["links"]["northwind.ini"] = {"type": "file", "sha256": "x", "mode": "0644"}
    finding = only(compare(production=production))
    assert (finding.kind, finding.subject) == ("config", "northwind.ini link")
    assert finding.actual_value == "an edited copy (x)" and "reads what golive did not write" in finding.reason


@pytest.mark.parametrize("dest", ["northwind.ini", "secrets.env"])
def test_a_faithful_copy_of_a_config_file_is_reported_as_a_copy_only(dest):
    production = fingerprint("mfg-prod-1")
    same = entries(production)[f"config/{dest}"]["sha256"]
    production["config"]["links"][dest] = {"type": "file", "sha256": same, "mode": "0644"}
    finding = only(compare(production=production))
    assert (finding.subject, finding.actual_value) == (f"{dest} link", "a regular file")
    assert "other content" not in finding.reason


def test_an_edited_copy_of_a_secret_file_never_shows_its_digest():
    production = fingerprint("mfg-prod-1")
    production["config"]["links"]["secrets.env"] = {"type": "file", "sha256": "f00d" * 16, "mode": "0600"}
    finding = only(compare(production=production))
    assert finding.actual_value == f"an edited copy ({MASK})" and "f00d" not in str(finding)


def test_a_patched_code_file_is_reported_against_the_artifact():
    production = fingerprint("mfg-prod-1")
    entries(production)["northwind/plant.py"]["sha256"] = "f" * 64
    finding = only(compare(production=production))
    assert (finding.scope, finding.kind, finding.subject) == ("host", "code_file", "northwind/plant.py")
    assert finding.actual_value == "f" * 16


def test_without_a_manifest_code_files_are_compared_between_the_environments():
    production = fingerprint("mfg-prod-1")
    entries(production)["VERSION"]["sha256"] = "e" * 64
    no_manifest = {}
    for name in ("mfg-stg-1", "mfg-prod-1"):
        desired = desired_for(fingerprint(name))
        config = {f.dest: {"sha256": f.sha256, "size": f.size, "mode": f"{f.mode:04o}"} for f in desired.files}
        no_manifest[name] = replace(desired, tree=drift.release_tree(None, config, SHARED))
    finding = only(compare(production=production, desired=no_manifest))
    assert (finding.scope, finding.kind, finding.subject, finding.counterparts) == \
        ("environment", "code_file", "VERSION", ("mfg-stg-1",))


def test_a_secret_file_opened_to_others_is_a_high_permission_finding():
    production = fingerprint("mfg-prod-1")
    entries(production)["config/secrets.env"]["mode"] = "0644"
    finding = only(compare(production=production))
    assert (finding.kind, finding.subject, finding.severity) == ("permission", "secrets.env mode", "high")
    assert (finding.expected_value, finding.actual_value) == ("0600", "0644")


def test_an_owner_change_is_a_permission_finding():
    production = fingerprint("mfg-prod-1")
    entries(production)["config/features.json"]["owner"] = "nobody"
    finding = only(compare(production=production))
    assert (finding.kind, finding.subject, finding.actual_value) == ("permission", "features.json owner", "nobody")


def test_a_stopped_service_is_one_finding_and_its_closed_port_is_not_repeated():
    production = fingerprint("mfg-prod-1")
    production["service"] = {"defined": True, "running": False, "exit_code": 3, "health": {"error": "refused"}}
    production["ports"] = [p for p in production["ports"] if p["port"] != 8080]
    finding = only(compare(production=production))
    assert (finding.scope, finding.kind, finding.subject) == ("host", "service", "state")


def test_a_service_still_serving_an_old_release_is_reported():
    production = fingerprint("mfg-prod-1")
    production["service"]["health"]["report"]["release"] = "0.9-deadbeef"
    finding = only(compare(production=production))
    assert (finding.kind, finding.subject, finding.actual_value) == ("service", "serving", "0.9-deadbeef")


def test_current_switched_outside_golive_contradicts_the_ledger():
    production = fingerprint("mfg-prod-1")
    production["ledger"]["live"]["release"] = "0.9-deadbeef"
    finding = only(compare(production=production))
    assert (finding.kind, finding.subject, finding.expected_value) == ("release", "current", "0.9-deadbeef")


def test_an_undeclared_variable_is_drift_with_where_it_is_set_and_the_files_it_changes():
    target = variables(db_host="db-prod", listen_address="10.0.0.2")
    target["log_level"] = value("debug", "inventories/manufacturer/group_vars/production/main.yml:5")
    finding = only(compare(counterpart=pair(target, declared_only={"northwind.ini": "other", "features.json": "flags",
                                                                   "secrets.env": "secret"})))
    assert (finding.scope, finding.kind, finding.subject) == ("environment", "variable", "log_level")
    assert (finding.expected_value, finding.actual_value) == ("info", "debug")
    assert finding.where == "inventories/manufacturer/group_vars/production/main.yml:5"
    assert finding.files == ("northwind.ini",) and not finding.expected


def test_a_secret_variable_is_compared_by_digest_and_never_shown():
    target = variables(db_host="db-prod", listen_address="10.0.0.2")
    source = variables()
    target["db_password"] = value("prod-secret", secret=True)
    source["db_password"] = value("stg-secret", secret=True)
    finding = only(compare(counterpart=pair(target, source)))
    assert (finding.kind, finding.subject, finding.severity) == ("variable", "db_password", "high")
    assert finding.expected_value == finding.actual_value == MASK
    assert "secret" not in json.dumps(finding.as_dict()).replace("secrets.env", "")


def test_an_expired_expected_difference_counts_as_drift_again():
    expired = {**EXPECTATIONS, "db_host": Expectation("db_host", "environment", "own database", date(2026, 1, 31))}
    report = compare(expectations=expired)
    finding = only(report)
    assert (finding.kind, finding.subject, finding.expected) == ("variable", "db_host", False)
    assert "expired on 2026-01-31" in finding.reason and "own database" in finding.reason
    assert [f.subject for f in report.expected] == ["listen_address"]


def test_platform_and_package_differences_are_reported_by_kind():
    production = fingerprint("mfg-prod-1")
    production["platform"]["kernel"] = "6.1.0-99-amd64"
    production["packages"]["openssl"] = "3.0.11-1~deb12u2"
    kinds = {(f.kind, f.subject, f.severity) for f in compare(production=production).findings}
    assert kinds == {("platform", "kernel", "low"), ("package", "openssl", "medium")}


def test_an_extra_listening_port_in_production_is_reported():
    production = fingerprint("mfg-prod-1")
    production["ports"] = production["ports"] + [{"port": 9999, "address": "own"}]
    finding = only(compare(production=production))
    assert (finding.kind, finding.subject, finding.expected_value, finding.actual_value) == \
        ("port", "9999/tcp on its own address", "not listening", "listening")


def test_different_releases_are_one_release_finding():
    production = fingerprint("mfg-prod-1")
    production["release"]["meta"]["version"] = "1.1"
    production["release"]["meta"]["artifact_sha256"] = "a" * 64
    report = compare(production=production, desired={"mfg-prod-1": None})
    finding = only(report)
    assert (finding.scope, finding.kind) == ("environment", "release")
    assert finding.actual_value.startswith("1.1 ") and finding.expected_value.startswith("1.0 ")


def test_the_same_difference_on_many_hosts_is_one_finding_naming_them_all():
    stg = fingerprint("mfg-stg-1")
    hosts = {"mfg-stg-1": HostState("mfg-stg-1", "staging", stg, None, desired_for(stg))}
    pairs = []
    for index in range(30):
        name = f"prod-{index}"
        fp = fingerprint("mfg-prod-1")
        fp["packages"]["tzdata"] = "2024a-0+deb12u1"
        hosts[name] = HostState(name, "production", fp, None, desired_for(fp))
        pairs.append(Counterpart(name, "mfg-stg-1", {}, {}))
    report = drift.compare(hosts, pairs, EXPECTATIONS, "staging", "production", TODAY)
    finding = only(report)
    assert finding.kind == "package" and len(finding.hosts) == 30 and finding.counterparts == ("mfg-stg-1",)


def test_an_unreachable_host_is_listed_and_gives_no_findings():
    hosts = {"mfg-stg-1": HostState("mfg-stg-1", "staging", fingerprint("mfg-stg-1"), None,
                                    desired_for(fingerprint("mfg-stg-1"))),
             "mfg-prod-1": HostState("mfg-prod-1", "production", None, "REFUSED - the host key does not match")}
    report = drift.compare(hosts, [Counterpart("mfg-prod-1", "mfg-stg-1", {}, {})], EXPECTATIONS, "staging",
                           "production", TODAY)
    assert report.findings == () and report.unreachable == {"mfg-prod-1": "REFUSED - the host key does not match"}


@pytest.mark.parametrize(("target_groups", "expected"), [
    (["plant_shanghai", "scada_gateway"], "stg-gateway"),
    (["plant_suzhou"], "stg-plain"),
])
def test_hosts_are_paired_with_a_source_host_of_the_same_role(target_groups, expected):
    memberships = {"stg-plain": ("staging", []), "stg-gateway": ("staging", ["scada_gateway"]),
                   "prod": ("production", target_groups), "prod-gateway": ("production", ["scada_gateway"])}
    roles = drift.cross_environment_groups(memberships)
    assert roles == {"scada_gateway"}  # plant groups exist in production only: places, not roles
    pairs = drift.pair_hosts([("prod", target_groups)], [("stg-plain", []), ("stg-gateway", ["scada_gateway"])], roles)
    assert pairs == {"prod": expected}


def test_the_report_in_words_masks_nothing_it_was_not_given_and_names_the_counterpart():
    production = fingerprint("mfg-prod-1")
    entries(production)["config/secrets.env"]["sha256"] = "9" * 64
    report = compare(production=production)
    text = "\n".join(drift.describe(report))
    assert "secrets.env" in text and "9999999999" not in text and MASK in text
    assert json.loads(json.dumps(report.as_dict()))["drift"] is True



def test_a_secret_file_no_variable_explains_is_reported_without_its_digest():
    """Config that differs between the environments with no variable to explain it: for a secret
    file, that it differs, never a digest (a dictionary finds a weak password from one)."""
    digests = {"northwind.ini": "ini-prod", "features.json": "flags", "secrets.env": "c0ffee" * 10}
    changed = replace(pair(files=digests, declared_only={**digests, "secrets.env": "beef" * 16}),
                      secret_files=frozenset({"secrets.env"}))
    finding = only(compare(counterpart=changed))
    assert (finding.kind, finding.subject) == ("config", "secrets.env")
    assert finding.expected_value == finding.actual_value == MASK
    assert "c0ffee" not in json.dumps(finding.as_dict()) and "beef" not in json.dumps(finding.as_dict())
# -- the release directory, every entry by content, full mode and owner ---------------------------------

def _chmod(path: str, mode: str):
    def change(fp: dict) -> None:
        entries(fp)[path]["mode"] = mode
    return change


def _set(path: str, **values):
    def change(fp: dict) -> None:
        entries(fp)[path].update(values)
    return change


def _add(path: str, entry: dict):
    def change(fp: dict) -> None:
        entries(fp)[path] = {"owner": "root", "group": "root", **entry}
    return change


def _remove(path: str):
    def change(fp: dict) -> None:
        del entries(fp)[path]
    return change


def _replace_by_directory(path: str, *children: str):
    def change(fp: dict) -> None:
        entries(fp)[path] = {"type": "dir", "mode": "0755", "owner": "root", "group": "root"}
        for child in children:
            entries(fp)[f"{path}/{child}"] = {"type": "file", "mode": "0644", "owner": "root", "group": "root",
                                              "size": 1, "sha256": "d" * 64}
    return change


def _zone_replaced(fp: dict) -> None:
    fp["platform"]["timezone_data"] = "7" * 64  # /etc/localtime holds other data; /etc/timezone's name is the same


def _current_elsewhere(fp: dict) -> None:
    fp["release"]["link_target"] = f"/tmp/copy/{fp['release']['id']}"


# (change to the production host, the one finding it gives: kind, subject, severity). Each one was a
# blind spot (not reported, or by a partial attribute) before drift compared every entry.
TAMPERING = {
    "a code file opened to everyone (0666)": (_chmod("northwind/plant.py", "0666"),
                                              ("permission", "northwind/plant.py mode", "high")),
    "a script opened to everyone (0777)": (_chmod("bin/northwind-ctl", "0777"),
                                           ("permission", "bin/northwind-ctl mode", "high")),
    "a setuid bit on a script": (_chmod("bin/northwind-ctl", "4755"), ("permission", "bin/northwind-ctl mode", "high")),
    "a code file closed to others (0640)": (_chmod("northwind/plant.py", "0640"),
                                            ("permission", "northwind/plant.py mode", "medium")),
    "a code directory writable by everyone": (_chmod("northwind", "0777"), ("permission", "northwind mode", "high")),
    "the release directory writable by everyone": (_chmod(".", "0777"),
                                                   ("permission", "release directory mode", "high")),
    "the release's config/ writable by everyone": (_chmod("config", "0777"), ("permission", "config/ mode", "high")),
    "a code file given to another owner": (_set("northwind/plant.py", owner="nobody"),
                                           ("permission", "northwind/plant.py owner", "medium")),
    "a code directory given to another group": (_set("northwind", group="staff"),
                                                ("permission", "northwind group", "medium")),
    "a secret file given to another group": (_set("config/secrets.env", group="staff"),
                                             ("permission", "secrets.env group", "high")),
    "byte code planted in __pycache__": (_replace_by_directory("northwind/__pycache__", "plant.cpython-311.pyc"),
                                         ("code_file", "northwind/__pycache__", "medium")),
    "a file added to the release": (_add("EXTRA.py", {"type": "file", "mode": "0644", "size": 5, "sha256": "e" * 64}),
                                    ("code_file", "EXTRA.py", "medium")),
    "a code file deleted": (_remove("VERSION"), ("code_file", "VERSION", "high")),
    "a code file replaced by a link (same content behind it)": (
        _add("northwind/plant.py", {"type": "link", "link": "/tmp/plant.py"}),
        ("code_file", "northwind/plant.py", "high")),
    "a shared link pointing elsewhere": (_set("data", link="/mnt/other"), ("code_file", "data", "high")),
    "a shared link replaced by a directory": (_replace_by_directory("logs", "northwind.log"),
                                              ("code_file", "logs", "high")),
    "a config file replaced by a link": (_add("config/northwind.ini", {"type": "link", "link": "/tmp/n.ini"}),
                                         ("config", "northwind.ini", "high")),
    "`current` pointing at a copy outside releases/": (_current_elsewhere, ("release", "current", "high")),
    "/etc/localtime replaced, /etc/timezone still naming the old zone": (_zone_replaced,
                                                                        ("platform", "timezone", "medium")),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_with_the_release_or_the_host_is_one_host_finding(case):
    change, (kind, subject, severity) = TAMPERING[case]
    production = fingerprint("mfg-prod-1")
    change(production)
    finding = only(compare(production=production))
    assert (finding.scope, finding.kind, finding.subject, finding.severity, finding.hosts) == \
        ("host", kind, subject, severity, ("mfg-prod-1",)), drift.finding_line(finding)


def test_an_added_directory_is_one_finding_counting_what_is_in_it():
    production = fingerprint("mfg-prod-1")
    _replace_by_directory("northwind/__pycache__", "a.pyc", "b.pyc", "c.pyc")(production)
    finding = only(compare(production=production))
    assert finding.reason == "a directory that is not part of the release artifact (3 entries in it)"


def test_the_same_time_zone_name_with_other_zone_data_differs_between_environments():
    production = fingerprint("mfg-prod-1")
    production["platform"]["timezone_data"] = production["platform"]["timezone_named_data"] = "7" * 64
    finding = only(compare(production=production))
    assert (finding.scope, finding.kind, finding.subject) == ("environment", "platform", "timezone")
    assert "other zone data" in finding.reason and finding.actual_value.startswith("Etc/UTC (zoneinfo 777777")


def test_a_systemd_unit_edited_in_one_environment_is_a_service_difference():
    staging, production = fingerprint("mfg-stg-1"), fingerprint("mfg-prod-1")
    unit = "/etc/systemd/system/northwind.service"
    staging["service"]["unit_files"] = {unit: "a" * 64}
    production["service"]["unit_files"] = {unit: "b" * 64, f"{unit}.d/override.conf": "c" * 64}
    subjects = {(f.scope, f.kind, f.subject) for f in compare(staging, production).findings}
    assert subjects == {("environment", "service", f"unit file {unit}"),
                        ("environment", "service", f"unit file {unit}.d/override.conf")}


def test_ignored_entries_are_counted_in_the_report():
    production = fingerprint("mfg-prod-1")
    production["tree"]["ignored"] = 4
    report = compare(production=production)
    assert report.findings == () and report.ignored == {"mfg-prod-1": 4}
    assert "4 file(s) ignored by golive.yml drift.ignore on 1 host(s)" in "\n".join(drift.describe(report))


# The controller's comparison (golive.core.drift) and the host agent's (golive.agent.shared) must
# agree entry by entry: drift reports what a deploy then repairs, and a deploy calls a host unchanged
# exactly when drift finds nothing there.
DESIRED = {
    ".": {"type": "dir", "mode": "0755"},
    "bin": {"type": "dir", "mode": "0755"},
    "bin/run": {"type": "file", "mode": "0755", "sha256": "a" * 64, "size": 10},
    "lib.py": {"type": "file", "mode": "0644", "sha256": "b" * 64, "size": 20},
    "data": {"type": "link", "link": "../../shared/data"},
}
PARITY = {
    "same": {},
    "content": {"lib.py": {"sha256": "c" * 64}},
    "size": {"lib.py": {"size": 21, "sha256": None}},
    "mode": {"bin/run": {"mode": "0777"}},
    "setuid": {"bin/run": {"mode": "4755"}},
    "owner": {"lib.py": {"uid": 1000}},
    "group": {"bin": {"gid": 50}},
    "link": {"data": {"link": "/elsewhere"}},
    "type": {"lib.py": {"type": "link", "link": "x", "mode": None, "size": None, "sha256": None}},
    "added": {"extra": {"type": "file", "mode": "0644", "sha256": "d" * 64, "size": 1, "uid": 0, "gid": 0}},
    "missing": {"bin/run": None},
    "everything": {".": {"mode": "0777"}, "lib.py": {"sha256": "c" * 64, "mode": "0600", "uid": 7},
                   "bin/run": None, "data": {"link": "/x"}},
}


@pytest.mark.parametrize("case", list(PARITY))
def test_the_host_agent_and_drift_compare_a_release_alike(case):
    from golive.agent import shared

    actual = {p: {**e, "uid": 0, "gid": 0} for p, e in DESIRED.items()}
    for path, change in PARITY[case].items():
        if change is None:
            del actual[path]
            continue
        actual[path] = {k: v for k, v in {**actual.get(path, {}), **change}.items() if v is not None}
    on_host = shared.release_differences(DESIRED, actual, 0, 0)
    names = {0: "root", 1000: "alice", 7: "daemon", 50: "staff"}
    named = {p: {**{k: v for k, v in e.items() if k not in ("uid", "gid")}, "owner": names[e["uid"]],
                 "group": names[e["gid"]]} for p, e in actual.items()}
    assert drift.release_differences(DESIRED, named, {"owner": "root", "group": "root"}) == on_host
    assert bool(on_host) == (case != "same")


IGNORED = [
    ("**/__pycache__/**", "northwind/__pycache__", True),
    ("**/__pycache__/**", "northwind/__pycache__/plant.cpython-311.pyc", True),
    ("**/__pycache__/**", "__pycache__", True),
    ("**/__pycache__/**", "northwind/pycache.py", False),
    ("**/__pycache__", "a/b/__pycache__/x.pyc", True),
    ("*.log", "app.log", True),
    ("*.log", "logs/app.log", False),
    ("logs/*.lo?", "logs/app.log", True),
    ("assets/**/*.tmp", "assets/a.tmp", True),
    ("assets/**/*.tmp", "assets/x/y/a.tmp", True),
    ("assets/**/*.tmp", "assets/x/y/a.tmpx", False),
    ("cache", "cache/deep/file", True),
    ("cache", "cachex", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), IGNORED)
def test_drift_ignore_patterns(pattern, path, expected):
    from golive.agent.shared import ignored

    assert ignored(path, (pattern,)) is expected
    assert ignored(".", (pattern,)) is False  # never the release directory itself


# -- what a release directory should hold is what either engine's unpack writes ----------------------

def odd_archive(path: Path) -> None:
    """Members whose modes an unpack changes: a private directory, files open to all, a sticky bit,
    an implied parent, a hardlink, a symlink."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        for name, kind, mode, data, link in (
                ("private", tarfile.DIRTYPE, 0o700, None, ""),
                ("private/key.pem", tarfile.REGTYPE, 0o600, b"k", ""),
                ("bin/run", tarfile.REGTYPE, 0o777, b"#!/bin/sh\n", ""),  # bin/ only implied
                ("sticky", tarfile.REGTYPE, 0o1644, b"s", ""),
                ("read-only", tarfile.REGTYPE, 0o444, b"r", ""),
                ("again", tarfile.LNKTYPE, 0o644, None, "bin/run"),
                ("latest", tarfile.SYMTYPE, 0o777, None, "bin/run")):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname = kind, mode, link
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)


def unpacked_tree(release: Path) -> dict:
    from golive.agent import shared

    entries, _ = shared.scan_release(str(release))
    return entries


@pytest.mark.parametrize("engine", ["host agent", "ansible role"])
def test_the_release_tree_is_what_each_engines_unpack_writes(engine, tmp_path):
    import os
    import subprocess
    import tarfile

    from golive.agent import shared
    from golive.agent.archive import check_archive, extract_checked
    from golive.workspace import archive_entries

    artifact = tmp_path / "odd.tar.gz"
    odd_archive(artifact)
    release = tmp_path / "release"
    old = os.umask(0o022)  # as both engines unpack (the agent sets it; a login shell has it)
    try:
        if engine == "host agent":
            with tarfile.open(artifact) as archive:
                extract_checked(archive, check_archive(archive.getmembers(), 100, 1 << 20), str(release))
        else:  # roles/golive: tasks/unpack.yml's tar options, then configure.yml's directory modes
            release.mkdir(mode=0o755)
            subprocess.run(["tar", "-xzf", str(artifact), "-C", str(release), "--no-same-owner",
                            "--no-same-permissions", "--mode=u+rw,go-w", "--touch"], check=True)
            subprocess.run(["find", str(release), "-type", "d", "!", "-perm", "0755", "-exec", "chmod", "0755",
                            "{}", "+"], check=True)
            subprocess.run(["find", str(release), "-type", "f", "!", "-perm", "-0600", "-exec", "chmod", "u+rw",
                            "{}", "+"], check=True)
    finally:
        os.umask(old)
    tree = drift.release_tree(archive_entries(str(artifact)), {}, ())
    expected = {p: e for p, e in tree.entries.items() if p != "config"}
    assert shared.release_differences(expected, unpacked_tree(release), os.geteuid(), os.getegid()) == []
    assert expected["private"]["mode"] == "0755" and expected["bin/run"]["mode"] == "0755"
    assert expected["sticky"]["mode"] == "0644" and expected["read-only"]["mode"] == "0644"
    assert expected["again"] == expected["bin/run"] and expected["latest"] == {"type": "link", "link": "bin/run"}


def test_the_roles_gate_reads_the_same_entries_and_ignores_the_same_paths(tmp_path):
    import re
    import sys

    from golive.agent.shared import ignored
    from golive.workspace import archive_entries

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "golive" / "files"))
    try:
        import golive_artifact_gate as gate
    finally:
        sys.path.pop(0)
    import tarfile

    artifact = tmp_path / "odd.tar.gz"
    odd_archive(artifact)
    with tarfile.open(artifact) as archive:
        assert gate.archive_entries(archive, []) == archive_entries(str(artifact))
        assert set(gate.archive_entries(archive, ["private/**", "*ky"])) == \
            set(archive_entries(str(artifact))) - {"private", "private/key.pem", "sticky"}
    paths = [path for _, path, _ in IGNORED] + ["a", "a/b", "x/q/y/z", "b/a"]
    for pattern in {p for p, _, _ in IGNORED} | {"a/**", "x/**/y/**", "?/a"}:
        regex = re.compile(gate.ignore_regex([pattern]))
        assert [bool(regex.match(p)) for p in paths] == [ignored(p, (pattern,)) for p in paths], pattern

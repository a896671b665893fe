"""A product that is not northwind, in a workspace made by `golive init`, on real test hosts, with
both engines: validate, deploy, check, drift, status, rollback; the health contract (HTTP 200 is
enough; `expect` makes it stronger; a health command instead of a URL); golive.yml's timeouts.

The product is tests/fixtures/ownapp: a stdlib HTTP server whose /health reports only its version.
The workspace has no roles/, playbooks/ or checks/conftest.py: golive's own come with the package.
Its artifacts are built with `golive package`, as docs/artifacts.md tells a vendor to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golive.testing.hosts import TestHosts
from tests.conftest import REPO, TEST_NET, WAIT_BOUND_SECONDS, run_golive

PRODUCT = REPO / "tests" / "fixtures" / "ownapp"
APP = "ownapp"
FIRST = 41  # this net's .11-.16 are the session's northwind hosts
STAGING, PRODUCTION = f"{TEST_NET}.{FIRST}", f"{TEST_NET}.{FIRST + 1}"
ENGINES = ("pyinfra", "ansible")
GENERIC_CHECKS = 11  # test_release 4, test_config 3, test_service 3, test_platform 1
# What workspaces carried as checks/conftest.py before the package provided the plugin.
OLD_CONFTEST = """from golive.flows.checkplugin import (  # noqa: F401
    fetch, golive, health, pytest_addoption, pytest_collection_modifyitems, pytest_configure,
    pytest_ignore_collect, pytest_unconfigure,
)
"""


@pytest.fixture(scope="module")
def own_hosts(tmp_path_factory):
    hosts = TestHosts(tmp_path_factory.mktemp("own-hosts"), net=TEST_NET, first=FIRST,
                      binds=(f"/opt/{APP}", f"/etc/{APP}"))
    hosts.up(2)
    yield hosts
    hosts.down()


def package(store: Path, version: str, *markers: str) -> None:
    """The product's artifact, as the docs tell a vendor to build it: its release folder (plus the
    VERSION file and any markers) through `golive package`, which writes the manifest and .sha256."""
    folder = store.parent / f"{APP}-{version}-folder"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(PRODUCT, folder, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    for name, text in (("VERSION", f"{version}\n"), *((m, "on purpose\n") for m in markers)):
        (folder / name).write_text(text)
    done = subprocess.run([sys.executable, "-m", "golive", "package", str(folder), "--version", version,
                           "--name", APP, "--out", str(store)], capture_output=True, text=True,
                          timeout=WAIT_BOUND_SECONDS, env={**os.environ, "PYTHONPATH": str(REPO / "deploy")})
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(folder)


def set_setting(ws: Path, pattern: str, value: str) -> None:
    """Replace the one golive.yml line matching `pattern` (a regex of the whole line) with `value`."""
    app = ws / "golive.yml"
    text, found = re.subn(pattern, value, app.read_text(), flags=re.MULTILINE)
    assert found == 1, f"{app}: no single line matching {pattern!r}"
    app.write_text(text)


def init_workspace(tmp_path: Path, hosts: TestHosts) -> Path:
    """golive init, then what a user edits: the inventory (their hosts) and the config template
    (what their product reads). golive.yml as init wrote it fits ownapp: bin/ownapp-ctl, /health."""
    hosts.reset()
    ws = tmp_path / "ownapp-deploy"
    run_golive(tmp_path, "init", str(ws), "--name", APP, check=0)
    inventory = ws / "inventories" / "example"
    (inventory / "hosts.yml").write_text(
        "all:\n  children:\n"
        f"    staging:\n      hosts:\n        own-stg-1: {{ansible_host: {STAGING}}}\n"
        f"    production:\n      hosts:\n        own-prod-1: {{ansible_host: {PRODUCTION}}}\n")
    variables = inventory / "group_vars" / "all" / "main.yml"
    variables.write_text(variables.read_text() + f"ansible_ssh_private_key_file: {hosts.client_key}\n"
                         f"ansible_ssh_common_args: -o UserKnownHostsFile={hosts.known_hosts}\n")
    (ws / "config_templates" / APP / f"{APP}.conf.j2").write_text(
        "[server]\naddress = {{ ansible_host }}\nport = {{ http_port }}\n\n[company]\nname = {{ company_name }}\n")
    # ownapp is Python: where it runs, it writes byte code into its release (what a user names, the
    # way golive.yml's comment says; everything else in the release is compared)
    set_setting(ws, r"^  ignore: \[\]$", '  ignore: ["**/__pycache__/**"]')
    store = ws / "build" / "releases"
    for version in ("1.0", "1.1"):
        package(store, version)
    for version in ("1.2", "1.4"):  # two, so that no test switches back to a release verified before
        package(store, version, "WRONG_VERSION")  # answers HTTP 200 with version 0.0
    package(store, "1.3", "FAILING")  # answers HTTP 500
    return ws


@pytest.fixture
def own_ws(tmp_path, own_hosts) -> Path:
    return init_workspace(tmp_path, own_hosts)


def golive(ws: Path, *args: str, engine: str | None = None, check: int | None = 0):
    extra = ("--engine", engine) if engine else ()
    return run_golive(ws, *args, *extra, check=check)


def served(address: str) -> dict | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}:8080/health", timeout=3) as response:
            return json.loads(response.read())
    except OSError:
        return None


def live_release(hosts: TestHosts, address: str) -> str:
    record = next(h for h in hosts.hosts if h.address == address)
    return os.readlink(Path(record.binds[f"/opt/{APP}"]) / "current").rsplit("/", 1)[-1]


def test_init_workspace_has_nothing_of_golive_to_copy(own_ws):
    for name in ("roles", "playbooks", "checks/conftest.py"):
        assert not (own_ws / name).exists(), name
    assert (own_ws / "vault-password").stat().st_mode & 0o777 == 0o600
    assert "vault-password" in (own_ws / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("engine", ENGINES)
def test_own_product_through_every_verb(own_ws, own_hosts, engine):
    golive(own_ws, "validate")
    golive(own_ws, "deploy", "example", "staging", "--release", "1.0", engine=engine)
    assert served(STAGING) == {"version": "1.0"}
    checked = golive(own_ws, "check", "example", "staging", "--json").json()
    assert [len(h["passed"]) for h in checked["hosts"]] == [GENERIC_CHECKS], checked
    golive(own_ws, "deploy", "example", "production", "--release", "1.0", engine=engine)  # promoted: checked
    drift = golive(own_ws, "drift", "example", "--json", check=None)
    assert drift.returncode == 0, drift.output
    assert [e["subject"] for e in drift.json()["expected"]] == ["public_url"], drift.output
    status = golive(own_ws, "status", "example", "production", "--json").json()
    assert [(h["version"], h["state"], h["live"]) for h in status["hosts"]] == [("1.0", "good", "healthy")]

    golive(own_ws, "deploy", "example", "staging", "--release", "1.1", engine=engine)
    assert served(STAGING) == {"version": "1.1"}
    golive(own_ws, "rollback", "example", "staging", engine=engine)
    assert served(STAGING) == {"version": "1.0"} and live_release(own_hosts, STAGING).startswith("1.0-")
    golive(own_ws, "check", "example", "staging")
    history = golive(own_ws, "history", "example", "staging", "--json").json()["entries"]
    assert [(e["action"], e["result"], e["engine"]) for e in history[:2]] == [
        ("check", "passed", "testinfra"), ("rollback", "ok", engine)]


@pytest.mark.parametrize("engine", ENGINES)
def test_http_200_is_enough_and_expect_makes_the_check_stronger(own_ws, own_hosts, engine):
    # expect: [] (init's default): 1.2 reports version 0.0, but answers HTTP 200: it goes live
    golive(own_ws, "deploy", "example", "staging", "--release", "1.2", engine=engine)
    assert served(STAGING) == {"version": "0.0"}
    # expect: [version]: that answer is a failed verification, in the same words with both engines
    set_setting(own_ws, r"^  expect: \[\]$", "  expect: [version]")
    golive(own_ws, "deploy", "example", "staging", "--release", "1.0", engine=engine)
    wrong = golive(own_ws, "deploy", "example", "staging", "--release", "1.4", "--json", engine=engine, check=3)
    host = wrong.json()["hosts"][0]
    assert host["status"] == "rolled_back", wrong.output
    assert 'health reports version "0.0", expected "1.4"' in host["error"], wrong.output
    assert served(STAGING) == {"version": "1.0"} and live_release(own_hosts, STAGING).startswith("1.0-")


def test_never_healthy_an_error_status_or_an_unreported_value(own_ws, own_hosts):
    golive(own_ws, "deploy", "example", "staging", "--release", "1.0")
    # HTTP 500 is never healthy, whatever `expect` says
    failing = golive(own_ws, "deploy", "example", "staging", "--release", "1.3", "--json", check=3)
    host = failing.json()["hosts"][0]
    assert host["status"] == "rolled_back" and f"{STAGING}:8080/health: HTTP 500" in host["error"], failing.output
    # a value the product does not report is a clear refusal, not a silent pass
    set_setting(own_ws, r"^  expect: \[\]$", "  expect: [version, release]")
    missing = golive(own_ws, "deploy", "example", "staging", "--release", "1.1", "--json", check=3)
    assert "the health answer does not report release" in missing.json()["hosts"][0]["error"], missing.output
    assert live_release(own_hosts, STAGING).startswith("1.0-")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_health_command_instead_of_a_url(own_ws, own_hosts, engine):
    set_setting(own_ws, r'^  url: "http.*"$', '  url: ""')
    set_setting(own_ws, r'^  command: ""$', '  command: "bin/ownapp-health"')
    golive(own_ws, "validate")
    golive(own_ws, "deploy", "example", "staging", "--release", "1.0", engine=engine)
    failing = golive(own_ws, "deploy", "example", "staging", "--release", "1.3", "--json", engine=engine, check=3)
    host = failing.json()["hosts"][0]
    assert host["status"] == "rolled_back" and "health command exit 1" in host["error"], failing.output
    # drift, status and the checks ask the same command
    golive(own_ws, "check", "example", "staging")
    status = golive(own_ws, "status", "example", "staging", "--json").json()["hosts"][0]
    assert (status["state"], status["live"]) == ("good", "healthy"), status
    own_hosts.exec(next(h.name for h in own_hosts.hosts if h.address == STAGING),
                   ["/bin/sh", "-c", f"/opt/{APP}/current/bin/{APP}-ctl stop"])
    stopped = golive(own_ws, "status", "example", "staging", check=1)
    assert "stored: good, live: health check fails: health command exit 1" in stopped.stdout, stopped.output
    drift = golive(own_ws, "drift", "example", "--json", check=None)
    findings = [(d["kind"], d["subject"]) for d in drift.json()["findings"]]
    assert ("service", "state") in findings, drift.output  # the command fails, then status says stopped


def test_status_says_when_the_live_service_disagrees_with_the_record(own_ws, own_hosts):
    golive(own_ws, "deploy", "example", "staging", "--release", "1.0")
    fine = golive(own_ws, "status", "example", "staging")
    assert "healthy" in fine.stdout and "stored:" not in fine.stdout, fine.output
    name = next(h.name for h in own_hosts.hosts if h.address == STAGING)
    own_hosts.exec(name, ["/bin/sh", "-c", f"/opt/{APP}/current/bin/{APP}-ctl stop"])
    stopped = golive(own_ws, "status", "example", "staging", "--json", check=1)
    host = stopped.json()["hosts"][0]
    assert (host["state"], host["live"], host["disagrees"]) == ("good", "failing", True), stopped.output
    assert "Connection refused" in host["live_problem"] or "refused" in host["live_problem"], host
    text = golive(own_ws, "status", check=1)  # every customer x environment
    assert "live health disagrees with the stored state on own-stg-1" in text.stdout, text.output


@pytest.mark.parametrize("engine", ENGINES)
def test_hook_timeout_is_golive_yml_s(own_ws, own_hosts, engine):
    golive(own_ws, "deploy", "example", "staging", "--release", "1.0")
    # the hook would run for ten minutes; golive.yml allows it one second
    set_setting(own_ws, r'^  before_cutover: ""$', '  before_cutover: "sleep 600"')
    set_setting(own_ws, r"^  hook: 600 .*$", "  hook: 1")
    result = golive(own_ws, "deploy", "example", "staging", "--release", "1.1", "--json", engine=engine, check=3)
    host = result.json()["hosts"][0]
    assert host["error"].startswith("before_cutover"), result.output
    # the agent: "(timed out after 1.0s)"; Ansible's task timeout: "Timed out after 1 second(s)."
    assert re.search(r"(?i)timed out after 1(\.0)?( ?s\b| second)", host["error"]), result.output
    assert served(STAGING) == {"version": "1.0"} and live_release(own_hosts, STAGING).startswith("1.0-")


def test_an_old_checks_conftest_is_harmless(own_ws):
    (own_ws / "checks" / "conftest.py").write_text(OLD_CONFTEST)
    golive(own_ws, "deploy", "example", "staging", "--release", "1.0")
    golive(own_ws, "check", "example", "staging")
    plain = subprocess.run([sys.executable, "-m", "pytest", "checks/", "-q", "--golive-customer", "example",
                            "--golive-environment", "staging"], cwd=own_ws, capture_output=True, text=True,
                           timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "deploy")})
    assert plain.returncode == 0 and f"{GENERIC_CHECKS} passed" in plain.stdout, plain.stdout + plain.stderr

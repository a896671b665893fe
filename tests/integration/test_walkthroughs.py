"""The walkthroughs work as written: every ```sh block of docs/add-a-customer.md and
docs/your-own-application.md runs, in order, in one bash with `set -e`, from a fresh copy of the
repository (add a customer) or an empty folder (your own application), against real test hosts.

The only changes made to the text are the ones that move its test hosts onto this suite's net and
state folder (SUBSTITUTIONS): the documents use 127.0.0.x and /tmp/..., which belong to whoever
follows them.
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
from golive.testing.postgres import PostgresServer
from tests.conftest import REPO, TEST_NET, WORKSPACE_FILES

CLONE_FILES = (*WORKSPACE_FILES, "scripts", "example_app", "deploy", "pyproject.toml", "README.md")


def commands(doc: Path) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```$", doc.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert blocks, f"{doc} has no ```sh blocks"
    return blocks


# Where a walkthrough's PostgreSQL servers keep their data: the postgres user must reach it (pytest's
# tmp_path is root's only), and one per test net.
DOC_DATABASES, DATABASES = "/tmp/golive-logistics-db", f"/tmp/golive-walkthrough-db-{TEST_NET}"


def substituted(text: str, hosts_dir: str, doc_hosts_dir: str) -> str:
    text = text.replace(doc_hosts_dir, hosts_dir).replace(DOC_DATABASES, DATABASES)
    # scripts/testhosts (in the repository) and python -m golive.testing (golive installed) alike
    text = re.sub(r"((?:scripts/testhosts|-m golive\.testing) up \d+)", rf"\1 --net {TEST_NET}", text)
    return text.replace("127.0.0.", f"{TEST_NET}.")


def run_walkthrough(doc: Path, cwd: Path, hosts_dir: Path, doc_hosts_dir: str) -> subprocess.CompletedProcess:
    script = "\n".join(substituted(block, str(hosts_dir), doc_hosts_dir) for block in commands(doc))
    assert f"--net {TEST_NET}" in script, f"{doc.name} starts no test hosts the suite knows how to move onto its net"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO / "deploy"), "NO_COLOR": "1"}
    try:
        return subprocess.run(["bash", "-c", "set -euxo pipefail\n" + script], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=1800)
    finally:  # the walkthrough stopped before its own clean-up: stop what it started
        for state in sorted(Path(DATABASES).glob("*/server.json")):
            server = json.loads(state.read_text())
            PostgresServer(state.parent, server["address"], server["port"]).remove()
        hosts = TestHosts(hosts_dir)
        if hosts.is_up():
            hosts.down()


def clean_clone(destination: Path) -> Path:
    """The repository's files as a clone has them; its .venv is this one's (scripts/setup, which the
    walkthrough runs, then finds golive installed instead of installing it again)."""
    destination.mkdir()
    (destination / ".venv").symlink_to(Path(sys.executable).parents[1])
    for name in CLONE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info", "build"))
        else:
            shutil.copy2(source, destination / name)
    # older than any installation stamp: scripts/setup must never reinstall golive from this clone into
    # the shared .venv (it would point the suite's golive at a directory the test then deletes)
    os.utime(destination / "pyproject.toml", (0, 0))
    return destination


def test_add_a_customer_as_written(tmp_path):
    clone = clean_clone(tmp_path / "golive")
    run = run_walkthrough(REPO / "docs" / "add-a-customer.md", clone, tmp_path / "hosts", "/tmp/golive-logistics-hosts")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-6000:]
    assert "lgx-prod-1: (nothing) -> 1.0-" in run.stdout
    assert "Ndh-Db-2026!example" not in run.stdout.replace("'Ndh-Db-2026!example'", "")  # only the command itself


def test_your_own_application_as_written(tmp_path):
    (tmp_path / "work").mkdir()
    run = run_walkthrough(REPO / "docs" / "your-own-application.md", tmp_path / "work", tmp_path / "hosts",
                          "/tmp/hello-testhosts")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-6000:]
    ws = tmp_path / "work" / "hello-deploy"
    assert not (ws / "roles").exists() and not (ws / "playbooks").exists()
    assert "example-prod-1: 1.0-" in run.stdout and "rollback" in run.stdout


@pytest.mark.parametrize("doc", ["add-a-customer.md", "your-own-application.md"])
def test_the_walkthroughs_are_linked_from_the_readme(doc):
    assert f"docs/{doc}" in (REPO / "README.md").read_text()

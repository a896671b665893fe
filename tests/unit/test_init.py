"""golive init: a working workspace for a new product, and nothing of golive's copied into it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from golive.flows.init import skeleton_files
from tests.conftest import REPO, run_golive

GENERIC_CHECKS = ("test_config.py", "test_platform.py", "test_release.py", "test_service.py")


def listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_new_workspace_validates_and_renders(tmp_path):
    result = run_golive(tmp_path, "init", "acme-deploy", "--json", check=0)
    ws = tmp_path / "acme-deploy"
    assert result.json()["product"] == "acme-deploy" and result.json()["workspace"] == str(ws)
    run_golive(ws, "validate", check=0)
    rendered = run_golive(ws, "render", "example", "production", "--host", "example-prod-1", check=0)
    assert "public_url = https://www.example.com" in rendered.stdout
    hosts = run_golive(ws, "inventory", "example", "--json", check=0).json()["hosts"]
    assert {name: host["environment"] for name, host in hosts.items()} == {
        "example-staging-1": "staging", "example-prod-1": "production", "example-prod-2": "production"}


def test_it_holds_what_the_user_edits_and_nothing_golive_ships(tmp_path):
    run_golive(tmp_path, "init", "ws", "--name", "acme", check=0)
    ws = tmp_path / "ws"
    files = {str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file()}
    assert {"golive.yml", "README.md", "ansible.cfg", ".gitignore", "vault-password",
            "inventories/example/hosts.yml", "config_templates/acme/acme.conf.j2"} <= files
    assert {f"checks/{name}" for name in GENERIC_CHECKS} <= files
    for name in GENERIC_CHECKS:  # golive's generic checks, as in its repository
        assert (ws / "checks" / name).read_text() == (REPO / "checks" / name).read_text()
    assert not any(f.startswith(("roles/", "playbooks/")) or f.endswith("conftest.py") for f in files), files
    assert "test_northwind.py" not in " ".join(files) and "northwind" not in (ws / "golive.yml").read_text()
    assert (ws / "build" / "releases").is_dir()
    assert (ws / "vault-password").stat().st_mode & 0o777 == 0o600
    assert len((ws / "vault-password").read_text().strip()) >= 32
    assert "vault-password" in (ws / ".gitignore").read_text().splitlines()
    assert "WARNING" in (ws / "ansible.cfg").read_text()
    other = tmp_path / "other"
    run_golive(tmp_path, "init", str(other), "--name", "acme", check=0)
    assert (other / "vault-password").read_text() != (ws / "vault-password").read_text()  # random, each its own


def test_without_a_folder_it_is_the_workspace_option_or_here(tmp_path):
    (tmp_path / "here").mkdir()
    run_golive(tmp_path / "here", "init", check=0)  # run_golive passes --workspace <its folder>
    assert "name: here" in (tmp_path / "here" / "golive.yml").read_text()


def test_nothing_is_overwritten_and_nothing_written_when_a_file_is_in_the_way(tmp_path):
    ws = tmp_path / "ws"
    (ws / "checks").mkdir(parents=True)
    (ws / "checks" / "test_release.py").write_text("mine\n")
    (ws / "notes.txt").write_text("mine too\n")
    before = listing(ws)
    result = run_golive(tmp_path, "init", str(ws), "--name", "acme", check=2)
    assert f"{ws}/checks/test_release.py: exists already" in result.stderr and "Traceback" not in result.stderr
    assert listing(ws) == before and (ws / "checks" / "test_release.py").read_text() == "mine\n"
    run_golive(tmp_path, "init", str(tmp_path / "fresh"), check=0)
    again = run_golive(tmp_path, "init", str(tmp_path / "fresh"), check=2)
    assert "golive.yml: exists already" in again.stderr


@pytest.mark.parametrize("name", ["Acme", "acme corp", "../acme", "-acme", "a" * 64, ""])
def test_a_product_name_that_cannot_be_a_path_is_refused(tmp_path, name):
    result = run_golive(tmp_path, "init", str(tmp_path / "ws"), f"--name={name}", check=2)
    assert "--name: a product name is lower-case letters" in result.stderr, result.stderr
    assert not (tmp_path / "ws").exists()


def test_a_folder_name_that_cannot_be_a_product_name_asks_for_one(tmp_path):
    result = run_golive(tmp_path, "init", str(tmp_path / "Über"), check=2)
    assert "the folder name 'Über' (pass --name)" in result.stderr


def test_the_skeleton_ships_every_file_it_names():
    files = skeleton_files()
    assert all(source.is_file() for source in files.values()), [s for s in files.values() if not s.is_file()]
    assert not any(str(target).endswith((".tmpl", "gitignore")) and not str(target).endswith(".gitignore")
                   for target in files)
    assert os.path.islink(REPO / "deploy" / "golive" / "skeleton" / "checks" / "test_release.py.tmpl")

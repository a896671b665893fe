"""golive's Ansible playbooks and role, its workspace skeleton and its check plugin survive a wheel
build: a wheel of this repository, installed alone, runs `golive init` and `golive validate` and
finds the role and playbooks inside itself (not in a workspace)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
                           capture_output=True, text=True, timeout=600, cwd=out)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    return next(out.glob("golive-*.whl"))


def repository_files(*folders: str) -> dict[str, bytes]:
    return {str(p.relative_to(REPO)): p.read_bytes() for folder in folders for p in sorted((REPO / folder).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_carries_the_role_the_playbooks_and_the_skeleton(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path, data in repository_files("roles", "playbooks").items():
            assert archive.read(f"golive/ansible/{path}") == data, path
        skeleton = REPO / "deploy" / "golive" / "skeleton"
        for path in sorted(skeleton.rglob("*")):
            if path.is_file():
                name = f"golive/skeleton/{path.relative_to(skeleton)}"
                assert archive.read(name) == path.read_bytes(), name  # links became the files they name
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[pytest11]\ngolive = golive.flows.checkplugin" in entry_points


def test_the_installed_wheel_works_from_a_workspace_without_roles_or_playbooks(wheel, tmp_path):
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "import golive.engines.ansible as a; print(a.ANSIBLE_CONTENT)"],
                           capture_output=True, text=True, env=env, timeout=120)
    content = Path(probe.stdout.strip())
    assert content == target / "golive" / "ansible", probe.stdout + probe.stderr
    assert (content / "playbooks" / "deploy.yml").is_file() and (content / "roles" / "golive" / "tasks").is_dir()
    for argv in (["init", str(tmp_path / "ws"), "--name", "acme"], ["validate", "--workspace", str(tmp_path / "ws")]):
        run = subprocess.run([sys.executable, "-m", "golive", *argv], capture_output=True, text=True, env=env,
                             timeout=300, cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
    assert not (tmp_path / "ws" / "roles").exists() and not (tmp_path / "ws" / "playbooks").exists()

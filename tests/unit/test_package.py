"""golive package: reproducible artifacts with a manifest, checked as deploy checks them; and the
gate script's check of an unpacked tree (what the Ansible role runs on each host)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from golive.adapters.package import Entry, write_artifact
from golive.agent import archive as archive_rules
from golive.core.errors import BadInput
from golive.core.model import AppDefinition
from golive.core.release import Artifact
from golive.flows.desired import check_artifact_archive

REPO = Path(__file__).resolve().parents[2]
GATE = REPO / "roles" / "golive" / "files" / "golive_artifact_gate.py"
APP = AppDefinition(name="northwind", root="/opt/northwind", config_dir="/etc/northwind", environments=(),
                    templates=())


def source_tree(base: Path) -> Path:
    source = base / "src"
    (source / "bin").mkdir(parents=True)
    (source / "VERSION").write_text("2.0\n")
    (source / "bin" / "run").write_text("#!/bin/sh\n")
    (source / "bin" / "run").chmod(0o775)
    (source / "notes.txt").write_text("group-writable, not executable\n")
    (source / "notes.txt").chmod(0o666)
    (source / "link").symlink_to("VERSION")
    return source


def golive(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "golive", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO / "deploy")})


def test_the_same_directory_packages_to_the_same_bytes(tmp_path):
    source = source_tree(tmp_path)
    first = golive("package", str(source), "--version", "2.0", "--name", "northwind", "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    os.utime(source / "VERSION", (0, 0))  # times, owners and umask never reach the artifact
    (source / "bin" / "run").chmod(0o755)
    second = golive("package", str(source), "--version", "2.0", "--name", "northwind", "--out", "b", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    a, b = tmp_path / "a" / "northwind-2.0.tar.gz", tmp_path / "b" / "northwind-2.0.tar.gz"
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a" / "northwind-2.0.tar.gz.sha256").read_text() == \
        f"{hashlib.sha256(a.read_bytes()).hexdigest()}  northwind-2.0.tar.gz\n"
    header = a.read_bytes()[:10]
    assert header[3] == 0 and header[4:8] == b"\0\0\0\0"  # no file name, no time stamp


def test_the_manifest_lists_every_member_with_its_hash(tmp_path):
    made = write_artifact(archive_rules_entries(source_tree(tmp_path)), "northwind", "2.0", tmp_path / "store",
                          "northwind-2.0.tar.gz")
    with tarfile.open(made.path) as archive:
        names = [m.name for m in archive.getmembers()]
        assert names == sorted(names)
        manifest = json.loads(archive.extractfile(archive_rules.MANIFEST).read())
        for member in archive.getmembers():
            assert (member.uid, member.gid, member.uname, member.gname, member.mtime) == (0, 0, "", "", 1704067200)
    assert manifest["format"] == 1 and manifest["name"] == "northwind" and manifest["version"] == "2.0"
    by_path = {m["path"]: m for m in manifest["members"]}
    assert [m["path"] for m in manifest["members"]] == sorted(by_path)
    assert by_path["bin/run"] == {"path": "bin/run", "type": "file", "mode": "0755", "size": 10,
                                  "sha256": hashlib.sha256(b"#!/bin/sh\n").hexdigest()}
    assert by_path["notes.txt"]["mode"] == "0644"
    assert by_path["bin"] == {"path": "bin", "type": "dir", "mode": "0755"}
    assert by_path["link"] == {"path": "link", "type": "symlink", "target": "VERSION"}


def archive_rules_entries(source: Path) -> list[Entry]:
    from golive.adapters.package import tree_entries

    return tree_entries(source)


@pytest.mark.parametrize("extension", [".tar.gz", ".tgz", ".tar"])
def test_a_packaged_artifact_passes_the_controllers_and_the_roles_checks(tmp_path, extension):
    name = f"northwind-2.0{extension}"
    made = write_artifact(archive_rules_entries(source_tree(tmp_path)), "northwind", "2.0", tmp_path, name)
    artifact = Artifact("2.0", name, str(made.path), made.sha256, made.path.stat().st_size)
    check_artifact_archive(APP, artifact)
    gate = subprocess.run([sys.executable, str(GATE), str(made.path), "100", str(1 << 20), "northwind", "2.0",
                           "config"], capture_output=True, text=True)
    assert gate.returncode == 0, gate.stderr
    with pytest.raises(BadInput, match="is for northwind 2.0, not northwind 2.1"):
        check_artifact_archive(APP, Artifact("2.1", name, str(made.path), made.sha256, 0))


@pytest.mark.parametrize("reserved", ["config", "golive-manifest.json"])
def test_package_refuses_what_golive_reserves(tmp_path, reserved):
    source = source_tree(tmp_path)
    (source / reserved).mkdir()
    result = golive("package", str(source), "--version", "2.0", "--name", "northwind", "--out", "s", cwd=tmp_path)
    assert result.returncode == 2 and "reserved" in result.stderr, result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("problem", ["fifo", "escaping symlink", "bad version", "bad name", "no directory"])
def test_package_refuses_what_deploy_would_refuse(tmp_path, problem):
    source = source_tree(tmp_path)
    version, name = "2.0", "northwind"
    if problem == "fifo":
        os.mkfifo(source / "pipe")
    elif problem == "escaping symlink":
        (source / "out").symlink_to("../../etc/passwd")
    elif problem == "bad version":
        version = "2.0\n"
    elif problem == "bad name":
        name = "../northwind"
    else:
        shutil.rmtree(source)
    result = golive("package", str(source), "--version", version, "--name", name, "--out", "s", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("golive: error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_package_takes_name_store_and_pattern_from_the_workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(REPO / "golive.yml", ws / "golive.yml")
    result = golive("package", str(source_tree(tmp_path)), "--version", "2.0", "--workspace", str(ws), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (ws / "build" / "releases" / "northwind-2.0.tar.gz").is_file()


def unpacked(tmp_path: Path) -> Path:
    made = write_artifact(archive_rules_entries(source_tree(tmp_path)), "northwind", "2.0", tmp_path / "store",
                          "northwind-2.0.tar.gz")
    target = tmp_path / "release.partial"
    (target / "config").mkdir(parents=True)  # the role's upload.yml makes it before unpacking
    subprocess.run(["tar", "-xzf", str(made.path), "-C", str(target), "--no-same-owner"], check=True)
    return target


def verify(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GATE), "--verify-unpacked", str(target), "northwind", "2.0"],
                          capture_output=True, text=True)


def test_the_roles_host_check_passes_a_whole_release(tmp_path):
    result = verify(unpacked(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("damage", ["missing file", "extra file", "changed content", "lost execute bit",
                                    "retargeted link", "no manifest"])
def test_the_roles_host_check_refuses_what_is_not_the_manifest(tmp_path, damage):
    target = unpacked(tmp_path)
    if damage == "missing file":
        (target / "bin" / "run").unlink()
    elif damage == "extra file":
        (target / "bin" / "extra").write_text("x")
    elif damage == "changed content":
        (target / "VERSION").write_text("2.1\n")
    elif damage == "lost execute bit":
        (target / "bin" / "run").chmod(0o644)
    elif damage == "retargeted link":
        (target / "link").unlink()
        (target / "link").symlink_to("notes.txt")
    else:
        (target / archive_rules.MANIFEST).unlink()
    result = verify(target)
    assert result.returncode == 1 and "refused" in result.stderr, result.stderr


def test_check_complete_sees_a_tar_cut_at_a_member_boundary():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for index in range(5):
            info = tarfile.TarInfo(f"f{index}")
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
    whole = buffer.getvalue()
    for data, complete in ((whole, True), (whole[:512 * 2 * 3], False), (gzip.compress(whole)[:-4], False)):
        mode = "r:gz" if data[:2] == b"\x1f\x8b" else "r:"
        with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as archive:
            archive.getmembers()
            if complete:
                archive_rules.check_complete(archive)
            else:
                with pytest.raises(archive_rules.ArchiveRefused, match="cut short"):
                    archive_rules.check_complete(archive)


def incomplete_cases():
    from tests.hostile.test_hostile_archives import INCOMPLETE

    return INCOMPLETE


@pytest.mark.parametrize("case", sorted(incomplete_cases()))
def test_the_roles_gate_refuses_what_the_controller_and_the_host_agent_refuse(case, tmp_path):
    """The same corpus as tests/hostile/test_hostile_archives.py, through the role's own gate script."""
    data, extension, refusal = incomplete_cases()[case]
    artifact = tmp_path / f"northwind-6.6{extension}"
    artifact.write_bytes(data)
    (tmp_path / f"{artifact.name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {artifact.name}\n")
    gate = subprocess.run([sys.executable, str(GATE), str(artifact), "1000", str(100 << 20), "northwind", "6.6",
                           "config"], capture_output=True, text=True)
    assert gate.returncode == 1 and refusal in gate.stderr and gate.stdout == "", gate.stderr


def test_package_writes_what_the_release_requires_into_its_manifest(tmp_path):
    source = source_tree(tmp_path)
    result = golive("package", str(source), "--version", "2.0", "--name", "northwind", "--out", "s",
                    "--requires", "python>=3.11", "--requires", "arch=amd64,aarch64", "--requires", "glibc>=2.28,<3",
                    "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    artifact = tmp_path / "s" / "northwind-2.0.tar.gz"
    with tarfile.open(artifact) as archive:
        manifest = json.loads(archive.extractfile(archive_rules.MANIFEST).read())
    declared = {"arch": ["x86_64", "aarch64"], "glibc": ">=2.28,<3", "python": ">=3.11"}
    assert manifest["requires"] == declared == json.loads(result.stdout)["requires"]
    # the controller reads it back, from the archive and then from its remembered pass alike
    made = Artifact("2.0", artifact.name, str(artifact), hashlib.sha256(artifact.read_bytes()).hexdigest(), 0)
    first = check_artifact_archive(APP, made, tmp_path / "cache")
    again = check_artifact_archive(APP, made, tmp_path / "cache")
    assert first.declared() == again.declared() == declared
    # without --requires there is no `requires` key at all: the bytes of existing builds are unchanged
    plain = golive("package", str(source), "--version", "2.0", "--name", "northwind", "--out", "p", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    with tarfile.open(tmp_path / "p" / "northwind-2.0.tar.gz") as archive:
        assert "requires" not in json.loads(archive.extractfile(archive_rules.MANIFEST).read())


@pytest.mark.parametrize(("value", "words"), [
    ("python3.11", "not a version requirement"), ("glibc>=2.x", "not a version requirement"),
    ("arch==x86_64", "arch=NAME"), ("kernel>=5", "golive checks python, glibc, arch"),
])
def test_package_refuses_a_malformed_requirement_and_writes_nothing(tmp_path, value, words):
    result = golive("package", str(source_tree(tmp_path)), "--version", "2.0", "--name", "northwind", "--out", "s",
                    "--requires", value, cwd=tmp_path)
    assert result.returncode == 2 and "--requires" in result.stderr and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "s").exists()

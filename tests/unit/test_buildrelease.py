"""scripts/build-release: reproducible, well-formed northwind artifacts."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_RELEASE = REPO / "scripts" / "build-release"


def build(store: Path, version: str, *options: str) -> Path:
    result = subprocess.run(
        [sys.executable, str(BUILD_RELEASE), version, "--store", str(store), *options],
        capture_output=True,
        text=True,
        check=True,
    )
    artifact = store / f"northwind-{version}.tar.gz"
    assert f"artifact: {artifact}" in result.stdout
    assert f"sha256: {hashlib.sha256(artifact.read_bytes()).hexdigest()}" in result.stdout
    return artifact


def members(artifact: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(artifact) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_same_version_builds_the_same_bytes(tmp_path):
    first = build(tmp_path / "a", "1.0", "--files", "20", "--size-kb", "100")
    second = build(tmp_path / "b", "1.0", "--files", "20", "--size-kb", "100")
    assert first.read_bytes() == second.read_bytes()


def test_sha256_file_is_in_sha256sum_format(tmp_path):
    artifact = build(tmp_path, "1.0", "--files", "3", "--size-kb", "10")
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert Path(f"{artifact}.sha256").read_text() == f"{digest}  northwind-1.0.tar.gz\n"
    subprocess.run(["sha256sum", "--check", "--quiet", f"{artifact.name}.sha256"], cwd=tmp_path, check=True)


def test_versions_differ_in_version_file_and_assets(tmp_path):
    old = build(tmp_path, "1.0", "--files", "5", "--size-kb", "20")
    new = build(tmp_path, "1.1", "--files", "5", "--size-kb", "20")
    with tarfile.open(old) as old_archive, tarfile.open(new) as new_archive:
        assert new_archive.extractfile("VERSION").read() == b"1.1\n"
        for name in [m.name for m in old_archive.getmembers() if m.name.startswith("assets/") and m.isfile()]:
            assert old_archive.extractfile(name).read() != new_archive.extractfile(name).read()


def test_layout_modes_and_ownership(tmp_path):
    entries = members(build(tmp_path, "2.0", "--files", "120", "--size-kb", "600"))
    names = list(entries)
    assert names == sorted(names)
    assert {"VERSION", "bin/northwind-ctl", "northwind/server.py", "northwind/config.py", "README.md"} <= set(
        names
    )
    assert "BROKEN_HEALTH" not in entries
    for name, member in entries.items():
        assert not name.startswith(("/", "./")) and ".." not in name.split("/")
        assert member.isdir() or member.isfile()
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == entries["VERSION"].mtime
        assert "__pycache__" not in name
    assert entries["bin/northwind-ctl"].mode == 0o755
    assert entries["northwind/server.py"].mode == 0o644
    assert entries["assets"].isdir() and entries["assets"].mode == 0o755
    assets = [m for name, m in entries.items() if name.startswith("assets/") and m.isfile()]
    assert len(assets) == 120
    assert sum(m.size for m in assets) == 600 * 1024


def test_gzip_header_carries_no_name_or_time(tmp_path):
    header = build(tmp_path, "1.0", "--files", "1", "--size-kb", "1").read_bytes()[:10]
    flags, mtime = header[3], int.from_bytes(header[4:8], "little")
    assert flags & 0x08 == 0  # FNAME
    assert mtime == 0


def test_broken_health_marker(tmp_path):
    entries = members(build(tmp_path, "9.9", "--files", "2", "--size-kb", "4", "--broken-health"))
    assert entries["BROKEN_HEALTH"].isfile()


def test_bad_version_is_refused_and_writes_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BUILD_RELEASE), "../1.0", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "bad version" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_each_version_ships_its_own_and_earlier_migrations(tmp_path):
    def shipped(version: str, *options: str) -> list[str]:
        names = members(build(tmp_path / version, version, "--files", "1", "--size-kb", "1", *options))
        return sorted(n.removeprefix("migrations/") for n in names
                      if n.startswith("migrations/") and n.endswith(".sql"))

    assert shipped("1.0") == ["0001_work_orders.down.sql", "0001_work_orders.sql"]
    assert [n for n in shipped("1.1") if not n.endswith(".down.sql")] == ["0001_work_orders.sql",
                                                                          "0002_work_order_priority.sql"]
    assert [n for n in shipped("1.2") if not n.endswith(".down.sql")] == [
        "0001_work_orders.sql", "0002_work_order_priority.sql", "0003_item_codes.sql"]
    assert shipped("1.2", "--migrations", "0") == []
    extra = tmp_path / "0004_extra.sql"
    extra.write_text("SELECT 1;\n")
    assert "0004_extra.sql" in shipped("1.3", "--add-migration", str(extra))


def test_a_migration_file_must_be_named_by_number(tmp_path):
    extra = tmp_path / "fix.sql"
    extra.write_text("SELECT 1;\n")
    result = subprocess.run([sys.executable, str(BUILD_RELEASE), "1.0", "--store", str(tmp_path),
                             "--add-migration", str(extra)], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "NNNN_name.sql" in result.stderr and "Traceback" not in result.stderr


def test_the_release_ships_its_database_driver(tmp_path):
    """pg8000 and its dependencies under vendor/, importable by the host's python3 from the release."""
    artifact = build(tmp_path, "1.1", "--files", "1", "--size-kb", "1")
    names = members(artifact)
    assert {"vendor/pg8000/native.py", "vendor/scramp/core.py"} <= set(names)
    unpacked = tmp_path / "release"
    with tarfile.open(artifact) as archive:
        archive.extractall(unpacked)  # noqa: S202 - built just above
    probe = subprocess.run(["/usr/bin/python3", "-I", "-c", "import sys; sys.path.insert(0, 'vendor'); "
                            "import pg8000.native, scramp, dateutil; print(pg8000.native.Connection.__name__)"],
                           cwd=unpacked, capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == "Connection", probe.stderr

"""An artifact declares what it needs from a host (its manifest's `requires`: python, glibc, arch);
deploy (both engines), plan and preflight check it against each host's facts before anything is
uploaded, and refuse with exit 2 naming each host and requirement (docs/artifacts.md)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import host_path, run_golive, snapshot_difference, snapshot_hosts

STG, PROD1, PROD2 = 11, 12, 13
NAMES = {STG: "mfg-stg-1", PROD1: "mfg-prod-1", PROD2: "mfg-prod-2"}
MANIFEST = "golive-manifest.json"
# The test hosts run the machine's own /usr (their python3 is the interpreter running this test).
PYTHON = ".".join(map(str, sys.version_info[:3]))
GLIBC = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
ARCH = os.uname().machine
OTHER_ARCH = "aarch64" if ARCH != "aarch64" else "x86_64"


def store(ws: Path) -> Path:
    return ws / "build" / "releases"


def package_with(ws: Path, tmp_path: Path, version: str, *requires: str) -> None:
    """The store's artifact of `version`, packaged again with `golive package --requires` (what a
    vendor runs): the same files, a manifest that declares what it needs from a host."""
    source = tmp_path / f"src-{version}"
    artifact = store(ws) / f"northwind-{version}.tar.gz"
    with tarfile.open(artifact) as archive:
        archive.extractall(source)  # the suite's own artifact (this python has no extraction filters)
    (source / MANIFEST).unlink()
    artifact.unlink()
    Path(f"{artifact}.sha256").unlink()
    args = [a for r in requires for a in ("--requires", r)]
    made = run_golive(ws, "package", str(source), "--version", version, "--json", *args, check=0).json()
    assert made["artifact"] == str(artifact)


def with_manifest_requires(ws: Path, version: str, requires: object) -> None:
    """The store's artifact of `version` with its manifest's `requires` replaced by hand (what a
    vendor's own build could write; `golive package` refuses a malformed one)."""
    artifact = store(ws) / f"northwind-{version}.tar.gz"
    out = io.BytesIO()
    with tarfile.open(artifact) as source, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isreg() else None
            if member.name.lstrip("./") == MANIFEST:
                manifest = json.loads(data)
                manifest["requires"] = requires
                data = json.dumps(manifest).encode()
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    packed = gzip.compress(out.getvalue(), mtime=0)
    artifact.write_bytes(packed)
    Path(f"{artifact}.sha256").write_text(f"{hashlib.sha256(packed).hexdigest()}  {artifact.name}\n")


def on_host(hosts, suffix: int) -> dict:
    """What a refusal must leave as it was: the releases, the artifact cache, the ledger, the lock."""
    def listing(path: str) -> list[str]:
        where = host_path(hosts, suffix, path)
        return sorted(os.listdir(where)) if where.is_dir() else []

    ledger = host_path(hosts, suffix, "/opt/northwind/.golive/ledger.jsonl")
    return {"releases": listing("/opt/northwind/releases"), "artifacts": listing("/opt/northwind/.golive/artifacts"),
            "ledger": ledger.read_text() if ledger.exists() else "",
            "current": os.readlink(link) if (link := host_path(hosts, suffix, "/opt/northwind/current")).is_symlink()
            else None}


def assert_left_alone(hosts, before: dict[int, dict]) -> None:
    for suffix, state in before.items():
        assert on_host(hosts, suffix) == state, NAMES[suffix]
        assert not host_path(hosts, suffix, "/opt/northwind/.golive/lock").exists(), f"{NAMES[suffix]} still locked"


def deploy(ws: Path, env: str, version: str, *extra: str, check: int | None = None):
    return run_golive(ws, "deploy", "manufacturer", env, "--release", version, *extra, check=check)


UNMET = {
    "python too old": ("python>=99", f"requires python >=99; the host has python3 {PYTHON}"),
    "python series": (f"python<{sys.version_info[0]}.{sys.version_info[1]}",
                      f"requires python <{sys.version_info[0]}.{sys.version_info[1]}; the host has python3 {PYTHON}"),
    "glibc too old": ("glibc>=2.999", f"requires glibc >=2.999; the host has glibc {GLIBC}"),
    "wrong architecture": (f"arch={OTHER_ARCH},s390x", f"requires arch {OTHER_ARCH} or s390x; the host has "
                                                       f"architecture {ARCH}"),
}


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
@pytest.mark.parametrize("case", sorted(UNMET), ids=sorted(UNMET))
def test_an_unmet_requirement_is_refused_before_anything_is_uploaded(workspace, test_hosts, tmp_path, case, engine):
    deploy(workspace, "staging", "1.0", check=0)  # a live release the refusal must leave live
    requirement, words = UNMET[case]
    package_with(workspace, tmp_path, "1.1", requirement)
    before = {STG: on_host(test_hosts, STG)}
    result = deploy(workspace, "staging", "1.1", "--engine", engine)
    assert result.returncode == 2, result.output
    assert f"mfg-stg-1: northwind-1.1.tar.gz {words}" in result.output
    assert "refused before anything was uploaded" in result.output
    assert "Traceback" not in result.output
    assert_left_alone(test_hosts, before)


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_every_unmet_requirement_of_every_host_is_listed_at_once(workspace, test_hosts, tmp_path, engine):
    package_with(workspace, tmp_path, "1.0", "python>=99", "glibc>=2.999", f"arch={OTHER_ARCH}")
    before = {PROD1: on_host(test_hosts, PROD1), PROD2: on_host(test_hosts, PROD2)}
    result = deploy(workspace, "production", "1.0", "--engine", engine, "--override-promotion", "the test")
    assert result.returncode == 2, result.output
    for name in ("mfg-prod-1", "mfg-prod-2"):
        for words in (f"requires python >=99; the host has python3 {PYTHON}",
                      f"requires glibc >=2.999; the host has glibc {GLIBC}",
                      f"requires arch {OTHER_ARCH}; the host has architecture {ARCH}"):
            assert f"{name}: northwind-1.0.tar.gz {words}" in result.output
    # the leader's lock (the environment's) and the other host's are both given back
    assert_left_alone(test_hosts, before)


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_a_met_requirement_deploys(workspace, test_hosts, tmp_path, engine):
    # amd64/arm64 are the Debian/Docker names of x86_64/aarch64; python and glibc by series
    alias = {"x86_64": "amd64", "aarch64": "arm64"}.get(ARCH, ARCH)
    package_with(workspace, tmp_path, "1.0", f"python>={sys.version_info[0]}.{sys.version_info[1]}",
                 "glibc>=2.17,<3", f"arch={alias},s390x")
    result = deploy(workspace, "staging", "1.0", "--engine", engine, "--json", check=0)
    assert [h["status"] for h in result.json()["hosts"]] == ["deployed"]
    assert on_host(test_hosts, STG)["current"].startswith("releases/1.0-") or \
        "/releases/1.0-" in on_host(test_hosts, STG)["current"]


def test_plan_shows_the_same_refusal(workspace, test_hosts, tmp_path):
    package_with(workspace, tmp_path, "1.0", "python>=99", f"arch={OTHER_ARCH}")
    before = snapshot_hosts(test_hosts)
    result = run_golive(workspace, "plan", "manufacturer", "production", "--release", "1.0")
    assert result.returncode == 2, result.output
    for name in ("mfg-prod-1", "mfg-prod-2"):
        assert f"{name}: northwind-1.0.tar.gz requires python >=99; the host has python3 {PYTHON}" in result.output
        assert f"{name}: northwind-1.0.tar.gz requires arch {OTHER_ARCH}; the host has architecture {ARCH}" \
            in result.output
    assert "golive deploy would refuse it before uploading anything" in result.output
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    # met: the plan is the plan
    package_with(workspace, tmp_path, "1.1", "python>=3.6")
    run_golive(workspace, "plan", "manufacturer", "production", "--release", "1.1", check=0)


MALFORMED = {
    "python not a requirement": ({"python": "3.11"}, "requires.python", "not a version requirement"),
    "glibc not text": ({"glibc": 2.28}, "requires.glibc", "must be a version requirement"),
    "arch not a list": ({"arch": "x86_64"}, "requires.arch", "non-empty list"),
    "unknown key": ({"kernel": ">=5.10"}, "requires.kernel", "unknown requirement 'kernel'"),
    "not a mapping": ([">=3.11"], "requires", "must be a mapping"),
}


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_a_malformed_declaration_is_bad_input_and_no_host_is_touched(workspace, test_hosts, engine):
    before = snapshot_hosts(test_hosts)
    for version, (requires, key, words) in zip(("1.0", "1.1", "9.9", "1.0", "1.1"), MALFORMED.values(),
                                               strict=True):
        with_manifest_requires(workspace, version, requires)
        for verb in ("deploy", "plan") if engine == "pyinfra" else ("deploy",):
            result = run_golive(workspace, verb, "manufacturer", "staging", "--release", version,
                                *(("--engine", engine) if verb == "deploy" else ()))
            assert result.returncode == 2, result.output
            assert f"northwind-{version}.tar.gz: {MANIFEST} {key}: " in result.output and words in result.output
            assert "nothing was sent to any host" in result.output
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []


def test_package_refuses_a_malformed_requirement(workspace, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "VERSION").write_text("2.0\n")
    for value, words in (("python=3.11", "not a version requirement"), ("arch==x86_64", "arch=NAME"),
                         ("os>=12", "golive checks python, glibc, arch")):
        result = run_golive(workspace, "package", str(source), "--version", "2.0", "--requires", value)
        assert result.returncode == 2 and "--requires" in result.output and words in result.output, result.output
    assert not (store(workspace) / "northwind-2.0.tar.gz").exists()


def test_preflight_reports_an_unmet_requirement_as_no_go_per_production_host(workspace, test_hosts, tmp_path):
    package_with(workspace, tmp_path, "1.0", "glibc>=2.999", f"arch={ARCH}")
    report = tmp_path / "report"
    result = run_golive(workspace, "preflight", "manufacturer", "--release", "1.0", "--report", str(report), "--json")
    assert result.returncode == 1, result.output
    data = result.json()
    red = {(r["where"], r["item"]): r for r in data["red"]}
    for name in ("mfg-prod-1", "mfg-prod-2"):
        item = red[(name, "requirements")]
        assert item["detail"] == f"northwind-1.0.tar.gz requires glibc >=2.999; the host has glibc {GLIBC}"
        assert name in item["action"]
    assert "requires glibc >=2.999" in (report / "report.md").read_text()
    # met: the item is green
    package_with(workspace, tmp_path, "1.1", f"arch={ARCH}")
    data = run_golive(workspace, "preflight", "manufacturer", "--release", "1.1", "--report", str(report),
                      "--json").json()
    assert ("mfg-prod-1", "requirements") in {(p["where"], p["item"]) for p in data["passed"]}
    assert not any(r["item"] == "requirements" for r in data["red"])


def test_preflight_reports_a_malformed_declaration_on_every_production_host(workspace, test_hosts, tmp_path):
    with_manifest_requires(workspace, "1.0", {"python": "3.11"})
    result = run_golive(workspace, "preflight", "manufacturer", "--release", "1.0", "--report", str(tmp_path / "r"),
                        "--json")
    assert result.returncode == 1, result.output
    red = {(r["where"], r["item"]): r for r in result.json()["red"]}
    for name in ("mfg-prod-1", "mfg-prod-2"):
        assert f"northwind-1.0.tar.gz: {MANIFEST} requires.python: " in red[(name, "requirements")]["detail"]

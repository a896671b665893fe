"""The Debian 12 base that every systemd test host boots, and the local apt repository the hosts use.

Both are built once from Debian's packages and cached under CACHE (``/var/cache/golive``, or
``$GOLIVE_CACHE``), each in a directory named after a hash of its recipe, so a changed recipe
builds anew and an unchanged one is found again in a fraction of a second::

    CACHE/base-<hash>/root/             the root filesystem (mmdebstrap), the hosts' read-only lower layer
    CACHE/base-<hash>/apt-sources/      the Debian mirrors it came from (for the repository's download)
    CACHE/base-<hash>/build.json        recipe, packages and versions, build time
    CACHE/apt-<hash>/                   a flat repository: *.deb, Packages, Release (trusted, unsigned)
    CACHE/apt-<hash>/lists/             apt's index of it, copied into each host so `apt-get install`
                                        works without a first `apt-get update`
    CACHE/apt-<hash>/build.json         recipe, packages, download and index time

The repository holds REPO_PACKAGES and every dependency (Recommends included, as apt installs by
default) that the base lacks. Each host sees it read-only at ``/srv/golive-apt`` and no other
source, so provisioning tests install real packages with no network at test time.

The mirrors are mmdebstrap's defaults for the suite (Debian's own, with updates and security);
``GOLIVE_DEBIAN_MIRROR`` names another (a URI or a sources file), without changing the hash.
Needs root, mmdebstrap and apt-ftparchive (``scripts/setup`` installs them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from golive.testing._common import SYSTEM_PATH, TestHostsError

CACHE = Path(os.environ.get("GOLIVE_CACHE", "/var/cache/golive"))
SUITE = "bookworm"
VARIANT = "apt"  # Essential: yes, apt, and what --include adds: nothing else
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",  # reboot, poweroff, shutdown
    "dbus",
    "libpam-systemd",  # an ssh login gets a logind session, as on a server
    "openssh-server",
    "iproute2",
    "python3",  # golive's host agent, Ansible modules
    "procps",
    "tzdata",  # priority required on Debian: every real server has it
    "netbase",  # /etc/services, /etc/protocols
)
REPO_PACKAGES = ("postgresql-15", "postgresql-client-15", "postgresql-common", "tree", "jq")
REPO_IN_HOSTS = "/srv/golive-apt"
# Run by mmdebstrap as its last step, with the root filesystem as $1 (on the machine, not chrooted).
BASE_HOOK = f"""set -e
root="$1"
# The mirrors go out of the base: a host's apt must see the local repository only.
mkdir -p "$root/../apt-sources"
mv "$root/etc/apt/sources.list" "$root/../apt-sources/mmdebstrap.list"
for f in "$root"/etc/apt/sources.list.d/*; do [ ! -e "$f" ] || mv "$f" "$root/../apt-sources/"; done
printf 'Types: deb\\nURIs: file:{REPO_IN_HOSTS}\\nSuites: ./\\nTrusted: yes\\n' \\
    > "$root/etc/apt/sources.list.d/golive-local.sources"
# Every host gets its own host keys and machine id.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
# A persistent journal, as on a server (and readable from the machine when a host fails to boot).
mkdir -p "$root/var/log/journal"
# Test hosts need no crash safety: dpkg skips its fsync per unpacked file (as Debian's container
# images do), and apt looks for no translations the local repository does not have.
echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/golive-unsafe-io"
echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/golive-no-translations"
"""
# Bumped when a build below changes in a way its recipe does not show.
BASE_RECIPE_VERSION = 1
REPO_RECIPE_VERSION = 2


def base_recipe() -> dict:
    return {
        "version": BASE_RECIPE_VERSION,
        "suite": SUITE,
        "variant": VARIANT,
        "packages": sorted(BASE_PACKAGES),
        "hook": BASE_HOOK,
    }


def repo_recipe(base: Path) -> dict:
    return {"version": REPO_RECIPE_VERSION, "base": base.name, "packages": sorted(REPO_PACKAGES)}


def base_dir() -> Path:
    return CACHE / f"base-{_digest(base_recipe())}"


def repo_dir(base: Path) -> Path:
    return CACHE / f"apt-{_digest(repo_recipe(base))}"


def ensure_base(log=sys.stderr) -> Path:
    """The base's directory, built first when missing (root filesystem in ``root/``)."""
    target = base_dir()
    if (target / "build.json").exists():
        return target
    require_tools("mmdebstrap")
    with _cache_lock():
        if (target / "build.json").exists():  # built meanwhile by another process
            return target
        print(f"golive.testing: building the Debian {SUITE} base in {target} (mmdebstrap, once)", file=log)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=CACHE))
        try:
            mirrors = [m for m in [os.environ.get("GOLIVE_DEBIAN_MIRROR", "").strip()] if m]
            _run(
                [
                    "mmdebstrap",
                    f"--variant={VARIANT}",
                    f"--include={','.join(BASE_PACKAGES)}",
                    f"--customize-hook={BASE_HOOK}",
                    SUITE,
                    str(work / "root"),
                    *mirrors,
                ],
                what="mmdebstrap",
                log_file=work / "mmdebstrap.log",
            )
            packages = subprocess.run(
                ["dpkg-query", f"--admindir={work}/root/var/lib/dpkg", "-W", "-f", "${Package} ${Version}\n"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()
            seconds = round(time.monotonic() - started, 1)
            _write_json(work / "build.json", {**base_recipe(), "installed": packages, "seconds": seconds})
            work.chmod(0o755)
            os.rename(work, target)
        except BaseException:
            _keep_log(work / "mmdebstrap.log", CACHE / f"{target.name}.failed.log")
            shutil.rmtree(work, ignore_errors=True)
            raise
        print(f"golive.testing: base built in {seconds:.0f} s ({len(packages)} packages)", file=log)
    return target


def ensure_repo(base: Path, log=sys.stderr) -> Path:
    """The local apt repository for this base, downloaded and indexed first when missing."""
    target = repo_dir(base)
    if (target / "build.json").exists():
        return target
    require_tools("apt-get", "apt-ftparchive", "unshare")
    with _cache_lock():
        if (target / "build.json").exists():
            return target
        print(f"golive.testing: downloading the local apt repository into {target} (once)", file=log)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=CACHE))
        try:
            repo = work / "repo"
            repo.mkdir()
            _download(base, work, repo)
            downloaded = round(time.monotonic() - started, 1)
            _index(repo)
            _make_lists(base, work, repo)
            debs = sorted(p.name for p in repo.glob("*.deb"))
            seconds = round(time.monotonic() - started, 1)
            _write_json(
                repo / "build.json",
                {**repo_recipe(base), "debs": debs, "download_seconds": downloaded, "seconds": seconds},
            )
            for path in [repo, *repo.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)  # apt's unprivileged _apt user reads it
            os.rename(repo, target)
        except BaseException:
            for log in ("apt.log", "check.log"):
                _keep_log(work / log, CACHE / f"{target.name}.failed-{log}")
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        size = sum(p.stat().st_size for p in target.glob("*.deb")) / 2**20
        print(f"golive.testing: repository ready in {seconds:.0f} s ({len(debs)} packages, {size:.0f} MiB)", file=log)
    return target


def prune(log=sys.stderr) -> None:
    """Delete the cached bases and repositories of other recipes (and leftovers of interrupted
    builds), except those a running host still mounts: each is some hundred MB."""
    if not CACHE.is_dir():
        return
    base = base_dir()
    keep = {base.name, repo_dir(base).name}

    def stale() -> list[Path]:
        return [
            entry for entry in sorted(CACHE.iterdir())
            if entry.is_dir() and entry.name not in keep and entry.name.lstrip(".").startswith(("base-", "apt-"))
        ]

    if not stale():
        return
    with _cache_lock():
        in_use = _mounted_cache_entries()
        for entry in stale():
            name = entry.name.lstrip(".").split(".")[0]
            if name in in_use:
                print(f"golive.testing: kept {entry}: a running test host uses it", file=log)
                continue
            shutil.rmtree(entry)
            print(f"golive.testing: removed {entry} (another recipe, or an interrupted build)", file=log)


def _mounted_cache_entries() -> set[str]:
    """Names of cache entries (base-<hash>, apt-<hash>) that some mount namespace on the machine
    mounts: an overlay's lowerdir, a repository's bind mount."""
    names, seen = set(), set()
    pattern = re.compile(r"\b((?:base|apt)-[0-9a-f]{12})\b")
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            namespace = os.readlink(f"/proc/{entry}/ns/mnt")
            if namespace in seen:
                continue
            seen.add(namespace)
            names.update(pattern.findall(Path(f"/proc/{entry}/mountinfo").read_text()))
        except OSError:
            continue
    return names


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool, path=SYSTEM_PATH) is None]
    if missing:
        raise TestHostsError(
            f"systemd test hosts need {', '.join(missing)}: run scripts/setup "
            "(it installs mmdebstrap, systemd-container and apt-utils with apt)"
        )
    if os.geteuid() != 0:
        raise TestHostsError("systemd test hosts need root (mounts, cgroups, systemd-nspawn)")


# ------------------------------------------------------------------------------ internals


def _download(base: Path, work: Path, repo: Path) -> None:
    """apt-get on the machine, but resolving against the base's dpkg status, its keys and its
    mirrors, and none of the machine's own apt configuration: exactly what the base lacks."""
    (work / "empty").mkdir()
    for sub in ("state/lists/partial", "cache/archives/partial"):
        (work / sub).mkdir(parents=True)
    config = work / "apt.conf"
    settings = {
        "Dir::Etc::Parts": work / "empty",
        "Dir::Etc::Main": "/dev/null",
        "Dir::Etc::SourceList": "/dev/null",
        "Dir::Etc::SourceParts": base / "apt-sources",
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": work / "empty",
        "Dir::Etc::Trusted": "/dev/null",
        "Dir::Etc::TrustedParts": base / "root/etc/apt/trusted.gpg.d",
        "Dir::State": work / "state",
        "Dir::State::status": base / "root/var/lib/dpkg/status",
        "Dir::Cache": work / "cache",
        "Dir::Log": work,
        "Debug::NoLocking": "true",
        "APT::Sandbox::User": "root",
        "APT::Install-Recommends": "true",  # what apt-get install does on the hosts
        "APT::Architecture": _base_architecture(base),
    }
    config.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    env = {"PATH": SYSTEM_PATH, "APT_CONFIG": str(config), "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    log = work / "apt.log"
    _run(["apt-get", "-q", "update"], what="apt-get update", env=env, log_file=log)
    _run(
        ["apt-get", "-q", "-y", "--download-only", "install", *REPO_PACKAGES],
        what="apt-get install --download-only",
        env=env,
        log_file=log,
    )
    for deb in (work / "cache/archives").glob("*.deb"):
        os.rename(deb, repo / deb.name)
    if not any(repo.glob("*.deb")):
        raise TestHostsError(f"apt downloaded nothing for {', '.join(REPO_PACKAGES)}: see {log}")


def _index(repo: Path) -> None:
    """Packages, then Release with Packages' hashes (apt ignores an index its Release does not hash)."""
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    for kind, name in (("packages", "Packages"), ("release", "Release")):
        output = subprocess.run(
            ["apt-ftparchive", kind, "."], cwd=repo, env=env, capture_output=True, text=True, check=False
        )
        if output.returncode != 0:
            raise TestHostsError(f"apt-ftparchive {kind} failed in {repo}: {output.stderr.strip()}")
        # Written under a hidden name first: Release must not list a half-written file, or itself.
        (repo / f".{name}").write_text(output.stdout)
        os.rename(repo / f".{name}", repo / name)


# In a private mount namespace: the base under a throwaway overlay, the repository where the hosts
# see it, and the base's own apt: `update` writes the index the hosts get, and a simulated install
# proves that the repository alone satisfies every package. Arguments: base root, repo, scratch dir.
CHECK_SCRIPT = f"""set -e
base="$1" repo="$2" scratch="$3"
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
mkdir -p "$scratch/root{REPO_IN_HOSTS}"
mount --bind -o ro "$repo" "$scratch/root{REPO_IN_HOSTS}"
mount -t proc proc "$scratch/root/proc"
chroot "$scratch/root" apt-get -q update
chroot "$scratch/root" apt-get -q -s install {" ".join(REPO_PACKAGES)}
cp -a "$scratch/root/var/lib/apt/lists" "$repo/../lists"
"""


def _make_lists(base: Path, work: Path, repo: Path) -> None:
    (work / "scratch").mkdir()
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    _run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", CHECK_SCRIPT, "check",
         str(base / "root"), str(repo), str(work / "scratch")],
        what="the repository check (apt-get update and a simulated install on the base)",
        env=env,
        log_file=work / "check.log",
    )
    lists = repo / "lists"
    os.rename(work / "lists", lists)
    for path in lists.iterdir():  # only the index files: not apt's lock, partial/ or auxfiles/
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.name == "lock":
            path.unlink()


def _base_architecture(base: Path) -> str:
    return subprocess.run(
        ["dpkg", f"--admindir={base}/root/var/lib/dpkg", "--print-architecture"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def _run(argv: list[str], *, what: str, log_file: Path, env: dict | None = None) -> None:
    with open(log_file, "ab") as log:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env or {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
        )
    if result.returncode != 0:
        lines = log_file.read_text(errors="replace").strip().splitlines()[-15:]
        raise TestHostsError(
            f"{what} failed (exit {result.returncode}); its last lines (the whole log is kept beside the "
            f"cache as *.failed*.log):\n" + "\n".join(lines)
        )


def _keep_log(log: Path, keep: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.copyfile(log, keep)


def _digest(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def _cache_lock():
    """One build at a time on this machine (two pytest workers may both find the cache empty)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield

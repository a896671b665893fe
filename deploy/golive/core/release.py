"""Release ids and config hashes: the names both engines and the example app agree on."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Always used with fullmatch: `$` would also match before a final newline ("1.0\n").
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")


def config_hash(files: Mapping[str, bytes]) -> str:
    """sha256 over `dest NUL sha256(content) LF` for every rendered file, sorted by dest."""
    digest = hashlib.sha256()
    for dest in sorted(files):
        digest.update(f"{dest}\0{hashlib.sha256(files[dest]).hexdigest()}\n".encode())
    return digest.hexdigest()


def run_settings_hash(service: Mapping[str, str], health: Mapping[str, Any], hooks: Mapping[str, str]) -> str:
    """sha256 over `name NUL value LF` for every rendered service, health and hook setting, sorted:
    how the release runs (its run file, less the secret files' digests that the config hash covers).
    Written the same way by the Ansible role: health.timeout and health.interval as floats, retries
    as an int, expect's names sorted and joined with ','. The values may hold secrets: only this
    digest ever leaves the controller."""
    fields = {f"service.{k}": str(v) for k, v in service.items()}
    fields.update({f"hooks.{k}": str(v) for k, v in hooks.items()})
    fields.update({"health.url": str(health.get("url", "")), "health.command": str(health.get("command", "")),
                   "health.expect": ",".join(sorted(health.get("expect", ()))),
                   "health.timeout": str(float(health.get("timeout", 2.0))),
                   "health.retries": str(int(health.get("retries", 25))),
                   "health.interval": str(float(health.get("interval", 0.2)))})
    digest = hashlib.sha256()
    for line in sorted(f"{name}\0{value}\n" for name, value in fields.items()):
        digest.update(line.encode())
    return digest.hexdigest()


def release_id(version: str, cfg_hash: str, settings_hash: str) -> str:
    """A config-only change makes a new release directory, so code and config switch together; so
    does a change of how the release runs (its service commands, health check, hooks: golive.yml),
    so a fixed golive.yml takes effect on the next deploy of the same version, and a kept release
    is rolled back to with the settings it was verified with."""
    both = hashlib.sha256(f"{cfg_hash}\0{settings_hash}".encode()).hexdigest()
    return f"{version}-{both[:8]}"


def version_of(release: str) -> str:
    return release.rsplit("-", 1)[0] if re.search(r"-[0-9a-f]{8}\Z", release) else release


def parse_sha256_file(text: str, artifact_name: str) -> str | None:
    """The hex digest from a `sha256sum` line naming the artifact (or a bare digest)."""
    for line in text.splitlines():
        parts = line.strip().split()
        if not parts:
            continue
        digest = parts[0].lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            return None
        if len(parts) == 1 or parts[-1].lstrip("*") == artifact_name:
            return digest
    return None


@dataclass(frozen=True)
class Artifact:
    """A release artifact in the store, with the digest its .sha256 file promises."""

    version: str
    name: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RenderedFile:
    dest: str
    content: bytes
    mode: int
    secret: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class RenderedConfig:
    """Every config file of one host for one release, and the hash that names it."""

    host: str
    files: tuple[RenderedFile, ...]

    @property
    def hash(self) -> str:
        return config_hash({f.dest: f.content for f in self.files})

    def file(self, dest: str) -> RenderedFile | None:
        return next((f for f in self.files if f.dest == dest), None)

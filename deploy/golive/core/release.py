"""Release ids and config hashes: the names both engines and the example app agree on."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Always used with fullmatch: `$` would also match before a final newline ("1.0\n").
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")


def config_hash(files: Mapping[str, bytes]) -> str:
    """sha256 over `dest NUL sha256(content) LF` for every rendered file, sorted by dest."""
    digest = hashlib.sha256()
    for dest in sorted(files):
        digest.update(f"{dest}\0{hashlib.sha256(files[dest]).hexdigest()}\n".encode())
    return digest.hexdigest()


def release_id(version: str, cfg_hash: str) -> str:
    """A config-only change makes a new release directory, so code and config switch together."""
    return f"{version}-{cfg_hash[:8]}"


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

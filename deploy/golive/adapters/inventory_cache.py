"""A cache of loaded inventories, so a deploy does not pay ansible-core's start-up (~0.2 s) each run.

ansible-core stays the only reader of inventories: the cache holds exactly what it returned, and is
used only while every input is unchanged — every file under inventories/<customer>/, ansible.cfg,
golive.yml, ANSIBLE_* variables, and the ansible-core and golive versions. The loaded variables
include decrypted vault values, so with a vault password the cache is encrypted (AES-256-GCM, key
from the password with PBKDF2 like Ansible Vault itself): it protects secrets as well as the vault.
Without a password no secret is in it that is not already in the workspace's plain files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from golive.adapters.ansible_env import ansible_environment
from golive.core.model import Connection, Customer, Environment, Host

CACHE_DIR = ".golive-cache"
KDF_ITERATIONS = 10000  # Ansible Vault's PBKDF2 count


def inventory_files(inventory: Path) -> list[tuple[str, Path, str]]:
    """Every file ansible-core can read under an inventory directory, as (path relative to it, path,
    link targets on the way): symlinks to files and to directories followed, as ansible-core follows
    them, each real directory visited once (a link loop ends there). Sorted."""
    found: list[tuple[str, Path, str]] = []
    seen: set[tuple[int, int]] = set()

    def walk(directory: Path, relative: str, links: str) -> None:
        try:
            info = directory.stat()
        except OSError:
            return
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            name = f"{relative}/{entry.name}" if relative else entry.name
            via = links
            if entry.is_symlink():
                try:
                    via = f"{links}{name}->{os.readlink(entry.path)}\0"
                except OSError:
                    continue
            try:
                if entry.is_dir():  # follows links
                    walk(Path(entry.path), name, via)
                elif entry.is_file():
                    found.append((name, Path(entry.path), via))
            except OSError:
                continue

    walk(inventory, "", "")
    return found


def fingerprint(workspace: Path, customer: str, versions: str) -> str:
    """What the loaded inventory depends on (no secret in it): every file ansible-core reads, through
    links too (their targets included, so retargeting a link is a change even to equal content)."""
    digest = hashlib.sha256(versions.encode())
    inventory = workspace / "inventories" / customer
    for relative, path, links in inventory_files(inventory):
        try:
            content = hashlib.sha256(path.read_bytes()).digest()
        except OSError:
            content = b"unreadable"
        digest.update(f"{customer}/{relative}\0{links}".encode() + b"\0" + content)
    for name in ("ansible.cfg", "golive.yml"):
        if (workspace / name).is_file():
            digest.update(name.encode() + b"\0" + hashlib.sha256((workspace / name).read_bytes()).digest())
    # The settings ansible-core will run with: golive's defaults unless the environment overrides them.
    settings = {**ansible_environment(workspace), **{k: v for k, v in os.environ.items() if k.startswith("ANSIBLE_")}}
    for key in sorted(settings):
        digest.update(f"{key}={settings[key]}\0".encode())
    return digest.hexdigest()


def _key(password: bytes, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password, salt, KDF_ITERATIONS, 32)


def _json_default(value: Any) -> Any:
    """YAML dates and timestamps survive the cache as themselves."""
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, date):
        return {"__date__": value.isoformat()}
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _json_object(value: dict[str, Any]) -> Any:
    if len(value) == 1 and "__datetime__" in value:
        return datetime.fromisoformat(value["__datetime__"])
    if len(value) == 1 and "__date__" in value:
        return date.fromisoformat(value["__date__"])
    return value


def _encode(customer: Customer) -> bytes:
    def host(h: Host) -> dict[str, Any]:
        return {"name": h.name, "customer": h.customer, "environment": h.environment, "groups": list(h.groups),
                "vars": dict(h.vars), "connection": asdict(h.connection), "secret_values": sorted(h.secret_values),
                "vault_paths": sorted(h.vault_paths), "secret_paths": sorted(h.secret_paths),
                "var_origins": dict(h.var_origins)}

    return json.dumps({"name": customer.name, "inventory_dir": customer.inventory_dir,
                       "environments": [{"name": e.name, "hosts": [host(h) for h in e.hosts]}
                                        for e in customer.environments]}, default=_json_default).encode()


def _decode(data: bytes) -> Customer:
    raw = json.loads(data, object_hook=_json_object)

    def host(h: dict[str, Any]) -> Host:
        return Host(h["name"], h["customer"], h["environment"], tuple(h["groups"]), MappingProxyType(h["vars"]),
                    Connection(**h["connection"]), frozenset(h["secret_values"]), frozenset(h.get("vault_paths", ())),
                    MappingProxyType(h["var_origins"]), frozenset(h["secret_paths"]))

    return Customer(raw["name"], raw["inventory_dir"],
                    tuple(Environment(e["name"], raw["name"], tuple(host(h) for h in e["hosts"]))
                          for e in raw["environments"]))


class InventoryCache:
    def __init__(self, workspace: Path, password: bytes | None, versions: str) -> None:
        self.workspace = workspace
        self.password = password
        self.versions = versions

    def _path(self, customer: str) -> Path:
        return self.workspace / CACHE_DIR / f"inventory-{customer}.json"

    def load(self, customer: str) -> Customer | None:
        try:
            stored = json.loads(self._path(customer).read_text())
        except (OSError, ValueError):
            return None
        if stored.get("fingerprint") != fingerprint(self.workspace, customer, self.versions):
            return None
        try:
            if stored.get("encrypted"):
                if not self.password:
                    return None
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                salt, nonce = bytes.fromhex(stored["salt"]), bytes.fromhex(stored["nonce"])
                data = AESGCM(_key(self.password, salt)).decrypt(nonce, bytes.fromhex(stored["data"]),
                                                                  stored["fingerprint"].encode())
            else:
                data = stored["data"].encode()
            return _decode(data)
        except Exception:  # another password, a damaged file: it is only a cache, load afresh
            return None

    def store(self, customer: Customer) -> None:
        data = _encode(customer)
        stored: dict[str, Any] = {"fingerprint": fingerprint(self.workspace, customer.name, self.versions)}
        if self.password:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            salt, nonce = os.urandom(16), os.urandom(12)
            stored.update(encrypted=True, salt=salt.hex(), nonce=nonce.hex(),
                          data=AESGCM(_key(self.password, salt)).encrypt(nonce, data,
                                                                         stored["fingerprint"].encode()).hex())
        else:
            stored.update(encrypted=False, data=data.decode())
        path = self._path(customer.name)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(stored, handle)
            os.replace(temporary, path)
        except OSError:
            pass  # a read-only workspace simply runs without the cache

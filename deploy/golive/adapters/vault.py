"""Where the vault password comes from, resolved once for golive and for ansible-core:
--vault-password-file, then $GOLIVE_VAULT_PASSWORD_FILE, then $ANSIBLE_VAULT_PASSWORD_FILE, then
ansible.cfg's `vault_password_file` (relative to ansible.cfg, as Ansible reads it). An executable
file is run and its output is the password, as with Ansible's password scripts."""

from __future__ import annotations

import configparser
import os
import subprocess
from importlib import metadata
from pathlib import Path

from golive.core.errors import BadInput

INVENTORIES = "inventories"


def customer_names(workspace: Path) -> list[str]:
    base = workspace / INVENTORIES
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def vault_password_file(workspace: Path, explicit: str | None) -> str | None:
    for candidate in (explicit, os.environ.get("GOLIVE_VAULT_PASSWORD_FILE"),
                      os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")):
        if candidate:
            return candidate
    config_path = Path(os.environ.get("ANSIBLE_CONFIG") or workspace / "ansible.cfg")
    if not config_path.is_file():
        return None
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read(config_path)
    except configparser.Error as error:
        raise BadInput(f"{config_path}: {error}") from None
    value = config.get("defaults", "vault_password_file", fallback="").strip()
    return str(config_path.parent / os.path.expanduser(value)) if value else None


class VaultPassword:
    def __init__(self, file: str | None) -> None:
        self.file = file

    def read(self) -> bytes | None:
        if not self.file:
            return None
        path = Path(self.file)
        try:
            if os.access(path, os.X_OK) and path.is_file():
                secret = subprocess.run([str(path)], capture_output=True, check=True, timeout=60).stdout.strip()
            else:
                secret = path.read_bytes().strip()
        except (OSError, subprocess.SubprocessError) as error:
            raise BadInput(f"vault password file {self.file}: {getattr(error, 'strerror', None) or error}") from None
        if not secret:
            raise BadInput(f"vault password file {self.file} is empty")
        return secret


def inventory_versions() -> str:
    """What else decides how an inventory loads: ansible-core's version and golive's loader."""
    loader = Path(__file__).with_name("inventory.py").read_bytes()
    return f"ansible-core {metadata.version('ansible-core')} loader {hash_bytes(loader)}"


def hash_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]

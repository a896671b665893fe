"""Ansible settings golive needs, applied before ansible-core is first imported.

ansible-core reads its configuration at import time, so every module that imports ansible goes
through `import_ansible()` first.
"""

from __future__ import annotations

import os
from pathlib import Path

_STRICT_SETTINGS = {
    # A duplicate key in a vars file is an error, not a silent override.
    "ANSIBLE_DUPLICATE_YAML_DICT_KEY": "error",
    # An inventory file that does not parse is an error, not a warning and an empty inventory.
    "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
    "ANSIBLE_INVENTORY_ENABLED": "yaml,ini",
    "ANSIBLE_DEPRECATION_WARNINGS": "false",
    "ANSIBLE_LOCALHOST_WARNING": "false",
    "ANSIBLE_NOCOLOR": "true",
}


def ansible_environment(workspace: Path) -> dict[str, str]:
    """The environment variables that make Ansible read this workspace the way golive does."""
    env = dict(_STRICT_SETTINGS)
    config = workspace / "ansible.cfg"
    if config.exists():
        env["ANSIBLE_CONFIG"] = str(config)
    return env


def import_ansible(workspace: Path) -> None:
    for key, value in ansible_environment(workspace).items():
        os.environ.setdefault(key, value)

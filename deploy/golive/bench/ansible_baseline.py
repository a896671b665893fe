"""The Ansible baseline: the same role run directly with ansible-playbook, tuned as an expert
would (the workspace's ansible.cfg: pipelining, forks = host count, SSH ControlPersist, no fact
gathering), no golive in the loop."""

from __future__ import annotations

import sys
from pathlib import Path


def command(ws: Path, customer: str, environment: str, version: str, action: str) -> list[str]:
    playbook = Path(sys.executable).with_name("ansible-playbook")
    program = [str(playbook)] if playbook.exists() else [sys.executable, "-m", "ansible.cli.playbook"]
    base = [*program, "-i", f"inventories/{customer}", "--limit", environment]
    if action == "rollback":
        return [*base, "playbooks/rollback.yml"]
    return [*base, "playbooks/deploy.yml", "-e", f"golive_release_version={version}"]

"""Shared by the check, drift and preflight tests: doing things on a test host the way an operator
with a shell would (over SSH, host key checked), to plant drift and undo it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import TEST_NET, VAULT_SECRETS, WAIT_BOUND_SECONDS, copy_workspace, run_golive


def on_host(test_hosts, suffix: int, command: str) -> str:
    result = subprocess.run(["ssh", "-F", "/dev/null", "-i", test_hosts.client_key, "-o", "IdentitiesOnly=yes",
                             "-o", f"UserKnownHostsFile={test_hosts.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                             "-o", "BatchMode=yes", f"root@{TEST_NET}.{suffix}", command],
                            capture_output=True, text=True, timeout=WAIT_BOUND_SECONDS)
    assert result.returncode == 0, result.stderr
    return result.stdout


def drift(ws: Path, expect: int) -> dict:
    """`golive drift manufacturer --json`, its exit code checked and no vault secret in its output."""
    result = run_golive(ws, "drift", "manufacturer", "--json")
    assert result.returncode == expect, result.output
    for secret in VAULT_SECRETS:
        assert secret not in result.output
    return result.json()


def deployed_without_drift(directory: Path, test_hosts, release_store) -> Path:
    """The example workspace with 1.0 on staging (checked) and production, and drift finding nothing."""
    test_hosts.reset()
    ws = copy_workspace(directory / "ws", test_hosts, release_store)
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    run_golive(ws, "check", "manufacturer", "staging", check=0)
    run_golive(ws, "deploy", "manufacturer", "production", "--release", "1.0", check=0)
    assert drift(ws, 0)["findings"] == []
    return ws


HAND_EDIT = "echo '# tuned by hand' >> /etc/northwind/northwind.ini"
UNDO_HAND_EDIT = "sed -i '/# tuned by hand/d' /opt/northwind/current/config/northwind.ini"
OPEN_SECRET = "chmod 0644 /etc/northwind/secrets.env"
CLOSE_SECRET = "chmod 0600 /etc/northwind/secrets.env"

"""Shared by the check, drift and preflight tests: doing things on a test host the way an operator
with a shell would (over SSH, host key checked), to plant drift and undo it."""

from __future__ import annotations

import subprocess

from tests.conftest import TEST_NET, WAIT_BOUND_SECONDS


def on_host(test_hosts, suffix: int, command: str) -> str:
    result = subprocess.run(["ssh", "-F", "/dev/null", "-i", test_hosts.client_key, "-o", "IdentitiesOnly=yes",
                             "-o", f"UserKnownHostsFile={test_hosts.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                             "-o", "BatchMode=yes", f"root@{TEST_NET}.{suffix}", command],
                            capture_output=True, text=True, timeout=WAIT_BOUND_SECONDS)
    assert result.returncode == 0, result.stderr
    return result.stdout


HAND_EDIT = "echo '# tuned by hand' >> /etc/northwind/northwind.ini"
UNDO_HAND_EDIT = "sed -i '/# tuned by hand/d' /opt/northwind/current/config/northwind.ini"
OPEN_SECRET = "chmod 0644 /etc/northwind/secrets.env"
CLOSE_SECRET = "chmod 0600 /etc/northwind/secrets.env"

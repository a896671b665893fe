"""The live progress table shows each step while it runs (issue 14, defect 4): verify, then the
automatic rollback's steps in the `undo` column, before the host's batch has ended. The health
check waits on gate files the test creates, so the test waits on events, never on the clock."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, host_path, run_golive, wait_until
from tests.integration.test_deploy import STG, ledger

GATES = "/opt/northwind/gates"


def gated_health(workspace) -> None:
    """Going forward the check fails once `forward` exists; going back it passes once `back` exists."""
    app = workspace / "golive.yml"
    command = (f'if [ "$GOLIVE_DIRECTION" = rollback ]; then while [ ! -e {GATES}/back ]; do sleep 0.05; done; '
               f'exit 0; fi; while [ ! -e {GATES}/forward ]; do sleep 0.05; done; exit 1')
    url = '  url: "http://{{ listen_address }}:{{ http_port }}/health"\n  expect: [version, config_hash]\n'
    text = app.read_text().replace(url, f"  command: {json.dumps(command)}\n").replace("timeout: 2 ", "timeout: 900 ")
    app.write_text(text.replace("retries: 25", "retries: 1"))


@pytest.mark.parametrize("engine", ("pyinfra", "ansible"))
def test_verify_and_the_undo_show_while_they_run(workspace, test_hosts, tmp_path, engine):
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    gated_health(workspace)
    gates = host_path(test_hosts, STG, GATES)
    gates.mkdir()
    events = tmp_path / "events.jsonl"
    before = len(ledger(test_hosts, STG))
    process = subprocess.Popen([sys.executable, "-m", "golive", "deploy", "manufacturer", "staging", "--release", "1.1",
                                "--engine", engine, "--workspace", str(workspace)], cwd=str(workspace),
                               env={**__import__("os").environ, "PYTHONPATH": str(REPO / "deploy"),
                                    "GOLIVE_PROGRESS_EVENTS": str(events)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def seen(column: str, status: str) -> bool:
        lines = events.read_text().splitlines() if events.exists() else []
        return any((e["host"], e["column"], e["status"]) == ("mfg-stg-1", column, status)
                   for e in map(json.loads, lines))

    try:
        wait_until(lambda: seen("verify", "running") or process.poll() is not None, "verify shown running")
        assert process.poll() is None and len(ledger(test_hosts, STG)) == before  # the batch is still running
        (gates / "forward").touch()
        wait_until(lambda: seen("undo", "running") or process.poll() is not None, "undo shown running")
        assert process.poll() is None and len(ledger(test_hosts, STG)) == before
        assert seen("verify", "failed")
        (gates / "back").touch()
        out, err = process.communicate(timeout=600)
    finally:
        (gates / "forward").touch()
        (gates / "back").touch()
        if process.poll() is None:
            process.communicate(timeout=600)
    assert process.returncode == 3, out + err
    assert seen("undo", "ok") and seen("result", "rolled_back"), events.read_text()
    assert ledger(test_hosts, STG)[-1]["result"] == "rolled_back"

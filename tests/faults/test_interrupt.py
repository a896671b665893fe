"""Ctrl-C during a deploy: golive says where each host was and what happens now, with no traceback
and no stray `KeyboardInterrupt` line; the hosts' agents finish on their own and the environment
ends on one complete release."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.conftest import REPO, host_path, live_release_problems, run_golive, set_hook, wait_until

STARTED = "/opt/northwind/shared/data/hook-started"
GO_ON = "/opt/northwind/shared/data/hook-go-on"  # the test lets the hook end once Ctrl-C is sent


def test_ctrl_c_during_a_deploy_says_where_each_host_was(workspace, test_hosts):
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    # The hook marks that the cutover batch runs on the host, then waits for the test: the interrupt
    # lands inside it however loaded the machine is (the loop's bound only keeps a broken test finite).
    set_hook(workspace, "before_cutover",
             f"touch {STARTED}; i=0; while [ ! -e {GO_ON} ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done")
    env = {**os.environ, "PYTHONPATH": str(REPO / "deploy")}
    process = subprocess.Popen([sys.executable, "-m", "golive", "deploy", "manufacturer", "staging", "--release", "1.1",
                                "--workspace", str(workspace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=str(workspace))
    marker = host_path(test_hosts, 11, STARTED)
    wait_until(lambda: marker.exists() or process.poll() is not None, "the deploy reaching its hook")
    assert process.poll() is None, f"the deploy ended before its hook ran:\n{process.communicate()}"
    process.send_signal(signal.SIGINT)
    # delivered, while the hook runs: now let the hook end (golive answers Ctrl-C once the host's
    # round trip returns; the agent finishes the batch either way)
    host_path(test_hosts, 11, GO_ON).touch()
    stdout, stderr = process.communicate(timeout=300)
    output = stdout + stderr
    assert process.returncode == 130, output
    assert "Traceback" not in output and not any(line.strip() == "KeyboardInterrupt"
                                                 for line in output.splitlines()), output
    assert "golive: interrupted" in stderr and "mfg-stg-1: at " in stderr, stderr
    assert "golive status manufacturer staging" in stderr, stderr
    # The agent finishes the batch without its controller: it records the outcome in the ledger.
    ledger = host_path(test_hosts, 11, "/opt/northwind/.golive/ledger.jsonl")
    wait_until(lambda: any(json.loads(line).get("release", "").startswith("1.1-")
                           for line in ledger.read_text().splitlines() if line.strip()),
               lambda: f"the agent recording the interrupted deploy:\n{ledger.read_text()}")
    assert live_release_problems(test_hosts, 11) == []

"""Ctrl-C during a deploy: golive says where each host was and what happens now, with no traceback
and no stray `KeyboardInterrupt` line; the hosts' agents finish on their own and the environment
ends on one complete release."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO, host_path, live_release_problems, run_golive, set_hook

STARTED = "/opt/northwind/shared/data/hook-started"


def test_ctrl_c_during_a_deploy_says_where_each_host_was(workspace, test_hosts):
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    # The hook marks that the cutover batch runs on the host, then takes a while: the interrupt lands inside it.
    set_hook(workspace, "before_cutover", f"touch {STARTED}; sleep 3")
    env = {**os.environ, "PYTHONPATH": str(REPO / "deploy")}
    process = subprocess.Popen([sys.executable, "-m", "golive", "deploy", "manufacturer", "staging", "--release", "1.1",
                                "--workspace", str(workspace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=str(workspace))
    marker = host_path(test_hosts, 11, STARTED)
    while not marker.exists() and process.poll() is None:  # an event: the deploy either gets there or ends
        time.sleep(0.05)
    assert process.poll() is None, f"the deploy ended before its hook ran:\n{process.communicate()}"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    output = stdout + stderr
    assert process.returncode == 130, output
    assert "Traceback" not in output and not any(line.strip() == "KeyboardInterrupt"
                                                 for line in output.splitlines()), output
    assert "golive: interrupted" in stderr and "mfg-stg-1: at " in stderr, stderr
    assert "golive status manufacturer staging" in stderr, stderr
    # The agent finishes the batch without its controller: it records the outcome in the ledger.
    ledger = host_path(test_hosts, 11, "/opt/northwind/.golive/ledger.jsonl")
    bound = time.monotonic() + 600  # only so that a broken agent fails the test instead of hanging it
    while not any(json.loads(line).get("release", "").startswith("1.1-")
                  for line in ledger.read_text().splitlines() if line.strip()):
        assert time.monotonic() < bound, f"the agent never recorded the interrupted deploy:\n{ledger.read_text()}"
        time.sleep(0.05)
    assert live_release_problems(test_hosts, 11) == []

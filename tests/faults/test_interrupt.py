"""Ctrl-C during a run: golive stops at once, while the host is still busy, says where each host was
and what happens now, with no traceback and no stray `KeyboardInterrupt` line, and exits 130; the
hosts' agents finish on their own and the environment ends on one complete release.

golive runs here as a terminal runs it: its own process group (the foreground job a terminal's
Ctrl-C signals, ansible-playbook with it), stderr a terminal (the live progress display runs, as an
operator sees it), stdout a pipe."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field

import pytest

from tests.conftest import (
    REPO,
    WAIT_BOUND_SECONDS,
    host_path,
    live_release_problems,
    live_version,
    run_golive,
    set_hook,
    wait_until,
)

STARTED = "/opt/northwind/shared/data/wait-started"
GO_ON = "/opt/northwind/shared/data/wait-go-on"  # the test lets the host's wait end once golive has exited
ENDED = "/opt/northwind/shared/data/wait-ended"
# Marks that it runs, waits for the test, marks that it ended (the loop's bound only keeps a broken
# test finite).
WAIT_ON_THE_HOST = (f"touch {STARTED}; i=0; while [ ! -e {GO_ON} ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); "
                    f"done; touch {ENDED}")


@dataclass
class AtATerminal:
    process: subprocess.Popen
    shown: bytearray = field(default_factory=bytearray)  # what the terminal showed (stderr)
    reader: threading.Thread | None = None

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)  # what the terminal does: the whole foreground job

    def ended(self) -> tuple[str, str]:
        """golive's stdout and what its terminal showed, escape sequences taken out, once it exited."""
        stdout, _ = self.process.communicate(timeout=WAIT_BOUND_SECONDS)  # the bound only ends a hang
        assert self.reader is not None
        self.reader.join(timeout=WAIT_BOUND_SECONDS)
        return stdout, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.shown.decode("utf-8", "replace"))


def at_a_terminal(workspace, *args: str) -> AtATerminal:
    terminal, golive_side = os.openpty()
    env = {**{k: v for k, v in os.environ.items() if k not in ("ANSIBLE_CONFIG", "FORCE_COLOR", "TTY_COMPATIBLE")},
           "PYTHONPATH": str(REPO / "deploy")}
    process = subprocess.Popen([sys.executable, "-m", "golive", args[0], "--workspace", str(workspace), *args[1:]],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=golive_side, text=True,
                               env=env, cwd=str(workspace), process_group=0)
    os.close(golive_side)
    run = AtATerminal(process)

    def read() -> None:
        while True:
            try:
                data = os.read(terminal, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not data:
                break
            run.shown += data
        os.close(terminal)

    run.reader = threading.Thread(target=read, daemon=True)
    run.reader.start()
    return run


def assert_stopped_while_the_host_waits(run: AtATerminal, test_hosts, suffix: int) -> tuple[str, str]:
    """Ctrl-C once the host's wait has started; golive must exit 130 while the host still waits."""
    started = host_path(test_hosts, suffix, STARTED)
    wait_until(lambda: started.exists() or run.process.poll() is not None, "the run reaching its wait on the host")
    assert run.process.poll() is None, f"the run ended before its wait on the host:\n{run.ended()}"
    run.ctrl_c()
    stdout, shown = run.ended()
    still_waiting = not host_path(test_hosts, suffix, ENDED).exists()
    host_path(test_hosts, suffix, GO_ON).touch()  # now the host's wait may end (golive has exited)
    output = stdout + shown
    assert run.process.returncode == 130, output
    assert still_waiting, f"golive exited only once the host's wait had ended:\n{output}"
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "golive: interrupted" in shown, shown
    return stdout, shown


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_ctrl_c_during_a_deploy_says_where_each_host_was(workspace, test_hosts, engine):
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    set_hook(workspace, "before_cutover", WAIT_ON_THE_HOST)
    run = at_a_terminal(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", engine)
    _, shown = assert_stopped_while_the_host_waits(run, test_hosts, 11)
    assert "mfg-stg-1: at " in shown, shown
    assert "golive status manufacturer staging" in shown, shown
    if engine == "pyinfra":
        # The agent finishes the batch without its controller: it records the outcome in the ledger.
        ledger = host_path(test_hosts, 11, "/opt/northwind/.golive/ledger.jsonl")
        wait_until(lambda: any(json.loads(line).get("release", "").startswith("1.1-")
                               for line in ledger.read_text().splitlines() if line.strip()),
                   lambda: f"the agent recording the interrupted deploy:\n{ledger.read_text()}")
    else:
        # ansible-playbook stopped with the task it ran (its hook): the host's hook ends on its own.
        wait_until(lambda: host_path(test_hosts, 11, ENDED).exists(), "the host's hook ending on its own")
    assert live_release_problems(test_hosts, 11) == []


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            found += [int(child) for child in handle.read().split()]
    return found


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def test_sigint_to_golive_alone_stops_its_ansible_playbook_and_the_re_run_converges(workspace, test_hosts):
    """`kill -INT <golive pid>` (golive alone, not its process group: as a supervisor or a script
    sends it) while `deploy --engine ansible` waits on a before_cutover hook: golive passes the
    interrupt on to its ansible-playbook, waits for it, says what the hosts do now and to run
    `golive status`; no ansible-playbook of it is left running; the same deploy run again converges
    (run by the default engine: either engine completes what the other left)."""
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    set_hook(workspace, "before_cutover", WAIT_ON_THE_HOST)
    run = at_a_terminal(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", "--engine", "ansible")
    started = host_path(test_hosts, 11, STARTED)
    wait_until(lambda: started.exists() or run.process.poll() is not None, "the deploy reaching its hook")
    assert run.process.poll() is None, f"the deploy ended before its hook:\n{run.ended()}"
    playbooks = [pid for pid in children(run.process.pid) if running(pid)]
    assert len(playbooks) == 1, playbooks  # golive's one child: ansible-playbook
    with open(f"/proc/{playbooks[0]}/cmdline", "rb") as handle:
        assert b"ansible" in handle.read()
    os.kill(run.process.pid, signal.SIGINT)
    try:
        stdout, shown = run.ended()
        output = stdout + shown
        assert not running(playbooks[0]), f"ansible-playbook was left running after golive exited:\n{output}"
    finally:
        host_path(test_hosts, 11, GO_ON).touch()  # the host's hook may end now
    assert run.process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "golive: interrupted" in shown and "ansible-playbook stops" in shown, shown
    assert "mfg-stg-1: at " in shown and "golive status manufacturer staging" in shown, shown
    set_hook(workspace, "before_cutover", "")
    again = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1")
    assert again.returncode == 0, again.output
    assert live_version(test_hosts, 11) == "1.1" and live_release_problems(test_hosts, 11) == []
    assert not host_path(test_hosts, 11, "/opt/northwind/.golive/lock").exists(), again.output


def test_ctrl_c_while_the_leader_hangs_sends_it_nothing_more(workspace, test_hosts):
    """Ctrl-C is often pressed because a host hangs: golive then sends it nothing more (giving the
    leader's lock back would wait as long as the host hangs). The leader keeps the environment lock
    while its agent finishes the batch on its own; the re-run takes the lock over and converges."""
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    set_hook(workspace, "before_cutover", WAIT_ON_THE_HOST)
    run = at_a_terminal(workspace, "deploy", "manufacturer", "staging", "--release", "1.1")
    started = host_path(test_hosts, 11, STARTED)
    wait_until(lambda: started.exists() or run.process.poll() is not None, "the deploy reaching its hook")
    assert run.process.poll() is None, f"the deploy ended before its hook:\n{run.ended()}"
    test_hosts.pause("h11")  # its sshd answers nothing now; the agent and its hook run on
    try:
        run.ctrl_c()
        stdout, shown = run.ended()
    finally:
        test_hosts.pause("h11", paused=False)
    output = stdout + shown
    assert run.process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "golive: interrupted" in shown and "mfg-stg-1: at " in shown, shown
    host_path(test_hosts, 11, GO_ON).touch()
    ledger = host_path(test_hosts, 11, "/opt/northwind/.golive/ledger.jsonl")

    def entries() -> list[dict]:
        return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]

    wait_until(lambda: any(e.get("release", "").startswith("1.1-") for e in entries()),
               lambda: f"the agent recording the interrupted deploy:\n{ledger.read_text()}")
    assert host_path(test_hosts, 11, "/opt/northwind/.golive/lock").exists(), "the environment lock was given back"
    set_hook(workspace, "before_cutover", "")
    again = run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.1", check=0)
    assert [e["stale_lock"]["pid"] for e in entries() if e["action"] == "takeover"] == [run.process.pid], \
        again.output
    assert not host_path(test_hosts, 11, "/opt/northwind/.golive/lock").exists(), again.output
    assert live_release_problems(test_hosts, 11) == []


def test_ctrl_c_during_a_check_stops_at_once(workspace, test_hosts):
    run_golive(workspace, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
    # A check whose command waits on the host (pytest, in golive, runs it in its main greenlet).
    (workspace / "checks" / "test_0_waits_on_the_host.py").write_text(textwrap.dedent(f'''
        def test_waits_on_the_host(host):
            host.run({WAIT_ON_THE_HOST!r})
        '''))
    ledger = host_path(test_hosts, 11, "/opt/northwind/.golive/ledger.jsonl")
    entries_before = ledger.read_text()
    run = at_a_terminal(workspace, "check", "manufacturer", "staging")
    stdout, shown = assert_stopped_while_the_host_waits(run, test_hosts, 11)
    assert "pytest could not run the checks" not in shown, shown
    # An interrupted check is no verdict: nothing is recorded for the promotion gate.
    assert ledger.read_text() == entries_before


def test_ctrl_c_while_connecting_to_a_host_that_never_answers(workspace, test_hosts):
    # A "host" that takes the TCP connection and never says a word (no SSH banner): golive's connect
    # waits for it (its ConnectTimeout far beyond the test's bound: no run ends by giving up on it).
    silent = socket.create_server((f"{test_hosts.net}.128", 0))
    accepted = threading.Event()
    held = []

    def take() -> None:
        held.append(silent.accept()[0])
        accepted.set()

    threading.Thread(target=take, daemon=True).start()
    inventory = workspace / "inventories" / "manufacturer"
    hosts = inventory / "hosts.yml"
    text, found = re.subn(r"(\n( +)ansible_host: )[0-9.]+\.11\n",
                          lambda m: f"{m.group(1)}{test_hosts.net}.128\n{m.group(2)}ansible_port: "
                                    f"{silent.getsockname()[1]}\n", hosts.read_text())
    assert found == 1, hosts.read_text()
    hosts.write_text(text)
    connection = inventory / "group_vars" / "all" / "connection.yml"
    text, found = re.subn(r"^(ansible_ssh_common_args: .*)$", r"\1 -o ConnectTimeout=3000", connection.read_text(),
                          flags=re.MULTILINE)
    assert found == 1, connection.read_text()
    connection.write_text(text)
    try:
        run = at_a_terminal(workspace, "status", "manufacturer", "staging")
        wait_until(lambda: accepted.is_set() or run.process.poll() is not None, "golive connecting to the host")
        assert run.process.poll() is None, f"golive ended before it connected:\n{run.ended()}"
        run.ctrl_c()
        stdout, shown = run.ended()
        output = stdout + shown
        assert run.process.returncode == 130, output
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
        assert "golive: interrupted" in shown, shown
    finally:
        for connection in held:
            connection.close()
        silent.close()


# A thread that runs Python when Ctrl-C comes, as paramiko's transport thread (it polls its socket)
# and rich's refresh thread do: Python runs the signal handler in it, not in golive's flow.
BUSY_THREAD = """
import threading, time
from golive.adapters.concurrency import patch_for_parallel_ssh
patch_for_parallel_ssh()
import gevent
def busy():
    print("busy", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for _ in range(1000):
            pass
        gevent.sleep(0)
thread = threading.Thread(target=busy, daemon=True)
thread.start()
try:
    gevent.sleep(60)  # the flow's wait (a round trip, a fan-out)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("interrupted; the thread still runs:", thread.is_alive(), flush=True)
"""


def test_ctrl_c_reaches_the_flow_whichever_greenlet_runs():
    process = subprocess.Popen([sys.executable, "-c", BUSY_THREAD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO / "deploy")}, cwd=str(REPO))
    assert process.stdout is not None
    assert process.stdout.readline() == "busy\n", process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=WAIT_BOUND_SECONDS)
    assert stdout == "interrupted; the thread still runs: True\n", stdout + stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr

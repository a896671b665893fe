"""The health contract (docs/health.md): one rule, applied in the same words by the host agent's
verify and by the Ansible role's, on the same real answers.

A real HTTP server here answers each case; the host agent's step_verify asks it (its own plain-socket
GET, or the health command through its own process runner), and ansible-playbook runs the role's
tasks/verify.yml on localhost (the uri and command modules) for the same cases. The table below is
the contract itself: what is healthy, and what each engine says when it is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from golive.agent.hostagent import Agent, StepError
from golive.engines.ansible import ANSIBLE_CONTENT

META = {"id": "1.0-abcdef12", "version": "1.0", "config_hash": "c0ffee"}
OK = ""
# (expect (None: metadata from before `expect`), HTTP status, body, extra headers) -> problem ("" = healthy)
URL_CASES = [
    ([], 200, "OK", {}, OK),
    ([], 204, "", {}, OK),
    ([], 200, '{"status": "starting"}', {}, OK),
    ([], 302, "", {"Location": "/elsewhere"}, "{url}: HTTP 302"),
    ([], 404, "not here", {}, "{url}: HTTP 404"),
    ([], 503, '{"version": "1.0"}', {}, "{url}: HTTP 503"),
    (["version"], 200, '{"version": "1.0"}', {}, OK),
    (["version"], 200, '{"version": "1.0"}', {"Content-Type": "text/plain"}, OK),
    (["version"], 200, ' {"version": "1.0", "more": {"a": [1, 2]}}\n', {}, OK),
    (["version"], 200, '{"version": "1.1"}', {}, 'health reports version "1.1", expected "1.0"'),
    (["version"], 200, '{"version": 1.0}', {}, 'health reports version 1.0, expected "1.0"'),
    (["version"], 200, "OK", {}, 'the health answer is not a JSON object reporting version: "OK"'),
    (["version"], 200, '{"version": "1.0"', {}, 'the health answer is not a JSON object reporting version: '
                                                 '"{\\"version\\": \\"1.0\\""'),
    (["version"], 200, "{not json}", {}, 'the health answer is not a JSON object reporting version: "{not json}"'),
    (["version"], 200, '[{"version": "1.0"}]', {}, 'the health answer is not a JSON object reporting version: '
                                                    '"[{\\"version\\": \\"1.0\\"}]"'),
    (["version", "config_hash"], 200, '{"version": "1.0", "config_hash": "c0ffee"}', {}, OK),
    (["version", "config_hash"], 200, '{"version": "1.0"}', {},
     'the health answer does not report config_hash (expected "c0ffee")'),
    (["release"], 200, '{"release": "1.0-abcdef12"}', {}, OK),
    (["release"], 200, '{"release": "0.9-00000000"}', {}, 'health reports release "0.9-00000000", '
                                                           'expected "1.0-abcdef12"'),
    (None, 200, '{"version": "1.0", "config_hash": "c0ffee"}', {}, OK),
    (None, 200, "OK", {}, 'the health answer is not a JSON object reporting version, config_hash: "OK"'),
]
# (expect, command) -> problem
COMMAND_CASES = [
    ([], "true", OK),
    ([], "echo starting", OK),
    ([], "echo broken; exit 3", "health command exit 3: broken"),
    ([], 'test "$GOLIVE_RELEASE" = 1.0-abcdef12 && test "$(basename "$PWD")" = 1.0-abcdef12', OK),
    (["version"], """echo '{"version": "1.0"}'""", OK),
    (["version"], """echo '{"version": "2"}'""", 'health reports version "2", expected "1.0"'),
    (["version"], "echo fine", 'the health answer is not a JSON object reporting version: "fine"'),
    (None, "echo fine", OK),  # before `expect`, a command's output was never read
]


class Answers(BaseHTTPRequestHandler):
    def do_GET(self):
        _, status, body, headers, _ = URL_CASES[int(self.path.rsplit("/", 1)[-1])]
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = HTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/case"
    httpd.shutdown()
    httpd.server_close()


def health(expect, url="", command=""):
    settings = {"url": url, "command": command, "timeout": 2, "retries": 1, "interval": 0}
    if expect is not None:
        settings["expect"] = expect
    return settings


def cases(base: str) -> list[tuple[dict, str]]:
    """(release metadata, the problem the contract says) for every case."""
    found = []
    for index, (expect, _, _, _, problem) in enumerate(URL_CASES):
        url = f"{base}/{index}"
        found.append(({**META, "health": health(expect, url=url)}, problem.replace("{url}", url)))
    for expect, command, problem in COMMAND_CASES:
        found.append(({**META, "health": health(expect, command=command)}, problem))
    return found


def agent_verdicts(root: Path, metas: list[dict]) -> list[str]:
    (root / "releases" / META["id"]).mkdir(parents=True, exist_ok=True)
    (root / ".golive" / "releases").mkdir(parents=True, exist_ok=True)
    verdicts = []
    for meta in metas:
        (root / ".golive" / "releases" / f"{META['id']}.json").write_text(json.dumps(meta))
        agent = Agent({"root": str(root)}, None)
        try:
            agent.step_verify({"release": META["id"]})
            verdicts.append(OK)
        except StepError as error:
            verdicts.append(str(error).split(" attempts: ", 1)[1])
    return verdicts


PLAYBOOK = """
- name: The role's verify, once per case
  hosts: localhost
  gather_facts: false
  vars:
    golive_app: {application: {root: "%(root)s", config_dir: "%(root)s/etc"}}
    golive_customer: example
    golive_environment: staging
    golive_action: deploy
    golive_parity: []
    golive_runs: {}  # no run files: each case's health settings are in its metadata
  # The role's variables (what its verify reads), below task vars in precedence as role vars are
  vars_files:
    - "%(role)s/vars/main.yml"
  tasks:
    - name: Verify each case
      ansible.builtin.include_tasks: case.yml
      loop: "{{ golive_cases }}"
      loop_control: {loop_var: golive_case}
    - name: Write the verdicts
      ansible.builtin.copy:
        content: "{{ golive_parity | to_json }}"
        dest: "%(out)s"
        mode: "0644"
"""
CASE = """
- name: One case
  block:
    - name: Verify
      ansible.builtin.include_tasks: "%(role)s/tasks/verify.yml"
      vars:
        golive_verify_meta: "{{ golive_case }}"
    - name: Healthy
      ansible.builtin.set_fact:
        golive_parity: "{{ golive_parity + [''] }}"
  rescue:
    - name: Not healthy
      ansible.builtin.set_fact:
        golive_parity: "{{ golive_parity + [ansible_failed_result.msg] }}"
"""


def role_verdicts(root: Path, metas: list[dict]) -> list[str]:
    (root / "releases" / META["id"]).mkdir(parents=True, exist_ok=True)
    role = ANSIBLE_CONTENT / "roles" / "golive"
    (root / "case.yml").write_text(CASE % {"role": role})
    out = root / "verdicts.json"
    (root / "play.yml").write_text(PLAYBOOK % {"root": root, "out": out, "role": role})
    (root / "cases.json").write_text(json.dumps({"golive_cases": metas}))
    (root / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    # The role's tasks and variables without loading the whole role for each case (slow); its filter too.
    env = {**os.environ, "ANSIBLE_FILTER_PLUGINS": str(role / "filter_plugins"), "ANSIBLE_NOCOLOR": "true",
           "ANSIBLE_CONFIG": str(root / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false"}
    run = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", "localhost,", "-c", "local",
                          "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{root / 'cases.json'}",
                          str(root / "play.yml")], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [m.split(" attempts: ", 1)[1] if " attempts: " in m else m if not m else f"(not a verdict) {m}"
            for m in json.loads(out.read_text())]


def test_both_engines_apply_the_one_health_rule_in_the_same_words(server, tmp_path):
    table = cases(server)
    metas = [meta for meta, _ in table]
    contract = [problem for _, problem in table]
    agent = agent_verdicts(tmp_path / "agent", metas)
    role = role_verdicts(tmp_path / "role", metas)
    mismatched = [(meta["health"], want, got) for meta, want, got in zip(metas, contract, agent, strict=True)
                  if got != want]
    assert mismatched == [], "the host agent breaks the contract"
    different = [(meta["health"], a, r) for meta, a, r in zip(metas, agent, role, strict=True) if a != r]
    assert different == [], "the Ansible role judges differently from the host agent"


def test_nothing_answering_is_unhealthy_on_both_engines(tmp_path):
    refused = {**META, "health": health([], url="http://127.0.0.1:9/health")}  # the discard port: closed
    agent = agent_verdicts(tmp_path / "agent", [refused])
    role = role_verdicts(tmp_path / "role", [refused])
    for verdict in agent + role:
        assert verdict.startswith("http://127.0.0.1:9/health: ") and "refused" in verdict.lower(), verdict

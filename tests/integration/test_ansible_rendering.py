"""One rendering for both engines: golive's renderer and Ansible's template module (run for real by
ansible-playbook, on the local machine) give byte-identical files, for the shipped examples and for
every case where ansible-core 2.19 differs from a plain Jinja2 environment."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from golive.core.model import TemplateSpec
from golive.workspace import Workspace
from tests.conftest import REPO

# Each case: template source -> what it shows. Sources are written byte for byte.
EDGE_TEMPLATES = {
    "no_trailing_newline": "port {{ http_port }}",
    "false_block_at_the_end": "a{% if none_value %}b{% endif %}\n",
    "value_ending_in_newline": "value={{ text_with_newline }}\n",
    "whitespace_control_at_the_end": "{% for c in codes -%}\n{{ c }}\n{%- endfor %}\n",
    "blank_lines_at_the_end": "text\n\n\n",
    "block_without_newline_at_the_end": "x\n{% if false %}\ny\n{% endif %}",
    "none_values": "none={{ none_value }}\nconst={{ None }}\nconcat={{ 'x' ~ none_value }}\n",
    "single_none": "{{ none_value }}\n",
    "single_int": "{{ http_port }}\n",
    "single_list": "{{ codes | map('lower') | list }}\n",
    "single_list_in_block": "{% if true %}{{ codes }}{% endif %}\n",
    "tuples": "{{ (1, 2) }} and {{ {'a': (1, 2)} }} and {{ flags.items() | list }}\n",
    "containers_in_text": "dict={{ flags }}\nlist={{ codes }}\nbool={{ bool_value }}\nfloat={{ float_value }}\n",
    "templated_variables": "listen={{ listen_address }}\nurl={{ public_url }}\n",
    "native_variable": "{% for i in native_list %}[{{ i }}]{% endfor %}\nsum={{ port_expr * 2 }}\n",
    "none_variable": "[{{ none_expr }}]\n",
    "comment_in_a_variable": "comment={{ comment_var }}\n",
    "raw_in_a_variable": "raw={{ raw_var }}\n",
    "inline_vault_value": "vault={{ vault_template }}\n",
    "backslashes_in_variables": "{{ backslash_double }}|{{ backslash_single }}|{{ windows_path }}\n",
    "backslashes_in_the_template": "{{ 'x\\ny' }}|{{ 'tab\\there' }}\n",
    "macro": "v={% macro m(x) %}[{{ x }}]{% endmacro %}{{ m(5) }}\n",
    "single_macro": "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(5) }}\n",
    "conditional_without_else": "{\n{% for k, v in flags | dictsort %}\n  \"{{ k }}\": {{ v | lower }}"
                                "{{ ',' if not loop.last }}\n{% endfor %}\n}\n",
    "lstrip_off": "  {% if true %}\nindented\n  {% endif %}\nend\n",
    "crlf": "a\r\n{% if true %}\r\nb {{ http_port }}\r\n{% endif %}\r\n",
    "unicode": "{{ unicode_text }}\n",
    "empty": "",
    "json_filter": "{{ flags | tojson }}\n",
    "context": "{{ golive_host }} {{ golive_customer }} {{ golive_environment }} {{ golive_release }} "
               "{{ golive_app_root }} {{ golive_config_dir }}\n",
}
HOST_VARS = textwrap.dedent(r"""
    ansible_host: 127.0.0.1
    ansible_connection: local
    ansible_python_interpreter: /usr/bin/python3
    listen_address: "{{ ansible_host }}"
    public_url: "http://{{ listen_address }}:{{ http_port }}/app"
    http_port: 8080
    none_value:
    text_with_newline: "line one\n"
    flags: {b: true, a: false}
    codes: [SH01, SZ02]
    bool_value: yes
    float_value: 0.1
    unicode_text: "Kaufhaus Lindner GmbH – Zürich 北京"
    native_list: "{{ [1, 2] }}"
    port_expr: "{{ http_port + 1 }}"
    none_expr: "{{ none_value }}"
    comment_var: "a {# c #} b"
    raw_var: "{% raw %}{{ http_port }}{% endraw %}"
    backslash_double: '{{ "a\\nb" }}'
    backslash_single: '{{ "a\nb" }}'
    windows_path: 'C:\new\table'
    """)


def edge_workspace(root: Path) -> Path:
    """A workspace with one local host (`ansible_connection: local`) and the edge-case templates."""
    root.mkdir()
    for name in ("golive.yml", "ansible.cfg", "vault-password.example"):
        (root / name).write_bytes((REPO / name).read_bytes())
    inventory = root / "inventories" / "edge"
    (inventory / "host_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  children:\n    staging:\n      hosts:\n        edge-1:\n")
    vault = subprocess.run(["ansible-vault", "encrypt_string", "--vault-password-file",
                            str(REPO / "vault-password.example"), "{{ http_port }}", "--name", "vault_template"],
                           capture_output=True, text=True, check=True, cwd="/", env=_without_ansible_config())
    (inventory / "host_vars" / "edge-1.yml").write_text(HOST_VARS + vault.stdout)
    templates = root / "config_templates" / "northwind"
    templates.mkdir(parents=True)
    for name, source in EDGE_TEMPLATES.items():
        (templates / f"{name}.j2").write_bytes(source.encode())
    return root


def _without_ansible_config() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}


def ansible_renders(workspace: Path, customer: str, host: str, sources: dict[str, Path], out: Path,
                    context: dict[str, str]) -> dict[str, bytes]:
    """Ansible's template module writing each template for `host`, with golive's context names."""
    out.mkdir(parents=True, exist_ok=True)
    playbook = out / "render.yml"
    playbook.write_text(json.dumps([{
        "hosts": host, "gather_facts": False, "vars": context,
        "tasks": [{"ansible.builtin.template": {"src": str(src), "dest": str(out / name)}, "no_log": True,
                   "delegate_to": "localhost", "connection": "local",
                   "vars": {"ansible_python_interpreter": sys.executable}}
                  for name, src in sources.items()]}]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(workspace / "ansible.cfg")}
    run = subprocess.run(["ansible-playbook", "-i", str(workspace / "inventories" / customer), str(playbook)],
                         capture_output=True, text=True, env=env, cwd=str(workspace))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {name: (out / name).read_bytes() for name in sources}


def golive_context(ws: Workspace, host, version: str) -> dict[str, str]:
    return {"golive_customer": host.customer, "golive_environment": host.environment, "golive_host": host.name,
            "golive_release": version, "golive_app_root": ws.app.root, "golive_config_dir": ws.app.config_dir}


def test_every_ansible_difference_renders_identically(tmp_path):
    workspace = edge_workspace(tmp_path / "ws")
    ws = Workspace(workspace)
    # these hosts hold edge cases, not the example schema
    ws.app = dataclasses.replace(ws.app, templates=tuple(TemplateSpec(f"{n}.j2", n) for n in EDGE_TEMPLATES),
                                 variables=())
    ws.renderer.app = ws.app
    host = ws.hosts("edge", "staging")[0]
    expected = {f.dest: f.content for f in ws.render(host, "1.1").files}
    sources = {name: workspace / "config_templates" / "northwind" / f"{name}.j2" for name in EDGE_TEMPLATES}
    rendered = ansible_renders(workspace, "edge", host.name, sources, tmp_path / "ansible",
                               golive_context(ws, host, "1.1"))
    assert {name: data for name, data in rendered.items() if data != expected[name]} == {}
    # the cases that would differ with a plain Jinja2 environment really are exercised
    assert expected["false_block_at_the_end"] == b"a\n" and expected["single_int"] == b"8080"
    assert expected["raw_in_a_variable"] == b"raw={{ http_port }}\n"
    assert expected["inline_vault_value"] == b"vault={{ http_port }}\n"
    assert expected["native_variable"] == b"[1][2]sum=16162\n"


@pytest.mark.parametrize("customer", ["manufacturer", "retailer"])
def test_example_hosts_render_identically(customer, offline_workspace, tmp_path):
    """Every example host's config, through golive and through the template module: same sha256."""
    ws = Workspace(offline_workspace)
    hosts = [h for h in ws.customer(customer).hosts]
    for host in hosts:
        expected = {f.dest: hashlib.sha256(f.content).hexdigest() for f in ws.render(host, "1.1").files}
        sources = {spec.dest: offline_workspace / ws.renderer.template_path(customer, spec.src)
                   for spec in ws.app.templates}
        rendered = ansible_renders(offline_workspace, customer, host.name, sources, tmp_path / host.name,
                                   golive_context(ws, host, "1.1"))
        assert {name: hashlib.sha256(data).hexdigest() for name, data in rendered.items()} == expected, host.name

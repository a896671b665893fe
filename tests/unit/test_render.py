"""Rendering: deterministic bytes, customer overrides, secret files 0600 and never shown; Ansible's
filters imported only when a template uses one; every problem of a template reported at once, each
where it is, and never with a value in it."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
import textwrap

from golive.core.errors import BadInput
from golive.core.release import release_id, run_settings_hash
from golive.flows.desired import rendered_commands
from golive.workspace import Workspace
from tests.conftest import REPO, VAULT_SECRETS, run_golive

OVERRIDE_INI = "config_templates/northwind/customers/manufacturer/northwind.ini.j2"


def append(workspace, relative: str, text: str) -> int:
    """Append lines to a workspace file; the number of the first line appended."""
    path = workspace / relative
    old = path.read_text()
    path.write_text(old + text)
    return old.count("\n") + 1


def tree(directory) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_rendering_twice_gives_identical_bytes(offline_workspace, tmp_path):
    for customer in ("manufacturer", "retailer"):
        for environment in ("staging", "production"):
            first, second = tmp_path / f"{customer}-{environment}-1", tmp_path / f"{customer}-{environment}-2"
            run_golive(offline_workspace, "render", customer, environment, "--out", str(first), check=0)
            run_golive(offline_workspace, "render", customer, environment, "--out", str(second), check=0)
            assert tree(first) == tree(second) and tree(first)


def test_secret_files_are_0600_and_never_printed(offline_workspace, tmp_path):
    out = tmp_path / "out"
    shown = run_golive(offline_workspace, "render", "manufacturer", "production", "--out", str(out), check=0)
    secret = out / "mfg-prod-1" / "secrets.env"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "mfg-prod-1" / "northwind.ini").stat().st_mode) == 0o644
    assert VAULT_SECRETS[0] in secret.read_text()  # the file itself holds the secret...
    for args in ((), ("--json",)):
        result = run_golive(offline_workspace, "render", "manufacturer", "production", *args, check=0)
        assert "secrets.env" in result.stdout
        assert all(s not in result.output for s in VAULT_SECRETS)  # ...no output does
    assert all(s not in shown.output for s in VAULT_SECRETS)


def test_customer_override_template_wins(offline_workspace):
    mfg = run_golive(offline_workspace, "render", "manufacturer", "staging", check=0).stdout
    rtl = run_golive(offline_workspace, "render", "retailer", "staging", check=0).stdout
    assert "[mes]" in mfg and "shift.early = 06:00-14:00" in mfg and "plants = SH01,SZ02" in mfg
    assert "[mes]" not in rtl and "loyalty_program = LindnerPlus" in rtl
    assert "listen_address = 127.0.0.14" in rtl  # a templated inventory variable, resolved


def test_render_json_names_release_and_config_hash(offline_workspace):
    data = run_golive(offline_workspace, "render", "retailer", "production", "--release", "2.0", "--json",
                      check=0).json()
    host = data["hosts"]["rtl-prod-1"]
    # <version>-<8 hex>: over the config hash and the rendered service, health and hook settings
    settings = run_settings_hash(*rendered_commands(ws := Workspace(offline_workspace),
                                                    ws.hosts("retailer", "production", ["rtl-prod-1"])[0], "2.0"))
    assert host["release_id"] == release_id("2.0", host["config_hash"], settings)
    secret = next(f for f in host["files"] if f["dest"] == "secrets.env")
    assert secret["secret"] is True and "content" not in secret and secret["mode"] == "0600"


def test_rendering_the_example_imports_no_ansible(offline_workspace):
    """Importing ansible costs more than a no-change deploy spends rendering: only a template that
    uses one of Ansible's filters imports it (the inventory comes from golive's cache)."""
    run_golive(offline_workspace, "validate", check=0)  # fills the inventory cache
    script = textwrap.dedent("""
        import sys
        from golive.workspace import Workspace
        ws = Workspace(sys.argv[1])
        hosts = [h for c in ws.customer_names() for h in ws.customer(c).hosts]
        for host in hosts:
            ws.render(host, "1.1")
            for text in (ws.app.service.start, ws.app.service.status, ws.app.health.url, ws.app.hooks.before_cutover):
                ws.render_string(text, host, "1.1")
        print(len(hosts), "ansible" in sys.modules)
        print(ws.render_string("{{ golive_host | to_json }}", hosts[0], "1.1"), "ansible" in sys.modules)
        """)
    run = subprocess.run([sys.executable, "-c", script, str(offline_workspace)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "deploy")}, cwd=str(offline_workspace))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["5 False", '"mfg-stg-1" True']


def test_quote_in_a_setting_is_ansibles_shell_quoting(offline_workspace):
    """Hooks and service commands run in a shell on the host: `quote` is Ansible's (shlex.quote)."""
    ws = Workspace(offline_workspace)
    host = ws.hosts("manufacturer", "staging")[0]
    tricky = "it's $HOME `id`"
    text = ws.render_string('echo {{ company_name | quote }} {{ "' + tricky + '" | quote }} {{ http_port | quote }}',
                            host, "1.1", "hooks.before_cutover")
    name = host.vars["company_name"]
    assert " " in name and text == f"echo {shlex.quote(name)} {shlex.quote(tricky)} {host.vars['http_port']}"


def test_a_missing_include_is_named_where_it_is_included(offline_workspace):
    line = append(offline_workspace, OVERRIDE_INI, "{% include 'parts/footer.j2' %}\n")
    result = run_golive(offline_workspace, "render", "manufacturer", "staging", check=2)
    assert f"{OVERRIDE_INI}:{line}: template 'parts/footer.j2' (included, imported or extended here) not found" \
           in result.output
    assert "template 'northwind.ini.j2' not found" not in result.output and "Traceback" not in result.output


def test_every_undefined_variable_is_reported_at_once(offline_workspace):
    ini = offline_workspace / OVERRIDE_INI
    ini.write_text(ini.read_text().replace("{{ db_port }}", "{{ db_portt }}").replace("{{ workers }}", "{{ workerz }}"))
    first = append(offline_workspace, OVERRIDE_INI, "{{ missing_map.key }}\n"
                   "{{ optional | default('x') }}{% if maybe is defined %}{{ maybe }}{% endif %}\n"
                   "{% for p in no_plants %}{{ p }}{% endfor %}{{ plant_codes.nokey }}\n")
    lines = ini.read_text().splitlines()
    line_of = {name: next(i for i, text in enumerate(lines, 1) if name in text) for name in ("db_portt", "workerz")}
    for verb in (("validate",), ("render", "manufacturer", "staging")):
        output = run_golive(offline_workspace, *verb, check=2).output
        for where, what in ((line_of["db_portt"], "'db_portt' is undefined"),
                            (line_of["workerz"], "'workerz' is undefined"),
                            (first, "'missing_map' is undefined"), (first + 2, "'no_plants' is undefined"),
                            (first + 2, "'list object' has no attribute 'nokey'")):
            assert f"{OVERRIDE_INI}:{where}: undefined variable: {what}" in output, (verb, output)
        assert "optional" not in output and "maybe" not in output


def test_what_would_not_give_the_same_bytes_is_refused_with_its_line(offline_workspace):
    first = append(offline_workspace, OVERRIDE_INI, "{{ now() }}\n{{ lookup('env', 'HOME') }}\n{{ 59 | random }}\n"
                   "{{ plant_codes | shuffle }}\n{{ 'pw' | password_hash('sha512') }}\n"
                   "{% if '/etc' is exists %}{% endif %}{{ '~' | expanduser }}\n"
                   "{{ plant_codes | map('fileglob') | list }}\n")
    output = run_golive(offline_workspace, "render", "manufacturer", "staging", check=2).output
    for offset, what in ((0, "now() is not supported"), (1, "lookup() is not supported"),
                         (2, "the random filter without seed=..."), (3, "the shuffle filter without seed=..."),
                         (4, "the password_hash filter without salt=..."), (5, "the test 'exists' is not supported"),
                         (5, "the filter 'expanduser' is not supported")):
        assert f"{OVERRIDE_INI}:{first + offset}: {what}" in output, output
    (offline_workspace / OVERRIDE_INI).write_text("{{ 59 | random(seed=golive_host) }} "
                                                  "{{ plant_codes | map('fileglob') | list }}\n")
    output = run_golive(offline_workspace, "render", "manufacturer", "staging", check=2).output
    assert f"{OVERRIDE_INI}:1: the filter 'fileglob' is not supported" in output  # named at run time
    (offline_workspace / OVERRIDE_INI).write_text("{{ 59 | random(seed=golive_host) }}\n")
    outputs = {run_golive(offline_workspace, "render", "manufacturer", "staging", check=0).stdout for _ in range(2)}
    assert len(outputs) == 1  # seeded: the same number every time


def test_template_errors_never_show_a_secret(offline_workspace):
    """A secret with a backslash and both quotes: its repr() is not the raw string the Redactor masks."""
    secret = 'Pl\\ai"n\'Sec-88'
    staging = offline_workspace / "inventories/manufacturer/group_vars/staging.yml"
    staging.write_text(staging.read_text() + "db_password: " + json.dumps(secret) + "\n")  # secret: true in golive.yml
    provocations = {OVERRIDE_INI: "{{ {}[db_password] }}\n",  # Jinja2: 'dict object' has no attribute <repr>
                    "config_templates/northwind/features.json.j2": "{{ [db_password] | items2dict }}\n",
                    "config_templates/northwind/secrets.env.j2": "{{ {'a': db_password} | subelements('a') }}\n"}
    for relative, text in provocations.items():
        (offline_workspace / relative).write_text("line one\n" + text)
    for verb in (("render", "manufacturer", "staging"), ("validate",), ("render", "manufacturer", "staging", "--json")):
        output = run_golive(offline_workspace, *verb, check=2).output
        for relative in provocations:
            assert f"{relative}:2: " in output, output
        assert "Sec-88" not in output, output  # in no form: raw, repr, JSON, escaped twice


def test_to_yaml_of_an_inline_vault_value_is_refused(offline_workspace):
    """Ansible's template module writes such a value's ciphertext (`!vault |`), which golive does not keep."""
    line = append(offline_workspace, OVERRIDE_INI, "{{ {'pw': db_password} | to_nice_yaml }}\n")
    output = run_golive(offline_workspace, "render", "manufacturer", "staging", check=2).output
    assert f"{OVERRIDE_INI}:{line}: to_nice_yaml of an inline vault value" in output
    assert all(s not in output for s in VAULT_SECRETS)


def test_every_undefined_variable_of_a_setting_at_once(offline_workspace):
    ws = Workspace(offline_workspace)
    host = ws.hosts("manufacturer", "staging")[0]
    try:
        ws.render_string("{{ golive_host }} {{ first_missing }} {{ second_missing | upper }}", host, "1.1",
                         "hooks.after_cutover")
    except BadInput as error:
        assert [p.message for p in error.problems] == [
            "hooks.after_cutover: line 1: undefined variable: 'first_missing' is undefined",
            "hooks.after_cutover: line 1: undefined variable: 'second_missing' is undefined"]
    else:
        raise AssertionError("rendered with undefined variables")


def test_set_filters_on_strings_give_the_same_order_in_every_process(offline_workspace):
    """Ansible's union and friends go through a set, whose order for strings changes with Python's
    hash seed: golive keeps the inputs' order, so the config hash does not change between runs."""
    (offline_workspace / OVERRIDE_INI).write_text(
        "{{ plant_codes | union(['ZZ9', 'AA1', 'SH01']) | join(',') }} {{ ['ZZ9', 'AA1'] | intersect(plant_codes + "
        "['AA1', 'ZZ9']) }} {{ plant_codes | difference(['x']) }} {{ [3, 1] | symmetric_difference(['b', 'a']) }}\n")
    outputs = {run_golive(offline_workspace, "render", "manufacturer", "staging", env={"PYTHONHASHSEED": str(seed)},
                          check=0).stdout for seed in range(1, 5)}
    assert len(outputs) == 1
    assert "SH01,SZ02,ZZ9,AA1 ['ZZ9', 'AA1'] ['SH01', 'SZ02'] [3, 1, 'b', 'a']" in outputs.pop()

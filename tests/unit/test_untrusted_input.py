"""The rules for untrusted input, as pure functions: the quoting rule of golive.yml's command fields,
the names that become paths, the artifact pattern, version strings, YAML bounds."""

from __future__ import annotations

import shlex
import time

import pytest

from golive.adapters.appdef import artifact_pattern_problems, command_problems
from golive.adapters.yamlfile import YamlTooLarge, scan_bounds
from golive.core.model import name_problem
from golive.core.release import VERSION_PATTERN, version_of

REFUSED_COMMANDS = [
    "echo {{ company_name }}",
    "echo {{ company_name | upper }}",
    "echo {{ company_name | quote | upper }}",
    "echo {{ golive_app_root ~ company_name }}",
    "echo {{ company_name if true else '' }}",
    "echo {{ (company_name | quote) ~ x }}",
    "{% for code in plant_codes %}{{ code }}{% endfor %}",
    "{% set golive_host = company_name %}{{ golive_host }}",
    "{% for golive_release in [x] %}{{ golive_release }}{% endfor %}",
    "{% macro m(golive_host) %}{{ golive_host }}{% endmacro %}{{ m(x) }}",
    "{{ lookup('env', 'HOME') }}",
    "{{ golive_host | replace('a', company_name) }}",
    "echo {{ golive_app_root }",  # does not parse
]
ACCEPTED_COMMANDS = [
    "",
    "systemctl restart northwind",
    "{{ golive_app_root }}/current/bin/northwind-ctl restart",
    "echo {{ golive_customer }} {{ golive_environment }} {{ golive_host }} {{ golive_release }}",
    "ls {{ golive_config_dir }}",
    "echo {{ company_name | quote }}",
    "echo {{ company_name | default('x') | quote }}",
    "echo {{ (a ~ b) | quote }}",
    "{% for code in plant_codes %}{{ code | quote }} {% endfor %}",
    "{% if feature_flags.loyalty %}enable{% endif %}",
    "echo {{ golive_host | upper }}",
    "{% raw %}{{ not a template }}{% endraw %}",
    'echo "$GOLIVE_CUSTOMER"',
]


@pytest.mark.parametrize("text", REFUSED_COMMANDS)
def test_a_command_that_puts_a_value_in_unquoted_is_refused(text):
    problems = command_problems(text, "hooks.before_cutover")
    assert problems and all(p.startswith("hooks.before_cutover: ") for p in problems)


@pytest.mark.parametrize("text", ACCEPTED_COMMANDS)
def test_a_command_that_quotes_every_value_is_accepted(text):
    assert command_problems(text, "hooks.before_cutover") == []


def test_the_refusal_shows_the_fix():
    [problem] = command_problems("cp x {{ db_name }}.bak", "hooks.before_cutover")
    assert "{{ db_name }}" in problem and "{{ db_name | quote }}" in problem and "GOLIVE_" in problem


HOSTILE_NAMES = ["", ".", "..", "../x", "a/../b", "/etc", "a/b", "a\\b", "a\0b", "a\nb", "-x", "--help", ".hidden",
                 "a b", "x" * 129, "caf\udce9", "café", "$(x)", "a;b", "*", "~"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_name_that_could_leave_its_directory_or_be_read_as_code_is_refused(name):
    problem = name_problem(name, "host")
    assert problem and problem.startswith("host name ")
    assert len(problem) < 300  # a very long name is shown cut


@pytest.mark.parametrize("name", ["mfg-stg-1", "staging", "northwind.ini", "x" * 128, "_a", "A.b_c-d", "10.0.0.1"])
def test_plain_names_are_accepted(name):
    assert name_problem(name, "host") is None


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_golive_accepts_are_safe_unquoted_in_a_shell(name):
    accepted = [n for n in (name, "mfg-stg-1") if name_problem(n, "x") is None]
    assert all(shlex.quote(n) == n for n in accepted)


@pytest.mark.parametrize("version", ["1.0\n", "1.0\n\n", "\n1.0", " 1.0", "1.0 ", "../1.0", "1/0", "-1", ".1",
                                     "", "1" * 65, "1.0;x", "1.0\0"])
def test_a_version_that_could_name_another_path_is_refused(version):
    assert VERSION_PATTERN.fullmatch(version) is None


def test_release_ids_are_parsed_to_the_end():
    assert version_of("1.0-0123abcd") == "1.0"
    assert version_of("1.0-0123abcd\n") == "1.0-0123abcd\n"


@pytest.mark.parametrize("pattern", ["{app}-{version}-{arch}.tar.gz", "{app}-{version", "{app}}-{version}.tar.gz",
                                     "{app-{version}.tar.gz", "sub/{app}-{version}.tar.gz",
                                     "../{app}-{version}.tar.gz", "/tmp/{version}.tar", "{version!r}.tar",
                                     "{version:>9}.tar", "{0}.tar", "{}-{version}.tar", "{app}.tar.gz",
                                     "{app}-{version}.zip", "{app}-{version}", ".{version}.tar", "-{version}.tar",
                                     "{app} {version}.tar", "{{{version}}}.tar"])
def test_an_artifact_pattern_golive_cannot_name_files_with_is_refused(pattern):
    assert artifact_pattern_problems(pattern)


@pytest.mark.parametrize("pattern", ["{app}-{version}.tar.gz", "{version}.tgz", "{app}_{version}.tar",
                                     "{app}-release-{version}.tar.gz"])
def test_plain_artifact_patterns_are_accepted(pattern):
    assert artifact_pattern_problems(pattern) == []


def bomb(levels: int, width: int = 9) -> str:
    text = f"l0: &l0 [{', '.join(['lol'] * width)}]\n"
    return text + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]\n" for i in range(1, levels))


@pytest.mark.parametrize("text", [bomb(10), bomb(30, 2), "a: " + "[" * 101 + "]" * 101, "a: &a [*a]\n",
                                  "a: &a {b: *a}\n", "x" * ((16 << 20) + 1)])
def test_yaml_over_its_bounds_is_refused_at_once(text):
    started = time.process_time()
    with pytest.raises(YamlTooLarge):
        scan_bounds(text)
    assert time.process_time() - started < 5  # not a timing claim: the old code never returned


@pytest.mark.parametrize("text", [bomb(5), "defaults: &d {a: 1, b: 2}\nx:\n  <<: *d\n  c: 3\n",
                                  "a: " + "[" * 99 + "]" * 99, "plain: [1, 2, 3]\n"])
def test_yaml_within_its_bounds_is_accepted(text):
    scan_bounds(text)

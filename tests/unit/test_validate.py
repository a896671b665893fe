"""golive validate: the examples pass, and every problem of a workspace is reported at once."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_golive


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_shipped_examples_validate(offline_workspace):
    result = run_golive(offline_workspace, "validate", check=0)
    assert "2 customer(s), 5 host(s)" in result.stdout


# Every broken workspace and command line (each exits 2 naming file and line, touching no host)
# is a case of the bad-input corpus: tests/hostile/test_bad_input.py.


def test_all_problems_are_reported_at_once(offline_workspace):
    edit(offline_workspace / "inventories/retailer/group_vars/all/main.yml", "currency: EUR\n", "")
    edit(offline_workspace / "config_templates/northwind/features.json.j2", "{% endfor %}", "{% endfor")
    result = run_golive(offline_workspace, "validate", check=2)
    assert "'currency'" in result.stderr and "features.json.j2" in result.stderr


def test_the_shipped_examples_have_no_warning(offline_workspace):
    result = run_golive(offline_workspace, "validate", "--json", check=0)
    assert result.json()["warnings"] == [] and "warning" not in result.stderr, result.output


def test_an_undeclared_variable_is_a_warning_naming_file_line_and_the_near_miss(offline_workspace):
    vars_file = offline_workspace / "inventories/manufacturer/group_vars/all/main.yml"
    vars_file.write_text(vars_file.read_text() + "plant_cods: [SH01]\nsomething_else: 1\n")
    result = run_golive(offline_workspace, "validate", check=0)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("golive: warning: ")]
    assert len(warnings) == 2, result.output  # one line each, not one per host
    typo = next(w for w in warnings if "plant_cods" in w)
    assert "group_vars/all/main.yml:" in typo and "did you mean 'plant_codes'" in typo, typo
    assert "mfg-stg-1, mfg-prod-1, mfg-prod-2" in typo, typo
    assert "1 warning" not in result.stdout and "2 warning(s)" in result.stdout


def test_a_problem_shared_by_every_host_is_one_line_listing_them(offline_workspace):
    edit(offline_workspace / "inventories/manufacturer/group_vars/all/main.yml", "currency: CNY\n", "")
    result = run_golive(offline_workspace, "validate", "manufacturer", check=2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("golive: error: ")]
    assert len(errors) == 1, result.stderr
    assert "'currency'" in errors[0] and "mfg-stg-1, mfg-prod-1, mfg-prod-2" in errors[0], errors[0]
    assert "golive.yml:" in errors[0], "the message says where the variable is declared"

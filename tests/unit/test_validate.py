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

"""The checks' pytest plugin is golive's package's (pytest11 entry point `golive`), not a file in a
workspace: plain pytest finds it, `golive check` names it, and any other pytest run (golive's own
test suite included) is left exactly as it would be without it."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from golive.flows.check import CHECK_PLUGIN, _pytest_args


def test_the_package_provides_the_plugin():
    plugins = {e.name: e.value for e in metadata.entry_points(group="pytest11")}
    assert plugins.get("golive") == CHECK_PLUGIN == "golive.flows.checkplugin"


def test_golive_check_names_the_plugin_itself(tmp_path):
    # golive check runs pytest with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1: only what it names loads
    args = _pytest_args(tmp_path, [], None)
    assert [args[i + 1] for i, a in enumerate(args) if a == "-p"][:2] == ["testinfra.plugin", CHECK_PLUGIN]


def test_another_pytest_run_is_left_alone(tmp_path):
    (tmp_path / "customers").mkdir()
    (tmp_path / "customers" / "test_a.py").write_text("def test_a():\n    pass\n")
    (tmp_path / "test_b.py").write_text("def test_b():\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:xdist"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    ran = [line.split(" ")[0] for line in run.stdout.splitlines() if " PASSED" in line]
    # collected (not skipped as another customer's folder) and in pytest's own order
    assert ran == ["customers/test_a.py::test_a", "test_b.py::test_b"], run.stdout
    loaded = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert "--golive-customer" in loaded.stdout  # ... while the plugin is loaded

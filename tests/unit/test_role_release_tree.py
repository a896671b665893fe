"""The role reads a release directory (tasks/state.yml: `find -printf` lines and sha256sum digests)
into the entries the host agent lists for it (golive.agent.shared.scan_release), with one filter
for the live release and the kept one a switch goes to (filter_plugins/golive_tree.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess

from golive.agent.shared import scan_release
from tests.conftest import REPO

FIND = "find . -printf '{tag}\\t%y\\t%m\\t%U\\t%G\\t%s\\t%l\\t%p\\n'; find . -type f -exec sha256sum {{}} +"


def load_filter():
    spec = importlib.util.spec_from_file_location(
        "golive_tree", REPO / "roles" / "golive" / "filter_plugins" / "golive_tree.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()["golive_release_tree"]


def state_lines(release, tag: str) -> tuple[list[str], dict[str, str]]:
    """What the state task prints for a release directory: its tagged entries, and digests by path."""
    out = subprocess.run(["sh", "-c", FIND.format(tag=tag)], cwd=release, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    hashes = {line[68:]: line[:64] for line in out if len(line) > 68 and line[64:68] == "  ./"}
    return out, hashes


def a_release(tmp_path):
    release = tmp_path / "releases" / "1.0-abcdef12"
    (release / "bin").mkdir(parents=True)
    (release / "config").mkdir()
    (release / "bin" / "app-ctl").write_text("#!/bin/sh\n")
    (release / "bin" / "app-ctl").chmod(0o750)
    (release / "config" / "app.ini").write_text("[a]\nb = c\n")
    (release / "config" / "secrets.env").write_text("X=1\n")
    (release / "config" / "secrets.env").chmod(0o600)
    (release / "cache").mkdir()
    (release / "cache" / "x.pyc").write_bytes(b"\0")
    os.symlink("../../shared/data", release / "data")
    return release


def test_the_role_reads_a_release_as_the_agent_scans_it(tmp_path):
    release_tree = load_filter()
    release = a_release(tmp_path)
    wanted, _ = scan_release(str(release))
    for tag in ("tree", "kept"):
        lines, hashes = state_lines(release, tag)
        other = "kept" if tag == "tree" else "tree"
        read = release_tree(lines + [line.replace(tag, other, 1) for line in lines if line.startswith(tag)],
                            tag, hashes)
        assert read == wanted, tag


def test_what_drift_ignore_names_is_left_out(tmp_path):
    release_tree = load_filter()
    lines, hashes = state_lines(a_release(tmp_path), "tree")
    read = release_tree(lines, "tree", hashes, r"^cache(/|$)")
    assert "cache" not in read and "cache/x.pyc" not in read and read["config/app.ini"]["type"] == "file"
    assert read["data"] == {"type": "link", "uid": os.getuid(), "gid": os.getgid(), "link": "../../shared/data"}
    assert read["bin/app-ctl"]["mode"] == "0750" and read["config/secrets.env"]["mode"] == "0600"

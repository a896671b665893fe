"""The host agent's lean paths: what it does without the modules it avoids importing on every request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from golive.agent import BOOTSTRAP, request_header
from golive.agent.hostagent import remove_tree, wait_for
from golive.agent.shared import from_json, to_json

AGENT_DIR = Path(__file__).resolve().parents[2] / "deploy" / "golive" / "agent"

VALUES = [
    {"b": [1, 2.5, None, True, False], "a": {"z": -1, "y": "x"}},
    {"text": "caf\u00e9 \u4e2d\u6587 \U0001f680 \"quoted\" \\ back\nline\ttab\x00nul\x7f"},
    {"numbers": [0, -0.0, 1e-300, 1.7976931348623157e308, 12345678901234567890, 0.1 + 0.2]},
    {"nested": [[[]], {}, [{"k": [1, {"deep": None}]}]], "": "empty key"},
    [],
    "just a string",
    3.25,
]


@pytest.mark.parametrize("value", VALUES, ids=[f"value{i}" for i in range(len(VALUES))])
def test_json_through_the_c_half_is_the_json_module(value):
    assert to_json(value) == json.dumps(value, sort_keys=True)
    assert from_json(json.dumps(value)) == json.loads(json.dumps(value))
    assert from_json(("  \n" + json.dumps(value, indent=2) + "\n").encode()) == json.loads(json.dumps(value))


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": }', '{"a": 1} extra', "[1, 2,]", "nul", "{'a': 1}"])
def test_json_that_is_not_json_is_a_value_error(text):
    with pytest.raises(ValueError):
        json.loads(text)  # the json module agrees
    with pytest.raises(ValueError):
        from_json(text)


def test_json_refuses_what_json_refuses():
    with pytest.raises(TypeError):
        to_json({"when": object()})
    with pytest.raises(TypeError):
        to_json({1: "x", "a": "y"})  # mixed key types cannot be sorted, as with json.dumps


def test_without_the_c_half_the_json_module_serves():
    code = ("import sys; sys.modules['_json'] = None\n"
            f"exec(open({str(AGENT_DIR / 'shared.py')!r}).read())\n"
            "import json\n"
            "assert from_json is json.loads, from_json\n"
            "print(to_json({'b': 1, 'a': [True, None]}))\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '{"a": [true, null], "b": 1}'


def test_a_request_loads_no_module_it_does_not_need(tmp_path):
    """A no-change round trip (lock, state, finish) imports none of the modules that cost every host
    milliseconds: json's Python half (re, enum), socket, shutil, signal, subprocess, hashlib."""
    root = tmp_path / "app"
    release = root / "releases" / "1.0-x"
    (release / "config").mkdir(parents=True)
    (root / "current").symlink_to("releases/1.0-x")
    request = {"root": str(root), "token": "t" * 32, "mask": [], "steps": [
        {"op": "lock", "owner": {"operator": "test"}},
        {"op": "state", "name": "state", "config_dir": str(tmp_path / "etc"), "history": False},
        {"op": "unlock", "name": "unlock", "force": False}]}
    probe = BOOTSTRAP + ";sys.stderr.write(' '.join(sorted(sys.modules)))"  # what the request loaded
    result = subprocess.run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                             "-I", "-S", "-c", probe], input=request_header(request), capture_output=True,
                            check=True)
    answer = json.loads(result.stdout)
    assert answer["ok"], answer
    assert answer["steps"][1]["data"]["current"] == "1.0-x"
    assert not (root / ".golive" / "lock").exists()
    loaded = set(result.stderr.decode().split())
    assert "_json" in loaded
    assert not loaded & {"json", "re", "enum", "socket", "shutil", "signal", "subprocess", "hashlib"}, loaded


def test_remove_tree_of_plain_files_and_of_a_deep_tree(tmp_path):
    flat = tmp_path / "lock"
    flat.mkdir()
    (flat / "owner.json").write_text("{}")
    remove_tree(str(flat))
    assert not flat.exists()
    deep = tmp_path / "release"
    (deep / "a" / "b").mkdir(parents=True)
    (deep / "a" / "b" / "f").write_text("x")
    (deep / "top").write_text("y")
    remove_tree(str(deep))
    assert not deep.exists()
    remove_tree(str(tmp_path / "missing"))  # nothing there: nothing to do, no error


def test_remove_tree_never_follows_a_link(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "data").write_text("precious")
    (tmp_path / "link").symlink_to(kept)
    remove_tree(str(tmp_path / "link"))
    assert (kept / "data").read_text() == "precious"
    inside = tmp_path / "dir"
    inside.mkdir()
    (inside / "to-kept").symlink_to(kept)
    remove_tree(str(inside))
    assert not inside.exists()
    assert (kept / "data").read_text() == "precious"


def test_wait_for_returns_the_exit_code_or_kills_at_the_timeout():
    quick = subprocess.Popen(["sh", "-c", "exit 7"])
    assert wait_for(quick.pid, 5) == 7
    started = time.monotonic()
    slow = subprocess.Popen(["sleep", "30"])
    assert wait_for(slow.pid, 0.3) is None
    assert time.monotonic() - started < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(slow.pid, os.WNOHANG)  # reaped: no zombie left behind
    for process in (quick, slow):
        process.returncode = 0  # reaped by wait_for; keep Popen's destructor from waiting again


def test_a_checked_archive_is_remembered_by_its_verified_checksum(tmp_path, monkeypatch):
    from golive.core.errors import BadInput
    from golive.core.release import Artifact
    from golive.flows import desired
    from golive.workspace import Workspace

    repo = Path(__file__).resolve().parents[2]
    ws = Workspace(repo)
    from golive.adapters.package import Entry, write_artifact

    good = write_artifact([Entry("bin/run", "file", 0o755, b"")], ws.app.name, "9.9", tmp_path, "good.tar.gz").path
    artifact = Artifact(version="9.9", name=good.name, path=str(good), sha256="a" * 64, size=good.stat().st_size)
    cache = tmp_path / "cache"
    desired.check_artifact_archive(ws.app, artifact, cache)
    assert len(list((cache / "archives-checked").iterdir())) == 1

    def unreadable(*args, **kwargs):
        raise AssertionError("the archive was opened again")

    monkeypatch.setattr(tarfile, "open", unreadable)
    desired.check_artifact_archive(ws.app, artifact, cache)  # remembered: not opened
    monkeypatch.undo()

    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("../evil"))
    other = Artifact(version="9.9", name=hostile.name, path=str(hostile), sha256="b" * 64,
                     size=hostile.stat().st_size)
    with pytest.raises(BadInput, match="'..' component"):
        desired.check_artifact_archive(ws.app, other, cache)
    assert len(list((cache / "archives-checked").iterdir())) == 1  # a refusal is never remembered


def test_a_no_change_that_compares_every_file_stays_lean(tmp_path):
    """The real no-change round trip compares every entry of the live release (as drift does) and
    asks the service: for a small release, still none of those modules (hashlib only pays off past
    a megabyte; /health goes over the _socket C module)."""
    import hashlib
    import socketserver
    import threading
    from http.server import BaseHTTPRequestHandler

    root = tmp_path / "app"
    release = root / "releases" / "1.0-x"
    (release / "config").mkdir(parents=True)
    (release / "bin").mkdir()
    (release / "bin" / "run").write_text("#!/bin/sh\n")
    (release / "config" / "app.ini").write_text("a=1\n")
    for path, mode in ((release, 0o755), (release / "config", 0o755), (release / "bin", 0o755),
                       (release / "bin" / "run", 0o755), (release / "config" / "app.ini", 0o644)):
        os.chmod(path, mode)
    (root / "current").symlink_to("releases/1.0-x")
    (root / "etc").mkdir()
    (root / "etc" / "app.ini").symlink_to(root / "current" / "config" / "app.ini")

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps({"status": "ok", "version": "1.0", "config_hash": "c", "release": "1.0-x"}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = socketserver.TCPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    meta = {"id": "1.0-x", "state": "good", "version": "1.0", "config_hash": "c",
            "health": {"url": f"http://127.0.0.1:{server.server_address[1]}/health", "timeout": 2}}
    (root / ".golive" / "releases").mkdir(parents=True)
    (root / ".golive" / "releases" / "1.0-x.json").write_text(json.dumps(meta))

    def entry(path, kind, mode):
        found = {"type": kind, "mode": mode}
        if kind == "file":
            data = (release / path).read_bytes()
            found.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        return found

    files = {".": entry(".", "dir", "0755"), "bin": entry("bin", "dir", "0755"),
             "bin/run": entry("bin/run", "file", "0755"), "config": entry("config", "dir", "0755"),
             "config/app.ini": entry("config/app.ini", "file", "0644")}
    desired = {"desired_release": "1.0-x", "config_dir": str(root / "etc"), "release_files": files, "ignore": [],
               "live_files": [{"dest": "app.ini", "sha256": files["config/app.ini"]["sha256"], "secret": False}]}
    request = {"root": str(root), "token": "t" * 32, "mask": [], "steps": [
        {"op": "lock", "owner": {"operator": "test"}},
        {"op": "state", "name": "state", "history": False, **desired},
        {"op": "finish_if_unchanged", "name": "record", "entry": {"action": "deploy"}, "keep_lock": False,
         **desired}]}
    probe = BOOTSTRAP + ";sys.stderr.write(' '.join(sorted(sys.modules)))"
    try:
        result = subprocess.run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                                 "-I", "-S", "-c", probe], input=request_header(request), capture_output=True,
                                check=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    answer = json.loads(result.stdout)
    assert answer["ok"] and answer["result"] == "unchanged", answer["steps"][1]["data"]["desired_live_problems"]
    loaded = set(result.stderr.decode().split())
    assert not loaded & {"json", "re", "enum", "socket", "shutil", "signal", "subprocess", "hashlib"}, \
        loaded & {"json", "re", "enum", "socket", "shutil", "signal", "subprocess", "hashlib"}

"""The on-host half of golive, sent over SSH and run with the host's python3 (stdlib only).

A request travels on the exec channel's stdin as: a 38-byte header (the controller's Python
version, then the lengths of the three parts), the agent compiled by the controller (marshal,
zlib), the agent's source (zlib), the JSON request, then any streamed payload (an artifact). The
agent is shared.py followed by the program (hostagent.py, with archive.py ahead of it, or
collector.py), in one code object. A host
running the controller's Python version loads the compiled code (compiling costs ~6 ms of host
CPU per request); any other Python compiles the source. The bootstrap below is the whole command
line: no file is left on the host.
"""

from __future__ import annotations

import json
import marshal
import sys
import zlib
from functools import cache
from pathlib import Path

BOOTSTRAP = (
    "import sys,zlib,marshal;i=sys.stdin.buffer;h=i.read(38);"
    "a=i.read(int(h[8:18]));s=i.read(int(h[18:28]));r=i.read(int(h[28:38]));"
    "c=marshal.loads(zlib.decompress(a)) if h[:8].strip()==('%d.%d'%sys.version_info[:2]).encode() "
    "else compile(zlib.decompress(s),'golive-agent','exec');"
    "exec(c,{'__name__':'golive_agent','REQUEST':r,'STREAM':i})"
)
PYTHON_TAG = ("%d.%d" % sys.version_info[:2]).encode().ljust(8)


# What travels for each program, in order, in one code object: the names of the earlier parts are
# the program's own.
# dbagent extends the host agent's program (its steps run in the same batch machinery); the host
# agent's own entry point stays quiet in it (GOLIVE_EXTENDED).
PARTS = {"hostagent": ("shared", "archive", "hostagent"), "collector": ("shared", "collector"),
         "dbagent": ("shared", "archive", "hostagent", "dbagent")}
EXTENDED = {"dbagent": b"GOLIVE_EXTENDED = True\n"}


@cache
def _agent(module: str) -> tuple[bytes, bytes]:
    here = Path(__file__).parent
    source = EXTENDED.get(module, b"") + b"\n\n".join((here / f"{part}.py").read_bytes() for part in PARTS[module])
    compiled = marshal.dumps(compile(source, "golive-agent", "exec", dont_inherit=True))
    return zlib.compress(compiled, 6), zlib.compress(source, 9)


def command_line(python: str, sudo: bool = False) -> str:
    prefix = "sudo -n " if sudo else ""
    # -I: ignore the host's PYTHON* variables and user site; -S: skip site (faster start-up).
    return f'{prefix}{python} -I -S -c "{BOOTSTRAP}"'


def request_header(request: dict, module: str = "hostagent") -> bytes:
    """Everything sent before the streamed payload."""
    compiled, source = _agent(module)
    body = json.dumps(request, sort_keys=True).encode()
    return PYTHON_TAG + b"%010d%010d%010d" % (len(compiled), len(source), len(body)) + compiled + source + body

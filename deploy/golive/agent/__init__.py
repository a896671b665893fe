"""The on-host half of golive, sent over SSH and run with the host's python3 (stdlib only).

A request travels on the exec channel's stdin as: 10 digits of compressed-agent length, 10 digits
of request length, the zlib-compressed agent source, the JSON request, then any streamed payload
(an artifact). The bootstrap below is the whole command line: no file is left on the host.
"""

from __future__ import annotations

import json
import zlib
from functools import cache
from pathlib import Path

BOOTSTRAP = (
    "import sys,zlib;i=sys.stdin.buffer;n=int(i.read(10));m=int(i.read(10));"
    "c=zlib.decompress(i.read(n));"
    "exec(compile(c,'golive-agent','exec'),{'__name__':'golive_agent','REQUEST':i.read(m),'STREAM':i})"
)


@cache
def compressed_source(module: str = "hostagent") -> bytes:
    return zlib.compress((Path(__file__).parent / f"{module}.py").read_bytes(), 9)


def command_line(python: str, sudo: bool = False) -> str:
    prefix = "sudo -n " if sudo else ""
    # -I: ignore the host's PYTHON* variables and user site; -S: skip site (faster start-up).
    return f'{prefix}{python} -I -S -c "{BOOTSTRAP}"'


def request_header(request: dict, module: str = "hostagent") -> bytes:
    """Everything sent before the streamed payload."""
    source = compressed_source(module)
    body = json.dumps(request, sort_keys=True).encode()
    return b"%010d%010d" % (len(source), len(body)) + source + body

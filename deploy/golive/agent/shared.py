"""What both on-host programs (the host agent and the fingerprint collector) use: stdlib only,
Python 3.6 and up.

golive.agent sends this file's code ahead of the program it runs, in the same code object, so on a
host these names are simply there; on the controller the programs import them from here.
"""

try:
    from _sha256 import sha256  # CPython's built-in; hashlib would first load OpenSSL (~3 ms)
except ImportError:
    from hashlib import sha256

CHUNK = 1 << 20


# -- JSON through the json module's C half ---------------------------------------------------
# The agent runs with `python3 -I -S`, where `import json` costs ~13 ms of host CPU (its Python half
# imports re, enum, functools and collections), more than the rest of a no-change request's own
# work; a fleet pays it on every host for every round trip. The C half (_json) parses and writes
# the same JSON: to_json gives exactly json.dumps(value, sort_keys=True), from_json what
# json.loads gives. A Python whose _json differs falls back to the json module (checked below).

class _DecoderSettings:
    """The attributes _json.make_scanner reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


def _not_serializable(value):
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def _c_codec():
    import _json

    scan = _json.make_scanner(_DecoderSettings())

    def to_json(value):
        encode = _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii, None, ": ", ", ",
                                    True, False, True)
        return "".join(encode(value, 0))

    def from_json(text):
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        text = text.strip(" \t\n\r")
        try:
            value, end = scan(text, 0)
        except StopIteration:
            raise ValueError("not a JSON document") from None
        if end != len(text):
            raise ValueError("extra data after the JSON document (at %d)" % end)
        return value

    sample = {"b": [1, 2.5, None, True, "\u00e9\n"], "a": {"z": -1, "y": float("inf")}}
    expected = '{"a": {"y": Infinity, "z": -1}, "b": [1, 2.5, null, true, "\\u00e9\\n"]}'
    if to_json(sample) != expected or from_json(" " + expected + "\n") != sample:
        raise ImportError("this Python's _json differs")
    return to_json, from_json


try:
    to_json, from_json = _c_codec()
except (ImportError, AttributeError, TypeError, ValueError):
    import json

    def to_json(value):
        return json.dumps(value, sort_keys=True)

    from_json = json.loads


def read_json(path, default=None):
    try:
        with open(path, "rb") as handle:
            return from_json(handle.read())
    except (OSError, ValueError):
        return default


def fast_sha256():
    """For megabytes (artifacts, a release's files): OpenSSL's sha256 is several times faster than
    the built-in one, which pays off beyond its ~3 ms import."""
    import hashlib

    return hashlib.sha256()


def sha256_file(path, digest=None):
    digest = digest or sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def http_get(url, timeout):
    """(status, body) of a GET. A plain socket for http://: urllib.request costs every host ~40 ms
    of CPU to import, which a fleet restarting at once pays 30 times over on go-live night."""
    if not url.startswith("http://"):
        import urllib.error
        import urllib.request

        try:
            response = urllib.request.urlopen(url, timeout=timeout)
            return response.status, response.read(65536)
        except urllib.error.HTTPError as error:
            return error.code, error.read(65536)
    import socket  # here, not at the top: only health checks need it (~5 ms of host CPU to import)

    authority, _, path = url[len("http://"):].partition("/")
    host, _, port = authority.rpartition(":") if ":" in authority.strip("[]").split("]")[-1] else (authority, "", "")
    host = host.strip("[]") or authority
    connection = socket.create_connection((host, int(port or 80)), timeout=timeout)
    try:
        connection.sendall(("GET /%s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, authority)).encode())
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        connection.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError("not an HTTP answer: %r" % head[:60]) from None
    return status, body


# -- the health contract (docs/health.md) -----------------------------------------------------
# One rule for every engine and verb: the host agent's verify and live check, the collector (drift,
# preflight), the checks (golive.flows.checkplugin, on the controller) and the Ansible role's verify
# (roles/golive/vars/main.yml, golive_health_problem, in the same words).

def health_expect(health):
    """What a health answer must report (golive.yml `health.expect`). A release whose metadata
    predates `expect` was verified, when it had a URL, by its version and config hash."""
    if "expect" in health:
        return list(health.get("expect") or [])
    return ["version", "config_hash"] if health.get("url") else []


def health_problem(health, expected, code, body):
    """Why one health answer is unhealthy ("" when it is healthy).

    health: the release's health settings (url or command, expect); expected: the release's own
    version, config_hash and release id; code: the URL's HTTP status or the command's exit code,
    None when nothing answered (body then says why); body: the answer (the command's output)."""
    url = health.get("url")
    if code is None:
        return "%s: %s" % (url or "health command", body)
    if url and not 200 <= code < 300:
        return "%s: HTTP %d" % (url, code)
    if not url and code != 0:
        return "health command exit %d: %s" % (code, body.strip()[-200:])
    expect = health_expect(health)
    if not expect:
        return ""
    try:
        report = from_json(body)
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return "the health answer is not a JSON object reporting %s: %s" % (", ".join(expect),
                                                                             to_json(body.strip()[:80]))
    for key in expect:
        if key not in report:
            return "the health answer does not report %s (expected %s)" % (key, to_json(expected.get(key)))
        if report[key] != expected.get(key):
            return "health reports %s %s, expected %s" % (key, to_json(report[key]), to_json(expected.get(key)))
    return ""


def health_expected(meta, release):
    """A release's own values, which a health answer is compared with."""
    return {"version": meta.get("version"), "config_hash": meta.get("config_hash"),
            "release": meta.get("id") or release}

"""What both on-host programs (the host agent and the fingerprint collector) use: stdlib only,
Python 3.6 and up.

golive.agent sends this file's code ahead of the program it runs, in the same code object, so on a
host these names are simply there; on the controller the programs import them from here.
"""

import os

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


def host_platform():
    """What an artifact may require of the host (golive.core.requires): the version of the python3
    running this program (the interpreter golive runs the agent with), the C library's glibc version
    (None without glibc: musl has no CS_GNU_LIBC_VERSION) and the machine architecture."""
    import sys

    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (ValueError, OSError, AttributeError):
        libc = None
    glibc = libc.split()[-1] if libc and libc.split()[0].lower() == "glibc" else None
    return {"python": "%d.%d.%d" % sys.version_info[:3], "python_path": sys.executable, "glibc": glibc,
            "arch": os.uname()[4]}


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
    try:  # the C module: `socket` itself imports enum and selectors (~13 ms of host CPU with python3 -S)
        import _socket as socket
    except ImportError:
        import socket

    authority, _, path = url[len("http://"):].partition("/")
    host, _, port = authority.rpartition(":") if ":" in authority.strip("[]").split("]")[-1] else (authority, "", "")
    host = host.strip("[]") or authority
    connection = None
    failure = OSError("%s does not resolve" % host)
    try:  # bytes: a str host goes through the idna codec, which imports re and enum (~10 ms)
        name = host.encode("ascii")
    except UnicodeEncodeError:
        name = host
    for family, kind, protocol, _, address in socket.getaddrinfo(name, int(port or 80), 0, socket.SOCK_STREAM):
        connection = socket.socket(family, kind, protocol)
        try:
            connection.settimeout(timeout)
            connection.connect(address)
            break
        except OSError as error:
            connection.close()
            connection, failure = None, error
    if connection is None:
        raise failure
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


# -- masking secrets ---------------------------------------------------------------------------
# The controller's rules (golive.core.redact), on the host: the controller sends every form of every
# secret it knows for the host (raw, escaped, encoded, each line; FLOOR characters or more); the
# host masks command output on its raw bytes, before it is decoded, cut or quoted, and masks what
# it writes into the ledger. One corpus (tests/hostile/test_secrets_corpus.py) tests both sides.

MASK = "********"
MASK_FLOOR = 4


def mask_spans(data, forms):
    """Where each form occurs in data (str or bytes, forms of the same type), overlaps kept."""
    spans = []
    for form in forms:
        start = data.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = data.find(form, start + 1)
    return spans


def apply_mask(data, spans, mask):
    """data with each stretch covered by overlapping spans replaced by one mask."""
    if not spans:
        return data
    spans.sort()
    out = []
    position = 0
    start, end = spans[0]
    for next_start, next_end in spans[1:] + [(len(data) + 1, len(data) + 1)]:
        if next_start <= end:
            end = max(end, next_end)
            continue
        out.append(data[position:start])
        out.append(mask)
        position = end
        start, end = next_start, next_end
    out.append(data[position:])
    return data[:0].join(out)


class Masker(object):
    def __init__(self, forms):
        texts = set(f for f in forms or () if isinstance(f, str) and len(f) >= MASK_FLOOR)
        self.texts = sorted(texts, key=len, reverse=True)
        self.blobs = [t.encode("utf-8", "surrogatepass") for t in self.texts]
        self.longest = len(self.blobs[0]) if self.blobs else 0

    def text(self, value):
        if not self.texts or not isinstance(value, str):
            return value
        return apply_mask(value, mask_spans(value, self.texts), MASK)

    def data(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return dict((key, self.data(item)) for key, item in value.items())
        if isinstance(value, list):
            return [self.data(item) for item in value]
        return value

    def tail_bytes(self, data, limit):
        """The last `limit` bytes of raw output as text, masked before it is cut or decoded."""
        if self.blobs:
            data = apply_mask(data, mask_spans(data, self.blobs), MASK.encode())
        return data[-limit:].decode("utf-8", "replace")

    def tail(self, text, limit):
        """The last `limit` characters of a text, masked first."""
        text = self.text(text)
        return text[-limit:] if len(text) > limit else text

    def head(self, text, limit):
        text = self.text(text)
        return text[:limit] + "..." if len(text) > limit else text

    def window(self, size, limit):
        """How much of the end of an output of `size` bytes to read so that its last `limit` bytes
        can be masked whole: a secret ending inside them starts inside the window."""
        return min(size, limit + self.longest)


def read_output_tail(handle, limit, masker):
    """The masked last `limit` bytes of an output file (open, binary), reading only its end."""
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(size - masker.window(size, limit))
    return masker.tail_bytes(handle.read(), limit)


# -- a release's files ------------------------------------------------------------------------
# What drift (the collector), a deploy's no-change decision and its repair (the host agent) read of
# a release directory, and how they compare it with what the release should be. Entries are keyed
# by their path relative to the release directory ("." is the directory itself), links are never
# followed, and nothing is skipped but what golive.yml's `drift.ignore` names. The controller's
# golive.core.drift.release_differences is this comparison's twin (tests/unit/test_drift_core.py
# holds the two to the same verdicts).

def _segment_matches(pattern, text):
    """fnmatch for one path segment, `*` and `?` only (no `re`: every module costs each host)."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]) and pattern[p] != "*":
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def _segments_match(pattern, parts):
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_segments_match(pattern[1:], parts[skip:]) for skip in range(len(parts) + 1))
    return bool(parts) and _segment_matches(pattern[0], parts[0]) and _segments_match(pattern[1:], parts[1:])


def ignored(path, patterns):
    """True when `path` (relative, "/"-separated) or a directory above it matches a drift.ignore
    pattern: segments of `*` and `?` globs, `**` (a whole segment) for any number of segments."""
    if not patterns or path == ".":
        return False
    parts = path.split("/")
    for pattern in patterns:
        segments = pattern.split("/")
        for depth in range(1, len(parts) + 1):
            if _segments_match(segments, parts[:depth]):
                return True
    return False


def _kind(mode):
    import stat

    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def scan_release(base, patterns=(), hashes=True):
    """(entries, ignored count) of the release directory `base`, by lstat: path -> {type, mode
    ("0644"), uid, gid, size, sha256 (with `hashes`) | link}. Ignored paths are counted, not listed."""
    import stat

    entries = {}
    skipped = [0]
    digest = None
    if hashes:
        digest = fast_sha256

    def add(path, relative, info):
        kind = _kind(info.st_mode)
        entry = {"type": kind, "mode": "%04o" % stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid}
        if kind == "file":
            entry["size"] = info.st_size
            if digest is not None:
                entry["sha256"] = sha256_file(path, digest())
        elif kind == "link":
            entry["link"] = os.readlink(path)
            del entry["mode"]  # always 0777 on Linux: not an attribute anyone sets
        entries[relative] = entry
        return kind

    def walk(folder, prefix):
        with os.scandir(folder) as listing:
            found = sorted(listing, key=lambda e: e.name)
        for item in found:
            relative = prefix + item.name
            if ignored(relative, patterns):
                skipped[0] += count_tree(item.path) if item.is_dir(follow_symlinks=False) else 1
                continue
            if add(item.path, relative, os.lstat(item.path)) == "dir":
                walk(item.path, relative + "/")

    if add(base, ".", os.lstat(base)) == "dir":
        walk(base, "")
    return entries, skipped[0]


def count_tree(path):
    """Entries at and below `path` (an ignored directory counts with everything in it)."""
    total = 1
    try:
        with os.scandir(path) as listing:
            for item in listing:
                total += count_tree(item.path) if item.is_dir(follow_symlinks=False) else 1
    except OSError:
        pass
    return total


def release_differences(desired, actual, uid, gid):
    """[(path, aspect)] where the release directory differs from what it should be, parents
    before children; aspect: missing, added, type, content, link, mode, owner, group. `desired`:
    path -> {type, mode, sha256, size | link}; `actual` as scan_release gives it (a file without
    sha256 is compared by size only); everything must belong to uid:gid, who unpacked it."""
    found = []
    for path in sorted(set(desired) | set(actual), key=lambda p: (p != ".", p.split("/"))):
        want, have = desired.get(path), actual.get(path)
        if have is None:
            found.append((path, "missing"))
            continue
        if want is None:
            found.append((path, "added"))
            continue
        if want["type"] != have["type"]:
            found.append((path, "type"))
            continue
        if want["type"] == "file" and (("size" in want and want["size"] != have.get("size"))
                                       or ("sha256" in have and want.get("sha256") != have["sha256"])):
            found.append((path, "content"))
        elif want["type"] == "link" and want.get("link") != have.get("link"):
            found.append((path, "link"))
        if want["type"] != "link" and want.get("mode") != have.get("mode"):
            found.append((path, "mode"))
        if have.get("uid") != uid:
            found.append((path, "owner"))
        if have.get("gid") != gid:
            found.append((path, "group"))
    return found


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


def health_problem(health, expected, code, body, masker=None):
    """Why one health answer is unhealthy ("" when it is healthy).

    health: the release's health settings (url or command, expect); expected: the release's own
    version, config_hash and release id; code: the URL's HTTP status or the command's exit code,
    None when nothing answered (body then says why); body: the answer (the command's output), raw:
    it is parsed as it came. With `masker`, whatever of the answer is quoted is masked before it is
    cut (a masked answer may no longer parse: a secret's JSON-escaped form holds quotes)."""
    url = health.get("url")
    shown = masker.text(body) if masker is not None else body
    if code is None:
        return "%s: %s" % (url or "health command", shown)
    if url and not 200 <= code < 300:
        return "%s: HTTP %d" % (url, code)
    if not url and code != 0:
        return "health command exit %d: %s" % (code, shown.strip()[-200:])
    expect = health_expect(health)
    if not expect:
        return ""
    try:
        report = from_json(body)
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return "the health answer is not a JSON object reporting %s: %s" % (", ".join(expect),
                                                                             to_json(shown.strip()[:80]))
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

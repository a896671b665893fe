"""What both on-host programs (the host agent and the fingerprint collector) use: stdlib only,
Python 3.6 and up.

golive.agent sends this file's code ahead of the program it runs, in the same code object, so on a
host these names are simply there; on the controller the programs import them from here.
"""

import json
import socket

try:
    from _sha256 import sha256  # CPython's built-in; hashlib would first load OpenSSL (~3 ms)
except ImportError:
    from hashlib import sha256

CHUNK = 1 << 20


def read_json(path, default=None):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
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

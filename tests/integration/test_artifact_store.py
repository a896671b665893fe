"""Artifacts from an HTTP(S) artifact repository and an S3-compatible bucket, served for real by a
local server (HTTPS with a throwaway CA made here): fetched once into .golive-cache/, verified
against the published sha256 before any host is touched, reused verified on the next run; a failed
fetch or a wrong digest is exit 2 naming the URL with its credentials masked."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from golive.adapters.artifact_store import sigv4_headers
from tests.conftest import run_golive, snapshot_difference, snapshot_hosts

USER, PASSWORD, TOKEN = "deployer", "Store-Pass-2026!", "tok-9f8e7d6c5b4a"
ACCESS, SECRET = "AKIAGOLIVETEST", "golive/test+secret"
BUCKET = "vendor-releases"


class Store:
    """A repository on 127.0.0.1: files under `root` at /repository/releases/<app>/<version>/<file>
    (Nexus-style) and /<bucket>/<key> (S3 path-style); it checks the credentials it is told to."""

    def __init__(self, root: Path, auth: str = "basic", tls: tuple[str, str] | None = None) -> None:
        self.root, self.auth = root, auth
        self.requests: list[str] = []
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                store.requests.append(self.path)
                if not store.allowed(self):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="releases"')
                    self.end_headers()
                    return
                path = store.root / self.path.split("?")[0].lstrip("/")
                if not path.is_file():
                    self.send_response(404)
                    self.end_headers()
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def allowed(self, request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "none":
            return True
        if self.auth == "basic":
            return header == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.auth == "token":
            return header == f"Bearer {TOKEN}"
        if self.auth == "sigv4":  # recomputed with golive's signer, pinned to AWS's own example below
            stamp = datetime.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.UTC)
            expected = sigv4_headers(f"{self.base}{request.path}", "eu-central-1", ACCESS, SECRET, now=stamp)
            return header == expected["Authorization"]
        return False

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def publish(store_root: Path, releases: Path, version: str, nexus: bool = True) -> None:
    name = f"northwind-{version}.tar.gz"
    where = store_root / ("repository/releases/northwind" if nexus else f"{BUCKET}/northwind") / version
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy2(releases / name, where / name)
    shutil.copy2(releases / f"{name}.sha256", where / f"{name}.sha256")


def remote_workspace(workspace: Path, store_settings: str, credentials: str = "") -> Path:
    """The example workspace with its local store emptied and golive.yml pointed at the remote one."""
    shutil.rmtree(workspace / "build" / "releases")
    app = workspace / "golive.yml"
    text = app.read_text()
    marker = "release_store:\n"
    app.write_text(text.replace(marker, marker + store_settings))
    if credentials:  # vault-encrypted with the workspace's (example) vault password, as a user would
        code = ("import sys; from ansible.parsing.vault import VaultLib, VaultSecret; "
                "password = open(sys.argv[1], 'rb').read().strip(); "
                "vault = VaultLib([('default', VaultSecret(password))]); "
                "sys.stdout.buffer.write(vault.encrypt(sys.stdin.buffer.read()))")
        encrypted = subprocess.run([sys.executable, "-c", code, str(workspace / "vault-password.example")],
                                   input=credentials.encode(), capture_output=True, check=True).stdout
        (workspace / "store-credentials.yml").write_bytes(encrypted)
    return workspace


@pytest.fixture
def nexus(tmp_path, release_store):
    root = tmp_path / "nexus"
    for version in ("1.0", "1.1"):
        publish(root, release_store, version)
    store = Store(root, "basic")
    yield store
    store.stop()


def nexus_settings(store: Store) -> str:
    return (f'  url: "{store.base}/repository/releases/{{app}}/{{version}}/{{artifact}}"\n'
            "  credentials: store-credentials.yml\n")


def cached(workspace: Path) -> list[str]:
    directory = workspace / ".golive-cache" / "artifacts"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_a_release_from_an_artifact_repository_is_fetched_once_verified_and_deployed(workspace, nexus, engine):
    ws = remote_workspace(workspace, nexus_settings(nexus), f"username: {USER}\npassword: {PASSWORD}\n")
    engine_args = ("--engine", engine) if engine == "ansible" else ()
    result = run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", "--json", *engine_args)
    assert result.returncode == 0, result.output
    assert cached(ws) == ["northwind-1.0.tar.gz", "northwind-1.0.tar.gz.sha256"]
    assert sorted(nexus.requests) == ["/repository/releases/northwind/1.0/northwind-1.0.tar.gz",
                                      "/repository/releases/northwind/1.0/northwind-1.0.tar.gz.sha256"]
    report = result.json()["hosts"][0]
    assert report["status"] == "deployed" and report["to_release"].startswith("1.0-")
    assert PASSWORD not in result.output and USER not in result.output
    # a re-run (and a plan) uses the verified copy in the cache: the store is not asked again
    nexus.requests.clear()
    run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", *engine_args, check=0)
    run_golive(ws, "plan", "manufacturer", "staging", "--release", "1.0", check=0)
    assert nexus.requests == []


def test_a_digest_that_does_not_match_is_refused_naming_the_url_and_no_host_is_touched(workspace, nexus,
                                                                                       test_hosts):
    digest = nexus.root / "repository/releases/northwind/1.1/northwind-1.1.tar.gz.sha256"
    digest.write_text("0" * 64 + "  northwind-1.1.tar.gz\n")
    ws = remote_workspace(workspace, nexus_settings(nexus), f"username: {USER}\npassword: {PASSWORD}\n")
    before = snapshot_hosts(test_hosts)
    result = run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.1")
    assert result.returncode == 2, result.output
    assert "checksum mismatch" in result.stderr and f"{nexus.base}/repository/releases/northwind/1.1/" in result.stderr
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    assert cached(ws) == []  # nothing unverified is kept


@pytest.mark.parametrize("case", ["not published", "no credentials", "wrong password", "store down"])
def test_a_fetch_that_fails_is_exit_2_naming_the_url_with_credentials_masked(workspace, nexus, test_hosts, case):
    settings = nexus_settings(nexus)
    credentials = f"username: {USER}\npassword: {PASSWORD}\n"
    version = "1.0"
    if case == "not published":
        version = "7.7"
    elif case == "no credentials":
        settings, credentials = settings.replace("  credentials: store-credentials.yml\n", ""), ""
    elif case == "wrong password":
        credentials = f"username: {USER}\npassword: not-{PASSWORD}\n"
    elif case == "store down":
        nexus.stop()
    ws = remote_workspace(workspace, settings, credentials)
    before = snapshot_hosts(test_hosts)
    result = run_golive(ws, "deploy", "manufacturer", "staging", "--release", version)
    assert result.returncode == 2, result.output
    assert f"{nexus.base}/repository/releases/northwind/{version}/northwind-{version}.tar.gz" in result.stderr
    assert "fetch failed" in result.stderr and "Traceback" not in result.output
    assert PASSWORD not in result.output and "not-" + PASSWORD not in result.output
    assert snapshot_difference(before, snapshot_hosts(test_hosts)) == []
    if case in ("no credentials", "wrong password"):
        assert "HTTP 401" in result.stderr and "credentials" in result.stderr


def test_a_token_from_the_environment_is_sent_and_never_shown(workspace, release_store):
    root = workspace.parent / "artifactory"
    publish(root, release_store, "1.0")
    store = Store(root, "token")
    try:
        url = f"{store.base}/repository/releases/{{app}}/{{version}}/{{artifact}}"
        ws = remote_workspace(workspace, f'  url: "{url}"\n')
        result = run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", "-v",
                            env={"GOLIVE_STORE_TOKEN": TOKEN})
        assert result.returncode == 0, result.output
        assert TOKEN not in result.output
        refused = run_golive(ws, "plan", "manufacturer", "staging", "--release", "1.1",
                             env={"GOLIVE_STORE_TOKEN": "x" + TOKEN})
        assert refused.returncode == 2 and TOKEN not in refused.output, refused.output
    finally:
        store.stop()


# -- HTTPS with a private CA ----------------------------------------------------------------------------

def throwaway_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "golive test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "store")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_https_with_a_private_ca_needs_its_bundle(workspace, release_store):
    ca, certificate, key = throwaway_ca(workspace.parent / "pki")
    root = workspace.parent / "secure-store"
    publish(root, release_store, "1.0")
    store = Store(root, "none", tls=(str(certificate), str(key)))
    try:
        settings = f'  url: "{store.base}/repository/releases/{{app}}/{{version}}/{{artifact}}"\n'
        ws = remote_workspace(workspace, settings)
        refused = run_golive(ws, "plan", "manufacturer", "staging", "--release", "1.0")
        assert refused.returncode == 2, refused.output
        assert "not trusted" in refused.stderr and "ca_bundle" in refused.stderr and store.base in refused.stderr
        shutil.copy2(ca, ws / "private-ca.pem")
        app = ws / "golive.yml"
        app.write_text(app.read_text().replace(settings, settings + "  ca_bundle: private-ca.pem\n"))
        run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
        assert cached(ws) == ["northwind-1.0.tar.gz", "northwind-1.0.tar.gz.sha256"]
    finally:
        store.stop()


# -- an S3-compatible bucket -----------------------------------------------------------------------------

def test_an_s3_compatible_bucket_signed_with_an_access_key(workspace, release_store):
    root = workspace.parent / "s3"
    publish(root, release_store, "1.0", nexus=False)
    store = Store(root, "sigv4")
    try:
        settings = (f"  s3: {{endpoint: '{store.base}', bucket: {BUCKET}, region: eu-central-1}}\n"
                    "  credentials: store-credentials.yml\n")
        ws = remote_workspace(workspace, settings, f"access_key_id: {ACCESS}\nsecret_access_key: {SECRET}\n")
        result = run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0")
        assert result.returncode == 0, result.output
        assert f"/{BUCKET}/northwind/1.0/northwind-1.0.tar.gz" in store.requests
        assert SECRET not in result.output
    finally:
        store.stop()


def test_an_anonymous_bucket(workspace, release_store):
    root = workspace.parent / "public-s3"
    publish(root, release_store, "1.0", nexus=False)
    store = Store(root, "none")
    try:
        ws = remote_workspace(workspace, f"  s3: {{endpoint: '{store.base}', bucket: {BUCKET}}}\n")
        run_golive(ws, "deploy", "manufacturer", "staging", "--release", "1.0", check=0)
        assert f"/{BUCKET}/northwind/1.0/northwind-1.0.tar.gz.sha256" in store.requests
    finally:
        store.stop()


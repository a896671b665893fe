"""Release artifacts from where vendors publish them: an HTTP(S) artifact repository (Nexus,
Artifactory and the like: a URL pattern with {app}, {version} and {artifact}) or an S3-compatible
bucket (anonymous, or signed with an access key: AWS Signature Version 4, standard library only).

Fetched once into the workspace's cache (.golive-cache/artifacts/), verified against the sha256
published beside it (`<url>.sha256`, or the configured digest URL) before any host is touched, and
kept only once verified: a re-run uses the verified cached copy without asking the store again. A
fetch that fails and a digest that does not match are bad input (exit 2) naming the URL, its
credentials masked. Credentials come from a vault-encrypted file (release_store.credentials, the
workspace's vault password) or, for CI, from GOLIVE_STORE_USERNAME / _PASSWORD / _TOKEN /
_ACCESS_KEY_ID / _SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golive.core.errors import BadInput, Problem
from golive.core.redact import MASK
from golive.core.release import parse_sha256_file

ARTIFACTS = "artifacts"
CHUNK = 1 << 20
CREDENTIAL_KEYS = ("username", "password", "token", "access_key_id", "secret_access_key", "session_token")
ENVIRONMENT = {key: f"GOLIVE_STORE_{key.upper()}" for key in CREDENTIAL_KEYS}
SENSITIVE_QUERY = re.compile(r"(signature|token|password|secret|credential|key|auth)", re.IGNORECASE)


@dataclass(frozen=True)
class Remote:
    """Where and how one artifact (and its digest) are fetched."""

    url: str
    digest_url: str
    headers: Callable[[str], dict[str, str]]  # url -> request headers (authorisation)
    context: ssl.SSLContext | None
    timeout: float
    secrets: tuple[str, ...] = ()


def masked_url(url: str, secrets: tuple[str, ...] = ()) -> str:
    """The URL as golive may print it: user and password, signatures and tokens masked."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(f"{k}={MASK}" if SENSITIVE_QUERY.search(k) else f"{k}={v}"
                     for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    text = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, MASK).replace(urllib.parse.quote(secret, safe=""), MASK)
    return text


def fill(pattern: str, app: str, version: str, artifact: str) -> str:
    return pattern.replace("{app}", urllib.parse.quote(app)).replace(
        "{version}", urllib.parse.quote(version)).replace("{artifact}", urllib.parse.quote(artifact))


def fetch(remote: Remote, name: str, cache_dir: Path) -> Path:
    """The artifact, verified, in the cache: fetched now unless a verified copy is already there."""
    directory = cache_dir / ARTIFACTS
    target = directory / name
    digest_file = directory / f"{name}.sha256"
    if target.is_file() and digest_file.is_file():
        expected = parse_sha256_file(digest_file.read_text(errors="replace"), name)
        if expected and _sha256(target) == expected:
            return target
    expected = _published_digest(remote, name)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{name}.{os.getpid()}.part"
    try:
        digest = hashlib.sha256()
        with _open(remote, remote.url) as response, open(partial, "wb") as out:
            while block := response.read(CHUNK):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != expected:
            raise BadInput(Problem(masked_url(remote.url, remote.secrets),
                                   f"checksum mismatch: the artifact fetched hashes to {digest.hexdigest()[:16]}..., "
                                   f"its published sha256 ({masked_url(remote.digest_url, remote.secrets)}) says "
                                   f"{expected[:16]}...; nothing was kept and no host was touched"))
        os.replace(partial, target)
        temporary = directory / f".{name}.sha256.{os.getpid()}"
        temporary.write_text(f"{expected}  {name}\n")
        os.replace(temporary, digest_file)
    except OSError as error:
        raise BadInput(Problem(masked_url(remote.url, remote.secrets),
                               f"cannot fetch the artifact into {directory}: {error.strerror or error}")) from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def _published_digest(remote: Remote, name: str) -> str:
    with _open(remote, remote.digest_url) as response:
        text = response.read(1 << 16).decode("utf-8", "replace")
    expected = parse_sha256_file(text, name)
    if expected is None:
        raise BadInput(Problem(masked_url(remote.digest_url, remote.secrets),
                               f"not a sha256 for {name}: expected '<64 hex digits>  {name}'"))
    return expected


def _open(remote: Remote, url: str) -> Any:
    shown = masked_url(url, remote.secrets)
    request = urllib.request.Request(url, headers={"User-Agent": "golive", **remote.headers(url)})
    try:
        return urllib.request.urlopen(request, timeout=remote.timeout, context=remote.context)
    except urllib.error.HTTPError as error:
        hint = {401: " (credentials missing or wrong: release_store.credentials)",
                403: " (not allowed with these credentials)", 404: " (not published there)"}.get(error.code, "")
        raise BadInput(Problem(shown, f"fetch failed: HTTP {error.code} {error.reason}{hint}; no host was touched")) \
            from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            text = f"the server's certificate is not trusted ({reason.verify_message}); for a private CA set " \
                   f"release_store.ca_bundle"
        else:
            text = str(getattr(reason, "strerror", None) or reason)
        raise BadInput(Problem(shown, f"fetch failed: {text}; no host was touched")) from None
    except (OSError, ValueError) as error:  # timeouts, resets, a malformed URL
        raise BadInput(Problem(shown, f"fetch failed: {error}; no host was touched")) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# -- credentials ----------------------------------------------------------------------------------------

def credentials(workspace: Path, file: str, vault_password: Callable[[], bytes | None]) -> dict[str, str]:
    """The store's credentials: a vault-encrypted YAML file (keys username/password, token, or
    access_key_id/secret_access_key), then the GOLIVE_STORE_* environment variables."""
    found: dict[str, str] = {}
    if file:
        path = workspace / os.path.expanduser(file)
        if not path.is_file():
            raise BadInput(Problem("golive.yml release_store.credentials", f"{file} is not a file"))
        data = path.read_bytes()
        if data.lstrip().startswith(b"$ANSIBLE_VAULT;"):
            password = vault_password()
            if not password:
                raise BadInput(Problem(file, "vault-encrypted: golive needs the vault password "
                                             "(--vault-password-file, $GOLIVE_VAULT_PASSWORD_FILE or ansible.cfg)"))
            from golive.adapters.ansible_env import import_ansible

            import_ansible(workspace)
            from ansible.errors import AnsibleError
            from ansible.parsing.vault import VaultLib, VaultSecret

            try:
                data = VaultLib([("default", VaultSecret(password))]).decrypt(data)
            except AnsibleError:
                raise BadInput(Problem(file, "cannot decrypt it (wrong vault password)")) from None
        import yaml

        try:
            loaded = yaml.safe_load(data.decode("utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            raise BadInput(Problem(file, "not YAML (a mapping of username/password, token, or access keys)")) from None
        if not isinstance(loaded, Mapping):
            raise BadInput(Problem(file, "must be a mapping of username/password, token, or access keys"))
        unknown = sorted(set(loaded) - set(CREDENTIAL_KEYS))
        if unknown:
            raise BadInput(Problem(file, f"unknown key {', '.join(map(str, unknown))} (known: "
                                         f"{', '.join(CREDENTIAL_KEYS)})"))
        found = {k: str(v) for k, v in loaded.items() if v not in (None, "")}
    for key, variable in ENVIRONMENT.items():
        if os.environ.get(variable) and key not in found:
            found[key] = os.environ[variable]
    return found


def basic_or_token(found: Mapping[str, str], token_header: str) -> Callable[[str], dict[str, str]]:
    if found.get("token"):
        value = found["token"]
        header = token_header or "Authorization"
        return lambda url: {header: f"Bearer {value}" if header.lower() == "authorization" else value}
    if found.get("username"):
        pair = f"{found['username']}:{found.get('password', '')}".encode()
        encoded = base64.b64encode(pair).decode()
        return lambda url: {"Authorization": f"Basic {encoded}"}
    return lambda url: {}


# -- S3: AWS Signature Version 4 (GET) ---------------------------------------------------------------

def sigv4_headers(url: str, region: str, access_key: str, secret_key: str, session_token: str = "",
                  now: datetime.datetime | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers that sign an S3 GET of `url` (AWS Signature Version 4, unsigned payload is not
    used: a GET has the empty payload's hash)."""
    now = now or datetime.datetime.now(datetime.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    parts = urllib.parse.urlsplit(url)
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": stamp,
               **{k.lower(): v for k, v in (extra or {}).items()}}
    if session_token:
        headers["x-amz-security-token"] = session_token
    signed = ";".join(sorted(headers))
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)))
    canonical = "\n".join(["GET", urllib.parse.quote(urllib.parse.unquote(parts.path) or "/", safe="/-_.~"), query,
                           "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers)), signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    result = {k: v for k, v in headers.items() if k != "host"}
    result["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
                               f"Signature={signature}")
    return result


def s3_url(endpoint: str, bucket: str, key: str) -> str:
    """Path-style (`endpoint/bucket/key`): works with AWS and with MinIO, Ceph and the like."""
    return f"{endpoint.rstrip('/')}/{urllib.parse.quote(bucket)}/{key.lstrip('/')}"


# -- the store golive.yml describes -------------------------------------------------------------------

def remote_for(store: Any, workspace: Path, app: str, version: str, name: str,
               vault_password: Callable[[], bytes | None]) -> Remote | None:
    """How to fetch `name`, or None when the store is the local directory (release_store.path)."""
    if not (store.url or store.s3_bucket):
        return None
    found = credentials(workspace, store.credentials, vault_password)
    secrets = tuple(v for v in found.values() if v)
    context = None
    if store.ca_bundle:
        bundle = workspace / os.path.expanduser(store.ca_bundle)
        try:
            context = ssl.create_default_context(cafile=str(bundle))
        except (OSError, ssl.SSLError) as error:
            raise BadInput(Problem("golive.yml release_store.ca_bundle", f"{store.ca_bundle}: {error}")) from None
    if store.s3_bucket:
        url = s3_url(store.s3_endpoint, store.s3_bucket, fill(store.s3_key, app, version, name))
        digest_url = fill(store.sha256_url, app, version, name).replace("{url}", url) if store.sha256_url \
            else url + ".sha256"
        if found.get("access_key_id"):
            region = store.s3_region
            headers = lambda u: sigv4_headers(u, region, found["access_key_id"],  # noqa: E731
                                              found.get("secret_access_key", ""), found.get("session_token", ""))
        else:
            headers = lambda u: {}  # noqa: E731 - an anonymous (public-read) bucket
    else:
        url = fill(store.url, app, version, name)
        digest_url = fill(store.sha256_url, app, version, name).replace("{url}", url) if store.sha256_url \
            else url + ".sha256"
        headers = basic_or_token(found, store.token_header)
    return Remote(url, digest_url, headers, context, float(store.timeout), secrets)

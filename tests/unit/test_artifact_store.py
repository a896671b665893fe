"""The remote release store's pure parts: AWS Signature Version 4 against AWS's own published
example, URLs with their credentials masked, and golive.yml's release_store settings validated
(exit 2 naming the line). Fetching for real: tests/integration/test_artifact_store.py."""

from __future__ import annotations

import datetime
import re

import pytest

from golive.adapters.artifact_store import masked_url, sigv4_headers
from tests.conftest import run_golive


def test_sigv4_matches_the_example_aws_publishes():
    """docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "GET Object"."""
    headers = sigv4_headers("https://examplebucket.s3.amazonaws.com/test.txt", "us-east-1",
                            "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                            now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC), extra={"Range": "bytes=0-9"})
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


@pytest.mark.parametrize("url, secrets, shown", [
    ("https://bob:hunter22@repo.example/x.tar.gz", (), "https://********@repo.example/x.tar.gz"),
    ("https://s3.example/b/x?X-Amz-Signature=abcdef&X-Amz-Credential=AK%2F1&part=2", (),
     "https://s3.example/b/x?X-Amz-Signature=********&X-Amz-Credential=********&part=2"),
    ("https://repo.example/tok-12345/x", ("tok-12345",), "https://repo.example/********/x"),
])
def test_urls_are_shown_with_their_credentials_masked(url, secrets, shown):
    assert masked_url(url, secrets) == shown


STORE = "release_store:\n"


@pytest.mark.parametrize("settings, expected", [
    ('  url: "ftp://repo/{app}/{version}/{artifact}"\n', r"must be an http:// or https:// URL"),
    ('  url: "https://repo/latest.tar.gz"\n', r"must contain \{version\} or \{artifact\}"),
    ('  url: "https://repo/{product}/{version}"\n', r"unknown field \{product\}"),
    ('  url: "https://me:pw@repo/{version}"\n', r"no credentials in the URL"),
    ('  url: "https://repo/{version}"\n  s3: {endpoint: "https://s3", bucket: b}\n', r"either url .* or s3"),
    ("  s3: {bucket: releases}\n", r"needs both endpoint"),
    ('  url: "https://repo/{version}"\n  credentials: nowhere.yml\n', r"credentials: nowhere\.yml is not a file"),
    ('  url: "https://repo/{version}"\n  ca_bundle: ca.pem\n', r"ca_bundle: ca\.pem is not a file"),
    ('  url: "https://repo/{version}"\n  timeout: 0\n', r"timeout must be a positive"),
    ("  s3: {endpoint: s3.amazonaws.com, bucket: b}\n", r"s3\.endpoint must be an http"),
    ("  mirror: https://x\n", r"unknown key release_store\.mirror"),
])
def test_release_store_settings_are_validated_naming_the_line(offline_workspace, settings, expected):
    app = offline_workspace / "golive.yml"
    text = app.read_text()
    assert STORE in text
    app.write_text(text.replace(STORE, STORE + settings))
    result = run_golive(offline_workspace, "validate")
    assert result.returncode == 2, result.output
    assert re.search(r"golive\.yml:\d+", result.stderr) and re.search(expected, result.stderr), result.stderr

"""Rendering: deterministic bytes, customer overrides, secret files 0600 and never shown."""

from __future__ import annotations

import hashlib
import stat

from tests.conftest import VAULT_SECRETS, run_golive


def tree(directory) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_rendering_twice_gives_identical_bytes(offline_workspace, tmp_path):
    for customer in ("manufacturer", "retailer"):
        for environment in ("staging", "production"):
            first, second = tmp_path / f"{customer}-{environment}-1", tmp_path / f"{customer}-{environment}-2"
            run_golive(offline_workspace, "render", customer, environment, "--out", str(first), check=0)
            run_golive(offline_workspace, "render", customer, environment, "--out", str(second), check=0)
            assert tree(first) == tree(second) and tree(first)


def test_secret_files_are_0600_and_never_printed(offline_workspace, tmp_path):
    out = tmp_path / "out"
    shown = run_golive(offline_workspace, "render", "manufacturer", "production", "--out", str(out), check=0)
    secret = out / "mfg-prod-1" / "secrets.env"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "mfg-prod-1" / "northwind.ini").stat().st_mode) == 0o644
    assert VAULT_SECRETS[0] in secret.read_text()  # the file itself holds the secret...
    for args in ((), ("--json",)):
        result = run_golive(offline_workspace, "render", "manufacturer", "production", *args, check=0)
        assert "secrets.env" in result.stdout
        assert all(s not in result.output for s in VAULT_SECRETS)  # ...no output does
    assert all(s not in shown.output for s in VAULT_SECRETS)


def test_customer_override_template_wins(offline_workspace):
    mfg = run_golive(offline_workspace, "render", "manufacturer", "staging", check=0).stdout
    rtl = run_golive(offline_workspace, "render", "retailer", "staging", check=0).stdout
    assert "[mes]" in mfg and "shift.early = 06:00-14:00" in mfg and "plants = SH01,SZ02" in mfg
    assert "[mes]" not in rtl and "loyalty_program = LindnerPlus" in rtl
    assert "listen_address = 127.0.0.14" in rtl  # a templated inventory variable, resolved


def test_render_json_names_release_and_config_hash(offline_workspace):
    data = run_golive(offline_workspace, "render", "retailer", "production", "--release", "2.0", "--json",
                      check=0).json()
    host = data["hosts"]["rtl-prod-1"]
    assert host["release_id"] == f"2.0-{host['config_hash'][:8]}"
    secret = next(f for f in host["files"] if f["dest"] == "secrets.env")
    assert secret["secret"] is True and "content" not in secret and secret["mode"] == "0600"

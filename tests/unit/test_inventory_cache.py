"""The inventory cache gives back exactly what ansible-core loaded, only while nothing changed, and
keeps the vault's secrets encrypted."""

from __future__ import annotations

from datetime import date

from golive.adapters.inventory_cache import CACHE_DIR
from golive.workspace import Workspace
from tests.conftest import VAULT_SECRETS


def load(ws_dir, customer="manufacturer"):
    ws = Workspace(ws_dir)
    return ws, ws.customer(customer)


def test_a_cached_inventory_equals_the_loaded_one(offline_workspace):
    ws, fresh = load(offline_workspace)
    assert ws.inventory_cache.load("manufacturer") == fresh  # stored by the first load
    _, again = load(offline_workspace)
    assert again == fresh and again.secret_values == fresh.secret_values


def test_any_changed_inventory_file_is_a_miss(offline_workspace):
    ws, _ = load(offline_workspace)
    staging = offline_workspace / "inventories/manufacturer/group_vars/staging.yml"
    staging.write_text(staging.read_text().replace("workers: 2", "workers: 3"))
    assert ws.inventory_cache.load("manufacturer") is None
    _, reloaded = load(offline_workspace)
    assert reloaded.environment("staging").hosts[0].vars["workers"] == 3


def test_secrets_are_encrypted_at_rest_and_dates_survive(offline_workspace):
    staging = offline_workspace / "inventories/manufacturer/group_vars/staging.yml"
    staging.write_text(staging.read_text() + "go_live_date: 2027-01-15\n")
    _, fresh = load(offline_workspace)
    cached = (offline_workspace / CACHE_DIR / "inventory-manufacturer.json").read_text()
    assert VAULT_SECRETS[0] not in cached and "Huaxin" not in cached  # all of it is ciphertext
    _, again = load(offline_workspace)
    assert again.environment("staging").hosts[0].vars["go_live_date"] == date(2027, 1, 15)


def test_another_vault_password_cannot_read_the_cache(offline_workspace, tmp_path):
    load(offline_workspace)
    other = tmp_path / "other-password"
    other.write_text("another password\n")
    ws = Workspace(offline_workspace, str(other))
    assert ws.inventory_cache.load("manufacturer") is None

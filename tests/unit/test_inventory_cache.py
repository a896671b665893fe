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


# -- links: the cache must never serve what ansible-core would no longer read ----------------------

def fresh_vars(ws_dir, customer="manufacturer"):
    """What ansible-core itself loads now (no cache)."""
    ws = Workspace(ws_dir)
    return {h.name: dict(h.vars) for h in ws.inventory.load(ws.app, customer).hosts}


def cached_vars(ws_dir, customer="manufacturer"):
    _, loaded = load(ws_dir, customer)
    return {h.name: dict(h.vars) for h in loaded.hosts}


def move_and_link(path, elsewhere):
    """Replace `path` by a symlink to a copy of it at `elsewhere`."""
    path.rename(elsewhere)
    path.symlink_to(elsewhere)


def test_edits_through_a_linked_group_vars_directory_are_seen(offline_workspace, tmp_path):
    inventory = offline_workspace / "inventories/manufacturer"
    move_and_link(inventory / "group_vars", tmp_path / "shared_group_vars")
    assert cached_vars(offline_workspace) == fresh_vars(offline_workspace)
    staging = tmp_path / "shared_group_vars" / "staging.yml"
    staging.write_text(staging.read_text().replace("workers: 2", "workers: 7"))
    seen = cached_vars(offline_workspace)
    assert seen["mfg-stg-1"]["workers"] == 7 and seen == fresh_vars(offline_workspace)


def test_edits_through_a_linked_vars_file_and_a_nested_linked_directory_are_seen(offline_workspace, tmp_path):
    inventory = offline_workspace / "inventories/manufacturer"
    move_and_link(inventory / "group_vars/staging.yml", tmp_path / "staging.yml")
    move_and_link(inventory / "group_vars/all", tmp_path / "all")
    cached_vars(offline_workspace)
    main = tmp_path / "all" / "main.yml"  # one edit at a time: each alone must be a miss
    main.write_text(main.read_text().replace("http_port: 8080", "http_port: 8181"))
    seen = cached_vars(offline_workspace)
    assert seen["mfg-prod-1"]["http_port"] == 8181 and seen == fresh_vars(offline_workspace)
    (tmp_path / "staging.yml").write_text((tmp_path / "staging.yml").read_text().replace("workers: 2", "workers: 5"))
    seen = cached_vars(offline_workspace)
    assert seen["mfg-stg-1"]["workers"] == 5 and seen == fresh_vars(offline_workspace)


def test_retargeting_a_link_is_seen(offline_workspace, tmp_path):
    inventory = offline_workspace / "inventories/manufacturer"
    move_and_link(inventory / "group_vars", tmp_path / "one")
    cached_vars(offline_workspace)
    import shutil

    shutil.copytree(tmp_path / "one", tmp_path / "two")
    staging = tmp_path / "two" / "staging.yml"
    staging.write_text(staging.read_text().replace("workers: 2", "workers: 9"))
    (inventory / "group_vars").unlink()
    (inventory / "group_vars").symlink_to(tmp_path / "two")
    seen = cached_vars(offline_workspace)
    assert seen["mfg-stg-1"]["workers"] == 9 and seen == fresh_vars(offline_workspace)
    # a file link moved to another file with other content
    (tmp_path / "other.yml").write_text((tmp_path / "two" / "staging.yml").read_text().replace("workers: 9",
                                                                                                "workers: 4"))
    (tmp_path / "two" / "staging.yml").unlink()
    (tmp_path / "two" / "staging.yml").symlink_to(tmp_path / "other.yml")
    seen = cached_vars(offline_workspace)
    assert seen["mfg-stg-1"]["workers"] == 4 and seen == fresh_vars(offline_workspace)


def test_a_link_loop_ends(offline_workspace):
    from golive.adapters.inventory_cache import fingerprint

    inventory = offline_workspace / "inventories/manufacturer"
    (inventory / "group_vars/all/loop").symlink_to("..")
    first = fingerprint(offline_workspace, "manufacturer", "v")
    main = inventory / "group_vars/all/main.yml"
    main.write_text(main.read_text() + "\n")
    assert fingerprint(offline_workspace, "manufacturer", "v") != first

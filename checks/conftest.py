"""Loads golive's check plugin: the `golive` and `health` fixtures, the --golive-* options, the ssh
config with verified host keys and one connection per host, the per-customer folders, and every
report masked (no secret in any form) before anything shows it."""

from golive.flows.checkplugin import (  # noqa: F401 - pytest finds hooks and fixtures by name here
    fetch,
    golive,
    health,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_ignore_collect,
    pytest_runtest_makereport,
    pytest_unconfigure,
)

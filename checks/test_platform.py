"""What the customer requires of the host: free disk space under the application root."""

import pytest


def test_free_disk_above_the_minimum(host, golive):
    minimum = golive.vars.get("min_free_disk_mb")
    if minimum is None:
        pytest.skip("min_free_disk_mb is not set for this host (docs/inventory.md)")
    available_kb = int(host.check_output("df -Pk %s", golive.root).splitlines()[-1].split()[3])
    assert available_kb // 1024 >= int(minimum), \
        f"{available_kb // 1024} MB free under {golive.root}, the customer requires {minimum} MB (min_free_disk_mb)"

from __future__ import annotations

import pytest

from golive.core.errors import BadInput
from golive.core.rollout import batches, crossed, max_fail_threshold


def test_serial_counts_and_percentages():
    hosts = list("abcdefg")
    assert batches(hosts, None) == [hosts]
    assert batches(hosts, "3") == [list("abc"), list("def"), ["g"]]
    assert batches(hosts, "25%") == [list("ab"), list("cd"), list("ef"), ["g"]]
    assert batches(hosts, "100%") == [hosts]


@pytest.mark.parametrize("value", ["0", "abc", "-1", "150%", "2x", ""])
def test_bad_serial_values_are_bad_input(value):
    if value == "":
        assert batches(["a"], value) == [["a"]]
        return
    with pytest.raises(BadInput, match="--serial"):
        batches(["a", "b"], value)


def test_max_fail_is_a_global_share():
    assert max_fail_threshold(None) == 1.0
    threshold = max_fail_threshold("20%")
    assert not crossed(2, 10, threshold)
    assert crossed(3, 10, threshold)
    assert not crossed(10, 10, 1.0)
    with pytest.raises(BadInput, match="percentage"):
        max_fail_threshold("3")

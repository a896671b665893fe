"""A lock's holder is alive exactly when its process runs with the start time the lock recorded,
whichever engine wrote the lock: roles/golive writes `pid_start` through ansible-core's templating,
which may hand it over as a number, the host agent as text. A live holder is never taken over."""

from __future__ import annotations

import os

import pytest

from golive.adapters.locks import controller_name, liveness, process_start, takeover_allowed


@pytest.mark.parametrize("as_written", [str, int], ids=["text (agent)", "number (role)"])
def test_a_live_holder_is_alive_however_its_start_time_was_written(as_written):
    holder = {"controller": controller_name(), "pid": os.getpid(), "pid_start": as_written(process_start(os.getpid()))}
    assert liveness(holder) == "alive"
    assert not takeover_allowed(holder)


@pytest.mark.parametrize("as_written", [str, int], ids=["text (agent)", "number (role)"])
def test_a_reused_pid_is_stale(as_written):
    holder = {"controller": controller_name(), "pid": os.getpid(),
              "pid_start": as_written(int(process_start(os.getpid())) + 1)}
    assert liveness(holder) == "stale"
    assert takeover_allowed(holder)

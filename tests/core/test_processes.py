"""A zombie (ended, not yet collected by its parent) is not running: its leftovers are orphans."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from polytask.core.processes import running


def test_a_zombie_is_not_running_and_a_live_process_is():
    assert running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while running(child.pid) and time.monotonic() < deadline:  # exits, and stays a zombie until waited for
        time.sleep(0.05)
    assert not running(child.pid)
    os.kill(child.pid, 0)  # yet signal 0 still finds the zombie: that check alone kept its leftovers
    assert child.poll() == 0  # collected only now: it was a zombie above, which signal 0 still finds
    assert not running(child.pid)


def test_a_process_that_does_not_exist_is_not_running():
    assert not running(2**22 + 12345)

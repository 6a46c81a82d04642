"""Whether a process is still running: the check that decides when a process's leftovers
(a killed worker's scratch folder, a cluster's processes) are its own to clean."""

from __future__ import annotations

import os


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie.

    A zombie has ended and waits for its parent to collect it: it will never act again
    (remove its folders, answer), though signal 0 still finds it. On Linux the state is read
    from ``/proc``; elsewhere only existence can be asked (signal 0).
    """
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: it exists
    return True

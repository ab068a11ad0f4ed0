"""Kill what outlives the target: the descendants re-parented to a child subreaper.

Without a pid namespace (fallback mode) a double-forked daemon would otherwise end up
with init and run on after the sandbox.  Two processes are subreapers: the supervisor,
which sweeps after the target exits, and the broker (the target's parent), which
sweeps when the supervisor itself dies -- SIGKILLed, say -- and its death signal
arrives (launcher/child.py).  Imports only ``os`` and ``_signal``: it runs in both.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal


def children_of(pid: int) -> list[int]:
    """Our direct children, from /proc (CONFIG_PROC_CHILDREN is often missing)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def kill_leftovers() -> int:
    """Kill every remaining descendant (they were re-parented to us, the subreaper)."""
    killed = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return killed
        if pid:
            continue
        children = children_of(os.getpid())
        if not children:
            return killed
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for child in children:
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                pass

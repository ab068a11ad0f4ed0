"""SIGINT, SIGTERM and SIGHUP as KeyboardInterrupt, except while a step that must not
be cut in half runs.

``safe-pip`` turns the three signals into KeyboardInterrupt, so that an install is
unwound (the venv put back) however it is stopped.  A few steps must never be
interrupted half-way: putting a venv back, deleting a snapshot (half a snapshot
must not be left where the next run would put it back).  Blocking the signals in the
kernel is not enough: one that arrived just before is already pending in Python and
would be raised inside the step.  So the handler itself looks at :func:`uninterrupted`
and, inside it, only notes the signal; the KeyboardInterrupt is raised when the step
is done.
"""

from __future__ import annotations

import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["install_handlers", "uninterrupted"]

_depth = 0
_pending = False


def _on_signal(_signum: int, _frame: object) -> None:
    global _pending
    if _depth:
        _pending = True
        return
    raise KeyboardInterrupt


def install_handlers() -> None:
    """Route SIGINT, SIGTERM and SIGHUP through :func:`_on_signal` (main thread)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)


def uninterrupted(action: Callable[[], None]) -> None:
    """Run ``action`` whole.  A KeyboardInterrupt that comes before it starts is
    noted and the action run anyway; one that comes while it runs waits; either is
    raised once it is done."""
    global _depth, _pending
    done = interrupted = False
    while not done:
        try:
            _depth += 1
            try:
                if not done:
                    action()
                    done = True
            finally:
                _depth -= 1
            if not _depth and _pending:
                _pending = False
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt

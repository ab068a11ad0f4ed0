"""Fork-and-report harness shared by the Landlock tests.

Landlock restricts the calling thread for good, so every confined action runs in a
forked child that reports one word back: ``ok`` or the errno name it hit.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from safe_pip.sandbox.landlock import Ruleset


def outcome(action: Callable[[], object], ruleset: Ruleset | None = None) -> str:
    """Run ``action`` in a forked child, confined by ``ruleset`` if given.

    Returns ``"ok"``, or the errno name (``"EACCES"``) of the OSError it raised.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.write(write_end, _child_outcome(action, ruleset).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)
    return report


def _child_outcome(action: Callable[[], object], ruleset: Ruleset | None) -> str:
    try:
        if ruleset is not None:
            ruleset.restrict_self()
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, repr(exc))
    except BaseException as exc:
        return f"unexpected {exc!r}"
    return "ok"

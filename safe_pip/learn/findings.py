"""Which failed calls were the sandbox's doing, and what grant each one asks for.

The tracer reports every watched call that failed with an errno a sandbox produces
(EACCES, ENOENT, EROFS, EPERM, EXDEV).  Most are ordinary misses: Python probes
dozens of paths that exist nowhere.  A failure counts as a *denial* only when the
same path, looked at from the supervisor outside the sandbox with the same user,
exists (for a read, exec or overwrite) or has an existing parent directory (for
creating or removing an entry), and the caller's own permissions would allow it.
Because namespace mode lays out the private root at the host's paths, the path
the program used names the same file outside.

Grants name the resolved path: Landlock and the private root follow symlinks, so
``/usr/share/locale/locale.alias`` is really ``/etc/locale.alias`` on Debian.

Paths on the deny list, and writes to protected paths, are never turned into
grants: they are reported as kept denied, whatever the program wanted.
"""

from __future__ import annotations

import os

from safe_pip._records import record
from safe_pip.learn.foresight import ignored
from safe_pip.policy.model import is_within
from safe_pip.sandbox.fs_rules import FsGrants

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from safe_pip.learn.tracer import Attempt

_EACCES = 13


@record
class Denial:
    """A refused access and the grant that would allow it.

    ``grant`` is the path a policy entry should name (the parent directory when an
    entry is created or removed), ``kind`` is ``read`` or ``write``; ``kept`` says
    why no grant is proposed (None: one is) and ``kept_by`` names the policy entry
    responsible.
    """

    path: str
    access: str
    grant: str
    kind: str
    kept: str | None = None
    kept_by: str | None = None


def judge(attempts: Iterable[Attempt], grants: FsGrants, *, private_dir: str) -> list[Denial]:
    """The attempts that the sandbox refused, in the order they happened."""
    found: dict[tuple[str, str], Denial] = {}
    for attempt in attempts:
        denial = _judge_one(attempt, grants, private_dir)
        if denial is not None:
            found.setdefault((denial.grant, denial.kind), denial)
    return list(found.values())


def _judge_one(attempt: Attempt, grants: FsGrants, private_dir: str) -> Denial | None:
    path = attempt.path
    if ignored(path, private_dir):
        return None
    if attempt.access != "read" and _bytecode(path):
        return None  # Python caching bytecode where it may not: it carries on without
    deny = _first_within((path, os.path.realpath(path)), grants.deny)
    if attempt.access in ("read", "exec"):
        if not os.path.lexists(path):
            return None
        if attempt.errno == _EACCES and not os.access(path, os.R_OK) and deny is None:
            return None  # the file's own permissions, not the sandbox
        grant, kind = os.path.realpath(path), "read"
    elif attempt.access == "write" and os.path.lexists(path):
        if attempt.errno == _EACCES and not os.access(path, os.W_OK) and deny is None:
            return None
        grant, kind = os.path.realpath(path), "write"
    else:  # creating (or removing) a directory entry: the parent must take writes
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            return None
        removing = attempt.call.startswith(("unlink", "rmdir"))
        if removing and not os.path.lexists(path):
            return None
        grant, kind = os.path.realpath(parent), "write"
    if deny is not None:
        return Denial(path, attempt.access, grant, kind, "on the deny list", deny)
    if kind == "write":
        protected = _first_within((path, os.path.realpath(path)), grants.protected)
        if protected is not None:
            return Denial(path, attempt.access, grant, kind, "a protected path", protected)
    return Denial(path, attempt.access, grant, kind)


def _first_within(paths: tuple[str, ...], roots: tuple[str, ...]) -> str | None:
    """The first of ``roots`` that holds any of ``paths``."""
    return next((r for r in roots if any(is_within(p, r) for p in paths)), None)


def _bytecode(path: str) -> bool:
    """A write of Python's bytecode cache: never worth a grant (granting it would let
    the program write into a venv), and Python ignores the refusal itself."""
    return "/__pycache__" in path or path.endswith((".pyc", ".pyo"))

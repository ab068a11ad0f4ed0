"""From denials to policy entries: generalise, then spell them the way a user would.

Generalising follows two rules.  Two or more files refused in one directory become
that directory (a data set read file by file should be one entry, not 300), and
two or more entries in one directory become the directory.  Neither rule climbs to
a directory that is too broad to hand out without thought: ``/`` and top-level
directories such as ``/usr`` or ``/home``, the home directory itself, or any
ancestor of the home or of the project.  A write grant covers reads below it, so
read entries under a write entry are dropped.
"""

from __future__ import annotations

import os

from safe_pip._records import record
from safe_pip.policy.model import is_within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from safe_pip.learn.findings import Denial


@record
class Proposal:
    """Absolute paths to grant, host patterns to allow, and what stays denied."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    #: (path, why, policy entry responsible) for refusals no proposal will ever lift
    kept: tuple[tuple[str, str, str], ...] = ()
    #: environment variables the program looked for, to pass through
    env_pass: tuple[str, ...] = ()
    #: ... and the ones that look like secrets, never proposed
    env_kept: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.read or self.write or self.hosts or self.env_pass)


def _too_broad(path: str, home: str, project_dir: str) -> bool:
    if path.count("/") < 2 or path == home:  # "/", "/usr", "/home" ...
        return True
    return is_within(home, path) or is_within(project_dir, path)


def generalise(paths: Iterable[str], *, home: str, project_dir: str) -> list[str]:
    """``paths`` with siblings folded into their directory, sorted, none nested in another."""
    entries = set(paths)
    while True:
        by_parent: dict[str, list[str]] = {}
        for path in entries:
            by_parent.setdefault(os.path.dirname(path), []).append(path)
        folded = {
            parent
            for parent, children in by_parent.items()
            if len(children) >= 2 and not _too_broad(parent, home, project_dir)
        }
        if not folded:
            break
        entries = {p for p in entries if os.path.dirname(p) not in folded} | folded
    return outermost(entries)


def outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` sorted, without those that lie inside another one."""
    kept: list[str] = []
    for path in sorted(paths):
        if not any(is_within(path, outer) for outer in kept):
            kept.append(path)
    return kept


def propose(
    denials: Sequence[Denial], hosts: Iterable[str], *, home: str, project_dir: str
) -> Proposal:
    """The smallest sensible set of entries that lifts every denial not kept."""
    wanted = [d for d in denials if d.kept is None]
    write = generalise(
        (d.grant for d in wanted if d.kind == "write"), home=home, project_dir=project_dir
    )
    read = generalise(
        (d.grant for d in wanted if d.kind == "read"), home=home, project_dir=project_dir
    )
    read = [p for p in read if not any(is_within(p, w) for w in write)]
    kept: dict[str, tuple[str, str, str]] = {}
    for denial in denials:
        if denial.kept is not None and denial.kept_by is not None:
            kept.setdefault(denial.path, (denial.path, denial.kept, denial.kept_by))
    return Proposal(
        read=tuple(read),
        write=tuple(write),
        hosts=tuple(dict.fromkeys(hosts)),
        kept=tuple(kept.values()),
    )


def policy_spelling(path: str, *, home: str, project_dir: str) -> str:
    """How a pyproject should name ``path``: relative to the project, ``~/...``, or absolute."""
    if is_within(path, project_dir):
        return os.path.relpath(path, project_dir)
    if is_within(path, home):
        return "~" + path[len(home.rstrip("/")) :]
    return path

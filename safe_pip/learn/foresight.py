"""Which watched calls could turn out to be refusals, decided before they run.

Every watched call stops the program once, at its seccomp stop; learning a call's
result costs a second stop, at its exit.  Most calls need no second stop: a path
that does not exist outside the sandbox either is an ordinary miss (Python's import
system probes thousands), and a path inside the grants, outside the deny list,
reached without a symlink at its end, is allowed.  Only the rest are followed to
their result.  This halves the stops of a file-heavy program and keeps the verdicts
of :mod:`safe_pip.learn.findings`, which judges the kept failures afterwards with
the same rules.

Conservative on purpose: whatever this module cannot decide cheaply (a symlink as
the last component, a path outside every grant) waits for the result.
"""

from __future__ import annotations

import os
import stat

from safe_pip.sandbox.fs_rules import FsGrants

#: Never proposed, so never worth a stop (shared with findings).
NEVER_GRANTED = ("/proc", "/sys/fs/cgroup", "/sys/kernel/mm/transparent_hugepage")


def is_scratch(path: str, private_dir: str) -> bool:
    """Within this run's private dir or a sibling ``safe-run-*`` one (an install runs
    several sandboxes, each with its own, all gone once the command ends)."""
    if path == private_dir or path.startswith(private_dir + "/"):
        return True
    base = os.path.dirname(private_dir)
    return path.startswith(base + "/safe-run-")


def ignored(path: str, private_dir: str) -> bool:
    """Paths no proposal will ever name."""
    if is_scratch(path, private_dir):
        return True
    return any(path == root or path.startswith(root + "/") for root in NEVER_GRANTED)


class Foresight:
    """The grants as sets of resolved paths, and a cache of resolved directories."""

    def __init__(self, grants: FsGrants, private_dir: str) -> None:
        real = os.path.realpath
        self._private_dir = private_dir
        self._readable = frozenset(real(p) for p in (*grants.read, *grants.write))
        self._readable |= frozenset(real(p) for p in grants.devices_rw)
        self._writable = frozenset(real(p) for p in grants.write)
        self._denied = frozenset(real(p) for p in grants.deny)
        self._protected = frozenset(real(p) for p in grants.protected)
        self._real_dirs: dict[str, str] = {}
        self._dir_verdicts: dict[str, tuple[bool, bool, bool, bool]] = {}

    def may_be_refused(self, path: str, access: str) -> bool:
        """False when a failure of this access could not be a refusal to report."""
        if ignored(path, self._private_dir):
            return False
        if access == "entry":
            return self._entry_may_be_refused(path)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            # Missing outside too: an ordinary miss, unless a write creates it.
            return access == "write" and self._entry_may_be_refused(path)
        if stat.S_ISLNK(mode):
            return True
        real_dir, real = self._resolve(path)
        readable, writable, denied, protected = self._verdicts(real_dir)
        if denied or real in self._denied:
            return True
        if access == "write":
            return not (writable or real in self._writable) or protected or real in self._protected
        return not (readable or real in self._readable)

    def _entry_may_be_refused(self, path: str) -> bool:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            return False  # nowhere to create it outside either: an ordinary miss
        real_dir, real = self._resolve(path)
        _, writable, denied, protected = self._verdicts(real_dir)
        if denied or protected or real in self._denied or real in self._protected:
            return True
        return not writable

    def _resolve(self, path: str) -> tuple[str, str]:
        """``path``'s resolved directory (cached) and ``path`` with it, last part as is."""
        directory, name = os.path.split(path)
        real_dir = self._real_dirs.get(directory)
        if real_dir is None:
            real_dir = self._real_dirs[directory] = os.path.realpath(directory)
        return real_dir, os.path.join(real_dir, name)

    def _verdicts(self, real_dir: str) -> tuple[bool, bool, bool, bool]:
        """Whether ``real_dir`` lies in a readable, writable, denied, protected root."""
        verdict = self._dir_verdicts.get(real_dir)
        if verdict is None:
            verdict = self._dir_verdicts[real_dir] = (
                _under(real_dir, self._readable),
                _under(real_dir, self._writable),
                _under(real_dir, self._denied),
                _under(real_dir, self._protected),
            )
        return verdict


def _under(path: str, roots: frozenset[str]) -> bool:
    """Whether ``path`` or one of its ancestors is in ``roots``."""
    if path in roots:
        return True
    end = len(path)
    while end > 0:
        end = path.rfind("/", 0, end)
        if path[: max(end, 1)] in roots:
            return True
    return False

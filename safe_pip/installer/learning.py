"""``safe-pip install --learn``: what the build sandboxes of one install were refused.

One install runs several sandboxes (resolution, downloads, each build).  While a
:func:`learning` block is active, :mod:`safe_pip.installer.sandboxed_uv` runs each
of them traced (safe_pip/learn/) and hands its proposal here; at the end the
command prints the flags that would lift the refusals.  A module-level collector
keeps the install code paths free of a learn-mode parameter in every signature.

``safe-pip install`` grants builds extra reads (``--allow-read``) and hosts
(``--allow-host``), never extra writes: a build writes only to the venv, its
private cache and its temporary directory.  Refused writes are reported as such.
"""

from __future__ import annotations

import shlex
from contextlib import contextmanager

from safe_pip.learn.proposal import Proposal, outermost, policy_spelling
from safe_pip.policy.model import is_within
from safe_pip.terminal import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

_PREFIX = "safe-pip: learn: "


class BuildLearning:
    """The union of every build sandbox's proposal during one command."""

    def __init__(self, home: str, venv: str | None = None) -> None:
        self.home = home
        #: uv locks the target venv from sandboxes that may not write it; not news
        self.venv = venv
        self.runs = 0
        self._read: dict[str, None] = {}
        self._write: dict[str, None] = {}
        self._hosts: dict[str, None] = {}
        self._kept: dict[str, tuple[str, str]] = {}

    def add(self, proposal: Proposal) -> None:
        """Fold one sandbox run's proposal in."""
        self.runs += 1
        self._read.update(dict.fromkeys(proposal.read))
        venv = self.venv
        self._write.update(
            dict.fromkeys(p for p in proposal.write if venv is None or not is_within(p, venv))
        )
        self._hosts.update(dict.fromkeys(proposal.hosts))
        for path, why, entry in proposal.kept:
            self._kept.setdefault(path, (why, entry))

    def report_lines(self) -> list[str]:
        """What was refused and the flags for the next attempt; empty if nothing was."""
        reads = outermost(self._read)
        lines: list[str] = []
        for path in reads:
            lines.append(f"{_PREFIX}a build needed read access to {self._spell(path)}")
        for host in self._hosts:
            lines.append(f"{_PREFIX}a build needed the network host {host}")
        for path in outermost(self._write):
            lines.append(
                f"{_PREFIX}a build wanted to write to {self._spell(path)}; builds may write "
                "only to the venv, their cache and their temporary directory"
            )
        for path, (why, entry) in self._kept.items():
            lines.append(
                f"{_PREFIX}kept denied: {self._spell(path)} ({why}: {self._spell(entry)}); "
                "not proposed"
            )
        flags = [f"--allow-read {shlex.quote(p)}" for p in reads]
        flags += [f"--allow-host {shlex.quote(h)}" for h in self._hosts]
        if flags:
            lines.append(f"{_PREFIX}to allow them, run the command again with: {' '.join(flags)}")
        elif not lines:
            lines.append(f"{_PREFIX}the build sandbox refused nothing ({self.runs} sandboxed runs)")
        return [printable(line) for line in lines]

    def _spell(self, path: str) -> str:
        return policy_spelling(path, home=self.home, project_dir="/nonexistent/")


_active: list[BuildLearning] = []


@contextmanager
def learning(home: str, venv: str | None = None) -> Iterator[BuildLearning]:
    """Trace every build sandbox started inside the block (installing into ``venv``)."""
    collector = BuildLearning(home, venv)
    _active.append(collector)
    try:
        yield collector
    finally:
        _active.remove(collector)


def active() -> BuildLearning | None:
    """The collector of the innermost :func:`learning` block, if any."""
    return _active[-1] if _active else None

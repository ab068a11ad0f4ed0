"""From denials to policy entries: generalise, then spell them the way a user would.

Generalising follows two rules.  Two or more files refused in one directory become
that directory (a data set read file by file should be one entry, not 300), and
two or more entries in one directory become the directory.  Neither rule climbs to
a directory that is too broad to hand out without thought: ``/`` and top-level
directories such as ``/usr`` or ``/home``, the home directory itself, or any
ancestor of the home or of the project; nor to one that holds a deny-listed path
(``~/.config`` holds ``~/.config/gh``).  A write grant covers reads below it, so read
entries under a write entry are dropped.

Some entries are never proposed, whatever the program wanted (:func:`unsafe`): write
access to anything that runs or configures things later -- a venv (its ``bin/``,
``.pth`` files, ``sitecustomize``), a site directory, a ``.git``, a policy or install
setting file, a directory on the caller's ``PATH`` -- and any access to ``/``, a
top-level directory, the home directory or an ancestor of it, or a directory that
holds a deny-listed path.  They are reported as "not proposed" with the reason; what
is proposed instead are the narrowest paths the program actually used.
"""

from __future__ import annotations

import os

from safe_pip._records import record, replace
from safe_pip.policy.model import is_within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

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
    #: (kind, path, why) for grants the program wanted that are never proposed
    refused: tuple[tuple[str, str, str], ...] = ()

    def is_empty(self) -> bool:
        return not (self.read or self.write or self.hosts or self.env_pass)

    def new_in(self, earlier: Proposal) -> Proposal:
        """What this proposal adds to ``earlier`` (grants only; the rest as is)."""
        return replace(
            self,
            read=tuple(p for p in self.read if p not in earlier.read),
            write=tuple(p for p in self.write if p not in earlier.write),
            hosts=tuple(h for h in self.hosts if h not in earlier.hosts),
            env_pass=tuple(n for n in self.env_pass if n not in earlier.env_pass),
        )

    def merged(self, later: Proposal) -> Proposal:
        """Everything proposed in this round and in ``later`` (writes win over reads)."""
        write = outermost([*self.write, *later.write])
        read = [p for p in outermost([*self.read, *later.read])]
        return Proposal(
            read=tuple(p for p in read if not any(is_within(p, w) for w in write)),
            write=tuple(write),
            hosts=tuple(dict.fromkeys([*self.hosts, *later.hosts])),
            kept=tuple(dict.fromkeys([*self.kept, *later.kept])),
            env_pass=tuple(dict.fromkeys([*self.env_pass, *later.env_pass])),
            env_kept=tuple(dict.fromkeys([*self.env_kept, *later.env_kept])),
            refused=tuple(dict.fromkeys([*self.refused, *later.refused])),
        )


#: Files that configure what safe-run and safe-pip do (a written one would widen the
#: next run's trust).
POLICY_FILES = ("pyproject.toml", "uv.toml", "pip.conf", "pip.ini")
_SITE_DIRS = ("site-packages", "dist-packages")


@record
class Limits:
    """What no proposal may grant: the caller's home, the deny list, and the
    directories on the caller's ``PATH``."""

    home: str
    project_dir: str
    deny: tuple[str, ...] = ()
    path_dirs: tuple[str, ...] = ()


def _in_venv(path: str) -> bool:
    """Whether ``path`` is a venv or lies in one (a ``pyvenv.cfg`` on the way up)."""
    current = path
    while current not in ("/", ""):
        if os.path.isfile(os.path.join(current, "pyvenv.cfg")):
            return True
        current = os.path.dirname(current)
    return False


def unsafe(path: str, kind: str, limits: Limits) -> str | None:
    """Why granting ``kind`` access to ``path`` is never proposed, or None."""
    if path.count("/") < 2 or path == "/":
        return "the whole file system, or a top-level directory"
    if is_within(limits.home, path):
        return "your home directory, or a directory above it"
    if any(is_within(denied, path) for denied in limits.deny):
        return "it holds deny-listed paths (secrets)"
    if kind != "write":
        return None
    parts = path.split("/")
    if ".git" in parts:
        return "a git directory (git runs its hooks and obeys its config)"
    if any(part in _SITE_DIRS for part in parts):
        return "a site directory (its .pth files run at every Python start)"
    if os.path.basename(path) in POLICY_FILES:
        return "a policy or install settings file"
    if _in_venv(path):
        return "a virtual environment (its bin/ and start-up files run later)"
    if any(is_within(path, d) or is_within(d, path) for d in limits.path_dirs):
        return "a directory on your PATH (a new file there shadows a command)"
    return None


def _too_broad(path: str, home: str, project_dir: str) -> bool:
    if path.count("/") < 2 or path == home:  # "/", "/usr", "/home" ...
        return True
    return is_within(home, path) or is_within(project_dir, path)


def generalise(
    paths: Iterable[str],
    *,
    home: str,
    project_dir: str,
    blocked: Callable[[str], bool] | None = None,
) -> list[str]:
    """``paths`` with siblings folded into their directory, sorted, none nested in
    another; never folded into a directory ``blocked`` says no to."""
    entries = set(paths)
    while True:
        by_parent: dict[str, list[str]] = {}
        for path in entries:
            by_parent.setdefault(os.path.dirname(path), []).append(path)
        folded = {
            parent
            for parent, children in by_parent.items()
            if len(children) >= 2
            and not _too_broad(parent, home, project_dir)
            and not (blocked is not None and blocked(parent))
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
    denials: Sequence[Denial],
    hosts: Iterable[str],
    *,
    home: str,
    project_dir: str,
    limits: Limits | None = None,
) -> Proposal:
    """The smallest sensible set of entries that lifts every denial not kept, with
    nothing :func:`unsafe` among them."""
    limits = limits or Limits(home=home, project_dir=project_dir)
    wanted = [d for d in denials if d.kept is None]
    refused: dict[tuple[str, str], str] = {}
    chosen: dict[str, list[str]] = {"read": [], "write": []}
    for kind in ("write", "read"):
        grants = []
        for denial in wanted:
            if denial.kind != kind:
                continue
            why = unsafe(denial.grant, kind, limits)
            if why is None:
                grants.append(denial.grant)
            else:
                refused.setdefault((kind, denial.grant), why)

        def blocked(parent: str, kind: str = kind) -> bool:
            return unsafe(parent, kind, limits) is not None

        chosen[kind] = generalise(grants, home=home, project_dir=project_dir, blocked=blocked)
    write = chosen["write"]
    read = [p for p in chosen["read"] if not any(is_within(p, w) for w in write)]
    kept: dict[str, tuple[str, str, str]] = {}
    for denial in denials:
        if denial.kept is not None and denial.kept_by is not None:
            kept.setdefault(denial.path, (denial.path, denial.kept, denial.kept_by))
    return Proposal(
        read=tuple(read),
        write=tuple(write),
        hosts=tuple(dict.fromkeys(hosts)),
        kept=tuple(kept.values()),
        refused=tuple((kind, path, why) for (kind, path), why in refused.items()),
    )


def policy_spelling(path: str, *, home: str, project_dir: str) -> str:
    """How a pyproject should name ``path``: relative to the project, ``~/...``, or absolute."""
    if is_within(path, project_dir):
        return os.path.relpath(path, project_dir)
    if is_within(path, home):
        return "~" + path[len(home.rstrip("/")) :]
    return path

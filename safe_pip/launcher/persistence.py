"""What a sandbox may never write, whatever its policy grants: files that run later.

The sandbox holds while it runs.  A patient attacker does not break out; it leaves
something that a trusted tool runs or obeys afterwards, outside any sandbox: a git
hook or ``core.fsmonitor``, a ``.pth`` file in a venv, a script that shadows ``ls``
in a ``bin/`` on ``PATH``, a line in ``~/.bashrc``.  This module finds those places
inside the run's write grants, before the sandbox starts, so that the launcher keeps
them read-only in both modes (bind mounts in namespace mode, Landlock carving in
fallback mode):

* **git**: the whole ``.git`` of the project and of every write grant: hooks, config,
  the index (a gitlink added there makes ``git status`` recurse into a repository
  the sandbox made), ``modules/*/config`` of submodules, everything.
* **venvs**: every venv the run can write that is found where venvs live -- the one
  the run uses, ``$VIRTUAL_ENV``'s, the project's ``.venv``, and ``.venv``/``venv``/
  ``env`` in each write grant (or the grant itself).  A venv the policy does not name
  for writing stays read-only whole.  One it names keeps ``bin/``, ``pyvenv.cfg``,
  ``pip.conf``, the existing ``*.pth`` and ``sitecustomize``/``usercustomize``
  read-only, and its ``site-packages`` is *sealed*: nothing new can appear directly in
  it (no new ``.pth``), while the packages already there stay writable.
* **venvs linked to safe-pip's cache** (installed with hard links, recorded by
  ``safe-pip``: :mod:`safe_pip.launcher.linked_venvs`): read-only whole wherever they
  are under a write grant, even when the policy names them for writing -- their files
  are the cache's own inodes, so one write would change every later install.  A write
  grant inside one is dropped, with a line on stderr saying how to get a writable venv.
* **PATH**: every directory on the caller's ``PATH`` that a write grant covers: a new
  ``ls`` there runs instead of the real one.
* the policy's ``filesystem.protect`` list (``base`` names the shell start-up files,
  autostart and systemd user units, ``~/.gitconfig``, ``~/.local/bin``, the user site
  directory, ...).

Only paths that exist can be kept this way (a mount needs something to cover; in
fallback mode a missing protected name keeps its directory from gaining new entries,
which :mod:`safe_pip.sandbox.fs_rules` already does).  What no existing path covers --
a ``.git`` created by ``git init`` in a subdirectory during the run, a venv in a
directory not listed above -- is the supervisor's part (see docs/sandbox.md,
"What the sandbox can leave behind").

All of this costs a few ``lstat`` calls per write grant, and nothing when the policy
grants no writes.
"""

from __future__ import annotations

import os

from safe_pip.launcher.plan import site_packages
from safe_pip.policy.model import is_within

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable

#: What stays read-only in a repository under ``git = "commit"``: everything git runs
#: or obeys -- configuration, hooks, the attributes and excludes in info/, submodules'
#: own git directories (their config and hooks), linked worktrees' metadata, and the
#: pointers that send git elsewhere.  A commit needs none of it.
GIT_KEPT = (
    "config",
    "config.worktree",
    "hooks",
    "info",
    "modules",
    "worktrees",
    "commondir",
    "objects/info/alternates",
)

#: Where a write grant may hold a venv of its own, besides being one.
_VENV_NAMES = (".venv", "venv", "env")
_CUSTOMIZE = ("sitecustomize.py", "usercustomize.py")


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(is_within(path, root) for root in roots)


def venv_protected_paths(venv: str) -> list[str]:
    """Files of a writable venv that run code later, outside any sandbox.

    ``bin/``, ``pyvenv.cfg``, ``pip.conf``, ``safe-pip.cfg``, and in every
    ``lib*/python*/site-packages`` the ``*.pth`` files (sorted) plus
    ``sitecustomize.py`` and ``usercustomize.py``.
    """
    protected = [os.path.join(venv, "bin"), os.path.join(venv, "pyvenv.cfg")]
    # pip obeys a venv's own pip.conf; safe-pip.cfg says its scripts are wrapped.
    protected += [os.path.join(venv, "pip.conf"), os.path.join(venv, "safe-pip.cfg")]
    for site in site_packages(venv):
        try:
            with os.scandir(site) as scan:
                pth = sorted(e.name for e in scan if e.name.endswith(".pth"))
        except PermissionError:
            pth = []
        protected.extend(os.path.join(site, name) for name in pth)
        protected.extend(os.path.join(site, name) for name in _CUSTOMIZE)
    return protected


def is_venv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def _venvs_in_reach(write: list[str], known: Iterable[str | None], project_dir: str) -> list[str]:
    """The venvs the run could write: known ones and those where venvs usually live."""
    candidates: list[str] = [v for v in known if v]
    candidates.append(os.path.join(project_dir, ".venv"))
    for grant in write:
        candidates.append(grant)
        candidates.extend(os.path.join(grant, name) for name in _VENV_NAMES)
    found: dict[str, str] = {}
    for candidate in candidates:
        if _under(candidate, write) and is_venv(candidate):
            found.setdefault(os.path.realpath(candidate), candidate)
    return list(found.values())


def linked_venvs_in_reach(
    write: list[str],
    *,
    project_dir: str,
    venvs: Iterable[str | None],
    state_roots: list[str],
) -> list[str]:
    """The venvs linked to safe-pip's cache that the grants ``write`` reach: under a
    grant, or holding one.  Costs one registry read when there are write grants."""
    from safe_pip.launcher.linked_venvs import recorded_link_mode, registered

    if not write:
        return []
    reached: dict[str, None] = {}
    for venv in registered(state_roots):
        # Reach first (string work only: the registry lists every venv ever linked);
        # a venv turned into copies since (link-mode = copy, links broken) is free.
        if not (_under(venv, write) or any(is_within(grant, venv) for grant in write)):
            continue
        if is_venv(venv) and recorded_link_mode(venv) not in ("copy", "clone"):
            reached[venv] = None
    for venv in _venvs_in_reach(write, venvs, project_dir):
        if recorded_link_mode(venv) == "hardlink":
            reached[os.path.realpath(venv)] = None
    return list(reached)


def guarded_paths(
    write: list[str],
    *,
    project_dir: str,
    venvs: Iterable[str | None],
    path_dirs: Iterable[str],
    git: str = "read-only",
    linked_venvs: Iterable[str] = (),
) -> tuple[list[str], list[str]]:
    """``(protected, sealed)`` for a run whose write grants are ``write``.

    ``linked_venvs`` (from :func:`linked_venvs_in_reach`) are read-only whole.

    ``git``: "commit" leaves a repository's objects, refs and index writable and keeps
    only what git runs or obeys read-only (:data:`GIT_KEPT`).

    ``protected`` paths stay read-only (only existing ones are listed);
    ``sealed`` directories take no new entries while what they hold stays writable.
    ``write`` must not include the run's private scratch directory.
    """
    if not write:
        return [], []
    protected: list[str] = []
    sealed: list[str] = []
    for root in dict.fromkeys([project_dir, *write]):
        git_dir = os.path.join(root, ".git")
        if not os.path.lexists(git_dir) or not _under(git_dir, write):
            continue
        if git == "commit" and os.path.isdir(git_dir) and not os.path.islink(git_dir):
            protected.extend(os.path.join(git_dir, name) for name in GIT_KEPT)
        else:
            protected.append(git_dir)
    linked = {os.path.realpath(v) for v in linked_venvs}
    protected.extend(linked)
    for venv in _venvs_in_reach(write, venvs, project_dir):
        if os.path.realpath(venv) in linked:
            continue
        if any(is_within(grant, venv) for grant in write):
            # The policy names the venv (or a path inside it) for writing: keep what
            # runs at every start read-only, and let nothing new appear beside it.
            protected.extend(venv_protected_paths(venv))
            sealed.extend(site_packages(venv))
        else:
            protected.append(venv)
    for directory in path_dirs:
        absolute = directory.startswith("/")
        if absolute and _under(directory, write) and os.path.isdir(directory):
            protected.append(os.path.normpath(directory))
    return protected, sealed


# --- what the filesystem broker may write for the program ---------------------------------

_SITE_DIRS = ("site-packages", "dist-packages")
_VENV_FILES = ("pyvenv.cfg", "pip.conf", "safe-pip.cfg")


class WriteRules:
    """What the broker (:mod:`safe_pip.sandbox.fs_broker`) refuses to write in a
    persistent grant, by name and place, whatever exists when the run starts:

    * anything in or named ``.git`` -- a repository made during the run too (its
      config and hooks are obeyed by the user's next ``git`` there); with ``git =
      "commit"``, what a commit writes in a repository that exists is allowed, but
      never :data:`GIT_KEPT` and never a new ``.git``;
    * the protected paths, existing or not (``~/.bash_profile`` must not appear
      either), and removing or renaming a directory that holds one;
    * in a venv that existed before the run: a ``.pth``, ``sitecustomize`` or
      ``usercustomize`` in its site-packages, anything in its ``bin/``, its
      ``pyvenv.cfg``, ``pip.conf`` and ``safe-pip.cfg``, and the venv itself (no
      moving it away to plant another at its path).  A venv the run creates is its
      output, like any file it writes;
    * a new entry in a directory on the caller's ``PATH`` (or the directory itself).

    ``refuse(op, path)`` returns the reason, or None; ``op`` is ``write``, ``create``,
    ``remove``, ``rename-from`` or ``rename-to``.  ``started_ns`` tells what existed
    before the run: a file's ctime cannot be set back from user space.
    """

    __slots__ = ("_git", "_holders", "_path_dirs", "_protected", "_started")

    def __init__(
        self,
        protected: Iterable[str],
        path_dirs: Iterable[str],
        started_ns: int,
        git: str = "read-only",
    ) -> None:
        # Sets, so that a check costs a lookup per path component, not one per
        # protected path (base protects dozens): every brokered call asks.
        self._protected = frozenset(os.path.realpath(p) for p in protected)
        holders: set[str] = set()
        for path in self._protected:
            while path not in ("/", ""):
                path = os.path.dirname(path)
                holders.add(path)
        self._holders = frozenset(holders)
        self._path_dirs = frozenset(os.path.realpath(d) for d in path_dirs if d.startswith("/"))
        self._started = started_ns
        self._git = git

    def refuse(self, op: str, path: str) -> str | None:
        parts = path.split("/")
        if ".git" in parts:
            reason = self._git_reason(op, parts)
            if reason is not None:
                return reason
        for depth in range(len(parts), 1, -1):
            if "/".join(parts[:depth]) in self._protected:
                return "a protected path: other programs run or obey it later"
        if op in ("remove", "rename-from") and path in self._holders:
            return "it holds protected paths"
        parent, _, name = path.rpartition("/")
        if parent in self._path_dirs or (op in ("create", "rename-to") and path in self._path_dirs):
            return "a directory on PATH: a new command there shadows a real one"
        return self._venv_reason(op, parent, name, path)

    def _git_reason(self, op: str, parts: list[str]) -> str | None:
        """Under ``git = "commit"``: inside a git directory that exists (none can be
        made during the run), anything but :data:`GIT_KEPT`; never a ``.git`` itself."""
        at = parts.index(".git")
        inside = parts[at + 1 :]
        if self._git != "commit" or not inside:
            return "in a git directory: git runs and obeys what is there"
        if not os.path.isdir("/".join(parts[: at + 1])) or ".git" in inside:
            return "in a git directory: git runs and obeys what is there"
        relative = "/".join(inside)
        for kept in GIT_KEPT:
            if relative == kept or relative.startswith(kept + "/"):
                return "git's configuration, hooks or submodules: git runs and obeys them"
        return None

    def _venv_reason(self, op: str, parent: str, name: str, path: str) -> str | None:
        folder = parent.rpartition("/")[2]
        if folder in _SITE_DIRS and (
            name.endswith(".pth") or name.startswith(("sitecustomize", "usercustomize"))
        ):
            venv = parent.rsplit("/", 3)[0]  # VENV/lib/pythonX.Y/site-packages
            if self._old_venv(venv):
                return "runs at every start of a venv's Python"
        if folder == "bin" and self._old_venv(parent.rpartition("/")[0]):
            return "a venv's bin/: a script there runs outside any sandbox"
        if name in _VENV_FILES and self._old_venv(parent):
            return "configures a venv"
        if op in ("remove", "rename-from") and self._old_venv(path):
            return "a venv that existed before the run"
        return None

    def _old_venv(self, root: str) -> bool:
        """Whether ``root`` is a venv that existed before the run started."""
        try:
            return os.stat(root + "/pyvenv.cfg").st_ctime_ns < self._started
        except OSError:
            return False

"""Turn what the user typed (``script.py``, ``-m mod``, ``NAME``, ``-- cmd``) into an argv.

Resolution happens in the supervisor, before any sandbox exists, so that "not found"
(127) and "not executable" (126) are reported with a clear sentence instead of an
``execve`` errno from deep inside the child.
"""

from __future__ import annotations

import os

from safe_pip._records import record
from safe_pip.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, SafePipError
from safe_pip.policy.model import pure_path

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal

    TargetKind = Literal["script", "module", "entry-point", "command"]


@record
class Target:
    """An executable plus its full argv; ``executable`` is absolute."""

    kind: TargetKind
    executable: str
    argv: tuple[str, ...]


def _require_executable(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise SafePipError(f"{what} not found: {path}", EXIT_NOT_FOUND)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise SafePipError(f"{what} is not executable: {path}", EXIT_NOT_EXECUTABLE)


def find_on_path(name: str, path_dirs: list[str]) -> str | None:
    """Like ``shutil.which`` but over an explicit list (the sandbox's PATH, not ours)."""
    if "/" in name:
        return os.path.abspath(name)
    for directory in path_dirs:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    for directory in path_dirs:  # exists but not executable: report 126, not 127
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            return candidate
    return None


def resolve_target(
    kind: Literal["auto", "module", "command"],
    words: list[str],
    *,
    python: str,
    venv: str | None,
    path_dirs: list[str],
) -> Target:
    """Resolve ``words`` (target and its arguments) for the given kind.

    ``auto`` is the first positional argument: a ``*.py`` file is a script run by the
    venv's python; anything else must be a console script in the venv's ``bin/``
    (commands outside the venv need an explicit ``--`` so that a typo never silently
    runs some other program from PATH).
    """
    if not words:
        raise SafePipError("no target given; see 'safe-run --help'", EXIT_NOT_FOUND)
    head, rest = words[0], words[1:]
    if kind == "module":
        return Target("module", python, (python, "-m", head, *rest))
    if kind == "command":
        found = find_on_path(head, path_dirs)
        if found is None:
            raise SafePipError(f"command not found: {head}", EXIT_NOT_FOUND)
        _require_executable(found, "command")
        return Target("command", found, (head, *rest))
    if head.endswith((".py", ".pyw")) or os.path.isfile(head):
        script = os.path.abspath(head)
        if not os.path.isfile(script):
            raise SafePipError(f"script not found: {head}", EXIT_NOT_FOUND)
        if not head.endswith((".py", ".pyw")) and "/" in head:
            # ./tool or bin/thing: a file named explicitly is executed as it is.
            _require_executable(script, "program")
            return Target("command", script, (head, *rest))
        return Target("script", python, (python, script, *rest))
    if venv is not None:
        entry = pure_path(os.path.join(venv, "bin", head))
        if os.path.exists(entry):
            _require_executable(entry, "console script")
            return Target("entry-point", entry, (head, *rest))
        where = f"the venv {venv}"
    else:
        where = "any venv (none found: pass --venv or set VIRTUAL_ENV)"
    raise SafePipError(
        f"'{head}' is not a script or a console script of {where}; "
        f"to run a command use: safe-run -- {head}",
        EXIT_NOT_FOUND,
    )


# --- which venv a command means (uv's rule; shared by safe-run and safe-pip) -----------
#
# ``safe-pip install`` from a project's subdirectory once made ``sub/.venv`` while uv
# and ``safe-run`` used the project's ``.venv``.  Every command now follows ``uv pip``:
# ``--venv``; ``$VIRTUAL_ENV`` when it names a venv; the nearest ``.venv`` (a
# directory with a ``pyvenv.cfg``) here or above; and for a command that creates one,
# the ``.venv`` of the nearest project root (a ``pyproject.toml``), else ``./.venv``.
# (Here rather than in a module of their own: this module is already loaded on
# safe-run's start-up path, and every module costs a few hundred microseconds there.)


def is_venv(path: str) -> bool:
    """Whether ``path`` is a virtual environment (it has a ``pyvenv.cfg``)."""
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def discover_venv(cwd: str, env: Mapping[str, str]) -> str | None:
    """Steps 2 and 3 above: the venv in use, or None."""
    active = env.get("VIRTUAL_ENV")
    if active and is_venv(active):
        return os.path.abspath(active)
    directory = os.path.abspath(cwd)
    while True:
        candidate = os.path.join(directory, ".venv")
        if is_venv(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def venv_to_create(cwd: str) -> str:
    """Step 4: where a new venv goes."""
    directory = os.path.abspath(cwd)
    while True:
        if os.path.isfile(os.path.join(directory, "pyproject.toml")):
            return os.path.join(directory, ".venv")
        parent = os.path.dirname(directory)
        if parent == directory:
            return os.path.join(os.path.abspath(cwd), ".venv")
        directory = parent

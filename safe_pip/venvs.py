"""Which virtual environment a command means, when the user did not say: uv's rule.

``safe-pip install`` from a project's subdirectory once made ``sub/.venv`` while uv
and ``safe-run`` used the project's ``.venv``: a package installed where nothing
looks.  Every command now follows the rule ``uv pip`` follows:

1. ``--venv``;
2. ``$VIRTUAL_ENV``, when it names a virtual environment;
3. the nearest ``.venv`` (a directory with a ``pyvenv.cfg``) in the working directory
   or any directory above it;
4. for a command that creates one: the ``.venv`` of the nearest project root (a
   directory with a ``pyproject.toml``), else ``./.venv``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["discover_venv", "is_venv", "venv_to_create"]


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

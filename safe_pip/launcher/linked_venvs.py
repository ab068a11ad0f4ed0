"""Which venvs share their files with safe-pip's install cache (hard links), read on
safe-run's start-up path: the persistence guard keeps each of them read-only.

``safe-pip install`` writes both records (safe_pip/installer/link_mode.py): the
venv's own ``safe-pip.cfg`` says ``link-mode = hardlink``, and its real path is a
line of ``$XDG_STATE_HOME/safe-pip/linked-venvs``, a file no sandbox may write (the
loader protects the state directory).  The registry is what finds a linked venv
anywhere under a write grant, not only where venvs usually live; the ``safe-pip.cfg``
record covers a venv whose registry sits under another ``XDG_STATE_HOME``.
"""

from __future__ import annotations

import os

#: The venv's own safe-pip settings file (also read by installer/wrap.py).
SETTINGS_FILE = "safe-pip.cfg"
#: The registry's file name in safe-pip's state directory.
REGISTRY = "linked-venvs"
LINK_MODE_KEY = "link-mode"
LINK_MODES = ("hardlink", "copy", "clone")


def recorded_link_mode(venv: str) -> str | None:
    """The ``link-mode`` the venv's ``safe-pip.cfg`` records, if any."""
    try:
        fd = os.open(os.path.join(venv, SETTINGS_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 64 * 1024)
    finally:
        os.close(fd)
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == LINK_MODE_KEY and value.strip() in LINK_MODES:
            return value.strip()
    return None


def registered(state_roots: list[str]) -> list[str]:
    """The venv paths in the registries under ``state_roots`` (missing files: none)."""
    found: dict[str, None] = {}
    for root in state_roots:
        try:
            fd = os.open(root + "/" + REGISTRY, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            data = os.read(fd, 4 << 20)
        finally:
            os.close(fd)
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            if line.startswith("/"):
                found[line] = None
    return list(found)

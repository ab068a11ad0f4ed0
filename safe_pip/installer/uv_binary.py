"""Where the uv executable is: the one from the ``uv`` package safe-pip depends on.

safe-pip pins its installer through its own dependency rather than whatever ``uv``
happens to be first on PATH: the sandbox grants read access to exactly this binary,
and the behaviour the build sandbox relies on (``uv build`` of an sdist archive,
``pylock.toml`` output) is that of a known version range.
"""

from __future__ import annotations

import os
import shutil

from safe_pip.errors import SafePipError


def find_uv() -> str:
    """Absolute path of the uv binary; SafePipError (exit 125) when there is none."""
    try:
        import uv

        path = uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise SafePipError(
                "uv is not installed; reinstall safe-pip (it depends on the uv package)"
            ) from None
        path = found
    return os.path.realpath(path)


def uv_version() -> str | None:
    """The version of the ``uv`` package safe-pip runs, from its ``dist-info`` folder's
    name (``importlib.metadata`` would cost tens of milliseconds on every install)."""
    try:
        import uv
    except ImportError:
        return None
    site = os.path.dirname(os.path.dirname(os.path.abspath(uv.__file__)))
    try:
        names = os.listdir(site)
    except OSError:
        return None
    for name in names:
        if name.startswith("uv-") and name.endswith(".dist-info"):
            return name[len("uv-") : -len(".dist-info")]
    return None

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

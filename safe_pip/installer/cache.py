"""Where safe-pip keeps its one persistent uv cache, and who may write it.

The cache is ``$XDG_CACHE_HOME/safe-pip/uv`` (``~/.cache/safe-pip/uv``): never the
user's own uv cache, which unsandboxed ``uv`` runs read.  It is written only by uv
runs in which no package code can execute -- ``--no-build`` installs into a venv
whose start-up runs nothing but known code (see
:func:`safe_pip.installer.audit.startup_code`).  Every run that may execute package
code (resolution with sdists, builds) gets a private cache that is thrown away.
"""

from __future__ import annotations

import os


def shared_cache_dir() -> str | None:
    """The shared uv cache, created (mode 0700) if missing; None without a home."""
    from safe_pip.policy.cache import cache_root

    root = cache_root(os.path.expanduser("~"), os.environ)
    if root is None:
        return None
    path = os.path.join(root, "uv")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return path

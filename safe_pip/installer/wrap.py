"""``--wrap-scripts``: installed console scripts that go through ``safe-run`` by themselves.

Each new ``bin/NAME`` is moved to ``bin/.safe-pip-wrapped/NAME`` and replaced by a
small shell script that runs the original under ``safe-run --venv VENV -- ORIGINAL``,
so typing ``NAME`` (or ``VENV/bin/NAME``) gets the runtime sandbox and the policy of
the project it is started in.  The originals stay under ``bin/``, which the runtime
sandbox keeps read-only.  A later upgrade of the package rewrites ``bin/NAME`` and
with it the wrapper; install with ``--wrap-scripts`` again to wrap the new one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from safe_pip.errors import SafePipError

WRAPPED_DIR = ".safe-pip-wrapped"
MARKER = "# safe-pip: wrapped"


def safe_run_program() -> str:
    """The ``safe-run`` of this installation (beside our interpreter), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "safe-run")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("safe-run")
    if found is None:
        raise SafePipError("--wrap-scripts: cannot find the safe-run program")
    return os.path.abspath(found)


def is_wrapper(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return MARKER.encode() in handle.read(256)
    except OSError:
        return False


def wrap_script(venv: str, name: str, safe_run: str) -> str:
    """Wrap ``VENV/bin/NAME``; returns the original's new path."""
    bin_dir = os.path.join(venv, "bin")
    script = os.path.join(bin_dir, name)
    if os.sep in name or name.startswith(".") or not os.path.isfile(script):
        raise SafePipError(f"--wrap-scripts: {script} is not a script")
    original = os.path.join(bin_dir, WRAPPED_DIR, name)
    if is_wrapper(script):
        return original
    os.makedirs(os.path.dirname(original), exist_ok=True)
    os.replace(script, original)
    wrapper = (
        "#!/bin/sh\n"
        f"{MARKER} (safe-pip install --wrap-scripts); the original is {original}\n"
        f"exec {shlex.quote(safe_run)} --venv {shlex.quote(venv)} -- "
        f'{shlex.quote(original)} "$@"\n'
    )
    temporary = script + ".safe-pip-tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(wrapper)
    os.chmod(temporary, 0o755)
    os.replace(temporary, script)
    return original


def wrap_scripts(venv: str, names: list[str]) -> list[str]:
    """Wrap each named script of the venv; returns the names wrapped."""
    if not names:
        return []
    safe_run = safe_run_program()
    for name in names:
        wrap_script(venv, name, safe_run)
    return names

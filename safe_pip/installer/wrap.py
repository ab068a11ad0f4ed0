"""``--wrap-scripts``: installed scripts that go through ``safe-run`` by themselves.

Each new ``bin/NAME`` (a console script, or an executable a wheel put there) is moved
to ``bin/.safe-pip-wrapped/NAME`` and replaced by a small shell script that runs the
original under ``safe-run --venv VENV -- ORIGINAL``, so typing ``NAME`` (or
``VENV/bin/NAME``) gets the runtime sandbox and the policy of the project it is
started in.  The originals stay under ``bin/``, which the runtime sandbox keeps
read-only.

Wrapping is a property of the venv, not of one command: the first ``--wrap-scripts``
records it in ``VENV/safe-pip.cfg``, and every later install, upgrade or sync into
that venv wraps what it adds or rewrites (an upgrade replaces ``bin/NAME``, wrapper
and all).  ``uninstall`` removes the originals of scripts that are gone, and
``safe-pip audit`` reports a script that should be wrapped and is not.  The runtime
sandbox keeps ``safe-pip.cfg`` read-only, so sandboxed code cannot switch it off.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from safe_pip.errors import SafePipError
from safe_pip.launcher.linked_venvs import SETTINGS_FILE

WRAPPED_DIR = ".safe-pip-wrapped"
MARKER = "# safe-pip: wrapped"
_WRAP_SETTING = "wrap-scripts = true"


def wraps_scripts(venv: str) -> bool:
    """Whether this venv wraps every script an install adds (see the module doc).

    A venv wrapped before the setting existed (it has ``bin/.safe-pip-wrapped``)
    counts too.
    """
    try:
        with open(os.path.join(venv, SETTINGS_FILE), encoding="utf-8") as handle:
            if any(line.strip() == _WRAP_SETTING for line in handle):
                return True
    except OSError:
        pass
    return os.path.isdir(os.path.join(venv, "bin", WRAPPED_DIR))


def remember_wrapping(venv: str) -> None:
    """Record in the venv that its scripts are wrapped from now on."""
    if wraps_scripts(venv) and os.path.isfile(os.path.join(venv, SETTINGS_FILE)):
        return
    path = os.path.join(venv, SETTINGS_FILE)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(_WRAP_SETTING + "\n")


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


def wrappable(venv: str, names: list[str]) -> list[str]:
    """The names among ``names`` that are scripts to wrap: executable regular files in
    ``bin/`` that are not wrappers already and not the venv's own (``python``,
    ``activate``).  A file without the executable bit is not a command."""
    from safe_pip.installer.audit import VENV_OWN

    found = []
    for name in names:
        path = os.path.join(venv, "bin", name)
        if name.startswith(VENV_OWN) or os.path.islink(path) or not os.path.isfile(path):
            continue
        if not os.access(path, os.X_OK):
            continue
        if not is_wrapper(path):
            found.append(name)
    return found


def prune_wrapped(venv: str) -> list[str]:
    """Remove the originals whose wrapper is gone (the package was uninstalled)."""
    directory = os.path.join(venv, "bin", WRAPPED_DIR)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    removed = []
    for name in names:
        if not is_wrapper(os.path.join(venv, "bin", name)):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                continue
    return removed

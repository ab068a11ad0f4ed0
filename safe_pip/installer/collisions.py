"""A wheel built from an sdist may only bring its own files.

A build decides what its wheel contains, and a wheel can carry any path: a malicious
``setup.py`` could emit ``evil-1.0.whl`` holding ``requests/__init__.py``, or
``evil-1.0.data/scripts/activate``, and installing it would overwrite another
package's code or the venv's ``bin/activate`` -- the very things the build sandbox
keeps the build away from.  So before phase 3, every member of a built wheel is
mapped to where the installer would put it, and a path that already exists in the
venv and is not listed in the RECORD of an earlier install of the same project is
refused.
"""

from __future__ import annotations

import os
import zipfile


def _target(member: str, data_dir: str, venv: str, site: str) -> str | None:
    """Where an installer puts ``member`` (None for directories and the dist-info)."""
    if member.endswith("/"):
        return None
    if member.startswith(data_dir + "/"):
        scheme, _, rest = member[len(data_dir) + 1 :].partition("/")
        base = {
            "purelib": site,
            "platlib": site,
            "scripts": os.path.join(venv, "bin"),
            "data": venv,
            "headers": os.path.join(venv, "include"),
        }.get(scheme)
        return None if base is None or not rest else os.path.normpath(os.path.join(base, rest))
    return os.path.normpath(os.path.join(site, member))


def _owned_by_project(site: str, project: str) -> set[str]:
    """Files an earlier install of ``project`` listed in its RECORD (absolute)."""
    import csv

    from packaging.utils import canonicalize_name

    owned: set[str] = set()
    for entry in os.listdir(site):
        if not entry.endswith(".dist-info"):
            continue
        name = entry[: -len(".dist-info")].rpartition("-")[0]
        if canonicalize_name(name) != project:
            continue
        try:
            with open(os.path.join(site, entry, "RECORD"), encoding="utf-8", newline="") as f:
                owned.update(
                    os.path.normpath(os.path.join(site, row[0])) for row in csv.reader(f) if row
                )
        except OSError:
            continue
    return owned


def foreign_files(wheel: str, venv: str) -> list[str]:
    """Paths (relative to the venv) that installing ``wheel`` would overwrite but that
    belong to something else; empty when the wheel keeps to itself."""
    from packaging.utils import parse_wheel_filename

    from safe_pip.installer.audit import site_packages_dirs

    sites = site_packages_dirs(venv)
    if not sites:
        return []
    site = sites[0]
    name, _, _, _ = parse_wheel_filename(os.path.basename(wheel))
    stem = os.path.basename(wheel).split("-")
    data_dir = f"{stem[0]}-{stem[1]}.data"
    own_info = os.path.join(site, f"{stem[0]}-{stem[1]}.dist-info")
    owned = _owned_by_project(site, str(name))
    clashes = []
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            target = _target(member, data_dir, venv, site)
            if target is None or target in owned or not os.path.lexists(target):
                continue
            if os.path.dirname(target) == own_info:
                continue
            clashes.append(os.path.relpath(target, venv))
    return clashes

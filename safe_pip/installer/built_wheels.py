"""Wheels safe-pip built from sdists, kept by the trusted process so that the same
sdist is never built twice.

uv keeps the wheels it builds in its cache; safe-pip cannot let it, because every
build runs package code and no cache that later installs read may be written where
package code runs (installer/cache.py).  So the builds get private caches, and after a
build's wheel has passed the checks (installer/install.py: one wheel, named for its
own project and version, no files of other distributions), *this* process copies it
into ``$XDG_CACHE_HOME/safe-pip/built-wheels``, which every sandbox has on its deny
list (policy/loader.py) and only the no-build install runs may read.

Layout: ``built-wheels/v1/<settings>/<wheel file>`` with ``<wheel file>.sdist``
beside it holding the sha256 of the sdist it was built from.  ``<settings>`` is a
digest of what decides how an sdist becomes a wheel besides the sdist itself: the
indexes and find-links (where the sdist came from) and the ``-C`` build settings.
The interpreter, ABI and platform are in the wheel's own tags, which uv and
:func:`lookup` check against the target's.

Reuse, two ways:

* **before resolving** the folder of this install's settings is a find-links
  location of every uv run: a version that was built before is had as a wheel, so the
  wheels-only route installs it with no build and no resolution sandbox at all;
* **before building** (the staged route): an sdist whose sha256 matches an entry is
  not built again.

What this trusts: that an index does not serve different bytes under the same
file name (PyPI never does).  When the staged route sees an index's sdist whose
sha256 differs from the one a cached wheel was built from, the entry is dropped and
the sdist built.  ``--no-cache`` bypasses this cache, like uv's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from safe_pip.policy.cache import cache_root

__all__ = ["SUBDIR", "drop", "lookup", "settings_folder", "stale_entries", "store"]

#: The cache's directory under ``$XDG_CACHE_HOME/safe-pip``.
SUBDIR = "built-wheels"
_VERSION = "v1"
_SDIST_SUFFIX = ".sdist"


def settings_folder(
    index_urls: tuple[str, ...] | list[str],
    find_links: tuple[str, ...] | list[str],
    build_flags: list[str],
    *,
    create: bool,
) -> str | None:
    """The folder for one set of build settings (created 0700 when ``create``);
    None without a usable cache directory, or when it does not exist yet."""
    root = cache_root(os.path.expanduser("~"), os.environ)
    if root is None:
        return None
    key = json.dumps(
        {"indexes": list(index_urls), "find-links": list(find_links), "build": build_flags},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    folder = os.path.join(root, SUBDIR, _VERSION, digest)
    if create:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError:
            return None
    if not os.path.isdir(folder):
        return None
    return folder


def store(folder: str, wheel: str, sdist_sha256: str) -> None:
    """Keep ``wheel`` (checked, built from the sdist with ``sdist_sha256``) in
    ``folder``; an older build of the same file name is replaced.  Written under a
    temporary name and renamed, so a concurrent install never sees half a wheel."""
    name = os.path.basename(wheel)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    shutil.copyfile(wheel, temporary)
    with open(temporary + _SDIST_SUFFIX, "w", encoding="ascii") as handle:
        handle.write(sdist_sha256 + "\n")
    os.replace(temporary + _SDIST_SUFFIX, os.path.join(folder, name + _SDIST_SUFFIX))
    os.replace(temporary, os.path.join(folder, name))


def _built_from(folder: str, name: str) -> str | None:
    try:
        with open(os.path.join(folder, name + _SDIST_SUFFIX), encoding="ascii") as handle:
            return handle.read(100).strip()
    except OSError:
        return None


def _entries(folder: str, project: str, version: str) -> list[str]:
    """The wheel files in ``folder`` of one project and version."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import InvalidVersion, Version

    try:
        names = os.listdir(folder)
    except OSError:
        return []
    wanted = canonicalize_name(project)
    try:
        wanted_version = Version(version)
    except InvalidVersion:
        return []
    found = []
    for name in names:
        if not name.endswith(".whl") or name.startswith("."):
            continue
        try:
            parsed_name, parsed_version, _, _ = parse_wheel_filename(name)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if parsed_name == wanted and parsed_version == wanted_version:
            found.append(name)
    return found


def lookup(
    folder: str, project: str, version: str, sdist_sha256: str, tags: frozenset[str]
) -> str | None:
    """The cached wheel built from exactly this sdist that the target accepts, if any."""
    from packaging.utils import parse_wheel_filename

    for name in _entries(folder, project, version):
        wheel_tags = {str(t) for t in parse_wheel_filename(name)[3]}
        if wheel_tags & tags and _built_from(folder, name) == sdist_sha256:
            return os.path.join(folder, name)
    return None


def stale_entries(folder: str, project: str, version: str, sdist_sha256: str) -> list[str]:
    """Cached wheels of this project and version built from another sdist than the
    one the index serves now: the index replaced its file, so the build is stale."""
    return [
        os.path.join(folder, name)
        for name in _entries(folder, project, version)
        if _built_from(folder, name) != sdist_sha256
    ]


def drop(wheels: list[str]) -> None:
    """Remove cached wheels (and what they were built from)."""
    for wheel in wheels:
        for path in (wheel, wheel + _SDIST_SUFFIX):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

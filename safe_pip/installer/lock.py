"""The resolution (a PEP 751 ``pylock.toml`` written by ``uv pip compile``), distrusted.

The lock is written inside the resolution sandbox, where sdist metadata builds --
package code -- ran too.  So it is read as untrusted input: every sdist it names must
come from an index host or from a local find-links folder the user named, and must
match the sha256 the lock gives; the trusted process that fetches it never follows a
URL anywhere else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

from safe_pip._records import record
from safe_pip.errors import SafePipError
from safe_pip.installer.indexes import allowed_hosts, host_pattern
from safe_pip.policy.model import is_within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from safe_pip.credentials.phantom import ArmedCredential


@record
class LockedPackage:
    """One entry of the resolution: its pin, and how it can be had."""

    name: str
    version: str | None  # None for a local project the command named
    wheel_tags: tuple[frozenset[str], ...]  # the tag set of each wheel file
    sdist_url: str | None
    sdist_sha256: str | None
    sdist_path: str | None = None  # an sdist in a local find-links folder
    local: bool = False  # a directory or archive the command named itself


def supported_tags(python: str) -> frozenset[str]:
    """The wheel tags ``python`` accepts, computed by that interpreter itself.

    Run with ``-I -S``: no site-packages, so none of the venv's ``*.pth`` files (code
    that earlier installs may have added) runs outside a sandbox.  safe-pip's own
    ``packaging`` is put on the path explicitly; it supports every Python we do.
    """
    import packaging

    packaging_root = os.path.dirname(os.path.dirname(os.path.abspath(packaging.__file__)))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from packaging.tags import sys_tags; "
        "print('\\n'.join(str(t) for t in sys_tags()))"
    )
    result = subprocess.run(
        [python, "-I", "-S", "-c", code, packaging_root],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SafePipError(f"cannot ask {python} which wheels it supports")
    return frozenset(result.stdout.split())


def parse_lock(text: str, lock_dir: str) -> list[LockedPackage]:
    """The packages of a ``pylock.toml``; relative paths are relative to ``lock_dir``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    from packaging.utils import parse_wheel_filename

    packages = []
    for entry in tomllib.loads(text).get("packages", []):
        tag_sets = []
        for wheel in entry.get("wheels", []):
            filename = wheel.get("name") or (wheel.get("url") or wheel["path"]).rsplit("/", 1)[-1]
            _, _, _, tags = parse_wheel_filename(filename)
            tag_sets.append(frozenset(str(t) for t in tags))
        sdist = entry.get("sdist") or {}
        sdist_path = sdist.get("path")
        packages.append(
            LockedPackage(
                name=entry["name"],
                version=entry.get("version"),
                wheel_tags=tuple(tag_sets),
                sdist_url=sdist.get("url"),
                sdist_sha256=(sdist.get("hashes") or {}).get("sha256"),
                sdist_path=(
                    os.path.normpath(os.path.join(lock_dir, sdist_path)) if sdist_path else None
                ),
                local="directory" in entry or "archive" in entry,
            )
        )
    return packages


def needs_build(package: LockedPackage, tags: frozenset[str]) -> bool:
    return not any(wheel & tags for wheel in package.wheel_tags)


def fetch_sdist(
    package: LockedPackage,
    directory: str,
    index_urls: Sequence[str],
    find_links: Sequence[str] = (),
    credentials: Sequence[ArmedCredential] = (),
    extra_hosts: Sequence[str] = (),
) -> str:
    """Fetch a locked sdist into ``directory`` and check its sha256 against the lock.

    It must come from one of the indexes' hosts over http(s), or from inside a local
    find-links folder the user named: this process runs unsandboxed and must not be
    talked into fetching, say, the cloud metadata service or ``~/.ssh/id_ed25519``
    for a build to read; redirects are held to the same rules (installer/fetch.py).
    """
    if package.sdist_sha256 is None or (package.sdist_url is None and package.sdist_path is None):
        raise SafePipError(
            f"{package.name} {package.version} has neither a usable wheel nor an sdist"
        )
    digest = hashlib.sha256()
    if package.sdist_path is not None:
        source = os.path.realpath(package.sdist_path)
        folders = [os.path.realpath(f) for f in find_links if "://" not in f]
        if not any(is_within(source, folder) for folder in folders):
            raise SafePipError(
                f"the resolution names an sdist of {package.name} outside the find-links "
                "folders; refusing it"
            )
        path = os.path.join(directory, os.path.basename(source))
        with open(source, "rb") as original, open(path, "wb") as out:
            shutil.copyfileobj(original, out)
        with open(path, "rb") as copied:
            digest.update(copied.read())
    else:
        path = _download(
            package, directory, index_urls, find_links, digest, credentials, extra_hosts
        )
    if digest.hexdigest() != package.sdist_sha256:
        raise SafePipError(f"{os.path.basename(path)}: sha256 does not match the resolution")
    return path


def _download(
    package: LockedPackage,
    directory: str,
    index_urls: Sequence[str],
    find_links: Sequence[str],
    digest: hashlib._Hash,
    credentials: Sequence[ArmedCredential],
    extra_hosts: Sequence[str] = (),
) -> str:
    from safe_pip.credentials.tls import upstream_context
    from safe_pip.installer.fetch import open_checked
    from safe_pip.installer.index_credentials import basic_auth_for

    url = package.sdist_url or ""
    try:
        source = host_pattern(url)
    except SafePipError:
        source = None
    hosts = allowed_hosts([*index_urls, *(f for f in find_links if "://" in f)])
    if source is None or source not in hosts:
        raise SafePipError(
            f"the resolution names an sdist of {package.name} outside the indexes; refusing it"
        )
    path = os.path.join(directory, url.rsplit("/", 1)[-1].split("#")[0])
    parts = urlsplit(url)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    try:
        # The trust settings from os.environ, not OpenSSL's getenv(): running a
        # sandbox zeroes this process's environment block (sandbox/environment.py).
        with (
            open_checked(
                bare,
                allow=[*hosts, *extra_hosts],
                context=upstream_context(os.environ),
                authorization=basic_auth_for(url, credentials, index_urls),
            ) as response,
            open(path, "wb") as out,
        ):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:  # URLError and HTTPError included
        reason = getattr(exc, "reason", None) or exc
        raise SafePipError(f"could not fetch {bare}: {reason}") from None
    return path

"""``safe-pip install``: resolve, build, install -- package code only ever in a sandbox.

The three phases of docs/install-design.md:

1. **resolve** -- ``uv pip compile --format pylock.toml`` in the build sandbox.  It may
   run package code (metadata of sdists), so it writes only a throw-away cache and
   the lock file.
2. **build** -- every locked package without a wheel for the target interpreter is
   downloaded here (the sdist URL and sha256 come from the lock) and built by
   :mod:`safe_pip.installer.build`, one sandbox per sdist, which hands back only a
   checked wheel of that very project.
3. **install** -- ``uv pip install --no-build --no-deps`` of the exact pins, the built
   wheels offered through ``--find-links``.  ``--no-build`` means no package code
   runs, so this is the only phase allowed to write the venv.  It still runs in the
   sandbox (uv unpacks archives from the network), with the venv writable.

Every phase has its own private uv cache, thrown away afterwards: nothing a build
writes is ever read by a later install (there is no shared cache yet, so nothing is
warm either; see the design notes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from safe_pip._records import field, mutable_record, record
from safe_pip.errors import SafePipError
from safe_pip.installer.build import build_in_sandbox
from safe_pip.installer.indexes import allowed_hosts, host_pattern
from safe_pip.installer.sandboxed_uv import index_arguments, run_uv_sandboxed
from safe_pip.installer.uv_binary import find_uv
from safe_pip.launcher.scratch import make_private_dir, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_INDEX = "https://pypi.org/simple"


@record
class InstallRequest:
    """What the user asked for, with every path absolute."""

    packages: tuple[str, ...]
    requirement_files: tuple[str, ...]
    venv: str
    python: str | None
    index_urls: tuple[str, ...]
    no_build: bool = False
    extra_hosts: tuple[str, ...] = ()
    extra_reads: tuple[str, ...] = ()
    allow_degraded: bool = False


@record
class LockedPackage:
    """One entry of the resolution: its pin, and how it can be had."""

    name: str
    version: str
    wheel_tags: tuple[frozenset[str], ...]  # the tag set of each wheel file
    sdist_url: str | None
    sdist_sha256: str | None


@mutable_record
class InstallOutcome:
    """What happened, for the human summary and ``--json``."""

    installed: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    created_venv: bool = False
    problem: str | None = None
    exit_code: int = 0


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def ensure_venv(venv: str, python: str | None) -> bool:
    """Create the venv with uv when it is missing; True when this call created it.

    ``uv venv`` runs no package code, so it runs outside the sandbox.
    """
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        return False
    if os.path.exists(venv):
        raise SafePipError(f"{venv} exists but is not a virtual environment (no pyvenv.cfg)")
    argv = [find_uv(), "venv", "--quiet", venv]
    if python is not None:
        argv += ["--python", python]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CONFIG": "1"}
    result = subprocess.run(argv, env=env, stdout=sys.stderr, check=False)
    if result.returncode != 0:
        raise SafePipError(f"could not create the virtual environment {venv}")
    return True


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


def parse_lock(text: str) -> list[LockedPackage]:
    """The packages of a PEP 751 ``pylock.toml`` written by ``uv pip compile``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    from packaging.utils import parse_wheel_filename

    packages = []
    for entry in tomllib.loads(text).get("packages", []):
        tag_sets = []
        for wheel in entry.get("wheels", []):
            filename = wheel.get("name") or wheel["url"].rsplit("/", 1)[-1]
            _, _, _, tags = parse_wheel_filename(filename)
            tag_sets.append(frozenset(str(t) for t in tags))
        sdist = entry.get("sdist") or {}
        packages.append(
            LockedPackage(
                name=entry["name"],
                version=entry["version"],
                wheel_tags=tuple(tag_sets),
                sdist_url=sdist.get("url"),
                sdist_sha256=(sdist.get("hashes") or {}).get("sha256"),
            )
        )
    return packages


def needs_build(package: LockedPackage, tags: frozenset[str]) -> bool:
    return not any(wheel & tags for wheel in package.wheel_tags)


def fetch_sdist(package: LockedPackage, directory: str, index_urls: Sequence[str]) -> str:
    """Download a locked sdist and check its sha256 against the lock.

    The lock was written inside the resolution sandbox, where build code ran too, so
    it is not trusted further than this: the sdist must come from one of the indexes'
    hosts over http(s) -- this process fetches it unsandboxed, and must not be talked
    into fetching, say, the cloud metadata service for a build to read.
    """
    import urllib.request

    if package.sdist_url is None or package.sdist_sha256 is None:
        raise SafePipError(f"{package.name} {package.version} has neither a usable wheel nor sdist")
    try:
        source = host_pattern(package.sdist_url)
    except SafePipError:
        source = None
    if source is None or source not in allowed_hosts(list(index_urls)):
        raise SafePipError(
            f"the resolution names an sdist of {package.name} outside the indexes; refusing it"
        )
    path = os.path.join(directory, package.sdist_url.rsplit("/", 1)[-1].split("#")[0])
    digest = hashlib.sha256()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(package.sdist_url, timeout=60) as response, open(path, "wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != package.sdist_sha256:
        raise SafePipError(f"{os.path.basename(path)}: sha256 does not match the resolution")
    return path


def install(request: InstallRequest) -> InstallOutcome:
    """Resolve, build and install; on failure a venv created here is removed again."""
    outcome = InstallOutcome()
    outcome.created_venv = ensure_venv(request.venv, request.python)
    try:
        _install_into(request, outcome)
    except BaseException:
        if outcome.created_venv:
            remove_tree(request.venv)
        raise
    if outcome.problem is not None and outcome.created_venv:
        remove_tree(request.venv)
    return outcome


def _install_into(request: InstallRequest, outcome: InstallOutcome) -> None:
    python = venv_python(request.venv)
    work = make_private_dir()  # trusted scratch: the lock, sdists, built wheels
    try:
        lock = _resolve(request, work)
        if lock is None:
            outcome.problem, outcome.exit_code = "resolution failed (see uv's message above)", 1
            return
        packages = parse_lock(lock)
        tags = supported_tags(python)
        to_build = [p for p in packages if needs_build(p, tags)]
        if to_build and request.no_build:
            names = ", ".join(f"{p.name} {p.version}" for p in to_build)
            outcome.problem = f"--no-build: no wheel for this Python: {names}"
            outcome.exit_code = 1
            return
        wheels = os.path.join(work, "wheels")
        os.mkdir(wheels)
        for package in to_build:
            sdist = fetch_sdist(package, work, request.index_urls)
            result = build_in_sandbox(
                sdist,
                wheels,
                python=python,
                index_urls=request.index_urls,
                extra_hosts=request.extra_hosts,
                allow_degraded=request.allow_degraded,
            )
            if result.wheel is None:
                outcome.problem, outcome.exit_code = result.problem, result.exit_code or 1
                return
            outcome.built.append(f"{package.name}=={package.version}")
        pins = [f"{p.name}=={p.version}" for p in packages]
        code = _install_pins(request, work, wheels, pins)
        if code != 0:
            outcome.problem, outcome.exit_code = "installing the resolved packages failed", code
            return
        outcome.installed = pins
    finally:
        remove_tree(work)


def _uv_in_sandbox(
    request: InstallRequest,
    args: list[str],
    *,
    box: str,
    reads: tuple[str, ...],
    writes: tuple[str, ...],
) -> int:
    """``uv ARGS --python <the venv's> <index flags>`` in the build sandbox."""
    python = venv_python(request.venv)
    return run_uv_sandboxed(
        [*args, "--python", python, *index_arguments(request.index_urls)],
        python=python,
        private_dir=box,
        reads=reads,
        writes=writes,
        index_urls=request.index_urls,
        extra_hosts=request.extra_hosts,
        allow_degraded=request.allow_degraded,
    )


def _resolve(request: InstallRequest, work: str) -> str | None:
    """Phase 1; returns the lock file's text, or None when uv failed."""
    requirements = os.path.join(work, "requirements.in")
    with open(requirements, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in request.packages)
    box = make_private_dir()
    try:
        out = os.path.join(box, "out")
        os.mkdir(out)
        lock = os.path.join(out, "pylock.toml")
        args = ["pip", "compile", "--quiet", "--format", "pylock.toml", requirements]
        args += [*request.requirement_files, "-o", lock]
        if request.no_build:
            args.append("--no-build")
        code = _uv_in_sandbox(
            request,
            args,
            box=box,
            reads=(requirements, *request.requirement_files, *request.extra_reads),
            writes=(out,),
        )
        if code != 0:
            return None
        try:  # never follow a link the sandbox may have planted in its output
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with open(fd, encoding="utf-8") as handle:
            return handle.read()
    finally:
        remove_tree(box)


def _install_pins(request: InstallRequest, work: str, wheels: str, pins: list[str]) -> int:
    """Phase 3: exact pins, no builds, no dependency resolution; the venv writable."""
    pinned = os.path.join(work, "pinned.txt")
    with open(pinned, "w", encoding="utf-8") as handle:
        handle.writelines(pin + "\n" for pin in pins)
    box = make_private_dir()
    try:
        args = ["pip", "install", "--quiet", "--no-build", "--no-deps", "-r", pinned]
        args += ["--find-links", wheels]
        return _uv_in_sandbox(
            request, args, box=box, reads=(pinned, wheels), writes=(request.venv,)
        )
    finally:
        remove_tree(box)

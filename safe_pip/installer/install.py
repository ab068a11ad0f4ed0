"""``safe-pip install``: package code only ever runs in a sandbox, and never where it
could write anything that persists.

Two routes (docs/install.md):

* **wheels only** -- ``uv pip install --no-build``: when every requirement can be met
  by wheels, no package code runs at all, so uv (trusted) installs directly, with the
  venv and the shared cache writable, like a bare ``uv pip install``.  Like pip's
  ``--prefer-binary``, this prefers the newest version *with a wheel*.
* **staged** -- when something must be built: (1) ``uv pip compile --format
  pylock.toml`` in a sandbox with a private cache and no venv write (sdist metadata
  builds run here); (2) each sdist and local project built in its own sandbox that
  hands back one checked wheel; (3) ``uv pip install --no-build --no-deps`` of the
  exact pins and the built wheels: no package code, the only phase writing the venv.

Either way uv runs the venv's interpreter to query it, which executes the venv's
``*.pth`` start-up code; the shared cache is writable only when that code is known
to be inert (:func:`safe_pip.installer.audit.startup_code`), else a private cache is
used.  After the install the audit lists what was added that runs code later;
``--strict`` turns findings into a failure that puts the venv back as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from safe_pip._records import field, mutable_record, record
from safe_pip.errors import SafePipError
from safe_pip.installer.indexes import local_path
from safe_pip.installer.sandboxed_uv import index_arguments, run_uv_sandboxed
from safe_pip.installer.uv_binary import find_uv
from safe_pip.installer.uv_options import UvChoices
from safe_pip.launcher.scratch import make_private_dir, remove_tree
from safe_pip.policy.model import is_within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from safe_pip.credentials.phantom import ArmedCredential
    from safe_pip.installer.audit import VenvState
    from safe_pip.installer.lock import LockedPackage

#: uv's words when ``--no-build`` left a requirement without a usable wheel.
_NEEDS_BUILD = re.compile(r"has no usable wheels|building from source is disabled", re.I)
_NO_WHEEL_NAME = re.compile(r"Because (\S+?)(?:==\S+)? has no usable wheels", re.I)


@record
class InstallRequest:
    """What the user asked for, with every path absolute."""

    packages: tuple[str, ...]  # requirement specifiers
    requirement_files: tuple[str, ...]
    venv: str
    python: str | None
    index_urls: tuple[str, ...]
    constraint_files: tuple[str, ...] = ()
    editables: tuple[str, ...] = ()  # project directories
    local_sources: tuple[str, ...] = ()  # project directories, sdists, wheels
    find_links: tuple[str, ...] = ()  # URLs, or absolute folders
    no_build: bool = False
    strict: bool = False
    wrap_scripts: bool = False
    exact: bool = False  # sync: also remove what was not asked for
    extra_hosts: tuple[str, ...] = ()
    extra_reads: tuple[str, ...] = ()
    allow_degraded: bool = False
    #: Index passwords: the URLs above hold phantoms, these the real values.
    credentials: tuple[ArmedCredential, ...] = ()
    #: uv pip's flags (--upgrade, --pre, -C ...), by the phase they belong to.
    uv: UvChoices = field(default_factory=UvChoices)
    quiet: bool = False  # -q: only safe-pip's summary and errors
    wait_for_lock: bool = True  # --no-wait: fail at once when another run holds the venv
    verbose: bool = False  # -v: every build's whole output

    def local_paths(self) -> tuple[str, ...]:
        """Everything local the command names: the reads its sandboxes get."""
        indexes = (local_path(u) for u in (*self.index_urls, *self.find_links))
        return (
            *self.requirement_files,
            *self.constraint_files,
            *self.editables,
            *self.local_sources,
            *(path for path in indexes if path is not None),
            *self.extra_reads,
        )


@mutable_record
class InstallOutcome:
    """What happened, for the human summary and ``--json``."""

    installed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    #: Packages whose earlier build came from safe-pip's built-wheel cache instead.
    reused_builds: list[str] = field(default_factory=list)
    findings: list[dict[str, object]] = field(default_factory=list)
    finding_lines: list[str] = field(default_factory=list)
    wrapped: list[str] = field(default_factory=list)
    route: str = "wheels-only"
    shared_cache: bool = False
    created_venv: bool = False
    problem: str | None = None
    exit_code: int = 0
    #: --dry-run: what would be installed and built; nothing was.
    dry_run: bool = False
    #: uv's own words for a failure (its error, cause and hint lines), for --json.
    detail: list[str] = field(default_factory=list)
    would_install: list[str] = field(default_factory=list)
    would_build: list[str] = field(default_factory=list)


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
    try:
        result = subprocess.run(argv, env=env, stdout=sys.stderr, check=False)
    except BaseException:
        remove_tree(venv)
        raise
    if result.returncode != 0:
        remove_tree(venv)  # a half-made venv (a full disk) is no venv: never leave one
        raise SafePipError(f"could not create the virtual environment {venv}")
    return True


def install(request: InstallRequest) -> InstallOutcome:
    """Install; on failure (or ``--strict`` findings) leave the venv as it was.  One
    run at a time per venv (installer/venv_lock.py)."""
    from safe_pip.installer.venv_lock import VenvLock

    with VenvLock(request.venv, wait=request.wait_for_lock):
        return _install_locked(request)


def _install_locked(request: InstallRequest) -> InstallOutcome:
    """All or nothing: an existing venv is snapshotted first (hard links: no data is
    copied; installer/rollback.py) and put back when the install fails, is
    interrupted (SIGINT, SIGTERM, SIGHUP) or, with ``--strict``, adds code that runs
    later; a venv this run created is removed.  What a SIGKILL left is undone by the
    next run (:func:`~safe_pip.installer.rollback.recover`)."""
    from safe_pip.installer.audit import describe, findings_to_json, new_findings, snapshot
    from safe_pip.installer.rollback import VenvBackup, recover
    from safe_pip.interrupts import uninterrupted

    undone = recover(request.venv)
    if undone is not None:
        sys.stderr.write(f"safe-pip: {undone}\n")
    outcome = InstallOutcome(dry_run=request.uv.dry_run)
    outcome.created_venv = ensure_venv(request.venv, request.python)
    backup = None
    try:
        # Inside the try: an interruption right after the snapshot puts it back (it is
        # the venv as it is) instead of leaving it for the next run to find.
        if not outcome.created_venv and not request.uv.dry_run:
            backup = VenvBackup.take(request.venv)
        before_state = snapshot(request.venv)
        before = before_state.versions()
        _install_into(request, outcome)
        if outcome.problem is None:
            findings = new_findings(request.venv, before_state)
            outcome.findings = findings_to_json(findings)
            outcome.finding_lines = [describe(f) for f in findings]
            if request.strict and findings:
                outcome.problem = (
                    f"--strict: the install added {len(findings)} thing(s) that run code "
                    "later (listed above); the venv is left as it was"
                )
                outcome.exit_code = 1
            else:
                _wrap(request, outcome, before_state)
        after = snapshot(request.venv).versions()
        outcome.installed = sorted(f"{n}=={v}" for n, v in after.items() if before.get(n) != v)
        outcome.removed = sorted(f"{n}=={v}" for n, v in before.items() if n not in after)
        if outcome.problem is not None and backup is not None:
            backup.restore()
            backup = None
    except BaseException:
        if outcome.created_venv:
            uninterrupted(lambda: remove_tree(request.venv))
        elif backup is not None:
            backup.restore()
            backup = None
        raise
    finally:
        if backup is not None:
            backup.discard()
    if (outcome.problem is not None or request.uv.dry_run) and outcome.created_venv:
        remove_tree(request.venv)  # a dry run leaves nothing behind, not even the venv
    return outcome


def _wrap(request: InstallRequest, outcome: InstallOutcome, before: VenvState) -> None:
    """Wrap what the install added to ``bin/``, when asked to now or before."""
    from safe_pip.installer.audit import changed_bin_entries
    from safe_pip.installer.wrap import remember_wrapping, wrap_scripts, wrappable, wraps_scripts

    if request.wrap_scripts:
        remember_wrapping(request.venv)
    elif not wraps_scripts(request.venv):
        return
    names = wrappable(request.venv, changed_bin_entries(request.venv, before))
    outcome.wrapped = wrap_scripts(request.venv, names)


def _install_into(request: InstallRequest, outcome: InstallOutcome) -> None:
    from safe_pip.installer.audit import startup_code
    from safe_pip.installer.cache import shared_cache_dir

    # uv will run the venv's interpreter; its start-up code must be inert before uv
    # gets a cache that later installs read.
    shared = None if startup_code(request.venv) or request.uv.no_cache else shared_cache_dir()
    outcome.shared_cache = shared is not None
    link = _choose_link_mode(request, shared)
    work = make_private_dir()  # trusted scratch: requirements, the lock, wheels
    try:
        offer = _built_offer(request, shared, work, fresh_venv=outcome.created_venv)
        # --no-binary asks for a build (and uv refuses it beside --no-build).
        if not request.editables and not request.local_sources and not request.uv.no_binary:
            if _wheels_only(request, work, shared, link, offer, outcome):
                _after_install(request, link)
                return
            if outcome.problem is not None:
                return
        elif _lock_sync(request) and _sync_with_built_projects(
            request, work, shared, link, offer, outcome
        ):
            _after_install(request, link)
            return
        if outcome.problem is not None:
            return
        outcome.route = "staged"
        _staged(request, work, shared, link, offer, outcome)
        if outcome.problem is None:
            _after_install(request, link)
    finally:
        remove_tree(work)


def _build_settings(request: InstallRequest) -> str | None:
    """This install's folder of the built-wheel cache (installer/built_wheels.py)."""
    from safe_pip.installer.built_wheels import settings_folder

    return settings_folder(
        request.index_urls, request.find_links, request.uv.build_flags(), create=True
    )


def _built_offer(
    request: InstallRequest, shared: str | None, work: str, *, fresh_venv: bool
) -> str | None:
    """The built-wheel cache's folder for this install as a find-links location, when
    the install uses the shared cache (a private-cache install builds afresh).

    A cached wheel that would overwrite files of another distribution in this venv
    (the check every build gets before it is installed) is left out: then the offer
    is a private folder of links to the others."""
    from safe_pip.installer.collisions import foreign_files

    if shared is None:
        return None
    folder = _build_settings(request)
    if folder is None:
        return None
    wheels = sorted(n for n in os.listdir(folder) if n.endswith(".whl") and not n.startswith("."))
    if not wheels:
        return None
    if fresh_venv:
        return folder  # nothing installed yet that a wheel could overwrite
    clean = [n for n in wheels if not foreign_files(os.path.join(folder, n), request.venv)]
    if len(clean) == len(wheels):
        return folder
    private = os.path.join(work, "built-offer")
    os.mkdir(private)
    for name in clean:
        _link_or_copy(os.path.join(folder, name), os.path.join(private, name))
    return private if clean else None


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _lock_sync(request: InstallRequest) -> bool:
    """A sync from a lock: every dependency is pinned with its hashes already, so only
    the project itself (and its path dependencies) need building, no resolution."""
    return (
        request.exact
        and bool(request.requirement_files)
        and not request.packages
        and not request.uv.no_binary
        and not request.uv.dry_run
        and not request.no_build
    )


def _sync_with_built_projects(
    request: InstallRequest,
    work: str,
    shared: str | None,
    link: str | None,
    offer: str | None,
    outcome: InstallOutcome,
) -> bool:
    """Build the project (and its path dependencies), check the wheels, then install
    them with the lock's pins in one run that builds nothing: what ``uv sync`` does,
    without the staged route's resolution.  False (and no problem) when a pin has no
    wheel: the staged route then resolves and builds it."""
    wheels = os.path.join(work, "project-wheels")
    os.mkdir(wheels)
    local_builds = [s for s in request.local_sources if not s.endswith(".whl")]
    to_store: list[tuple[str, str]] = []
    built = _build_all(
        request, work, wheels, [], local_builds, outcome, shared, to_store, frozenset()
    )
    if built is None:
        return False
    if _refuse_clashes(built, request.venv, outcome):
        return False
    built += [s for s in request.local_sources if s.endswith(".whl")]
    if _wheels_only(request, work, shared, link, offer, outcome, built=built):
        outcome.route = "staged"
        return True
    if outcome.problem is None:
        outcome.built.clear()  # the staged route builds them again
    return False


def _choose_link_mode(request: InstallRequest, shared: str | None) -> str | None:
    """Hard links to the shared cache unless the venv must be writable (installer/
    link_mode.py); nothing to choose for a dry run, which writes no venv."""
    if request.uv.dry_run:
        return None
    from safe_pip.installer.link_mode import choose
    from safe_pip.policy.trust import state_root

    return choose(
        request.venv,
        shared,
        request.uv.link_mode,
        state_root(os.path.expanduser("~"), os.environ),
    )


def _after_install(request: InstallRequest, link: str | None) -> None:
    """Remember how the venv's files were installed; a venv that stops being linked
    gets its own copy of every file an earlier install linked."""
    if link is None or request.uv.dry_run:
        return
    from safe_pip.installer.link_mode import break_links, remember
    from safe_pip.launcher.linked_venvs import recorded_link_mode

    if link != "hardlink" and recorded_link_mode(request.venv) == "hardlink":
        break_links(request.venv)
    remember(request.venv, link)


def _requirements_file(request: InstallRequest, work: str, extra: list[str]) -> str:
    path = os.path.join(work, "requirements.in")
    lines = [*request.packages, *extra]
    lines += [f"-r {file}" for file in request.requirement_files]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
    return path


def _verb(request: InstallRequest, requirements: str, *install_flags: str) -> list[str]:
    """``pip sync FILE`` for an exact sync, else ``pip install [FLAGS] -r FILE``."""
    if request.exact:
        return ["pip", "sync", requirements]
    return ["pip", "install", *install_flags, "-r", requirements]


def _quiet(request: InstallRequest) -> list[str]:
    """uv's own lines (``+ name==version``, ``- name==version``) for the phase that
    writes the venv, as bare uv prints them; none with ``-q``."""
    return ["--quiet"] if request.quiet else []


def _link_mode(link: str | None) -> list[str]:
    """``--link-mode`` as installer/link_mode.py chose it (none: uv's default, for a
    private cache that is thrown away)."""
    return [] if link is None else ["--link-mode", link]


def _resolution_flags(request: InstallRequest, offer: str | None = None) -> list[str]:
    flags = [*index_arguments(request.index_urls)]
    for file in request.constraint_files:
        flags += ["-c", file]
    for link in (*request.find_links, *_offered(offer)):
        flags += ["--find-links", link]
    return flags


def _offered(offer: str | None) -> tuple[str, ...]:
    return () if offer is None else (offer,)


def _uv(
    request: InstallRequest,
    args: list[str],
    *,
    reads: tuple[str, ...] = (),
    writes: tuple[str, ...] = (),
    shared_cache: str | None = None,
    output: str | None = None,
    link: str | None = None,
) -> int:
    """``uv ARGS --python <the venv's>`` in the build sandbox, in a fresh private dir.

    ``link="hardlink"``: the run links from the shared cache into the venv, which
    needs the sandbox without a mount namespace (see run_uv_sandboxed); such a run
    executes no package code (``--no-build``, inert venv start-up)."""
    from safe_pip.installer.audit import INERT_STARTUP_ENV

    python = venv_python(request.venv)
    box = make_private_dir()
    try:
        return run_uv_sandboxed(
            [*args, "--python", python],
            python=python,
            private_dir=box,
            reads=(*request.local_paths(), *reads),
            writes=writes,
            index_urls=[*request.index_urls, *request.find_links],
            extra_hosts=request.extra_hosts,
            allow_degraded=request.allow_degraded,
            shared_cache=shared_cache,
            output=output,
            extra_env=INERT_STARTUP_ENV,
            credentials=request.credentials,
            mount_namespace=link != "hardlink",
        )
    finally:
        remove_tree(box)


def _wheels_only(
    request: InstallRequest,
    work: str,
    shared: str | None,
    link: str | None,
    offer: str | None,
    outcome: InstallOutcome,
    built: list[str] | None = None,
) -> bool:
    """Try the route that runs no package code; True when it installed everything.

    uv's output is held back: when the only trouble was a requirement without a
    wheel, the staged route takes over and uv's complaint would only confuse.
    ``built``: wheels of the command's own projects, built and checked already
    (:func:`_sync_with_built_projects`), installed along.
    """
    requirements = _requirements_file(request, work, built or [])
    args = [*_verb(request, requirements), *_quiet(request), "--no-build", *_link_mode(link)]
    args += _resolution_flags(request, offer)
    args += request.uv.resolution_flags(installing=True)
    if request.uv.dry_run:
        args.append("--dry-run")
    log = os.path.join(work, "wheels-only.log")
    code = _uv(
        request,
        args,
        reads=(requirements, *_offered(offer), *(built or [])),
        writes=(request.venv,),
        shared_cache=shared,
        output=log,
        link=link,
    )
    with open(log, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    if code == 0:
        sys.stderr.write(text)
        return True
    if _NEEDS_BUILD.search(text) and not request.no_build:
        return False
    sys.stderr.write(text)
    if _NEEDS_BUILD.search(text):
        names = ", ".join(dict.fromkeys(_NO_WHEEL_NAME.findall(text))) or "some packages"
        outcome.problem = f"--no-build: no wheel for this Python: {names}"
    else:
        outcome.problem = "uv could not install the requirements (see its message above)"
        outcome.detail = uv_error_lines(text)
    outcome.exit_code = code if 0 < code < 125 else 1
    if code >= 125:
        outcome.problem, outcome.exit_code = "the install sandbox could not start", code
    return False


def uv_error_lines(text: str) -> list[str]:
    """uv's ``error:``, ``cause:`` and ``hint:`` lines (with their continuations):
    what ``--json`` gives as the failure's detail."""
    lines: list[str] = []
    keep = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("error:", "cause:", "hint:")):
            keep = True
        elif not stripped:
            keep = False
        if keep and stripped:
            lines.append(stripped)
    return lines[:40]


def _staged(
    request: InstallRequest,
    work: str,
    shared: str | None,
    link: str | None,
    offer: str | None,
    outcome: InstallOutcome,
) -> None:
    """Resolve in a sandbox, build each sdist/project in its own, install the result."""
    from safe_pip.installer.lock import needs_build, supported_tags

    packages = _resolve(request, work, offer)
    if packages is not None and offer is not None and _drop_stale_builds(request, packages):
        packages = _resolve(request, work, offer)  # resolved again without them
    if packages is None:
        outcome.problem, outcome.exit_code = "resolution failed (see uv's message above)", 1
        return
    tags = supported_tags(venv_python(request.venv))
    to_build = [p for p in packages if not p.local and needs_build(p, tags)]
    local_builds = [s for s in request.local_sources if not s.endswith(".whl")]
    if request.no_build and (to_build or local_builds or request.editables):
        names = [f"{p.name} {p.version}" for p in to_build]
        names += [os.path.basename(s) for s in (*local_builds, *request.editables)]
        outcome.problem = f"--no-build: no wheel for this Python: {', '.join(names)}"
        outcome.exit_code = 1
        return
    if request.uv.dry_run:
        built_from_index = {id(p) for p in to_build}
        outcome.would_install = [f"{p.name}=={p.version}" for p in packages if not p.local]
        outcome.would_build = [
            f"{p.name}=={p.version}" for p in packages if id(p) in built_from_index
        ]
        outcome.would_build += [os.path.basename(s) for s in local_builds]
        outcome.would_build += [f"-e {s}" for s in request.editables]
        return
    wheels = os.path.join(work, "wheels")
    os.mkdir(wheels)
    to_store: list[tuple[str, str]] = []
    built = _build_all(
        request, work, wheels, to_build, local_builds, outcome, shared, to_store, tags
    )
    if built is None:
        return
    if _refuse_clashes(built, request.venv, outcome):
        return
    _store_builds(request, to_store)
    built_names = {_wheel_project(w) for w in built}
    pins = [
        f"{p.name}=={p.version}"
        for p in packages
        if not p.local and p.version is not None and _canonical(p.name) not in built_names
    ]
    pins += built
    pins += [s for s in request.local_sources if s.endswith(".whl")]
    code = _install_pins(request, work, pins, shared, link, offer)
    if code != 0:
        outcome.problem, outcome.exit_code = "installing the resolved packages failed", code
        return


def _refuse_clashes(built: list[str], venv: str, outcome: InstallOutcome) -> bool:
    """True (and the outcome says why) when a built wheel would overwrite files that
    another distribution in ``venv`` owns: the check every build passes before it is
    installed (installer/collisions.py)."""
    from safe_pip.installer.collisions import foreign_files

    for wheel in built:
        clashes = foreign_files(wheel, venv)
        if clashes:
            outcome.problem = (
                f"{os.path.basename(wheel)} would overwrite files it does not own: "
                f"{', '.join(clashes[:3])}; refusing it"
            )
            outcome.exit_code = 1
            return True
    return False


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _wheel_project(wheel: str) -> str:
    from packaging.utils import parse_wheel_filename

    return str(parse_wheel_filename(os.path.basename(wheel))[0])


def _build_all(
    request: InstallRequest,
    work: str,
    wheels: str,
    to_build: list[LockedPackage],
    local_builds: list[str],
    outcome: InstallOutcome,
    shared: str | None,
    to_store: list[tuple[str, str]],
    tags: frozenset[str],
) -> list[str] | None:
    """Every build this install needs, each in its own sandbox; None on failure.

    An sdist built before (same sha256, same settings, a wheel this Python accepts)
    comes from the built-wheel cache instead; each new build of an index or find-links
    sdist goes into it once it has passed the checks (with ``shared``: an install that
    may use caches at all): the caller stores the ``(wheel, sdist sha256)`` pairs of
    ``to_store`` once the wheels have passed the checks."""
    from safe_pip.installer.build import build_in_sandbox
    from safe_pip.installer.editable import build_editable_in_sandbox
    from safe_pip.installer.lock import fetch_sdist

    python = venv_python(request.venv)
    common = {
        "python": python,
        "index_urls": request.index_urls,
        "extra_hosts": request.extra_hosts,
        "extra_reads": request.extra_reads,
        "allow_degraded": request.allow_degraded,
        "credentials": request.credentials,
        "verbose": request.verbose,
    }
    build_flags = [*request.uv.build_flags(), *request.uv.everywhere_flags()]
    built = []
    jobs: list[tuple[str, str, bool]] = []  # (label, source, editable)
    cache = _build_settings(request) if shared is not None else None
    sdist_digests: dict[str, str] = {}  # sdist path -> its sha256, for the cache
    for package in to_build:
        label = f"{package.name}=={package.version}"
        reused = _reuse_build(cache, package, tags, wheels)
        if reused is not None:
            built.append(reused)
            outcome.reused_builds.append(label)
            continue
        sdist = fetch_sdist(
            package,
            work,
            request.index_urls,
            request.find_links,
            request.credentials,
            request.extra_hosts,
        )
        if package.sdist_sha256 is not None:
            sdist_digests[sdist] = package.sdist_sha256
        jobs.append((label, sdist, False))
    jobs += [(os.path.basename(s), s, False) for s in local_builds]
    jobs += [(f"-e {s}", s, True) for s in request.editables]
    for label, source, editable in jobs:
        if editable:
            result = build_editable_in_sandbox(
                source,
                wheels,
                uv_flags=request.uv.everywhere_flags(),
                config_settings=request.uv.config_settings_dict(),
                **common,  # type: ignore[arg-type]
            )
        else:
            result = build_in_sandbox(source, wheels, uv_flags=build_flags, **common)  # type: ignore[arg-type]
        if result.wheel is None:
            outcome.problem, outcome.exit_code = result.problem, result.exit_code or 1
            return None
        built.append(result.wheel)
        outcome.built.append(label)
        if cache is not None and source in sdist_digests:
            to_store.append((result.wheel, sdist_digests[source]))
    return built


def _store_builds(request: InstallRequest, to_store: list[tuple[str, str]]) -> None:
    """Keep the checked builds of sdists for later installs (installer/built_wheels.py).
    A cache that cannot be written costs the next install a build, nothing more."""
    from safe_pip.installer.built_wheels import store

    folder = _build_settings(request) if to_store else None
    if folder is None:
        return
    for wheel, sdist_sha256 in to_store:
        try:
            store(folder, wheel, sdist_sha256)
        except OSError:
            return


def _reuse_build(
    cache: str | None, package: LockedPackage, tags: frozenset[str], wheels: str
) -> str | None:
    """A copy in ``wheels`` of the cached build of exactly this sdist, if there is one."""
    from safe_pip.installer.built_wheels import lookup

    if cache is None or package.version is None or package.sdist_sha256 is None:
        return None
    cached = lookup(cache, package.name, package.version, package.sdist_sha256, tags)
    if cached is None:
        return None
    target = os.path.join(wheels, os.path.basename(cached))
    _link_or_copy(cached, target)
    return target


def _drop_stale_builds(request: InstallRequest, packages: list[LockedPackage]) -> bool:
    """Remove cached builds of sdists the index now serves with other bytes; True if
    there were any (the resolution used their metadata, so it must run again)."""
    from safe_pip.installer.built_wheels import drop, stale_entries

    folder = _build_settings(request)
    if folder is None:
        return False
    stale: list[str] = []
    for package in packages:
        if package.version is not None and package.sdist_sha256 is not None:
            stale += stale_entries(folder, package.name, package.version, package.sdist_sha256)
    drop(stale)
    return bool(stale)


def _resolve(request: InstallRequest, work: str, offer: str | None) -> list[LockedPackage] | None:
    """Phase 1: the resolution, or None when uv failed.

    The cached builds (``offer``) are a find-links folder here too, so a version built
    before resolves from its wheel's metadata: no metadata build.  This sandbox runs
    package code, so it gets links to them in a folder of its own, not the cache."""
    from safe_pip.installer.lock import parse_lock

    offer = _private_copy(offer, work)

    extra = [*request.local_sources, *(f"-e {path}" for path in request.editables)]
    requirements = _requirements_file(request, work, extra)
    out = os.path.join(work, "lock")
    while os.path.lexists(out):  # resolved again: a new folder, never the old output
        out += "-again"
    os.mkdir(out)
    lock = os.path.join(out, "pylock.toml")
    args = ["pip", "compile", "--quiet", "--format", "pylock.toml", requirements, "-o", lock]
    args += _resolution_flags(request, offer)
    args += request.uv.resolution_flags(installing=False)
    if request.exact and "--no-deps" not in args:
        # A lock's export names every package: nothing else may come in, not even
        # what the project's own pyproject.toml asks for now (uv sync --frozen).
        args.append("--no-deps")
    if request.no_build:
        args.append("--no-build")
    if _uv(request, args, reads=(requirements, *_offered(offer)), writes=(out,)) != 0:
        return None
    try:  # never follow a link the sandbox may have planted in its output
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, encoding="utf-8") as handle:
        return parse_lock(handle.read(), out)


def _private_copy(offer: str | None, work: str) -> str | None:
    """Links to the offered wheels in a new folder under ``work`` (already private: as is)."""
    if offer is None or is_within(offer, work):
        return offer
    private = os.path.join(work, "resolve-offer")
    if not os.path.isdir(private):
        os.mkdir(private)
        for name in os.listdir(offer):
            if name.endswith(".whl") and not name.startswith("."):
                _link_or_copy(os.path.join(offer, name), os.path.join(private, name))
    return private


def _install_pins(
    request: InstallRequest,
    work: str,
    pins: list[str],
    shared: str | None,
    link: str | None,
    offer: str | None,
) -> int:
    """Phase 3: exact pins and built wheels, no builds, no resolution; venv writable."""
    pinned = os.path.join(work, "pinned.txt")
    with open(pinned, "w", encoding="utf-8") as handle:
        handle.writelines(pin + "\n" for pin in pins)
    args = [*_verb(request, pinned, "--no-deps"), *_quiet(request), "--no-build"]
    args += _link_mode(link)
    args += _resolution_flags(request, offer)
    args += request.uv.installation_flags() + request.uv.everywhere_flags()
    if request.uv.index_strategy is not None:
        args += ["--index-strategy", request.uv.index_strategy]
    if request.uv.no_index:
        args.append("--no-index")
    return _uv(
        request,
        args,
        reads=(pinned, os.path.join(work, "wheels"), *_offered(offer)),
        writes=(request.venv,),
        shared_cache=shared,
        link=link,
    )

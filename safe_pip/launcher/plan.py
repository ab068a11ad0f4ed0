"""Every decision about one sandboxed run, made in the supervisor before forking.

The child process only *applies* a plan; it decides nothing.  Keeping the plan as
plain data makes ``--explain`` honest (it prints the very object the child would
apply) and keeps the post-fork code short, which matters because the child of a
forked Python process must do as little as possible before ``execve``.
"""

from __future__ import annotations

import os
import sys

from safe_pip._records import record
from safe_pip.policy.model import NetworkPolicy, Policy, is_within, pure_path
from safe_pip.runner.target import Target, resolve_target
from safe_pip.sandbox.environment import TrustStore, build_environment, caller_trust
from safe_pip.sandbox.fs_rules import FsGrants

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Literal

    from safe_pip.credentials.phantom import ArmedCredential

#: Device nodes every program expects; opened read-write but never listed as a tree.
DEVICES_RW: tuple[str, ...] = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
)
#: Fresh private tmpfs mounts in namespace mode (shared host dirs in fallback mode).
PRIVATE_TMPFS: tuple[str, ...] = ("/tmp", "/dev/shm")


@record
class BrokerPlan:
    """Writes to persistent grants go through the filesystem broker
    (sandbox/fs_broker.py), decided by launcher/persistence.py's ``WriteRules``."""

    #: the write grants that outlive the run (the private scratch dir is not one)
    persistent: tuple[str, ...]
    protected: tuple[str, ...]
    #: the caller's PATH: no new command may appear in these directories
    path_dirs: tuple[str, ...]
    #: when the run started (``time.time_ns``): what is older existed before it
    started_ns: int
    #: ``filesystem.git``: "read-only", or "commit" (what a commit writes)
    git: str = "read-only"


@record
class SandboxPlan:
    """What the child applies.  Paths are absolute strings."""

    target: Target | None  # None only for ``--explain`` without a target
    env: dict[str, str]
    cwd: str
    grants: FsGrants
    network: NetworkPolicy
    private_dir: str
    uid: int
    gid: int
    try_namespaces: bool
    allow_degraded: bool
    #: Phantom-token credentials with their real values (supervisor-only: the child
    #: applies ``env``, which holds phantoms; see launcher/credentials.py).
    credentials: tuple[ArmedCredential, ...] = ()
    #: Learn mode: the supervisor traces the sandbox, and the target installs the
    #: ``SECCOMP_RET_TRACE`` filter for these syscall numbers (safe_pip/learn/).
    trace_syscalls: tuple[int, ...] = ()
    #: ... and for some of them the index of their ``AT_*`` flags (see
    #: ``seccomp.build_trace_filter``): ``(number, index)`` pairs
    trace_fd_only: tuple[tuple[int, int], ...] = ()
    #: Persistent write grants: the program gets them read-only and the broker (its
    #: parent) writes for it.  None when the policy grants no such writes.
    broker: BrokerPlan | None = None
    #: Fallback mode was chosen on purpose (safe-pip's hard-linking installs), so the
    #: warning that namespaces are missing would be wrong.
    fallback_chosen: bool = False


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(is_within(path, root) for root in roots)


def cwd_is_visible(plan: SandboxPlan) -> bool:
    """Whether the working directory exists inside the sandbox (granted, not denied)."""
    grants = plan.grants
    return _under(plan.cwd, (*grants.read, *grants.write)) and not _under(plan.cwd, grants.deny)


def interpreter_roots(python: str) -> list[str]:
    """Directories a Python interpreter needs to start: its venv and its real prefix.

    A venv's ``bin/python`` is a symlink to a base interpreter elsewhere (a pyenv
    build under the user's home, say); without its prefix the stdlib is unreadable.
    """
    roots: list[str] = []
    real = os.path.realpath(python)
    roots.append(os.path.dirname(os.path.dirname(real)))
    venv_dir = os.path.dirname(os.path.dirname(os.path.abspath(python)))
    cfg = os.path.join(venv_dir, "pyvenv.cfg")
    if os.path.isfile(cfg):
        roots.append(venv_dir)
        with open(cfg, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    roots.append(os.path.dirname(os.path.realpath(value.strip())))
    return list(dict.fromkeys(roots))


def _subdirs(directory: str, prefix: str) -> list[str]:
    """The directories (or links to them) named ``prefix*`` in ``directory``.

    Matches like a ``prefix*`` glob component (hidden names included, links to
    directories followed, an unreadable directory gives nothing) without importing
    ``glob`` or ``pathlib``, and with them ``re`` and ``fnmatch``.
    """
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return [e.path for e in entries if e.name.startswith(prefix) and e.is_dir()]


def site_packages(venv: str) -> list[str]:
    """Every ``lib*/python*/site-packages`` directory of a venv."""
    found = []
    for lib in _subdirs(venv, "lib"):
        for version in _subdirs(lib, "python"):
            site = os.path.join(version, "site-packages")
            if os.path.isdir(site):
                found.append(site)
    return found


def pth_directories(venv: str, home: str | None) -> list[str]:
    """Directories a venv's ``*.pth`` files put on ``sys.path`` (editable installs).

    The interpreter and tools such as pip scan ``sys.path``; a listed directory the
    sandbox may not read is an EACCES in fallback mode (a namespace only hides it), so
    pip crashes.  These directories are code the venv already runs; they are granted
    read-only.  A line naming ``/``, the home directory or one of its parents is
    skipped: that would open far more than an install's source tree.
    """
    found: list[str] = []
    for site in site_packages(venv):
        try:
            with os.scandir(site) as scan:
                pth_files = sorted(e.path for e in scan if e.name.endswith(".pth"))
        except PermissionError:
            continue
        for pth in pth_files:
            try:
                with open(pth, encoding="utf-8", errors="replace") as handle:
                    lines = handle.read().splitlines()
            except OSError:
                continue
            for line in lines:
                entry = line.strip()
                if not entry or entry.startswith(("#", "import ", "import\t")):
                    continue
                path = os.path.abspath(os.path.join(site, entry))  # as site.py does
                if path == "/" or (home is not None and is_within(home, path)):
                    continue
                if os.path.isdir(path):
                    found.append(path)
    return found


def build_grants(
    policy: Policy,
    *,
    python: str,
    venv: str | None,
    private_dir: str,
    caller_env: Mapping[str, str] | None = None,
    guard_persistence: bool = True,
    trust: TrustStore | None = None,
) -> FsGrants:
    """Policy paths plus what the launcher itself needs (interpreter, venv, scratch),
    and what must stay read-only whatever the policy says (launcher/persistence.py)."""
    fs = policy.filesystem
    caller_env = os.environ if caller_env is None else caller_env
    read = list(fs.read)
    read.extend(interpreter_roots(python))
    if venv is not None:
        read.append(venv)
        read.extend(pth_directories(venv, caller_env.get("HOME")))
    read.append("/proc")
    # The caller's CA bundles (their variables pass: build_plan).
    # (Only those not already readable: every grant is a mount and a Landlock rule.)
    for path in (trust or caller_trust(caller_env, fs.deny)).reads:
        if not any(is_within(path, granted) for granted in read):
            read.append(path)
    persistent = [path for path in fs.write if not is_within(path, private_dir)]
    protected: list[str] = []
    sealed: list[str] = []
    write = list(fs.write)
    if guard_persistence and persistent:
        from safe_pip.launcher.persistence import guarded_paths, linked_venvs_in_reach

        known_venvs = (venv, caller_env.get("VIRTUAL_ENV"))
        linked = linked_venvs_in_reach(
            persistent,
            project_dir=policy.project_dir,
            venvs=known_venvs,
            state_roots=_state_roots(caller_env),
        )
        if linked:
            write = _without_grants_inside(write, linked)
            persistent = [path for path in write if not is_within(path, private_dir)]
        protected, sealed = guarded_paths(
            persistent,
            project_dir=policy.project_dir,
            venvs=known_venvs,
            path_dirs=caller_env.get("PATH", "").split(":"),
            git=fs.git,
            linked_venvs=linked,
        )
    return FsGrants(
        read=tuple(map(pure_path, dict.fromkeys(read))),
        write=tuple(map(pure_path, dict.fromkeys([*write, private_dir]))),
        deny=fs.deny,
        protected=tuple(map(pure_path, dict.fromkeys([*fs.protected, *protected]))),
        devices_rw=DEVICES_RW,
        sealed=tuple(map(pure_path, dict.fromkeys(sealed))),
    )


def _state_roots(caller_env: Mapping[str, str]) -> list[str]:
    """safe-pip's state directories (``$XDG_STATE_HOME/safe-pip`` and the default):
    where the registry of linked venvs is."""
    from safe_pip.policy.trust import state_root

    home = caller_env.get("HOME", "")
    roots = [state_root(home, caller_env), state_root(home, {})]
    return [root for root in dict.fromkeys(roots) if root is not None]


def _without_grants_inside(write: list[str], linked: list[str]) -> list[str]:
    """``write`` without the grants that name a linked venv or a path inside one (those
    stay read-only: launcher/persistence.py), saying so once on stderr."""
    kept = []
    for grant in write:
        venv = next((v for v in linked if is_within(os.path.realpath(grant), v)), None)
        if venv is None:
            kept.append(grant)
            continue
        os.write(
            2,
            (
                f"safe-run: {venv} stays read-only: its files are hard links into "
                "safe-pip's cache; the next `safe-pip install` or `sync` into it makes "
                "them copies, since the policy names it (or pass --link-mode copy)\n"
            ).encode(errors="replace"),
        )
    return kept


def sandbox_path_dirs(
    caller_path: str, grants: FsGrants, *, python: str, venv: str | None
) -> list[str]:
    """PATH inside the sandbox: the venv first, then the caller's visible entries."""
    dirs: list[str] = []
    if venv is not None:
        dirs.append(os.path.join(venv, "bin"))
    dirs.append(os.path.dirname(os.path.abspath(python)))
    visible = [*grants.read, *grants.write]
    hidden = grants.deny
    for entry in caller_path.split(":"):
        if entry and os.path.isabs(entry) and _under(entry, visible) and not _under(entry, hidden):
            dirs.append(entry)
    if len(dirs) <= 2:
        dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"])
    return list(dict.fromkeys(dirs))


def build_plan(
    policy: Policy,
    kind: Literal["auto", "module", "command"],
    words: list[str],
    *,
    python: str,
    venv: str | None,
    private_dir: str,
    caller_env: Mapping[str, str],
    cwd: str,
    allow_degraded: bool,
    guard_persistence: bool = True,
) -> SandboxPlan:
    """Everything the child applies; ``guard_persistence=False`` is for the install
    sandbox, whose job is to write a venv's ``bin/`` and ``.pth`` files (its own
    audit reports what it added)."""
    # The caller's CA settings: their variables pass, their files are read grants.
    trust = caller_trust(caller_env, policy.filesystem.deny)
    grants = build_grants(
        policy,
        python=python,
        venv=venv,
        private_dir=private_dir,
        caller_env=caller_env,
        guard_persistence=guard_persistence,
        trust=trust,
    )
    path_dirs = sandbox_path_dirs(caller_env.get("PATH", ""), grants, python=python, venv=venv)
    target = (
        resolve_target(kind, words, python=python, venv=venv, path_dirs=path_dirs)
        if words
        else None
    )
    broker = None
    persistent = [w for w in grants.write if not is_within(w, private_dir)]
    if guard_persistence and persistent:
        import time

        broker = BrokerPlan(
            persistent=tuple(persistent),
            protected=grants.protected,
            path_dirs=tuple(d for d in caller_env.get("PATH", "").split(":") if d),
            started_ns=time.time_ns(),
            git=policy.filesystem.git,
        )
    env = build_environment(
        caller_env,
        pass_names=(*policy.env.pass_names, *trust.names),
        set_values=policy.env.set_values,
        home=os.path.join(private_dir, "home"),
        tmpdir=os.path.join(private_dir, "tmp"),
        path_dirs=path_dirs,
        venv=venv,
    )
    return SandboxPlan(
        target=target,
        env=env,
        cwd=cwd,
        grants=grants,
        network=policy.network,
        private_dir=private_dir,
        uid=os.getuid(),
        gid=os.getgid(),
        try_namespaces=caller_env.get("SAFE_PIP_NO_USERNS", "") not in ("1", "true", "yes"),
        allow_degraded=allow_degraded,
        broker=broker,
    )


def default_python(venv: str | None) -> str:
    """The interpreter for script and module targets: the venv's, else our own."""
    if venv is not None:
        for name in ("python", "python3"):
            candidate = os.path.join(venv, "bin", name)
            if os.path.exists(candidate):
                return candidate
    return sys.executable

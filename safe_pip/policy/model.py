"""The effective policy: plain, immutable data shared by the loader and the launcher.

Everything in here is already resolved: paths are absolute, expanded and normalised,
profiles are merged, command-line flags are applied.  The launcher never reads TOML;
the loader never touches the kernel.  That split keeps both sides testable on their own.

Paths are plain ``str``, not ``pathlib.Path``: this module is on every ``safe-run``
start, and importing pathlib drags in ``re``, ``fnmatch`` and ``urllib.parse``.
"""

from __future__ import annotations

import os

from safe_pip._records import field, record

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from typing import Literal

    from safe_pip.credentials.spec import CredentialSpec
    from safe_pip.policy.trust import Approval

    NetworkMode = Literal["none", "allowlist"]


def pure_path(path: str) -> str:
    """``str(pathlib.PurePosixPath(path))``, without importing pathlib.

    Runs of ``/`` collapse (exactly two leading ones are kept, as POSIX allows), ``.``
    components and a trailing ``/`` go; ``..`` stays, since it may follow a symlink
    (``os.path.normpath`` would drop it).  Applied to paths that come from outside,
    such as ``$VIRTUAL_ENV`` or ``$TMPDIR``, so that every spelling is canonical.
    """
    root = ""
    if path[:1] == "/":
        root = "//" if path[:2] == "//" and path[2:3] != "/" else "/"
    return root + "/".join(part for part in path.split("/") if part and part != ".") or "."


def is_within(path: str, ancestor: str) -> bool:
    """True when ``path`` is ``ancestor`` or lies beneath it (canonical strings).

    A plain string test, no file system access: ``/a/bc`` is not within ``/a/b``.
    """
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


@record
class FilesystemPolicy:
    """Which paths the sandbox may touch.

    ``read`` grants read + execute, ``write`` grants read + write + execute (a write
    grant implies read).  ``deny`` wins over both, whatever the nesting.  ``protected``
    paths stay read-only even under a writable parent (the policy file itself, the
    shell start-up files, ``protect`` entries ...).  ``git`` says what of a git
    repository in a write grant the program may change: nothing (``read-only``, the
    default) or what a commit writes (``commit``: objects, refs, the index, logs --
    never its configuration, hooks or submodules).
    """

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()
    git: str = "read-only"


@record
class NetworkPolicy:
    """``none`` (the default): no socket reaches anything.  ``allowlist``: only the
    ``allow`` host[:port] patterns, through the supervisor's proxy (a policy with
    credentials is an allowlist even when ``allow`` is empty: the proxy carries them)."""

    mode: NetworkMode = "none"
    allow: tuple[str, ...] = ()
    #: Which command's settings a refusal names ("safe-run" or "safe-pip"): the same
    #: proxy serves safe-pip's build sandbox, whose allow list is set elsewhere.
    reported_as: str = "safe-run"


@record
class EnvPolicy:
    """Environment variables: names passed through from the caller, and fixed values."""

    pass_names: tuple[str, ...] = ()
    set_values: tuple[tuple[str, str], ...] = ()


@record
class Policy:
    """The merged, resolved policy for one run."""

    filesystem: FilesystemPolicy = field(default_factory=FilesystemPolicy)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    env: EnvPolicy = field(default_factory=EnvPolicy)
    #: Phantom-token credentials (their values are read by the launcher, not here).
    credentials: tuple[CredentialSpec, ...] = ()
    #: Directory whose pyproject.toml supplied the policy (or the cwd when none did).
    project_dir: str = field(default_factory=os.getcwd)
    #: The pyproject.toml that supplied ``[tool.safe-run]``, if any.
    pyproject: str | None = None
    #: Human-readable names of every layer merged, in order ("profile:base", a path ...).
    sources: tuple[str, ...] = ()
    #: The ``[tool.safe-run]`` table's approval state, when it grants more than the
    #: defaults (None otherwise): an unapproved one must not run (policy/trust.py).
    approval: Approval | None = None

"""The effective policy: plain, immutable data shared by the loader and the launcher.

Everything in here is already resolved: paths are absolute and expanded, profiles are
merged, command-line flags are applied.  The launcher never reads TOML; the loader never
touches the kernel.  That split keeps both sides testable on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

NetworkMode = Literal["none", "allowlist"]


@dataclass(frozen=True)
class FilesystemPolicy:
    """Which paths the sandbox may touch.

    ``read`` grants read + execute, ``write`` grants read + write + execute (a write
    grant implies read).  ``deny`` wins over both, whatever the nesting.  ``protected``
    paths stay read-only even under a writable parent (the policy file itself, git
    hooks, the venv's ``bin/`` ...); they are computed by the loader, not written by
    users.
    """

    read: tuple[Path, ...] = ()
    write: tuple[Path, ...] = ()
    deny: tuple[Path, ...] = ()
    protected: tuple[Path, ...] = ()


@dataclass(frozen=True)
class NetworkPolicy:
    """``none`` (the default): no socket reaches anything.  ``allowlist``: only the
    ``allow`` host[:port] patterns, through the supervisor's proxy (a later layer)."""

    mode: NetworkMode = "none"
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvPolicy:
    """Environment variables: names passed through from the caller, and fixed values."""

    pass_names: tuple[str, ...] = ()
    set_values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Policy:
    """The merged, resolved policy for one run."""

    filesystem: FilesystemPolicy = field(default_factory=FilesystemPolicy)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    env: EnvPolicy = field(default_factory=EnvPolicy)
    #: Directory whose pyproject.toml supplied the policy (or the cwd when none did).
    project_dir: Path = field(default_factory=Path.cwd)
    #: The pyproject.toml that supplied ``[tool.safe-run]``, if any.
    pyproject: Path | None = None
    #: Human-readable names of every layer merged, in order ("profile:base", a path ...).
    sources: tuple[str, ...] = ()

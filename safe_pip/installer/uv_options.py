"""uv pip's words: the flags safe-pip takes with uv's spelling and meaning, and where
each one goes.

safe-pip runs uv several times for one install (docs/install.md, "Two routes"), so a
flag cannot simply be appended: it belongs to the phase whose behaviour it changes.

* **resolution** — what versions are chosen: ``--upgrade``, ``--upgrade-package``,
  ``--no-deps``, ``--prerelease``/``--pre``, ``--resolution``, ``--exclude-newer``,
  ``--index-strategy``, ``--only-binary``/``--no-binary``, ``--no-index``,
  ``--extra``/``--all-extras``/``--group`` (for ``-r pyproject.toml``): the
  wheels-only ``uv pip install`` and the staged route's ``uv pip compile``;
* **installation** — how the chosen files land in the venv: ``--reinstall``,
  ``--reinstall-package``, ``--compile-bytecode``, ``--require-hashes``: the
  wheels-only install and the staged route's last phase; ``--link-mode`` is
  safe-pip's own choice per venv (installer/link_mode.py), not a plain flag;
* **builds** — ``-C``/``--config-settings``: each sandboxed build, and the
  resolution's metadata builds;
* **everywhere** — ``--offline`` (and ``--no-cache``, which also keeps this install
  away from safe-pip's shared cache).

Flags that contradict what safe-pip is for are refused with one line saying why
(:data:`REFUSED`), never with a guess at a different option.
"""

from __future__ import annotations

from safe_pip._records import record

__all__ = ["REFUSED", "UvChoices"]

#: uv/pip options safe-pip does not take, and why (shown as the whole error).
REFUSED = {
    "--user": "safe-pip installs only into virtual environments, never the user site "
    "(code there runs at every Python start)",
    "--system": "safe-pip installs only into virtual environments, never the system Python",
    "--break-system-packages": "safe-pip installs only into virtual environments",
    "--target": "safe-pip installs only into virtual environments (a --target directory "
    "has no audit and no rollback)",
    "-t": "safe-pip installs only into virtual environments (a --target directory has no "
    "audit and no rollback)",
    "--prefix": "safe-pip installs only into virtual environments",
    "--root": "safe-pip installs only into virtual environments",
    "--no-build-isolation": "every build runs isolated, in its own sandbox; a build "
    "cannot see the venv",
    "--no-build-isolation-package": "every build runs isolated, in its own sandbox",
    "--python-platform": "installing for another platform is not supported yet",
    "--python-version": "installing for another Python version is not supported yet; use --python",
    "--no-verify-hashes": "hashes in requirements files are always checked",
    "--keyring-provider": "index passwords come from the URL, UV_INDEX_* variables or "
    "the keyring by themselves (docs/credentials.md)",
    "--build-constraints": "not supported yet",
    "-b": "--build-constraints is not supported yet",
    "--torch-backend": "not supported yet",
    "--no-sources": "not supported yet",
    "--cache-dir": "builds use private caches and installs safe-pip's own (docs/install.md, "
    '"What the cache guarantees")',
    "--config-file": "safe-pip reads uv's configuration itself; uv runs with none "
    "(a file must not widen what a build may do)",
    "--no-config": "uv already runs with no configuration file in the sandbox",
    "--system-certs": "set UV_SYSTEM_CERTS=1 (or system-certs = true in uv.toml): it "
    "reaches every phase",
    "--native-tls": "set UV_SYSTEM_CERTS=1 (or system-certs = true in uv.toml): it "
    "reaches every phase",
    "--allow-insecure-host": "set UV_INSECURE_HOST or allow-insecure-host in your own uv.toml",
    "--trusted-host": "set UV_INSECURE_HOST or allow-insecure-host in your own uv.toml",
}


@record
class UvChoices:
    """The uv pip flags of one command, by meaning."""

    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    reinstall: bool = False
    reinstall_packages: tuple[str, ...] = ()
    no_deps: bool = False
    prerelease: str | None = None
    resolution: str | None = None
    exclude_newer: str | None = None
    index_strategy: str | None = None
    only_binary: tuple[str, ...] = ()
    no_binary: tuple[str, ...] = ()
    no_index: bool = False
    extras: tuple[str, ...] = ()
    all_extras: bool = False
    groups: tuple[str, ...] = ()
    compile_bytecode: bool = False
    require_hashes: bool = False
    config_settings: tuple[str, ...] = ()
    offline: bool = False
    no_cache: bool = False
    dry_run: bool = False
    #: hardlink, copy or clone; None: the venv's recorded mode, else hard links
    #: (installer/link_mode.py).
    link_mode: str | None = None

    def resolution_flags(self, *, installing: bool) -> list[str]:
        """Flags for a phase that resolves: ``uv pip install`` (``installing``) or
        ``uv pip compile``."""
        flags: list[str] = []
        if self.upgrade:
            flags.append("--upgrade")
        for name in self.upgrade_packages:
            flags += ["--upgrade-package", name]
        if self.no_deps:
            flags.append("--no-deps")
        for option, value in (
            ("--prerelease", self.prerelease),
            ("--resolution", self.resolution),
            ("--exclude-newer", self.exclude_newer),
            ("--index-strategy", self.index_strategy),
        ):
            if value is not None:
                flags += [option, value]
        for name in self.only_binary:
            flags += ["--only-binary", name]
        for name in self.no_binary:
            flags += ["--no-binary", name]
        if self.no_index:
            flags.append("--no-index")
        for extra in self.extras:
            flags += ["--extra", extra]
        if self.all_extras:
            flags.append("--all-extras")
        for group in self.groups:
            flags += ["--group", group]
        flags += self.build_flags()
        flags += self.everywhere_flags()
        if installing:
            flags += self.installation_flags()
        return flags

    def installation_flags(self) -> list[str]:
        """Flags for the phase that writes the venv."""
        flags: list[str] = []
        if self.reinstall:
            flags.append("--reinstall")
        for name in self.reinstall_packages:
            flags += ["--reinstall-package", name]
        if self.compile_bytecode:
            flags.append("--compile-bytecode")
        if self.require_hashes:
            flags.append("--require-hashes")
        return flags

    def build_flags(self) -> list[str]:
        """``--config-setting`` pairs, for ``uv build`` and for metadata builds."""
        flags: list[str] = []
        for setting in self.config_settings:
            flags += ["--config-setting", setting]
        return flags

    def everywhere_flags(self) -> list[str]:
        flags: list[str] = []
        if self.offline:
            flags.append("--offline")
        if self.no_cache:
            flags.append("--no-cache")
        return flags

    def config_settings_dict(self) -> dict[str, str | list[str]]:
        """``-C`` pairs as PEP 517's ``config_settings`` (a repeated key: a list)."""
        settings: dict[str, str | list[str]] = {}
        for pair in self.config_settings:
            key, _, value = pair.partition("=")
            if key in settings:
                previous = settings[key]
                settings[key] = [*(previous if isinstance(previous, list) else [previous]), value]
            else:
                settings[key] = value
        return settings

"""The uv pip flags of ``safe-pip install`` (and the ones ``sync`` shares), as click
options with uv's spelling, short forms, environment variables and help; and the
command class that answers an unknown or refused flag with one line.

click's own error for an unknown option guesses at a similar one ("Did you mean
--no-build?" for ``--no-binary``), which here points at the opposite.  An option
safe-pip refuses on purpose (``--user``, ``--target`` ...) gets the reason instead
(:data:`safe_pip.installer.uv_options.REFUSED`); any other unknown one gets "no
such option" and nothing else.
"""

from __future__ import annotations

import click

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from safe_pip.installer.uv_options import UvChoices

__all__ = [
    "UvCommand",
    "choices_from",
    "no_wait_option",
    "repeatable_path",
    "uv_install_options",
    "uv_shared_options",
]


#: ``--no-wait``, for every command that takes the venv's lock (installer/venv_lock.py).
no_wait_option = click.option(
    "--no-wait",
    is_flag=True,
    help="Fail at once if another safe-pip is changing the venv (default: wait).",
)


def repeatable_path(
    short: str, long: str, dest: str, help: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A repeatable path option (``-r FILE``, ``-e DIR`` ...), spelled as uv does."""
    return click.option(short, long, dest, multiple=True, type=click.Path(), help=help)


class UvCommand(click.Command):
    """A command whose unknown options are answered plainly (see module docstring)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            from safe_pip.installer.uv_options import REFUSED

            name = exc.option_name
            why = REFUSED.get(name)
            if why is not None:
                raise click.UsageError(f"{name} is not supported: {why}", ctx) from None
            raise click.UsageError(
                f"no such option: {name} (safe-pip {ctx.info_name} --help lists them)", ctx
            ) from None


def _options(
    options: Sequence[Callable[..., object]],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _pre(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """``--pre``: uv's (and pip's) short word for ``--prerelease allow``."""
    if value:
        ctx.meta["safe_pip_pre"] = True
    return value


_SHARED = [
    click.option(
        "-q", "--quiet", is_flag=True, help="Print only the summary and errors, not uv's lines."
    ),
    click.option(
        "-v", "--verbose", is_flag=True, help="Show every build's whole output as it runs."
    ),
    click.option(
        "--offline",
        is_flag=True,
        envvar="UV_OFFLINE",
        help="Disable network access: only cached or local packages [env: UV_OFFLINE=].",
    ),
    click.option(
        "-n",
        "--no-cache",
        is_flag=True,
        envvar="UV_NO_CACHE",
        help="Avoid reading from or writing to the cache [env: UV_NO_CACHE=].",
    ),
    click.option(
        "--reinstall",
        "--force-reinstall",
        is_flag=True,
        help="Reinstall all packages, regardless of whether they're already installed.",
    ),
    click.option(
        "--reinstall-package",
        multiple=True,
        metavar="PACKAGE",
        help="Reinstall a specific package, regardless of whether it's already installed.",
    ),
    click.option(
        "--compile-bytecode",
        "--compile",
        is_flag=True,
        envvar="UV_COMPILE_BYTECODE",
        help="Compile Python files to bytecode after installation [env: UV_COMPILE_BYTECODE=].",
    ),
    click.option(
        "-C",
        "--config-setting",
        "--config-settings",
        "config_settings",
        multiple=True,
        metavar="KEY=VALUE",
        help="Settings to pass to the PEP 517 build backend, as KEY=VALUE pairs.",
    ),
    click.option(
        "--link-mode",
        type=click.Choice(["hardlink", "copy", "clone"]),
        envvar="UV_LINK_MODE",
        help="How files land in the venv: hardlink (the default; the venv is then "
        "read-only under safe-run), copy (the venv may be made writable), clone "
        "(reflinks, where the filesystem has them) [env: UV_LINK_MODE=].",
    ),
]

_INSTALL_ONLY = [
    click.option(
        "-U",
        "--upgrade",
        is_flag=True,
        help="Allow package upgrades, ignoring the versions already installed.",
    ),
    click.option(
        "-P",
        "--upgrade-package",
        multiple=True,
        metavar="PACKAGE",
        help="Allow upgrades for a specific package.",
    ),
    click.option(
        "--no-deps",
        is_flag=True,
        help="Ignore package dependencies: install only the packages listed.",
    ),
    click.option(
        "--prerelease",
        type=click.Choice(
            ["disallow", "allow", "if-necessary", "explicit", "if-necessary-or-explicit"]
        ),
        envvar="UV_PRERELEASE",
        help="The strategy to use when considering pre-release versions [env: UV_PRERELEASE=].",
    ),
    click.option(
        "--pre",
        is_flag=True,
        callback=_pre,
        expose_value=False,
        help="Allow pre-release versions (--prerelease allow).",
    ),
    click.option(
        "--resolution",
        type=click.Choice(["highest", "lowest", "lowest-direct"]),
        envvar="UV_RESOLUTION",
        help="Which of the compatible versions to choose [env: UV_RESOLUTION=].",
    ),
    click.option(
        "--exclude-newer",
        metavar="DATE|DURATION",
        envvar="UV_EXCLUDE_NEWER",
        help="Only packages uploaded before this: a date, an RFC 3339 timestamp, or a "
        "duration such as '7 days' (a cooldown against fresh malicious releases) "
        "[env: UV_EXCLUDE_NEWER=].",
    ),
    click.option(
        "--index-strategy",
        type=click.Choice(["first-index", "unsafe-first-match", "unsafe-best-match"]),
        envvar="UV_INDEX_STRATEGY",
        help="The strategy to use when resolving against multiple indexes "
        "[env: UV_INDEX_STRATEGY=].",
    ),
    click.option(
        "--only-binary",
        multiple=True,
        metavar="PACKAGE",
        help="Only use pre-built wheels for this package (:all: for every one).",
    ),
    click.option(
        "--no-binary",
        multiple=True,
        metavar="PACKAGE",
        help="Build this package from source, in a sandbox (:all: for every one).",
    ),
    click.option(
        "--no-index", is_flag=True, help="Ignore the indexes: only --find-links locations."
    ),
    click.option(
        "--extra",
        "extras",
        multiple=True,
        help="Include this optional dependency group (with -r pyproject.toml).",
    ),
    click.option(
        "--all-extras",
        is_flag=True,
        help="Include all optional dependencies (with -r pyproject.toml).",
    ),
    click.option(
        "--group",
        "groups",
        multiple=True,
        help="Install this dependency group of a pyproject.toml (PEP 735).",
    ),
    click.option(
        "--require-hashes",
        is_flag=True,
        envvar="UV_REQUIRE_HASHES",
        help="Require a matching hash for each requirement [env: UV_REQUIRE_HASHES=].",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Resolve (in the sandbox) and show what would be installed and built; change nothing.",
    ),
]

#: ``install``'s uv pip flags.
uv_install_options = _options([*_INSTALL_ONLY, *_SHARED])
#: The ones ``sync`` shares with it.
uv_shared_options = _options(_SHARED)


def choices_from(values: dict[str, object], default_exclude_newer: str | None = None) -> UvChoices:
    """A :class:`UvChoices` from a command's keyword arguments (``values`` is consumed:
    the uv flags are removed from it)."""
    from safe_pip.installer.uv_options import UvChoices

    def take(name: str, default: object = None) -> object:
        return values.pop(name, default)

    prerelease = take("prerelease")
    if click.get_current_context().meta.get("safe_pip_pre") and prerelease is None:
        prerelease = "allow"
    exclude_newer = take("exclude_newer") or default_exclude_newer
    return UvChoices(
        upgrade=bool(take("upgrade", False)),
        upgrade_packages=tuple(take("upgrade_package", ()) or ()),  # type: ignore[arg-type]
        reinstall=bool(take("reinstall", False)),
        reinstall_packages=tuple(take("reinstall_package", ()) or ()),  # type: ignore[arg-type]
        no_deps=bool(take("no_deps", False)),
        prerelease=prerelease,  # type: ignore[arg-type]
        resolution=take("resolution"),  # type: ignore[arg-type]
        exclude_newer=exclude_newer,  # type: ignore[arg-type]
        index_strategy=take("index_strategy"),  # type: ignore[arg-type]
        only_binary=tuple(take("only_binary", ()) or ()),  # type: ignore[arg-type]
        no_binary=tuple(take("no_binary", ()) or ()),  # type: ignore[arg-type]
        no_index=bool(take("no_index", False)),
        extras=tuple(take("extras", ()) or ()),  # type: ignore[arg-type]
        all_extras=bool(take("all_extras", False)),
        groups=tuple(take("groups", ()) or ()),  # type: ignore[arg-type]
        compile_bytecode=bool(take("compile_bytecode", False)),
        require_hashes=bool(take("require_hashes", False)),
        config_settings=tuple(take("config_settings", ()) or ()),  # type: ignore[arg-type]
        offline=bool(take("offline", False)),
        no_cache=bool(take("no_cache", False)),
        dry_run=bool(take("dry_run", False)),
        link_mode=take("link_mode"),  # type: ignore[arg-type]
    )

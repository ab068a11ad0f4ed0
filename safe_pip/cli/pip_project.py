"""``safe-pip lock``, ``add`` and ``remove``: uv's project commands with every
metadata build confined (safe_pip/installer/project.py).

Registered on the ``safe-pip`` group by :mod:`safe_pip.cli.pip` (``COMMANDS``).
"""

from __future__ import annotations

import os

import click

from safe_pip.cli.uv_words import UvCommand
from safe_pip.errors import SafePipError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from safe_pip.credentials.phantom import ArmedCredential

__all__ = ["COMMANDS"]


def _project_options(command: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option(
            "--allow-host", multiple=True, help="Also reachable during builds (host[:port])."
        ),
        click.option(
            "--allow-degraded", is_flag=True, help="Run even if a sandbox layer is missing."
        ),
        click.option("-q", "--quiet", is_flag=True, help="Print only errors."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _context(
    allow_host: tuple[str, ...],
) -> tuple[str, str, tuple[str, ...], tuple[ArmedCredential, ...], tuple[str, ...]]:
    """(project dir, venv, index URLs, credentials, hosts) of the project here."""
    from safe_pip.cli.pip import _configured_hosts, _indexes, _project_dir
    from safe_pip.cli.pip_venv import target_venv

    project_dir = _project_dir()
    if project_dir is None:
        raise SafePipError("no pyproject.toml here or above; run this inside a project")
    urls, _links, credentials = _indexes(None, (), (), project_dir)
    hosts = (*allow_host, *_configured_hosts(project_dir))
    venv = target_venv(None, os.path.join(project_dir, ".venv"))
    return project_dir, venv, urls, credentials, hosts


@click.command("lock", cls=UvCommand)
@click.option(
    "--check", "--locked", "check", is_flag=True, help="Only check that uv.lock is up to date."
)
@click.option(
    "-U", "--upgrade", is_flag=True, help="Allow package upgrades, ignoring the lock's pins."
)
@click.option(
    "-P",
    "--upgrade-package",
    multiple=True,
    metavar="PACKAGE",
    help="Allow upgrades for a package.",
)
@_project_options
def lock_command(
    check: bool,
    upgrade: bool,
    upgrade_package: tuple[str, ...],
    allow_host: tuple[str, ...],
    allow_degraded: bool,
    quiet: bool,
) -> None:
    """Lock the project's dependencies into uv.lock, as uv lock does; every metadata
    build runs in the build sandbox, on a copy of the project."""
    from safe_pip.cli.pip import _lock

    project_dir, venv, urls, credentials, hosts = _context(allow_host)
    flags = ["--upgrade"] if upgrade else []
    for name in upgrade_package:
        flags += ["--upgrade-package", name]
    _lock(project_dir, venv, urls, credentials, hosts, allow_degraded, check=check,
          uv_flags=flags, quiet=quiet)  # fmt: skip
    if not quiet:
        verdict = "is up to date" if check else "written"
        click.echo(f"{os.path.join(project_dir, 'uv.lock')} {verdict}")


def _dependency_command(verb: str) -> click.Command:
    @click.command(verb, cls=UvCommand)
    @click.argument("requirements", nargs=-1, required=True)
    @click.option("--dev", is_flag=True, help="The development dependency group.")
    @click.option("--group", help="This dependency group (PEP 735).")
    @click.option("--optional", help="This optional dependency group (an extra).")
    @click.option("--no-sync", is_flag=True, help="Lock, but do not install into the venv.")
    @click.option("--frozen", is_flag=True, help="Only edit pyproject.toml: no lock, no sync.")
    @_project_options
    def command(
        requirements: tuple[str, ...],
        dev: bool,
        group: str | None,
        optional: str | None,
        no_sync: bool,
        frozen: bool,
        allow_host: tuple[str, ...],
        allow_degraded: bool,
        quiet: bool,
    ) -> None:
        import sys

        from safe_pip.cli.pip import _lock
        from safe_pip.installer.project import (
            edit_dependencies,
            locked_versions,
            registry_requirement,
        )

        if sum(bool(x) for x in (dev, group, optional)) > 1:
            raise click.UsageError("choose one of --dev, --group and --optional")
        project_dir, venv, urls, credentials, hosts = _context(allow_host)
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            python = sys.executable

        def edit(items: tuple[str, ...] | list[str]) -> None:
            edit_dependencies(project_dir, verb if items is requirements else "add", items,
                              python=python, allow_degraded=allow_degraded, dev=dev,
                              group=group, optional=optional)  # fmt: skip

        edit(requirements)
        if frozen:
            return
        _lock(project_dir, venv, urls, credentials, hosts, allow_degraded, quiet=quiet)
        if verb == "add":
            # As uv add: a requirement named without a version gets the locked one as
            # its lower bound (and the lock follows the new bound).
            versions = locked_versions(project_dir)
            bounded = []
            for text in requirements:
                name, has_version = registry_requirement(text)
                if not has_version and name in versions:
                    bounded.append(f"{text}>={versions[name]}")
            if bounded:
                edit(bounded)
                _lock(project_dir, venv, urls, credentials, hosts, allow_degraded, quiet=True)
        if no_sync:
            return
        from safe_pip.cli.pip import sync

        ctx = click.get_current_context()
        ctx.invoke(sync, allow_host=allow_host, allow_degraded=allow_degraded, frozen=True,
                   quiet=quiet)  # fmt: skip

    command.__doc__ = (
        f"{'Add' if verb == 'add' else 'Remove'} dependencies {'to' if verb == 'add' else 'from'} "
        "the project's pyproject.toml, lock (in the build sandbox) and sync, as uv "
        f"{verb} does. Requirements come from an index."
    )
    return command


add_command = _dependency_command("add")
remove_command = _dependency_command("remove")

COMMANDS = [lock_command, add_command, remove_command]

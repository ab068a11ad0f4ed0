"""``safe-pip list``, ``uninstall`` and ``audit``: commands on an existing venv.

``list`` and ``audit`` only read files: running the venv's interpreter (or uv, which
runs it) would execute the venv's ``*.pth`` start-up code outside any sandbox, and
the point of asking is often to find out whether that code is there.  ``uninstall``
needs uv, so uv runs in the build sandbox with nothing but the venv writable and no
network at all.

Registered on the ``safe-pip`` group by :mod:`safe_pip.cli.pip` (``COMMANDS``).
"""

from __future__ import annotations

import os
import sys

import click

from safe_pip.cli.uv_words import UvCommand, no_wait_option, repeatable_path
from safe_pip.errors import SafePipError

_VENV_HELP = "The venv (default: $VIRTUAL_ENV, else the nearest .venv in this directory or above)."


def target_venv(venv: str | None, default: str | None = None) -> str:
    """``--venv``, else ``$VIRTUAL_ENV``, else the nearest ``.venv`` here or above,
    else ``default``, else the project root's ``.venv`` (uv's rule; safe_pip/runner/target.py)."""
    from safe_pip.runner.target import discover_venv, venv_to_create

    if venv:
        return os.path.abspath(venv)
    cwd = os.getcwd()
    if default is not None:
        active = os.environ.get("VIRTUAL_ENV")
        return os.path.abspath(active or default)
    return discover_venv(cwd, os.environ) or venv_to_create(cwd)


def resolve_venv(venv: str | None) -> str:
    """:func:`target_venv`, or a :class:`SafePipError` (exit 125) when it is not a
    virtual environment."""
    path = target_venv(venv)
    if not os.path.isdir(path):
        raise SafePipError(f"no virtual environment at {path} (use --venv or set VIRTUAL_ENV)")
    if not os.path.isfile(os.path.join(path, "pyvenv.cfg")):
        raise SafePipError(f"{path} is not a virtual environment (it has no pyvenv.cfg)")
    return path


def _normalize(name: str) -> str:
    """PEP 503 normalised name, for sorting: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _name_and_version(dist_info: str) -> tuple[str, str]:
    """``Name``/``Version`` from a dist-info's METADATA headers; the directory name's
    parts where METADATA is missing or lacks them."""
    stem = os.path.basename(dist_info)[: -len(".dist-info")]
    name, _, version = stem.partition("-")
    try:
        with open(os.path.join(dist_info, "METADATA"), "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return name, version
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            break  # the body (long description) starts here
        key, sep, value = line.partition(":")
        if sep and not line[0].isspace():
            headers.setdefault(key.strip().lower(), value.strip())
    return headers.get("name") or name, headers.get("version") or version


def installed(venv: str) -> list[tuple[str, str]]:
    """``(name, version)`` of every distribution in the venv, sorted by normalised name."""
    from safe_pip.installer.audit import site_packages_dirs

    found = []
    for site in site_packages_dirs(venv):
        for entry in sorted(os.listdir(site)):
            if entry.endswith(".dist-info"):
                found.append(_name_and_version(os.path.join(site, entry)))
    return sorted(found, key=lambda item: (_normalize(item[0]), item[1]))


@click.command("list", cls=UvCommand)
@click.option("--venv", type=click.Path(), help=_VENV_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, version}.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["columns", "freeze", "json"]),
    default="columns",
    help="Select the output format, as uv pip list.",
)
def list_command(venv: str | None, as_json: bool, output_format: str) -> None:
    """List installed distributions (read from their metadata; nothing is run)."""
    import json

    rows = installed(resolve_venv(venv))
    if as_json or output_format == "json":
        click.echo(json.dumps([{"name": name, "version": version} for name, version in rows]))
        return
    if output_format == "freeze":
        for name, version in rows:
            click.echo(f"{name}=={version}")
        return
    width = max((len(name) for name, _ in rows), default=0)
    for name, version in rows:
        click.echo(f"{name:<{width}}  {version}")


@click.command("uninstall", cls=UvCommand)
@click.argument("packages", nargs=-1)
@repeatable_path(
    "-r", "--requirement", "requirement_files", "Uninstall the packages listed in this file."
)
@click.option("--venv", type=click.Path(), help=_VENV_HELP)
@click.option("--allow-degraded", is_flag=True, help="Run even if a sandbox layer is missing.")
@click.option(
    "-y", "--yes", is_flag=True, help="Accepted for pip's sake: uninstall never asks anyway."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@no_wait_option
def uninstall_command(
    packages: tuple[str, ...],
    requirement_files: tuple[str, ...],
    venv: str | None,
    allow_degraded: bool,
    yes: bool,
    quiet: bool,
    no_wait: bool,
) -> None:
    """Uninstall packages with uv, in the build sandbox (uv runs the venv's Python,
    whose start-up code then runs too); exits with uv's code."""
    from safe_pip.installer.venv_lock import VenvLock
    from safe_pip.installer.wrap import prune_wrapped
    from safe_pip.launcher.scratch import make_private_dir, remove_tree

    if not packages and not requirement_files:
        raise click.UsageError("name at least one package or -r file")
    files = tuple(os.path.abspath(f) for f in requirement_files)
    target = resolve_venv(venv)
    python = os.path.join(target, "bin", "python")
    with VenvLock(target, wait=not no_wait):
        box = make_private_dir()
        try:
            code = _uninstall(target, python, box, files, packages, quiet, allow_degraded)
        finally:
            remove_tree(box)
        prune_wrapped(target)  # the originals of wrapped scripts whose package is gone
    sys.exit(code)


def _uninstall(
    target: str,
    python: str,
    box: str,
    files: tuple[str, ...],
    packages: tuple[str, ...],
    quiet: bool,
    allow_degraded: bool,
) -> int:
    """``uv pip uninstall`` in the build sandbox: the venv writable, no network."""
    from safe_pip.installer.audit import INERT_STARTUP_ENV
    from safe_pip.installer.sandboxed_uv import run_uv_sandboxed

    return run_uv_sandboxed(
        [
            "pip",
            "uninstall",
            *(["--quiet"] if quiet else []),
            "--python",
            python,
            *(word for f in files for word in ("-r", f)),
            *packages,
        ],
        python=python,
        private_dir=box,
        reads=files,
        writes=(target,),
        index_urls=(),  # no hosts: the sandbox has no network at all
        allow_degraded=allow_degraded,
        extra_env=INERT_STARTUP_ENV,
    )


@click.command("audit", cls=UvCommand)
@click.option("--venv", type=click.Path(), help=_VENV_HELP)
@click.option("--json", "as_json", is_flag=True, help='Print {"venv": ..., "findings": [...]}.')
def audit_command(venv: str | None, as_json: bool) -> None:
    """Report what in the venv runs code later: *.pth lines that execute,
    sitecustomize/usercustomize, console and GUI scripts.  A report: exit 0."""
    import json

    from safe_pip.installer.audit import audit_venv, describe, findings_to_json
    from safe_pip.terminal import reset_attributes

    target = resolve_venv(venv)
    findings = audit_venv(target)
    if as_json:
        click.echo(json.dumps({"venv": target, "findings": findings_to_json(findings)}))
        return
    reset_attributes(1)
    if not findings:
        click.echo(f"nothing in {target} runs code at start-up or as a script")
    for finding in findings:
        click.echo(describe(finding))


COMMANDS = [list_command, uninstall_command, audit_command]
